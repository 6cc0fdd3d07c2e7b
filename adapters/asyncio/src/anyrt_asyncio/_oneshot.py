"""The oneshot on asyncio: one value, handed from any thread to one awaiting task.

The receiver holds the state - empty, sent or closed - and the value; the asyncio future
a waiting task parks on is only the wake-up signal, completed directly on the loop's
thread and through ``call_soon_threadsafe`` from any other.

Who wins between a sender and a closing receiver is decided under the runtime's oneshot
lock (one per runtime: every receiver of a runtime is awaited on its loop's thread, so
the lock is only ever contended by a sender on another thread). Parking takes no lock:
the waiting task first publishes its future in ``_waiter``, then looks at ``_state``;
`send` first sets ``_state``, then looks at ``_waiter``. Whichever comes second sees the
other, so either the task finds the value without waiting or the sender wakes it.

If `send` wins a race with the receiving task's cancellation (asyncio then throws
`CancelledError` in although the value is there, or its wake-up is still on its way from
another thread), the value is delivered anyway and the cancellation is delivered again
at the task's next suspension point: see `redeliver_cancellation`. `send` returning True
is a promise of delivery.

Measured on the ping-pong benchmark, the lock taken with ``with`` costs as much as the
rest of `send`, so it is taken with ``acquire``/``release``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from asyncio import CancelledError, InvalidStateError
from collections.abc import Generator
from typing import Any, Final, Generic, TypeVar, final

from anyrt import ClosedResourceError

T = TypeVar("T")

_EMPTY: Final = 0
_SENT: Final = 1
_CLOSED: Final = 2
_STATE_NAMES: Final = ("empty", "sent", "closed")

_get_running_loop = asyncio._get_running_loop
_Future = asyncio.Future


@final
class AsyncioReceiver(Generic[T]):
    """The receiving half of a oneshot on an asyncio loop; implements `anyrt.Receiver`."""

    __slots__ = ("_exc", "_lock", "_loop", "_state", "_value", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, lock: threading.Lock) -> None:
        self._loop = loop
        self._lock = lock
        self._state: int = _EMPTY
        self._waiter: asyncio.Future[None] | None = None
        # _value and _exc are set by the sender, and read only once _state is _SENT.
        self._value: T | None
        self._exc: BaseException | None

    def __repr__(self) -> str:
        return f"<anyrt_asyncio Receiver {_STATE_NAMES[self._state]}>"

    def __await__(self) -> Generator[Any, None, T]:
        """Wait for the value; raise what `AsyncioSender.fail` delivered."""
        if self._state != _SENT:
            if self._state == _CLOSED or self._waiter is not None:
                raise self._misuse()
            loop = self._loop
            waiter = _Future(loop=loop) if type(loop) in _PLAIN_FUTURES else loop.create_future()
            self._waiter = waiter  # publish first, then look: see the module's docstring
            if self._state != _SENT:
                # Park the task on the future, as `await waiter` would, minus its iterator.
                waiter._asyncio_future_blocking = True
                try:
                    yield waiter
                except BaseException as exc:
                    self._give_up(exc)  # returns only if the value won
                if self._state != _SENT:
                    raise ClosedResourceError("the Receiver was closed while a task awaited it")
        if self._exc is None:
            return self._value  # type: ignore[return-value]
        raise self._exc

    def _misuse(self) -> Exception:
        if self._state == _CLOSED:
            return ClosedResourceError(
                "this Receiver was closed (its task was cancelled, or close() was called); "
                "create a new oneshot()"
            )
        return RuntimeError("a Receiver can be awaited by one task at a time")

    def _give_up(self, exc: BaseException) -> None:
        """The waiting task was interrupted by ``exc``: close, or take a value that won."""
        lock = self._lock
        lock.acquire()
        try:
            if self._state != _SENT:
                self._state = _CLOSED
                self._waiter = None
                raise exc
        finally:
            lock.release()
        if not isinstance(exc, CancelledError):
            raise exc  # GeneratorExit: the coroutine is being closed
        # The value arrived first: take it, and deliver the cancellation later.
        task = asyncio.current_task()
        if task is not None:
            redeliver_cancellation(task, exc.args[0] if exc.args else None)

    def close(self) -> None:
        """Give up on the value: a later `send` returns False."""
        lock = self._lock
        lock.acquire()
        try:
            if self._state == _SENT:
                return
            self._state = _CLOSED
            waiter, self._waiter = self._waiter, None
        finally:
            lock.release()
        if waiter is not None:
            _wake_soon(waiter)  # a task waiting on it gets ClosedResourceError


@final
class AsyncioSender(Generic[T]):
    """The sending half of a oneshot on an asyncio loop; implements `anyrt.Sender`."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: AsyncioReceiver[T]) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<anyrt_asyncio Sender to {self._receiver!r}>"

    def send(self, value: T) -> bool:
        """Deliver ``value``; False if the receiver is gone. Safe from any thread."""
        receiver = self._receiver
        lock = receiver._lock
        lock.acquire()
        try:
            if receiver._state != _EMPTY:
                if receiver._state == _CLOSED:
                    return False
                raise RuntimeError("a oneshot Sender delivers once; create a new oneshot()")
            receiver._value = value
            receiver._exc = None
            receiver._state = _SENT
        finally:
            lock.release()
        waiter = receiver._waiter
        if waiter is not None:
            if _get_running_loop() is receiver._loop:
                try:  # noqa: SIM105 - suppress() would cost a context manager per wake-up
                    waiter.set_result(None)
                except InvalidStateError:  # cancelled: its task is about to give up
                    pass
            else:
                _wake_soon(waiter)
        return True

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` for the receiver to raise; False if the receiver is gone."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(exc).__name__}")
        receiver = self._receiver
        lock = receiver._lock
        lock.acquire()
        try:
            if receiver._state != _EMPTY:
                if receiver._state == _CLOSED:
                    return False
                raise RuntimeError("a oneshot Sender delivers once; create a new oneshot()")
            receiver._value = None
            receiver._exc = exc
            receiver._state = _SENT
        finally:
            lock.release()
        waiter = receiver._waiter
        if waiter is not None:
            _wake_soon(waiter)
        return True


# Tasks whose swallowed cancellation is to be delivered again: task -> (handle, message).
_REDELIVERIES: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[asyncio.Handle, object]] = (
    weakref.WeakKeyDictionary()
)


def redeliver_cancellation(task: asyncio.Task[Any], message: object) -> None:
    """Deliver ``task``'s cancellation, which a value just beat, at its next suspension.

    Not with ``task.cancel()`` now: asyncio turns a cancellation requested while a task
    runs into the task's outcome if the coroutine then returns, and the value that won
    would be lost with the result. Instead the request is withdrawn (``uncancel``) and
    made again by a callback that runs once the task has suspended - or does nothing if
    it has finished. A `Timeout` whose own cancellation it was withdraws it for good
    (`withdraw_redelivery`), as an expired timeout whose block ended anyway must not
    cancel what follows it.
    """
    task.uncancel()
    handle = task.get_loop().call_soon(_cancel_again, task, message)
    _REDELIVERIES[task] = (handle, message)


def _cancel_again(task: asyncio.Task[Any], message: object) -> None:
    _REDELIVERIES.pop(task, None)
    if not task.done():
        task.cancel(message)


def withdraw_redelivery(task: asyncio.Task[Any], message: object) -> None:
    """Drop a pending `redeliver_cancellation` of ``task`` if it carries ``message``."""
    entry = _REDELIVERIES.get(task)
    if entry is not None and entry[1] is message:
        del _REDELIVERIES[task]
        entry[0].cancel()


# Loop classes whose create_future() is asyncio's own, which makes a plain `asyncio.Future`:
# for those, the future is made directly, without the Python frame of create_future().
_PLAIN_FUTURES: set[type] = set()


def remember_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Record whether ``loop``'s class makes plain futures (called once per runtime)."""
    if type(loop).create_future is asyncio.BaseEventLoop.create_future:
        _PLAIN_FUTURES.add(type(loop))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_soon(waiter: asyncio.Future[None]) -> None:
    """Complete ``waiter`` from any thread (directly on its loop's own thread)."""
    loop = waiter.get_loop()
    if _get_running_loop() is loop:
        _wake(waiter)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody can receive any more
        loop.call_soon_threadsafe(_wake, waiter)
