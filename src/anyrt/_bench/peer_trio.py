"""The workloads written for raw trio, as a trio programmer would write them.

Tasks live in nurseries (trio has no join handles: a nursery's end is the join), the
one-shot wake-up of ping-pong and cross-thread is trio's own -
`trio.lowlevel.wait_task_rescheduled` and `trio.lowlevel.reschedule`, which
`trio.Event` is built on - and sockets are trio streams. Each function has the name,
and measures the same thing as, the anyrt version in `anyrt._bench.workloads`.
"""

from __future__ import annotations

import functools
import hashlib
import tracemalloc
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

import outcome
import trio

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


class Oneshot:
    """trio's one-shot wake-up: the receiver parks its task, `send` reschedules it.

    `send` must run in the trio thread (from another thread, through
    `trio.lowlevel.TrioToken.run_sync_soon`).
    """

    __slots__ = ("_sent", "_task", "_value")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._sent = False
        self._value: Any = None

    def send(self, value: object) -> None:
        """Deliver ``value``: wake the parked receiver, or keep it for the receiver."""
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Value(value))
        else:
            self._value, self._sent = value, True

    async def receive(self) -> Any:
        """Wait for the value (a checkpoint either way, as every trio wait is)."""
        if self._sent:
            await trio.lowlevel.checkpoint()
            return self._value
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


async def _return_at_once() -> None:
    return None


async def spawn_join(n: int) -> Metrics:
    """Start ``n`` tasks that return at once in a nursery; its end joins them."""
    start = perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_return_at_once)
    return {"tasks/s": n / (perf_counter() - start)}


async def yield_storm(n: int) -> Metrics:
    """Run ``n`` tasks that each ``await trio.sleep(0)`` `YIELDS_PER_TASK` times."""

    async def yielder() -> None:
        for _ in range(YIELDS_PER_TASK):
            await trio.sleep(0)

    start = perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(yielder)
    return {"switches/s": n * YIELDS_PER_TASK / (perf_counter() - start)}


async def ping_pong(n: int) -> Metrics:
    """Pass a token between two tasks ``n`` round trips, a fresh `Oneshot` per hop."""

    async def ping(box: Oneshot) -> None:
        for _ in range(n):
            reply = Oneshot()
            box.send(reply)
            box = await reply.receive()
        box.send(None)

    async def pong(box: Oneshot) -> None:
        while (reply := await box.receive()) is not None:
            box = Oneshot()
            reply.send(box)

    start = perf_counter()
    first = Oneshot()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pong, first)
        nursery.start_soon(ping, first)
        del first  # else the first hop keeps every later one alive
    return {"round trips/s": n / (perf_counter() - start)}


async def ping_pong_event(n: int) -> Metrics:
    """`ping_pong` with a fresh `trio.Event` per hop."""

    async def ping(slot: Slot) -> None:
        for _ in range(n):
            reply = Slot(trio.Event())
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = Slot(trio.Event())
            reply.put(slot)

    start = perf_counter()
    first = Slot(trio.Event())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pong, first)
        nursery.start_soon(ping, first)
        del first  # else the first hop keeps every later one alive
    return {"round trips/s": n / (perf_counter() - start)}


async def timers(n: int) -> Metrics:
    """Run ``n`` tasks that each ``trio.sleep`` a random 0-100 ms."""
    delays = timer_delays(n)
    lateness: list[float] = []

    async def sleeper(delay: float) -> None:
        deadline = perf_counter() + delay
        await trio.sleep(delay)
        lateness.append(perf_counter() - deadline)

    start = perf_counter()
    async with trio.open_nursery() as nursery:
        for delay in delays:
            nursery.start_soon(sleeper, delay)
    return timer_metrics(perf_counter() - start, delays, lateness)


async def tcp_echo(n: int, *, timeout: float | None = None) -> Metrics:
    """Echo over trio streams (`trio.serve_tcp`, `trio.open_tcp_stream`)."""
    size = len(TCP_MESSAGE)
    open_handlers = TCP_CLIENTS
    handlers_done = trio.Event()

    async def echo(stream: trio.SocketStream) -> None:
        nonlocal open_handlers
        while data := await stream.receive_some(TCP_READ_SIZE):
            await stream.send_all(data)
        open_handlers -= 1
        if not open_handlers:
            handlers_done.set()

    async def round_trip(stream: trio.SocketStream) -> None:
        await stream.send_all(TCP_MESSAGE)
        received = 0
        while received < size:
            data = await stream.receive_some(size - received)
            if not data:
                raise ConnectionError("the echo server closed the connection")
            received += len(data)

    async def client(stream: trio.SocketStream) -> None:
        for _ in range(n):
            if timeout is None:
                await round_trip(stream)
            else:
                with trio.fail_after(timeout):
                    await round_trip(stream)

    async with trio.open_nursery() as server:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners: list[trio.SocketListener] = await server.start(serve, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(TCP_CLIENTS)]
        start = perf_counter()
        async with trio.open_nursery() as clients:
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
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_sha256, data)
    return {"hashes/s": n / (perf_counter() - start)}


async def cross_thread(n: int) -> Metrics:
    """Wake a task ``n`` times from a plain thread: ``run_sync_soon(box.send, i)``."""
    token = trio.lowlevel.current_trio_token()
    handoff = start_sender(n, lambda box, i: token.run_sync_soon(box.send, i))
    start = perf_counter()
    for i in range(n):
        box = Oneshot()
        handoff.put(box)
        if await box.receive() != i:
            raise AssertionError("wake-ups arrived out of order")
    return {"wake-ups/s": n / (perf_counter() - start)}


async def channel_fan(n: int) -> Metrics:
    """8 producers to 8 consumers through one `trio.open_memory_channel`.

    Each producer and consumer gets its own clone of the channel's end and closes it
    when done: the consumers' ``async for`` ends once every send clone is closed.
    """
    per_producer = channel_items(n)
    received: list[int] = []

    async def produce(send: trio.MemorySendChannel[int]) -> None:
        async with send:
            for item in range(per_producer):
                await send.send(item)

    async def consume(receive: trio.MemoryReceiveChannel[int]) -> None:
        count = 0
        async with receive:
            async for _ in receive:
                count += 1
        received.append(count)

    start = perf_counter()
    send, receive = trio.open_memory_channel[int](CHANNEL_CAPACITY)
    async with trio.open_nursery() as nursery, send, receive:
        for _ in range(CHANNEL_CONSUMERS):
            nursery.start_soon(consume, receive.clone())
        for _ in range(CHANNEL_PRODUCERS):
            nursery.start_soon(produce, send.clone())
    elapsed = perf_counter() - start
    check_received(sum(received), n)
    return {"items/s": per_producer * CHANNEL_PRODUCERS / elapsed}


async def parked_memory(n: int) -> Metrics:
    """Park ``n`` tasks of a nursery on one `trio.Event`; report traced bytes per task."""
    wake = trio.Event()
    parked = ParkCount()

    async def parker() -> None:
        parked.arrive()
        await wake.wait()

    async with trio.open_nursery() as nursery:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                nursery.start_soon(parker)
            while parked.value < n:
                await trio.sleep(0)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        wake.set()
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
    "hash": hash_tasks,
    "hash-spread": hash_tasks,
    "cross-thread": cross_thread,
    "channel-fan": channel_fan,
    "parked-memory": parked_memory,
}
"""The trio version of each workload it has a fair one for, by workload name."""
