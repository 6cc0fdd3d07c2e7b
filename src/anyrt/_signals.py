"""``runtime.signals(...)``: OS signals as an async iterator, on the threaded runtimes.

Python runs signal handlers, and lets them be installed, only on the main thread,
while tasks run on the runtime's threads. So `block_on`'s (main) thread installs the
handlers on a task's request, and the signals travel through `signal.set_wakeup_fd`:
the C-level handler writes each signal's number to a socket, with no Python code and
no lock involved, and the receiving task waits for that socket to become readable.

The trio adapter, whose tasks also run on a thread of their own, uses the same
`MainWaiter`, `SignalInstaller` and `SignalReceiver`; every backend's receiver shares
the argument checks and the async iteration (`SignalQueue`).
"""

from __future__ import annotations

import collections
import contextlib
import signal
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from ._exceptions import ClosedResourceError

if TYPE_CHECKING:
    from ._protocols import FileDescriptorLike, Receiver, Sender
    from ._sockets import SocketWaits

T = TypeVar("T")

_UNCATCHABLE = {getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)}


def check_signums(signums: tuple[int, ...]) -> frozenset[int]:
    """Return ``signums`` as a set, or raise naming what is wrong with them."""
    if not signums:
        raise ValueError("signals() needs at least one signal number, e.g. signal.SIGTERM")
    valid = signal.valid_signals()
    for signum in signums:
        if isinstance(signum, bool) or not isinstance(signum, int):
            raise TypeError(f"signals() takes signal numbers, not {type(signum).__name__}")
        if signum not in valid or signum in _UNCATCHABLE:
            raise ValueError(f"signal {signum} cannot be caught")
    return frozenset(int(signum) for signum in signums)


class MainWaiter:
    """What `block_on`'s thread waits on: the main task's end, and calls to run meanwhile.

    It stands in for a task in the main task's waiter list. Tasks hand it what only
    the main thread may do (installing signal handlers) with `call`. `interrupt` (from
    `block_on`'s SIGINT handler) makes `wait` return early: the handler may run at any
    point of the main thread, even while this thread holds the condition's lock, so
    that lock is reentrant and the handler does nothing else.
    """

    __slots__ = ("_calls", "_cond", "_done", "_finished", "_interrupted")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._calls: list[Callable[[], object]] = []
        self._done = False
        self._finished = False  # wait() has returned: no call will run any more
        self._interrupted = False

    def wake(self) -> None:
        """The main task has ended: `wait` returns (once the handed calls have run)."""
        with self._cond:
            self._done = True
            self._cond.notify()

    def interrupt(self) -> None:
        """Ctrl-C: make `wait` return before the main task has ended."""
        with self._cond:
            self._interrupted = True
            self._cond.notify()

    def call(self, fn: Callable[[], object]) -> bool:
        """Have the waiting thread run ``fn`` soon; False if it no longer waits."""
        with self._cond:
            if self._finished:
                return False
            self._calls.append(fn)
            self._cond.notify()
            return True

    def wait(self) -> bool:
        """Run the handed calls until the main task has ended; True if interrupted first.

        After an interrupt, a second `wait` waits for the end alone.
        """
        while True:
            with self._cond:
                while not self._done and not self._calls and not self._interrupted:
                    self._cond.wait()
                calls, self._calls = self._calls, []
                if not calls:
                    if self._interrupted and not self._done:
                        self._interrupted = False
                        return True
                    self._finished = True
                    return False
            for fn in calls:
                fn()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up fd already carries the signal."""


class SignalInstaller:
    """The runtime's one set of installed handlers; `install` and `restore` on the main thread.

    Args:
        close: called by `restore` with the ``(receive, send)`` sockets; it closes them,
            first waking a task that waits on ``receive`` (see `close_signal_sockets`).
    """

    def __init__(self, close: Callable[[tuple[socket.socket, socket.socket]], object]) -> None:
        self._close = close
        self._lock = threading.Lock()
        self._active: tuple[socket.socket, socket.socket] | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def install(self, signums: frozenset[int]) -> socket.socket:
        """Install handlers for ``signums``; return the socket their numbers arrive on."""
        with self._lock:
            if self._active is not None:
                raise RuntimeError(
                    "another signals() block of this runtime is active; receive every "
                    "signal you need in one: runtime.signals(SIGTERM, SIGHUP, ...)"
                )
            receive, send = socket.socketpair()
            receive.setblocking(False)
            send.setblocking(False)
            try:
                for signum in signums:
                    self._previous[signum] = signal.signal(signum, _ignore)
                self._previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
            except BaseException:
                self._restore_handlers()
                receive.close()
                send.close()
                raise
            self._active = (receive, send)
            return receive

    def restore(self) -> None:
        """Put the previous handlers and wake-up fd back (idempotent)."""
        with self._lock:
            if self._active is None:
                return
            sockets = self._active
            self._active = None
            signal.set_wakeup_fd(self._previous_fd)
            self._restore_handlers()
        self._close(sockets)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def close_signal_sockets(
    runtime: SocketWaits, sockets: tuple[socket.socket, socket.socket]
) -> None:
    """Close a `SignalInstaller`'s sockets, waking a task that waits on them first."""
    receive, send = sockets
    runtime._notify_closing(receive)
    receive.close()
    send.close()


class SignalQueue(ABC):
    """Base of the ``signals()`` receivers: the argument checks and the async iteration.

    A subclass queues the signals that arrive in ``_pending`` and implements `_wait`.
    """

    def __init__(self, signums: tuple[int, ...]) -> None:
        self._signums = check_signums(signums)
        self._pending: collections.deque[signal.Signals] = collections.deque()

    @abstractmethod
    async def _wait(self) -> None:
        """Wait until more signals may have been queued; raise if none can come."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> signal.Signals:
        """Wait for the next of the requested signals."""
        while not self._pending:
            await self._wait()
        return self._pending.popleft()


class MainThreadRuntime(Protocol):
    """What `SignalReceiver` needs from its runtime."""

    _main_waiter: MainWaiter | None
    _signals: SignalInstaller

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]: ...

    async def wait_readable(self, sock: FileDescriptorLike) -> None: ...


class SignalReceiver(SignalQueue):
    """The async iterator of ``runtime.signals(...)``; see `ThreadedRuntime.signals`.

    The handlers are installed on `block_on`'s (main) thread, through the runtime's
    `MainWaiter`; the signals arrive on the `SignalInstaller`'s socket.
    """

    def __init__(self, runtime: MainThreadRuntime, signums: tuple[int, ...]) -> None:
        super().__init__(signums)
        self._runtime = runtime
        self._socket: socket.socket | None = None

    async def __aenter__(self) -> Self:
        self._socket = await self._on_main_thread(
            lambda: self._runtime._signals.install(self._signums)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._socket is None:
            return
        self._socket = None
        # If block_on has returned, it restored them on its way out.
        with contextlib.suppress(RuntimeError):
            await self._on_main_thread(self._runtime._signals.restore)

    async def _on_main_thread(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on `block_on`'s (main) thread and return what it returns."""
        waiter = self._runtime._main_waiter
        sender: Sender[Any]
        receiver: Receiver[Any]
        sender, receiver = self._runtime.oneshot()

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:
                sender.fail(exc)
            else:
                sender.send(result)

        if waiter is None or not waiter.call(run):
            raise RuntimeError(
                "signals() needs the runtime's block_on() running on the main thread: "
                "only the main thread may install signal handlers"
            )
        return await receiver

    async def _wait(self) -> None:
        sock = self._socket
        if sock is None:
            raise RuntimeError("iterate over signals() inside its `async with` block")
        try:
            data = sock.recv(512)
        except BlockingIOError:
            await self._wait_readable(sock)
            return
        except OSError as exc:  # closed under us by block_on's return
            raise ClosedResourceError(
                "the signals() block has ended: its block_on() returned"
            ) from exc
        self._pending.extend(signal.Signals(byte) for byte in data if byte in self._signums)

    async def _wait_readable(self, sock: socket.socket) -> None:
        """Wait for the signal socket (`ClosedResourceError` once `restore` closes it)."""
        await self._runtime.wait_readable(sock)
