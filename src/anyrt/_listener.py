"""The accept loop behind every `Listener.serve`, written once on the protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._exceptions import ClosedResourceError
from ._protocols import ByteStream, Executor, Listener


async def serve_listener(
    listener: Listener,
    executor: Executor,
    handler: Callable[[ByteStream], Awaitable[object]],
) -> None:
    """Accept connections until ``listener`` is closed, one detached task per connection.

    Each stream is closed when its handler returns or raises; a handler's exception
    goes to the runtime's error handler and the loop goes on.
    """
    if not callable(handler):
        raise TypeError(f"serve() takes an async handler(stream), not {type(handler).__name__}")
    while True:
        try:
            stream = await listener.accept()
        except ClosedResourceError:
            return
        executor.spawn(_handle(handler, stream), name=_handler_name(handler)).detach()


async def _handle(handler: Callable[[ByteStream], Awaitable[object]], stream: ByteStream) -> None:
    async with stream:
        await handler(stream)


def _handler_name(handler: Any) -> str:
    return f"serve:{getattr(handler, '__qualname__', type(handler).__name__)}"
