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
    *,
    task_name: Callable[[ByteStream], str] | None = None,
) -> None:
    """Accept connections until ``listener`` is closed, one detached task per connection.

    ``spawn(coro, name=...)`` starts each handler's task (an executor's ``spawn``, or a
    runtime's own placement policy); ``task_name(stream)`` names it (default: after
    the handler).

    Each stream is closed when its handler returns or raises; a handler's exception
    goes to the runtime's error handler and the loop goes on. A stream whose handler
    never started (its task was cancelled first, as when the runtime closes) is
    closed when this loop ends, so that no accepted connection is left open.
    """
    if not callable(handler):
        raise TypeError(f"serve() takes an async handler(stream), not {type(handler).__name__}")
    name = _handler_name(handler)
    # Accepted streams whose handler has not started yet, by id. Whoever pops a stream
    # owns it: its handler (when it starts) or this loop (when it ends), never both.
    unclaimed: dict[int, ByteStream] = {}
    try:
        while True:
            try:
                stream = await listener.accept()
            except ClosedResourceError:
                return
            unclaimed[id(stream)] = stream
            task = name if task_name is None else task_name(stream)
            spawn(_handle(handler, stream, unclaimed), name=task).detach()
    finally:
        await _close_unclaimed(unclaimed)


async def _close_unclaimed(unclaimed: dict[int, ByteStream]) -> None:
    first_error: BaseException | None = None
    while unclaimed:
        try:
            _, stream = unclaimed.popitem()
        except KeyError:  # a handler claimed the last one meanwhile
            break
        try:
            await stream.aclose()
        except BaseException as exc:  # close them all, then raise (a cancellation)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


async def _handle(
    handler: Callable[[ByteStream], Awaitable[object]],
    stream: ByteStream,
    unclaimed: dict[int, ByteStream],
) -> None:
    if unclaimed.pop(id(stream), None) is None:
        return  # the serve loop ended first and closed it
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
