"""UDP on an asyncio loop: `open_udp` and `AsyncioDatagramSocket`.

A plain non-blocking socket, tried first and waited on only when the OS says it would
block, with the runtime's own readiness waits (``add_reader``/``add_writer``, which
both the selector loop and uvloop have). That keeps the datagrams in the kernel's
buffer until someone receives them - no unbounded queue in Python, as a
`asyncio.DatagramProtocol` would need - and lets `aclose` wake a waiting receiver.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any, final

from anyrt import ClosedResourceError

from ._streams import _AsyncResource
from ._validate import check_port, check_positive_int

if TYPE_CHECKING:
    from ._runtime import LoopRuntime

#: No datagram is longer than this; ``recvfrom`` allocates its whole buffer first.
_MAX_DATAGRAM = 65536


@final
class AsyncioDatagramSocket(_AsyncResource):
    """A bound UDP socket on an asyncio loop; implements `anyrt.DatagramSocket`.

    One task may wait in `receive_from` while others `send_to`. Datagrams keep their
    boundaries; one larger than ``max_bytes`` is truncated, as the OS does.
    """

    __slots__ = ("_closed", "_runtime", "socket")

    def __init__(self, runtime: LoopRuntime, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._runtime = runtime
        #: The bound non-blocking socket.
        self.socket = sock
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt_asyncio AsyncioDatagramSocket (closed)>"
        return f"<anyrt_asyncio AsyncioDatagramSocket {self.socket.getsockname()!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        name = self.socket.getsockname()
        return (str(name[0]), int(name[1]))

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``; ``host`` must be an IP address.

        Raises:
            ClosedResourceError: the socket was closed.
            OSError: as the OS reports it (``EMSGSIZE`` for a datagram that is too big).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_to() takes bytes, not {type(data).__name__}")
        target = check_address(address)
        self._check_open("send_to")
        while True:
            try:
                self.socket.sendto(data, target)
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_io(self.socket.fileno(), readable=False)
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
        check_positive_int(max_bytes, "receive_from(max_bytes)")
        self._check_open("receive_from")
        while True:
            try:
                data, sender = self.socket.recvfrom(min(max_bytes, _MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                await self._runtime._wait_io(self.socket.fileno(), readable=True)
                if self._closed:
                    raise ClosedResourceError("the UDP socket was closed") from None
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
        fd = self.socket.fileno()
        if fd >= 0:
            self._runtime._forget_io(fd)
        self.socket.close()

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


async def open_udp(runtime: LoopRuntime, local_host: str, local_port: int) -> AsyncioDatagramSocket:
    """Bind a UDP socket to ``local_host:local_port`` (port 0: any free port)."""
    if not isinstance(local_host, str):
        raise TypeError(f"local_host must be a str, not {type(local_host).__name__}")
    local_port = check_port(local_port)
    flags = socket.AI_PASSIVE
    try:  # a numeric address needs no resolver thread
        infos = socket.getaddrinfo(
            local_host or None,
            local_port,
            0,
            socket.SOCK_DGRAM,
            0,
            flags | socket.AI_NUMERICHOST,
        )
    except socket.gaierror:
        infos = await runtime.spawn_blocking(
            socket.getaddrinfo, local_host or None, local_port, 0, socket.SOCK_DGRAM, 0, flags
        )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return AsyncioDatagramSocket(runtime, sock)
