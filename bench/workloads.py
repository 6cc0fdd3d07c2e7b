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
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import anyrt

Metrics = dict[str, float]

TIMER_SEED = 20240601
"""The fixed seed of the timers workload's random delays."""

TIMER_MAX_DELAY = 0.1
"""The timers workload sleeps a random 0 to this many seconds."""

YIELDS_PER_TASK = 100
"""How many times each task of the yield storm yields."""


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
    ]
}
