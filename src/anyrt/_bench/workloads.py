"""The benchmark workloads: each written once against `anyrt.Runtime`, and described.

The anyrt version of a workload only uses the `anyrt.Runtime` protocol (and the generic
primitives built on it), so it runs unchanged on every anyrt backend, bundled,
adapter or third-party. The raw peers' versions - what an asyncio, trio or anyio
programmer would write - live in ``peer_asyncio``, ``peer_trio`` and ``peer_anyio``,
under the same names; `Workload.peers` says how each peer does it where that is not
obvious, and `Workload.unsupported` which peer has no fair equivalent, and why.

Every workload function runs inside an already running runtime, times itself with
`time.perf_counter` - so runtime start-up and shutdown are not measured - and returns
its metrics as a dict. `WORKLOADS` describes them for the runner.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, TypeVar

import anyrt

from .common import (
    CHANNEL_CAPACITY,
    CHANNEL_CONSUMERS,
    CHANNEL_PRODUCERS,
    HASH_INPUT_SIZE,
    ROUND_TRIP_TIMEOUT,
    TCP_CLIENTS,
    TCP_MESSAGE,
    TCP_READ_SIZE,
    TIMER_MAX_DELAY,
    TIMER_SEED,
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

T = TypeVar("T")


def _spread(rt: anyrt.Runtime, index: int, coro: Coroutine[Any, Any, T]) -> anyrt.Task[T]:
    """Spawn ``coro``; on a runtime with ``spawn_on`` (thread-per-core), on core i mod N.

    A task spawned from a thread-per-core task stays on its core, so without this every
    task would share the main task's core.
    """
    spawn_on = getattr(rt, "spawn_on", None)
    if spawn_on is None:
        return rt.spawn(coro)
    task: anyrt.Task[T] = spawn_on(index % getattr(rt, "cores", 1), coro)
    return task


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


# -- yield storm: the cost of a task switch ----------------------------------------------


async def yield_storm(rt: anyrt.Runtime, n: int) -> Metrics:
    """Run ``n`` tasks that each yield `YIELDS_PER_TASK` times with ``sleep(0)``."""

    async def yielder() -> None:
        for _ in range(YIELDS_PER_TASK):
            await rt.sleep(0)

    start = perf_counter()
    tasks = [rt.spawn(yielder()) for _ in range(n)]
    for task in tasks:
        await task
    return {"switches/s": n * YIELDS_PER_TASK / (perf_counter() - start)}


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
    del first_tx, first_rx  # else the first hop keeps every later one alive
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


async def ping_pong_event(rt: anyrt.Runtime, n: int) -> Metrics:
    """`ping_pong` over `anyrt.Event`, a fresh event per hop."""

    async def ping(slot: Slot) -> None:
        for _ in range(n):
            reply = Slot(anyrt.Event(rt))
            slot.put(reply)
            slot = await reply.get()
        slot.put(None)

    async def pong(slot: Slot) -> None:
        while (reply := await slot.get()) is not None:
            slot = Slot(anyrt.Event(rt))
            reply.put(slot)

    start = perf_counter()
    first = Slot(anyrt.Event(rt))
    tasks = [rt.spawn(pong(first)), rt.spawn(ping(first))]
    del first  # else the first hop keeps every later one alive
    for task in tasks:
        await task
    return {"round trips/s": n / (perf_counter() - start)}


# -- timers: many sleeping tasks, how late they wake -------------------------------------
#
# Each task notes its deadline just before it sleeps and reports how late it woke up,
# both on `perf_counter`, which every runtime is compared on. The ideal wall time is the
# longest delay (just under 100 ms); the overhead is what the run took beyond it.


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
    return timer_metrics(perf_counter() - start, delays, lateness)


# -- tcp-echo: real sockets --------------------------------------------------------------
#
# An echo server and its clients in one runtime, over 127.0.0.1. The clients connect
# first; the clock runs while every client does its round trips: send 64 bytes, read
# until the 64 bytes came back, again. Then the clients disconnect and the run waits for
# every server handler to see the end of its stream. On a runtime without an OS (the
# single-threaded one) the same code runs over the in-memory network.


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive(TCP_READ_SIZE):
        await stream.send(data)


async def _round_trip(stream: anyrt.ByteStream) -> None:
    await stream.send(TCP_MESSAGE)
    size = len(TCP_MESSAGE)
    received = 0
    while received < size:
        data = await stream.receive(size - received)
        if not data:
            raise ConnectionError("the echo server closed the connection")
        received += len(data)


async def _echo_client(stream: anyrt.ByteStream, round_trips: int) -> None:
    for _ in range(round_trips):
        await _round_trip(stream)


def _timed_echo_client(
    rt: anyrt.Runtime,
) -> Callable[[anyrt.ByteStream, int], Coroutine[Any, Any, None]]:
    async def client(stream: anyrt.ByteStream, round_trips: int) -> None:
        for _ in range(round_trips):
            with rt.fail_after(ROUND_TRIP_TIMEOUT):
                await _round_trip(stream)

    return client


async def tcp_echo(
    rt: anyrt.Runtime,
    n: int,
    *,
    reuse_port: bool = False,
    client: Callable[[anyrt.ByteStream, int], Coroutine[Any, Any, None]] = _echo_client,
) -> Metrics:
    """Echo ``n`` round trips of 64 bytes on each of `TCP_CLIENTS` connections at once."""
    handlers_done = anyrt.Semaphore(rt, 0)

    async def echo(stream: anyrt.ByteStream) -> None:
        await _echo(stream)
        handlers_done.release()

    listener = await rt.listen_tcp("127.0.0.1", 0, reuse_port=reuse_port)
    server = rt.spawn(listener.serve(echo))
    streams = [await rt.connect_tcp(*listener.address) for _ in range(TCP_CLIENTS)]
    start = perf_counter()
    tasks = [_spread(rt, index, client(stream, n)) for index, stream in enumerate(streams)]
    for task in tasks:
        await task
    elapsed = perf_counter() - start
    for stream in streams:
        await stream.aclose()
    for _ in streams:
        await handlers_done.acquire()
    await listener.aclose()
    await server
    return {"round trips/s": TCP_CLIENTS * n / elapsed}


async def tcp_echo_timeout(rt: anyrt.Runtime, n: int) -> Metrics:
    """`tcp_echo` with each round trip inside ``fail_after``, as a client library does."""
    return await tcp_echo(rt, n, client=_timed_echo_client(rt))


async def tcp_echo_sharded(rt: anyrt.Runtime, n: int) -> Metrics:
    """`tcp_echo` on a ``reuse_port`` listener: one socket (and accept loop) per core."""
    return await tcp_echo(rt, n, reuse_port=True)


# -- hash: CPU work that releases the GIL ------------------------------------------------
#
# `hashlib` releases the GIL while it hashes a large buffer, so tasks hashing right in
# the task (no spawn_blocking) run in parallel on a runtime with several worker threads
# and one after the other on an event loop.


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


# -- cross-thread: a plain thread wakes a task -------------------------------------------
#
# For each wake-up the task makes a fresh one-shot pair, hands the sending half to a
# plain thread through a queue and waits; the thread takes it and sends. Every send thus
# comes from outside the runtime, at a moment the task is (about to be) parked on it.


async def cross_thread(rt: anyrt.Runtime, n: int) -> Metrics:
    """Wake a task ``n`` times from a plain thread, a fresh `oneshot` per wake-up."""
    handoff = start_sender(n, lambda tx, i: tx.send(i))

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


# -- channel-fan: many producers, many consumers, one bounded channel --------------------


async def channel_fan(rt: anyrt.Runtime, n: int) -> Metrics:
    """Pass ``n`` items from 8 producers to 8 consumers through one bounded `anyrt.Channel`.

    The producers and consumers are dealt out over the cores where the runtime can;
    once every producer is done the channel is closed, and each consumer's ``async for``
    ends when it is drained.
    """
    per_producer = channel_items(n)
    channel: anyrt.Channel[int] = anyrt.Channel(rt, CHANNEL_CAPACITY)

    async def produce() -> None:
        for item in range(per_producer):
            await channel.send(item)

    async def consume() -> int:
        received = 0
        async for _ in channel:
            received += 1
        return received

    start = perf_counter()
    consumers = [_spread(rt, index, consume()) for index in range(CHANNEL_CONSUMERS)]
    producers = [_spread(rt, index, produce()) for index in range(CHANNEL_PRODUCERS)]
    for producer in producers:
        await producer
    channel.close()
    received = sum([await consumer for consumer in consumers])
    elapsed = perf_counter() - start
    check_received(received, n)
    return {"items/s": per_producer * CHANNEL_PRODUCERS / elapsed}


# -- parked-memory: what a parked task costs ---------------------------------------------
#
# ``n`` tasks each park on one shared event; once they all have, the memory traced by
# `tracemalloc` since just before the first spawn, divided by ``n``, is what one parked
# task costs: its task object, coroutine frame, join handle and waiter registration.
# Only Python-level allocations are traced (memory a C library allocates itself, like
# libuv's, is not). The count is taken just before each task parks, so on threaded
# runtimes up to one task per worker may still be on its way: noise of a few bytes in
# 100,000 tasks.


async def parked_memory(rt: anyrt.Runtime, n: int) -> Metrics:
    """Park ``n`` tasks on one `anyrt.Event` and report the traced bytes per task."""
    wake = anyrt.Event(rt)
    parked = ParkCount()

    async def parker() -> None:
        parked.arrive()
        await wake.wait()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tasks = [rt.spawn(parker()) for _ in range(n)]
        while parked.value < n:
            await rt.sleep(0)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    wake.set()
    for task in tasks:
        await task
    return bytes_per_task(before, after, n)


# -- the table the runner reads ----------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number a workload reports."""

    key: str
    """The key in the workload's metrics dict, e.g. ``"tasks/s"``."""
    higher_is_better: bool


@dataclass(frozen=True)
class Workload:
    """A workload: its anyrt version, its sizes, what it reports, how the peers do it."""

    name: str
    description: str
    """What one run does, with ``{n}`` standing for the size."""
    on_anyrt: Callable[[anyrt.Runtime, int], Coroutine[Any, Any, Metrics]]
    size: int
    """The full size (``{n}``); ``--quick`` runs a twentieth of it."""
    metrics: tuple[Metric, ...]
    """The first one is the headline metric."""
    real_clock: bool = False
    """Whether it measures real time, so a runtime on virtual time must switch clocks."""
    needs: tuple[str, ...] = ()
    """Runtime capabilities it cannot run without, e.g. ``"threads"``; others skip it."""
    sockets: bool = False
    """Whether it uses the network, which an in-memory network makes incomparable."""
    peers: Mapping[str, str] = field(default_factory=dict)
    """Per raw-peer family (``asyncio``, ``trio``, ``anyio``): how its version differs."""
    unsupported: Mapping[str, str] = field(default_factory=dict)
    """Per raw-peer family: why it has no fair version (its cases are n/a)."""

    @property
    def quick_size(self) -> int:
        """The size used by ``--quick``: a twentieth of the full one."""
        return max(1, self.size // 20)


_TCP = f"{TCP_CLIENTS} clients x {{n:,}} round trips of {len(TCP_MESSAGE)} B over 127.0.0.1"
_ONE_LOOP = "one event loop on one thread"

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "spawn-join",
            "{n:,} tasks that return at once, spawned, then all joined",
            spawn_join,
            100_000,
            (Metric("tasks/s", higher_is_better=True),),
            peers={"trio": "a nursery", "anyio": "a task group"},
        ),
        Workload(
            "yield-storm",
            f"{{n:,}} tasks x {YIELDS_PER_TASK} sleep(0)",
            yield_storm,
            1_000,
            (Metric("switches/s", higher_is_better=True),),
        ),
        Workload(
            "ping-pong",
            "two tasks pass a token {n:,} round trips, a fresh one-shot wake-up per hop",
            ping_pong,
            100_000,
            (Metric("round trips/s", higher_is_better=True),),
            peers={
                "asyncio": "a loop future per hop",
                "trio": "trio.lowlevel wait_task_rescheduled / reschedule per hop",
                "anyio": "no lower-level primitive than Event: as ping-pong-event",
            },
        ),
        Workload(
            "ping-pong-event",
            "two tasks pass a token {n:,} round trips, a fresh Event per hop",
            ping_pong_event,
            100_000,
            (Metric("round trips/s", higher_is_better=True),),
        ),
        Workload(
            "timers",
            f"{{n:,}} tasks each sleep a random 0-{TIMER_MAX_DELAY * 1e3:.0f} ms "
            f"(seed {TIMER_SEED})",
            timers,
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
            f"{_TCP}, server in the same runtime",
            tcp_echo,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
            peers={
                "asyncio": "streams (start_server, open_connection, readexactly)",
                "trio": "serve_tcp and open_tcp_stream",
                "anyio": "create_tcp_listener and connect_tcp",
            },
        ),
        Workload(
            "tcp-echo-timeout",
            f"{_TCP}, each round trip inside fail_after({ROUND_TRIP_TIMEOUT:g})",
            tcp_echo_timeout,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
            peers={
                "asyncio": f"asyncio.timeout({ROUND_TRIP_TIMEOUT:g})",
                "trio": f"trio.fail_after({ROUND_TRIP_TIMEOUT:g})",
                "anyio": f"anyio.fail_after({ROUND_TRIP_TIMEOUT:g})",
            },
        ),
        Workload(
            "tcp-echo-sharded",
            f"{_TCP}, a reuse_port listener (thread-per-core: one socket per core)",
            tcp_echo_sharded,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
            peers={
                "asyncio": f"{_ONE_LOOP} cannot shard: as tcp-echo",
                "trio": f"{_ONE_LOOP} cannot shard: as tcp-echo",
                "anyio": f"{_ONE_LOOP} cannot shard: as tcp-echo",
            },
        ),
        Workload(
            "tcp-echo-protocols",
            f"{_TCP}; anyrt runs exactly the tcp-echo code, asyncio its callback protocols",
            tcp_echo,
            2_000,
            (Metric("round trips/s", higher_is_better=True),),
            sockets=True,
            peers={"asyncio": "loop.create_server / create_connection with Protocols"},
            unsupported={
                "trio": "trio has no callback-protocol API (its streams are in tcp-echo)",
                "anyio": "anyio has no callback-protocol API (its streams are in tcp-echo)",
            },
        ),
        Workload(
            "hash",
            f"{{n:,}} tasks each SHA-256 {HASH_INPUT_SIZE >> 20} MiB in the task "
            "(hashlib releases the GIL), all spawned from one task",
            hash_tasks,
            400,
            (Metric("hashes/s", higher_is_better=True),),
        ),
        Workload(
            "hash-spread",
            "as hash, but the tasks are dealt out over the cores (thread-per-core: "
            "spawn_on core i mod N; others: spawn)",
            hash_tasks_spread,
            400,
            (Metric("hashes/s", higher_is_better=True),),
            peers={
                "asyncio": f"{_ONE_LOOP}: as hash",
                "trio": f"{_ONE_LOOP}: as hash",
                "anyio": f"{_ONE_LOOP}: as hash",
            },
        ),
        Workload(
            "cross-thread",
            "a plain thread wakes a task {n:,} times, a fresh one-shot wake-up each time",
            cross_thread,
            20_000,
            (Metric("wake-ups/s", higher_is_better=True),),
            needs=("threads",),
            peers={
                "asyncio": "loop futures, call_soon_threadsafe(fut.set_result, i)",
                "trio": "TrioToken.run_sync_soon(reschedule) of a parked task",
                "anyio": "a fresh anyio.Event per wake-up, set through from_thread.run_sync "
                "(which also waits until the loop has run it)",
            },
        ),
        Workload(
            "channel-fan",
            f"{CHANNEL_PRODUCERS} producers send {{n:,}} items in all through one channel "
            f"of capacity {CHANNEL_CAPACITY} to {CHANNEL_CONSUMERS} consumers",
            channel_fan,
            200_000,
            (Metric("items/s", higher_is_better=True),),
            peers={
                "asyncio": "asyncio.Queue, one None per consumer to end",
                "trio": "open_memory_channel, a clone per producer and consumer",
                "anyio": "create_memory_object_stream, a clone per producer and consumer",
            },
        ),
        Workload(
            "parked-memory",
            "{n:,} tasks parked on one Event: memory traced by tracemalloc, per task",
            parked_memory,
            100_000,
            (Metric("bytes/task", higher_is_better=False),),
            peers={"trio": "a nursery", "anyio": "a task group"},
        ),
    ]
}
"""Every workload, by name, in the order the tables show them."""
