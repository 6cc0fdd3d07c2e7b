"""`current()`: an anyrt runtime on the asyncio loop an application already runs.

The runtime borrows the loop without owning it: everything that only needs the loop
works (spawning, oneshots, timers, sockets, blocking calls), while `block_on` and `close`
- which would run or close a loop that belongs to someone else - raise `RuntimeError`.
Its tasks are ordinary asyncio tasks of that loop, so ``asyncio.run`` cancels any that
are still running when the application's main coroutine returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar, final

from ._runtime import LoopRuntime
from ._task import ErrorHandler

T = TypeVar("T")


@final
class BorrowedRuntime(LoopRuntime):
    """An `anyrt.Runtime` on a running asyncio loop it does not own; see `current`."""

    def block_on(self, coro: Coroutine[Any, Any, T]) -> NoReturn:
        """Not available: the loop belongs to the application, which runs it.

        Raises:
            RuntimeError: always.
        """
        if isinstance(coro, Coroutine):
            coro.close()
        raise RuntimeError(
            "block_on() is not available on the runtime anyrt_asyncio.current() returns: "
            "it borrows an asyncio loop that the application runs. Await the coroutine "
            "from a task, or spawn() it; to own a loop, use anyrt.runtime('asyncio')"
        )

    def close(self) -> NoReturn:
        """Not available: the application closes its own loop (``asyncio.run`` does).

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(
            "close() is not available on the runtime anyrt_asyncio.current() returns: the "
            "asyncio loop belongs to the application, which closes it (asyncio.run cancels "
            "the tasks still running); cancel your own tasks to stop them earlier"
        )

    def __enter__(self) -> Self:
        """Refuse ``with``: leaving the block would close a loop the runtime does not own."""
        self.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def current(*, error_handler: ErrorHandler | None = None) -> BorrowedRuntime:
    """Return an anyrt runtime bound to the running asyncio event loop.

    ``Client(runtime=anyrt_asyncio.current())`` lets any existing asyncio application
    use a library written against `anyrt.Runtime`. The runtime works until the loop is
    closed; its `block_on` and `close` raise `RuntimeError`.

    Args:
        error_handler: receives failures of its tasks that nobody will observe
            (default: log them to the ``anyrt`` logger).

    Raises:
        RuntimeError: no asyncio event loop is running in this thread.
    """
    loop = asyncio._get_running_loop()
    if loop is None:
        raise RuntimeError(
            "anyrt_asyncio.current() must be called while an asyncio event loop runs in "
            "this thread (inside a coroutine that asyncio.run() runs, say); to create a "
            "runtime that owns its loop, use anyrt.runtime('asyncio')"
        )
    return BorrowedRuntime(loop, error_handler=error_handler, virtual_clock=None)
