"""Cancellation: at every kind of suspension point, with cleanup and released waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals

# Each kind sets up one suspension that never ends by itself and yields its awaitable.
Suspension = Callable[[anyrt.Runtime], AbstractAsyncContextManager[Awaitable[Any]]]


@asynccontextmanager
async def _sleep(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    yield rt.sleep(FOREVER)


@asynccontextmanager
async def _sleep_until(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    yield rt.sleep_until(rt.now() + FOREVER)


@asynccontextmanager
async def _oneshot_receive(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    receiver: anyrt.Receiver[int] = rt.oneshot()[1]
    yield receiver


@asynccontextmanager
async def _channel_receive(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    yield anyrt.Channel[int](rt, 1).receive()


@asynccontextmanager
async def _channel_send_full(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    channel = anyrt.Channel[int](rt, 1)
    await channel.send(0)
    yield channel.send(1)


@asynccontextmanager
async def _lock_acquire(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    lock = anyrt.Lock(rt)
    await lock.acquire()
    yield lock.acquire()
    lock.release()


@asynccontextmanager
async def _semaphore_acquire(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    yield anyrt.Semaphore(rt, 0).acquire()


@asynccontextmanager
async def _event_wait(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    yield anyrt.Event(rt).wait()


@asynccontextmanager
async def _stream_receive(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    async with (
        await rt.listen_tcp("127.0.0.1", 0) as listener,
        await rt.connect_tcp(*listener.address) as client,
        await listener.accept(),
    ):
        yield client.receive()


@asynccontextmanager
async def _accept(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    async with await rt.listen_tcp("127.0.0.1", 0) as listener:
        yield listener.accept()


@asynccontextmanager
async def _task_join(rt: anyrt.Runtime) -> AsyncIterator[Awaitable[Any]]:
    target = rt.spawn(rt.sleep(FOREVER))
    yield target
    # Cancelling the joiner must leave the joined task running.
    assert not target.done()
    target.cancel()
    with pytest.raises(anyrt.Cancelled):
        await target


SUSPENSIONS: dict[str, Suspension] = {
    "sleep": _sleep,
    "sleep_until": _sleep_until,
    "oneshot-receive": _oneshot_receive,
    "channel-receive": _channel_receive,
    "channel-send-full": _channel_send_full,
    "lock-acquire": _lock_acquire,
    "semaphore-acquire": _semaphore_acquire,
    "event-wait": _event_wait,
    "stream-receive": _stream_receive,
    "listener-accept": _accept,
    "task-join": _task_join,
}


@pytest.mark.parametrize("kind", list(SUSPENSIONS))
async def test_cancel_while_suspended(runtime: anyrt.Runtime, kind: str) -> None:
    seen: list[str] = []
    async with SUSPENSIONS[kind](runtime) as suspension:
        arrivals = Arrivals(runtime, 1)

        async def waiter() -> None:
            try:
                await arrivals.enter("waiter", suspension)
                seen.append("returned")
            except runtime.cancelled_exc:
                seen.append("cancelled")
                raise
            finally:
                seen.append("finally")

        task = runtime.spawn(waiter())
        await arrivals.all_in.wait()
        assert task.cancel() is True
        with pytest.raises(anyrt.Cancelled):
            await task
    assert seen == ["cancelled", "finally"]
    assert task.done()
    assert task.cancel() is False


async def test_cancel_returns_false_once_done(runtime: anyrt.Runtime) -> None:
    async def quick() -> int:
        return 1

    task = runtime.spawn(quick())
    assert await task == 1
    assert task.cancel() is False
    assert await task == 1


async def test_cancel_before_the_first_step(runtime: anyrt.Runtime) -> None:
    progress: list[str] = []

    async def body() -> None:
        progress.append("started")
        await runtime.sleep(FOREVER)
        progress.append("past the first suspension")

    task = runtime.spawn(body())
    assert task.cancel() is True
    with pytest.raises(anyrt.Cancelled):
        await task
    # A threaded backend may have started it already; it still never got further.
    assert progress in ([], ["started"])


async def test_cancelling_twice_is_harmless(runtime: anyrt.Runtime) -> None:
    task = runtime.spawn(runtime.sleep(FOREVER))
    await runtime.sleep(0)
    assert task.cancel() is True
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert task.cancel() is False


async def test_a_task_may_catch_its_cancellation_and_return(runtime: anyrt.Runtime) -> None:
    arrivals = Arrivals(runtime, 1)

    async def stubborn() -> str:
        try:
            await arrivals.enter("stubborn", runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            return "caught"
        return "slept"

    task = runtime.spawn(stubborn())
    await arrivals.all_in.wait()
    task.cancel()
    assert await task == "caught"


async def test_cancelled_oneshot_receiver_makes_send_return_false(
    runtime: anyrt.Runtime,
) -> None:
    pair: tuple[anyrt.Sender[int], anyrt.Receiver[int]] = runtime.oneshot()
    sender, receiver = pair
    arrivals = Arrivals(runtime, 1)
    task = runtime.spawn(_await(arrivals.enter("receiver", receiver)))
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert sender.send(1) is False


async def test_cancelled_lock_waiter_is_skipped(runtime: anyrt.Runtime) -> None:
    lock = anyrt.Lock(runtime)
    holders: list[str] = []
    await lock.acquire()
    arrivals = Arrivals(runtime, 2)

    async def take(who: str) -> None:
        await arrivals.enter(who, lock.acquire())
        holders.append(who)
        lock.release()

    first = runtime.spawn(take("first"))
    second = runtime.spawn(take("second"))
    await arrivals.all_in.wait()
    first.cancel()
    with pytest.raises(anyrt.Cancelled):
        await first
    lock.release()
    await second
    assert holders == ["second"]
    assert not lock.locked()


async def test_cancelled_channel_receiver_loses_no_item(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[str](runtime, 0)
    arrivals = Arrivals(runtime, 2)
    cancelled = runtime.spawn(_await(arrivals.enter("cancelled", channel.receive())))
    live = runtime.spawn(_await(arrivals.enter("live", channel.receive())))
    await arrivals.all_in.wait()
    cancelled.cancel()
    with pytest.raises(anyrt.Cancelled):
        await cancelled
    await channel.send("item")
    assert await live == "item"


async def test_cancelled_channel_sender_does_not_deliver(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[str](runtime, 1)
    await channel.send("buffered")
    arrivals = Arrivals(runtime, 1)
    sender = runtime.spawn(_await(arrivals.enter("sender", channel.send("withdrawn"))))
    await arrivals.all_in.wait()
    sender.cancel()
    with pytest.raises(anyrt.Cancelled):
        await sender
    assert await channel.receive() == "buffered"
    assert len(channel) == 0
    await channel.send("next")
    assert await channel.receive() == "next"


async def test_cancelled_event_waiter_does_not_block_the_others(runtime: anyrt.Runtime) -> None:
    event = anyrt.Event(runtime)
    arrivals = Arrivals(runtime, 2)
    cancelled = runtime.spawn(_await(arrivals.enter("cancelled", event.wait())))
    live = runtime.spawn(_await(arrivals.enter("live", event.wait())))
    await arrivals.all_in.wait()
    cancelled.cancel()
    with pytest.raises(anyrt.Cancelled):
        await cancelled
    event.set()
    await live
    assert live.done()


async def test_cancellation_reaches_the_innermost_await(runtime: anyrt.Runtime) -> None:
    trail: list[str] = []
    arrivals = Arrivals(runtime, 1)

    async def inner() -> None:
        try:
            await arrivals.enter("inner", runtime.sleep(FOREVER))
        finally:
            trail.append("inner")

    async def outer() -> None:
        try:
            await inner()
        finally:
            trail.append("outer")

    task = runtime.spawn(outer())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert trail == ["inner", "outer"]


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


@pytest.mark.parametrize("kind", list(SUSPENSIONS))
async def test_every_cancel_point_raises_in_a_cancelled_scope(
    runtime: anyrt.Runtime, kind: str
) -> None:
    async with SUSPENSIONS[kind](runtime) as suspension:
        with runtime.cancel_scope() as scope:
            scope.cancel()
            await suspension
            pytest.fail(f"{kind} returned inside a cancelled scope")
    assert scope.cancelled_caught


@pytest.mark.parametrize("kind", list(SUSPENSIONS))
async def test_a_cancelled_task_raises_at_every_cancel_point(
    runtime: anyrt.Runtime, kind: str
) -> None:
    arrivals = Arrivals(runtime, 1)
    raised: list[str] = []

    async def stubborn() -> None:
        try:
            await arrivals.enter("stubborn", runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            raised.append("first")
        # Setting the suspension up (connecting, say) and tearing it down are cancel
        # points too: they run under a shield, the suspension itself does not.
        manager = SUSPENSIONS[kind](runtime)
        with runtime.cancel_scope(shield=True):
            suspension = await manager.__aenter__()
        try:
            await suspension
        except runtime.cancelled_exc:
            raised.append(kind)
            raise
        finally:
            with runtime.cancel_scope(shield=True):
                await manager.__aexit__(None, None, None)

    task = runtime.spawn(stubborn())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert raised == ["first", kind]
    assert task.cancelled()


async def test_cancelled_tells_how_a_task_ended(runtime: anyrt.Runtime) -> None:
    async def returns() -> int:
        return 1

    async def fails() -> None:
        raise KeyError("failed")

    returned = runtime.spawn(returns())
    failed = runtime.spawn(fails())
    cancelled = runtime.spawn(runtime.sleep(FOREVER))
    cancelled.cancel()
    assert not returned.cancelled()  # not done yet, or done: either way not cancelled
    assert await returned == 1
    with pytest.raises(KeyError):
        await failed
    with pytest.raises(anyrt.Cancelled):
        await cancelled
    assert (returned.cancelled(), failed.cancelled(), cancelled.cancelled()) == (
        False,
        False,
        True,
    )
