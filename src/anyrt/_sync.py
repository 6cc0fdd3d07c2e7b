"""Event, Lock and Semaphore, written once on `Executor.oneshot` for every backend.

Each primitive guards its state with a `threading.Lock` (never held across an
``await``), so it may be shared by tasks on different threads and runtimes' workers.
Waiters are served first in, first out.
"""

from __future__ import annotations

from collections import deque
from threading import Lock as _ThreadLock
from types import TracebackType
from typing import Any, final

from ._protocols import Executor, Receiver, Sender
from ._validate import check_positive_int
from ._waiters import discard, hand_off

__all__ = ["Event", "Lock", "Semaphore"]


def _oneshot(executor: Executor) -> tuple[Sender[Any], Receiver[Any]]:
    pair: tuple[Sender[Any], Receiver[Any]] = executor.oneshot()
    return pair


# isinstance() against a runtime-checkable Protocol inspects every member (microseconds
# on 3.11); primitives are created on hot paths, so remember the types that passed.
_EXECUTOR_TYPES: set[type] = set()


def _check_executor(executor: object, what: str) -> Executor:
    kind = type(executor)
    if kind in _EXECUTOR_TYPES:
        return executor  # type: ignore[return-value]
    if not isinstance(executor, Executor):
        raise TypeError(
            f"{what} takes an anyrt executor (for example anyrt.runtime()), "
            f"not {type(executor).__name__}"
        )
    _EXECUTOR_TYPES.add(kind)
    return executor


@final
class Event:
    """A flag that tasks can wait for; once set it stays set.

    Args:
        executor: the executor whose `oneshot` parks the waiting tasks.
    """

    __slots__ = ("_executor", "_flag", "_lock", "_waiters")

    def __init__(self, executor: Executor) -> None:
        self._executor = _check_executor(executor, "Event()")
        self._lock = _ThreadLock()
        self._flag = False
        self._waiters: deque[Any] = deque()

    def __repr__(self) -> str:
        return f"<anyrt.Event {'set' if self._flag else 'unset'}, {len(self._waiters)} waiting>"

    def is_set(self) -> bool:
        """Return True once `set` has been called."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting task; safe from any thread."""
        with self._lock:
            if self._flag:
                return
            self._flag = True
            waiters = self._waiters
            self._waiters = deque()
        for sender in waiters:
            sender.send(None)

    async def wait(self) -> None:
        """Wait until the flag is set (return at once if it is)."""
        if self._flag:
            return
        sender, receiver = _oneshot(self._executor)
        with self._lock:
            if self._flag:
                return
            self._waiters.append(sender)
        try:
            await receiver
        except BaseException:
            with self._lock:
                discard(self._waiters, sender)
            raise


class _Acquirable:
    """The ``async with`` protocol for `Lock` and `Semaphore`."""

    __slots__ = ()

    async def acquire(self) -> None:  # pragma: no cover - overridden
        """Acquire; see the subclass."""

    def release(self) -> None:  # pragma: no cover - overridden
        """Release; see the subclass."""

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@final
class Lock(_Acquirable):
    """A fair mutual-exclusion lock for tasks (``async with lock:``).

    Ownership is handed straight to the longest-waiting task, so no task starves. A
    task cancelled while waiting never ends up holding the lock.

    Args:
        executor: the executor whose `oneshot` parks the waiting tasks.
    """

    __slots__ = ("_executor", "_lock", "_locked", "_waiters")

    def __init__(self, executor: Executor) -> None:
        self._executor = _check_executor(executor, "Lock()")
        self._lock = _ThreadLock()
        self._locked = False
        self._waiters: deque[Any] = deque()

    def __repr__(self) -> str:
        state = "locked" if self._locked else "unlocked"
        return f"<anyrt.Lock {state}, {len(self._waiters)} waiting>"

    def locked(self) -> bool:
        """Return True if some task holds the lock."""
        return self._locked

    def _try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        with self._lock:
            if self._locked:
                return False
            self._locked = True
            return True

    async def acquire(self) -> None:
        """Wait until the lock is free, then take it."""
        with self._lock:
            if not self._locked:
                self._locked = True
                return
            sender, receiver = _oneshot(self._executor)
            self._waiters.append(sender)
        # Ownership is handed over with the value. A hand-off that beat a cancellation
        # is kept (the next cancel point raises); one that lost goes to the next waiter.
        try:
            await receiver
        except BaseException:
            with self._lock:
                discard(self._waiters, sender)
            raise

    def release(self) -> None:
        """Release the lock, handing it to the next waiter if there is one.

        Raises:
            RuntimeError: the lock is not held.
        """
        with self._lock:
            if not self._locked:
                raise RuntimeError("release() of an anyrt.Lock that is not locked")
            if not hand_off(self._waiters, None):
                self._locked = False


@final
class Semaphore(_Acquirable):
    """A counting semaphore for tasks; waiters are served in FIFO order.

    Args:
        executor: the executor whose `oneshot` parks the waiting tasks.
        value: the initial count (how many tasks may hold it at once).
    """

    __slots__ = ("_executor", "_lock", "_value", "_waiters")

    def __init__(self, executor: Executor, value: int) -> None:
        self._executor = _check_executor(executor, "Semaphore()")
        self._value = check_positive_int(value, "Semaphore value", minimum=0)
        self._lock = _ThreadLock()
        self._waiters: deque[Any] = deque()

    def __repr__(self) -> str:
        return f"<anyrt.Semaphore value={self._value}, {len(self._waiters)} waiting>"

    @property
    def value(self) -> int:
        """How many more tasks can acquire without waiting."""
        return self._value

    async def acquire(self) -> None:
        """Take one unit, waiting if none is free."""
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return
            sender, receiver = _oneshot(self._executor)
            self._waiters.append(sender)
        try:
            await receiver
        except BaseException:
            with self._lock:
                discard(self._waiters, sender)
            raise

    def release(self) -> None:
        """Return one unit, handing it to the longest waiter if there is one."""
        with self._lock:
            if not hand_off(self._waiters, None):
                self._value += 1
