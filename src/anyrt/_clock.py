"""Clocks for the `single-threaded` runtime: virtual time by default, or a real clock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, final, runtime_checkable

from ._validate import check_seconds

__all__ = ["Clock", "MonotonicClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """A clock the `single-threaded` runtime can be driven by.

    `now` is called on the runtime's thread only. `idle` is called when every task is
    parked and the earliest timer is ``seconds`` away: a virtual clock advances, a real
    clock waits.
    """

    def now(self) -> float:
        """Return the current time in seconds."""
        ...

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` pass (by waiting or by jumping)."""
        ...


@final
class VirtualClock:
    """Virtual time: when every task is parked, time jumps to the next deadline.

    ``await rt.sleep(3600)`` returns at once with `now` advanced by 3600. With
    ``rate > 0`` virtual time also runs ``rate`` times as fast as real time (a model
    for trio's ``MockClock``); the default ``rate=0`` makes it advance only by jumps,
    so runs are deterministic.

    Args:
        start: the initial value of `now`.
        rate: how many virtual seconds pass per real second between jumps.
    """

    def __init__(self, start: float = 0.0, *, rate: float = 0.0) -> None:
        if not isinstance(start, (int, float)) or math.isnan(start) or math.isinf(start):
            raise ValueError(f"VirtualClock start must be a finite number, got {start!r}")
        check_seconds(rate, "VirtualClock(rate=...)")
        self._lock = threading.Lock()
        self._offset = float(start)
        self._rate = float(rate)
        self._real_base = time.monotonic()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now():.6f}, rate={self._rate})"

    @property
    def rate(self) -> float:
        """Virtual seconds per real second (0: time moves only by jumps)."""
        return self._rate

    def now(self) -> float:
        """Return the current virtual time."""
        if self._rate == 0.0:
            return self._offset
        with self._lock:
            return self._offset + (time.monotonic() - self._real_base) * self._rate

    def jump(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` (timers due by then fire on the next turn)."""
        check_seconds(seconds, "VirtualClock.jump()")
        with self._lock:
            self._offset += seconds

    def idle(self, seconds: float) -> None:
        """Jump straight over the idle period."""
        if seconds > 0 and not math.isinf(seconds):
            self.jump(seconds)


@final
class MonotonicClock:
    """Real time from `time.monotonic`; `idle` sleeps the thread.

    Args:
        now: the time source (default `time.monotonic`).
        idle: called to wait while nothing is runnable (default `time.sleep`).
    """

    def __init__(
        self,
        now: Callable[[], float] = time.monotonic,
        idle: Callable[[float], None] = time.sleep,
    ) -> None:
        self._now = now
        self._idle = idle

    def __repr__(self) -> str:
        return f"MonotonicClock(now={self._now!r})"

    def now(self) -> float:
        """Return the current time."""
        return self._now()

    def idle(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        if seconds > 0:
            self._idle(seconds)
