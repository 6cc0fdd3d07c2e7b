"""What every stream and listener shares: the accept loop behind `serve`, and ``async with``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from ._exceptions import ClosedResourceError
from ._protocols import ByteStream, Listener, Task


async def serve_listener(
    listener: Listener,
    spawn: Callable[..., Task[Any]],
    handler: Callable[[ByteStream], Awaitable[object]],
) -> None:
    """Accept connections until ``listener`` is closed, one detached task per connection.

    ``spawn(coro, name=...)`` starts each handler's task (an executor's ``spawn``, or a
    runtime's own placement policy).

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
        spawn(_handle(handler, stream), name=_handler_name(handler)).detach()


async def _handle(handler: Callable[[ByteStream], Awaitable[object]], stream: ByteStream) -> None:
    async with stream:
        await handler(stream)


def _handler_name(handler: Any) -> str:
    return f"serve:{getattr(handler, '__qualname__', type(handler).__name__)}"


class AsyncResource:
    """``async with resource:`` closes it with ``aclose()`` (streams and listeners)."""

    __slots__ = ()

    async def aclose(self) -> None:  # pragma: no cover - every subclass defines it
        """Close the resource; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
