"""`Channel`: backpressure, closing, fairness, rendezvous, and no lost or doubled items."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals

WAITERS = 8


async def test_items_come_out_in_order(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 4)

    async def produce() -> None:
        for item in range(100):
            await channel.send(item)
        channel.close()

    task = runtime.spawn(produce())
    assert [item async for item in channel] == list(range(100))
    await task


async def test_sender_blocks_while_full(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 2)
    assert channel.capacity == 2
    await channel.send(1)
    await channel.send(2)
    assert len(channel) == 2
    with pytest.raises(TimeoutError):
        async with runtime.timeout(0.01):
            await channel.send(3)  # full: waits, and the timeout withdraws it
    assert await channel.receive() == 1
    async with runtime.timeout(10):
        await channel.send(3)  # room again: does not wait for long
    assert [await channel.receive(), await channel.receive()] == [2, 3]
    assert len(channel) == 0


async def test_blocked_sender_resumes_when_a_slot_frees(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 1)
    await channel.send(1)
    arrivals = Arrivals(runtime, 1)
    sent: list[int] = []

    async def send_second() -> None:
        await arrivals.enter("sender", channel.send(2))
        sent.append(2)

    task = runtime.spawn(send_second())
    await arrivals.all_in.wait()
    assert sent == []
    assert await channel.receive() == 1
    await task
    assert sent == [2]
    assert await channel.receive() == 2


async def test_close_lets_receivers_drain_then_ends_iteration(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[str](runtime, 3)
    for item in "abc":
        await channel.send(item)
    channel.close()
    channel.close()  # idempotent
    assert channel.closed()
    assert [item async for item in channel] == ["a", "b", "c"]
    with pytest.raises(anyrt.EndOfChannel):
        await channel.receive()


async def test_send_after_close_raises(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 3)
    channel.close()
    with pytest.raises(anyrt.ClosedResourceError):
        await channel.send(1)


async def test_close_wakes_waiting_receivers_and_senders(runtime: anyrt.Runtime) -> None:
    empty = anyrt.Channel[int](runtime, 1)
    full = anyrt.Channel[int](runtime, 1)
    await full.send(0)
    arrivals = Arrivals(runtime, 2)

    async def receive() -> int:
        return await arrivals.enter("receiver", empty.receive())

    async def send() -> None:
        await arrivals.enter("sender", full.send(1))

    receiver = runtime.spawn(receive())
    sender = runtime.spawn(send())
    await arrivals.all_in.wait()
    empty.close()
    full.close()
    with pytest.raises(anyrt.EndOfChannel):
        await receiver
    with pytest.raises(anyrt.ClosedResourceError):
        await sender
    assert [item async for item in full] == [0]  # the blocked item was not sent


async def test_async_for_ends_when_the_channel_closes(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 0)
    got_one = anyrt.Event(runtime)

    async def iterate() -> list[int]:
        items = []
        async for item in channel:
            items.append(item)
            got_one.set()
        return items

    task = runtime.spawn(iterate())
    await channel.send(1)
    await got_one.wait()
    channel.close()
    assert await task == [1]


async def test_waiting_receivers_are_served_fifo(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 0)
    arrivals = Arrivals(runtime, WAITERS)
    served = anyrt.Channel[tuple[object, int]](runtime, WAITERS)

    async def receive(index: int) -> None:
        item = await arrivals.enter(index, channel.receive())
        await served.send((index, item))

    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(WAITERS):
            tg.spawn(receive(index))
        await arrivals.all_in.wait()
        order = []
        for item in range(WAITERS):
            await channel.send(item)
            order.append(await served.receive())  # one hand-off at a time
    assert order == list(zip(arrivals.order, range(WAITERS), strict=True))


async def test_waiting_senders_are_served_fifo(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[object](runtime, 1)
    await channel.send("buffered")
    arrivals = Arrivals(runtime, WAITERS)

    async def send(index: int) -> None:
        await arrivals.enter(index, channel.send(index))

    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(WAITERS):
            tg.spawn(send(index))
        await arrivals.all_in.wait()
        received = [await channel.receive() for _ in range(WAITERS + 1)]
    assert received == ["buffered", *arrivals.order]


async def test_capacity_zero_is_a_rendezvous(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[str](runtime, 0)
    with pytest.raises(TimeoutError):
        async with runtime.timeout(0.01):
            await channel.send("nobody takes it")
    assert len(channel) == 0
    arrivals = Arrivals(runtime, 1)
    receiver = runtime.spawn(_receive(arrivals, channel))
    await arrivals.all_in.wait()
    await channel.send("taken")
    assert await receiver == "taken"


async def _receive(arrivals: Arrivals, channel: anyrt.Channel[str]) -> str:
    return await arrivals.enter("receiver", channel.receive())


async def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    runtime: anyrt.Runtime,
) -> None:
    channel = anyrt.Channel[int](runtime, 4)
    producers, consumers, per_producer = 8, 8, 500

    async def produce(start: int) -> None:
        for item in range(start, start + per_producer):
            await channel.send(item)

    async def consume() -> list[int]:
        return [item async for item in channel]

    consuming = [runtime.spawn(consume()) for _ in range(consumers)]
    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(producers):
            tg.spawn(produce(index * per_producer))
    channel.close()
    received: Counter[int] = Counter()
    for task in consuming:
        received.update(await task)
    assert received == Counter(range(producers * per_producer))


@pytest.mark.anyrt_requires("threads")
async def test_blocking_send_and_receive_from_plain_threads(runtime: anyrt.Runtime) -> None:
    to_task = anyrt.Channel[int](runtime, 2)
    from_task = anyrt.Channel[int](runtime, 2)
    echoed: list[int] = []

    def thread_main() -> None:
        for item in range(50):
            to_task.send_blocking(item, timeout=10)
            echoed.append(from_task.receive_blocking(timeout=10))
        to_task.close()

    thread = threading.Thread(target=thread_main)
    thread.start()
    async for item in to_task:
        await from_task.send(item * 10)
    thread.join()
    assert echoed == [item * 10 for item in range(50)]


@pytest.mark.anyrt_requires("threads")
def test_receive_blocking_times_out(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 1)
    with pytest.raises(TimeoutError):
        channel.receive_blocking(timeout=0.01)
    channel.send_blocking(1)
    with pytest.raises(TimeoutError):
        channel.send_blocking(2, timeout=0.01)
    assert channel.receive_blocking() == 1
    channel.close()
    with pytest.raises(anyrt.EndOfChannel):
        channel.receive_blocking()


async def test_blocking_calls_from_a_task_are_refused(runtime: anyrt.Runtime) -> None:
    """They would stall the thread that runs the task (and maybe every other task)."""
    channel: anyrt.Channel[int] = anyrt.Channel(runtime, 1)
    with pytest.raises(RuntimeError, match=r"send_blocking\(\) blocks the thread.*await"):
        channel.send_blocking(1)
    with pytest.raises(RuntimeError, match=r"receive_blocking\(\) blocks the thread.*await"):
        channel.receive_blocking()
