"""Cancel scopes on asyncio: in tasks anyrt did not spawn, next to asyncio's own cancellation.

The conformance suite covers the contract on the runtime's own tasks; these tests cover
what only the adapter has: the main task of ``asyncio.run`` (a plain asyncio task, on a
borrowed loop), asyncio code that cancels and un-cancels tasks (`asyncio.timeout`,
`asyncio.TaskGroup`, ``Task.cancel(msg)``), and the loop staying idle when a cancelled
scope has nothing to deliver.
"""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import anyrt_asyncio
import pytest
from anyrt_asyncio import AsyncioRuntime

import anyrt

try:
    import uvloop  # noqa: F401 - only whether it imports
except ImportError as missing:  # uvloop has no free-threaded build
    needs_uvloop = pytest.mark.skip(reason=f"uvloop cannot be imported: {missing}")
else:
    needs_uvloop = pytest.mark.skipif(False, reason="uvloop is installed")

FOREVER = 3600.0


def _in_asyncio_run(main: Callable[[anyrt.Runtime], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(current())`` as the main task of ``asyncio.run``: a plain asyncio task."""

    async def app() -> None:
        assert not isinstance(asyncio.current_task(), anyrt_asyncio.AsyncioTask)
        await main(anyrt_asyncio.current())

    asyncio.run(app())


def test_scopes_in_the_main_task_of_asyncio_run() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        me = asyncio.current_task()
        assert me is not None
        with rt.move_on_after(0.01) as quiet:
            await rt.sleep(FOREVER)
        assert quiet.cancelled_caught
        with pytest.raises(TimeoutError), rt.fail_after(0.01):
            await asyncio.sleep(FOREVER)  # asyncio's own sleep is a cancel point too
        raised: list[str] = []
        with rt.cancel_scope() as scope:
            scope.cancel()
            assert rt.current_deadline() == -math.inf
            for what in ("sleep(0)", "event", "asyncio.sleep"):
                try:
                    if what == "sleep(0)":
                        await rt.sleep(0)
                    elif what == "event":
                        await anyrt.Event(rt).wait()
                    else:
                        await asyncio.sleep(FOREVER)
                except asyncio.CancelledError:
                    raised.append(what)
            with rt.cancel_scope(shield=True):
                await rt.sleep(0.001)
                raised.append("slept under the shield")
        assert raised == ["sleep(0)", "event", "asyncio.sleep", "slept under the shield"]
        # The deliveries were withdrawn from asyncio's count: nothing looks cancelled.
        assert me.cancelling() == 0
        assert rt.current_deadline() == math.inf
        await asyncio.sleep(0.001)

    _in_asyncio_run(main)


def test_an_asyncio_cancellation_passes_through_a_cancelled_scope() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        entered = asyncio.Event()
        scopes: list[anyrt.CancelScope] = []

        async def plain() -> str:
            with rt.cancel_scope() as scope:
                scopes.append(scope)
                entered.set()
                await rt.sleep(FOREVER)
            return "the scope swallowed a cancellation that was not its own"

        task = asyncio.create_task(plain())
        await entered.wait()
        scopes[0].cancel()
        task.cancel()  # the same instant: asyncio folds both into one CancelledError
        with pytest.raises(asyncio.CancelledError):
            await task

    _in_asyncio_run(main)


def test_task_cancel_is_level_triggered_on_a_borrowed_loop() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        raised: list[str] = []
        started = anyrt.Event(rt)

        async def stubborn() -> None:
            try:
                started.set()
                await rt.sleep(FOREVER)
            except asyncio.CancelledError:
                raised.append("first")
            try:
                await asyncio.sleep(FOREVER)
            except asyncio.CancelledError:
                raised.append("again")
                raise

        task = rt.spawn(stubborn())
        await started.wait()
        task.cancel()
        with pytest.raises(anyrt.Cancelled), rt.fail_after(5):  # a real-time guard
            await task
        assert raised == ["first", "again"]
        assert task.cancelled()

    _in_asyncio_run(main)


def test_asyncio_timeout_and_task_group_work_in_place(rt: AsyncioRuntime) -> None:
    async def boom() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("a child failed")

    async def main() -> str:
        me = asyncio.current_task()
        assert me is not None
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):  # cancels the task, then uncancel()s it
                await rt.sleep(FOREVER)
        try:
            async with asyncio.TaskGroup() as group:  # cancels its parent task
                group.create_task(boom())
                await rt.sleep(FOREVER)
        except* KeyError:
            pass
        # Both withdrew their cancellation: the task is not cancelled any more.
        assert me.cancelling() == 0
        assert rt.current_deadline() == math.inf
        await rt.sleep(0.001)
        return "carried on"

    assert rt.block_on(main()) == "carried on"


def test_cancel_with_a_message_is_asyncio_s_one_shot_cancel(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        started = anyrt.Event(rt)

        async def once() -> str:
            started.set()
            with pytest.raises(asyncio.CancelledError, match="why"):
                await rt.sleep(FOREVER)
            await rt.sleep(0.001)  # not cancelled again
            return "cancelled once"

        task = rt.spawn(once())
        await started.wait()
        assert task.cancel("why") is True
        assert await task == "cancelled once"

    rt.block_on(main())


def test_a_task_ending_on_a_cancelled_join_ended_cancelled(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        target = rt.spawn(rt.sleep(FOREVER))

        async def joiner() -> None:
            await target  # raises anyrt.Cancelled, which ends this task too

        task = rt.spawn(joiner())
        await rt.sleep(0)
        target.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task
        assert task.cancelled()

    rt.block_on(main())


def test_a_one_shot_cancellation_beaten_by_a_value_lands_at_the_next_await() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        sender, receiver = rt.oneshot()
        got: list[int] = []

        async def plain() -> None:
            got.append(await receiver)
            await asyncio.sleep(FOREVER)  # the cancellation lands here

        task = asyncio.create_task(plain())
        await asyncio.sleep(0)  # parked on the receiver
        assert sender.send(7) is True
        task.cancel()
        # A real-time guard, whose cancellation must not reach the task itself: shield.
        with pytest.raises(asyncio.CancelledError), rt.fail_after(5):
            await asyncio.shield(task)
        assert got == [7]

    _in_asyncio_run(main)


@pytest.mark.parametrize("backend", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_a_shielded_wait_in_a_cancelled_scope_leaves_the_loop_idle(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> None:
        with rt.cancel_scope() as outer:
            outer.cancel()
            with rt.cancel_scope(shield=True) as inner:
                # Virtual time jumps only while no callback is ready: a delivery that
                # kept running here would keep it from ever reaching the deadline,
                # until the real-time guard cancels the shielded scope.
                guard = threading.Timer(5, inner.cancel)
                guard.start()
                try:
                    await rt.sleep(FOREVER)
                finally:
                    guard.cancel()
            assert not inner.cancelled_caught
            await rt.sleep(0)  # out of the shield: the outer cancellation reaches us
            pytest.fail("the outer cancellation did not get in after the shield")
        assert outer.cancelled_caught

    started = time.monotonic()
    anyrt.run(main, backend=backend, clock="virtual")
    assert time.monotonic() - started < 5


def test_an_expired_asyncio_timeout_inside_a_cancelled_scope_lets_it_win(
    rt: AsyncioRuntime,
) -> None:
    async def main() -> None:
        with rt.cancel_scope() as outer:
            async with asyncio.timeout(0.01):
                try:
                    await rt.sleep(FOREVER)
                except asyncio.CancelledError:
                    outer.cancel()  # the enclosing scope is cancelled too: it must win
                    raise
            pytest.fail("the outer cancellation was turned into a TimeoutError")
        assert outer.cancelled_caught

    rt.block_on(main())


def test_an_asyncio_timeout_expiring_with_its_enclosing_scope_lets_the_scope_win() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        loop = asyncio.get_running_loop()  # whose clock is the runtime's (time.monotonic)
        with rt.cancel_scope() as outer:
            deadline = loop.time() + 0.01
            async with asyncio.timeout_at(deadline):
                # Armed after the timeout's timer: both fire in one loop iteration, the
                # timeout's first, so its CancelledError is on its way when the scope's
                # cancellation comes.
                outer.deadline = deadline
                await rt.sleep(FOREVER)
            pytest.fail("the outer cancellation was turned into a TimeoutError")
        assert outer.cancelled_caught
        me = asyncio.current_task()
        assert me is not None
        assert me.cancelling() == 0

    _in_asyncio_run(main)


def test_an_outer_deadline_fires_after_an_inner_one(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        start = rt.now()
        with rt.move_on_after(0.02) as outer:
            # The task's one alarm is set for the inner deadline, then again for the outer.
            guard = threading.Timer(5, outer.cancel)  # a real-time guard
            guard.start()
            try:
                with rt.move_on_after(0.01) as inner:
                    await rt.sleep(FOREVER)
                assert inner.cancelled_caught
                await rt.sleep(FOREVER)
            finally:
                guard.cancel()
        assert outer.cancelled_caught
        assert 0.02 <= rt.now() - start < 1

    rt.block_on(main())


def test_a_deadline_does_not_keep_a_finished_task_alive(rt: AsyncioRuntime) -> None:
    async def brief() -> None:
        with rt.fail_after(FOREVER):  # its alarm stays set, lazily, after the scope
            await rt.sleep(0)

    async def main() -> weakref.ref[anyrt.Task[None]]:
        task = rt.spawn(brief())
        await task
        return weakref.ref(task)

    ref = rt.block_on(main())
    gc.collect()
    assert ref() is None
