"""TCP streams and listeners on trio sockets: `anyrt.ByteStream` and `anyrt.Listener`.

Connections are opened by trio (`trio.open_tcp_stream`, with its happy eyeballs, and
`trio.SocketListener.accept`), which also set ``TCP_NODELAY``; the bytes then go
straight through the trio socket's ``recv``/``send``, which wait with trio's reactor.
Errors come out as anyrt's: `anyrt.ClosedResourceError` for a stream or listener closed
on our side (also waking a task waiting on it), the OS's `OSError` otherwise.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, NoReturn, final

import trio

from anyrt import ByteStream, ClosedResourceError
from anyrt._listener import AsyncResource, serve_listener
from anyrt._validate import check_port, check_positive_int

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

_LISTEN_BACKLOG: Final = 1024
_CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})


def _closed(exc: BaseException, what: str) -> NoReturn:
    raise ClosedResourceError(f"{what} was closed") from exc


@final
class TrioStream(AsyncResource):
    """A connected TCP socket on trio; implements `anyrt.ByteStream`."""

    __slots__ = ("_closed", "socket")

    def __init__(self, stream: trio.SocketStream) -> None:
        #: The trio socket (options already set by `trio.SocketStream`).
        self.socket = stream.socket
        self._closed = False

    def __repr__(self) -> str:
        return f"<anyrt TrioStream fd={self.socket.fileno()}>"

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes as soon as some are available; ``b""`` at EOF."""
        if type(max_bytes) is not int or max_bytes < 1:
            check_positive_int(max_bytes, "receive(max_bytes)")
        try:
            return await self.socket.recv(max_bytes)
        except trio.ClosedResourceError as exc:
            _closed(exc, "the stream")
        except OSError as exc:
            if self._closed or exc.errno in _CLOSED_ERRNOS:
                _closed(exc, "the stream")
            raise

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the socket buffer is full."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        if self._closed:
            raise ClosedResourceError("send() on a closed stream")
        sock = self.socket
        remaining = memoryview(data).cast("B")
        try:
            while remaining:
                sent = await sock.send(remaining)
                remaining = remaining[sent:]
        except trio.ClosedResourceError as exc:
            _closed(exc, "the stream")
        except OSError as exc:
            if self._closed or exc.errno in _CLOSED_ERRNOS:
                _closed(exc, "the stream")
            raise

    async def send_eof(self) -> None:
        """Half-close: shut down the sending direction."""
        if self._closed:
            raise ClosedResourceError("send_eof() on a closed stream")
        try:
            self.socket.shutdown(_stdlib_socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise

    async def aclose(self) -> None:
        """Close the socket, waking any task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.socket.close()  # trio's close() wakes the waiters first (notify_closing)


@final
class TrioListener(AsyncResource):
    """A listening TCP socket on trio; implements `anyrt.Listener`."""

    __slots__ = ("_listener", "_runtime")

    def __init__(self, runtime: TrioRuntime, listener: trio.SocketListener) -> None:
        self._runtime = runtime
        self._listener = listener

    def __repr__(self) -> str:
        return f"<anyrt TrioListener {self._listener.socket.getsockname()!r}>"

    @property
    def socket(self) -> trio.socket.SocketType:
        """The listening trio socket."""
        return self._listener.socket

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        name = self._listener.socket.getsockname()
        return (str(name[0]), int(name[1]))

    async def accept(self) -> TrioStream:
        """Wait for the next connection."""
        try:
            stream = await self._listener.accept()
        except trio.ClosedResourceError as exc:
            _closed(exc, "the listener")
        return TrioStream(stream)

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled, spawning ``handler(stream)`` per connection."""
        await serve_listener(self, self._runtime.spawn, handler)

    async def aclose(self) -> None:
        """Stop listening; a task waiting in `accept` gets `anyrt.ClosedResourceError`."""
        self._listener.socket.close()


async def connect_tcp(host: str, port: int) -> TrioStream:
    """Open a TCP connection with `trio.open_tcp_stream`.

    Raises:
        ConnectionRefusedError: every address refused (trio reports one `OSError` for
            all the attempts; anyrt promises the specific error).
        OSError: any other failure.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    port = check_port(port)
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        attempts = exc.__cause__
        if isinstance(attempts, ExceptionGroup) and all(
            isinstance(error, ConnectionRefusedError) for error in attempts.exceptions
        ):
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"connection refused by {host}:{port}"
            ) from exc
        raise
    return TrioStream(stream)


async def listen_tcp(
    runtime: TrioRuntime, host: str, port: int, *, reuse_port: bool = False
) -> TrioListener:
    """Bind and listen on the first address ``host`` resolves to (one address per listener).

    Raises:
        OSError: ``reuse_port`` on a platform without ``SO_REUSEPORT``, or a bind error.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    port = check_port(port)
    reuse_port_option = getattr(_stdlib_socket, "SO_REUSEPORT", None)
    if reuse_port and reuse_port_option is None:
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=_stdlib_socket.SOCK_STREAM, flags=_stdlib_socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
        if reuse_port and reuse_port_option is not None:
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, reuse_port_option, 1)
        if family == _stdlib_socket.AF_INET6:
            sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 1)
        await sock.bind(address)
        sock.listen(_LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return TrioListener(runtime, trio.SocketListener(sock))
