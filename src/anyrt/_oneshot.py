"""The native oneshot: one value, handed from any thread to one awaiting task.

This is the one primitive every native park-and-wake goes through. The receiver's
state is guarded by its own lock. If `send` wins a race with the receiving task's
cancellation, the value is delivered anyway and the cancellation is re-armed for the
task's next suspension point: `send` returning True is a promise of delivery, which
lets `Lock` and `Channel` hand items over without ever losing one.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from ._exceptions import Cancelled, ClosedResourceError

if TYPE_CHECKING:
    from ._task import NativeTask, Worker

T = TypeVar("T")

_EMPTY: Final = 0
_WAITING: Final = 1
_SENT: Final = 2
_CLOSED: Final = 3


@final
class NativeReceiver(Generic[T]):
    """The receiving half of a native oneshot; implements `anyrt.Receiver`."""

    __slots__ = ("_exc", "_lock", "_state", "_value", "_waiter")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _EMPTY
        self._value: T | None = None
        self._exc: BaseException | None = None
        self._waiter: NativeTask[Any] | None = None

    def __repr__(self) -> str:
        state = ("empty", "waiting", "sent", "closed")[self._state]
        return f"<anyrt Receiver {state}>"

    def __await__(self) -> Generator[Any, Any, T]:
        state = self._state
        if state != _SENT:
            if state == _CLOSED:
                raise ClosedResourceError(
                    "this Receiver was closed (its task was cancelled, or close() was "
                    "called); create a new oneshot()"
                )
            if state == _WAITING:
                raise RuntimeError("a Receiver can be awaited by one task at a time")
            try:
                while self._state != _SENT:
                    yield self
            except BaseException as exc:
                with self._lock:
                    if self._state != _SENT:
                        self._state = _CLOSED
                        self._waiter = None
                        raise
                waiter = self._waiter
                if not isinstance(exc, Cancelled) or waiter is None:
                    raise
                # The value arrived first: take it, and deliver the cancellation later.
                waiter._repend_cancel(exc)
        if self._exc is not None:
            raise self._exc
        return self._value  # type: ignore[return-value]

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        with self._lock:
            if self._state != _SENT:
                self._state = _WAITING
                self._waiter = task
                return
        task.wake()

    def close(self) -> None:
        """Give up on the value: a later `send` returns False."""
        with self._lock:
            if self._state != _SENT:
                self._state = _CLOSED
                self._waiter = None

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


def native_oneshot() -> tuple[NativeSender[Any], NativeReceiver[Any]]:
    """Return a connected native (sender, receiver) pair."""
    receiver: NativeReceiver[Any] = NativeReceiver()
    return NativeSender(receiver), receiver
