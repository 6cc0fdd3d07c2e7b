"""`TrioTask`, the join handle of a coroutine spawned on trio, and the runner that drives it.

Every spawned coroutine becomes one trio task, which runs `run_task`: the coroutine
inside a cancel scope of its own, so that `TrioTask.cancel` cancels exactly that task.
Its state (result, exception, waiters) is only written on the trio thread; another
thread that cancels or detaches it posts the operation to the run with the run's
`TrioToken`. `done()` and `result()` only read it.

Cancellation is trio's: level-triggered. Once a task is cancelled every checkpoint it
reaches raises `trio.Cancelled` until it finishes; code that must await while cleaning
up shields itself with ``trio.CancelScope(shield=True)``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Generator
from threading import get_ident
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import trio
from trio.lowlevel import Abort, RaiseCancelT, current_task, current_trio_token, reschedule

import anyrt
from anyrt import Cancelled, TaskError
from anyrt._task import FATAL, without_cancellations

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

T = TypeVar("T")

_PENDING: Final = 0
_RUNNING: Final = 1
_DONE: Final = 2
_STATE_NAMES: Final = ("pending", "running", "done")

# Guards the waiters that await a task from another trio run (another thread): rare.
_FOREIGN_LOCK: Final = threading.Lock()


def wake(task: trio.lowlevel.Task, thread: int, token: trio.lowlevel.TrioToken) -> None:
    """Reschedule ``task``, parked in the run on ``thread``; safe from any thread."""
    if get_ident() == thread:
        reschedule(task)
        return
    with contextlib.suppress(trio.RunFinishedError):  # the task ended with its run
        token.run_sync_soon(reschedule, task)


_CANCELLATIONS: Final = (trio.Cancelled, Cancelled)


def is_cancellation(exc: BaseException) -> bool:
    """Return True if ``exc`` says the task was cancelled (possibly inside nurseries)."""
    if isinstance(exc, _CANCELLATIONS):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_CANCELLATIONS)[1] is None
    return False


class _FailureGuard:
    """Reports a task's exception when its handle is dropped without anyone looking."""

    __slots__ = ("armed", "exc", "name", "runtime")

    def __init__(self, runtime: TrioRuntime, name: str, exc: BaseException) -> None:
        self.runtime = runtime
        self.name = name
        self.exc = exc
        self.armed = True

    def __del__(self) -> None:
        if self.armed:
            self.armed = False
            # Queued, not reported here: the collector may have interrupted anything.
            self.runtime._report_later(TaskError(self.name, self.exc, "never awaited"))


class _ForeignJoin:
    """A task of another trio run waiting for a `TrioTask` (guarded by `_FOREIGN_LOCK`)."""

    __slots__ = ("target", "task", "thread", "token", "woken")

    def __init__(self, target: TrioTask[Any]) -> None:
        self.target = target
        self.task = current_task()
        self.thread = get_ident()
        self.token = current_trio_token()
        self.woken = False

    def abort(self, _: RaiseCancelT) -> Abort:
        with _FOREIGN_LOCK:
            if self.woken:
                return Abort.FAILED
            foreign = self.target._foreign
            if foreign is not None:
                foreign.remove(self)
        return Abort.SUCCEEDED


@final
class TrioTask(Generic[T]):
    """The join handle of a coroutine spawned on a trio runtime; implements `anyrt.Task`.

    Create tasks with ``runtime.spawn()``. Awaiting a task that was cancelled raises
    `anyrt.Cancelled`, as on every backend.
    """

    __slots__ = (
        "__weakref__",
        "_cancel_pending",
        "_coro",
        "_detached",
        "_exc",
        "_foreign",
        "_guard",
        "_on_done",
        "_result",
        "_runtime",
        "_scope",
        "_state",
        "_waiters",
        "name",
    )

    def __init__(self, coro: Coroutine[Any, Any, T], name: str, runtime: TrioRuntime) -> None:
        self._coro: Coroutine[Any, Any, T] | None = coro
        self.name = name
        self._runtime = runtime
        self._state = _PENDING
        self._scope: trio.CancelScope | None = None
        self._cancel_pending = False
        self._result: T | None = None
        self._exc: BaseException | None = None
        self._guard: _FailureGuard | None = None
        self._detached = False
        self._waiters: list[trio.lowlevel.Task] | None = None
        self._foreign: list[_ForeignJoin] | None = None
        # Called with the task when it ends, on the trio thread; its owner (block_on,
        # the compat shim) then answers for the result, so nothing is reported.
        self._on_done: Callable[[TrioTask[T]], object] | None = None

    def __repr__(self) -> str:
        return f"<anyrt trio task {self.name!r} {_STATE_NAMES[self._state]}>"

    # -- the Task protocol --------------------------------------------------------------

    def done(self) -> bool:
        """Return True once the task has finished (returned, raised or was cancelled)."""
        return self._state == _DONE

    def cancelled(self) -> bool:
        """Return True if the task finished by being cancelled."""
        return self._state == _DONE and self._exc is not None and is_cancellation(self._exc)

    def cancel(self) -> bool:
        """Cancel the task's own cancel scope; False if the task has already finished.

        Safe from any thread: from another thread the request goes through the run's
        token and takes effect on the trio thread.
        """
        if self._state == _DONE:
            return False
        runtime = self._runtime
        if get_ident() == runtime._ident:
            self._cancel_here()
            return True
        try:
            runtime._token.run_sync_soon(self._cancel_here)
        except trio.RunFinishedError:
            return False  # the run is over, and every task with it
        return True

    def _cancel_here(self) -> None:
        scope = self._scope
        if scope is not None:
            scope.cancel()
        else:
            self._cancel_pending = True  # not started yet: it will not run at all

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        if self._state != _DONE and get_ident() != self._runtime._ident:
            try:
                self._runtime._token.run_sync_soon(self.detach)
            except trio.RunFinishedError:
                pass
            else:
                return
        self._detached = True
        guard = self._guard
        if guard is not None and guard.armed:
            guard.armed = False
            self._guard = None
            self._runtime._report(TaskError(self.name, guard.exc, "detached"))

    def result(self) -> T:
        """Return the result of a finished task, or raise its exception.

        Raises:
            Cancelled: the task was cancelled.
            RuntimeError: the task has not finished.
        """
        if self._state != _DONE:
            raise RuntimeError(f"task {self.name!r} has not finished; await it instead")
        exc = self._exc
        if exc is None:
            return self._result  # type: ignore[return-value]
        guard = self._guard
        if guard is not None:
            guard.armed = False
            self._guard = None
        if is_cancellation(exc):
            raise Cancelled(f"task {self.name!r} was cancelled")
        raise exc

    def __await__(self) -> Generator[Any, Any, T]:
        if self._state != _DONE:
            if get_ident() == self._runtime._ident:
                yield from self._join().__await__()
            else:
                yield from self._join_foreign().__await__()
        return self.result()

    async def _join(self) -> None:
        me = current_task()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(me)

        def abort(_: RaiseCancelT) -> Abort:
            waiters.remove(me)
            return Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def _join_foreign(self) -> None:
        if not trio.lowlevel.in_trio_task():
            raise RuntimeError(
                f"task {self.name!r} runs on a trio runtime: await it from a task of a trio "
                "run (another runtime's coroutine cannot wait on trio's scheduler)"
            )
        waiter = _ForeignJoin(self)
        with _FOREIGN_LOCK:
            if self._state == _DONE:
                return
            if self._foreign is None:
                self._foreign = []
            self._foreign.append(waiter)
        await trio.lowlevel.wait_task_rescheduled(waiter.abort)

    # -- the end of the task (on the trio thread) -----------------------------------------

    def _finish(self, result: T | None, exc: BaseException | None) -> None:
        self._coro = None
        self._result = result
        if isinstance(exc, BaseExceptionGroup):
            # trio's root scope takes its own `trio.Cancelled` out already; an
            # `anyrt.Cancelled` (a cancelled child's handle) it leaves in.
            exc = without_cancellations(exc, self.name, _CANCELLATIONS)
        self._exc = exc
        if exc is not None:
            # The traceback's first frame is the runner's; skip it, as native tasks do.
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is not None and tb.tb_frame.f_code is _RUN_CODE:
                exc.__traceback__ = tb.tb_next
            if self._on_done is None and not is_cancellation(exc):
                if isinstance(exc, FATAL):
                    self._runtime._fatal.raised(self.name, exc)  # block_on raises it
                elif self._detached:
                    self._runtime._report(TaskError(self.name, exc, "detached"))
                else:
                    self._guard = _FailureGuard(self._runtime, self.name, exc)
        self._state = _DONE
        self._runtime._forget(self)
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                reschedule(waiter)
        if self._foreign is not None:
            self._wake_foreign()
        on_done = self._on_done
        if on_done is not None:
            on_done(self)

    def _wake_foreign(self) -> None:
        with _FOREIGN_LOCK:
            foreign, self._foreign = self._foreign, None
            for waiter in foreign or ():
                waiter.woken = True
        for waiter in foreign or ():
            wake(waiter.task, waiter.thread, waiter.token)

    def _abandon(self, exc: BaseException) -> None:
        """End a task whose run is gone (the trio thread crashed); off the trio thread."""
        if self._state == _DONE:
            return
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()
        self._exc = exc
        self._state = _DONE
        on_done = self._on_done
        if on_done is not None:
            on_done(self)


async def run_task(task: TrioTask[Any]) -> None:
    """The body of the trio task behind a `TrioTask`: the coroutine in its own scope.

    Never raises (an exception would cancel the runtime's nursery): the outcome is kept
    in the handle.
    """
    coro = task._coro
    assert coro is not None
    if task._cancel_pending or task._runtime._closed:
        # Cancelled (or the runtime closed) before it ever ran: it never will.
        coro.close()
        task._finish(None, Cancelled(f"task {task.name!r} was cancelled before it started"))
        return
    task._state = _RUNNING
    scope = task._scope = trio.CancelScope()
    try:
        with scope:
            result = await coro
    except BaseException as exc:  # every failure is kept for the joiner
        task._finish(None, exc)
        # On 3.13 the failed coroutine's frame, kept by the exception's traceback, links
        # back to this frame (f_back): it must not keep the handle alive, or a failed
        # task dropped unawaited is never reported while anything holds the exception.
        del task
        if isinstance(exc, GeneratorExit):
            raise
        return
    if scope.cancelled_caught:
        task._finish(None, Cancelled(f"task {task.name!r} was cancelled"))
    else:
        task._finish(result, None)


_RUN_CODE: Final = run_task.__code__

# Frames in these directories are machinery, not the code a report should point at.
_MACHINERY: Final = tuple(
    os.path.dirname(os.path.abspath(path)) for path in (__file__, trio.__file__, anyrt.__file__)
)


def where(coro: object) -> str:
    """Say where a coroutine is suspended: its innermost frame outside trio and anyrt."""
    user: str | None = None
    inner: str | None = None
    for _ in range(100):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        inner = f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})"
        if not code.co_filename.startswith(_MACHINERY):
            user = inner
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return user or inner or "not started"
