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
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from functools import partial
from threading import get_ident
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TextIO, TypeVar

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
        # A tuple iterator yields the sentinel once and then returns None: the cheapest
        # possible awaitable, which is why it is not a generator.
        return iter(_YIELD_TUPLE)  # type: ignore[return-value]


YIELD: Final = YieldNow()
_YIELD_TUPLE: Final = (YIELD,)


class Worker(Protocol):
    """What a trap may ask of the worker thread that runs the task."""

    timers: TimerQueue

    def now(self) -> float:
        """Return the runtime's clock."""
        ...


class Scheduler(Protocol):
    """Where a `SharedTask` goes when it becomes ready; called from any thread."""

    def schedule(self, task: NativeTask[Any]) -> None:
        """Queue ``task`` to run."""
        ...


class LocalLoop(Protocol):
    """The loop a `LocalTask` is confined to."""

    owner: int
    ready: deque[NativeTask[Any]]

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the loop's thread soon; safe from any thread."""
        ...


class Trap(Protocol):
    """An object a native coroutine yields to park its task."""

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        """Register ``task``'s waker; call ``task.wake()`` if already satisfied."""
        ...


class ErrorSink(Protocol):
    """The runtime side of a task: its error handler and its task registry."""

    _now_fn: Callable[[], float]
    _instruments: tuple[Any, ...]

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
    # trio's traps yield classes as well as instances.
    module = (obj.__module__ if isinstance(obj, type) else type(obj).__module__) or ""
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


_ASYNCIO_HINT: Final = (
    "this is asyncio code running on the {runtime!r} anyrt runtime, which is not an "
    "asyncio loop: run it through `await anyrt_asyncio.compat.run(runtime, coro)`, or "
    "choose the asyncio backend"
)
_TRIO_HINT: Final = (
    "this is trio code running on the {runtime!r} anyrt runtime, which is not trio: "
    "run it through `await anyrt_trio.compat.run(runtime, async_fn, *args)`, or choose "
    "the trio backend"
)
_ANYIO_HINT: Final = (
    "this is anyio code running on the {runtime!r} anyrt runtime, and anyio has no "
    "backend for the native anyrt runtimes (sniffio reports 'anyrt'): run it through "
    "`await anyrt_asyncio.compat.run(runtime, coro)` or "
    "`await anyrt_trio.compat.run(runtime, async_fn, *args)`"
)


def explain_foreign_failure(exc: BaseException, runtime_name: str) -> None:
    """Add a note naming the compat shim to asyncio's, trio's or anyio's "no loop" error.

    Code that expected its own event loop usually fails before it yields anything to
    the task (``asyncio.sleep`` asks for the running loop first), so
    `foreign_yield_error` never sees it.
    """
    if isinstance(exc, ModuleNotFoundError):
        if (exc.name or "").startswith("anyio._backends."):
            hint = _ANYIO_HINT
        else:
            return
    elif type(exc) in (RuntimeError, AttributeError):  # not subclasses: those mean more
        tb = exc.__traceback__
        if tb is None:
            return
        while tb.tb_next is not None:
            tb = tb.tb_next
        module = tb.tb_frame.f_globals.get("__name__", "")
        if not isinstance(module, str):
            return
        if module.startswith("asyncio.") and isinstance(exc, RuntimeError):
            hint = _ASYNCIO_HINT
        elif module.startswith("trio."):
            hint = _TRIO_HINT
        else:
            return
    else:
        return
    note = hint.format(runtime=runtime_name)
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


class NativeTask(ABC, Generic[T]):
    """The join handle of a coroutine spawned on a native anyrt runtime.

    Implements the `anyrt.Task` protocol. Create tasks with ``runtime.spawn()``.
    The state transitions live in the two subclasses: `SharedTask` (guarded by a
    lock, for tasks that migrate between threads) and `LocalTask` (confined to one
    loop thread, lock-free).
    """

    __slots__ = (
        "__weakref__",
        "_born",
        "_context",
        "_coro",
        "_detached",
        "_exc",
        "_guard",
        "_notified",
        "_result",
        "_sched",
        "_sink",
        "_state",
        "_throw",
        "_waiters",
        "name",
    )

    _sched: Any
    _throw: BaseException | None
    _result: T
    _exc: BaseException | None
    _guard: _FailureGuard | None

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        sched: Any,
        sink: ErrorSink,
        context: contextvars.Context,
    ) -> None:
        self._coro = coro
        self.name = name
        self._sched = sched
        self._sink = sink
        self._context = context
        self._state = SCHEDULED
        self._notified = False
        # What to throw in at the next resumption: a cancellation, or a TypeError for
        # a foreign yield. `_result`, `_exc` and `_guard` are set by `_finish`.
        self._throw = None
        self._waiters: dict[NativeTask[Any], None] | None = None
        self._detached = False
        self._born = sink._now_fn()

    def __repr__(self) -> str:
        return f"<anyrt task {self.name!r} {_STATE_NAMES[self._state]}>"

    # -- implemented by the subclasses -------------------------------------------------

    @abstractmethod
    def wake(self) -> None:
        """Make the task runnable; safe from any thread, idempotent."""

    @abstractmethod
    def step(self, worker: Worker) -> bool:
        """Run the coroutine to its next suspension point (only the popping worker calls).

        Returns:
            True if the task must be queued again right away (it yielded, or it was
            woken while it ran); False if it parked or finished.
        """

    @abstractmethod
    def _cancel_with(self, exc: BaseException) -> bool:
        """Throw ``exc`` in at the next suspension point; False if already done."""

    @abstractmethod
    def _join(self, waiter: NativeTask[Any]) -> None:
        """Wake ``waiter`` when this task ends (at once if it has)."""

    @abstractmethod
    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        """Forget ``waiter`` (its join was cancelled)."""

    # -- shared pieces ------------------------------------------------------------------

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        self._coro = None  # type: ignore[assignment]  # drop the frame early
        self._result = result
        self._exc = exc
        self._guard = None
        if exc is not None:
            # The traceback's first frame is ours; skip it so reports start in user code.
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is not None:
                exc.__traceback__ = tb.tb_next
        waiters = self._mark_done()
        self._sink._forget(self)
        if exc is not None and not isinstance(exc, Cancelled):
            explain_foreign_failure(exc, getattr(self._sink, "name", "native"))
            if self._detached:
                self._sink._report(TaskError(self.name, exc, "detached"))
            else:
                self._guard = _FailureGuard(self._sink, self.name, exc)
        if waiters:
            for waiter in waiters:
                waiter.wake()

    def _mark_done(self) -> dict[NativeTask[Any], None] | None:
        self._state = DONE
        self._throw = None
        waiters = self._waiters
        self._waiters = None
        return waiters

    def _repend_cancel(self, exc: BaseException) -> None:
        """Deliver ``exc`` again at the next suspension point (a value beat it).

        Called only from the task itself.
        """
        if self._throw is None:
            self._throw = exc

    def _retract_cancel(self, scope: object) -> None:
        """Drop a pending, undelivered cancellation that ``scope`` requested.

        Called only from the task itself.
        """
        pending = self._throw
        if pending is not None and getattr(pending, "_anyrt_scope", None) is scope:
            self._throw = None

    # -- the Task protocol --------------------------------------------------------------

    def cancel(self) -> bool:
        """Request cancellation at the next suspension point; False if already done.

        Safe from any thread.
        """
        return self._cancel_with(Cancelled(f"task {self.name!r} was cancelled"))

    def done(self) -> bool:
        """Return True once the task has finished."""
        return self._state == DONE

    def cancelled(self) -> bool:
        """Return True if the task finished by being cancelled."""
        return self._state == DONE and isinstance(self._exc, Cancelled)

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        self._detached = True
        guard = getattr(self, "_guard", None)
        if guard is not None and guard.armed:
            guard.armed = False
            self._guard = None
            self._sink._report(TaskError(self.name, guard.exc, "detached"))

    def result(self) -> T:
        """Return the result of a finished task, or raise its exception.

        Raises:
            RuntimeError: the task has not finished.
        """
        if self._state != DONE:
            raise RuntimeError(f"task {self.name!r} has not finished; await it instead")
        exc = self._exc
        if exc is None:
            return self._result
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

    def where(self) -> str:
        """Describe where the task is suspended."""
        return describe_suspension(self._coro)

    def info(self, now: float) -> TaskInfo:
        """A snapshot of this task at time ``now`` on its runtime's clock."""
        state = self._state
        return TaskInfo(
            self.name,
            _STATE_NAMES[state],
            self.where() if state == PARKED else "",
            now - self._born,
        )


@dataclass(frozen=True)
class TaskInfo:
    """One live task in a `runtime.tasks()` snapshot."""

    name: str
    #: ``"scheduled"`` (ready to run), ``"running"`` or ``"parked"`` (waiting).
    state: str
    #: For a parked task, the line of user code where it waits (else ``""``).
    where: str
    #: Seconds on the runtime's clock since the task was spawned.
    age: float


def write_task_table(file: TextIO | None, runtime: object, infos: list[TaskInfo]) -> None:
    """Write ``runtime``'s `TaskInfo` snapshot as a table to ``file`` (default: stderr).

    The body of every backend's ``dump_tasks``.
    """
    out = sys.stderr if file is None else file
    out.write(f"{runtime!r}: {len(infos)} live task(s)\n")
    for info in infos:
        where = f"  {info.where}" if info.where else ""
        out.write(f"  {info.age:9.3f}s  {info.state:<9}  {info.name}{where}\n")
    out.flush()


class SharedTask(NativeTask[T]):
    """A task that may be woken, cancelled and run from any thread (work stealing).

    Every state transition happens under the task's own lock. A wake that arrives
    while the task is RUNNING only sets ``notified``, and the worker requeues the task
    when its step ends: no wake-up is lost and no two threads run the task at once.
    """

    __slots__ = ("_lock",)

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        sched: Scheduler,
        sink: ErrorSink,
        context: contextvars.Context,
    ) -> None:
        super().__init__(coro, name, sched, sink, context)
        self._lock = threading.Lock()

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
        """Run to the next suspension point; see `NativeTask.step`."""
        lock = self._lock
        with lock:
            self._state = RUNNING
            self._notified = False
            exc = self._throw
            if exc is not None:
                self._throw = None
        # The hot path of the threaded backends, kept flat on purpose.
        try:
            if exc is None:
                trap = self._context.run(self._coro.send, None)
            else:
                trap = self._context.run(self._coro.throw, exc)
        except StopIteration as stop:
            self._finish(stop.value, None)
            return False
        except BaseException as error:  # every failure is kept for the joiner
            self._finish(None, error)
            return False
        if trap is YIELD:
            with lock:
                self._state = SCHEDULED
            return True
        try:
            park = trap._anyrt_park
        except AttributeError:
            self._throw = foreign_yield_error(trap, getattr(self._sink, "name", "native"))
        else:
            park(self, worker)
        with lock:
            if self._notified or self._throw is not None:
                self._state = SCHEDULED
                return True
            self._state = PARKED
            return False

    def _mark_done(self) -> dict[NativeTask[Any], None] | None:
        with self._lock:
            return super()._mark_done()

    def _cancel_with(self, exc: BaseException) -> bool:
        with self._lock:
            state = self._state
            if state == DONE:
                return False
            _set_cancel(self, exc)
            if state == RUNNING:
                self._notified = True
                return True
            if state == SCHEDULED:
                return True
            self._state = SCHEDULED
        self._sched.schedule(self)
        return True

    def _repend_cancel(self, exc: BaseException) -> None:
        with self._lock:
            super()._repend_cancel(exc)

    def _retract_cancel(self, scope: object) -> None:
        with self._lock:
            super()._retract_cancel(scope)

    def _join(self, waiter: NativeTask[Any]) -> None:
        with self._lock:
            if self._state != DONE:
                if self._waiters is None:
                    self._waiters = {}
                self._waiters[waiter] = None
                return
        waiter.wake()

    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        with self._lock:
            if self._waiters is not None:
                self._waiters.pop(waiter, None)

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        with self._lock:
            self._detached = True
        super().detach()


class LocalTask(NativeTask[T]):
    """A task confined to one loop thread (``single-threaded``, ``thread-per-core``).

    Its state is only ever touched by the loop's own thread, so it needs no lock.
    Another thread that wakes, cancels or joins it posts the operation to the loop,
    which applies it on its own thread.
    """

    __slots__ = ()

    _sched: LocalLoop

    def wake(self) -> None:
        """Make the task runnable; safe from any thread, idempotent."""
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(self._wake_here)
            return
        state = self._state
        if state == PARKED:
            self._state = SCHEDULED
            sched.ready.append(self)
        elif state == RUNNING:
            self._notified = True

    def _wake_here(self) -> None:
        state = self._state
        if state == PARKED:
            self._state = SCHEDULED
            self._sched.ready.append(self)
        elif state == RUNNING:  # pragma: no cover - posts run between steps
            self._notified = True

    def step(self, worker: Worker) -> bool:
        """Run to the next suspension point; see `NativeTask.step`."""
        # The hot path of the thread-confined backends, kept flat on purpose.
        self._state = RUNNING
        self._notified = False
        exc = self._throw
        try:
            if exc is None:
                trap = self._context.run(self._coro.send, None)
            else:
                self._throw = None
                trap = self._context.run(self._coro.throw, exc)
        except StopIteration as stop:
            self._finish(stop.value, None)
            return False
        except BaseException as error:
            self._finish(None, error)
            return False
        if trap is YIELD:
            self._state = SCHEDULED
            return True
        try:
            park = trap._anyrt_park
        except AttributeError:
            self._throw = foreign_yield_error(trap, getattr(self._sink, "name", "native"))
        else:
            park(self, worker)
        if self._notified or self._throw is not None:
            self._state = SCHEDULED
            return True
        self._state = PARKED
        return False

    def _cancel_with(self, exc: BaseException) -> bool:
        if get_ident() != self._sched.owner:
            if self._state == DONE:
                return False
            self._sched.post(partial(self._cancel_here, exc))
            return True
        return self._cancel_here(exc)

    def _cancel_here(self, exc: BaseException) -> bool:
        state = self._state
        if state == DONE:
            return False
        _set_cancel(self, exc)
        if state == PARKED:
            self._state = SCHEDULED
            self._sched.ready.append(self)
        elif state == RUNNING:
            self._notified = True
        return True

    def _join(self, waiter: NativeTask[Any]) -> None:
        if get_ident() != self._sched.owner:
            self._sched.post(partial(self._join_here, waiter))
        else:
            self._join_here(waiter)

    def _join_here(self, waiter: NativeTask[Any]) -> None:
        if self._state == DONE:
            waiter.wake()
            return
        if self._waiters is None:
            self._waiters = {}
        self._waiters[waiter] = None

    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        if get_ident() != self._sched.owner:
            self._sched.post(partial(self._unjoin_here, waiter))
        else:
            self._unjoin_here(waiter)

    def _unjoin_here(self, waiter: NativeTask[Any]) -> None:
        if self._waiters is not None:
            self._waiters.pop(waiter, None)

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        if get_ident() != self._sched.owner:
            self._sched.post(super().detach)
        else:
            super().detach()


def _set_cancel(task: NativeTask[Any], exc: BaseException) -> None:
    # An explicit cancel outranks a timeout's (which carries a scope); never downgrade.
    pending = task._throw
    if pending is None or getattr(pending, "_anyrt_scope", None) is not None:
        task._throw = exc


class _Join:
    """The trap of one ``await task``: registers the awaiting task as a waiter."""

    __slots__ = ("target", "waiter")

    def __init__(self, target: NativeTask[Any]) -> None:
        self.target = target
        self.waiter: NativeTask[Any] | None = None

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if self.waiter is None:
            self.waiter = task
            self.target._join(task)
        elif self.target._state == DONE:  # pragma: no cover - a spurious re-park
            task.wake()

    def drop(self) -> None:
        if self.waiter is not None:
            self.target._unjoin(self.waiter)


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def describe_suspension(
    coro: Any,
    library_dirs: tuple[str, ...] = (_PACKAGE_DIR,),
    *,
    outermost_call: bool = False,
    show_awaited: bool = True,
) -> str:
    """Follow a coroutine's await chain and say where it is suspended.

    Names the innermost frame of user code (outside ``library_dirs``: anyrt's), then
    the library call it is in - the innermost frame, or with ``outermost_call`` the
    one the user's code called - and the object it awaits (unless not
    ``show_awaited``), e.g.
    ``"consumer (app.py:12), in Channel.receive, awaiting <anyrt oneshot waiting>"``.
    """
    user: str | None = None
    inner: str | None = None
    called: str | None = None
    awaited: object = None
    for _ in range(100):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            awaited = coro
            break
        code = frame.f_code
        inner = f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})"
        if not code.co_filename.startswith(library_dirs):
            user = inner
            called = None
        elif called is None:
            called = code.co_qualname  # the library call the user's code made
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if inner is None:
        return "not started"
    parts = [user or inner]
    if user is not None:
        if outermost_call:
            if called is not None:
                parts.append(f"in {called}")
        elif inner != user:
            parts.append(f"in {inner.split(' (')[0]}")
    if show_awaited and awaited is not None:
        parts.append(f"awaiting {awaited!r}")
    return ", ".join(parts)


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
