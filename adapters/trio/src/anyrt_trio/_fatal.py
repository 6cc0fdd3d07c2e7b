"""`FatalLatch`: a KeyboardInterrupt or SystemExit raised in a task stops `block_on`.

As on asyncio and the native runtimes: the first such exception that ends a task (one
whose outcome nobody else answers for, unlike a ``block_on`` main task) is held here,
and every running ``block_on`` is interrupted; the first to take it cancels its main
task, waits for that task's cleanup, and raises it. With no ``block_on`` running, the
next one raises it at once; one still unclaimed at `close` goes to the error handler.
"""

from __future__ import annotations

import threading
from typing import final

from anyrt._signals import MainWaiter

__all__ = ["FatalLatch"]


@final
class FatalLatch:
    """The fatal exception a task raised, until a ``block_on`` raises it."""

    __slots__ = ("_exc", "_lock", "_task_name", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exc: BaseException | None = None
        self._task_name = ""
        self._waiters: set[MainWaiter] = set()

    def raised(self, task_name: str, exc: BaseException) -> None:
        """Task ``task_name`` ended with ``exc``: interrupt every running ``block_on``.

        Only the first one is kept; the others stay in their tasks' handles.
        """
        with self._lock:
            if self._exc is not None:
                return
            self._exc = exc
            self._task_name = task_name
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.interrupt()

    def watch(self, waiter: MainWaiter) -> BaseException | None:
        """Interrupt ``waiter`` on the next fatal exception; return (take) a pending one.

        If one is pending, ``waiter`` is not registered: its ``block_on`` raises it.
        """
        with self._lock:
            exc, self._exc = self._exc, None
            if exc is None:
                self._waiters.add(waiter)
            return exc

    def unwatch(self, waiter: MainWaiter) -> None:
        """``waiter``'s ``block_on`` has returned."""
        with self._lock:
            self._waiters.discard(waiter)

    def take(self) -> BaseException | None:
        """Take the pending fatal exception, if another ``block_on`` has not taken it."""
        with self._lock:
            exc, self._exc = self._exc, None
            return exc

    def take_unclaimed(self) -> tuple[str, BaseException] | None:
        """At `close`: the exception no ``block_on`` raised, and its task's name."""
        exc = self.take()
        return None if exc is None else (self._task_name, exc)
