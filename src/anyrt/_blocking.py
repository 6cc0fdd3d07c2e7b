"""The blocking pool behind `spawn_blocking`: bounded, grows on demand, reaps idle threads."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ._exceptions import ClosedResourceError
from ._protocols import Sender

_STOP: Final = object()


class BlockingPool:
    """Runs blocking calls on worker threads and hands results back through oneshots.

    A call is queued; an idle thread takes it, or a new thread starts if fewer than
    ``max_threads`` exist. A thread idle for ``idle_timeout`` seconds exits.

    Args:
        name: prefix of the thread names.
        max_threads: the most threads that run at once.
        idle_timeout: seconds an idle thread waits for work before it exits.
    """

    def __init__(self, name: str, *, max_threads: int = 64, idle_timeout: float = 10.0) -> None:
        self._name = name
        self._max_threads = max_threads
        self._idle_timeout = idle_timeout
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[Callable[[], Any], Sender[Any]]] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._counter = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads exist now."""
        return len(self._threads)

    def submit(self, call: Callable[[], Any], sender: Sender[Any]) -> None:
        """Queue ``call``; its result or exception goes to ``sender``."""
        with self._cond:
            if self._closed:
                raise ClosedResourceError("the runtime's blocking pool is shut down")
            self._queue.append((call, sender))
            if self._idle > len(self._queue) - 1:
                self._cond.notify()
                return
            if len(self._threads) < self._max_threads:
                self._counter += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-blocking-{self._counter}", daemon=True
                )
                self._threads.add(thread)
                thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle += 1
                    woke = self._cond.wait(self._idle_timeout)
                    self._idle -= 1
                    if not woke and not self._queue:
                        self._threads.discard(me)
                        return
                if not self._queue:  # closed and drained
                    self._threads.discard(me)
                    return
                call, sender = self._queue.popleft()
            try:
                result = call()
            except BaseException as exc:
                sender.fail(exc)
            else:
                sender.send(result)

    def shutdown(self) -> None:
        """Finish queued calls, then join every thread."""
        with self._cond:
            self._closed = True
            threads = list(self._threads)
            self._cond.notify_all()
        for thread in threads:
            thread.join()
