"""Virtual time on the selector event loop: idle time jumps to the next deadline.

`VirtualTimeLoop` is asyncio's own `SelectorEventLoop` with two documented extension
points filled in: its ``time()`` reads a `anyrt.VirtualClock`, so every timer on the
loop (anyrt's sleeps and timeouts, and ``asyncio.sleep``, ``asyncio.timeout`` of code
running in place) is in virtual time; and its selector is wrapped by `IdleJumpSelector`.

The loop asks its selector to wait only when no callback is ready; the timeout it
passes is the time to its next timer (``None`` if there is none). The wrapper first
polls the OS without waiting. If nothing is ready there either, the loop is idle:

* with no blocking work in flight (nothing submitted to an executor through
  ``run_in_executor``, which `spawn_blocking` and name resolution use), the clock jumps
  by the timeout, straight to the next deadline, and the loop fires that timer - the
  same rule as the ``single-threaded`` backend's `VirtualClock`;
* with blocking work in flight, the loop really waits, up to the timeout, and virtual
  time advances by the real time that passed: a thread's work takes the time it takes,
  and a timeout around it is not cut short by a jump;
* with no timer at all, the loop waits for the OS (or another thread) as usual.

Like the ``single-threaded`` backend, the loop cannot know in advance that a plain
thread or a peer outside the process will wake a task: when only those remain, the
clock jumps to the next deadline anyway.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, final

from anyrt import FileDescriptorLike, VirtualClock

T = TypeVar("T")


@final
class IdleJumpSelector(selectors.BaseSelector):
    """Wraps a selector: a wait with nothing ready jumps the virtual clock instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        """Register ``fileobj`` with the wrapped selector."""
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """Unregister ``fileobj`` from the wrapped selector."""
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        """Change what ``fileobj`` is registered for."""
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Return the ready events; when there are none, let virtual time pass."""
        if timeout is not None and timeout <= 0:
            return self._inner.select(0)
        events = self._inner.select(0)
        if events or timeout is None:
            return events or self._inner.select(None)
        clock = self._loop.virtual_clock
        if self._loop.blocking_in_flight:
            started = time.monotonic()
            events = self._inner.select(timeout)
            clock.idle(min(time.monotonic() - started, timeout))
            return events
        clock.idle(timeout)
        return []

    def close(self) -> None:
        """Close the wrapped selector."""
        self._inner.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """Return the key ``fileobj`` is registered with."""
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        """Return the wrapped selector's mapping of file objects to keys."""
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is a `anyrt.VirtualClock` that skips idle time.

    Args:
        clock: the virtual clock; ``loop.time()`` returns ``clock.now()``.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.virtual_clock = clock
        #: How many ``run_in_executor`` calls have not finished yet.
        self.blocking_in_flight = 0
        super().__init__(selector=IdleJumpSelector(selectors.DefaultSelector(), self))

    def time(self) -> float:
        """Return the virtual clock's time."""
        return self.virtual_clock.now()

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """As asyncio's; while the call runs, an idle loop waits instead of jumping."""
        future = super().run_in_executor(executor, func, *args)
        self.blocking_in_flight += 1
        future.add_done_callback(self._blocking_done)
        return future

    def _blocking_done(self, _: object) -> None:
        self.blocking_in_flight -= 1
