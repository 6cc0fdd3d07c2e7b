"""Cancellation on trio: each task its own cancel scope, trio's level-triggered semantics."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
from anyrt_trio import TrioRuntime

import anyrt


@pytest.fixture
def rt() -> Iterator[TrioRuntime]:
    with TrioRuntime() as runtime:
        yield runtime


def test_cancel_cancels_exactly_that_task(rt: TrioRuntime) -> None:
    async def main() -> list[bool]:
        started = anyrt.Event(rt)

        async def sleeper() -> None:
            started.set()
            await trio.sleep_forever()

        target = rt.spawn(sleeper())
        bystander = rt.spawn(rt.sleep(0.02))
        await started.wait()
        target.cancel()
        with pytest.raises(anyrt.Cancelled):
            await target
        await bystander
        return [target.cancelled(), bystander.cancelled()]

    assert rt.block_on(main()) == [True, False]


def test_cancellation_is_level_triggered_and_a_shield_lets_cleanup_await(
    rt: TrioRuntime,
) -> None:
    trail: list[str] = []

    async def stubborn() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            trail.append("cancelled")
            try:
                await trio.sleep(0)  # still cancelled: trio raises again
            except trio.Cancelled:
                trail.append("cancelled again")
            with trio.CancelScope(shield=True):
                await trio.sleep(0.001)  # shielded cleanup may await
            trail.append("cleaned up")
            raise

    async def main() -> None:
        task = rt.spawn(stubborn())
        await rt.sleep(0.001)
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task

    rt.block_on(main())
    assert trail == ["cancelled", "cancelled again", "cleaned up"]


def test_a_task_cancelled_inside_its_own_nursery_counts_as_cancelled() -> None:
    errors: list[anyrt.TaskError] = []
    with TrioRuntime(error_handler=errors.append) as rt:

        async def with_children() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(trio.sleep_forever)

        async def main() -> None:
            task = rt.spawn(with_children())
            await rt.sleep(0.001)
            task.cancel()
            with pytest.raises(anyrt.Cancelled):
                await task
            assert task.cancelled()
            dropped = rt.spawn(with_children())
            await rt.sleep(0.001)
            dropped.cancel()
            while not dropped.done():
                await rt.sleep(0.001)
            del dropped
            gc.collect()

        rt.block_on(main())
    assert errors == []  # a cancellation is not a failure


def test_a_task_cancelled_before_it_starts_never_runs(rt: TrioRuntime) -> None:
    ran: list[str] = []

    async def body() -> None:
        ran.append("ran")

    async def main() -> None:
        task = rt.spawn(body())
        task.cancel()  # from the trio thread, before the task's first step
        with pytest.raises(anyrt.Cancelled):
            await task

    rt.block_on(main())
    assert ran == []


def test_a_timeout_is_a_cancel_scope_that_raises_timeout_error(rt: TrioRuntime) -> None:
    async def main() -> float:
        start = rt.now()
        with pytest.raises(TimeoutError):
            async with rt.timeout(0.01):
                await trio.sleep_forever()  # trio code is cut short too
        return rt.now() - start

    assert rt.block_on(main()) >= 0.01


def test_a_timeout_can_be_entered_once(rt: TrioRuntime) -> None:
    async def main() -> None:
        timeout = rt.timeout(1)
        async with timeout:
            pass
        with pytest.raises(RuntimeError, match="entered only once"):
            async with timeout:
                pass

    rt.block_on(main())


def test_awaiting_a_task_from_another_trio_run(rt: TrioRuntime) -> None:
    async def slow() -> str:
        await trio.sleep(0.01)
        return "across runs"

    task = rt.spawn(slow())

    async def other_run() -> object:
        return await task

    assert trio.run(other_run) == "across runs"


def test_awaiting_a_task_outside_any_trio_run_is_refused(rt: TrioRuntime) -> None:
    # Running until cancelled: a task that has already finished may be awaited anywhere.
    task = rt.spawn(trio.sleep_forever())

    async def main() -> None:
        with pytest.raises(RuntimeError, match="await it from a task of a trio run"):
            await task

    with anyrt.runtime("single-threaded") as other:
        other.block_on(main())
    assert not task.done()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        rt.block_on(_join(task))


async def _join(task: anyrt.Task[object]) -> object:
    return await task


def test_a_cancelled_task_group_waits_for_its_children_without_spinning(
    rt: TrioRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trio re-raises Cancelled at every wait in a cancelled scope; the group must park."""
    cancels = 0
    original = anyrt.TaskGroup._cancel_children

    def counting(self: anyrt.TaskGroup) -> None:
        nonlocal cancels
        cancels += 1
        original(self)

    monkeypatch.setattr(anyrt.TaskGroup, "_cancel_children", counting)

    async def child() -> None:
        try:
            await rt.sleep(3600)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.2)  # a cleanup that takes a while

    async def parent() -> None:
        async with anyrt.TaskGroup(rt) as tg:
            tg.spawn(child())

    async def main() -> None:
        task = rt.spawn(parent())
        await rt.sleep(0.01)
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task

    rt.block_on(main())
    # Once when the cancellation reached the group; a spinning group did it at every
    # pass of its wait loop, thousands of times in 0.2 s.
    assert cancels == 1


def test_cancellations_in_a_task_error_group_are_taken_out(rt: TrioRuntime) -> None:
    """As on the native runtimes; trio's own scope only takes out its trio.Cancelled."""

    async def mixed() -> None:
        raise BaseExceptionGroup("a group", [KeyError("real"), anyrt.Cancelled("and this")])

    async def only() -> None:
        raise BaseExceptionGroup("a group", [anyrt.Cancelled("one"), anyrt.Cancelled("two")])

    async def main() -> None:
        failed = rt.spawn(mixed())
        with pytest.raises(ExceptionGroup) as info:
            await failed
        assert [type(exc) for exc in info.value.exceptions] == [KeyError]
        assert not failed.cancelled()
        cancelled = rt.spawn(only())
        with pytest.raises(anyrt.Cancelled):
            await cancelled
        assert cancelled.cancelled()

    rt.block_on(main())
