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

import signal
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Self

import trio

from anyrt import ClosedResourceError
from anyrt._signals import SignalReceiver

if TYPE_CHECKING:
    from ._runtime import TrioRuntime


def close_signal_sockets(sockets: tuple[socket.socket, socket.socket]) -> None:
    """Close the signal sockets (on the trio thread: a waiting task gets woken first)."""
    receive, send = sockets
    if trio.lowlevel.in_trio_run():
        trio.lowlevel.notify_closing(receive)
    receive.close()
    send.close()


class TrioSignalReceiver(SignalReceiver):
    """The async iterator of ``runtime.signals(...)``; see `TrioRuntime.signals`."""

    def __init__(self, runtime: TrioRuntime, signums: tuple[int, ...]) -> None:
        super().__init__(runtime, signums)
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
        return await super().__aenter__()

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
        await super().__aexit__(exc_type, exc, tb)

    async def __anext__(self) -> signal.Signals:
        """Wait for the next of the requested signals."""
        if self._trio_iter is not None:
            return signal.Signals(await self._trio_iter.__anext__())
        return await super().__anext__()

    async def _wait_readable(self, sock: socket.socket) -> None:
        try:
            await trio.lowlevel.wait_readable(sock)
        except trio.ClosedResourceError:
            raise ClosedResourceError(
                "the signals() block has ended: its block_on() returned"
            ) from None
