"""``runtime.signals(...)`` on an asyncio loop: OS signals as an async iterator.

The loop's own ``add_signal_handler`` does the work: the selector loop and uvloop both
route the signal through their wake-up fd and call the handler on the loop, between
callbacks. So the handler only queues the signal and wakes the receiving task. The
loop's thread must be the main thread (only it may install handlers), which it is when
`block_on` runs there.

``remove_signal_handler`` resets a signal to its default action, not to what was
installed before; `AsyncioSignalReceiver` puts the previous Python handler back itself,
so nesting inside a program that handles the signal (or ``block_on``'s own Ctrl-C
handler) leaves that program's handler in place.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from anyrt import ClosedResourceError
from anyrt._signals import SignalQueue

if TYPE_CHECKING:
    from ._runtime import LoopRuntime


class AsyncioSignalReceiver(SignalQueue):
    """The async iterator of ``runtime.signals(...)``; see `AsyncioRuntime.signals`."""

    def __init__(self, runtime: LoopRuntime, signums: tuple[int, ...]) -> None:
        super().__init__(signums)
        self._runtime = runtime
        self._waiter: asyncio.Future[None] | None = None
        self._previous: dict[int, Any] = {}
        self._active = False
        self._ended = False

    async def __aenter__(self) -> Self:
        runtime = self._runtime
        loop = runtime.loop
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "signals() needs the runtime's loop running on the main thread (block_on() "
                "called from the main thread): only the main thread may install signal handlers"
            )
        if runtime._signal_receiver is not None:
            raise RuntimeError(
                "another signals() block of this runtime is active; receive every "
                "signal you need in one: runtime.signals(SIGTERM, SIGHUP, ...)"
            )
        runtime._signal_receiver = self
        try:
            for signum in self._signums:
                self._previous[signum] = signal.getsignal(signum)
                loop.add_signal_handler(signum, self._on_signal, signum)
        except BaseException:
            self._restore()
            raise
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        loop = self._runtime.loop
        for signum, previous in self._previous.items():
            if not loop.is_closed():
                loop.remove_signal_handler(signum)
            if previous is not None:  # None: installed from C; nothing to put back
                signal.signal(signum, previous)
        self._previous.clear()
        self._ended = self._active
        self._active = False
        if self._runtime._signal_receiver is self:
            self._runtime._signal_receiver = None
        self._wake()

    def _on_signal(self, signum: int) -> None:
        self._pending.append(signal.Signals(signum))
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if not self._active:
            if self._ended:
                raise ClosedResourceError("the signals() block has ended")
            raise RuntimeError("iterate over signals() inside its `async with` block")
        if self._waiter is not None:
            raise RuntimeError("another task is already iterating over this signals() block")
        waiter = self._waiter = self._runtime.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
