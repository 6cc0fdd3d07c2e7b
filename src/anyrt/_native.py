"""What every bundled (native) runtime shares: spawning, timers, errors, shutdown.

A backend subclasses `NativeRuntime` and supplies the worker loop: where a new task
is scheduled (`spawn`), which task and worker the calling thread is running
(`_current`), `block_on`, `spawn_local`, `spawn_blocking`, the reactor and `_shutdown`.
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
import threading
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from types import CoroutineType, TracebackType
from typing import Any, ClassVar, Self, TextIO, TypeVar

from ._exceptions import Cancelled, TaskError
from ._instrument import Instrument, emit, instrumented
from ._introspect import TaskInfo, write_task_table
from ._oneshot import NativeReceiver, NativeSender
from ._protocols import Receiver, Sender
from ._scope import Alarm, NativeCancelScope, TimeoutContext, current_deadline
from ._task import DONE, YIELD, LocalTask, NativeTask, Worker
from ._timers import TimerEntry
from ._validate import check_coroutine, check_deadline, check_seconds

T = TypeVar("T")

logger = logging.getLogger("anyrt")

sniffio_state: Any
try:  # sniffio is optional; when present, anyio-based code learns it runs on anyrt.
    from sniffio import thread_local as sniffio_state
except ImportError:  # pragma: no cover - sniffio is a dev dependency
    sniffio_state = None

ErrorHandler = Callable[[TaskError], None]


def log_task_error(error: TaskError) -> None:
    """The default error handler: log the failure with its traceback to ``anyrt``."""
    logger.error(
        "unhandled exception in %s task %r",
        error.reason,
        error.task_name,
        exc_info=(type(error.exception), error.exception, error.exception.__traceback__),
    )


class _ThreadState(threading.local):
    # The native runtime whose loop this thread is running, if any.
    runtime: NativeRuntime | None = None


thread_state = _ThreadState()


def running_native_runtime() -> NativeRuntime | None:
    """Return the native runtime whose loop the calling thread is running, if any."""
    return thread_state.runtime


class NativeRuntime(ABC):
    """Base class of the bundled runtimes; see `anyrt.Runtime` for the contract."""

    name: ClassVar[str] = "native"
    cancelled_exc: ClassVar[type[BaseException]] = Cancelled
    #: What the backend can do (`anyrt backends` lists the class's; an instance may
    #: have fewer, e.g. a `single-threaded` runtime with a real clock).
    capabilities: tuple[str, ...] = ()

    def __init__(self, *, error_handler: ErrorHandler | None = None) -> None:
        if error_handler is not None and not callable(error_handler):
            raise TypeError(f"error_handler must be callable, not {type(error_handler).__name__}")
        self._error_handler: ErrorHandler = error_handler or log_task_error
        self._tasks: dict[NativeTask[Any], None] = {}
        self._tasks_lock = threading.Lock()
        self._closed = False
        self._close_hooks: list[Callable[[], object]] = []
        # Replaced, never mutated, so a thread iterating over it needs no lock.
        self._instruments: tuple[Instrument, ...] = ()
        # The clock's raw time source, for the hot paths (subclasses may replace it).
        self._now_fn: Callable[[], float] = self.now
        # Work handed over by code that must not block or take a lock (finalisers run
        # by the garbage collector); a loop thread runs it between steps.
        self._deferred: deque[Callable[[], object]] = deque()
        # A KeyboardInterrupt or SystemExit that ended a task (and the task's name):
        # block_on raises it.
        self._fatal: BaseException | None = None
        self._fatal_task = ""
        # The async generators first iterated in this runtime's tasks, for `close`.
        self._asyncgens: weakref.WeakSet[AsyncGenerator[Any, Any]] = weakref.WeakSet()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._tasks)} tasks"
        return f"<anyrt {self.name} runtime, {state}>"

    # -- hooks for the backends -----------------------------------------------------

    @abstractmethod
    def _current(self) -> tuple[NativeTask[Any], Worker] | None:
        """Return the task and worker the calling thread is running for this runtime."""

    @abstractmethod
    def now(self) -> float:
        """Return the current time on this runtime's clock."""

    @abstractmethod
    def _post_alarm(self, alarm: Alarm) -> None:
        """Push a task's deadline ``alarm`` on one of the runtime's timer queues.

        For a deadline moved from a thread that runs none of the runtime's tasks.
        """

    @abstractmethod
    def _poke(self) -> None:
        """Make a loop thread look at `_deferred` soon, without blocking or locking."""

    def _fatal_stop(self) -> None:  # noqa: B027 - a hook with nothing to do by default
        """A task ended with a `KeyboardInterrupt` or `SystemExit`: stop `block_on`."""

    # -- task bookkeeping (also the ErrorSink the tasks report to) -------------------

    def _report(self, error: TaskError) -> None:
        handler = self._error_handler
        try:
            handler(error)
        except BaseException as handler_exc:
            logger.error(  # noqa: TRY400 - exc_info names the handler's exception explicitly
                "the anyrt error handler %r raised while reporting task %r",
                handler,
                error.task_name,
                exc_info=(type(handler_exc), handler_exc, handler_exc.__traceback__),
            )
            log_task_error(error)

    def _report_later(self, error: TaskError) -> None:
        """`_report` from a loop thread, soon: safe inside a finaliser."""
        self._defer(lambda: self._report(error))

    def _defer(self, fn: Callable[[], object]) -> None:
        # deque.append is atomic and takes no lock the interrupted code could hold.
        self._deferred.append(fn)
        self._poke()

    def _run_deferred(self) -> None:
        """Run what was deferred (on a loop thread, between steps)."""
        deferred = self._deferred
        while deferred:
            try:
                fn = deferred.popleft()
            except IndexError:  # another loop thread took it
                return
            try:
                fn()
            except Exception:
                logger.exception("anyrt: deferred work %r raised", fn)

    def _fatal_error(self, task_name: str, exc: BaseException) -> None:
        """A task ended with ``exc`` (KeyboardInterrupt, SystemExit): `block_on` raises it.

        The running `block_on` (or else the next one) cancels its main task, waits for
        its cleanup and raises ``exc``, as `asyncio.run` does.
        """
        with self._tasks_lock:
            if self._fatal is not None:
                return  # the first one stops block_on; the others are in their tasks
            self._fatal = exc
            self._fatal_task = task_name
        self._fatal_stop()

    def _take_fatal(self) -> BaseException | None:
        with self._tasks_lock:
            fatal, self._fatal = self._fatal, None
        return fatal

    def _report_unclaimed_fatal(self) -> None:
        """At `close`: a fatal exception no block_on raised goes to the error handler."""
        name = self._fatal_task
        fatal = self._take_fatal()
        if fatal is not None:
            self._report(TaskError(name, fatal, "raised while no block_on ran"))

    def _forget(self, task: NativeTask[Any]) -> None:
        with self._tasks_lock:
            self._tasks.pop(task, None)

    # -- async generators: finalised on the runtime, as asyncio does ----------------------

    def _install_asyncgen_hooks(self) -> Any:
        """Install this runtime's hooks on the calling (loop) thread; return the old ones."""
        previous = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_dropped)
        return previous

    def _asyncgen_firstiter(self, agen: AsyncGenerator[Any, Any]) -> None:
        with self._tasks_lock:
            self._asyncgens.add(agen)

    def _asyncgen_dropped(self, agen: AsyncGenerator[Any, Any]) -> None:
        # Called by the garbage collector, anywhere: hand the finalisation to a loop.
        self._defer(lambda: self._finalize_asyncgen(agen))

    def _finalize_asyncgen(self, agen: AsyncGenerator[Any, Any]) -> NativeTask[Any] | None:
        with self._tasks_lock:
            self._asyncgens.discard(agen)
        if not self._admits() or getattr(agen, "ag_frame", None) is None:  # closed, or done
            return None
        task = self.spawn(agen.aclose(), name=f"aclose of {getattr(agen, '__qualname__', agen)}")
        task.detach()  # a failure in its finally goes to the error handler
        return task

    #: True while `close` finalises the async generators still alive.
    _closing_asyncgens = False

    def _admits(self) -> bool:
        """Whether a new task may be spawned: the runtime is open, or finalising."""
        return not self._closed or self._closing_asyncgens

    def _finalize_asyncgens(self) -> list[NativeTask[Any]]:
        """Spawn ``aclose()`` for every async generator still alive (during `close`)."""
        with self._tasks_lock:
            agens = list(self._asyncgens)
        self._closing_asyncgens = True
        try:
            closing = [self._finalize_asyncgen(agen) for agen in agens]
        finally:
            self._closing_asyncgens = False
        return [task for task in closing if task is not None]

    def _check_open(self, coro: Coroutine[Any, Any, Any] | None = None) -> None:
        if self._closed:
            if coro is not None:
                coro.close()
            raise RuntimeError(
                f"this {self.name!r} runtime is closed; create a new one with "
                f"anyrt.runtime({self.name!r})"
            )

    #: The task class: `LocalTask` for thread-confined loops, `SharedTask` otherwise.
    _task_class: type[NativeTask[Any]]
    #: The class of tasks pinned to one thread (``spawn_local`` on work-stealing).
    _local_task_class: type[NativeTask[Any]] = LocalTask

    def _check_block_on(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Refuse a non-coroutine, a closed runtime, and a call from inside any runtime."""
        if type(coro) is not CoroutineType:
            check_coroutine(coro, "block_on")
        self._check_open(coro)
        running = thread_state.runtime
        if running is not None:
            coro.close()
            raise RuntimeError(
                f"block_on() was called from inside a task of the {running.name!r} anyrt "
                "runtime, which would block it; await the coroutine or spawn() it instead"
            )

    def _new_task(
        self,
        coro: Coroutine[Any, Any, T],
        name: str | None,
        sched: Any,
        method: str,
        *,
        local: bool = False,
    ) -> NativeTask[T]:
        if type(coro) is not CoroutineType:
            check_coroutine(coro, method)
        if not self._admits():
            self._check_open(coro)
        if name is None:
            name = getattr(coro, "__qualname__", None) or repr(coro)
        elif not isinstance(name, str):
            coro.close()
            raise TypeError(f"{method}() name must be a str, not {type(name).__name__}")
        cls = self._local_task_class if local else self._task_class
        task: NativeTask[T] = cls(coro, name, sched, self, contextvars.copy_context())
        if self._instruments:
            emit(task, "task_spawned")
        return task

    # -- Executor -------------------------------------------------------------------

    @abstractmethod
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> NativeTask[T]:
        """Schedule ``coro`` as a new task; callable from any thread. See `anyrt.Executor`."""

    @abstractmethod
    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the calling thread; see `anyrt.Executor`."""

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]:
        """Return a connected (sender, receiver) pair; see `anyrt.Sender`.

        Safe from any thread; see `anyrt.Sender` for the delivery promise.
        """
        receiver: NativeReceiver[T] = NativeReceiver(self)
        return NativeSender(receiver), receiver

    def cancel_scope(
        self, *, deadline: float = math.inf, shield: bool = False
    ) -> NativeCancelScope:
        """Return a new `anyrt.CancelScope` of this runtime (enter it in one of its tasks)."""
        if deadline != math.inf:
            deadline = check_deadline(deadline, "cancel_scope(deadline=...)")
        if shield is not False:
            _check_shield(shield)
        return NativeCancelScope(self, deadline, shield)

    # -- Timer ----------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds``; ``sleep(0)`` yields to the other ready tasks."""
        if type(seconds) is float and seconds > 0.0:  # the common case, checked cheaply
            await _Sleep(self._now_fn() + seconds, self)
            return
        if seconds == 0 and type(seconds) is not bool:
            await YIELD
            return
        seconds = check_seconds(seconds, "sleep()")
        await _Sleep(self._now_fn() + seconds, self)

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline``."""
        await _Sleep(check_deadline(deadline, "sleep_until()"), self)

    def interval(self, period: float) -> _Interval:
        """Tick every ``period`` seconds; see `anyrt.Timer.interval`."""
        period = check_seconds(period, "interval()")
        if period == 0:
            raise ValueError("interval() takes a positive period, got 0")
        return _Interval(self, period)

    def move_on_after(self, seconds: float, *, shield: bool = False) -> NativeCancelScope:
        """A cancel scope whose deadline is ``seconds`` from now; exits quietly on expiry."""
        seconds = check_seconds(seconds, "move_on_after()")
        return NativeCancelScope(self, self._now_fn() + seconds, _check_shield(shield))

    def move_on_at(self, deadline: float, *, shield: bool = False) -> NativeCancelScope:
        """A cancel scope with this ``deadline``; exits quietly on expiry."""
        deadline = check_deadline(deadline, "move_on_at()")
        return NativeCancelScope(self, deadline, _check_shield(shield))

    def fail_after(self, seconds: float, *, shield: bool = False) -> NativeCancelScope:
        """As `move_on_after`, but raise `TimeoutError` on leaving if the deadline passed."""
        if type(seconds) is not float or not seconds >= 0.0:  # the common case, cheaply
            seconds = check_seconds(seconds, "fail_after()")
        if shield is not False:
            _check_shield(shield)
        return NativeCancelScope(self, self._now_fn() + seconds, shield, True)

    def fail_at(self, deadline: float, *, shield: bool = False) -> NativeCancelScope:
        """As `move_on_at`, but raise `TimeoutError` on leaving if the deadline passed."""
        deadline = check_deadline(deadline, "fail_at()")
        return NativeCancelScope(self, deadline, _check_shield(shield), fail=True)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``async with rt.timeout(s):`` means exactly ``with rt.fail_after(s):``."""
        return TimeoutContext(self.fail_after(check_seconds(seconds, "timeout()")))

    def current_deadline(self) -> float:
        """The nearest deadline of the calling task's scopes up to a shield.

        ``math.inf`` if none, ``-math.inf`` if one of them is cancelled already.

        Raises:
            RuntimeError: not called from a task of this runtime.
        """
        current = self._current()
        if current is None:
            raise RuntimeError(
                f"current_deadline() must be called from a task of this {self.name!r} runtime"
            )
        return current_deadline(current[0])

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once `close` has been called."""
        return self._closed

    @abstractmethod
    def close(self) -> None:
        """Cancel every task, let their ``finally`` blocks run, release every resource."""

    # -- observability -----------------------------------------------------------------

    def dump_tasks(self, file: TextIO | None = None) -> None:
        """Write `tasks` as a table to ``file`` (default: standard error).

        For a debugging request, e.g. on SIGUSR1 through `signals` on the threaded
        runtimes.
        """
        write_task_table(file, self, self.tasks())

    def instrument(self, instrument: Instrument) -> None:
        """Report the events of tasks spawned from now on to ``instrument``.

        Until the first instrument is installed, tasks run without any check for one.
        """
        if not isinstance(instrument, Instrument):
            raise TypeError(
                f"instrument() takes an anyrt.Instrument, not {type(instrument).__name__}"
            )
        with self._tasks_lock:
            if instrument in self._instruments:
                return
            self._instruments = (*self._instruments, instrument)
            self._task_class = instrumented(type(self)._task_class)
            self._local_task_class = instrumented(LocalTask)

    def uninstrument(self, instrument: Instrument) -> None:
        """Stop reporting to ``instrument``; idempotent."""
        with self._tasks_lock:
            self._instruments = tuple(i for i in self._instruments if i is not instrument)
            if not self._instruments:
                self._task_class = type(self)._task_class
                self._local_task_class = LocalTask

    def tasks(self) -> list[TaskInfo]:
        """Return a snapshot of the live tasks, oldest first: name, state, where, age.

        Safe from any thread. Tasks that run on other threads move on while the
        snapshot is taken, so each entry is true of its task at some instant during
        the call.
        """
        with self._tasks_lock:
            live = list(self._tasks)
        now = self._now_fn()
        infos = [task.info(now) for task in live if task._state != DONE]
        infos.sort(key=lambda info: -info.age)
        return infos

    def _add_close_hook(self, hook: Callable[[], object]) -> None:
        """Have `close` call ``hook()`` once every task has ended.

        For compat shims that start a side thread on behalf of the runtime (the asyncio
        loop thread of ``anyrt_asyncio.compat``): the runtime's ``close()`` stops it.

        Raises:
            RuntimeError: the runtime is already closed.
        """
        with self._tasks_lock:
            if not self._closed:
                self._close_hooks.append(hook)
                return
        self._check_open()

    def _run_close_hooks(self) -> None:
        with self._tasks_lock:
            hooks, self._close_hooks = self._close_hooks, []
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:
                logger.exception("anyrt: the close hook %r raised", hook)


class _Sleep(TimerEntry):
    """The trap of one sleep: a timer entry that wakes its task."""

    __slots__ = ("error", "fired", "runtime", "task")

    def __init__(self, deadline: float, runtime: NativeRuntime) -> None:
        self.deadline = deadline
        self.cancelled = False
        self.fired = False
        self.runtime = runtime
        self.task: NativeTask[Any] | None = None
        self.error: RuntimeError | None = None

    def __await__(self) -> Generator[Any, Any, None]:
        try:
            while not self.fired:
                yield self
        except BaseException:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if self.task is None:
            self.task = task
            if task._sink is not self.runtime:
                # Its deadline is on another runtime's clock: refuse, never sleep wrong.
                self.error = foreign_runtime_error("a sleep", self.runtime, task)
                self.fired = True
                task.wake()
                return
            worker.timers.push(self)

    def fire(self) -> None:
        self.fired = True
        task = self.task
        if task is not None:
            task.wake()


def foreign_runtime_error(what: str, owner: Any, task: NativeTask[Any]) -> RuntimeError:
    """The error for ``what`` of runtime ``owner`` awaited in a task of another runtime."""
    return RuntimeError(
        f"{what} of the {owner.name!r} runtime {owner!r} was awaited in task {task.name!r} "
        f"of another runtime, {task._sink!r}; await it in a task of its own runtime, and "
        "pass values between runtimes with a oneshot() Sender (safe from anywhere)"
    )


def _check_shield(shield: object) -> bool:
    if not isinstance(shield, bool):
        raise TypeError(f"shield must be a bool, not {type(shield).__name__}")
    return shield


class _Interval:
    """The async iterator `interval` returns: a fixed schedule that skips missed ticks."""

    __slots__ = ("_next", "_period", "_runtime")

    def __init__(self, runtime: NativeRuntime, period: float) -> None:
        self._runtime = runtime
        self._period = period
        self._next: float | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> float:
        runtime = self._runtime
        period = self._period
        tick = self._next
        if tick is None:
            tick = runtime.now() + period
        await runtime.sleep_until(tick)
        behind = runtime.now() - tick
        skipped = math.floor(behind / period) if behind >= period else 0
        self._next = tick + period * (skipped + 1)
        return tick
