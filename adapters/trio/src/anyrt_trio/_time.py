"""Time on trio: the clock (trio's own, or virtual with `MockClock`) and intervals.

``clock="virtual"`` is ``trio.testing.MockClock(autojump_threshold=0)``: once every task
is blocked and a zero-timeout poll found no I/O, the clock jumps to the next deadline,
as the `single-threaded` backend's `VirtualClock` does.

Two facts about trio's autojump that a long-lived runtime must work around:

* With no deadline pending, an autojump threshold of 0 makes trio's loop poll the OS
  with a zero timeout, find nothing, "jump" by infinity (which it declines to do) and go
  round again: a busy loop. A runtime idles like that between ``block_on`` calls.
* Trio does not count a thread as activity: while `trio.to_thread.run_sync` works, the
  clock still jumps over every deadline, so a ``timeout(10)`` around a 50 ms blocking
  call times out at once.

And one fact about a runtime whose run lives in a thread of its own: between two
``block_on`` calls the caller's thread is busy with something else, and the tasks
left running must not race through their timers meanwhile (on `single-threaded`, time
only moves while ``block_on`` drives the loop).

`AutojumpGovernor`, an instrument, therefore switches autojump on (the configured
threshold) only while some ``block_on`` is running, some deadline is pending, and no
external work the runtime knows about is in flight (``spawn_blocking``,
`anyrt.from_future`, resolving and connecting in ``connect_tcp``/``listen_tcp``); it is
off (``math.inf``) otherwise. Work the runtime cannot see - a plain thread you started
that will ``send`` on a oneshot - does not hold the clock back.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Final, Self

import trio
import trio.testing

__all__ = ["AutojumpGovernor", "ExternalWait", "Interval", "make_clock"]


def make_clock(clock: object) -> tuple[trio.abc.Clock | None, float | None]:
    """Turn the ``clock`` option into ``(clock for trio.run, autojump threshold)``.

    The threshold is None unless the clock is a `trio.testing.MockClock` that autojumps.

    Raises:
        ValueError: an unknown clock name.
        TypeError: neither a name nor a `trio.abc.Clock`.
    """
    if clock is None or clock == "real":
        return None, None
    if clock == "virtual":
        mock = trio.testing.MockClock(autojump_threshold=0)
        return mock, 0.0
    if isinstance(clock, str):
        raise ValueError(  # noqa: TRY004 - a str is the right type, just not a known name
            f"clock must be 'real', 'virtual' or a trio.abc.Clock, not {clock!r}"
        )
    if isinstance(clock, trio.testing.MockClock):
        threshold = clock.autojump_threshold
        return clock, threshold if threshold != math.inf else None
    if isinstance(clock, trio.abc.Clock):
        return clock, None
    raise TypeError(
        f"clock must be 'real', 'virtual' or a trio.abc.Clock, not {type(clock).__name__}"
    )


def _noop() -> None:
    """The wake-up the governor sends itself to cut an I/O wait short."""


class AutojumpGovernor(trio.abc.Instrument):
    """Keeps a `MockClock`'s autojump on only while jumping is meaningful and safe.

    Lives on the trio thread: `hold`/`release` are called by tasks, `before_io_wait` by
    trio's loop.

    Args:
        clock: the run's mock clock.
        threshold: its autojump threshold while jumping is on.
    """

    def __init__(self, clock: trio.testing.MockClock, threshold: float) -> None:
        self.clock = clock
        self.threshold = threshold
        self.external = 0
        self.drivers = 0
        self.token: trio.lowlevel.TrioToken | None = None

    def hold(self) -> None:
        """External work starts: never jump until it ends."""
        self.external += 1
        if self.clock.autojump_threshold != math.inf:
            self.clock.autojump_threshold = math.inf

    def release(self) -> None:
        """External work ended (the next loop pass turns jumping back on if it can)."""
        self.external -= 1

    def drive_start(self) -> None:
        """A ``block_on`` starts: time may jump while it runs."""
        self.drivers += 1

    def drive_end(self) -> None:
        """A ``block_on`` ended: stop jumping unless another one runs."""
        self.drivers -= 1
        if not self.drivers and self.clock.autojump_threshold != math.inf:
            self.clock.autojump_threshold = math.inf

    def before_io_wait(self, timeout: float) -> None:
        """Switch autojump on or off for the coming I/O wait (and the ones after)."""
        if self.external or not self.drivers:
            wanted = math.inf
        elif trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf:
            wanted = math.inf  # nothing to jump to: block in the OS instead of spinning
        else:
            wanted = self.threshold
        clock = self.clock
        if clock.autojump_threshold == wanted:
            return
        clock.autojump_threshold = wanted
        if wanted < timeout and self.token is not None:
            # This wait's timeout was computed with autojump off: end it at once, so the
            # next pass computes it again, with the jump.
            self.token.run_sync_soon(_noop, idempotent=True)


class ExternalWait:
    """``with runtime._external_wait():`` - holds virtual time while a thread works."""

    __slots__ = ("_governor",)

    def __init__(self, governor: AutojumpGovernor) -> None:
        self._governor = governor

    def __enter__(self) -> None:
        self._governor.hold()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._governor.release()


class NoWait:
    """The `ExternalWait` of a runtime whose clock never jumps: does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


NO_WAIT: Final = NoWait()


class Interval:
    """The async iterator `TrioRuntime.interval` returns: a fixed schedule, skipping.

    Ticks at ``start + n * period``; a consumer more than a period behind skips the
    missed ticks rather than bursting.
    """

    __slots__ = ("_clock", "_next", "_period")

    def __init__(self, clock: trio.abc.Clock, period: float) -> None:
        self._clock = clock
        self._period = period
        self._next: float | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> float:
        clock = self._clock
        period = self._period
        tick = self._next
        if tick is None:
            tick = clock.current_time() + period
        await trio.sleep_until(tick)
        behind = clock.current_time() - tick
        skipped = math.floor(behind / period) if behind >= period else 0
        self._next = tick + period * (skipped + 1)
        return tick
