"""UDP on trio sockets: `open_udp` and `TrioDatagramSocket` (an `anyrt.DatagramSocket`).

The bytes go through the trio socket's ``sendto``/``recvfrom``, which wait with trio's
reactor; closing the socket wakes a task waiting on it (trio's ``notify_closing``), and
the error comes out as anyrt's `anyrt.ClosedResourceError`.
"""

from __future__ import annotations

import errno
import socket as _stdlib_socket
from typing import Any, Final, final

import trio

from anyrt import ClosedResourceError
from anyrt._listener import AsyncResource
from anyrt._validate import check_port, check_positive_int

#: No datagram is longer than this; ``recvfrom`` allocates its whole buffer first.
_MAX_DATAGRAM: Final = 65536


@final
class TrioDatagramSocket(AsyncResource):
    """A bound UDP socket on trio; implements `anyrt.DatagramSocket`.

    One task may wait in `receive_from` while others `send_to`. Datagrams keep their
    boundaries; one larger than ``max_bytes`` is truncated, as the OS does.
    """

    __slots__ = ("_closed", "socket")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        #: The bound trio socket.
        self.socket = sock
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt TrioDatagramSocket (closed)>"
        return f"<anyrt TrioDatagramSocket {self.socket.getsockname()!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        name = self.socket.getsockname()
        return (str(name[0]), int(name[1]))

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``.

        Raises:
            ClosedResourceError: the socket was closed.
            OSError: as the OS reports it (``EMSGSIZE`` for a datagram that is too big).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_to() takes bytes, not {type(data).__name__}")
        target = check_address(address)
        self._check_open("send_to")
        try:
            await self.socket.sendto(data, target)
        except trio.ClosedResourceError as exc:
            raise ClosedResourceError("the UDP socket was closed") from exc
        except OSError as exc:
            self._raise_if_closed(exc)
            raise

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's ``(host, port)``.

        Raises:
            ClosedResourceError: the socket is closed (also while this call waits).
        """
        check_positive_int(max_bytes, "receive_from(max_bytes)")
        self._check_open("receive_from")
        try:
            data, sender = await self.socket.recvfrom(min(max_bytes, _MAX_DATAGRAM))
        except trio.ClosedResourceError as exc:
            raise ClosedResourceError("the UDP socket was closed") from exc
        except OSError as exc:
            self._raise_if_closed(exc)
            raise
        return data, (str(sender[0]), int(sender[1]))

    async def aclose(self) -> None:
        """Close the socket, waking a task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.socket.close()  # trio's close() wakes the waiters first (notify_closing)

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed UDP socket")

    def _raise_if_closed(self, exc: OSError) -> None:
        if self._closed or exc.errno == errno.EBADF:
            raise ClosedResourceError("the UDP socket was closed") from exc


def check_address(address: Any) -> tuple[str, int]:
    """Return ``address`` as ``(host, port)``, or raise naming what is wrong with it."""
    if (
        not isinstance(address, tuple)
        or len(address) != 2
        or not isinstance(address[0], str)
        or type(address[1]) is not int
    ):
        raise TypeError(f"address must be a (host, port) tuple of str and int, not {address!r}")
    return address[0], check_port(address[1])


async def open_udp(local_host: str, local_port: int) -> TrioDatagramSocket:
    """Bind a UDP socket to ``local_host:local_port`` (port 0: any free port)."""
    if not isinstance(local_host, str):
        raise TypeError(f"local_host must be a str, not {type(local_host).__name__}")
    local_port = check_port(local_port)
    infos = await trio.socket.getaddrinfo(
        local_host or None,
        local_port,
        type=_stdlib_socket.SOCK_DGRAM,
        flags=_stdlib_socket.AI_PASSIVE,
    )
    family, kind, proto, _, address = infos[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        await sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return TrioDatagramSocket(sock)
