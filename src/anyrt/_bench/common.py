"""What every version of the workloads shares: sizes, inputs, and how metrics are made.

Each version of a workload - the anyrt one in `workloads`, the raw peers' ones in
``peer_asyncio``, ``peer_trio`` and ``peer_anyio`` - times itself with
`time.perf_counter` from inside its running runtime and returns its metrics as a
dict; the helpers here keep the numbers they report identical in meaning.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable
from typing import Any

Metrics = dict[str, float]
"""What one run of a workload reports: metric name to value."""

TIMER_SEED = 20240601
"""The fixed seed of the timers workload's random delays."""

TIMER_MAX_DELAY = 0.1
"""The timers workload sleeps a random 0 to this many seconds."""

YIELDS_PER_TASK = 100
"""How many times each task of the yield storm yields."""

TCP_CLIENTS = 50
#: The deadline of each round trip of tcp-echo-timeout: never reached, only paid for.
ROUND_TRIP_TIMEOUT = 10.0
"""How many clients the TCP echo workloads connect at once."""

TCP_MESSAGE = b"x" * 64
"""What a TCP echo client sends, and waits to read back, per round trip."""

TCP_READ_SIZE = 65536
"""The most an echo server handler reads at once."""

HASH_INPUT_SIZE = 1 << 20
"""How many bytes each task of the hash workload hashes."""

CHANNEL_PRODUCERS = 8
"""How many tasks send into the channel of the fan-in/fan-out workload."""

CHANNEL_CONSUMERS = 8
"""How many tasks receive from it."""

CHANNEL_CAPACITY = 64
"""How many items its channel (queue) buffers before a sender waits."""


def timer_delays(n: int, max_delay: float = TIMER_MAX_DELAY, seed: int = TIMER_SEED) -> list[float]:
    """Return the ``n`` random delays, from 0 to ``max_delay`` seconds, of the timers run."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, max_delay) for _ in range(n)]


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``fraction`` in [0, 1])."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[rank - 1]


def timer_metrics(elapsed: float, delays: list[float], lateness: list[float]) -> Metrics:
    """The timers workload's metrics, from its wall time and each task's lateness.

    *Overhead* is the wall time beyond the ideal (the longest delay); *lateness* is, per
    task, when it woke minus its deadline, both on `time.perf_counter`.
    """
    return {
        "overhead ms": (elapsed - max(delays)) * 1e3,
        "lateness p50 ms": percentile(lateness, 0.50) * 1e3,
        "lateness p99 ms": percentile(lateness, 0.99) * 1e3,
    }


def hash_input() -> bytes:
    """Return the `HASH_INPUT_SIZE` bytes every task of the hash workload hashes."""
    return bytes(range(256)) * (HASH_INPUT_SIZE // 256)


def channel_items(n: int) -> int:
    """How many items each producer of the fan-in/fan-out workload sends for size ``n``."""
    return max(1, n // CHANNEL_PRODUCERS)


def check_received(received: int, n: int) -> None:
    """Fail the run unless the consumers received every item the producers sent."""
    sent = channel_items(n) * CHANNEL_PRODUCERS
    if received != sent:
        raise AssertionError(f"the consumers received {received} items of the {sent} sent")


def start_sender(n: int, deliver: Callable[[Any, int], object]) -> queue.SimpleQueue[Any]:
    """Start a plain thread that calls ``deliver(q.get(), i)`` for i in 0..n-1; return q.

    The cross-thread workload's wake-ups all come from this thread: the task under test
    puts what to wake it with into ``q`` and parks; the thread takes it and delivers.
    """
    handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def sender() -> None:
        for i in range(n):
            deliver(handoff.get(), i)

    threading.Thread(target=sender, name="bench-sender", daemon=True).start()
    return handoff


class ParkCount:
    """Counts the tasks of the parked-memory workload that reached their parking point.

    Thread-safe; it keeps one integer, not a list of arrivals, so it adds nothing per
    task to the memory being measured.
    """

    __slots__ = ("_count", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def arrive(self) -> None:
        """Count one more task about to park."""
        with self._lock:
            self._count += 1

    @property
    def value(self) -> int:
        """How many tasks have arrived."""
        return self._count


def bytes_per_task(before: int, after: int, n: int) -> Metrics:
    """The parked-memory workload's metric, from `tracemalloc`'s traced totals."""
    return {"bytes/task": (after - before) / n}


class Slot:
    """An event plus a value: `put` publishes the value, `get` waits for it.

    Works with any event that has ``set()`` and ``async wait()`` (anyrt's, asyncio's,
    trio's, anyio's): events cannot be cleared, so each hop makes a fresh slot.
    """

    __slots__ = ("event", "value")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.value: Any = None

    def put(self, value: object) -> None:
        """Publish ``value`` and wake the waiter."""
        self.value = value
        self.event.set()

    async def get(self) -> Any:
        """Wait for the value, then return it."""
        await self.event.wait()
        return self.value
