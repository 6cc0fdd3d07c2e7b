"""`FatalLatch`: a KeyboardInterrupt or SystemExit raised in a task stops `block_on`.

As on asyncio and the native runtimes: such an exception that ends a task (one whose
outcome nobody else answers for, unlike a ``block_on`` main task) stops a running
``block_on``: its main task is cancelled, its cleanup runs, and ``block_on`` raises the
exception; the runtime stays usable. With no ``block_on`` running, the next one raises
it at once; one still unclaimed at `close` goes to the error handler.

The main task is cancelled right where the exception was raised, on the trio thread,
not by ``block_on``'s thread once it wakes up: meanwhile the run goes on, and on
virtual time the main task could sleep through to its end first.
"""

from __future__ import annotations

import threading
from typing import Any, final

from anyrt import Task

__all__ = ["FatalLatch"]


@final
class FatalLatch:
    """Hands each fatal exception a task raised to one ``block_on``."""

    __slots__ = ("_claims", "_lock", "_mains", "_pending", "_pending_task")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The main tasks of the running block_on calls (oldest first), and the fatal
        # exception each was stopped for.
        self._mains: dict[Task[Any], None] = {}
        self._claims: dict[Task[Any], BaseException] = {}
        # Raised while no block_on could take it, and the name of its task.
        self._pending: BaseException | None = None
        self._pending_task = ""

    def watch(self, main: Task[Any]) -> BaseException | None:
        """A ``block_on`` runs ``main``; return (take) a pending exception instead.

        If one is pending, ``main`` is not watched: its ``block_on`` raises it at once.
        """
        with self._lock:
            exc, self._pending = self._pending, None
            if exc is None:
                self._mains[main] = None
            return exc

    def raised(self, task_name: str, exc: BaseException) -> None:
        """Task ``task_name`` ended with ``exc``: stop the oldest ``block_on`` not stopped.

        With none running, ``exc`` waits for the next one (unless one already waits).
        """
        with self._lock:
            main = next((main for main in self._mains if main not in self._claims), None)
            if main is None:
                if self._pending is None:
                    self._pending, self._pending_task = exc, task_name
                return
            self._claims[main] = exc
        main.cancel()

    def unwatch(self, main: Task[Any]) -> BaseException | None:
        """``main`` has ended: return the exception its ``block_on`` must raise, if any."""
        with self._lock:
            self._mains.pop(main, None)
            return self._claims.pop(main, None)

    def take_unclaimed(self) -> tuple[str, BaseException] | None:
        """At `close`: the exception no ``block_on`` raised, and its task's name."""
        with self._lock:
            exc, self._pending = self._pending, None
        return None if exc is None else (self._pending_task, exc)
