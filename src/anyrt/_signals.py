"""``runtime.signals(...)``: OS signals as an async iterator, on the threaded runtimes.

Python runs signal handlers, and lets them be installed, only on the main thread,
while tasks run on the runtime's threads. So `block_on`'s (main) thread installs the
handlers on a task's request, and the signals travel through `signal.set_wakeup_fd`:
the C-level handler writes each signal's number to a socket, with no Python code and
no lock involved, and the receiving task waits for that socket to become readable.
"""

from __future__ import annotations

import collections
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from ._protocols import Receiver, Sender
    from ._threaded import ThreadedRuntime

_UNCATCHABLE = {getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)}


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up fd already carries the signal."""


class SignalInstaller:
    """The runtime's one set of installed handlers (main thread only)."""

    def __init__(self, runtime: ThreadedRuntime) -> None:
        self._runtime = runtime
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
            receive, send = self._active
            self._active = None
            signal.set_wakeup_fd(self._previous_fd)
            self._restore_handlers()
        self._runtime._notify_closing(receive)
        receive.close()
        send.close()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class SignalReceiver:
    """The async iterator of ``runtime.signals(...)``; see `ThreadedRuntime.signals`."""

    def __init__(self, runtime: ThreadedRuntime, signums: tuple[int, ...]) -> None:
        if not signums:
            raise ValueError("signals() needs at least one signal number, e.g. signal.SIGTERM")
        valid = signal.valid_signals()
        for signum in signums:
            if isinstance(signum, bool) or not isinstance(signum, int):
                raise TypeError(f"signals() takes signal numbers, not {type(signum).__name__}")
            if signum not in valid or signum in _UNCATCHABLE:
                raise ValueError(f"signal {signum} cannot be caught")
        self._runtime = runtime
        self._signums = frozenset(int(signum) for signum in signums)
        self._pending: collections.deque[signal.Signals] = collections.deque()
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
        self._socket = None
        if self._runtime._main_waiter is not None:
            await self._on_main_thread(self._runtime._signals.restore)
        # Otherwise block_on has returned, and restored them on its way out.

    async def _on_main_thread(self, fn: Callable[[], Any]) -> Any:
        waiter = self._runtime._main_waiter
        if waiter is None:
            raise RuntimeError(
                "signals() needs the runtime's block_on() running on the main thread: "
                "only the main thread may install signal handlers"
            )
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

        waiter.call(run)
        return await receiver

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> signal.Signals:
        """Wait for the next of the requested signals."""
        while not self._pending:
            sock = self._socket
            if sock is None:
                raise RuntimeError("iterate over signals() inside its `async with` block")
            try:
                data = sock.recv(512)
            except BlockingIOError:
                await self._runtime.wait_readable(sock)
                continue
            self._pending.extend(signal.Signals(byte) for byte in data if byte in self._signums)
        return self._pending.popleft()
