"""UDP on real sockets, for the OS backends: `open_udp` and `UDPSocket`."""

from __future__ import annotations

import errno
import socket
from typing import Any, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource
from ._reactor import READ, WRITE
from ._sockets import SocketRuntime, _next_token
from ._validate import check_address, check_port, check_positive_int


@final
class UDPSocket(AsyncResource):
    """A bound UDP socket; implements `anyrt.DatagramSocket`.

    One task may wait in `receive_from` while others `send_to`. Datagrams keep their
    boundaries; one larger than ``max_bytes`` is truncated, as the OS does.
    """

    __slots__ = ("_closed", "_runtime", "_token", "socket")

    def __init__(self, runtime: SocketRuntime, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._runtime = runtime
        self._token = _next_token()
        self.socket = sock
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt UDPSocket (closed)>"
        return f"<anyrt UDPSocket {self.socket.getsockname()!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        name = self.socket.getsockname()
        return (str(name[0]), int(name[1]))

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``; ``host`` must be an IP address.

        Raises:
            OSError: as the OS reports it (``EMSGSIZE`` for a datagram that is too big).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_to() takes bytes, not {type(data).__name__}")
        host, port = check_address(address)
        self._check_open("send_to")
        while True:
            try:
                self.socket.sendto(data, (host, port))
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_socket(self.socket, WRITE, self._token)
                continue
            except OSError as exc:
                self._raise_if_closed(exc)
                raise
            return

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's ``(host, port)``."""
        check_positive_int(max_bytes, "receive_from(max_bytes)")
        self._check_open("receive_from")
        while True:
            try:
                # No datagram is longer than 65,535 bytes; recvfrom allocates its
                # whole buffer before it reads, so never ask for more.
                data, sender = self.socket.recvfrom(min(max_bytes, 65536))
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_socket(self.socket, READ, self._token)
                continue
            except OSError as exc:
                self._raise_if_closed(exc)
                raise
            return data, (str(sender[0]), int(sender[1]))

    async def aclose(self) -> None:
        """Close the socket, waking a task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._runtime._notify_closing(self.socket)
        self.socket.close()

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed UDP socket")

    def _raise_if_closed(self, exc: OSError) -> None:
        if self._closed or exc.errno == errno.EBADF:
            raise ClosedResourceError("the UDP socket was closed") from exc


async def open_udp(runtime: SocketRuntime, local_host: str, local_port: int) -> UDPSocket:
    """Bind a UDP socket to ``local_host:local_port`` (port 0: any free port)."""
    if not isinstance(local_host, str):
        raise TypeError(f"local_host must be a str, not {type(local_host).__name__}")
    local_port = check_port(local_port)
    infos: list[tuple[Any, ...]] = await runtime.spawn_blocking(
        socket.getaddrinfo,
        local_host or None,
        local_port,
        0,
        socket.SOCK_DGRAM,
        0,
        socket.AI_PASSIVE,
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return UDPSocket(runtime, sock)
