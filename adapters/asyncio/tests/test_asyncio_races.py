"""Races between threads: a oneshot's value is delivered xor its receiver is cancelled."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from anyrt_asyncio import AsyncioRuntime

import anyrt

PAIRS = 1_000


@pytest.fixture(autouse=True)
def fine_switching() -> Iterator[None]:
    """Switch the GIL between threads every few microseconds, so racers interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


async def _race(rt: AsyncioRuntime, *, cancel_on_the_loop: bool, crossing: bool) -> int:
    pairs = [rt.oneshot() for _ in range(PAIRS)]
    entered = anyrt.Semaphore(rt, 0)

    async def receive(receiver: anyrt.Receiver[int]) -> int:
        entered.release()
        return await receiver

    tasks = [rt.spawn(receive(receiver)) for _, receiver in pairs]
    for _ in tasks:
        await entered.acquire()
    await rt.sleep(0)  # every receiver is parked now
    sent: list[bool | None] = [None] * PAIRS
    go = threading.Barrier(2 if not cancel_on_the_loop else 1)
    order = list(range(PAIRS))
    cancel_order = order[::-1] if crossing else order

    def send_all() -> None:
        go.wait(timeout=10)
        for index in order:
            sent[index] = pairs[index][0].send(index)

    def cancel_all() -> None:
        go.wait(timeout=10)
        for index in cancel_order:
            tasks[index].cancel()

    async with anyrt.TaskGroup(rt) as tg:
        tg.spawn(rt.spawn_blocking(send_all))
        if cancel_on_the_loop:
            for count, index in enumerate(cancel_order):
                tasks[index].cancel()
                if count % 10 == 0:
                    await rt.sleep(0)
        else:
            tg.spawn(rt.spawn_blocking(cancel_all))
    for index, task in enumerate(tasks):
        try:
            outcome: object = await task
        except anyrt.Cancelled:
            outcome = "cancelled"
        if sent[index]:
            assert outcome == index, f"pair {index}: send returned True, but {outcome}"
        else:
            assert sent[index] is False
            assert outcome == "cancelled", f"pair {index}: send returned False, got {outcome}"
    return sent.count(True)


@pytest.mark.parametrize(
    "cancel_on_the_loop", [False, True], ids=["thread-cancels", "loop-cancels"]
)
def test_send_racing_cancel_never_loses_or_doubles_a_value(
    rt: AsyncioRuntime, cancel_on_the_loop: bool
) -> None:
    async def main() -> int:
        delivered = 0
        for batch in range(4):
            delivered += await _race(
                rt, cancel_on_the_loop=cancel_on_the_loop, crossing=batch % 2 == 1
            )
        return delivered

    delivered = rt.block_on(main())
    assert 0 <= delivered <= 4 * PAIRS


def test_a_value_that_beats_a_cancel_is_returned_and_the_cancel_lands_later(
    rt: AsyncioRuntime,
) -> None:
    got: list[int] = []

    async def waiter(receiver: anyrt.Receiver[int], then_suspend: bool) -> int:
        value = await receiver
        got.append(value)
        if then_suspend:
            await anyrt.Event(rt).wait()  # the cancellation lands here
        return value

    async def main() -> None:
        for then_suspend in (False, True):
            sender, receiver = rt.oneshot()
            task = rt.spawn(waiter(receiver, then_suspend))
            await rt.sleep(0)  # parked on the receiver
            assert sender.send(7) is True
            task.cancel()  # too late: the value is already on its way
            if then_suspend:
                with pytest.raises(anyrt.Cancelled):
                    await task
            else:
                assert await task == 7  # no suspension left: the task keeps its result

    rt.block_on(main())
    assert got == [7, 7]


def test_an_expired_timeout_beaten_by_a_value_cancels_nothing_after_its_block(
    rt: AsyncioRuntime,
) -> None:
    async def main() -> str:
        sender, receiver = rt.oneshot()
        timeout = rt.timeout(3600)

        async def waiter() -> str:
            async with timeout:
                value = await receiver
            await rt.sleep(0.001)  # a stray re-delivered cancellation would land here
            return f"got {value}"

        task = rt.spawn(waiter())
        await rt.sleep(0)
        sender.send(1)
        timeout._expire()  # type: ignore[attr-defined]  # the timer fires at the same moment
        return await task

    assert rt.block_on(main()) == "got 1"
