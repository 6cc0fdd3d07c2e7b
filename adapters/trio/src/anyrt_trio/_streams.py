"""TCP streams and listeners on trio sockets: `anyrt.ByteStream` and `anyrt.Listener`.

Connections are opened by trio (`trio.open_tcp_stream`, with its happy eyeballs, and
`trio.SocketListener.accept`), which also set ``TCP_NODELAY``; the bytes then go
straight through the trio socket's ``recv``/``send``, which wait with trio's reactor.
Errors come out as anyrt's: `anyrt.ClosedResourceError` for a stream or listener closed
on our side (also waking a task waiting on it), the OS's `OSError` otherwise - never a
trio exception.

A stream may be shared by tasks as on every backend (`anyrt._streamguard.StreamGuard`):
sends are serialised (a trio socket refuses a second concurrent send with
`trio.BusyResourceError`), a second concurrent receive raises `anyrt.BusyResourceError`.
A cancelled receive loses no bytes: trio's ``recv`` either is cancelled while it waits
for readiness, before reading, or returns what it read without another cancel point.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from threading import get_ident
from typing import TYPE_CHECKING, Final, NoReturn, final

import trio

from anyrt import BusyResourceError, ByteStream, ClosedResourceError, Lock
from anyrt._listener import AsyncResource, serve_listener
from anyrt._streamguard import StreamGuard
from anyrt._validate import check_port, check_positive_int

from ._home import foreign_error

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

_LISTEN_BACKLOG: Final = 1024
_CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})
# The most one receive() asks the OS for, as on the native backends: recv() allocates
# a buffer of the size asked before it reads.
_MAX_RECEIVE: Final = 1 << 20


def _closed(exc: BaseException, what: str) -> NoReturn:
    raise ClosedResourceError(f"{what} was closed") from exc


def _busy(exc: BaseException) -> NoReturn:
    # Only if a task waits on the socket itself (rt.wait_readable(stream.socket)): the
    # guard keeps the stream's own calls from overlapping.
    raise BusyResourceError(f"another task is waiting on this stream's socket: {exc}") from exc


@final
class TrioStream(AsyncResource):
    """A connected TCP socket on trio; implements `anyrt.ByteStream`."""

    __slots__ = ("_broken", "_closed", "_guard", "_runtime", "socket")

    def __init__(self, runtime: TrioRuntime, stream: trio.SocketStream) -> None:
        #: The trio socket (options already set by `trio.SocketStream`).
        self.socket = stream.socket
        self._runtime = runtime
        self._guard = StreamGuard(runtime)
        self._closed = False
        # A send failed because the connection is broken: receive then reports EOF.
        self._broken = False

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt TrioStream (closed)>"
        return f"<anyrt TrioStream fd={self.socket.fileno()}>"

    def _check(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed stream")
        runtime = self._runtime
        if get_ident() != runtime._ident:
            raise foreign_error(f"{method}() of a stream", runtime)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes as soon as some are available; ``b""`` at EOF.

        One task at a time. After a failed send (the peer is gone) it returns ``b""``.

        Raises:
            BusyResourceError: another task is in ``receive`` on this stream.
            ClosedResourceError: the stream was closed (also while this call waits).
            RuntimeError: awaited outside the tasks of the stream's runtime.
        """
        if type(max_bytes) is not int or max_bytes < 1:
            check_positive_int(max_bytes, "receive(max_bytes)")
        max_bytes = min(max_bytes, _MAX_RECEIVE)
        self._check("receive")
        guard = self._guard
        guard.begin_receive()
        try:
            return await self.socket.recv(max_bytes)
        except trio.ClosedResourceError as exc:
            _closed(exc, "the stream")
        except trio.BusyResourceError as exc:
            _busy(exc)
        except OSError as exc:
            if self._closed or exc.errno in _CLOSED_ERRNOS:
                _closed(exc, "the stream")
            if self._broken and isinstance(exc, ConnectionError):
                return b""  # the same end of stream on every backend
            raise
        finally:
            guard.end_receive()

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the socket buffer is full.

        Sends from several tasks go one after the other, each whole.

        Raises:
            ClosedResourceError: the stream was closed.
            RuntimeError: awaited outside the tasks of the stream's runtime.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        self._check("send")
        guard = self._guard
        await guard.begin_send()
        try:
            sock = self.socket
            remaining = memoryview(data).cast("B")
            while remaining:
                sent = await sock.send(remaining)
                remaining = remaining[sent:]
        except trio.ClosedResourceError as exc:
            _closed(exc, "the stream")
        except trio.BusyResourceError as exc:
            _busy(exc)
        except OSError as exc:
            if self._closed or exc.errno in _CLOSED_ERRNOS:
                _closed(exc, "the stream")
            if isinstance(exc, ConnectionError):
                self._broken = True
            raise
        finally:
            guard.end_send()

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
    """A listening TCP socket on trio; implements `anyrt.Listener`.

    Several tasks may wait in `accept` at once, as on the native backends: they take
    turns (a trio socket refuses a second waiter).
    """

    __slots__ = ("_accepting", "_listener", "_runtime")

    def __init__(self, runtime: TrioRuntime, listener: trio.SocketListener) -> None:
        self._runtime = runtime
        self._listener = listener
        self._accepting = Lock(runtime)

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
        """Wait for the next connection.

        Raises:
            ClosedResourceError: the listener was closed (also while this call waits).
            RuntimeError: awaited outside the tasks of the listener's runtime.
        """
        runtime = self._runtime
        if get_ident() != runtime._ident:
            raise foreign_error("accept() of a listener", runtime)
        try:
            async with self._accepting:
                stream = await self._listener.accept()
        except trio.ClosedResourceError as exc:
            _closed(exc, "the listener")
        return TrioStream(runtime, stream)

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled, spawning ``handler(stream)`` per connection."""
        await serve_listener(self, self._runtime.spawn, handler)

    async def aclose(self) -> None:
        """Stop listening; a task waiting in `accept` gets `anyrt.ClosedResourceError`."""
        self._listener.socket.close()


async def connect_tcp(runtime: TrioRuntime, host: str, port: int) -> TrioStream:
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
    return TrioStream(runtime, stream)


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
