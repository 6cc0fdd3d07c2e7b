"""The workloads written for raw asyncio, as an asyncio programmer would write them.

They run on any asyncio event loop: the default one (the ``asyncio`` runtime, the
baseline every other is compared with) and uvloop's. Each has the name, and measures
the same thing as, the anyrt version in `anyrt._bench.workloads`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import tracemalloc
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any, cast

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
    """Create ``n`` tasks that return at once, then await them all."""
    start = perf_counter()
    tasks = [asyncio.create_task(_return_at_once()) for _ in range(n)]
    for task in tasks:
        await task
    return {"tasks/s": n / (perf_counter() - start)}


async def yield_storm(n: int) -> Metrics:
    """Run ``n`` tasks that each ``await asyncio.sleep(0)`` `YIELDS_PER_TASK` times."""

    async def yielder() -> None:
        for _ in range(YIELDS_PER_TASK):
            await asyncio.sleep(0)

    start = perf_counter()
    tasks = [asyncio.create_task(yielder()) for _ in range(n)]
    for task in tasks:
        await task
    return {"switches/s": n * YIELDS_PER_TASK / (perf_counter() - start)}


async def ping_pong(n: int) -> Metrics:
    """Pass a token between two tasks ``n`` round trips, a fresh loop future per hop."""
    loop = asyncio.get_running_loop()

    async def ping(fut: asyncio.Future[Any]) -> None:
        for _ in range(n):
            reply: asyncio.Future[Any] = loop.create_future()
            fut.set_result(reply)
            fut = await reply
        fut.set_result(None)

    async def pong(fut: asyncio.Future[Any]) -> None:
        while (reply := await fut) is not None:
            fut = loop.create_future()
            reply.set_result(fut)

    start = perf_counter()
    first: asyncio.Future[Any] = loop.create_future()
    tasks = [asyncio.create_task(pong(first)), asyncio.create_task(ping(first))]
    del first  # else the first hop keeps every later one alive
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


async def ping_pong_event(n: int) -> Metrics:
    """`ping_pong` with a fresh `asyncio.Event` per hop."""

    async def ping(slot: Slot) -> None:
        for _ in range(n):
            reply = Slot(asyncio.Event())
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = Slot(asyncio.Event())
            reply.put(slot)

    start = perf_counter()
    first = Slot(asyncio.Event())
    tasks = [asyncio.create_task(pong(first)), asyncio.create_task(ping(first))]
    del first  # else the first hop keeps every later one alive
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


async def timers(n: int) -> Metrics:
    """Run ``n`` tasks that each ``asyncio.sleep`` a random 0-100 ms."""
    delays = timer_delays(n)

    async def sleeper(delay: float) -> float:
        deadline = perf_counter() + delay
        await asyncio.sleep(delay)
        return perf_counter() - deadline

    start = perf_counter()
    tasks = [asyncio.create_task(sleeper(delay)) for delay in delays]
    lateness = [await task for task in tasks]
    return timer_metrics(perf_counter() - start, delays, lateness)


async def tcp_echo(n: int, *, timeout: float | None = None) -> Metrics:
    """Echo over streams (`asyncio.start_server`, `asyncio.open_connection`).

    With ``timeout``, each round trip runs inside ``asyncio.timeout(timeout)``.
    """
    handlers_done = asyncio.Semaphore(0)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(TCP_READ_SIZE):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        handlers_done.release()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(n):
            if timeout is None:
                writer.write(TCP_MESSAGE)
                await writer.drain()
                await reader.readexactly(len(TCP_MESSAGE))
                continue
            async with asyncio.timeout(timeout):
                writer.write(TCP_MESSAGE)
                await writer.drain()
                await reader.readexactly(len(TCP_MESSAGE))

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(TCP_CLIENTS)]
    start = perf_counter()
    tasks = [asyncio.create_task(client(reader, writer)) for reader, writer in connections]
    for task in tasks:
        await task
    elapsed = perf_counter() - start
    for _, writer in connections:
        writer.close()
        await writer.wait_closed()
    for _ in connections:
        await handlers_done.acquire()
    server.close()
    await server.wait_closed()
    return {"round trips/s": TCP_CLIENTS * n / elapsed}


class _EchoServerProtocol(asyncio.Protocol):
    def __init__(self, closed: asyncio.Semaphore) -> None:
        self.closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.release()


class _EchoClientProtocol(asyncio.Protocol):
    """Sends the message, and again each time it has all come back, ``round_trips`` times."""

    def __init__(self, round_trips: int) -> None:
        self.remaining = round_trips
        self.received = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def start(self) -> None:
        self.transport.write(TCP_MESSAGE)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received < len(TCP_MESSAGE):
            return
        self.received = 0
        self.remaining -= 1
        if self.remaining:
            self.transport.write(TCP_MESSAGE)
        else:
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the echo server closed"))


async def tcp_echo_protocols(n: int) -> Metrics:
    """Echo with callback protocols (`loop.create_server`, `loop.create_connection`)."""
    loop = asyncio.get_running_loop()
    handlers_done = asyncio.Semaphore(0)
    server = await loop.create_server(lambda: _EchoServerProtocol(handlers_done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    protocols = []
    for _ in range(TCP_CLIENTS):
        _, protocol = await loop.create_connection(
            lambda: _EchoClientProtocol(n), "127.0.0.1", port
        )
        protocols.append(protocol)
    start = perf_counter()
    for protocol in protocols:
        protocol.start()
    for protocol in protocols:
        await protocol.done
    elapsed = perf_counter() - start
    for protocol in protocols:
        protocol.transport.close()
    for _ in protocols:
        await handlers_done.acquire()
    server.close()
    await server.wait_closed()
    return {"round trips/s": TCP_CLIENTS * n / elapsed}


async def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def hash_tasks(n: int) -> Metrics:
    """Run ``n`` tasks that each hash the same 1 MiB with SHA-256, in the task."""
    data = hash_input()
    start = perf_counter()
    tasks = [asyncio.create_task(_sha256(data)) for _ in range(n)]
    for task in tasks:
        await task
    return {"hashes/s": n / (perf_counter() - start)}


async def cross_thread(n: int) -> Metrics:
    """Wake a task ``n`` times from a plain thread: ``call_soon_threadsafe(fut.set_result)``."""
    loop = asyncio.get_running_loop()
    handoff = start_sender(n, lambda fut, i: loop.call_soon_threadsafe(fut.set_result, i))

    async def receiver() -> None:
        for i in range(n):
            fut: asyncio.Future[int] = loop.create_future()
            handoff.put(fut)
            if await fut != i:
                raise AssertionError("wake-ups arrived out of order")

    start = perf_counter()
    await asyncio.create_task(receiver())
    return {"wake-ups/s": n / (perf_counter() - start)}


async def channel_fan(n: int) -> Metrics:
    """8 producers to 8 consumers through one bounded `asyncio.Queue`.

    asyncio.Queue cannot be closed before Python 3.13, so once every producer is done,
    each consumer is sent a ``None`` that tells it to stop.
    """
    per_producer = channel_items(n)
    items: asyncio.Queue[int | None] = asyncio.Queue(CHANNEL_CAPACITY)

    async def produce() -> None:
        for item in range(per_producer):
            await items.put(item)

    async def consume() -> int:
        received = 0
        while await items.get() is not None:
            received += 1
        return received

    start = perf_counter()
    consumers = [asyncio.create_task(consume()) for _ in range(CHANNEL_CONSUMERS)]
    producers = [asyncio.create_task(produce()) for _ in range(CHANNEL_PRODUCERS)]
    for producer in producers:
        await producer
    for _ in consumers:
        await items.put(None)
    received = sum([await consumer for consumer in consumers])
    elapsed = perf_counter() - start
    check_received(received, n)
    return {"items/s": per_producer * CHANNEL_PRODUCERS / elapsed}


async def parked_memory(n: int) -> Metrics:
    """Park ``n`` tasks on one `asyncio.Event` and report the traced bytes per task."""
    wake = asyncio.Event()
    parked = ParkCount()

    async def parker() -> None:
        parked.arrive()
        await wake.wait()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(parker()) for _ in range(n)]
        while parked.value < n:
            await asyncio.sleep(0)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    wake.set()
    for task in tasks:
        await task
    return bytes_per_task(before, after, n)


WORKLOADS: dict[str, Callable[[int], Coroutine[Any, Any, Metrics]]] = {
    "spawn-join": spawn_join,
    "yield-storm": yield_storm,
    "ping-pong": ping_pong,
    "ping-pong-event": ping_pong_event,
    "timers": timers,
    "tcp-echo": tcp_echo,
    "tcp-echo-sharded": tcp_echo,
    "tcp-echo-timeout": functools.partial(tcp_echo, timeout=ROUND_TRIP_TIMEOUT),
    "tcp-echo-protocols": tcp_echo_protocols,
    "hash": hash_tasks,
    "hash-spread": hash_tasks,
    "cross-thread": cross_thread,
    "channel-fan": channel_fan,
    "parked-memory": parked_memory,
}
"""The asyncio version of each workload, by workload name."""
