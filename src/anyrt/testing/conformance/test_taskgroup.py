"""`TaskGroup`: waits for its children; the first failure cancels the rest."""

from __future__ import annotations

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals


class Boom(Exception):
    pass


async def test_waits_for_every_child(runtime: anyrt.Runtime) -> None:
    finished: list[int] = []

    async def child(index: int) -> int:
        await runtime.sleep(0.001 * (index % 3))
        finished.append(index)
        return index * index

    async with anyrt.TaskGroup(runtime) as tg:
        tasks = [tg.spawn(child(index)) for index in range(20)]
    assert sorted(finished) == list(range(20))
    assert all(task.done() for task in tasks)
    assert [await task for task in tasks] == [index * index for index in range(20)]


async def test_spawn_names_the_child(runtime: anyrt.Runtime) -> None:
    async with anyrt.TaskGroup(runtime) as tg:
        task = tg.spawn(runtime.sleep(0), name="named-child")
    assert task.name == "named-child"


async def test_first_failure_cancels_the_siblings(runtime: anyrt.Runtime) -> None:
    siblings = Arrivals(runtime, 3)
    outcomes: list[str] = []

    async def sibling(index: int) -> None:
        try:
            await siblings.enter(index, runtime.sleep(FOREVER))
            outcomes.append("slept")
        except runtime.cancelled_exc:
            outcomes.append("cancelled")
            raise

    async def failing() -> None:
        await siblings.all_in.wait()
        raise Boom("first")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            for index in range(3):
                tg.spawn(sibling(index))
            tg.spawn(failing())

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [Boom]
    assert outcomes == ["cancelled"] * 3


async def test_body_exception_is_included_and_cancels_the_children(
    runtime: anyrt.Runtime,
) -> None:
    started = Arrivals(runtime, 1)
    outcomes: list[str] = []

    async def child() -> None:
        try:
            await started.enter("child", runtime.sleep(FOREVER))
        finally:
            outcomes.append("child done")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(child())
            await started.all_in.wait()
            raise KeyError("from the body")

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [KeyError]
    assert outcomes == ["child done"]


async def test_a_failure_during_cancellation_is_reported_too(runtime: anyrt.Runtime) -> None:
    started = Arrivals(runtime, 1)

    async def bad_cleanup() -> None:
        try:
            await started.enter("bad", runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            raise KeyError("cleanup failed") from None

    async def failing() -> None:
        await started.all_in.wait()
        raise Boom("first")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(bad_cleanup())
            tg.spawn(failing())

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert sorted(type(exc).__name__ for exc in info.value.exceptions) == ["Boom", "KeyError"]


async def test_spawn_after_exit_raises(runtime: anyrt.Runtime) -> None:
    async with anyrt.TaskGroup(runtime) as tg:
        pass
    coro = runtime.sleep(0)
    try:
        with pytest.raises(RuntimeError):
            tg.spawn(coro)
    finally:
        coro.close()


async def test_cancelling_the_task_running_the_group_cancels_the_children(
    runtime: anyrt.Runtime,
) -> None:
    children = Arrivals(runtime, 3)
    outcomes: list[str] = []

    async def child(index: int) -> None:
        try:
            await children.enter(index, runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            outcomes.append("cancelled")
            raise

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            for index in range(3):
                tg.spawn(child(index))

    task = runtime.spawn(run_group())
    await children.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert outcomes == ["cancelled"] * 3


async def test_body_failure_before_any_child_ran(runtime: anyrt.Runtime) -> None:
    child = runtime.sleep(FOREVER)

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(child)
            raise KeyError("before the child ever ran")

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [KeyError]
