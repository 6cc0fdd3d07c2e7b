"""`from_future`: await a `concurrent.futures.Future` from any runtime."""

from __future__ import annotations

import concurrent.futures
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from ._protocols import Executor, Receiver, Sender
from ._sync import _check_executor

__all__ = ["from_future"]

T = TypeVar("T")


async def from_future(executor: Executor, future: concurrent.futures.Future[T]) -> T:
    """Wait for ``future`` (completed by some thread) and return its result.

    If the awaiting task is cancelled, the future is cancelled too (which stops it only
    if it has not started running).

    Raises:
        concurrent.futures.CancelledError: the future was cancelled.
        TypeError: ``future`` is not a `concurrent.futures.Future`.
    """
    _check_executor(executor, "from_future()")
    if not isinstance(future, concurrent.futures.Future):
        raise TypeError(
            f"from_future() takes a concurrent.futures.Future, not {type(future).__name__}"
        )
    sender: Sender[T]
    receiver: Receiver[T]
    sender, receiver = executor.oneshot()

    def on_done(done: concurrent.futures.Future[T]) -> None:
        if done.cancelled():
            sender.fail(concurrent.futures.CancelledError("the future was cancelled"))
            return
        exc = done.exception()
        if exc is not None:
            sender.fail(exc)
        else:
            sender.send(done.result())

    # A backend without threads of its own (single-threaded) must know that a thread
    # outside it will wake a task, so that it waits instead of reporting a deadlock.
    hook: Any = getattr(executor, "_external_wait", None)
    guard: AbstractContextManager[object] = hook() if hook is not None else nullcontext()
    with guard:
        future.add_done_callback(on_done)
        try:
            result: T = await receiver
        except BaseException:
            future.cancel()
            raise
    return result
