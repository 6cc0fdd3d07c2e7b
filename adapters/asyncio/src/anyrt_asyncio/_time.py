"""Time on asyncio: sleeping, `timeout` and `interval` on the loop's timers.

The runtime's clock is a pair of functions: ``now()`` and ``call_at(deadline, fn, arg)``
(a timer handle with ``cancel()``). With a real clock they are `time.monotonic` and the
loop's ``call_later``; with a virtual clock they are the virtual loop's own ``time`` and
``call_at`` (see `_virtual`). A sleep re-checks ``now()`` when its timer fires and sleeps
again if it woke early (asyncio fires timers up to its clock resolution early, uvloop
rounds delays to whole milliseconds on a cached clock), so ``now() >= deadline`` holds
whenever a sleep returns.

`Timeout` follows `asyncio.timeout` exactly - it cancels its task and turns the
resulting `CancelledError` into `TimeoutError` only if no other cancellation was
requested meanwhile (asyncio's ``cancelling()``/``uncancel()`` count) - so it nests with
`asyncio.timeout`, task groups and outside cancellations as asyncio code expects.
"""

from __future__ import annotations

import asyncio
import math
from asyncio import CancelledError
from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, Protocol, Self, final

from ._oneshot import withdraw_redelivery
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
    """What `Timeout` and `Interval` need from a runtime."""

    name: str
    _loop: asyncio.AbstractEventLoop
    _call_at: CallAt

    def now(self) -> float:
        """The runtime's clock."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline``."""
        ...


_ENTERED: Final = "entered"
_EXPIRING: Final = "expiring"
_EXPIRED: Final = "expired"
_EXITED: Final = "exited"


@final
class Timeout(AbstractAsyncContextManager[None]):
    """``async with runtime.timeout(s):`` - cancels its task when the deadline passes."""

    __slots__ = ("_cancelling", "_handle", "_host", "_message", "_seconds", "_state", "_task")

    def __init__(self, host: TimerHost, seconds: float) -> None:
        self._host = host
        self._seconds = seconds
        # The cancellation message, compared by identity to recognise our own request.
        self._message = f"timed out after {seconds} s"
        self._state = "created"
        self._task: asyncio.Task[Any] | None = None
        self._handle: Cancellable | None = None
        self._cancelling = 0

    def __repr__(self) -> str:
        return f"<anyrt_asyncio timeout({self._seconds}) {self._state}>"

    async def __aenter__(self) -> None:
        if self._state != "created":
            raise RuntimeError("a timeout() context manager can be entered only once")
        host = self._host
        task = asyncio.current_task()
        if task is None or task.get_loop() is not host._loop:
            raise RuntimeError(
                f"timeout() must be entered inside a task of this {host.name!r} runtime"
            )
        self._task = task
        self._state = _ENTERED
        self._cancelling = task.cancelling()
        self._handle = host._call_at(host.now() + self._seconds, _expire, self)

    def _expire(self) -> None:
        self._handle = None
        if self._state == _ENTERED and self._task is not None:
            self._state = _EXPIRING
            self._task.cancel(self._message)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            task = self._task
            assert task is not None
            if task.uncancel() <= self._cancelling:
                if exc_type is CancelledError:
                    raise TimeoutError(self._message) from exc
                # The block ended although we cancelled it: a value won the race with our
                # cancellation (see _oneshot), whose delivery again must not outlive us.
                withdraw_redelivery(task, self._message)
        else:
            self._state = _EXITED


def _expire(timeout: Timeout) -> None:
    timeout._expire()


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
