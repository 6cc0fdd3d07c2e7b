"""Native task machinery shared by every bundled backend.

A native task is a coroutine plus a small state machine::

    PARKED --wake--> SCHEDULED --worker pops it--> RUNNING --step ends--> PARKED
                                                       |                 (or SCHEDULED
                                                       +--returns------> DONE   if woken
                                                                                while running)

The state is guarded by a per-task lock, so a wake may come from any thread and never
relies on the GIL. A wake that arrives while the task is RUNNING only sets
``notified``; the worker requeues the task when its step ends, so no wake-up is lost
and no task is ever run by two threads at once.

A coroutine suspends by yielding a *trap*: an object with
``_anyrt_park(task, worker)``, which the worker calls after the coroutine has
suspended, to register the task's waker wherever the trap waits (a timer, a oneshot,
another task's waiter list). Every trap re-checks its condition when resumed, so a
spurious wake is harmless. Yielding anything else (an asyncio future, a trio trap) is
a usage error, reported as a `TypeError` thrown back into the coroutine.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Coroutine, Generator
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

from ._exceptions import Cancelled, TaskError

if TYPE_CHECKING:
    from ._timers import TimerQueue

T = TypeVar("T")

PARKED: Final = 0
SCHEDULED: Final = 1
RUNNING: Final = 2
DONE: Final = 3

_STATE_NAMES: Final = ("parked", "scheduled", "running", "done")


class YieldNow:
    """The sentinel a coroutine yields to go to the back of the run queue."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(_YIELD_TUPLE)


YIELD: Final = YieldNow()
_YIELD_TUPLE: Final = (YIELD,)


class Worker(Protocol):
    """What a trap may ask of the worker thread that runs the task."""

    timers: TimerQueue

    def now(self) -> float:
        """Return the runtime's clock."""
        ...


class Scheduler(Protocol):
    """Where a task goes when it becomes ready; `schedule` is called from any thread."""

    def schedule(self, task: NativeTask[Any]) -> None:
        """Queue ``task`` to run."""
        ...


class Trap(Protocol):
    """An object a native coroutine yields to park its task."""

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        """Register ``task``'s waker; call ``task.wake()`` if already satisfied."""
        ...


class ErrorSink(Protocol):
    """The runtime side of a task: its error handler and its task registry."""

    def _report(self, error: TaskError) -> None: ...

    def _forget(self, task: NativeTask[Any]) -> None: ...


class _FailureGuard:
    """Reports a task's exception when the task is dropped without anyone looking."""

    __slots__ = ("armed", "exc", "name", "sink")

    def __init__(self, sink: ErrorSink, name: str, exc: BaseException) -> None:
        self.sink = sink
        self.name = name
        self.exc = exc
        self.armed = True

    def __del__(self) -> None:
        if self.armed:
            self.armed = False
            self.sink._report(TaskError(self.name, self.exc, "never awaited"))


def foreign_yield_error(obj: object, runtime_name: str) -> TypeError:
    """Build the error for a coroutine that yielded something anyrt does not understand."""
    module = type(obj).__module__ or ""
    if module.startswith("trio") or module.startswith("outcome"):
        shim = "await anyrt_trio.compat.run(runtime, async_fn, *args)"
        what = "a trio operation"
    elif obj is None or module.startswith(("asyncio", "uvloop", "_asyncio")):
        shim = "await anyrt_asyncio.compat.run(runtime, coro)"
        what = "an asyncio future or asyncio.sleep()"
    else:
        shim = (
            "await anyrt_asyncio.compat.run(runtime, coro) for asyncio code or "
            "await anyrt_trio.compat.run(runtime, async_fn) for trio code"
        )
        what = "an object of another async library"
    return TypeError(
        f"a coroutine on the {runtime_name!r} anyrt runtime awaited {what} ({obj!r}); "
        f"native anyrt runtimes cannot drive it. Run that code through {shim}."
    )


class NativeTask(Generic[T]):
    """The join handle of a coroutine spawned on a native anyrt runtime.

    Implements the `anyrt.Task` protocol. Create tasks with ``runtime.spawn()``.
    """

    __slots__ = (
        "__weakref__",
        "_cancel_exc",
        "_context",
        "_coro",
        "_detached",
        "_exc",
        "_guard",
        "_lock",
        "_notified",
        "_result",
        "_sched",
        "_sink",
        "_state",
        "_throw",
        "_waiters",
        "name",
    )

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        sched: Scheduler,
        sink: ErrorSink,
        context: contextvars.Context,
    ) -> None:
        self._coro = coro
        self.name = name
        self._sched = sched
        self._sink = sink
        self._context = context
        self._lock = threading.Lock()
        self._state = SCHEDULED
        self._notified = False
        self._cancel_exc: BaseException | None = None
        self._throw: BaseException | None = None
        self._result: T | None = None
        self._exc: BaseException | None = None
        self._waiters: dict[NativeTask[Any], None] | None = None
        self._detached = False
        self._guard: _FailureGuard | None = None

    def __repr__(self) -> str:
        return f"<anyrt task {self.name!r} {_STATE_NAMES[self._state]}>"

    # -- waking and running (called by traps and workers) -------------------------

    def wake(self) -> None:
        """Make the task runnable; safe from any thread, idempotent."""
        with self._lock:
            state = self._state
            if state != PARKED:
                if state == RUNNING:
                    self._notified = True
                return
            self._state = SCHEDULED
        self._sched.schedule(self)

    def step(self, worker: Worker) -> bool:
        """Run the coroutine to its next suspension point.

        Called only by the worker that popped the task from a run queue.

        Returns:
            True if the task must be queued again right away (it yielded, or it was
            woken while it ran); False if it parked or finished.
        """
        with self._lock:
            self._state = RUNNING
            self._notified = False
            exc = self._cancel_exc
            if exc is None:
                exc = self._throw
                self._throw = None
            else:
                self._cancel_exc = None
        coro = self._coro
        try:
            if exc is None:
                trap = self._context.run(coro.send, None)
            else:
                trap = self._context.run(coro.throw, exc)
        except StopIteration as stop:
            self._finish(stop.value, None)
            return False
        except BaseException as error:  # noqa: BLE001 - every failure is kept for the joiner
            self._finish(None, error)
            return False
        if trap is YIELD:
            with self._lock:
                self._state = SCHEDULED
            return True
        park = getattr(trap, "_anyrt_park", None)
        if park is None:
            self._throw = foreign_yield_error(trap, getattr(self._sink, "name", "native"))
        else:
            park(self, worker)
        with self._lock:
            if self._notified or self._cancel_exc is not None or self._throw is not None:
                self._state = SCHEDULED
                return True
            self._state = PARKED
            return False

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        self._coro = None  # type: ignore[assignment]  # drop the frame early
        if exc is not None:
            # The traceback's first frame is step(); skip it so reports start in user code.
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is not None:
                exc.__traceback__ = exc.__traceback__.tb_next
            self._exc = exc
        else:
            self._result = result
        with self._lock:
            self._state = DONE
            waiters = self._waiters
            self._waiters = None
            self._cancel_exc = None
        self._sink._forget(self)
        if exc is not None and not isinstance(exc, Cancelled):
            if self._detached:
                self._sink._report(TaskError(self.name, exc, "detached"))
            else:
                self._guard = _FailureGuard(self._sink, self.name, exc)
        if waiters:
            for waiter in waiters:
                waiter.wake()

    # -- cancellation -------------------------------------------------------------

    def cancel(self) -> bool:
        """Request cancellation at the next suspension point; False if already done."""
        return self._cancel_with(Cancelled(f"task {self.name!r} was cancelled"))

    def _cancel_with(self, exc: BaseException) -> bool:
        with self._lock:
            state = self._state
            if state == DONE:
                return False
            pending = self._cancel_exc
            # An explicit cancel outranks a timeout's; never downgrade.
            if pending is None or getattr(pending, "_anyrt_scope", None) is not None:
                self._cancel_exc = exc
            if state == RUNNING:
                self._notified = True
                return True
            if state == SCHEDULED:
                return True
            self._state = SCHEDULED
        self._sched.schedule(self)
        return True

    def _retract_cancel(self, scope: object) -> None:
        """Drop a pending, undelivered cancellation that ``scope`` requested."""
        with self._lock:
            pending = self._cancel_exc
            if pending is not None and getattr(pending, "_anyrt_scope", None) is scope:
                self._cancel_exc = None

    def _repend_cancel(self, exc: BaseException) -> None:
        """Deliver ``exc`` again at the next suspension point (a value beat it)."""
        with self._lock:
            if self._cancel_exc is None:
                self._cancel_exc = exc

    # -- the Task protocol --------------------------------------------------------

    def done(self) -> bool:
        """Return True once the task has finished."""
        return self._state == DONE

    def detach(self) -> None:
        """Stop caring: a failure goes to the runtime's error handler."""
        with self._lock:
            self._detached = True
            guard = self._guard
            self._guard = None
        if guard is not None and guard.armed:
            guard.armed = False
            self._sink._report(TaskError(self.name, guard.exc, "detached"))

    def cancelled(self) -> bool:
        """Return True if the task finished by being cancelled."""
        return self._state == DONE and isinstance(self._exc, Cancelled)

    def result(self) -> T:
        """Return the result of a finished task, or raise its exception.

        Raises:
            RuntimeError: the task has not finished.
        """
        if self._state != DONE:
            raise RuntimeError(f"task {self.name!r} has not finished; await it instead")
        exc = self._exc
        if exc is None:
            return self._result  # type: ignore[return-value]
        guard = self._guard
        if guard is not None:
            guard.armed = False
            self._guard = None
        if isinstance(exc, Cancelled):
            raise Cancelled(f"task {self.name!r} was cancelled")
        raise exc

    def __await__(self) -> Generator[Any, Any, T]:
        if self._state != DONE:
            join = _Join(self)
            try:
                while self._state != DONE:
                    yield join
            except BaseException:
                join.drop()
                raise
        return self.result()

    def _add_waiter(self, waiter: NativeTask[Any]) -> bool:
        """Register ``waiter`` to be woken when this task ends; False if it has ended."""
        with self._lock:
            if self._state == DONE:
                return False
            if self._waiters is None:
                self._waiters = {}
            self._waiters[waiter] = None
            return True

    def _remove_waiter(self, waiter: NativeTask[Any]) -> None:
        with self._lock:
            if self._waiters is not None:
                self._waiters.pop(waiter, None)

    def where(self) -> str:
        """Describe where the task is suspended: ``function (file:line)``."""
        return describe_suspension(self._coro)


class _Join:
    """The trap of one ``await task``: registers the awaiting task as a waiter."""

    __slots__ = ("target", "waiter")

    def __init__(self, target: NativeTask[Any]) -> None:
        self.target = target
        self.waiter: NativeTask[Any] | None = None

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        self.waiter = task
        if not self.target._add_waiter(task):
            task.wake()

    def drop(self) -> None:
        if self.waiter is not None:
            self.target._remove_waiter(self.waiter)


def describe_suspension(coro: Any) -> str:
    """Follow a coroutine's await chain to the innermost frame and describe it."""
    frame_desc = "not started"
    seen = 0
    while coro is not None and seen < 100:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frame_desc = f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frame_desc


def check_coroutine(coro: object, method: str) -> None:
    """Raise a `TypeError` naming the fix unless ``coro`` is a coroutine object."""
    if type(coro) is CoroutineType:
        return
    if isinstance(coro, Coroutine):
        return
    if callable(coro):
        hint = f" Did you mean {method}({getattr(coro, '__name__', 'fn')}(...)) - call it first?"
    else:
        hint = ""
    raise TypeError(f"{method}() takes a coroutine object, not {type(coro).__name__}.{hint}")
