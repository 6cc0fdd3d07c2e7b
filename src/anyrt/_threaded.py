"""What the two threaded native runtimes share: registration, blocking, sockets, shutdown.

`WorkStealing` and `ThreadPerCore` differ in where a task runs and how their threads
find work; everything around that - the task registry that `close()` drains, the
blocking pool, `block_on` from a plain thread, the socket layer, and the order of
shutdown - is written once here.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import socket
import threading
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from ._blocking import BlockingPool
from ._exceptions import Cancelled
from ._native import ErrorHandler, NativeRuntime, thread_state
from ._protocols import ByteStream, FileDescriptorLike, Listener, Receiver, Sender
from ._signals import MainWaiter, SignalInstaller, SignalReceiver, close_signal_sockets
from ._sockets import (
    SocketListener,
    SocketStream,
    connect_tcp,
    connect_unix,
    listen_tcp,
    listen_unix,
)
from ._task import NativeTask
from ._tls import secure_client, secure_listener
from ._udp import UDPSocket, open_udp
from ._validate import check_positive_int

if TYPE_CHECKING:
    from ssl import SSLContext

T = TypeVar("T")
P = ParamSpec("P")

logger = logging.getLogger("anyrt")

_SHUTDOWN_ROUNDS: Final = 3
_SHUTDOWN_ROUND_SECONDS: Final = 5.0


class Inbox:
    """What other threads post to a worker or core thread: callables, run there."""

    __slots__ = ("inbox", "inbox_lock")

    def __init__(self) -> None:
        self.inbox: list[Callable[[], object]] = []
        self.inbox_lock = threading.Lock()

    def _drain_inbox(self) -> None:
        with self.inbox_lock:
            inbox = self.inbox
            self.inbox = []
        for fn in inbox:
            fn()


class ThreadedRuntime(NativeRuntime):
    """Base of the runtimes whose tasks run on threads of their own, on the OS reactor.

    Args:
        max_blocking_threads: the most threads `spawn_blocking` runs at once.
        error_handler: receives failures nobody will observe (default: log them).
    """

    def __init__(self, *, max_blocking_threads: int, error_handler: ErrorHandler | None) -> None:
        super().__init__(error_handler=error_handler)
        check_positive_int(max_blocking_threads, "max_blocking_threads")
        self._stopping = False
        self._tasks_done = threading.Condition(self._tasks_lock)
        self._now_fn = time.monotonic
        self._blocking = BlockingPool(f"anyrt-{self.name}", max_threads=max_blocking_threads)
        self._main_waiter: MainWaiter | None = None
        # Every block_on waiting now, to stop when a task raises KeyboardInterrupt.
        self._block_waiters: set[MainWaiter] = set()
        self._signals = SignalInstaller(partial(close_signal_sockets, self))

    # -- what a backend provides ------------------------------------------------------

    @abstractmethod
    def _place(self, coro: Coroutine[Any, Any, T], name: str | None, method: str) -> NativeTask[T]:
        """Create the task for ``coro`` where it will run (not yet registered or queued)."""

    @abstractmethod
    def _launch(self, task: NativeTask[Any]) -> None:
        """Queue a newly registered task to run; callable from any thread."""

    @abstractmethod
    def _stop_threads(self) -> None:
        """Stop every thread that runs tasks and join it (every task has ended)."""

    @abstractmethod
    def _release(self) -> None:
        """Close the reactors and drop what is left in the queues."""

    @abstractmethod
    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable."""

    @abstractmethod
    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable."""

    @abstractmethod
    def _wait_socket(self, sock: socket.socket, events: int, owner: int) -> Awaitable[None]:
        """Wait like `wait_readable`/`wait_writable`, keeping the kernel's interest."""

    @abstractmethod
    def _notify_closing(self, sock: FileDescriptorLike) -> None:
        """Wake every task waiting on ``sock`` with `ClosedResourceError`."""

    # -- NativeRuntime hooks -------------------------------------------------------------

    def now(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    def _forget(self, task: NativeTask[Any]) -> None:
        with self._tasks_lock:
            self._tasks.pop(task, None)
            if not self._tasks and self._closed:
                self._tasks_done.notify_all()

    def _register(self, task: NativeTask[Any], coro: Coroutine[Any, Any, Any]) -> None:
        # `close()` sets `_closed` under this same lock before it collects the tasks to
        # cancel: a task is either registered before that (and cancelled by close) or
        # refused here. Checking only before taking the lock would let a spawn from
        # another thread slip in after close() reaped everything.
        with self._tasks_lock:
            if self._admits():
                self._tasks[task] = None
                return
        self._check_open(coro)

    def _fatal_stop(self) -> None:
        with self._tasks_lock:
            waiters = list(self._block_waiters)
        for waiter in waiters:
            waiter.interrupt()

    # -- Executor -------------------------------------------------------------------------

    async def spawn_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the blocking pool, in a copy of the context.

        If the awaiting task is cancelled the call still runs to completion (a thread
        cannot be interrupted); its result is dropped.
        """
        if not callable(fn):
            raise TypeError(f"spawn_blocking() takes a callable, not {type(fn).__name__}")
        self._check_open()
        sender: Sender[T]
        receiver: Receiver[T]
        sender, receiver = self.oneshot()
        context = contextvars.copy_context()
        self._blocking.submit(partial(context.run, fn, *args, **kwargs), sender)
        result: T = await receiver
        return result

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runtime's threads and block the calling (plain) thread.

        A `KeyboardInterrupt` (Ctrl-C) while it waits cancels ``coro``, waits for its
        cleanup, and is then raised.

        Raises:
            RuntimeError: called from inside a task, or after `close`.
        """
        self._check_block_on(coro)
        fatal = self._take_fatal()
        if fatal is not None:  # a task raised it while no block_on was running
            coro.close()
            raise fatal
        main = self._place(coro, None, "block_on")
        self._register(main, coro)
        waiter = MainWaiter()
        main._join(waiter)  # type: ignore[arg-type]
        with self._tasks_lock:
            self._block_waiters.add(waiter)
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:
            self._main_waiter = waiter
        # Ctrl-C on the main thread: the handler only tells the waiter, so that the
        # interrupt cannot land in the middle of the runtime's own code (a lock held,
        # a queue half-updated) as a KeyboardInterrupt raised anywhere would.
        previous = _defer_sigint(waiter) if on_main_thread else None
        try:
            self._launch(main)
            interrupted = waiter.wait()
            if interrupted:
                # Ctrl-C, or a task raised KeyboardInterrupt/SystemExit: cancel the main
                # task, let its `finally` blocks run, then raise; a second Ctrl-C stops
                # waiting for them.
                fatal = self._take_fatal()
                _restore_sigint(previous)
                previous = None
                main.cancel()
                waiter.wait()
        except BaseException:
            main.cancel()
            raise
        finally:
            with self._tasks_lock:
                self._block_waiters.discard(waiter)
            _restore_sigint(previous)
            if on_main_thread:
                self._main_waiter = None
                self._signals.restore()
        if fatal is not None:
            raise fatal
        if interrupted:
            raise KeyboardInterrupt
        return main.result()

    def signals(self, *signums: int) -> SignalReceiver:
        """Receive OS signals: ``async with rt.signals(SIGTERM) as received:``.

        Then ``async for signum in received`` yields each one. The handlers are
        installed by `block_on`'s thread, which must be the main thread, when the
        ``async with`` is entered, and the previous ones restored when it is left (or
        when that `block_on` returns). Signals that arrive while nobody iterates are
        queued; the OS may merge repeats of one signal that arrive close together.

        Raises:
            RuntimeError: `block_on` is not running on the main thread, or another
                ``signals()`` block of this runtime is active.
            ValueError: not a signal number that can be caught.
        """
        return SignalReceiver(self, signums)

    # -- Reactor: the sockets ---------------------------------------------------------------

    def _spawn_connection(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Start the handler of an accepted connection (`Listener.serve`)."""
        return self.spawn(coro, name=name)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Open a TCP connection, trying every address ``host`` resolves to.

        With ``ssl``, complete a TLS handshake over it (see `anyrt.TLSStream`);
        ``server_hostname`` defaults to ``host``.
        """
        self._check_open()
        stream = await connect_tcp(self, host, port)
        return await secure_client(self, stream, ssl, server_hostname or host)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen for TCP connections on ``host:port`` (with ``ssl``: TLS connections)."""
        self._check_open()
        listener = await listen_tcp(
            self, host, port, reuse_port=reuse_port, spawn=self._spawn_connection
        )
        return secure_listener(self, listener, ssl)

    async def open_udp(self, local_host: str, local_port: int) -> UDPSocket:
        """Bind a UDP socket (`anyrt.DatagramSocket`) to ``local_host:local_port``."""
        self._check_open()
        return await open_udp(self, local_host, local_port)

    async def connect_unix(self, path: str | os.PathLike[str]) -> SocketStream:
        """Connect to a Unix-domain socket."""
        self._check_open()
        return await connect_unix(self, path)

    async def listen_unix(self, path: str | os.PathLike[str]) -> SocketListener:
        """Listen on a Unix-domain socket at ``path``."""
        self._check_open()
        return await listen_unix(self, path, spawn=self._spawn_connection)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel every task and wait for it, stop and join every thread, close every fd.

        Raises:
            RuntimeError: called from one of this runtime's tasks.
        """
        if self._closed:
            return
        if thread_state.runtime is self:
            raise RuntimeError("close() cannot be called from inside a task of this runtime")
        with self._tasks_lock:
            self._closed = True
        try:
            self._cancel_all()
            if self._finalize_asyncgens():
                # Their aclose() tasks run the generators' cleanup, uncancelled at first.
                with self._tasks_lock:
                    self._tasks_done.wait_for(lambda: not self._tasks, _SHUTDOWN_ROUND_SECONDS)
                self._cancel_all()
            self._run_close_hooks()
        finally:
            self._stop_threads()
            self._reap_leftovers()
            self._release()
            self._blocking.shutdown()
            self._run_deferred()
            self._report_unclaimed_fatal()

    def _cancel_all(self) -> None:
        for _ in range(_SHUTDOWN_ROUNDS):
            with self._tasks_lock:
                tasks = list(self._tasks)
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            with self._tasks_lock:
                self._tasks_done.wait_for(lambda: not self._tasks, _SHUTDOWN_ROUND_SECONDS)
                if not self._tasks:
                    return

    def _reap_leftovers(self) -> None:
        with self._tasks_lock:
            stuck = list(self._tasks)
        for task in stuck:
            logger.warning(
                "anyrt: task %r did not finish after %d cancellations during close(); "
                "closing its coroutine at %s",
                task.name,
                _SHUTDOWN_ROUNDS,
                task.where(),
            )
            coro = task._coro
            if coro is not None:
                try:
                    coro.close()
                except BaseException:
                    logger.exception("anyrt: closing task %r raised", task.name)
                task._finish(None, Cancelled("the runtime was closed"))


def _defer_sigint(waiter: MainWaiter) -> Any:
    """Route SIGINT to ``waiter.interrupt`` if Python's default handler has it."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None  # the application handles SIGINT its own way: leave it alone
    return signal.signal(signal.SIGINT, lambda signum, frame: waiter.interrupt())


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
