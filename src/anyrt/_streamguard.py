"""What makes one `ByteStream` safe to share between tasks, written once for every stream.

Concurrent ``send`` calls are serialised (the bytes of two sends never interleave): each
send holds the stream's send lock, a fair `anyrt.Lock`, for its whole length. A second
``receive`` while one is in progress has no sensible meaning (which of the two gets the
next bytes?) and raises `BusyResourceError` at once.
"""

from __future__ import annotations

import threading
from typing import final

from ._exceptions import BusyResourceError
from ._protocols import Executor
from ._sync import Lock

__all__ = ["StreamGuard"]


@final
class StreamGuard:
    """The receive token and the send lock of one stream.

    Usage, in a stream's methods::

        guard.begin_receive("receive")        # raises BusyResourceError
        try: ...
        finally: guard.end_receive()

        await guard.begin_send()              # waits for the sends before it
        try: ...
        finally: guard.end_send()
    """

    __slots__ = ("_receiving", "_sending")

    def __init__(self, executor: Executor) -> None:
        self._receiving = threading.Lock()
        self._sending = Lock(executor)

    def begin_receive(self, what: str = "receive") -> None:
        """Claim the receiving side, or raise `BusyResourceError` if a task has it."""
        if not self._receiving.acquire(blocking=False):
            raise BusyResourceError(
                f"another task is already in {what}() on this stream; one task at a time "
                "may receive (sends from several tasks are fine: they are serialised)"
            )

    def end_receive(self) -> None:
        """Release the receiving side."""
        self._receiving.release()

    async def begin_send(self) -> None:
        """Wait for the sends before this one (a cancel point only if it must wait)."""
        lock = self._sending
        if not lock._try_acquire():
            await lock.acquire()

    def end_send(self) -> None:
        """Let the next send go."""
        self._sending.release()
