"""UDP on real sockets: `open_udp` and `UDPSocket`, for the OS backends and the asyncio adapter.

A plain non-blocking socket, tried first and waited on only when the OS says it would
block, with the runtime's readiness waits (`SocketWaits`). The datagrams stay in the
kernel's buffer until someone receives them - no unbounded queue in Python - and
`UDPSocket.aclose` wakes a task waiting on the socket. `DatagramSocketBase` holds what
a UDP socket with waits of its own (the trio adapter's) shares with `UDPSocket`.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Final, Generic, NoReturn, Protocol, TypeVar, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource
from ._protocols import BlockingExecutor
from ._reactor import READ, WRITE
from ._sockets import SocketWaits, _next_token, getaddrinfo
from ._validate import check_address, check_port, check_positive_int

#: No datagram is longer than 65,535 bytes; ``recvfrom`` allocates its whole buffer
#: before it reads, so never ask for more.
MAX_DATAGRAM: Final = 65536


class _Bound(Protocol):
    def getsockname(self) -> Any: ...


SockT = TypeVar("SockT", bound=_Bound)


class UDPRuntime(SocketWaits, BlockingExecutor, Protocol):
    """What `open_udp` needs from a runtime: the socket waits and a blocking pool."""


class DatagramSocketBase(AsyncResource, Generic[SockT]):
    """What every OS-backed UDP socket shares: its address, argument checks, closed state.

    A subclass does the I/O in ``send_to``/``receive_from``/``aclose``, starting each
    with `_check_send`/`_check_receive` and turning errors with `_raise_if_closed`.
    """

    __slots__ = ("_closed", "socket")

    def __init__(self, sock: SockT) -> None:
        #: The bound socket.
        self.socket = sock
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            return f"<anyrt {type(self).__name__} (closed)>"
        return f"<anyrt {type(self).__name__} {self.socket.getsockname()!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        return host_port(self.socket.getsockname())

    def _check_send(self, data: object, address: object) -> tuple[str, int]:
        """Check `send_to`'s arguments and that the socket is open; return the target."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_to() takes bytes, not {type(data).__name__}")
        target = check_address(address)
        self._check_open("send_to")
        return target

    def _check_receive(self, max_bytes: object) -> int:
        """Check `receive_from`'s argument and that the socket is open; return the size."""
        size = check_positive_int(max_bytes, "receive_from(max_bytes)")
        self._check_open("receive_from")
        return min(size, MAX_DATAGRAM)

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed UDP socket")

    def _raise_if_closed(self, exc: OSError) -> None:
        if self._closed or exc.errno == errno.EBADF:
            raise_closed(exc)


def raise_closed(cause: BaseException | None) -> NoReturn:
    """Raise `ClosedResourceError` for a UDP socket closed under a call."""
    raise ClosedResourceError("the UDP socket was closed") from cause


def host_port(name: Any) -> tuple[str, int]:
    """Return a socket address (``getsockname``, ``recvfrom``) as ``(host, port)``."""
    return (str(name[0]), int(name[1]))


@final
class UDPSocket(DatagramSocketBase[socket.socket]):
    """A bound UDP socket; implements `anyrt.DatagramSocket`.

    One task may wait in `receive_from` while others `send_to`. Datagrams keep their
    boundaries; one larger than ``max_bytes`` is truncated, as the OS does.
    """

    __slots__ = ("_runtime", "_token")

    def __init__(self, runtime: SocketWaits, sock: socket.socket) -> None:
        sock.setblocking(False)
        super().__init__(sock)
        self._runtime = runtime
        self._token = _next_token()

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``; ``host`` must be an IP address.

        Raises:
            ClosedResourceError: the socket was closed.
            OSError: as the OS reports it (``EMSGSIZE`` for a datagram that is too big).
        """
        target = self._check_send(data, address)
        while True:
            try:
                self.socket.sendto(data, target)
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_socket(self.socket, WRITE, self._token)
                self._check_open("send_to")
                continue
            except OSError as exc:
                self._raise_if_closed(exc)
                raise
            return

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's ``(host, port)``.

        Raises:
            ClosedResourceError: the socket is closed (also while this call waits).
        """
        size = self._check_receive(max_bytes)
        while True:
            try:
                data, sender = self.socket.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_socket(self.socket, READ, self._token)
                if self._closed:
                    raise_closed(None)
                continue
            except OSError as exc:
                self._raise_if_closed(exc)
                raise
            return data, host_port(sender)

    async def aclose(self) -> None:
        """Close the socket, waking a task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._runtime._notify_closing(self.socket)
        self.socket.close()


def check_bind_address(local_host: object, local_port: object) -> tuple[str | None, int]:
    """Check `open_udp`'s arguments; return them for ``getaddrinfo`` (``""``: None)."""
    if not isinstance(local_host, str):
        raise TypeError(f"local_host must be a str, not {type(local_host).__name__}")
    return local_host or None, check_port(local_port)


async def open_udp(runtime: UDPRuntime, local_host: str, local_port: int) -> UDPSocket:
    """Bind a UDP socket to ``local_host:local_port`` (port 0: any free port)."""
    host, port = check_bind_address(local_host, local_port)
    infos = await getaddrinfo(runtime, host, port, socket.SOCK_DGRAM, socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return UDPSocket(runtime, sock)
