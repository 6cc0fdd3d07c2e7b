"""Spawning and joining tasks: results, names, `done`, scale, nesting."""

from __future__ import annotations

import pytest

import anyrt


async def _double(value: int) -> int:
    return 2 * value


async def test_spawn_returns_a_task_with_the_result(runtime: anyrt.Runtime) -> None:
    task = runtime.spawn(_double(21))
    assert isinstance(task, anyrt.Task)
    assert await task == 42
    assert task.done()


async def test_ten_thousand_tasks(runtime: anyrt.Runtime) -> None:
    tasks = [runtime.spawn(_double(i)) for i in range(10_000)]
    results = [await task for task in tasks]
    assert results == [2 * i for i in range(10_000)]
    assert all(task.done() for task in tasks)


async def test_names(runtime: anyrt.Runtime) -> None:
    named = runtime.spawn(_double(1), name="the-double")
    unnamed = runtime.spawn(_double(2))
    assert named.name == "the-double"
    assert isinstance(unnamed.name, str)
    assert unnamed.name
    await named
    await unnamed


async def test_done_only_once_finished(runtime: anyrt.Runtime) -> None:
    gate = anyrt.Event(runtime)

    async def wait_for_gate() -> str:
        await gate.wait()
        return "through"

    task = runtime.spawn(wait_for_gate())
    await runtime.sleep(0)
    assert not task.done()
    gate.set()
    assert await task == "through"
    assert task.done()


async def test_awaiting_twice_returns_the_same_result(runtime: anyrt.Runtime) -> None:
    async def make() -> object:
        return object()

    task = runtime.spawn(make())
    first = await task
    second = await task
    assert first is second


async def test_two_tasks_join_the_same_task(runtime: anyrt.Runtime) -> None:
    gate = anyrt.Event(runtime)

    async def target() -> str:
        await gate.wait()
        return "result"

    shared = runtime.spawn(target())

    async def join() -> str:
        return await shared

    joiners = [runtime.spawn(join()) for _ in range(3)]
    await runtime.sleep(0)
    gate.set()
    assert [await joiner for joiner in joiners] == ["result"] * 3


def test_spawn_requires_a_coroutine(runtime: anyrt.Runtime) -> None:
    with pytest.raises(TypeError):
        runtime.spawn(_double)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        runtime.spawn(42)  # type: ignore[arg-type]


def test_spawn_outside_any_task_then_block_on(runtime: anyrt.Runtime) -> None:
    task = runtime.spawn(_double(5))

    async def main() -> int:
        return await task

    assert runtime.block_on(main()) == 10


async def test_spawn_from_within_tasks(runtime: anyrt.Runtime) -> None:
    async def parent() -> list[int]:
        children = [runtime.spawn(_double(i)) for i in range(10)]
        return [await child for child in children]

    assert await runtime.spawn(parent()) == [2 * i for i in range(10)]


async def test_nested_spawns_build_a_tree(runtime: anyrt.Runtime) -> None:
    async def count_leaves(depth: int) -> int:
        if depth == 0:
            return 1
        left = runtime.spawn(count_leaves(depth - 1))
        right = runtime.spawn(count_leaves(depth - 1))
        return await left + await right

    assert await runtime.spawn(count_leaves(8)) == 2**8


async def test_spawn_local_from_a_task(runtime: anyrt.Runtime) -> None:
    assert await runtime.spawn_local(_double(4), name="local") == 8


@pytest.mark.parametrize("method", ["spawn", "spawn_local"])
async def test_a_name_that_is_not_a_str_is_refused(runtime: anyrt.Runtime, method: str) -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        getattr(runtime, method)(_double(1), name=42)


async def test_a_task_outlives_the_task_that_spawned_it(runtime: anyrt.Runtime) -> None:
    gate = anyrt.Event(runtime)

    async def grandchild() -> str:
        await gate.wait()
        return "still here"

    async def child() -> anyrt.Task[str]:
        return runtime.spawn(grandchild())

    orphan = await runtime.spawn(child())
    gate.set()
    assert await orphan == "still here"
