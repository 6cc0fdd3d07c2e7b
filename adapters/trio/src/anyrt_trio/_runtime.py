"""`TrioRuntime`: the whole `anyrt.Runtime` protocol on one trio run.

How the runtime owns trio
=========================

The contract asks things of a runtime that one ``trio.run`` call does not give by
itself: ``spawn`` works before, between and after ``block_on`` calls and from plain
threads, tasks outlive the ``block_on`` that spawned them, several threads may
``block_on`` at once, and ``close()`` is what ends the tasks. A ``trio.run`` is one call
with one lifetime and cannot pause between ``block_on`` calls, so an owned runtime
runs trio in a thread of its own, started in ``__init__`` (so that every other method
only ever posts to a run that exists):

* the run's main task opens the runtime's nursery and waits for ``close()``; every
  spawned coroutine is a child of that nursery, in a cancel scope of its own;
* from the trio thread, ``spawn`` starts the child at once; from any other thread it
  posts the start with `trio.lowlevel.TrioToken.run_sync_soon`;
* ``block_on`` posts its coroutine as a task the same way and blocks the calling thread
  on a `threading.Event` until the task ends;
* ``close()`` cancels the nursery, waits until every task's ``finally`` has run and the
  run has returned, joins the thread, then runs the close hooks.

A runtime can also *borrow* a run that someone else started (`current`): nothing to
start or stop, tasks become trio system tasks, which trio cancels when the run's main
function returns; the run then waits for them to finish.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import threading
from collections.abc import Callable, Coroutine
from contextvars import copy_context
from threading import get_ident
from types import CoroutineType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, ParamSpec, Self, TextIO, TypeVar, final

import trio
import trio.testing
from trio.lowlevel import checkpoint

from anyrt import (
    ByteStream,
    Cancelled,
    FileDescriptorLike,
    Listener,
    Receiver,
    Sender,
    TaskError,
    TaskInfo,
)
from anyrt._native import ErrorHandler, log_task_error, running_native_runtime
from anyrt._scope import TimeoutContext
from anyrt._signals import MainWaiter, SignalInstaller
from anyrt._tls import secure_client, secure_listener
from anyrt._validate import check_coroutine, check_deadline, check_seconds

from . import _introspect
from ._asyncgens import AsyncGenFinalizer
from ._fatal import FatalLatch
from ._home import CURRENT, foreign_error
from ._oneshot import TrioOneshot
from ._scope import TrioCancelScope
from ._signals import TrioSignalReceiver, close_signal_sockets
from ._streams import connect_tcp, listen_tcp
from ._task import TrioTask, run_task, where
from ._time import NO_WAIT, AutojumpGovernor, ExternalWait, Interval, NoWait, make_clock
from ._udp import TrioDatagramSocket, open_udp

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["TrioRuntime", "current"]

T = TypeVar("T")
P = ParamSpec("P")

logger = logging.getLogger("anyrt")

_CAPABILITIES: Final = ("threads", "os-reactor", "blocking-pool")
#: How long close() waits for the cancelled tasks before it names those still running.
_STUCK_REPORT_SECONDS: Final = 5.0


@final
class TrioRuntime:
    """The anyrt runtime on trio: implements `anyrt.Runtime`.

    Tasks run on one trio thread that the runtime starts and owns; ``spawn``,
    ``Task.cancel``, oneshots and ``block_on`` work from any thread. Inside the runtime
    it is trio code: `cancelled_exc` is `trio.Cancelled` (level-triggered, as in trio),
    sniffio answers ``"trio"``, and trio functions can be awaited directly.

    Args:
        clock: ``"real"`` or None (trio's own clock), ``"virtual"`` (a
            `trio.testing.MockClock` that jumps over idle time), or any
            `trio.abc.Clock`.
        error_handler: receives failures nobody will observe (default: log them to
            the ``anyrt`` logger).
    """

    name: str = "trio"
    cancelled_exc: type[BaseException] = trio.Cancelled
    #: What the backend can do; an instance with a real clock lacks "virtual-time".
    capabilities: tuple[str, ...] = (*_CAPABILITIES, "virtual-time")
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"clock": "virtual"})

    _ident: int
    _token: trio.lowlevel.TrioToken
    _clock: trio.abc.Clock

    def __init__(
        self,
        *,
        clock: trio.abc.Clock | str | None = None,
        error_handler: ErrorHandler | None = None,
    ) -> None:
        self._setup(error_handler, owned=True)
        trio_clock, threshold = make_clock(clock)
        self._start_thread(trio_clock, threshold, "anyrt-trio")

    @classmethod
    def _compat_side(cls) -> TrioRuntime:
        """A runtime for `anyrt_trio.compat`: the side trio thread of another runtime."""
        self = cls.__new__(cls)
        self._setup(None, owned=True)
        self._start_thread(None, None, "anyrt-trio-compat")
        return self

    @classmethod
    def _borrow(cls) -> TrioRuntime:
        """A runtime bound to the calling trio run, which it does not own (`current`)."""
        self = cls.__new__(cls)
        self._setup(None, owned=False)
        self._adopt_run()
        clock = self._clock
        jumps = isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != math.inf
        self.capabilities = (*_CAPABILITIES, "virtual-time") if jumps else _CAPABILITIES
        return self

    def _setup(self, error_handler: ErrorHandler | None, *, owned: bool) -> None:
        if error_handler is not None and not callable(error_handler):
            raise TypeError(f"error_handler must be callable, not {type(error_handler).__name__}")
        self._error_handler: ErrorHandler = error_handler or log_task_error
        self._owned = owned
        self._lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._close_hooks: list[Callable[[], object]] = []
        self._live = 0
        # Each live task and when it started, on the run's clock (for tasks()).
        self._born: dict[TrioTask[Any], float] = {}
        self._main_waiter: MainWaiter | None = None
        self._signals = SignalInstaller(functools.partial(self._call_soon, close_signal_sockets))
        self._idle: trio.Event | None = None
        self._watching = False
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._mains: set[TrioTask[Any]] = set()
        self._governor: AutojumpGovernor | None = None
        self._external: ExternalWait | NoWait = NO_WAIT
        self._fatal = FatalLatch()

    def _adopt_run(self) -> None:
        """Bind to the trio run of the calling thread."""
        self._token = trio.lowlevel.current_trio_token()
        self._ident = get_ident()
        self._clock = trio.lowlevel.current_clock()
        CURRENT.set(self)

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        else:
            state = f"{self._live} tasks" + ("" if self._owned else ", borrowed")
        return f"<anyrt trio runtime, {state}>"

    # -- the trio thread --------------------------------------------------------------

    def _start_thread(
        self, clock: trio.abc.Clock | None, threshold: float | None, thread_name: str
    ) -> None:
        instruments: list[trio.abc.Instrument] = []
        self.capabilities = _CAPABILITIES
        if threshold is not None and isinstance(clock, trio.testing.MockClock):
            governor = AutojumpGovernor(clock, threshold)
            instruments.append(governor)
            self._governor = governor
            self._external = ExternalWait(governor)
            self.capabilities = (*_CAPABILITIES, "virtual-time")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(clock, instruments, ready),
            name=thread_name,
            daemon=True,
        )
        self._thread.start()
        ready.wait()
        if self._crash is not None:
            self._thread.join()
            raise RuntimeError(f"the trio run could not start: {self._crash!r}") from self._crash

    def _thread_main(
        self,
        clock: trio.abc.Clock | None,
        instruments: list[trio.abc.Instrument],
        ready: threading.Event,
    ) -> None:
        try:
            trio.run(self._main, ready, clock=clock, instruments=instruments)
        except BaseException as exc:
            self._crash = exc
            if ready.is_set():
                logger.critical(
                    "anyrt: the trio thread of %r crashed",
                    self,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
        finally:
            ready.set()
            with self._lock:
                self._closed = True
                mains = list(self._mains)
            if self._crash is not None:
                for main in mains:
                    main._abandon(RuntimeError(f"the trio thread crashed: {self._crash!r}"))

    async def _main(self, ready: threading.Event) -> None:
        self._adopt_run()
        asyncgens = AsyncGenFinalizer(self)
        asyncgens.install()
        if self._governor is not None:
            self._governor.token = self._token
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        await asyncgens.close_alive()

    def _start(self, task: TrioTask[Any]) -> None:
        """Start ``task`` as a trio task; on the trio thread only.

        Raises:
            RuntimeError: the run is ending and takes no new task.
        """
        self._live += 1
        self._born[task] = self._clock.current_time()
        try:
            nursery = self._nursery
            if nursery is not None:
                nursery.start_soon(run_task, task, name=task.name)
            else:
                trio.lowlevel.spawn_system_task(
                    run_task, task, name=task.name, context=copy_context()
                )
        except RuntimeError:  # "Nursery is closed to new arrivals"
            self._drop(task)
            raise self._closed_error() from None

    def _start_posted(self, task: TrioTask[Any], context: contextvars.Context) -> None:
        """Start a task posted from another thread (a `run_sync_soon` callback).

        Never raises: an exception here would crash the run.
        """
        with contextlib.suppress(RuntimeError):  # the run was ending: `_start` dropped it
            context.run(self._start, task)

    def _start_main(self, task: TrioTask[Any], context: contextvars.Context) -> None:
        """Start the main task of a ``block_on``: virtual time may jump while it runs."""
        if self._governor is not None:
            self._governor.drive_start()
        self._start_posted(task, context)

    def _drop(self, task: TrioTask[Any]) -> None:
        coro = task._coro
        if coro is not None:
            coro.close()
        task._finish(None, Cancelled("the runtime was closed before the task started"))

    def _post(
        self,
        task: TrioTask[Any],
        starter: Callable[[TrioTask[Any], contextvars.Context], None] | None = None,
    ) -> None:
        """Post ``task``'s start to the trio thread from another thread."""
        context = copy_context()
        with self._lock:  # orders the post before close()'s own
            if self._closed:
                self._refuse(task)
            try:
                self._token.run_sync_soon(starter or self._start_posted, task, context)
            except trio.RunFinishedError:
                self._refuse(task)

    def _refuse(self, task: TrioTask[Any]) -> None:
        coro = task._coro
        if coro is not None:
            coro.close()
        raise self._closed_error()

    def _closed_error(self) -> RuntimeError:
        if not self._owned:
            return RuntimeError(
                "the trio run that this runtime borrowed (anyrt_trio.current()) has ended; "
                "spawn from inside a running trio.run"
            )
        return RuntimeError(
            "this 'trio' runtime is closed; create a new one with anyrt.runtime('trio')"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    # -- bookkeeping (also what the tasks report to) ------------------------------------

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
        """Deliver ``error`` from the trio loop (at once once the run is over).

        For a finaliser, which the garbage collector may run inside any code at all.
        """
        token = getattr(self, "_token", None)
        if token is not None:
            try:
                token.run_sync_soon(self._report, error)
            except trio.RunFinishedError:
                pass
            else:
                return
        self._report(error)

    def _forget(self, task: TrioTask[Any]) -> None:
        self._live -= 1
        self._born.pop(task, None)
        idle = self._idle
        if idle is not None and not self._live:
            idle.set()

    def _external_wait(self) -> ExternalWait | NoWait:
        """``with``: a thread the runtime knows of will wake a task (virtual time waits).

        Used by `anyrt.from_future`; only from a task of this runtime.
        """
        return self._external

    # -- Executor ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> TrioTask[T]:
        """Schedule ``coro`` as a new task and return its handle; safe from any thread.

        Raises:
            TypeError: ``coro`` is not a coroutine object.
            RuntimeError: the runtime is closed.
        """
        if type(coro) is not CoroutineType:
            check_coroutine(coro, "spawn")
        if name is None:
            name = getattr(coro, "__qualname__", None) or repr(coro)
        elif not isinstance(name, str):
            coro.close()
            raise TypeError(f"spawn() name must be a str, not {type(name).__name__}")
        return self._launch(TrioTask(coro, name, self))

    def _spawn_watched(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        on_done: Callable[[TrioTask[T]], object],
    ) -> TrioTask[T]:
        """Spawn ``coro``; ``on_done(task)`` answers for its outcome (nothing is reported).

        ``on_done`` is called on the trio thread when the task ends.
        """
        task = TrioTask(coro, name, self)
        task._on_done = on_done
        return self._launch(task)

    def _launch(self, task: TrioTask[T]) -> TrioTask[T]:
        if self._closed:
            self._refuse(task)
        if get_ident() == self._ident:
            self._start(task)
        else:
            self._post(task)
        return task

    def spawn_local(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> TrioTask[T]:
        """Spawn ``coro`` on the trio thread, from a task of this runtime.

        Every task of a trio runtime runs on its one trio thread, so this is `spawn`
        with a check.

        Raises:
            RuntimeError: called from a thread that does not run this runtime's tasks.
        """
        if get_ident() != self._ident:
            if type(coro) is CoroutineType:
                coro.close()
            raise RuntimeError(
                "spawn_local() must be called from a task of this trio runtime (its tasks "
                "run on its trio thread); use spawn() from other threads"
            )
        return self.spawn(coro, name=name)

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as a task and block the calling (plain) thread until it ends.

        A `KeyboardInterrupt` (Ctrl-C) while it waits, or a `KeyboardInterrupt` or
        `SystemExit` raised by any task of the runtime, cancels ``coro``, waits for its
        cleanup, and is then raised; the runtime stays usable.

        Raises:
            RuntimeError: called from inside a task (of this or any runtime, or of a trio
                run), on a runtime borrowed with `current`, or after `close`.
        """
        if type(coro) is not CoroutineType:
            check_coroutine(coro, "block_on")
        problem = self._block_on_problem()
        if problem is not None:
            coro.close()
            raise RuntimeError(problem)
        waiter = MainWaiter()
        main = TrioTask(coro, getattr(coro, "__qualname__", None) or repr(coro), self)
        fatal = self._fatal.watch(main)
        if fatal is not None:  # a task raised it while no block_on was running
            coro.close()
            raise fatal
        governor = self._governor
        if governor is None:
            main._on_done = lambda _: waiter.wake()
        else:

            def on_done(_: TrioTask[T]) -> None:
                governor.drive_end()
                waiter.wake()

            main._on_done = on_done
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:
            # signals() installs its handlers through it: set before the task can run.
            self._main_waiter = waiter
        try:
            self._post(main, self._start_main)
        except BaseException:
            if on_main_thread:
                self._main_waiter = None
            self._fatal.unwatch(main)
            raise
        with self._lock:
            self._mains.add(main)
            if self._crash is not None:  # the thread died between the post and now
                main._abandon(RuntimeError(f"the trio thread crashed: {self._crash!r}"))
        try:
            waiter.wait()
        except KeyboardInterrupt:
            # Ctrl-C on the main thread: cancel the main task, let its `finally` blocks
            # run, then report the interrupt (a second Ctrl-C stops waiting for them).
            main.cancel()
            waiter.wait()
            raise
        except BaseException:
            main.cancel()
            raise
        finally:
            # A task raised KeyboardInterrupt or SystemExit: the latch cancelled the
            # main task, whose `finally` blocks have run; raise it.
            fatal = self._fatal.unwatch(main)
            with self._lock:
                self._mains.discard(main)
                if on_main_thread:
                    self._main_waiter = None
            if on_main_thread:
                self._signals.restore()
        if fatal is not None:
            raise fatal
        return main.result()

    def _block_on_problem(self) -> str | None:
        if not self._owned:
            return (
                "block_on() cannot be used on the runtime of anyrt_trio.current(): it borrows "
                "a trio.run that is already running on this thread; await the coroutine, or "
                "spawn() it"
            )
        if self._closed:
            return str(self._closed_error())
        if get_ident() == self._ident:
            return (
                "block_on() was called from inside a task of this trio runtime, which would "
                "block it; await the coroutine or spawn() it instead"
            )
        native = running_native_runtime()
        if native is not None:
            return (
                f"block_on() was called from inside a task of the {native.name!r} anyrt "
                "runtime, which would block it; spawn() the coroutine instead"
            )
        if trio.lowlevel.in_trio_run():
            return (
                "block_on() was called from inside a trio run, which would block it; await "
                "the coroutine, or use anyrt_trio.current() to run anyrt code in this run"
            )
        return None

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]:
        """Return a connected (sender, receiver) pair; see `anyrt.Sender`.

        The receiver is awaited from a trio task; the sender works from any thread.
        """
        oneshot: TrioOneshot[T] = TrioOneshot(self)
        return oneshot, oneshot

    async def spawn_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` with `trio.to_thread.run_sync`, in a copy of the context.

        Trio's thread pool runs it (at most 40 calls at once by default). If the
        awaiting task is cancelled, the cancellation waits for the call to return (a
        thread cannot be interrupted), so `close` leaves no call running.
        """
        if not callable(fn):
            raise TypeError(f"spawn_blocking() takes a callable, not {type(fn).__name__}")
        self._check_open()
        call: Callable[[], T] = functools.partial(fn, *args, **kwargs)
        # trio's threads are a process-wide cache; each is named for the call it runs.
        thread_name = f"anyrt-trio-blocking: {getattr(fn, '__qualname__', type(fn).__name__)}"
        with self._external:
            return await trio.to_thread.run_sync(call, thread_name=thread_name)

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> TrioCancelScope:
        """Return a new `anyrt.CancelScope` of this runtime: a `trio.CancelScope` underneath.

        Enter it in a task of this runtime; `cancel` works from any thread.

        Raises:
            ValueError: ``deadline`` is NaN.
        """
        if deadline != math.inf:
            deadline = check_deadline(deadline, "cancel_scope(deadline=...)")
        if shield is not False:
            _check_shield(shield)
        return TrioCancelScope(self, deadline, shield)

    # -- Timer ------------------------------------------------------------------------------

    @property
    def clock(self) -> trio.abc.Clock:
        """The trio clock of the run (a `trio.testing.MockClock` for virtual time)."""
        return self._clock

    def now(self) -> float:
        """Return the current time on the run's clock (`trio.current_time`); any thread."""
        return self._clock.current_time()

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds``; ``sleep(0)`` is a trio checkpoint.

        Raises:
            RuntimeError: awaited outside the tasks of this runtime.
        """
        if get_ident() != self._ident:
            raise foreign_error("a sleep", self)
        kind = type(seconds)
        if kind is float or kind is int:  # the common cases, checked cheaply (not bool)
            if seconds > 0:
                await trio.sleep_until(self._clock.current_time() + seconds)
                return
            if seconds == 0:
                await checkpoint()
                return
        seconds = check_seconds(seconds, "sleep()")  # negative, NaN or not a number: raises
        if seconds == 0:
            await checkpoint()
        else:
            await trio.sleep_until(self._clock.current_time() + seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline``.

        Raises:
            RuntimeError: awaited outside the tasks of this runtime.
        """
        deadline = check_deadline(deadline, "sleep_until()")
        if get_ident() != self._ident:
            raise foreign_error("a sleep_until", self)
        await trio.sleep_until(deadline)

    def interval(self, period: float) -> Interval:
        """Tick every ``period`` seconds; see `anyrt.Timer.interval`."""
        period = check_seconds(period, "interval()")
        if period == 0:
            raise ValueError("interval() takes a positive period, got 0")
        return Interval(self._clock, period)

    def timeout(self, seconds: float) -> TimeoutContext:
        """``async with rt.timeout(s):`` means exactly ``with rt.fail_after(s):``."""
        return TimeoutContext(self.fail_after(check_seconds(seconds, "timeout()")))

    def move_on_after(self, seconds: float, *, shield: bool = False) -> TrioCancelScope:
        """A cancel scope whose deadline is ``seconds`` from now; exits quietly on expiry."""
        kind = type(seconds)
        if not ((kind is float or kind is int) and seconds >= 0):  # the common cases, cheaply
            seconds = check_seconds(seconds, "move_on_after()")
        if shield is not False:
            _check_shield(shield)
        return TrioCancelScope(self, self._clock.current_time() + seconds, shield)

    def move_on_at(self, deadline: float, *, shield: bool = False) -> TrioCancelScope:
        """A cancel scope with this ``deadline``; exits quietly on expiry."""
        deadline = check_deadline(deadline, "move_on_at()")
        return TrioCancelScope(self, deadline, _check_shield(shield))

    def fail_after(self, seconds: float, *, shield: bool = False) -> TrioCancelScope:
        """As `move_on_after`, but its exit raises `TimeoutError` if the deadline passed.

        Only for its own deadline: an enclosing cancellation passes through unchanged.
        """
        kind = type(seconds)
        if not ((kind is float or kind is int) and seconds >= 0):  # the common cases, cheaply
            seconds = check_seconds(seconds, "fail_after()")
        if shield is not False:
            _check_shield(shield)
        return TrioCancelScope(self, self._clock.current_time() + seconds, shield, fail=True)

    def fail_at(self, deadline: float, *, shield: bool = False) -> TrioCancelScope:
        """As `move_on_at`, but its exit raises `TimeoutError` if the deadline passed."""
        deadline = check_deadline(deadline, "fail_at()")
        return TrioCancelScope(self, deadline, _check_shield(shield), fail=True)

    def current_deadline(self) -> float:
        """The nearest deadline of the calling task's scopes up to a shield.

        ``math.inf`` if none, ``-math.inf`` if one of them is cancelled already
        (`trio.current_effective_deadline`).

        Raises:
            RuntimeError: not called from a task of this runtime.
        """
        if get_ident() != self._ident:
            raise RuntimeError(
                f"current_deadline() must be called from a task of this {self.name!r} runtime"
            )
        return trio.current_effective_deadline()

    # -- Reactor ----------------------------------------------------------------------------

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable (`trio.lowlevel.wait_readable`)."""
        await trio.lowlevel.wait_readable(sock)

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable (`trio.lowlevel.wait_writable`)."""
        await trio.lowlevel.wait_writable(sock)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Open a TCP connection with `trio.open_tcp_stream` (a `TrioStream`).

        With ``ssl``, complete a TLS handshake over it and return an `anyrt.TLSStream`;
        ``server_hostname``, the name the certificate must match, defaults to ``host``.

        Raises:
            ConnectionRefusedError: nothing listens there.
            OSError: any other failure, as the OS reports it.
            ssl.SSLError: the TLS handshake failed.
        """
        self._check_open()
        with self._external:
            stream = await connect_tcp(self, host, port)
            return await secure_client(self, stream, ssl, server_hostname or host)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen for TCP connections on ``host:port`` (port 0 picks a free port).

        Returns a `TrioListener`; with ``ssl``, an `anyrt.TLSListener` over one, whose
        connections complete a TLS handshake first (in ``serve``, in each connection's
        own task: a client whose handshake fails is reported to the error handler and
        the others go on).
        """
        self._check_open()
        with self._external:
            listener = await listen_tcp(self, host, port, reuse_port=reuse_port)
        return secure_listener(self, listener, ssl)

    async def open_udp(self, local_host: str, local_port: int) -> TrioDatagramSocket:
        """Bind a UDP socket (an `anyrt.DatagramSocket`) to ``local_host:local_port``."""
        self._check_open()
        with self._external:
            return await open_udp(self, local_host, local_port)

    # -- signals and observability ----------------------------------------------------------

    def signals(self, *signums: int) -> TrioSignalReceiver:
        """Receive OS signals: ``async with rt.signals(SIGTERM) as received:``.

        Then ``async for signum in received`` yields each one (a `signal.Signals`).
        trio runs on the runtime's own thread, and only the main thread may install
        signal handlers: `block_on`'s thread, which must be the main thread, installs
        them when the ``async with`` is entered and restores the previous ones when
        it is left (or when that `block_on` returns). Signals that arrive while nobody
        iterates are queued. On the runtime of `current`, whose run is on the main
        thread, it is `trio.open_signal_receiver`.

        Raises:
            RuntimeError: `block_on` is not running on the main thread, or another
                ``signals()`` block of this runtime is active.
            ValueError: not a signal number that can be caught.
        """
        return TrioSignalReceiver(self, signums)

    def _call_soon(self, fn: Callable[[Any], object], arg: Any) -> None:
        """Run ``fn(arg)`` on the trio thread (now, if this is it); any thread."""
        if get_ident() == self._ident:
            fn(arg)
            return
        try:
            self._token.run_sync_soon(fn, arg)
        except trio.RunFinishedError:
            fn(arg)

    def tasks(self) -> list[TaskInfo]:
        """Return a snapshot of the live tasks, oldest first: name, state, where, age.

        ``state`` is ``"running"``, ``"scheduled"`` (not started yet) or ``"parked"``
        (suspended; ``where`` says at which line). Callable from any thread.
        """
        return _introspect.task_infos(self)

    def dump_tasks(self, file: TextIO | None = None) -> None:
        """Write `tasks` as a table to ``file`` (default: standard error)."""
        _introspect.dump_tasks(self, file)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once `close` has been called (or the borrowed run has ended)."""
        return self._closed

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

    def close(self) -> None:
        """Cancel every task, wait for their ``finally`` blocks, stop and join the trio thread.

        Idempotent. Then runs the close hooks.

        Raises:
            RuntimeError: called from inside a task of this runtime, or on the runtime of
                `current` (the run it borrows is not its to close).
        """
        if not self._owned:
            raise RuntimeError(
                "close() cannot be used on the runtime of anyrt_trio.current(): the trio.run "
                "it borrows ends when its main function returns (which cancels the tasks "
                "spawned here)"
            )
        if get_ident() == self._ident:
            raise RuntimeError("close() cannot be called from inside a task of this runtime")
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._closed = True
            # If the run is over already (the trio thread crashed), there is nothing to stop.
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._begin_shutdown)
        thread = self._thread
        assert thread is not None
        waited = _STUCK_REPORT_SECONDS
        thread.join(waited)
        while thread.is_alive():
            # A task shields itself from the cancellation: say which, and keep waiting.
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._report_stuck, waited)
            thread.join(_STUCK_REPORT_SECONDS)
            waited += _STUCK_REPORT_SECONDS
        unclaimed = self._fatal.take_unclaimed()
        if unclaimed is not None:
            self._report(TaskError(*unclaimed, "raised while no block_on ran"))
        self._run_close_hooks()

    def _begin_shutdown(self) -> None:
        assert self._stop is not None
        self._stop.set()

    def _report_stuck(self, waited: float) -> None:
        nursery = self._nursery
        stuck = sorted(nursery.child_tasks, key=lambda task: task.name) if nursery else []
        for task in stuck:
            logger.warning(
                "anyrt: close() has waited %.3g s for the cancelled trio task %r, still "
                "running at %s (a shielded cancel scope?)",
                waited,
                task.name,
                where(task.coro),
            )

    def _add_close_hook(self, hook: Callable[[], object]) -> None:
        """Have `close` call ``hook()`` once every task has ended.

        For compat shims that start a side thread on behalf of the runtime. On the
        runtime of `current`, the hooks run when the borrowed run ends, on its thread,
        once every task spawned here has finished.

        Raises:
            RuntimeError: the runtime is already closed.
        """
        on_trio_thread = get_ident() == self._ident
        with self._lock:
            if self._closed or (on_trio_thread and not trio.lowlevel.in_trio_run()):
                raise self._closed_error()
            self._close_hooks.append(hook)
            watch = not self._owned and not self._watching
            self._watching = self._watching or watch
        if watch:
            if on_trio_thread:
                trio.lowlevel.spawn_system_task(self._watch_run_end, name="anyrt-trio close hooks")
            else:
                try:
                    self._token.run_sync_soon(
                        functools.partial(
                            trio.lowlevel.spawn_system_task,
                            self._watch_run_end,
                            name="anyrt-trio close hooks",
                        )
                    )
                except trio.RunFinishedError:
                    raise self._closed_error() from None

    async def _watch_run_end(self) -> None:
        """For a borrowed run: when it ends, wait for our tasks, then run the hooks."""
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                while self._live:
                    self._idle = trio.Event()
                    await self._idle.wait()
            with self._lock:
                self._closed = True
            self._run_close_hooks()

    def _run_close_hooks(self) -> None:
        with self._lock:
            hooks, self._close_hooks = self._close_hooks, []
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:
                logger.exception("anyrt: the close hook %r raised", hook)


if TYPE_CHECKING:
    from anyrt import Runtime

    def _is_a_runtime(runtime: TrioRuntime) -> Runtime:
        """Never called: ``mypy --strict`` checks that TrioRuntime is an anyrt.Runtime."""
        return runtime


def _check_shield(shield: object) -> bool:
    if not isinstance(shield, bool):
        raise TypeError(f"shield must be a bool, not {type(shield).__name__}")
    return shield


def current() -> TrioRuntime:
    """Return an anyrt runtime bound to the running ``trio.run``, which it does not own.

    Call it from a trio task. Every call in the same run returns the same runtime (in a
    task of an owned `TrioRuntime`, that runtime). Everything but ``block_on`` and
    ``close`` works: spawned tasks are trio system tasks, which trio cancels when the
    run's main function returns, waiting for their ``finally`` blocks before
    ``trio.run`` returns. Their failures go to the ``anyrt`` logger.

    Raises:
        RuntimeError: not called inside ``trio.run``.
    """
    try:
        return CURRENT.get()
    except LookupError:
        pass
    except RuntimeError:
        raise RuntimeError(
            "anyrt_trio.current() must be called inside trio.run (from a trio task); "
            "outside one, create a runtime with anyrt.runtime('trio')"
        ) from None
    return TrioRuntime._borrow()
