"""UDP on trio sockets: `open_udp` and `TrioDatagramSocket` (an `anyrt.DatagramSocket`).

The bytes go through the trio socket's ``sendto``/``recvfrom``, which wait with trio's
reactor; closing the socket wakes a task waiting on it (trio's ``notify_closing``), and
the error comes out as anyrt's `anyrt.ClosedResourceError`. The address, the argument
checks and the closed state are `anyrt.UDPSocket`'s (`DatagramSocketBase`).
"""

from __future__ import annotations

import socket as _stdlib_socket
from threading import get_ident
from typing import TYPE_CHECKING, final

import trio

from anyrt._udp import DatagramSocketBase, check_bind_address, host_port, raise_closed

from ._home import foreign_error

if TYPE_CHECKING:
    from ._runtime import TrioRuntime


@final
class TrioDatagramSocket(DatagramSocketBase[trio.socket.SocketType]):
    """A bound UDP socket on trio; implements `anyrt.DatagramSocket`.

    One task may wait in `receive_from` while others `send_to`. Datagrams keep their
    boundaries; one larger than ``max_bytes`` is truncated, as the OS does.
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: TrioRuntime, sock: trio.socket.SocketType) -> None:
        super().__init__(sock)
        self._runtime = runtime

    def _check_home(self, method: str) -> None:
        runtime = self._runtime
        if get_ident() != runtime._ident:
            raise foreign_error(f"{method}() of a UDP socket", runtime)

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``.

        Raises:
            ClosedResourceError: the socket was closed.
            OSError: as the OS reports it (``EMSGSIZE`` for a datagram that is too big).
            RuntimeError: awaited outside the tasks of the socket's runtime.
        """
        target = self._check_send(data, address)
        self._check_home("send_to")
        try:
            await self.socket.sendto(data, target)
        except trio.ClosedResourceError as exc:
            raise_closed(exc)
        except OSError as exc:
            self._raise_if_closed(exc)
            raise

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's ``(host, port)``.

        Raises:
            ClosedResourceError: the socket is closed (also while this call waits).
            RuntimeError: awaited outside the tasks of the socket's runtime.
        """
        size = self._check_receive(max_bytes)
        self._check_home("receive_from")
        try:
            data, sender = await self.socket.recvfrom(size)
        except trio.ClosedResourceError as exc:
            raise_closed(exc)
        except OSError as exc:
            self._raise_if_closed(exc)
            raise
        return data, host_port(sender)

    async def aclose(self) -> None:
        """Close the socket, waking a task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.socket.close()  # trio's close() wakes the waiters first (notify_closing)


async def open_udp(runtime: TrioRuntime, local_host: str, local_port: int) -> TrioDatagramSocket:
    """Bind a UDP socket to ``local_host:local_port`` (port 0: any free port)."""
    host, port = check_bind_address(local_host, local_port)
    infos = await trio.socket.getaddrinfo(
        host, port, type=_stdlib_socket.SOCK_DGRAM, flags=_stdlib_socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        await sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return TrioDatagramSocket(runtime, sock)
