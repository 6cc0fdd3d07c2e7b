"""The runtime object itself: identity, closing, and misuse that must fail loudly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import anyrt
from anyrt.testing._plugin import BackendConfig
from anyrt.testing.conformance import FOREVER, Arrivals


def test_runtime_satisfies_the_protocols(
    runtime: anyrt.Runtime, anyrt_backend: BackendConfig
) -> None:
    assert isinstance(runtime, anyrt.Runtime)
    assert isinstance(runtime, anyrt.FullExecutor)
    assert isinstance(runtime, anyrt.LocalExecutor)
    assert isinstance(runtime, anyrt.Timer)
    assert isinstance(runtime, anyrt.Reactor)
    assert runtime.name == anyrt_backend[0]
    assert issubclass(runtime.cancelled_exc, BaseException)


def test_block_on_returns_the_result(runtime: anyrt.Runtime) -> None:
    async def main() -> str:
        await runtime.sleep(0)
        return "done"

    assert runtime.block_on(main()) == "done"
    assert runtime.block_on(main()) == "done"  # a runtime runs many block_on calls


async def test_block_on_inside_a_task_raises(runtime: anyrt.Runtime) -> None:
    coro = runtime.sleep(0)
    try:
        with pytest.raises(RuntimeError):
            runtime.block_on(coro)
    finally:
        coro.close()


def test_use_after_close_raises(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    rt = make_runtime()
    rt.close()
    for use in (rt.spawn, rt.block_on):
        coro = rt.sleep(0)
        try:
            with pytest.raises(RuntimeError):
                use(coro)
        finally:
            coro.close()


def test_close_cancels_tasks_and_runs_their_finally_blocks(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    rt = make_runtime()
    arrivals = Arrivals(rt, 5)
    cleaned: list[str] = []

    async def sleeper(index: int) -> None:
        try:
            await arrivals.enter(index, rt.sleep(FOREVER))
        except rt.cancelled_exc:
            cleaned.append("cancelled")
            raise
        finally:
            cleaned.append("finally")

    async def main() -> list[anyrt.Task[None]]:
        tasks = [rt.spawn(sleeper(index)) for index in range(5)]
        await arrivals.all_in.wait()
        return tasks

    tasks = rt.block_on(main())
    rt.close()
    assert sorted(cleaned) == ["cancelled"] * 5 + ["finally"] * 5
    assert all(task.done() for task in tasks)


def test_close_is_idempotent(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    rt = make_runtime()
    rt.close()
    rt.close()


def test_runtime_is_a_context_manager(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    created = make_runtime()
    with created as rt:
        assert rt is created

        async def main() -> int:
            return 7

        assert rt.block_on(main()) == 7
    coro = rt.sleep(0)
    try:
        with pytest.raises(RuntimeError):
            rt.spawn(coro)
    finally:
        coro.close()


def test_two_runtimes_are_independent(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    first, second = make_runtime(), make_runtime()

    async def main(rt: anyrt.Runtime) -> str:
        await rt.sleep(0.001)
        return rt.name

    assert first.block_on(main(first)) == second.block_on(main(second))
    first.close()
    assert second.block_on(main(second)) == second.name
