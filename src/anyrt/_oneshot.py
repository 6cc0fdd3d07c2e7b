"""The native oneshot: one value, handed from any thread to one awaiting task.

This is the one primitive every native park-and-wake goes through. The receiver holds
the state; the sender is a thin handle on it (the two stay separate objects: a driver
that resumes an awaitable with ``.send(None)`` must never deliver a value). The state
is guarded by a lock taken from a fixed pool of striped locks (no allocation per
oneshot; critical sections are a few attribute writes and never take another lock).

If `send` wins a race with the receiving task's cancellation, the value is delivered
anyway: `send` returning True is a promise of delivery, which lets `Lock` and
`Channel` hand items over without ever losing one. The cancellation is not lost
either: it is level-triggered, so the task's next cancel point raises it.

The receiver is its own awaitable iterator: ``await receiver`` calls `__next__` to
start and on every resumption, and `throw` to deliver a cancellation, so no generator
(and no frame) is created per await on the hottest wake path.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar, final

from ._exceptions import ClosedResourceError

if TYPE_CHECKING:
    from ._task import NativeTask, Worker

T = TypeVar("T")

_EMPTY: Final = 0
_WAITING: Final = 1
_SENT: Final = 2
_CLOSED: Final = 3
_STATE_NAMES: Final = ("empty", "waiting", "sent", "closed")

_STRIPES: Final = 64
_LOCKS: Final = tuple(threading.Lock() for _ in range(_STRIPES))
_next_stripe = itertools.count().__next__


@final
class NativeReceiver(Generic[T]):
    """The receiving half of a native oneshot; implements `anyrt.Receiver`."""

    __slots__ = ("_exc", "_lock", "_runtime", "_state", "_value", "_waiter")

    def __init__(self, runtime: object) -> None:
        self._runtime = runtime
        self._lock = _LOCKS[_next_stripe() % _STRIPES]
        self._state = _EMPTY
        self._value: T | None = None
        self._exc: BaseException | None = None
        self._waiter: NativeTask[Any] | None = None

    def __repr__(self) -> str:
        return f"<anyrt Receiver {_STATE_NAMES[self._state]}>"

    def _deliver(self, value: T | None, exc: BaseException | None) -> bool:
        with self._lock:
            state = self._state
            if state == _CLOSED:
                return False
            if state == _SENT:
                raise RuntimeError("a oneshot Sender delivers once; create a new oneshot()")
            self._value = value
            self._exc = exc
            self._state = _SENT
            waiter = self._waiter
        if waiter is not None:
            waiter.wake()
        return True

    def __await__(self) -> Generator[Any, Any, T]:
        state = self._state
        if state == _CLOSED:
            raise ClosedResourceError(
                "this Receiver was closed (its task was cancelled, or close() was "
                "called); create a new oneshot()"
            )
        if state == _WAITING:
            raise RuntimeError("a Receiver can be awaited by one task at a time")
        # Not a generator but an iterator with send/throw/close, which is all `await`
        # needs; typeshed only knows the generator spelling.
        return self  # type: ignore[return-value]

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Self:
        state = self._state
        if state == _SENT:
            exc = self._exc
            if exc is not None:
                raise exc
            raise StopIteration(self._value)
        if state == _CLOSED and self._exc is not None:
            raise self._exc  # refused by _anyrt_park
        return self  # the trap: the worker calls _anyrt_park

    def send(self, _: object) -> Self:
        """Resume the await (the iterator protocol); the value sent in is ignored."""
        return self.__next__()

    def throw(self, exc: BaseException, *args: object) -> Self:
        """A cancellation thrown in while waiting; a value that already arrived wins.

        The sender was told the value is delivered, so it is: the cancellation stays
        pending (level-triggered) and the task's next cancel point raises it.
        """
        with self._lock:
            if self._state != _SENT:
                self._state = _CLOSED
                self._waiter = None
                raise exc
        return self.__next__()

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if task._sink is not self._runtime:
            self._refuse(task)
            return
        with self._lock:
            if self._state != _SENT:
                self._state = _WAITING
                self._waiter = task
                return
        task.wake()

    def _refuse(self, task: NativeTask[Any]) -> None:
        from ._native import foreign_runtime_error  # noqa: PLC0415 - _native imports us

        # Closed (a later send returns False: nobody will get the value), with the error
        # for the awaiting coroutine to raise when it resumes.
        error = foreign_runtime_error("a oneshot Receiver", self._runtime, task)
        with self._lock:
            if self._state != _SENT:
                self._state = _CLOSED
                self._exc = error
        task.wake()

    def close(self) -> None:
        """Give up on the value: a later `send` returns False.

        Also what ``coroutine.close()`` calls on the awaitable it is suspended in.
        """
        with self._lock:
            if self._state != _SENT:
                self._state = _CLOSED
                self._waiter = None


@final
class NativeSender(Generic[T]):
    """The sending half of a native oneshot; implements `anyrt.Sender`."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: NativeReceiver[T]) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<anyrt Sender to {self._receiver!r}>"

    def send(self, value: T) -> bool:
        """Deliver ``value``; False if the receiver is gone. Safe from any thread."""
        return self._receiver._deliver(value, None)

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` for the receiver to raise; False if the receiver is gone."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(exc).__name__}")
        return self._receiver._deliver(None, exc)
