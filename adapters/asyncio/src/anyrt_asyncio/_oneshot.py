"""The oneshot on asyncio: one value, handed from any thread to one awaiting task.

One `AsyncioOneshot` object is both halves (``runtime.oneshot()`` returns it twice): one
allocation per oneshot, on the hottest wake path there is. It holds the state - empty,
sent, failed or closed - and the value; the asyncio future a waiting task parks on is
made only when the task has to park, and is only the wake-up signal: completed
directly on the thread that holds the loop, through ``call_soon_threadsafe`` from any
other.

No lock. Who decides the outcome - the sender, or a receiver that closes - is decided
by deleting one slot, ``_open``: deleting a slot is a single operation under the GIL
that fails with `AttributeError` if the slot is already empty, so exactly one caller
succeeds, however many threads try (a compare-and-swap that costs a few nanoseconds
and no allocation). The winner then stores the value and, last, ``_state``. A loser
that must know what won (a second `send`, a receiver giving up) reads ``_state``; in
the rare case that the winner is another thread between its claim and that store, it
hands the GIL over until the store is there (`_settled_state`).

Parking takes no lock either: the waiting task first publishes its future in ``_fut``,
then looks at ``_state``; `send` first sets ``_state``, then looks at ``_fut``.
Whichever comes second sees the other, so either the task finds the value without
waiting or the sender wakes it.

If `send` wins a race with the receiving task's cancellation (asyncio then throws
`CancelledError` in although the value is there, or its wake-up is still on its way from
another thread), the value is delivered anyway and the cancellation lands at the task's
next suspension point: a cancelled scope (or root) delivers it again by itself (see
`_scope`), and a one-shot asyncio cancellation is delivered again by
`redeliver_cancellation`. `send` returning True is a promise of delivery.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import CancelledError, InvalidStateError
from collections.abc import Generator
from threading import get_ident
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar, final

from anyrt import ClosedResourceError

from ._scope import is_level_cancelled

T = TypeVar("T")

_EMPTY: Final = 0
_SENT: Final = 1
_FAILED: Final = 2
_CLOSED: Final = 3
_STATE_NAMES: Final = ("empty", "sent", "failed", "closed")

_get_running_loop = asyncio._get_running_loop
_Future = asyncio.Future


class Home(Protocol):
    """The runtime a oneshot belongs to: its loop, and the thread that runs it.

    ``_thread`` is the ident of the thread that holds the loop (runs it, or is about to)
    while a ``block_on`` runs, 0 while nobody does, and None when the runtime cannot
    know (a borrowed loop): it spares the hot paths `asyncio._get_running_loop`, whose
    fork check makes a ``getpid`` system call every time.
    """

    _loop: asyncio.AbstractEventLoop
    _thread: int | None

    @property
    def name(self) -> str: ...


@final
class AsyncioOneshot(Generic[T]):
    """Both halves of a oneshot on an asyncio loop; implements `anyrt.Sender` and `anyrt.Receiver`.

    ``runtime.oneshot()`` returns one object as ``(sender, receiver)``. `send`, `fail`
    and `close` work from any thread; the receiver is awaited by one task on the
    runtime's loop.
    """

    __slots__ = ("_fut", "_home", "_open", "_state", "_value")

    def __init__(self, home: Home) -> None:
        self._home = home
        self._state: int = _EMPTY
        self._fut: asyncio.Future[None] | None = None
        self._open = True  # the claim (see the module's docstring): deleted, never set again
        # The value, or the exception for `fail`; stored by the claim's winner.
        self._value: Any

    def __repr__(self) -> str:
        return f"<anyrt_asyncio oneshot {_STATE_NAMES[self._state]}>"

    # -- the receiving half -------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, T]:
        """Wait for the value; raise what `fail` delivered."""
        if self._state != _SENT:
            if self._state != _EMPTY or self._fut is not None:
                if self._state == _FAILED:
                    raise self._value
                raise self._misuse()
            loop = self._home._loop
            fut = _Future(loop=loop) if type(loop) in _PLAIN_FUTURES else loop.create_future()
            self._fut = fut  # publish first, then look: see the module's docstring
            if self._state == _EMPTY:
                # Park the task on the future, as `await fut` would, minus its iterator.
                fut._asyncio_future_blocking = True
                try:
                    yield fut
                except BaseException as exc:
                    self._give_up(exc)  # returns only if the value won
            self._fut = None  # spent: whoever holds the oneshot need not keep it alive
            if self._state != _SENT:
                if self._state == _FAILED:
                    raise self._value
                raise ClosedResourceError("the Receiver was closed while a task awaited it")
        value: T = self._value
        return value

    def _misuse(self) -> Exception:
        if self._state == _CLOSED:
            return ClosedResourceError(
                "this Receiver was closed (its task was cancelled, or close() was called); "
                "create a new oneshot()"
            )
        return RuntimeError("a Receiver can be awaited by one task at a time")

    def _give_up(self, exc: BaseException) -> None:
        """The waiting task was interrupted by ``exc``: close, or take a value that won."""
        try:
            del self._open
        except AttributeError:  # a sender, or a close() on another thread, came first
            closed = self._settled_state() == _CLOSED
        else:
            self._state = _CLOSED
            self._fut = None
            closed = True
        if closed or not isinstance(exc, CancelledError):
            if type(exc) is RuntimeError and _get_running_loop() is not self._home._loop:
                raise foreign_loop_error("a oneshot Receiver", self._home.name) from exc
            raise exc  # closed; or GeneratorExit: the coroutine is being closed
        # The value arrived first: take it, and deliver the cancellation later.
        task = asyncio.current_task(self._home._loop)
        if task is not None and not is_level_cancelled(task):
            redeliver_cancellation(task, exc.args[0] if exc.args else None)

    def _settled_state(self) -> int:
        """``_state`` once the claim's winner has stored it.

        The winner may be another thread, between its claim and that store: the GIL is
        handed over until the store is there (a few bytecodes away).
        """
        while (state := self._state) == _EMPTY:
            time.sleep(0)  # releases the GIL
        return state

    def close(self) -> None:
        """Give up on the value: a later `send` returns False."""
        try:
            del self._open
        except AttributeError:  # sent (keep the value), or already closed
            return
        self._state = _CLOSED
        fut, self._fut = self._fut, None
        if fut is not None:
            _wake_soon(fut, self._home)  # a task waiting on it gets ClosedResourceError

    # -- the sending half ---------------------------------------------------------------

    def send(self, value: T) -> bool:
        """Deliver ``value``; False if the receiver is gone. Safe from any thread."""
        try:
            del self._open
        except AttributeError:
            return self._refused()
        self._value = value
        self._state = _SENT
        fut = self._fut
        if fut is not None:
            if get_ident() == self._home._thread:
                try:  # noqa: SIM105 - suppress() would cost a context manager per wake-up
                    fut.set_result(None)
                except InvalidStateError:  # cancelled: its task is about to give up
                    pass
            else:
                _wake_soon(fut, self._home)
        return True

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` for the receiver to raise; False if the receiver is gone."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(exc).__name__}")
        try:
            del self._open
        except AttributeError:
            return self._refused()
        self._value = exc
        self._state = _FAILED
        fut = self._fut
        if fut is not None:
            _wake_soon(fut, self._home)
        return True

    def _refused(self) -> bool:
        """`send`/`fail` lost the claim: False after a close, else a `RuntimeError`."""
        if self._settled_state() == _CLOSED:
            return False
        raise RuntimeError("a oneshot Sender delivers once; create a new oneshot()")


AsyncioSender: TypeAlias = AsyncioOneshot
"""The sending half of an asyncio oneshot (the one `AsyncioOneshot` object)."""

AsyncioReceiver: TypeAlias = AsyncioOneshot
"""The receiving half of an asyncio oneshot (the one `AsyncioOneshot` object)."""


def redeliver_cancellation(task: asyncio.Task[Any], message: object) -> None:
    """Deliver ``task``'s one-shot cancellation, which a value just beat, at its next suspension.

    Not with ``task.cancel()`` now: asyncio turns a cancellation requested while a task
    runs into the task's outcome if the coroutine then returns, and the value that won
    would be lost with the result. Instead the request is withdrawn (``uncancel``) and
    made again by a callback that runs once the task has suspended - or does nothing if
    it has finished.
    """
    task.uncancel()
    task.get_loop().call_soon(_cancel_again, task, message)


def _cancel_again(task: asyncio.Task[Any], message: object) -> None:
    if not task.done():
        task.cancel(message)


def foreign_loop_error(what: str, runtime_name: str) -> RuntimeError:
    """The error for ``what``, of a runtime, awaited outside that runtime's loop."""
    return RuntimeError(
        f"{what} of the {runtime_name!r} runtime was awaited in a task that does not run on "
        "that runtime's event loop (a task of another runtime, or no task at all); await "
        "it in a task of its own runtime"
    )


# Loop classes whose create_future() is asyncio's own, which makes a plain `asyncio.Future`:
# for those, the future is made directly, without the Python frame of create_future().
_PLAIN_FUTURES: set[type] = set()


def remember_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Record whether ``loop``'s class makes plain futures (called once per runtime)."""
    if type(loop).create_future is asyncio.BaseEventLoop.create_future:
        _PLAIN_FUTURES.add(type(loop))


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake_soon(fut: asyncio.Future[None], home: Home) -> None:
    """Complete ``fut`` from any thread (directly on the thread that holds the loop)."""
    thread = home._thread
    if thread is None:  # not known: ask asyncio (a system call, see `Home`)
        if _get_running_loop() is home._loop:
            _wake(fut)
            return
    elif get_ident() == thread:
        _wake(fut)
        return
    try:  # noqa: SIM105 - suppress() costs a context manager per cross-thread wake-up
        home._loop.call_soon_threadsafe(_wake, fut)
    except RuntimeError:  # a closed loop: nobody can receive any more
        pass
