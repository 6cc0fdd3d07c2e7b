"""TCP and Unix-domain streams and listeners on real sockets, for the OS backends.

Written once against a runtime that has `wait_readable`/`wait_writable` and
`spawn_blocking`: every socket is non-blocking, each operation is tried first and
waits for readiness only when the OS says it would block.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource, serve_listener
from ._protocols import BlockingExecutor, ByteStream, FileDescriptorLike, FullExecutor, Task
from ._reactor import READ, WRITE
from ._streamguard import StreamGuard
from ._validate import check_port, check_positive_int

# The kernel caps it at its own limit (net.core.somaxconn), as trio does: a burst of
# connects larger than the backlog loses SYNs, which clients retry only after a second.
_LISTEN_BACKLOG = 65535
# The most one receive() asks the OS for: it returns "up to max_bytes", and recv()
# allocates a buffer of the size asked before it reads.
_MAX_RECEIVE = 1 << 20
# Owner tokens for the reactor's kept interest: unique per socket object, never 0.
_next_token = itertools.count(1).__next__


class SocketWaits(Protocol):
    """The readiness waits a socket needs from its runtime, and the close notification."""

    def _wait_socket(self, sock: socket.socket, events: int, owner: int) -> Awaitable[None]:
        """Wait until ``sock`` is ready for ``events`` (`READ` or `WRITE`).

        ``owner`` (from `_next_token`) lets a reactor keep the kernel's interest
        between waits of one socket.
        """
        ...

    def _notify_closing(self, sock: socket.socket) -> None:
        """``sock`` is about to be closed: wake every task waiting on it."""
        ...


class SocketRuntime(SocketWaits, FullExecutor, Protocol):
    """What the socket layer needs from a runtime."""

    async def wait_readable(self, sock: FileDescriptorLike) -> None: ...

    async def wait_writable(self, sock: FileDescriptorLike) -> None: ...


R = TypeVar("R", bound=SocketWaits)


@final
class SocketStream(AsyncResource):
    """A connected TCP or Unix socket; implements `anyrt.ByteStream`."""

    __slots__ = ("_broken", "_closed", "_drained", "_guard", "_runtime", "_token", "socket")

    def __init__(self, runtime: SocketRuntime, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._guard = StreamGuard(runtime)
        self._token = _next_token()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._runtime = runtime
        self.socket = sock
        self._closed = False
        # A send failed because the connection is broken: receive then reports EOF.
        self._broken = False
        # The last recv returned less than asked: the kernel's buffer was empty then,
        # so the next receive waits for readiness before it tries (see receive()).
        self._drained = False

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt SocketStream (closed)>"
        return f"<anyrt SocketStream fd={self.socket.fileno()}>"

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed stream")

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes; ``b""`` at EOF. One task at a time.

        After a failed send (the peer is gone) it returns ``b""``: the stream is over.
        """
        if type(max_bytes) is not int or max_bytes <= 0:
            check_positive_int(max_bytes, "receive(max_bytes)")
        max_bytes = min(max_bytes, _MAX_RECEIVE)  # recv allocates its whole buffer first
        if self._closed:
            self._check_open("receive")
        guard = self._guard
        guard.begin_receive()
        try:
            sock = self.socket
            if self._drained:
                # A recv now would most likely fail with EAGAIN, which costs a syscall
                # and an exception. Waiting first is safe: the reactor keeps
                # edge-triggered interest in the socket and remembers an edge nobody
                # waited for, and a first registration reports data already there.
                await self._runtime._wait_socket(sock, READ, self._token)
            while True:
                try:
                    data = sock.recv(max_bytes)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    self._raise_if_closed(exc)
                    if self._broken and isinstance(exc, ConnectionError):
                        return b""  # the same end of stream on every backend
                    raise
                else:
                    self._drained = 0 < len(data) < max_bytes
                    return data
                await self._runtime._wait_socket(sock, READ, self._token)
        finally:
            guard.end_receive()

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the socket buffer is full.

        Sends from several tasks go one after the other, each whole.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        self._check_open("send")
        guard = self._guard
        await guard.begin_send()
        try:
            sock = self.socket
            view = memoryview(data).cast("B")
            while view:
                try:
                    sent = sock.send(view)
                except (BlockingIOError, InterruptedError):
                    await self._runtime._wait_socket(sock, WRITE, self._token)
                    continue
                except OSError as exc:
                    self._raise_if_closed(exc)
                    if isinstance(exc, ConnectionError):
                        self._broken = True
                    raise
                view = view[sent:]
        finally:
            guard.end_send()

    def _raise_if_closed(self, exc: OSError) -> None:
        if self._closed or exc.errno == errno.EBADF:
            raise ClosedResourceError("the stream was closed") from exc

    async def send_eof(self) -> None:
        """Half-close: shut down the sending direction."""
        self._check_open("send_eof")
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise

    async def aclose(self) -> None:
        """Close the socket, waking any task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._runtime._notify_closing(self.socket)
        self.socket.close()


class ListeningSocket(AsyncResource, Generic[R]):
    """A listening socket: its address, the accept loop and `aclose`.

    The base of `SocketListener` and of the asyncio adapter's listener, which make the
    accepted sockets streams each its own way.
    """

    __slots__ = ("_closed", "_runtime", "_token", "socket")

    def __init__(self, runtime: R, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._token = _next_token()
        self._runtime = runtime
        #: The listening non-blocking socket.
        self.socket = sock
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (for a Unix socket: ``(path, 0)``)."""
        name = self.socket.getsockname()
        if isinstance(name, str):
            return (name, 0)
        return (str(name[0]), int(name[1]))

    async def _accept_socket(self) -> socket.socket:
        """Wait for the next connection and return its socket."""
        while True:
            conn = self._accept_pending()
            if conn is not None:
                return conn
            await self._runtime._wait_socket(self.socket, READ, self._token)

    def _accept_pending(self) -> socket.socket | None:
        """Accept a pending connection; None if there is none yet.

        Raises:
            ClosedResourceError: the listener is closed.
            OSError: out of fds or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``).
        """
        while True:
            if self._closed:
                raise ClosedResourceError("accept() on a closed listener")
            try:
                conn, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:
                if self._closed or exc.errno == errno.EBADF:
                    raise ClosedResourceError("the listener was closed") from exc
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                continue  # ECONNABORTED and friends: that connection is gone, go on
            return conn

    async def aclose(self) -> None:
        """Stop listening; a task waiting in `accept` gets `ClosedResourceError`."""
        if self._closed:
            return
        self._closed = True
        self._runtime._notify_closing(self.socket)
        self.socket.close()


@final
class SocketListener(ListeningSocket[SocketRuntime]):
    """A listening socket; implements `anyrt.Listener`."""

    __slots__ = ("_spawn",)

    def __init__(
        self,
        runtime: SocketRuntime,
        sock: socket.socket,
        *,
        spawn: Callable[..., Task[Any]] | None = None,
    ) -> None:
        super().__init__(runtime, sock)
        # Where `serve` starts each connection's handler (default: runtime.spawn).
        self._spawn = spawn or runtime.spawn

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt SocketListener (closed)>"
        return f"<anyrt SocketListener {self.socket.getsockname()!r}>"

    async def accept(self) -> SocketStream:
        """Wait for the next connection."""
        return SocketStream(self._runtime, await self._accept_socket())

    def _accept_now(self) -> SocketStream | None:
        """Accept a pending connection; None if there is none yet (see `_accept_pending`)."""
        conn = self._accept_pending()
        return None if conn is None else SocketStream(self._runtime, conn)

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled, spawning ``handler(stream)`` per connection."""
        await serve_listener(self, self._spawn, handler)


async def getaddrinfo(
    runtime: BlockingExecutor, host: str | None, port: int, kind: int, flags: int
) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo``: a numeric address at once, a name in the blocking pool."""
    try:
        return socket.getaddrinfo(host, port, 0, kind, 0, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    infos: list[tuple[Any, ...]] = await runtime.spawn_blocking(
        socket.getaddrinfo, host, port, 0, kind, 0, flags
    )
    return infos


async def _resolve(
    runtime: SocketRuntime, host: str, port: int, *, passive: bool = False
) -> list[tuple[Any, ...]]:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    flags = socket.AI_PASSIVE if passive else 0
    infos: list[tuple[Any, ...]] = await runtime.spawn_blocking(
        socket.getaddrinfo, host or None, port, 0, socket.SOCK_STREAM, 0, flags
    )
    return infos


async def connect_tcp(runtime: SocketRuntime, host: str, port: int) -> SocketStream:
    """Resolve ``host`` in the blocking pool and try every address in turn.

    Raises:
        ConnectionRefusedError: every address refused.
        OSError: the last other error, as the OS reported it.
    """
    port = check_port(port)
    infos = await _resolve(runtime, host, port)
    sock = await connect_first(host, infos, partial(_connect, runtime))
    return SocketStream(runtime, sock)


async def connect_first(
    host: str,
    infos: list[tuple[Any, ...]],
    connect: Callable[[socket.socket, Any], Awaitable[object]],
) -> socket.socket:
    """Try each of ``host``'s addresses (``getaddrinfo``'s ``infos``) in turn.

    Returns the first non-blocking socket that ``connect(sock, address)`` connects.

    Raises:
        OSError: the last error, as the OS reported it, if no address answered.
    """
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if last is None:  # pragma: no cover - getaddrinfo raises rather than return nothing
        raise OSError(errno.EHOSTUNREACH, f"no address found for {host!r}")
    raise last


async def _connect(runtime: SocketRuntime, sock: socket.socket, address: Any) -> None:
    err = sock.connect_ex(address)
    if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
        await runtime.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"{os.strerror(err)} (connecting to {address!r})")


async def listen_tcp(
    runtime: SocketRuntime,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    spawn: Callable[..., Task[Any]] | None = None,
) -> SocketListener:
    """Bind and listen on the first address ``host`` resolves to.

    ``spawn`` is where `SocketListener.serve` starts handlers (default: runtime.spawn).
    """
    address = await resolve_listen_address(runtime, host, port)
    return SocketListener(runtime, bind_tcp(address, reuse_port=reuse_port), spawn=spawn)


async def resolve_listen_address(
    runtime: SocketRuntime, host: str, port: int
) -> tuple[int, int, int, Any]:
    """Return ``(family, type, proto, sockaddr)`` of the first address to listen on."""
    port = check_port(port)
    infos = await _resolve(runtime, host, port, passive=True)
    family, kind, proto, _, address = infos[0]
    return family, kind, proto, address


def bind_tcp(listen_address: tuple[int, int, int, Any], *, reuse_port: bool) -> socket.socket:
    """Create a listening TCP socket on ``listen_address`` (from `resolve_listen_address`).

    Raises:
        OSError: ``reuse_port`` where the platform has no ``SO_REUSEPORT``, or as the OS
            reports a failed bind.
    """
    family, kind, proto, address = listen_address
    reuse_port_option = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port and reuse_port_option is None:
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and reuse_port_option is not None:
            sock.setsockopt(socket.SOL_SOCKET, reuse_port_option, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(_LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_unix(runtime: SocketRuntime, path: str | os.PathLike[str]) -> SocketStream:
    """Connect to a Unix-domain stream socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await _connect(runtime, sock, os.fspath(path))
    except BaseException:
        sock.close()
        raise
    return SocketStream(runtime, sock)


async def listen_unix(
    runtime: SocketRuntime,
    path: str | os.PathLike[str],
    *,
    spawn: Callable[..., Task[Any]] | None = None,
) -> SocketListener:
    """Listen on a Unix-domain stream socket at ``path`` (which must not exist).

    ``spawn`` is where `SocketListener.serve` starts handlers (default: runtime.spawn).
    """
    return SocketListener(runtime, bind_unix(path), spawn=spawn)


def bind_unix(path: str | os.PathLike[str]) -> socket.socket:
    """Create a listening Unix-domain stream socket at ``path`` (which must not exist)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        sock.listen(_LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock
