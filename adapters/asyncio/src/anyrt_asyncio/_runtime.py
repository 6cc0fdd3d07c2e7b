"""The `asyncio` runtime: the whole `anyrt.Runtime` protocol on one asyncio event loop.

`LoopRuntime` implements everything that only needs a loop - spawning, oneshots,
timers, blocking calls, sockets - and is shared by `AsyncioRuntime`, which owns its loop
(creates it, runs it in `block_on` like `asyncio.Runner`, closes it), and by the runtime
`anyrt_asyncio.current()` borrows from a running application.

Threads: the loop runs on whichever thread calls `block_on`. Every method that other
threads may call - `spawn`, `Task.cancel`, `Task.detach`, `Sender.send` - checks whether
it runs on the loop's thread (``asyncio._get_running_loop() is loop``, a C call) and
otherwise posts its work with ``call_soon_threadsafe``, which also wakes the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from threading import get_ident
from types import CoroutineType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, ParamSpec, Self, TextIO, TypeVar

from anyrt import (
    ByteStream,
    FileDescriptorLike,
    Listener,
    Receiver,
    Sender,
    TaskError,
    TaskInfo,
    VirtualClock,
)
from anyrt._reactor import READ
from anyrt._tls import secure_client, secure_listener
from anyrt._udp import UDPSocket, open_udp

from . import _introspect
from ._oneshot import AsyncioOneshot, foreign_loop_error, remember_loop
from ._scope import (
    AsyncioCancelScope,
    Timeout,
    check_shield,
    current_deadline,
    on_loop_thread,
)
from ._signals import AsyncioSignalReceiver
from ._streams import (
    AsyncioListener,
    AsyncioStream,
    connect_tcp,
    connect_unix,
    listen_tcp,
    listen_unix,
)
from ._task import AsyncioTask, ErrorHandler, log_task_error, report
from ._time import YIELD, CallAt, Interval, checked_deadline, set_done, sleep_until
from ._validate import (
    check_coroutine,
    check_deadline,
    check_host,
    check_name,
    check_port,
    check_seconds,
    fileno,
)
from ._virtual import VirtualTimeLoop

if TYPE_CHECKING:
    from ssl import SSLContext

T = TypeVar("T")
P = ParamSpec("P")

logger = logging.getLogger("anyrt")

_get_running_loop = asyncio._get_running_loop
_monotonic = time.monotonic
_new_object = object.__new__

_SHUTDOWN_ROUNDS: Final = 3
_SHUTDOWN_ROUND_SECONDS: Final = 5.0

sniffio_state: Any
try:  # sniffio is optional; when present, it answers "asyncio" inside these runtimes.
    from sniffio import thread_local as sniffio_state
except ImportError:  # pragma: no cover - sniffio is a dev dependency
    sniffio_state = None


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """Return ``"uvloop"`` for a uvloop loop, ``"asyncio"`` for any other."""
    uvloop = any(cls.__module__.partition(".")[0] == "uvloop" for cls in type(loop).__mro__)
    return "uvloop" if uvloop else "asyncio"


def real_call_at(loop: asyncio.AbstractEventLoop) -> CallAt:
    """``call_at(deadline, fn, arg)`` for a deadline on `time.monotonic`."""
    if type(loop).time is asyncio.BaseEventLoop.time:
        return loop.call_at  # the selector loop's own clock is time.monotonic

    def call_at(deadline: float, fn: Callable[[Any], object], arg: Any) -> asyncio.TimerHandle:
        return loop.call_later(deadline - _monotonic(), fn, arg)

    return call_at


class LoopRuntime:
    """An `anyrt.Runtime` on one asyncio event loop, without `block_on` and `close`.

    The base of `AsyncioRuntime` and of the runtime `current()` returns; not created
    directly.
    """

    cancelled_exc: type[BaseException] = asyncio.CancelledError
    #: What the backend can do; an instance with a real clock lacks ``virtual-time``.
    capabilities: tuple[str, ...] = ("threads", "os-reactor", "blocking-pool", "unix-sockets")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        error_handler: ErrorHandler | None,
        virtual_clock: VirtualClock | None,
    ) -> None:
        _check_error_handler(error_handler)
        self._error_handler: ErrorHandler = error_handler or log_task_error
        self._loop = loop
        self.name: str = loop_name(loop)
        self._lock = threading.Lock()
        remember_loop(loop)
        self._closed = False
        self._virtual_clock = virtual_clock
        self._now: Callable[[], float]
        self._call_at: CallAt
        if virtual_clock is None:
            self._now = _monotonic
            self._call_at = real_call_at(loop)
        else:
            self._now = loop.time
            self._call_at = loop.call_at
        # Tasks waiting for a file descriptor, per (fd, readable): see _wait_io.
        self._io_waiters: dict[tuple[int, bool], list[asyncio.Future[None]]] = {}
        # The thread that holds the loop, 0 if none, None if unknown: see _oneshot.Home.
        self._thread: int | None = None
        self._signal_receiver: AsyncioSignalReceiver | None = None

    if TYPE_CHECKING:
        # Each subclass has one (`AsyncioRuntime` runs the loop; a borrowed runtime
        # refuses): declared so that a LoopRuntime is an `anyrt.Executor`.
        def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
            """Run ``coro`` to completion on the calling thread."""
            ...

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._loop.is_running() else "idle"
        return f"<anyrt {self.name} runtime, {state}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio event loop the runtime's tasks run on."""
        return self._loop

    @property
    def virtual_clock(self) -> VirtualClock | None:
        """The virtual clock, or None when the runtime runs on real time."""
        return self._virtual_clock

    # -- errors and state -------------------------------------------------------------

    def _report(self, error: TaskError) -> None:
        report(self._error_handler, error)

    def _report_later(self, error: TaskError) -> None:
        # For a finaliser, which the garbage collector may run inside any code at all:
        # the loop delivers the report (at once if the loop is closed).
        try:
            self._loop.call_soon_threadsafe(self._report, error)
        except RuntimeError:  # the loop is closed
            self._report(error)

    def _refuse(self, coro: Coroutine[Any, Any, Any] | None = None) -> RuntimeError:
        if coro is not None:
            coro.close()
        return RuntimeError(
            f"this {self.name!r} runtime is closed; create a new one with "
            f"anyrt.runtime({self.name!r})"
        )

    def _check_open(self) -> None:
        if self._closed or self._loop.is_closed():
            raise self._refuse()

    # -- Executor ---------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> AsyncioTask[T]:
        """Schedule ``coro`` as a new task; callable from any thread. See `anyrt.Executor`.

        Raises:
            TypeError: ``coro`` is not a coroutine object.
            RuntimeError: the runtime is closed.
        """
        if type(coro) is not CoroutineType:
            check_coroutine(coro, "spawn")
        if name is None:
            name = coro.__qualname__ if type(coro) is CoroutineType else check_name(None, coro, "")
        elif type(name) is not str:
            name = check_name(name, coro, "spawn")
        loop = self._loop
        if get_ident() != self._thread and _get_running_loop() is not loop:
            return self._spawn_from_outside(coro, name)
        if self._closed:
            raise self._refuse(coro)
        task = AsyncioTask._create(self, coro, name)
        task._anyrt_born = self._now()  # type: ignore[attr-defined]  # for tasks()
        return task

    def _spawn_from_outside(self, coro: Coroutine[Any, Any, T], name: str) -> AsyncioTask[T]:
        task = AsyncioTask._create_pending(self, coro, name)
        task._anyrt_born = self._now()  # type: ignore[attr-defined]
        with self._lock:  # close() sets _closed under this lock before it reaps the tasks
            if self._closed:
                task._anyrt_discard()
                raise self._refuse()
            try:
                self._loop.call_soon_threadsafe(task._anyrt_start)
            except RuntimeError:  # the (borrowed) loop is closed
                task._anyrt_discard()
                raise self._refuse() from None
        return task

    def spawn_local(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> AsyncioTask[T]:
        """Spawn ``coro`` on the loop's thread: the same as `spawn` called from a task.

        Raises:
            RuntimeError: the calling thread is not running this runtime's loop.
        """
        if _get_running_loop() is not self._loop:
            if isinstance(coro, Coroutine):
                coro.close()
            raise RuntimeError(
                f"spawn_local() must be called from a task running on this {self.name!r} "
                "runtime (its loop is one thread, and spawn_local pins the task to it); "
                "use spawn() from other threads or outside block_on()"
            )
        return self.spawn(coro, name=name)

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]:
        """Return a connected (sender, receiver) pair; see `anyrt.Sender`.

        Safe from any thread; the receiver is awaited by one task of this runtime.
        """
        # The hot path of every wake-up: one object, both halves, made without the frame
        # of its __init__ (which it mirrors).
        oneshot: AsyncioOneshot[T] = _new_object(AsyncioOneshot)
        oneshot._home = self
        oneshot._state = 0  # empty
        oneshot._fut = None
        oneshot._open = True
        return oneshot, oneshot

    def cancel_scope(
        self, *, deadline: float = math.inf, shield: bool = False
    ) -> AsyncioCancelScope:
        """Return a new `anyrt.CancelScope` of this runtime (enter it in one of its tasks).

        Raises:
            ValueError: ``deadline`` is NaN.
        """
        if deadline != math.inf:
            deadline = check_deadline(deadline, "cancel_scope(deadline=...)")
        return AsyncioCancelScope(self, deadline, check_shield(shield))

    async def spawn_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the loop's default executor, in a copy of the context.

        If the awaiting task is cancelled the call still runs to completion (a thread
        cannot be interrupted); its result is dropped.
        """
        if not callable(fn):
            raise TypeError(f"spawn_blocking() takes a callable, not {type(fn).__name__}")
        self._check_open()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        result: T = await self._loop.run_in_executor(None, call)
        return result

    # -- Timer ------------------------------------------------------------------------

    def now(self) -> float:
        """Return the runtime's clock: `time.monotonic`, or the virtual clock."""
        return self._now()

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds``; ``sleep(0)`` yields to the other ready tasks."""
        kind = type(seconds)
        if (kind is not float and kind is not int) or not seconds >= 0:
            seconds = check_seconds(seconds, "sleep()")  # raises: not a number, < 0, NaN
        if seconds == 0:
            await YIELD
            return
        loop = self._loop
        if get_ident() != self._thread and _get_running_loop() is not loop:
            raise foreign_loop_error("a sleep", self.name)
        # sleep_until(), inlined for the common case of a timer that fires on time.
        now = self._now
        deadline = now() + seconds
        waiter = loop.create_future()
        handle = self._call_at(deadline, set_done, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
        if now() < deadline:  # the timer fired early (see _time)
            await sleep_until(self._loop, now, self._call_at, deadline)

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now` reaches ``deadline`` (return soon if it is past)."""
        deadline = checked_deadline(deadline)
        if get_ident() != self._thread and _get_running_loop() is not self._loop:
            raise foreign_loop_error("a sleep", self.name)
        await sleep_until(self._loop, self._now, self._call_at, deadline)

    def interval(self, period: float) -> Interval:
        """Tick every ``period`` seconds; see `anyrt.Timer.interval`."""
        period = check_seconds(period, "interval()")
        if period == 0:
            raise ValueError("interval() takes a positive period, got 0")
        return Interval(self, period)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``async with rt.timeout(s):`` means exactly ``with rt.fail_after(s):``."""
        return Timeout(self.fail_after(check_seconds(seconds, "timeout()")))

    def move_on_after(self, seconds: float, *, shield: bool = False) -> AsyncioCancelScope:
        """A cancel scope whose deadline is ``seconds`` from now; exits quietly on expiry."""
        seconds = check_seconds(seconds, "move_on_after()")
        return AsyncioCancelScope(self, self._now() + seconds, check_shield(shield))

    def move_on_at(self, deadline: float, *, shield: bool = False) -> AsyncioCancelScope:
        """A cancel scope with this ``deadline``; exits quietly on expiry."""
        deadline = check_deadline(deadline, "move_on_at()")
        return AsyncioCancelScope(self, deadline, check_shield(shield))

    def fail_after(self, seconds: float, *, shield: bool = False) -> AsyncioCancelScope:
        """As `move_on_after`, but raise `TimeoutError` on leaving if the deadline passed."""
        if type(seconds) is not float or not seconds >= 0.0:  # the common case, cheaply
            seconds = check_seconds(seconds, "fail_after()")
        if shield is not False:
            check_shield(shield)
        return AsyncioCancelScope(self, self._now() + seconds, shield, fail=True)

    def fail_at(self, deadline: float, *, shield: bool = False) -> AsyncioCancelScope:
        """As `move_on_at`, but raise `TimeoutError` on leaving if the deadline passed."""
        deadline = check_deadline(deadline, "fail_at()")
        return AsyncioCancelScope(self, deadline, check_shield(shield), fail=True)

    def current_deadline(self) -> float:
        """The nearest deadline of the calling task's scopes up to a shield.

        ``math.inf`` if none, ``-math.inf`` if one of them is cancelled already.

        Raises:
            RuntimeError: not called from a task of this runtime.
        """
        task = asyncio.current_task(self._loop) if on_loop_thread(self) else None
        if task is None:
            raise RuntimeError(
                f"current_deadline() must be called from a task of this {self.name!r} runtime"
            )
        return current_deadline(task)

    # -- Reactor ----------------------------------------------------------------------

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable (the loop's ``add_reader``)."""
        await self._wait_io(fileno(sock), readable=True)

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable (the loop's ``add_writer``)."""
        await self._wait_io(fileno(sock), readable=False)

    async def _wait_io(self, fd: int, *, readable: bool) -> None:
        """Wait until ``fd`` is ready; any number of tasks may wait on the same fd.

        The loop holds one reader (or writer) per fd, so the first waiter registers it
        and the callback wakes every waiter at once and unregisters it.
        """
        loop = self._loop
        key = (fd, readable)
        waiter = loop.create_future()
        waiters = self._io_waiters.get(key)
        if waiters is None:
            waiters = self._io_waiters[key] = []
            if readable:
                loop.add_reader(fd, self._io_ready, key)
            else:
                loop.add_writer(fd, self._io_ready, key)
        waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._io_waiters.get(key) is waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._io_unregister(key)

    def _io_ready(self, key: tuple[int, bool]) -> None:
        waiters = self._io_unregister(key)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _io_unregister(self, key: tuple[int, bool]) -> list[asyncio.Future[None]]:
        waiters = self._io_waiters.pop(key, [])
        fd, readable = key
        if readable:
            self._loop.remove_reader(fd)
        else:
            self._loop.remove_writer(fd)
        return waiters

    def _forget_io(self, fd: int) -> None:
        """``fd`` is about to be closed: unregister it and wake its waiters."""
        for readable in (True, False):
            if (fd, readable) in self._io_waiters:
                self._io_ready((fd, readable))

    def _wait_socket(self, sock: socket.socket, events: int, owner: int) -> Awaitable[None]:
        """`_wait_io` for ``sock``, for the core's `anyrt.UDPSocket` and listener (no ``owner``)."""
        return self._wait_io(sock.fileno(), readable=events == READ)

    def _notify_closing(self, sock: socket.socket) -> None:
        """``sock`` is about to be closed: wake its waiters (see `_forget_io`)."""
        fd = sock.fileno()
        if fd >= 0:
            self._forget_io(fd)

    async def _stream_from_socket(self, sock: socket.socket, *, accepted: bool) -> AsyncioStream:
        """Hand a connected socket to the loop as a transport, with a stream on top."""
        loop = self._loop
        try:
            if accepted:
                _, stream = await loop.connect_accepted_socket(
                    functools.partial(AsyncioStream, loop, self.name), sock
                )
            else:
                _, stream = await loop.create_connection(
                    functools.partial(AsyncioStream, loop, self.name), sock=sock
                )
        except BaseException:
            sock.close()
            raise
        return stream

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Open a TCP connection, trying every address ``host`` resolves to.

        With ``ssl``, complete a TLS handshake over it and return an `anyrt.TLSStream`
        (``server_hostname``, the name the certificate must match, defaults to
        ``host``); otherwise return an `AsyncioStream`.

        Raises:
            ConnectionRefusedError: nothing listens there.
            OSError: any other failure, as the OS reports it.
            ssl.SSLError: the TLS handshake failed.
        """
        self._check_open()
        host = check_host(host)
        stream = await connect_tcp(self, host, check_port(port))
        return await secure_client(self, stream, ssl, server_hostname or host)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen for TCP connections on ``host:port``; port 0 picks a free port.

        Returns an `AsyncioListener`; with ``ssl``, an `anyrt.TLSListener` over one,
        whose connections complete a TLS handshake first (in ``serve``, in each
        connection's own task: a client whose handshake fails is reported to the
        error handler and the others go on).
        """
        self._check_open()
        listener = await listen_tcp(self, check_host(host), check_port(port), reuse_port=reuse_port)
        return secure_listener(self, listener, ssl)

    async def open_udp(self, local_host: str, local_port: int) -> UDPSocket:
        """Bind a UDP socket (an `anyrt.DatagramSocket`) to ``local_host:local_port``."""
        self._check_open()
        return await open_udp(self, local_host, local_port)

    async def connect_unix(self, path: str | os.PathLike[str]) -> AsyncioStream:
        """Connect to a Unix-domain socket."""
        self._check_open()
        return await connect_unix(self, path)

    async def listen_unix(self, path: str | os.PathLike[str]) -> AsyncioListener:
        """Listen on a Unix-domain socket at ``path`` (which must not exist)."""
        self._check_open()
        return listen_unix(self, path)

    # -- signals and observability ------------------------------------------------------

    def signals(self, *signums: int) -> AsyncioSignalReceiver:
        """Receive OS signals: ``async with rt.signals(SIGTERM) as received:``.

        Then ``async for signum in received`` yields each one (a `signal.Signals`).
        The handlers are installed with the loop's ``add_signal_handler`` when the
        ``async with`` is entered, and the previous ones restored when it is left (or
        when `block_on` returns). Signals that arrive while nobody iterates are queued.

        Raises:
            RuntimeError: the loop does not run on the main thread, or another
                ``signals()`` block of this runtime is active.
            ValueError: not a signal number that can be caught.
        """
        return AsyncioSignalReceiver(self, signums)

    def tasks(self) -> list[TaskInfo]:
        """Return a snapshot of the runtime's live tasks, oldest first: name, state, where, age.

        ``state`` is ``"running"`` (the task the loop runs now), ``"parked"`` (waiting
        on a future; ``where`` says at which line) or ``"scheduled"``. Callable from
        any thread; tasks spawned from another thread appear once the loop has
        started them.
        """
        return _introspect.task_infos(self)

    def dump_tasks(self, file: TextIO | None = None) -> None:
        """Write `tasks` as a table to ``file`` (default: standard error)."""
        _introspect.dump_tasks(self, file)


class AsyncioRuntime(LoopRuntime):
    """The `asyncio` (and `uvloop`) backend: anyrt on an event loop it owns.

    `block_on` runs the loop on the calling thread, like `asyncio.Runner.run`: tasks
    spawned before it, or left running after it, stay on the loop until the next
    `block_on` or `close`. `close` cancels every task and waits for it, shuts down
    asynchronous generators and the default executor, and closes the loop.

    Args:
        loop_factory: makes the event loop (default `asyncio.new_event_loop`); a uvloop
            loop makes this runtime's `name` ``"uvloop"``.
        debug: run the loop in asyncio's debug mode.
        clock: ``"real"`` (default), ``"virtual"`` or a `anyrt.VirtualClock`: with
            virtual time, idle time jumps to the next deadline (see
            ``anyrt_asyncio._virtual``); needs the runtime's own loop, so it cannot be
            combined with ``loop_factory``.
        error_handler: receives failures nobody will observe (default: log them).
    """

    capabilities: tuple[str, ...] = (*LoopRuntime.capabilities, "virtual-time")
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"clock": "virtual"})

    def __init__(
        self,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        debug: bool = False,
        clock: VirtualClock | str = "real",
        error_handler: ErrorHandler | None = None,
    ) -> None:
        if not isinstance(debug, bool):
            raise TypeError(f"debug must be a bool, not {type(debug).__name__}")
        _check_error_handler(error_handler)
        virtual_clock = _virtual_clock(clock)
        if virtual_clock is not None:
            if loop_factory is not None:
                raise ValueError(
                    "clock='virtual' runs the runtime on its own virtual-time selector "
                    "loop, so it cannot be combined with loop_factory; drop one of them"
                )
            loop: asyncio.AbstractEventLoop = self._virtual_loop(virtual_clock)
        else:
            loop = _new_loop(loop_factory)
        loop.set_debug(debug)
        super().__init__(loop, error_handler=error_handler, virtual_clock=virtual_clock)
        # spawn_blocking's threads, named like the native runtimes' (made on demand).
        loop.set_default_executor(
            ThreadPoolExecutor(thread_name_prefix=f"anyrt-{self.name}-blocking")
        )
        if virtual_clock is None:
            self.capabilities = tuple(c for c in self.capabilities if c != "virtual-time")
        self._running = False  # block_on or close is running the loop
        self._thread = 0  # and its thread, while it does
        self._idle = threading.Event()  # set while nobody runs the loop
        self._idle.set()
        self._close_hooks: list[Callable[[], object]] = []

    def _virtual_loop(self, clock: VirtualClock) -> asyncio.AbstractEventLoop:
        """Make the loop for a virtual ``clock``: the selector loop of `_virtual`."""
        return VirtualTimeLoop(clock)

    # -- running the loop -------------------------------------------------------------

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the calling thread, running every other task.

        Ctrl-C cancels ``coro`` and raises `KeyboardInterrupt`, as `asyncio.run` does.

        Raises:
            RuntimeError: called from inside a running event loop (a task of this or
                any runtime), while another thread runs `block_on`, or after `close`.
        """
        if type(coro) is not CoroutineType:
            check_coroutine(coro, "block_on")
        if self._closed:
            raise self._refuse(coro)
        self._check_plain_thread(coro, "block_on")
        with self._claim_loop(coro):
            main = AsyncioTask._create(self, coro, check_name(None, coro, "block_on"))
            main._anyrt_born = self._now()  # type: ignore[attr-defined]  # for tasks()
            with _SigintCancels(main) as sigint:
                try:
                    self._loop.run_until_complete(main)
                except asyncio.CancelledError:
                    if sigint.interrupted:
                        raise KeyboardInterrupt from None
                except BaseException:
                    # KeyboardInterrupt or SystemExit from another task or a callback
                    # stopped the loop: the main task cleans up before block_on raises it.
                    self._finish_cancelled(main)
                    raise
                finally:
                    receiver = self._signal_receiver
                    if receiver is not None:  # a task left running inside signals()
                        receiver._restore()
            return main._anyrt_outcome()

    def _finish_cancelled(self, main: AsyncioTask[Any]) -> None:
        """Cancel ``main`` and run the loop until it has finished (its outcome is dropped)."""
        if main.done():
            return
        main.cancel()
        with contextlib.suppress(BaseException):  # the exception that stopped the loop wins
            self._loop.run_until_complete(main)

    def _check_plain_thread(self, coro: Coroutine[Any, Any, Any], method: str) -> None:
        running = _get_running_loop()
        if running is not None:
            coro.close()
            where = "a task of this runtime" if running is self._loop else "a running event loop"
            raise RuntimeError(
                f"{method}() was called from inside {where}, which it would block; "
                "await the coroutine or spawn() it instead"
            )
        if sniffio_state is not None and sniffio_state.name == "anyrt":
            coro.close()
            raise RuntimeError(
                f"{method}() was called from a thread that runs a native anyrt runtime, "
                "which it would block; await the coroutine or spawn() it instead"
            )

    @contextlib.contextmanager
    def _claim_loop(self, coro: Coroutine[Any, Any, Any] | None) -> Iterator[None]:
        """Run the loop on this thread (one thread at a time), as the "asyncio" library."""
        with self._lock:
            if self._running:
                if coro is not None:
                    coro.close()
                raise RuntimeError(
                    f"this {self.name!r} runtime's loop is already running block_on() on "
                    "another thread; spawn() the coroutine onto it instead"
                )
            self._running = True
            self._thread = get_ident()
            self._idle.clear()
        saved = None
        if sniffio_state is not None:
            saved, sniffio_state.name = sniffio_state.name, "asyncio"
        try:
            yield
        finally:
            if sniffio_state is not None:
                sniffio_state.name = saved
            with self._lock:
                self._running = False
                self._thread = 0
                self._idle.set()

    # -- lifecycle --------------------------------------------------------------------

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

    def close(self) -> None:
        """Cancel every task and wait for it, then release the loop and its executor.

        Called while another thread runs `block_on`, it cancels that thread's tasks
        too and waits for `block_on` to return first. Idempotent.

        Raises:
            RuntimeError: called from inside a running event loop.
        """
        if self._closed:
            return
        running = _get_running_loop()
        if running is not None:
            where = "a task of this runtime" if running is self._loop else "a running event loop"
            raise RuntimeError(f"close() cannot be called from inside {where}")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = self._running
        if busy:  # block_on runs on another thread: cancel its tasks, let it return
            self._loop.call_soon_threadsafe(_cancel_all, self._loop)
            self._idle.wait()
        loop = self._loop
        try:
            with self._claim_loop(None):
                self._reap_tasks()
                self._run_close_hooks()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def _reap_tasks(self) -> None:
        loop = self._loop
        for _ in range(_SHUTDOWN_ROUNDS):
            if loop.run_until_complete(_cancel_and_wait(_SHUTDOWN_ROUND_SECONDS)):
                return
        for task in asyncio.all_tasks(loop):
            logger.warning(
                "anyrt: task %r ignored cancellation %d times during close(); the loop is "
                "closed with it still pending",
                task.get_name(),
                _SHUTDOWN_ROUNDS,
            )

    def _add_close_hook(self, hook: Callable[[], object]) -> None:
        """Have `close` call ``hook()`` once every task has ended.

        For compat shims that start a side thread on behalf of the runtime (the trio
        thread of ``anyrt_trio.compat``): the runtime's ``close()`` stops it.

        Raises:
            RuntimeError: the runtime is already closed.
        """
        with self._lock:
            if not self._closed:
                self._close_hooks.append(hook)
                return
        raise self._refuse()

    def _run_close_hooks(self) -> None:
        with self._lock:
            hooks, self._close_hooks = self._close_hooks, []
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:
                logger.exception("anyrt: the close hook %r raised", hook)


class _SigintCancels:
    """While the main task runs: the first Ctrl-C cancels it, the second interrupts.

    As `asyncio.Runner` does, and only on the main thread with Python's default handler.
    """

    def __init__(self, main: asyncio.Task[Any]) -> None:
        self._main = main
        self._installed: Any = None
        self.interrupted = False

    def __enter__(self) -> Self:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            try:
                signal.signal(signal.SIGINT, self._on_sigint)
            except ValueError:  # an embedded interpreter without signal support
                return self
            self._installed = self._on_sigint
        return self

    def _on_sigint(self, signum: int, frame: object) -> None:
        if not self.interrupted and not self._main.done():
            self.interrupted = True
            # The handler may run between any two bytecodes of the loop's thread: the
            # cancellation is posted, which also wakes a blocked select.
            self._main.get_loop().call_soon_threadsafe(self._main.cancel)
            return
        raise KeyboardInterrupt

    def __exit__(self, *exc_info: object) -> None:
        if self._installed is not None and signal.getsignal(signal.SIGINT) == self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


async def _cancel_and_wait(seconds: float) -> bool:
    """Cancel every other task of the loop; True once all have ended."""
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    if not tasks:
        return True
    for task in tasks:
        task.cancel()
    # asyncio.wait, not gather: it does not retrieve the exceptions, so a task that
    # fails while it cleans up still reaches the error handler.
    _, pending = await asyncio.wait(tasks, timeout=seconds)
    return not pending and not (set(asyncio.all_tasks()) - {me})


def _check_error_handler(error_handler: object) -> None:
    if error_handler is not None and not callable(error_handler):
        raise TypeError(f"error_handler must be callable, not {type(error_handler).__name__}")


def _virtual_clock(clock: object) -> VirtualClock | None:
    if isinstance(clock, VirtualClock):
        return clock
    if clock in ("real", "monotonic", None):
        return None
    if clock == "virtual":
        return VirtualClock()
    raise ValueError(f"clock must be 'real', 'virtual' or an anyrt.VirtualClock, not {clock!r}")


def _new_loop(
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> asyncio.AbstractEventLoop:
    if loop_factory is None:
        return asyncio.new_event_loop()
    if not callable(loop_factory):
        raise TypeError(f"loop_factory must be callable, not {type(loop_factory).__name__}")
    loop = loop_factory()
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(
            f"loop_factory must return an asyncio event loop, not {type(loop).__name__}"
        )
    if loop.is_running() or loop.is_closed():
        raise ValueError("loop_factory must return a new event loop, not a running or closed one")
    return loop


if TYPE_CHECKING:
    from anyrt import Runtime

    def _is_a_runtime(runtime: AsyncioRuntime) -> Runtime:
        """Never called: ``mypy --strict`` checks that AsyncioRuntime is an anyrt.Runtime."""
        return runtime
