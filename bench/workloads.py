"""The benchmark workloads, each written once against `anyrt.Runtime` and once for asyncio.

The anyrt version of a workload only uses the `anyrt.Runtime` protocol (and the generic
primitives built on it), so it runs unchanged on every anyrt backend. The asyncio version
is what an asyncio programmer would write: `asyncio.create_task`, `asyncio.sleep(0)`,
loop futures, `asyncio.sleep`.

Every workload function runs inside an already running runtime (or event loop), times
itself with `time.perf_counter` - so runtime start-up and shutdown are not measured - and
returns its metrics as a dict. `WORKLOADS` describes them for the runner.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar, cast

import anyrt

T = TypeVar("T")

Metrics = dict[str, float]

TIMER_SEED = 20240601
"""The fixed seed of the timers workload's random delays."""

TIMER_MAX_DELAY = 0.1
"""The timers workload sleeps a random 0 to this many seconds."""

YIELDS_PER_TASK = 100
"""How many times each task of the yield storm yields."""

TCP_CLIENTS = 50
"""How many clients the TCP echo workloads connect at once."""

TCP_MESSAGE = b"x" * 64
"""What a TCP echo client sends, and waits to read back, per round trip."""

HASH_INPUT_SIZE = 1 << 20
"""How many bytes each task of the hash workload hashes."""


# -- spawn+join: task creation and completion --------------------------------------------


async def _return_at_once() -> None:
    return None


async def spawn_join(rt: anyrt.Runtime, n: int) -> Metrics:
    """Spawn ``n`` tasks that return at once, then join them all."""
    start = perf_counter()
    tasks = [rt.spawn(_return_at_once()) for _ in range(n)]
    for task in tasks:
        await task
    return {"tasks/s": n / (perf_counter() - start)}


async def spawn_join_asyncio(n: int) -> Metrics:
    """`spawn_join` for asyncio."""
    start = perf_counter()
    tasks = [asyncio.create_task(_return_at_once()) for _ in range(n)]
    for task in tasks:
        await task
    return {"tasks/s": n / (perf_counter() - start)}


# -- yield storm: the cost of a task switch ----------------------------------------------


async def yield_storm(rt: anyrt.Runtime, n: int, yields: int = YIELDS_PER_TASK) -> Metrics:
    """Run ``n`` tasks that each yield ``yields`` times with ``sleep(0)``."""

    async def yielder() -> None:
        for _ in range(yields):
            await rt.sleep(0)

    start = perf_counter()
    tasks = [rt.spawn(yielder()) for _ in range(n)]
    for task in tasks:
        await task
    return {"switches/s": n * yields / (perf_counter() - start)}


async def yield_storm_asyncio(n: int, yields: int = YIELDS_PER_TASK) -> Metrics:
    """`yield_storm` for asyncio."""

    async def yielder() -> None:
        for _ in range(yields):
            await asyncio.sleep(0)

    start = perf_counter()
    tasks = [asyncio.create_task(yielder()) for _ in range(n)]
    for task in tasks:
        await task
    return {"switches/s": n * yields / (perf_counter() - start)}


# -- ping-pong: waking one task from another ---------------------------------------------
#
# Each message carries the sending half on which to answer, so every hop goes through a
# fresh one-shot wake-up: ping sends "answer here", pong answers with "and send the next
# one here". A round trip is two hops: two wake-ups and two task switches.


async def ping_pong(rt: anyrt.Runtime, n: int) -> Metrics:
    """Pass a token between two tasks ``n`` round trips, a fresh `oneshot` per hop."""

    async def ping(tx: anyrt.Sender[Any]) -> None:
        reply_rx: anyrt.Receiver[Any]
        for _ in range(n):
            reply_tx, reply_rx = rt.oneshot()
            tx.send(reply_tx)
            tx = await reply_rx
        tx.send(None)

    async def pong(rx: anyrt.Receiver[Any]) -> None:
        tx: anyrt.Sender[Any]
        while (reply_tx := await rx) is not None:
            tx, rx = rt.oneshot()
            reply_tx.send(tx)

    start = perf_counter()
    first_tx: anyrt.Sender[Any]
    first_tx, first_rx = rt.oneshot()
    tasks = [rt.spawn(pong(first_rx)), rt.spawn(ping(first_tx))]
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


async def ping_pong_asyncio(n: int) -> Metrics:
    """`ping_pong` for asyncio, a fresh loop future per hop."""
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
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


class _Slot:
    """An event plus a value: `put` publishes the value, `get` waits for it."""

    __slots__ = ("event", "value")

    def __init__(self, event: anyrt.Event | asyncio.Event) -> None:
        self.event = event
        self.value: Any = None

    def put(self, value: object) -> None:
        self.value = value
        self.event.set()

    async def get(self) -> Any:
        await self.event.wait()
        return self.value


async def ping_pong_event(rt: anyrt.Runtime, n: int) -> Metrics:
    """`ping_pong` over `anyrt.Event`, a fresh event per hop (events cannot be cleared)."""

    async def ping(slot: _Slot) -> None:
        for _ in range(n):
            reply = _Slot(anyrt.Event(rt))
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: _Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = _Slot(anyrt.Event(rt))
            reply.put(slot)

    start = perf_counter()
    first = _Slot(anyrt.Event(rt))
    tasks = [rt.spawn(pong(first)), rt.spawn(ping(first))]
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


async def ping_pong_event_asyncio(n: int) -> Metrics:
    """`ping_pong_event` for asyncio, a fresh `asyncio.Event` per hop."""

    async def ping(slot: _Slot) -> None:
        for _ in range(n):
            reply = _Slot(asyncio.Event())
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: _Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = _Slot(asyncio.Event())
            reply.put(slot)

    start = perf_counter()
    first = _Slot(asyncio.Event())
    tasks = [asyncio.create_task(pong(first)), asyncio.create_task(ping(first))]
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


# -- timers: many sleeping tasks, how late they wake -------------------------------------
#
# Each task notes its deadline just before it sleeps and reports how late it woke up,
# both on `perf_counter`, which every runtime is compared on. The ideal wall time is the
# longest delay (just under 100 ms); the overhead is what the run took beyond it.


def timer_delays(n: int, max_delay: float = TIMER_MAX_DELAY, seed: int = TIMER_SEED) -> list[float]:
    """Return the ``n`` random delays, from 0 to ``max_delay`` seconds, of the timers run."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, max_delay) for _ in range(n)]


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``fraction`` in [0, 1])."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[rank - 1]


def _timer_metrics(elapsed: float, delays: list[float], lateness: list[float]) -> Metrics:
    return {
        "overhead ms": (elapsed - max(delays)) * 1e3,
        "lateness p50 ms": percentile(lateness, 0.50) * 1e3,
        "lateness p99 ms": percentile(lateness, 0.99) * 1e3,
    }


async def timers(rt: anyrt.Runtime, n: int) -> Metrics:
    """Run ``n`` tasks that each sleep a random 0-100 ms; needs a real clock."""
    delays = timer_delays(n)

    async def sleeper(delay: float) -> float:
        deadline = perf_counter() + delay
        await rt.sleep(delay)
        return perf_counter() - deadline

    start = perf_counter()
    tasks = [rt.spawn(sleeper(delay)) for delay in delays]
    lateness = [await task for task in tasks]
    return _timer_metrics(perf_counter() - start, delays, lateness)


async def timers_asyncio(n: int) -> Metrics:
    """`timers` for asyncio."""
    delays = timer_delays(n)

    async def sleeper(delay: float) -> float:
        deadline = perf_counter() + delay
        await asyncio.sleep(delay)
        return perf_counter() - deadline

    start = perf_counter()
    tasks = [asyncio.create_task(sleeper(delay)) for delay in delays]
    lateness = [await task for task in tasks]
    return _timer_metrics(perf_counter() - start, delays, lateness)


# -- tcp-echo: real sockets --------------------------------------------------------------
#
# An echo server and its clients in one runtime (one event loop), over 127.0.0.1. The
# clients connect first; the clock runs while every client does its round trips: send
# 64 bytes, read until the 64 bytes came back, again. Then the clients disconnect and
# the run waits for every server handler to see the end of its stream. On a runtime
# without an OS (the single-threaded one) the same code runs over the in-memory network.


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


async def _echo_client(stream: anyrt.ByteStream, round_trips: int) -> None:
    size = len(TCP_MESSAGE)
    for _ in range(round_trips):
        await stream.send(TCP_MESSAGE)
        received = 0
        while received < size:
            data = await stream.receive(size - received)
            if not data:
                raise ConnectionError("the echo server closed the connection")
            received += len(data)


async def tcp_echo(
    rt: anyrt.Runtime, n: int, clients: int = TCP_CLIENTS, *, reuse_port: bool = False
) -> Metrics:
    """Echo ``n`` round trips of 64 bytes on each of ``clients`` connections at once."""
    handlers_done = anyrt.Semaphore(rt, 0)

    async def echo(stream: anyrt.ByteStream) -> None:
        await _echo(stream)
        handlers_done.release()

    listener = await rt.listen_tcp("127.0.0.1", 0, reuse_port=reuse_port)
    server = rt.spawn(listener.serve(echo))
    streams = [await rt.connect_tcp(*listener.address) for _ in range(clients)]
    start = perf_counter()
    tasks = [_spread(rt, index, _echo_client(stream, n)) for index, stream in enumerate(streams)]
    for task in tasks:
        await task
    elapsed = perf_counter() - start
    for stream in streams:
        await stream.aclose()
    for _ in streams:
        await handlers_done.acquire()
    await listener.aclose()
    await server
    return {"round trips/s": clients * n / elapsed}


def _spread(rt: anyrt.Runtime, index: int, coro: Coroutine[Any, Any, T]) -> anyrt.Task[T]:
    """Spawn ``coro``; on a runtime with ``spawn_on`` (thread-per-core), on core i mod N.

    A task spawned from a thread-per-core task stays on its core, so without this every
    client would share the main task's core.
    """
    spawn_on = getattr(rt, "spawn_on", None)
    if spawn_on is None:
        return rt.spawn(coro)
    task: anyrt.Task[T] = spawn_on(index % getattr(rt, "cores", 1), coro)
    return task


async def tcp_echo_sharded(rt: anyrt.Runtime, n: int) -> Metrics:
    """`tcp_echo` on a ``reuse_port`` listener: one socket (and accept loop) per core."""
    return await tcp_echo(rt, n, reuse_port=True)


async def tcp_echo_asyncio(n: int, clients: int = TCP_CLIENTS) -> Metrics:
    """`tcp_echo` for asyncio, with streams (`asyncio.start_server`, `open_connection`)."""
    handlers_done = asyncio.Semaphore(0)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        handlers_done.release()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(n):
            writer.write(TCP_MESSAGE)
            await writer.drain()
            await reader.readexactly(len(TCP_MESSAGE))

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
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
    return {"round trips/s": clients * n / elapsed}


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


async def tcp_echo_protocols_asyncio(n: int, clients: int = TCP_CLIENTS) -> Metrics:
    """`tcp_echo` for asyncio, with protocols (`loop.create_server`, `create_connection`)."""
    loop = asyncio.get_running_loop()
    handlers_done = asyncio.Semaphore(0)
    server = await loop.create_server(lambda: _EchoServerProtocol(handlers_done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    protocols = []
    for _ in range(clients):
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
    return {"round trips/s": clients * n / elapsed}


# -- hash: CPU work that releases the GIL ------------------------------------------------
#
# `hashlib` releases the GIL while it hashes a large buffer, so tasks hashing right in
# the task (no spawn_blocking) run in parallel on a runtime with several worker threads
# and one after the other on an event loop.


def hash_input() -> bytes:
    """Return the `HASH_INPUT_SIZE` bytes every task of the hash workload hashes."""
    return bytes(range(256)) * (HASH_INPUT_SIZE // 256)


async def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def hash_tasks(rt: anyrt.Runtime, n: int) -> Metrics:
    """Run ``n`` tasks that each hash the same 1 MiB with SHA-256, all spawned from one task.

    On thread-per-core they all stay on the spawning task's core: a skewed load.
    """
    data = hash_input()
    start = perf_counter()
    tasks = [rt.spawn(_sha256(data)) for _ in range(n)]
    for task in tasks:
        await task
    return {"hashes/s": n / (perf_counter() - start)}


async def hash_tasks_spread(rt: anyrt.Runtime, n: int) -> Metrics:
    """`hash_tasks`, with the tasks dealt out over the cores where the runtime can."""
    data = hash_input()
    start = perf_counter()
    tasks = [_spread(rt, index, _sha256(data)) for index in range(n)]
    for task in tasks:
        await task
    return {"hashes/s": n / (perf_counter() - start)}


async def hash_tasks_asyncio(n: int) -> Metrics:
    """`hash_tasks` for asyncio."""
    data = hash_input()
    start = perf_counter()
    tasks = [asyncio.create_task(_sha256(data)) for _ in range(n)]
    for task in tasks:
        await task
    return {"hashes/s": n / (perf_counter() - start)}


# -- cross-thread: a plain thread wakes a task -------------------------------------------
#
# For each wake-up the task makes a fresh one-shot pair (asyncio: a loop future), hands
# the sending half to a plain thread through a queue and waits; the thread takes it and
# sends. Every send thus comes from outside the runtime, at a moment the task is (about
# to be) parked on it.


def _start_sender(n: int, deliver: Callable[[Any, int], object]) -> queue.SimpleQueue[Any]:
    """Start a thread that calls ``deliver(q.get(), i)`` for i in 0..n-1; return q."""
    handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def sender() -> None:
        for i in range(n):
            deliver(handoff.get(), i)

    threading.Thread(target=sender, name="bench-sender", daemon=True).start()
    return handoff


async def cross_thread(rt: anyrt.Runtime, n: int) -> Metrics:
    """Wake a task ``n`` times from a plain thread, a fresh `oneshot` per wake-up."""
    handoff = _start_sender(n, lambda tx, i: tx.send(i))

    async def receiver() -> None:
        for i in range(n):
            tx: anyrt.Sender[int]
            tx, rx = rt.oneshot()
            handoff.put(tx)
            if await rx != i:
                raise AssertionError("wake-ups arrived out of order")

    start = perf_counter()
    await rt.spawn(receiver())
    return {"wake-ups/s": n / (perf_counter() - start)}


async def cross_thread_asyncio(n: int) -> Metrics:
    """`cross_thread` for asyncio: the thread resolves loop futures with call_soon_threadsafe."""
    loop = asyncio.get_running_loop()
    handoff = _start_sender(n, lambda fut, i: loop.call_soon_threadsafe(fut.set_result, i))

    async def receiver() -> None:
        for i in range(n):
            fut: asyncio.Future[int] = loop.create_future()
            handoff.put(fut)
            if await fut != i:
                raise AssertionError("wake-ups arrived out of order")

    start = perf_counter()
    await asyncio.create_task(receiver())
    return {"wake-ups/s": n / (perf_counter() - start)}


# -- the table the runner reads ----------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number a workload reports."""

    key: str
    """The key in the workload's metrics dict, e.g. ``"tasks/s"``."""
    higher_is_better: bool


@dataclass(frozen=True)
class Workload:
    """A workload: its two implementations, its full size and what it reports."""

    name: str
    description: str
    """What one run does, with ``{n}`` standing for the size."""
    on_anyrt: Callable[[anyrt.Runtime, int], Coroutine[Any, Any, Metrics]]
    on_asyncio: Callable[[int], Coroutine[Any, Any, Metrics]]
    size: int
    metrics: tuple[Metric, ...]
    """The first one is the headline metric."""
    real_clock: bool = False
    """Whether the workload measures real time, so a virtual-clock runtime must not run it."""
    needs: tuple[str, ...] = ()
    """Runtime capabilities it cannot run without, e.g. ``"threads"``; others skip it."""
    sockets: bool = False
    """Whether it uses the network, which an in-memory network makes incomparable."""

    @property
    def quick_size(self) -> int:
        """The size used by ``--quick``: a twentieth of the full one."""
        return max(1, self.size // 20)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "spawn-join",
            "{n:,} tasks that return at once, spawned, then all joined",
            spawn_join,
            spawn_join_asyncio,
            100_000,
            (Metric("tasks/s", higher_is_better=True),),
        ),
        Workload(
            "yield-storm",
            f"{{n:,}} tasks x {YIELDS_PER_TASK} sleep(0)",
            yield_storm,
            yield_storm_asyncio,
            1_000,
            (Metric("switches/s", higher_is_better=True),),
        ),
        Workload(
            "ping-pong",
            "two tasks pass a token {n:,} round trips, a fresh oneshot (future) per hop",
            ping_pong,
            ping_pong_asyncio,
            100_000,
            (Metric("round trips/s", higher_is_better=True),),
        ),
        Workload(
            "ping-pong-event",
            "two tasks pass a token {n:,} round trips, a fresh Event per hop",
            ping_pong_event,
            ping_pong_event_asyncio,
            100_000,
            (Metric("round trips/s", higher_is_better=True),),
        ),
        Workload(
            "timers",
            f"{{n:,}} tasks each sleep a random 0-{TIMER_MAX_DELAY * 1e3:.0f} ms "
            f"(seed {TIMER_SEED})",
            timers,
            timers_asyncio,
            10_000,
            (
                Metric("overhead ms", higher_is_better=False),
                Metric("lateness p50 ms", higher_is_better=False),
                Metric("lateness p99 ms", higher_is_better=False),
            ),
            real_clock=True,
        ),
        Workload(
            "tcp-echo",
            f"{TCP_CLIENTS} clients x {{n:,}} round trips of {len(TCP_MESSAGE)} B over "
            "127.0.0.1, server in the same runtime (asyncio: streams)",
            tcp_echo,
            tcp_echo_asyncio,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
        ),
        Workload(
            "tcp-echo-sharded",
            f"{TCP_CLIENTS} clients x {{n:,}} round trips of {len(TCP_MESSAGE)} B over "
            "127.0.0.1, a reuse_port listener (thread-per-core: one per core; asyncio: "
            "streams, one loop)",
            tcp_echo_sharded,
            tcp_echo_asyncio,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
        ),
        Workload(
            "tcp-echo-protocols",
            f"{TCP_CLIENTS} clients x {{n:,}} round trips of {len(TCP_MESSAGE)} B over "
            "127.0.0.1, server in the same runtime (asyncio: protocols; anyrt: as tcp-echo)",
            tcp_echo,
            tcp_echo_protocols_asyncio,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
        ),
        Workload(
            "hash",
            f"{{n:,}} tasks each SHA-256 {HASH_INPUT_SIZE >> 20} MiB in the task "
            "(hashlib releases the GIL), all spawned from one task",
            hash_tasks,
            hash_tasks_asyncio,
            400,
            (Metric("hashes/s", higher_is_better=True),),
        ),
        Workload(
            "hash-spread",
            "as hash, but the tasks are dealt out over the cores (thread-per-core: "
            "spawn_on core i mod N; others: spawn)",
            hash_tasks_spread,
            hash_tasks_asyncio,
            400,
            (Metric("hashes/s", higher_is_better=True),),
        ),
        Workload(
            "cross-thread",
            "a plain thread wakes a task {n:,} times, a fresh oneshot (future) per wake-up",
            cross_thread,
            cross_thread_asyncio,
            20_000,
            (Metric("wake-ups/s", higher_is_better=True),),
            needs=("threads",),
        ),
    ]
}
