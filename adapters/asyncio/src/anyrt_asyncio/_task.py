"""The task handle: an `asyncio.Task` that also keeps the `anyrt.Task` contract.

A spawned coroutine runs as an `AsyncioTask`, a subclass of asyncio's own (C) task, so
it is scheduled, cancelled and introspected exactly like any asyncio task
(`asyncio.current_task`, `asyncio.all_tasks`, sniffio). The subclass changes four
things, each where the anyrt contract differs from asyncio's:

* ``await task`` waits on a private future, not on the task itself: when the awaiting
  task is cancelled, asyncio would cancel the task it awaits; anyrt must leave it
  running. Awaiting a cancelled task raises `anyrt.Cancelled`.
* `cancel` cancels the task's anyrt root scope: level-triggered (see `_scope`), so
  every cancel point the task reaches raises again, except inside a shielded scope.
  It may be called from any thread (asyncio's may not). asyncio code that cancels a
  task and then withdraws the request with ``uncancel()`` - `asyncio.timeout`,
  `asyncio.TaskGroup` - withdraws it from the root too, so it keeps working in place;
  ``cancel(msg)`` with a message is asyncio's own one-shot cancellation (what anyio
  sends). `cancelling` counts both kinds of request. One consequence: inside an anyrt
  shielded scope, the cancellation `asyncio.timeout` or `asyncio.TaskGroup` requests
  of their task waits until the shield is left, like every root cancellation (anyio's
  scopes, which pass a message, are not held).
* A failure nobody will see goes to the runtime's error handler, never to asyncio's
  "Task exception was never retrieved" log: `detach` reports it when the task ends, and
  a failed task dropped unawaited reports it when it is collected (``__del__``, which
  replaces asyncio's finalizer).
* A task spawned from a thread that does not run the loop is created *uninitialised*
  and initialised on the loop thread (asyncio's task constructor schedules the first
  step with the non-thread-safe ``loop.call_soon``). Until then it holds the coroutine
  in ``_anyrt_pending``; every method that needs the asyncio state starts it first.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from asyncio import AbstractEventLoop
from collections.abc import Callable, Coroutine, Generator
from functools import partial
from threading import get_ident
from typing import Any, Final, Protocol, TypeVar

from anyrt import Cancelled, TaskError

from ._scope import TaskCancels, refresh, scope_cancelling, task_cancels

T = TypeVar("T")

logger = logging.getLogger("anyrt")

ErrorHandler = Callable[[TaskError], None]

_get_running_loop = asyncio._get_running_loop
_task_new = asyncio.Task.__new__
_task_init = asyncio.Task.__init__
_task_cancel = asyncio.Task.cancel
_task_del = asyncio.Task.__del__
_task_cancelled = asyncio.Task.cancelled

#: What a task raising one of these stops: the runtime's `block_on` (not the error handler).
_FATAL = (KeyboardInterrupt, SystemExit)


def log_task_error(error: TaskError) -> None:
    """The default error handler: log the failure with its traceback to ``anyrt``."""
    logger.error(
        "unhandled exception in %s task %r",
        error.reason,
        error.task_name,
        exc_info=(type(error.exception), error.exception, error.exception.__traceback__),
    )


class TaskOwner(Protocol):
    """What a task needs from its runtime: its loop, its thread and its error handler."""

    _loop: AbstractEventLoop
    # The thread that holds the loop, 0 if none, None if unknown (see _oneshot.Home).
    _thread: int | None

    def _report(self, error: TaskError) -> None:
        """Hand ``error`` to the runtime's error handler."""
        ...

    def _report_later(self, error: TaskError) -> None:
        """Hand ``error`` to the error handler from the loop (safe in a finaliser)."""
        ...


def report(owner_handler: ErrorHandler, error: TaskError) -> None:
    """Call ``owner_handler(error)``; if the handler itself raises, log both."""
    try:
        owner_handler(error)
    except BaseException as handler_exc:
        logger.error(  # noqa: TRY400 - exc_info names the handler's exception explicitly
            "the anyrt error handler %r raised while reporting task %r",
            owner_handler,
            error.task_name,
            exc_info=(type(handler_exc), handler_exc, handler_exc.__traceback__),
        )
        log_task_error(error)


class AsyncioTask(asyncio.Task[T]):
    """The join handle of a coroutine spawned on an asyncio-backed anyrt runtime.

    Implements `anyrt.Task` and is an `asyncio.Task`. Created by ``runtime.spawn()``
    (constructing one directly raises `TypeError`).
    """

    __slots__ = (
        "_anyrt_cancels",
        "_anyrt_detached",
        "_anyrt_live",
        "_anyrt_owner",
        "_anyrt_pending",
    )

    _anyrt_owner: TaskOwner
    _anyrt_detached: bool
    # The task's cancel scopes and cancel requests, made on first use (see _scope).
    _anyrt_cancels: TaskCancels | None
    # True once asyncio's own initialisation ran (the task is scheduled).
    _anyrt_live: bool
    # (coroutine, name, context) until the task is initialised on the loop thread.
    _anyrt_pending: tuple[Coroutine[Any, Any, T], str, contextvars.Context] | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("AsyncioTask objects are created by runtime.spawn(), not directly")

    # -- creation ---------------------------------------------------------------------

    @classmethod
    def _create(cls, owner: TaskOwner, coro: Coroutine[Any, Any, T], name: str) -> AsyncioTask[T]:
        """Create and schedule the task; only on the loop's thread, or while it is idle."""
        task: AsyncioTask[T] = _task_new(cls)
        task._anyrt_owner = owner
        task._anyrt_detached = False
        task._anyrt_pending = None
        task._anyrt_live = False
        task._anyrt_cancels = None
        try:
            _task_init(task, coro, loop=owner._loop, name=name)
        except BaseException:
            coro.close()
            raise
        task._anyrt_live = True
        return task

    @classmethod
    def _create_pending(
        cls, owner: TaskOwner, coro: Coroutine[Any, Any, T], name: str
    ) -> AsyncioTask[T]:
        """Create the handle now; `_anyrt_start` must then run on the loop's thread."""
        task: AsyncioTask[T] = _task_new(cls)
        task._anyrt_owner = owner
        task._anyrt_detached = False
        task._anyrt_pending = (coro, name, contextvars.copy_context())
        task._anyrt_live = False
        task._anyrt_cancels = None
        return task

    def _anyrt_start(self) -> None:
        """Initialise a pending task (on the loop's thread); a no-op once started."""
        pending = self._anyrt_pending
        if pending is None or self._anyrt_live:
            return
        coro, name, context = pending
        _task_init(self, coro, loop=self._anyrt_owner._loop, name=name, context=context)
        self._anyrt_live = True
        self._anyrt_pending = None

    def _anyrt_discard(self) -> None:
        """Give up on a pending task that will never start (its runtime or loop is gone)."""
        pending = self._anyrt_pending
        if pending is not None and not self._anyrt_live:
            pending[0].close()

    def _anyrt_on_loop(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` now if this is the loop's thread, else post it there.

        Returns:
            False if the loop is closed (nothing will ever run there again).
        """
        owner = self._anyrt_owner
        loop = owner._loop
        if get_ident() == owner._thread or _get_running_loop() is loop:
            fn(*args)
            return True
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True

    # -- the anyrt.Task protocol --------------------------------------------------------

    @property
    def name(self) -> str:
        """The task's name (asyncio's ``get_name()``)."""
        pending = self._anyrt_pending
        if pending is not None:
            return pending[1]
        return str(self.get_name())

    @name.setter
    def name(self, value: str) -> None:
        self.set_name(value)

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the task's root scope: every cancel point it reaches raises from then on.

        Level-triggered, as `anyrt.Task.cancel` says: inside a shielded scope the task
        is left alone until it leaves the shield. Safe from any thread: from another
        thread the request is posted to the loop. With a ``msg`` it is asyncio's own
        one-shot ``cancel(msg)`` instead.

        Returns:
            False if the task had already finished, True otherwise.
        """
        owner = self._anyrt_owner
        if get_ident() == owner._thread or _get_running_loop() is owner._loop:
            if self._anyrt_pending is not None:
                self._anyrt_start()
            if self.done():
                return False
            self._anyrt_cancel_here(msg)
            return True
        if self._anyrt_live and self.done():
            return False
        return self._anyrt_on_loop(self._anyrt_cancel_here, msg)

    def _anyrt_cancel_here(self, msg: Any | None) -> None:
        self._anyrt_start()
        if self.done():
            return
        cancels = task_cancels(self)
        assert cancels is not None
        if msg is None:
            cancels.root += 1
            refresh(self, cancels)
        else:
            cancels.edge += 1
            _task_cancel(self, msg)

    def cancelling(self) -> int:
        """The cancellation requests not withdrawn by `uncancel` (asyncio's count).

        The root's and ``cancel(msg)``'s, plus one while a cancelled scope encloses the
        task: asyncio code inside it (`asyncio.timeout`) then knows that the
        cancellation it sees is not only its own.
        """
        cancels = self._anyrt_cancels
        if cancels is None:
            return 0
        return cancels.root + cancels.edge + scope_cancelling(cancels)

    def uncancel(self) -> int:
        """Withdraw one cancellation request, as asyncio code does once it handled its own.

        A ``cancel(msg)`` request is withdrawn first, else a root one: once none is
        left the root scope is no longer cancelled.

        Returns:
            The requests left.
        """
        cancels = self._anyrt_cancels
        if cancels is None:
            return 0
        if cancels.edge:
            cancels.edge -= 1
        elif cancels.root:
            cancels.root -= 1
            if not cancels.root:
                refresh(self, cancels)  # the root was the culprit: no longer
        return self.cancelling()

    def cancelled(self) -> bool:
        """Return True if the task finished by being cancelled.

        That is, a cancellation escaped its coroutine: asyncio's `CancelledError`, or
        `anyrt.Cancelled` (from joining a cancelled task).
        """
        if _task_cancelled(self):
            return True
        return self.done() and _effective(self._exception) is _CANCELLED_OUTCOME

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler.

        Safe from any thread.
        """
        self._anyrt_detached = True
        if not self._anyrt_on_loop(self._anyrt_detach_here):
            self._anyrt_discard()

    def _anyrt_detach_here(self) -> None:
        self._anyrt_start()
        if self.done():
            self._anyrt_report_detached(self)
        else:
            self.add_done_callback(self._anyrt_report_detached)

    def _anyrt_report_detached(self, _: object) -> None:
        if self.cancelled() or not self._log_traceback:
            return  # cancelled, succeeded, or its failure was already seen
        exc = _effective(self.exception())  # marks it retrieved: asyncio will not log it
        if isinstance(exc, BaseException) and not isinstance(exc, _FATAL):  # (block_on raised)
            self._anyrt_owner._report(TaskError(self.get_name(), exc, "detached"))

    def __await__(self) -> Generator[Any, None, T]:
        """Wait for the task; return its result or re-raise its exception.

        Cancelling the awaiting task leaves this one running. A cancelled task raises
        `anyrt.Cancelled`.
        """
        if self.done():  # the common case of a join: no suspension at all
            if self.cancelled():
                raise Cancelled(f"task {self.get_name()!r} was cancelled") from None
            return self.result()
        if not self._anyrt_live:
            self._check_awaiter()
            self._anyrt_start()
        if not self.done():
            loop = self._check_awaiter()
            waiter = loop.create_future()
            wake = partial(_wake_joiner, waiter)
            self.add_done_callback(wake)
            try:
                yield from waiter
            finally:
                if not waiter.done() or waiter.cancelled():
                    self.remove_done_callback(wake)
        return self._anyrt_outcome()

    __iter__ = __await__

    def _check_awaiter(self) -> AbstractEventLoop:
        owner = self._anyrt_owner
        loop = owner._loop
        if get_ident() != owner._thread and _get_running_loop() is not loop:
            raise RuntimeError(
                f"task {self.name!r} belongs to another event loop: await it from a task "
                "of the runtime that spawned it (to wait from elsewhere, send its result "
                "through a oneshot())"
            )
        return loop

    def _anyrt_outcome(self) -> T:
        if self.cancelled():
            if not _task_cancelled(self):
                self.exception()  # mark it retrieved: asyncio must not log it
            raise Cancelled(f"task {self.get_name()!r} was cancelled") from None
        exc = _effective(self._exception)
        if exc is not self._exception and isinstance(exc, BaseException):
            self.exception()  # retrieved: raised as the errors without the cancellations
            raise exc
        return self.result()

    def __del__(self) -> None:
        try:
            live = self._anyrt_live
        except AttributeError:  # constructed directly, and refused by __init__
            return
        if not live:
            self._anyrt_discard()
        elif self._log_traceback:  # it failed and nobody retrieved the exception
            exc = _effective(self.exception())
            if isinstance(exc, BaseException) and not isinstance(exc, (Cancelled, *_FATAL)):
                self._anyrt_owner._report_later(TaskError(self.get_name(), exc, "never awaited"))
        elif not self.done():
            _task_del(self)  # asyncio's own finalizer: warns about a task destroyed pending


#: What `_effective` returns for an exception that only says the task was cancelled.
_CANCELLED_OUTCOME: Final = object()


def _effective(exc: BaseException | None) -> BaseException | object | None:
    """What a task that ended with ``exc`` ended with, as on the native runtimes.

    A cancellation inside an exception group (a task group that failed while its task
    was being cancelled) only says the task was cancelled too: the task ended with the
    real errors, or, when there are none, cancelled (`_CANCELLED_OUTCOME`).
    """
    if isinstance(exc, (Cancelled, asyncio.CancelledError)):
        return _CANCELLED_OUTCOME
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    cancellations, rest = exc.split((Cancelled, asyncio.CancelledError))
    if cancellations is None:
        return exc
    return _CANCELLED_OUTCOME if rest is None else rest


def _wake_joiner(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)
