"""The oneshot on trio: one value, handed from any thread to one waiting trio task.

The receiver holds the state, guarded by a lock from a fixed pool of striped locks (no
allocation per oneshot). A task of the oneshot's runtime waits with
`trio.lowlevel.wait_task_rescheduled`; the sender wakes it with
`trio.lowlevel.reschedule`, directly when it runs on the runtime's trio thread, through
the run's `TrioToken` otherwise. Awaiting the receiver in another run (a task of another
trio runtime) raises `RuntimeError`: it could only ever be woken on its own run.

The delivery promise of `anyrt.Sender.send` maps onto trio's abort protocol: when the
waiting task is cancelled, trio asks the receiver's abort function whether the wait can
be abandoned. If a value has already been sent it answers ``Abort.FAILED``: the task
stays parked until the sender's wake-up arrives and gets the value, and trio's
cancellation (which is level-triggered) is raised at its next checkpoint. Otherwise it
closes the receiver, so a later `send` returns False.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Generator
from threading import get_ident
from typing import Any, Final, Generic, TypeVar, final

import trio
from trio.lowlevel import Abort, RaiseCancelT, current_task, reschedule, wait_task_rescheduled

from anyrt import ClosedResourceError

from ._home import Home, foreign_error

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
class TrioOneshot(Generic[T]):
    """A trio oneshot: both halves in one object; implements `anyrt.Sender` and `anyrt.Receiver`.

    `TrioRuntime.oneshot` returns it twice, as ``(sender, receiver)``: one allocation
    per oneshot on the hottest wake path. Awaiting it goes through a generator, never
    through the object's own `send`, so a driver resuming the await cannot deliver a
    value by mistake.
    """

    __slots__ = ("_exc", "_home", "_lock", "_state", "_task", "_value")

    def __init__(self, home: Home) -> None:
        self._lock = _LOCKS[_next_stripe() % _STRIPES]
        self._state = _EMPTY
        self._value: T | None = None
        self._exc: BaseException | None = None
        self._home = home
        self._task: trio.lowlevel.Task | None = None  # the parked trio task

    def __repr__(self) -> str:
        return f"<anyrt trio oneshot {_STATE_NAMES[self._state]}>"

    def __await__(self) -> Generator[Any, Any, T]:
        if self._state != _SENT:
            # Record the calling task as the waiter (inline: the hottest wait path).
            state = self._state
            if state == _CLOSED:
                raise ClosedResourceError(
                    "this Receiver was closed (its task was cancelled, or close() was "
                    "called); create a new oneshot()"
                )
            if state == _WAITING:
                raise RuntimeError("a Receiver can be awaited by one task at a time")
            if get_ident() != self._home._ident:
                self._refuse()
            task = current_task()
            lock = self._lock
            lock.acquire()  # acquire/release rather than `with`: half the cost
            try:
                parked = self._state != _SENT
                if parked:
                    self._state = _WAITING
                    self._task = task
            finally:
                lock.release()
            if parked:
                try:
                    yield from wait_task_rescheduled(self._abort).__await__()
                except BaseException:
                    self.close()  # cancelled, or the coroutine was closed while parked
                    raise
        exc = self._exc
        if exc is not None:
            raise exc
        return self._value  # type: ignore[return-value]

    def _refuse(self) -> None:
        """Awaited outside its runtime's run: close it (nobody will get the value), raise."""
        self.close()
        if self._state != _SENT:
            raise foreign_error("a oneshot Receiver", self._home)

    def _abort(self, _: RaiseCancelT) -> Abort:
        lock = self._lock
        lock.acquire()
        try:
            if self._state == _SENT:
                return Abort.FAILED  # the value won; its wake-up is on its way
            self._state = _CLOSED
            self._task = None
            return Abort.SUCCEEDED
        finally:
            lock.release()

    def send(self, value: T) -> bool:
        """Deliver ``value``; False if the receiver is gone. Safe from any thread."""
        lock = self._lock
        lock.acquire()
        try:
            state = self._state
            if state != _EMPTY and state != _WAITING:  # noqa: PLR1714 - two int compares
                return self._refused(state)
            self._value = value
            self._state = _SENT
            task = self._task
            self._task = None
        finally:
            lock.release()
        if task is not None:
            if get_ident() == self._home._ident:
                reschedule(task)
            else:
                self._wake_from_afar(task)
        return True

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` for the receiver to raise; False if the receiver is gone."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(exc).__name__}")
        with self._lock:
            state = self._state
            if state != _EMPTY and state != _WAITING:  # noqa: PLR1714
                return self._refused(state)
            self._exc = exc
            self._state = _SENT
            task = self._task
            self._task = None
        if task is not None:
            if get_ident() == self._home._ident:
                reschedule(task)
            else:
                self._wake_from_afar(task)
        return True

    def _wake_from_afar(self, task: trio.lowlevel.Task) -> None:
        # If the run is over, the task ended with it.
        with contextlib.suppress(trio.RunFinishedError):
            self._home._token.run_sync_soon(reschedule, task)

    @staticmethod
    def _refused(state: int) -> bool:
        if state == _SENT:
            raise RuntimeError("a oneshot Sender delivers once; create a new oneshot()")
        return False  # closed: the receiver is gone

    def close(self) -> None:
        """Give up on the value: a later `send` returns False."""
        with self._lock:
            if self._state != _SENT:
                self._state = _CLOSED
                self._task = None
