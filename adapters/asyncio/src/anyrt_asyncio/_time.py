"""Time on asyncio: sleeping and `interval` on the loop's timers.

The runtime's clock is a pair of functions: ``now()`` and ``call_at(deadline, fn, arg)``
(a timer handle with ``cancel()``). With a real clock they are `time.monotonic` and the
loop's ``call_later``; with a virtual clock they are the virtual loop's own ``time`` and
``call_at`` (see `_virtual`). A sleep re-checks ``now()`` when its timer fires and sleeps
again if it woke early (asyncio fires timers up to its clock resolution early, uvloop
rounds delays to whole milliseconds on a cached clock), so ``now() >= deadline`` holds
whenever a sleep returns.

`timeout` is a cancel scope (see `_scope`), and `Interval` sleeps on the runtime's clock.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Generator
from typing import Any, Final, Protocol, Self, final

from ._validate import check_deadline


class Cancellable(Protocol):
    """A scheduled timer: `asyncio.TimerHandle` or an equivalent."""

    def cancel(self) -> None:
        """Unschedule the call."""
        ...


CallAt = Callable[[float, Callable[[Any], object], Any], Cancellable]


@final
class YieldNow:
    """``await YIELD`` yields to the other ready tasks once (asyncio's ``sleep(0)``)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        # A bare ``yield`` is how an asyncio task steps aside; a tuple iterator is the
        # cheapest awaitable that does it.
        return iter(_NONE)  # type: ignore[return-value]


_NONE: Final = (None,)
YIELD: Final = YieldNow()


def set_done(waiter: asyncio.Future[None]) -> None:
    """A timer's callback: complete ``waiter`` unless it was cancelled."""
    if not waiter.done():
        waiter.set_result(None)


async def sleep_until(
    loop: asyncio.AbstractEventLoop, now: Callable[[], float], call_at: CallAt, deadline: float
) -> None:
    """Suspend until ``now() >= deadline``."""
    while True:
        waiter = loop.create_future()
        handle = call_at(deadline, set_done, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
        if now() >= deadline:
            return


class TimerHost(Protocol):
    """What `Interval` needs from a runtime."""

    def now(self) -> float:
        """The runtime's clock."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline``."""
        ...


@final
class Interval:
    """The async iterator `interval` returns: a fixed schedule that skips missed ticks."""

    __slots__ = ("_host", "_next", "_period")

    def __init__(self, host: TimerHost, period: float) -> None:
        self._host = host
        self._period = period
        self._next: float | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> float:
        host = self._host
        period = self._period
        tick = self._next
        if tick is None:
            tick = host.now() + period
        await host.sleep_until(tick)
        behind = host.now() - tick
        skipped = math.floor(behind / period) if behind >= period else 0
        self._next = tick + period * (skipped + 1)
        return tick


def checked_deadline(deadline: object) -> float:
    """Return a valid `sleep_until` deadline (a real, non-NaN number)."""
    return check_deadline(deadline, "sleep_until()")
