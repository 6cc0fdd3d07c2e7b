"""Timer queues: a binary heap of entries keyed by absolute deadline.

Each worker owns one queue and is the only thread that pushes or fires; cancelling an
entry just marks it (any thread may), and marked entries are dropped when they reach
the top of the heap or when they outnumber the live ones.

Edge rule: a timer whose deadline is *equal* to ``now`` is due. Deadlines are compared
with ``<=`` so that ``sleep_until(now())`` never waits for the next clock tick.
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Final

_COMPACT_MIN: Final = 64
#: The longest a loop blocks in one wait for its next timer. The OS and `threading`
#: refuse timeouts past what their clocks can hold (``OverflowError``), and a loop that
#: wakes once a day for a timer a century away loses nothing.
MAX_WAIT: Final = 86_400.0


def wait_time(deadline: float, now: float) -> float | None:
    """How long to block for a timer due at ``deadline``: None for none, at most a day."""
    if deadline == math.inf:
        return None
    return min(max(deadline - now, 0.0), MAX_WAIT)


class TimerEntry(ABC):
    """One pending timer; subclasses say what firing does."""

    __slots__ = ("cancelled", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancelled = False

    @abstractmethod
    def fire(self) -> None:
        """Called by the owning worker once the deadline has passed."""

    def cancel(self) -> None:
        """Stop the timer from firing; safe from any thread, idempotent."""
        self.cancelled = True


class TimerQueue:
    """A deadline-ordered heap of `TimerEntry` objects owned by one worker."""

    __slots__ = ("_compact_at", "_counter", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._counter = itertools.count()
        # Cancelled entries are only dropped lazily; sweep them when the heap has
        # doubled since the last sweep, so sweeping costs O(1) per push, amortised.
        self._compact_at = _COMPACT_MIN

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, entry: TimerEntry) -> None:
        """Add ``entry``; the counter keeps equal deadlines in insertion order."""
        heap = self._heap
        heapq.heappush(heap, (entry.deadline, next(self._counter), entry))
        if len(heap) > self._compact_at:
            self._compact()

    def next_deadline(self) -> float:
        """Return the earliest live deadline, or ``math.inf`` if there is none."""
        heap = self._heap
        while heap:
            top = heap[0]
            if not top[2].cancelled:
                return top[0]
            heapq.heappop(heap)
        return math.inf

    def fire_due(self, now: float) -> int:
        """Fire every live entry whose deadline is at or before ``now``; return how many."""
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            if not entry.cancelled:
                entry.cancelled = True
                entry.fire()
                fired += 1
        return fired

    def fire_due_first(self, now: float, ready: deque[Any]) -> int:
        """`fire_due`, then move the tasks it queued on ``ready`` to the front of it.

        What the timers woke runs before what was already queued, so a timer's lateness
        is bounded by the loop's batch of steps, not by the length of its queue.
        """
        queued = len(ready)
        fired = self.fire_due(now)
        if queued and len(ready) > queued:
            ready.rotate(len(ready) - queued)
        return fired

    def _compact(self) -> None:
        heap = self._heap
        live = [item for item in heap if not item[2].cancelled]
        if len(live) < len(heap):
            heapq.heapify(live)
            heap[:] = live  # in place: the owning loop holds a reference to the list
        self._compact_at = max(2 * len(heap), _COMPACT_MIN)

    def clear(self) -> None:
        """Drop every entry without firing it."""
        self._heap.clear()
