"""``runtime.signals(...)`` on trio: OS signals as an async iterator.

Python installs signal handlers, and runs them, only on the main thread; an owned
`TrioRuntime` runs trio on a thread of its own, where ``trio.open_signal_receiver``
refuses to work. So the design is the native runtimes': `block_on`'s thread (the main
thread) waits on a `MainWaiter`, which also runs the calls that tasks hand it - here,
installing the handlers - and the signals travel through `signal.set_wakeup_fd`: the
C-level handler writes each signal's number to a socket, with no Python code and no
lock involved, and the receiving task waits for that socket with trio's reactor. trio
itself only claims the wake-up fd when its run is on the main thread, which it is not.

A runtime borrowed with `anyrt_trio.current` runs on the application's trio thread;
when that is the main thread, ``signals()`` is ``trio.open_signal_receiver``.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import trio

from anyrt import ClosedResourceError

if TYPE_CHECKING:
    from anyrt import Receiver, Sender

    from ._runtime import TrioRuntime

_UNCATCHABLE = {getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)}


def check_signums(signums: tuple[int, ...]) -> frozenset[int]:
    """Return ``signums`` as a set, or raise naming what is wrong (as the native runtimes)."""
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

    Tasks hand it what only the main thread may do (installing signal handlers) with
    `call`; a Ctrl-C interrupts `wait` as it would any blocking wait.
    """

    __slots__ = ("_calls", "_cond", "_done", "_finished")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._calls: list[Callable[[], object]] = []
        self._done = False
        self._finished = False  # wait() has returned: no call will run any more

    def wake(self) -> None:
        """The main task has ended: `wait` returns (once the handed calls have run)."""
        with self._cond:
            self._done = True
            self._cond.notify()

    def call(self, fn: Callable[[], object]) -> bool:
        """Have the waiting thread run ``fn`` soon; False if it no longer waits."""
        with self._cond:
            if self._finished:
                return False
            self._calls.append(fn)
            self._cond.notify()
            return True

    def wait(self) -> None:
        """Run the handed calls until the main task has ended."""
        while True:
            with self._cond:
                while not self._done and not self._calls:
                    self._cond.wait()
                calls, self._calls = self._calls, []
                if not calls:
                    self._finished = True
                    return
            for fn in calls:
                fn()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up fd already carries the signal."""


class SignalInstaller:
    """The runtime's one set of installed handlers; `install` and `restore` on the main thread."""

    def __init__(self, runtime: TrioRuntime) -> None:
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
        """Put the previous handlers and wake-up fd back (idempotent).

        The sockets are closed on the trio thread, waking a task that waits on them.
        """
        with self._lock:
            if self._active is None:
                return
            sockets = self._active
            self._active = None
            signal.set_wakeup_fd(self._previous_fd)
            self._restore_handlers()
        self._runtime._call_soon(_close, sockets)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _close(sockets: tuple[socket.socket, socket.socket]) -> None:
    """Close the signal sockets (on the trio thread: a waiting task gets woken first)."""
    receive, send = sockets
    if trio.lowlevel.in_trio_run():
        trio.lowlevel.notify_closing(receive)
    receive.close()
    send.close()


class TrioSignalReceiver:
    """The async iterator of ``runtime.signals(...)``; see `TrioRuntime.signals`."""

    def __init__(self, runtime: TrioRuntime, signums: tuple[int, ...]) -> None:
        self._signums = check_signums(signums)
        self._runtime = runtime
        self._pending: collections.deque[signal.Signals] = collections.deque()
        self._socket: socket.socket | None = None
        # On a borrowed run on the main thread: trio's own receiver.
        self._trio_cm: AbstractContextManager[AsyncIterator[int]] | None = None
        self._trio_iter: AsyncIterator[int] | None = None

    async def __aenter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            # A borrowed run on the main thread: trio installs the handlers itself.
            cm = trio.open_signal_receiver(*self._signums)
            self._trio_iter = cm.__enter__()
            self._trio_cm = cm
            return self
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
        if self._trio_cm is not None:
            cm, self._trio_cm, self._trio_iter = self._trio_cm, None, None
            cm.__exit__(exc_type, exc, tb)
            return
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

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> signal.Signals:
        """Wait for the next of the requested signals."""
        if self._trio_iter is not None:
            return signal.Signals(await self._trio_iter.__anext__())
        while not self._pending:
            sock = self._socket
            if sock is None:
                raise RuntimeError("iterate over signals() inside its `async with` block")
            try:
                data = sock.recv(512)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    raise ClosedResourceError(
                        "the signals() block has ended: its block_on() returned"
                    ) from None
                continue
            except OSError as exc:  # closed under us by block_on's return
                raise ClosedResourceError(
                    "the signals() block has ended: its block_on() returned"
                ) from exc
            self._pending.extend(signal.Signals(byte) for byte in data if byte in self._signums)
        return self._pending.popleft()
