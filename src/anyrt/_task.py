"""The native task: a coroutine, its state machine and its cancel-scope chain.

Every bundled backend runs its coroutines as `NativeTask` objects::

    PARKED --wake--> SCHEDULED --worker pops it--> RUNNING --step ends--> PARKED
                                                       |                 (or SCHEDULED
                                                       +--returns------> DONE   if woken
                                                                                while running)

The transitions are written once, in `NativeTask`, as ``_*_here`` methods that assume
exclusive access to the task's state. The two subclasses only differ in how they get
that access: a `SharedTask` (work-stealing: woken and run on any thread) takes its own
lock; a `LocalTask` (confined to one loop thread) needs none on that thread, and
another thread posts the operation to the loop. `step`, the hot path, is shared too,
with the lock taken inline where a task has one.

A wake that arrives while the task is RUNNING only sets ``notified``; the worker
requeues the task when its step ends, so no wake-up is lost and no task is ever run by
two threads at once.

A coroutine suspends by yielding a *trap*: an object with
``_anyrt_park(task, worker)``, which the worker calls after the coroutine has
suspended, to register the task's waker wherever the trap waits (a timer, a oneshot,
another task's waiter list). Every trap re-checks its condition when resumed, so a
spurious wake is harmless. Yielding anything else (an asyncio future, a trio trap) is
a usage error, reported as a `TypeError` thrown back into the coroutine.

Cancellation is level-triggered (see `anyrt._scope`): the task keeps the chain of the
cancel scopes it is inside, innermost first, ending at its root scope (`cancel`). The
*culprit* is the innermost cancelled scope not hidden behind a shield; while there is
one, every resumption of the coroutine throws a fresh `Cancelled` in. The culprit is
recomputed, under the task's guard, whenever the chain changes in a way that can change
it: a scope is cancelled (from any thread), a shield is raised or lowered, a cancelled
or shielded scope is entered or left.
"""

from __future__ import annotations

import contextvars
import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from functools import partial
from threading import get_ident
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

from ._exceptions import Cancelled, TaskError
from ._foreign import explain_foreign_failure, foreign_yield_error
from ._introspect import TaskInfo, describe_suspension
from ._scope import Alarm, expire_scopes

if TYPE_CHECKING:
    from ._scope import NativeCancelScope
    from ._timers import TimerQueue

T = TypeVar("T")

PARKED: Final = 0
SCHEDULED: Final = 1
RUNNING: Final = 2
DONE: Final = 3

STATE_NAMES: Final = ("parked", "scheduled", "running", "done")

#: What a task raising one of these stops: the runtime's `block_on`, as on asyncio.
FATAL: Final = (KeyboardInterrupt, SystemExit)


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
    timers: TimerQueue

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the loop's thread soon; safe from any thread."""
        ...


class Trap(Protocol):
    """An object a native coroutine yields to park its task."""

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        """Register ``task``'s waker; call ``task.wake()`` if already satisfied."""
        ...


class ErrorSink(Protocol):
    """The runtime side of a task: its error handler, its registry, its fatal errors."""

    @property
    def name(self) -> str: ...

    _now_fn: Callable[[], float]
    _instruments: tuple[Any, ...]

    def _report(self, error: TaskError) -> None: ...

    def _report_later(self, error: TaskError) -> None: ...

    def _forget(self, task: NativeTask[Any]) -> None: ...

    def _fatal_error(self, task_name: str, exc: BaseException) -> None: ...

    def _post_alarm(self, alarm: Alarm) -> None: ...


# Claims of a failure guard race between a joiner, `detach` and the finaliser; one lock
# for all of them is enough (failures are rare) and is never held across an allocation,
# so the collector cannot run a finaliser that waits for it.
_CLAIM_LOCK: Final = threading.Lock()


class _FailureGuard:
    """Reports a task's exception when the task is dropped without anyone looking."""

    __slots__ = ("armed", "exc", "name", "sink")

    def __init__(self, sink: ErrorSink, name: str, exc: BaseException) -> None:
        self.sink = sink
        self.name = name
        self.exc = exc
        self.armed = True

    def claim(self) -> bool:
        """Disarm the guard; True for exactly one caller."""
        with _CLAIM_LOCK:
            armed = self.armed
            self.armed = False
        return armed

    def __del__(self) -> None:
        # Inside the garbage collector: only queue the report, the runtime delivers it.
        if self.claim():
            self.sink._report_later(TaskError(self.name, self.exc, "never awaited"))


class NativeTask(ABC, Generic[T]):
    """The join handle of a coroutine spawned on a native anyrt runtime.

    Implements the `anyrt.Task` protocol. Create tasks with ``runtime.spawn()``.
    """

    __slots__ = (
        "__weakref__",
        "_alarm",
        "_alarm_at",
        "_born",
        "_cancel_requested",
        "_context",
        "_coro",
        "_culprit",
        "_detached",
        "_exc",
        "_guard",
        "_lock",
        "_notified",
        "_result",
        "_sched",
        "_scope",
        "_sink",
        "_state",
        "_throw",
        "_waiters",
        "name",
    )

    name: str
    _sched: Any
    _result: T
    _exc: BaseException | None
    #: The task's lock (`SharedTask`), or None (`LocalTask`: confined to its loop).
    _lock: threading.Lock | None

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
        # An error a trap could not deliver itself (a foreign yield), for the next step.
        self._throw: BaseException | None = None
        self._waiters: dict[NativeTask[Any], None] | None = None
        self._detached = False
        self._guard: _FailureGuard | None = None
        # The innermost cancel scope entered (None: only the root), whether the root
        # was cancelled (`cancel`), and the culprit (see the module docstring).
        self._scope: NativeCancelScope | None = None
        self._cancel_requested = False
        self._culprit: NativeCancelScope | NativeTask[Any] | None = None
        # The one live deadline timer of the task's scopes, and when it fires (see
        # anyrt._scope).
        self._alarm: Alarm | None = None
        self._alarm_at = math.inf
        self._born = sink._now_fn()

    def __repr__(self) -> str:
        return f"<anyrt task {self.name!r} {STATE_NAMES[self._state]}>"

    # -- the transitions: each assumes exclusive access to the state ---------------------

    def _wake_here(self) -> bool:
        """PARKED -> SCHEDULED (True: queue the task); RUNNING -> notified."""
        state = self._state
        if state == PARKED:
            self._state = SCHEDULED
            return True
        if state == RUNNING:
            self._notified = True
        return False

    def _cancel_here(self) -> bool:
        """Cancel the root scope; True if the task must be queued to see it."""
        if self._state == DONE:
            return False
        self._cancel_requested = True
        return self._refresh_here()

    def _refresh_here(self) -> bool:
        """Recompute the culprit; True if the task must be queued to see it."""
        culprit = self._find_culprit(self._scope)
        self._culprit = culprit
        return culprit is not None and self._wake_here()

    def _find_culprit(
        self, scope: NativeCancelScope | None
    ) -> NativeCancelScope | NativeTask[Any] | None:
        """The innermost cancelled scope from ``scope`` outwards, up to a shield."""
        while scope is not None:
            if scope._cancel_called:
                return scope
            if scope._shield:
                return None
            scope = scope._parent
        return self if self._cancel_requested else None

    def _join_here(self, waiter: NativeTask[Any]) -> bool:
        """Add ``waiter``; True if the task is already done (wake the waiter at once)."""
        if self._state == DONE:
            return True
        if self._waiters is None:
            self._waiters = {}
        self._waiters[waiter] = None
        return False

    def _unjoin_here(self, waiter: NativeTask[Any]) -> None:
        if self._waiters is not None:
            self._waiters.pop(waiter, None)

    def _arm_here(self, deadline: float) -> Alarm | None:
        """Plan the alarm for ``deadline`` if that is earlier; return the alarm to push."""
        if deadline >= self._alarm_at or self._state == DONE:
            return None
        alarm = self._alarm = Alarm(deadline, self)
        self._alarm_at = deadline
        return alarm

    def _disarm_here(self, alarm: Alarm) -> bool:
        """``alarm`` fired: True if it is the live one (then none is planned any more)."""
        if alarm is not self._alarm or self._state == DONE:
            return False  # replaced by an earlier one, or the task has ended
        self._alarm = None
        self._alarm_at = math.inf
        return True

    def _detach_here(self) -> _FailureGuard | None:
        """Mark detached; return the guard of a failure that must be reported now."""
        self._detached = True
        guard = self._guard
        self._guard = None
        return guard

    def _done_here(self, guard: _FailureGuard | None) -> tuple[Any, bool]:
        """-> DONE; return the waiters to wake and whether the task was detached."""
        self._state = DONE
        self._throw = None
        self._culprit = None
        alarm = self._alarm
        if alarm is not None:
            alarm.cancelled = True
            self._alarm = None
        self._guard = guard
        waiters = self._waiters
        self._waiters = None
        return waiters, self._detached

    # -- how a subclass gets exclusive access -------------------------------------------

    @abstractmethod
    def wake(self) -> None:
        """Make the task runnable; safe from any thread, idempotent."""

    @abstractmethod
    def _scopes_changed(self) -> None:
        """A scope of the chain was cancelled or its shield moved; safe from any thread."""

    @abstractmethod
    def _cancel(self) -> bool:
        """Cancel the root scope; False if the task is done."""

    @abstractmethod
    def _arm(self, deadline: float, queue: TimerQueue | None) -> None:
        """Have the alarm fire by ``deadline``; push it on ``queue`` (this thread's).

        Without a queue (a thread that runs none of the runtime's tasks) it is posted.
        """

    @abstractmethod
    def _disarm(self, alarm: Alarm) -> bool:
        """`_disarm_here`, guarded."""

    def _alarm_fired(self, alarm: Alarm) -> None:
        """Expire the scopes whose deadline passed; re-arm for the next (see _scope)."""
        if not self._disarm(alarm):
            return
        nearest = expire_scopes(self._scope, self._sink._now_fn())
        if nearest != math.inf:
            self._arm(nearest, alarm.queue)

    @abstractmethod
    def _join(self, waiter: NativeTask[Any]) -> None:
        """Wake ``waiter`` when this task ends (at once if it has)."""

    @abstractmethod
    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        """Forget ``waiter`` (its join was cancelled)."""

    @abstractmethod
    def _mark_done(self, guard: _FailureGuard | None) -> tuple[Any, bool]:
        """Mark the task DONE; see `_done_here`."""

    @abstractmethod
    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""

    # -- running ----------------------------------------------------------------------

    def step(self, worker: Worker) -> bool:
        """Run the coroutine to its next suspension point (only the popping worker calls).

        Returns:
            True if the task must be queued again right away (it yielded, it was woken
            while it ran, or it is cancelled); False if it parked or finished.
        """
        # The hot path of every native backend, kept flat on purpose.
        lock = self._lock
        if lock is not None:
            lock.acquire()
        self._state = RUNNING
        self._notified = False
        exc = self._throw
        if exc is not None:
            self._throw = None
        elif self._culprit is not None:
            exc = self._culprit._cancelled_exception()
        if lock is not None:
            lock.release()
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
            # On 3.13 the failed coroutine's frame, kept by the exception's traceback,
            # links back to this frame and to the loop's frames above it (f_back).
            # None of them may keep the task alive: a failed task dropped unawaited
            # would never be collected, and its failure never reported, for as long
            # as anything holds the exception. The loops drop theirs too.
            del self
            return False
        if trap is YIELD:  # sleep(0): queued again whatever happened meanwhile
            if lock is None:
                self._state = SCHEDULED
            else:
                with lock:
                    self._state = SCHEDULED
            return True
        refused = None
        try:
            park = trap._anyrt_park
        except AttributeError:
            refused = foreign_yield_error(trap, self._sink.name)
        else:
            park(self, worker)
        if lock is not None:
            lock.acquire()
        if refused is not None:
            self._throw = refused
        if self._notified or refused is not None or self._culprit is not None:
            self._state = SCHEDULED
            requeue = True
        else:
            self._state = PARKED
            requeue = False
        if lock is not None:
            lock.release()
        return requeue

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        self._coro = None  # type: ignore[assignment]  # drop the frame early
        self._result = result
        self._exc = exc
        guard = None
        fatal = False
        if isinstance(exc, BaseExceptionGroup):
            exc = without_cancellations(exc, self.name)
            self._exc = exc
        if exc is not None:
            # The traceback's first frame is ours; skip it so reports start in user code.
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is not None:
                exc.__traceback__ = tb.tb_next
            if isinstance(exc, FATAL):
                fatal = True  # delivered to block_on, not to the error handler
            elif not isinstance(exc, Cancelled):
                explain_foreign_failure(exc, self._sink.name)
                # Armed before the task is marked done: a joiner on another thread may
                # claim it the moment it sees DONE.
                guard = _FailureGuard(self._sink, self.name, exc)
        waiters, detached = self._mark_done(guard)
        self._sink._forget(self)
        if guard is not None and detached and guard.claim():
            self._guard = None
            self._sink._report(TaskError(self.name, guard.exc, "detached"))
        if fatal:
            self._sink._fatal_error(self.name, exc)  # type: ignore[arg-type]
        if waiters:
            for waiter in waiters:
                waiter.wake()

    def _cancelled_exception(self) -> Cancelled:
        """What a cancel point raises while the root scope is the culprit."""
        return Cancelled(f"task {self.name!r} was cancelled")

    # -- the Task protocol --------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the task's root scope: every cancel point it reaches raises `Cancelled`.

        Safe from any thread.

        Returns:
            False if the task had already finished.
        """
        return self._cancel()

    def done(self) -> bool:
        """Return True once the task has finished."""
        return self._state == DONE

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
            return self._result
        guard = self._guard
        if guard is not None:
            guard.claim()
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
            STATE_NAMES[state],
            self.where() if state == PARKED else "",
            now - self._born,
        )


class SharedTask(NativeTask[T]):
    """A task that may be woken, cancelled and run from any thread (work stealing).

    Every transition happens under the task's own lock. Whatever it leads to - queueing
    the task, waking a joiner, reporting a failure - happens after the lock is released,
    so a task lock is never held while another lock is taken.
    """

    __slots__ = ()

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
        with self._lock:  # type: ignore[union-attr]
            queue = self._wake_here()
        if queue:
            self._sched.schedule(self)

    def _scopes_changed(self) -> None:
        with self._lock:  # type: ignore[union-attr]
            queue = self._refresh_here()
        if queue:
            self._sched.schedule(self)

    def _cancel(self) -> bool:
        with self._lock:  # type: ignore[union-attr]
            if self._state == DONE:
                return False
            queue = self._cancel_here()
        if queue:
            self._sched.schedule(self)
        return True

    def _arm(self, deadline: float, queue: TimerQueue | None) -> None:
        with self._lock:  # type: ignore[union-attr]
            alarm = self._arm_here(deadline)
        if alarm is None:
            return
        if queue is None:
            self._sink._post_alarm(alarm)
        else:
            alarm.queue = queue
            queue.push(alarm)

    def _disarm(self, alarm: Alarm) -> bool:
        with self._lock:  # type: ignore[union-attr]
            return self._disarm_here(alarm)

    def _join(self, waiter: NativeTask[Any]) -> None:
        with self._lock:  # type: ignore[union-attr]
            done = self._join_here(waiter)
        if done:
            waiter.wake()

    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        with self._lock:  # type: ignore[union-attr]
            self._unjoin_here(waiter)

    def _mark_done(self, guard: _FailureGuard | None) -> tuple[Any, bool]:
        with self._lock:  # type: ignore[union-attr]
            return self._done_here(guard)

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        with self._lock:  # type: ignore[union-attr]
            guard = self._detach_here()
        _report_detached(self, guard)


class LocalTask(NativeTask[T]):
    """A task confined to one loop thread (``single-threaded``, ``thread-per-core``).

    Its state is only ever touched by the loop's own thread, so it needs no lock.
    Another thread that wakes, cancels or joins it posts the operation to the loop,
    which applies it on its own thread.
    """

    __slots__ = ()

    _sched: LocalLoop

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        sched: LocalLoop,
        sink: ErrorSink,
        context: contextvars.Context,
    ) -> None:
        super().__init__(coro, name, sched, sink, context)
        self._lock = None

    def wake(self) -> None:
        """Make the task runnable; safe from any thread, idempotent."""
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(self.wake)
        elif self._wake_here():
            sched.ready.append(self)

    def _scopes_changed(self) -> None:
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(self._scopes_changed)
        elif self._refresh_here():
            sched.ready.append(self)

    def _cancel(self) -> bool:
        if self._state == DONE:
            return False
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(self._cancel)
        elif self._cancel_here():
            sched.ready.append(self)
        return True

    def _arm(self, deadline: float, queue: TimerQueue | None) -> None:
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(partial(self._arm, deadline, None))
            return
        alarm = self._arm_here(deadline)
        if alarm is not None:
            alarm.queue = queue = sched.timers
            queue.push(alarm)

    def _disarm(self, alarm: Alarm) -> bool:
        return self._disarm_here(alarm)  # fired by the loop, on the loop's thread

    def _join(self, waiter: NativeTask[Any]) -> None:
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(partial(self._join, waiter))
        elif self._join_here(waiter):
            waiter.wake()

    def _unjoin(self, waiter: NativeTask[Any]) -> None:
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(partial(self._unjoin, waiter))
        else:
            self._unjoin_here(waiter)

    def _mark_done(self, guard: _FailureGuard | None) -> tuple[Any, bool]:
        return self._done_here(guard)  # only ever on the loop's thread, at the end of a step

    def detach(self) -> None:
        """Stop caring about the result: a failure goes to the runtime's error handler."""
        sched = self._sched
        if get_ident() != sched.owner:
            sched.post(self.detach)
        else:
            _report_detached(self, self._detach_here())


def without_cancellations(
    group: BaseExceptionGroup[Any],
    name: str,
    cancellations: type[BaseException] | tuple[type[BaseException], ...] = Cancelled,
) -> BaseException:
    """What a task that ended with ``group`` ended with, cancellations taken out.

    A cancellation inside a group (a task group that failed while its task was being
    cancelled) only says the task was cancelled too: the task ended with the real
    errors, or, if there are none, cancelled. ``cancellations`` are the exception
    types that count (a backend adds its own, as the trio adapter adds trio's).
    """
    cancelled_part, rest = group.split(cancellations)
    if cancelled_part is None:
        return group
    if rest is not None:
        return rest
    cancelled = Cancelled(f"task {name!r} was cancelled")
    cancelled.__context__ = group
    return cancelled


def _report_detached(task: NativeTask[Any], guard: _FailureGuard | None) -> None:
    if guard is not None and guard.claim():
        task._sink._report(TaskError(task.name, guard.exc, "detached"))


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
