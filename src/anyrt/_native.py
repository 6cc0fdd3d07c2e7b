"""What every bundled (native) runtime shares: spawning, timers, errors, shutdown.

A backend subclasses `NativeRuntime` and supplies the worker loop: where a new task
is scheduled (`spawn`), which task and worker the calling thread is running
(`_current`), `block_on`, `spawn_local`, `spawn_blocking`, the reactor and `_shutdown`.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from types import CoroutineType, TracebackType
from typing import Any, ClassVar, Self, TextIO, TypeVar

from ._exceptions import Cancelled, TaskError
from ._instrument import Instrument, emit, instrumented
from ._oneshot import NativeReceiver, NativeSender
from ._protocols import Receiver, Sender
from ._task import (
    DONE,
    YIELD,
    LocalTask,
    NativeTask,
    TaskInfo,
    Worker,
    check_coroutine,
    write_task_table,
)
from ._timers import TimerEntry
from ._validate import check_deadline, check_seconds

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

    def _forget(self, task: NativeTask[Any]) -> None:
        with self._tasks_lock:
            self._tasks.pop(task, None)

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
        self, coro: Coroutine[Any, Any, T], name: str | None, sched: Any, method: str
    ) -> NativeTask[T]:
        if type(coro) is not CoroutineType:
            check_coroutine(coro, method)
        if self._closed:
            self._check_open(coro)
        if name is None:
            name = getattr(coro, "__qualname__", None) or repr(coro)
        elif not isinstance(name, str):
            coro.close()
            raise TypeError(f"{method}() name must be a str, not {type(name).__name__}")
        task: NativeTask[T] = self._task_class(coro, name, sched, self, contextvars.copy_context())
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
        receiver: NativeReceiver[T] = NativeReceiver()
        return NativeSender(receiver), receiver

    # -- Timer ----------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds``; ``sleep(0)`` yields to the other ready tasks."""
        if type(seconds) is float and seconds > 0.0:  # the common case, checked cheaply
            await _Sleep(self._now_fn() + seconds)
            return
        if seconds == 0 and type(seconds) is not bool:
            await YIELD
            return
        seconds = check_seconds(seconds, "sleep()")
        await _Sleep(self._now_fn() + seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline``."""
        await _Sleep(check_deadline(deadline, "sleep_until()"))

    def interval(self, period: float) -> _Interval:
        """Tick every ``period`` seconds; see `anyrt.Timer.interval`."""
        period = check_seconds(period, "interval()")
        if period == 0:
            raise ValueError("interval() takes a positive period, got 0")
        return _Interval(self, period)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """Cancel the enclosed block after ``seconds`` and raise `TimeoutError`."""
        return _Timeout(self, check_seconds(seconds, "timeout()"))

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

    __slots__ = ("fired", "task")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancelled = False
        self.fired = False
        self.task: NativeTask[Any] | None = None

    def __await__(self) -> Generator[Any, Any, None]:
        try:
            while not self.fired:
                yield self
        except BaseException:
            self.cancelled = True
            raise

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if self.task is None:
            self.task = task
            worker.timers.push(self)

    def fire(self) -> None:
        self.fired = True
        task = self.task
        if task is not None:
            task.wake()


class _Timeout(TimerEntry, AbstractAsyncContextManager[None]):
    """``async with runtime.timeout(s):`` - cancels its task when the deadline passes."""

    __slots__ = ("_runtime", "_seconds", "_task")

    def __init__(self, runtime: NativeRuntime, seconds: float) -> None:
        super().__init__(math.inf)
        self._runtime = runtime
        self._seconds = seconds
        self._task: NativeTask[Any] | None = None

    async def __aenter__(self) -> None:
        if self._task is not None:
            raise RuntimeError("a timeout() context manager can be entered only once")
        current = self._runtime._current()
        if current is None:
            raise RuntimeError(
                f"timeout() must be entered inside a task of this {self._runtime.name!r} runtime"
            )
        self._task, worker = current
        self.deadline = self._runtime.now() + self._seconds
        worker.timers.push(self)

    def fire(self) -> None:
        task = self._task
        if task is not None:
            exc = Cancelled(f"timed out after {self._seconds} s")
            exc._anyrt_scope = self
            task._cancel_with(exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancelled = True
        task = self._task
        if task is not None:
            task._retract_cancel(self)
        if isinstance(exc, Cancelled) and exc._anyrt_scope is self:
            raise TimeoutError(f"timed out after {self._seconds} s") from exc


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
