"""The workloads written for raw anyio, as an anyio programmer would write them.

They run on both of anyio's backends (``anyio.run(..., backend="asyncio")`` and
``backend="trio"``): tasks live in task groups, wake-ups go through `anyio.Event`
(anyio has no lower-level one-shot), channels are memory object streams, sockets are
anyio streams. Each function has the name, and measures the same thing as, the anyrt
version in `anyrt._bench.workloads`.
"""

from __future__ import annotations

import functools
import hashlib
import tracemalloc
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .common import (
    CHANNEL_CAPACITY,
    CHANNEL_CONSUMERS,
    CHANNEL_PRODUCERS,
    ROUND_TRIP_TIMEOUT,
    TCP_CLIENTS,
    TCP_MESSAGE,
    TCP_READ_SIZE,
    YIELDS_PER_TASK,
    Metrics,
    ParkCount,
    Slot,
    bytes_per_task,
    channel_items,
    check_received,
    hash_input,
    start_sender,
    timer_delays,
    timer_metrics,
)


async def _return_at_once() -> None:
    return None


async def spawn_join(n: int) -> Metrics:
    """Start ``n`` tasks that return at once in a task group; its end joins them."""
    start = perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(_return_at_once)
    return {"tasks/s": n / (perf_counter() - start)}


async def yield_storm(n: int) -> Metrics:
    """Run ``n`` tasks that each ``await anyio.sleep(0)`` `YIELDS_PER_TASK` times."""

    async def yielder() -> None:
        for _ in range(YIELDS_PER_TASK):
            await anyio.sleep(0)

    start = perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(yielder)
    return {"switches/s": n * YIELDS_PER_TASK / (perf_counter() - start)}


async def ping_pong_event(n: int) -> Metrics:
    """Pass a token between two tasks ``n`` round trips, a fresh `anyio.Event` per hop."""

    async def ping(slot: Slot) -> None:
        for _ in range(n):
            reply = Slot(anyio.Event())
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = Slot(anyio.Event())
            reply.put(slot)

    start = perf_counter()
    first = Slot(anyio.Event())
    async with anyio.create_task_group() as tg:
        tg.start_soon(pong, first)
        tg.start_soon(ping, first)
        del first  # else the first hop keeps every later one alive
    return {"round trips/s": n / (perf_counter() - start)}


async def timers(n: int) -> Metrics:
    """Run ``n`` tasks that each ``anyio.sleep`` a random 0-100 ms."""
    delays = timer_delays(n)
    lateness: list[float] = []

    async def sleeper(delay: float) -> None:
        deadline = perf_counter() + delay
        await anyio.sleep(delay)
        lateness.append(perf_counter() - deadline)

    start = perf_counter()
    async with anyio.create_task_group() as tg:
        for delay in delays:
            tg.start_soon(sleeper, delay)
    return timer_metrics(perf_counter() - start, delays, lateness)


async def tcp_echo(n: int, *, timeout: float | None = None) -> Metrics:
    """Echo over anyio streams (`anyio.create_tcp_listener`, `anyio.connect_tcp`)."""
    size = len(TCP_MESSAGE)
    open_handlers = TCP_CLIENTS
    handlers_done = anyio.Event()

    async def echo(stream: SocketStream) -> None:
        nonlocal open_handlers
        async with stream:
            while True:
                try:
                    data = await stream.receive(TCP_READ_SIZE)
                except anyio.EndOfStream:
                    break
                await stream.send(data)
        open_handlers -= 1
        if not open_handlers:
            handlers_done.set()

    async def round_trip(stream: SocketStream) -> None:
        await stream.send(TCP_MESSAGE)
        received = 0
        while received < size:
            received += len(await stream.receive(size - received))

    async def client(stream: SocketStream) -> None:
        for _ in range(n):
            if timeout is None:
                await round_trip(stream)
            else:
                with anyio.fail_after(timeout):
                    await round_trip(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as server:
        server.start_soon(listener.serve, echo)
        streams = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(TCP_CLIENTS)]
        start = perf_counter()
        async with anyio.create_task_group() as clients:
            for stream in streams:
                clients.start_soon(client, stream)
        elapsed = perf_counter() - start
        for stream in streams:
            await stream.aclose()
        await handlers_done.wait()
        server.cancel_scope.cancel()
    return {"round trips/s": TCP_CLIENTS * n / elapsed}


async def _sha256(data: bytes) -> None:
    hashlib.sha256(data).digest()


async def hash_tasks(n: int) -> Metrics:
    """Run ``n`` tasks that each hash the same 1 MiB with SHA-256, in the task."""
    data = hash_input()
    start = perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(_sha256, data)
    return {"hashes/s": n / (perf_counter() - start)}


async def cross_thread(n: int) -> Metrics:
    """Wake a task ``n`` times from a plain thread: ``from_thread.run_sync(slot.put, i)``.

    `anyio.from_thread.run_sync` waits until the event loop has run the call, so the
    thread also waits for the loop on every wake-up: that is anyio's way.
    """
    token = anyio.lowlevel.current_token()
    handoff = start_sender(n, lambda slot, i: anyio.from_thread.run_sync(slot.put, i, token=token))
    start = perf_counter()
    for i in range(n):
        slot = Slot(anyio.Event())
        handoff.put(slot)
        if await slot.get() != i:
            raise AssertionError("wake-ups arrived out of order")
    return {"wake-ups/s": n / (perf_counter() - start)}


async def channel_fan(n: int) -> Metrics:
    """8 producers to 8 consumers through one `anyio.create_memory_object_stream`.

    Each producer and consumer gets its own clone of the stream's end and closes it when
    done: the consumers' ``async for`` ends once every send clone is closed.
    """
    per_producer = channel_items(n)
    received: list[int] = []

    async def produce(send: MemoryObjectSendStream[int]) -> None:
        async with send:
            for item in range(per_producer):
                await send.send(item)

    async def consume(receive: MemoryObjectReceiveStream[int]) -> None:
        count = 0
        async with receive:
            async for _ in receive:
                count += 1
        received.append(count)

    start = perf_counter()
    send, receive = anyio.create_memory_object_stream[int](CHANNEL_CAPACITY)
    async with anyio.create_task_group() as tg, send, receive:
        for _ in range(CHANNEL_CONSUMERS):
            tg.start_soon(consume, receive.clone())
        for _ in range(CHANNEL_PRODUCERS):
            tg.start_soon(produce, send.clone())
    elapsed = perf_counter() - start
    check_received(sum(received), n)
    return {"items/s": per_producer * CHANNEL_PRODUCERS / elapsed}


async def parked_memory(n: int) -> Metrics:
    """Park ``n`` tasks of a task group on one `anyio.Event`; report traced bytes per task."""
    wake = anyio.Event()
    parked = ParkCount()

    async def parker() -> None:
        parked.arrive()
        await wake.wait()

    async with anyio.create_task_group() as tg:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                tg.start_soon(parker)
            while parked.value < n:
                await anyio.sleep(0)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        wake.set()
    return bytes_per_task(before, after, n)


WORKLOADS: dict[str, Callable[[int], Coroutine[Any, Any, Metrics]]] = {
    "spawn-join": spawn_join,
    "yield-storm": yield_storm,
    "ping-pong": ping_pong_event,
    "ping-pong-event": ping_pong_event,
    "timers": timers,
    "tcp-echo": tcp_echo,
    "tcp-echo-sharded": tcp_echo,
    "tcp-echo-timeout": functools.partial(tcp_echo, timeout=ROUND_TRIP_TIMEOUT),
    "hash": hash_tasks,
    "hash-spread": hash_tasks,
    "cross-thread": cross_thread,
    "channel-fan": channel_fan,
    "parked-memory": parked_memory,
}
"""The anyio version of each workload it has a fair one for, by workload name."""
