"""UDP without an OS: `MemoryUDPSocket`, for the in-memory and the simulated network.

Datagrams follow UDP where a program can tell the difference: they keep their
boundaries, one larger than the receiver's ``max_bytes`` is truncated, a datagram
sent to a port nobody has bound is dropped without an error, and a socket whose
receive queue is full drops what arrives (the kernel's receive buffer, here the
network's ``buffer_size`` in bytes). The network routes each datagram: the in-memory
network delivers it at once, the simulated one after the link's latency and jitter
(so datagrams may be reordered), and drops it across a partition or at the link's
``drop_rate``.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Protocol, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource
from ._task import YIELD
from ._validate import check_address, check_positive_int


class _Waker(Protocol):
    async def wait(self) -> None: ...
    def fire(self) -> None: ...


class DatagramNetwork(Protocol):
    """What a `MemoryUDPSocket` needs from the network it is bound in."""

    buffer_size: int

    def route_datagram(
        self, sock: MemoryUDPSocket, payload: bytes, address: tuple[str, int]
    ) -> None: ...

    def unbind_udp(self, sock: MemoryUDPSocket) -> None: ...


# The largest payload of a UDP datagram over IPv4, as ``sendto`` enforces it.
MAX_DATAGRAM = 65507


@final
class MemoryUDPSocket(AsyncResource):
    """A bound UDP socket of the in-memory network; implements `anyrt.DatagramSocket`."""

    __slots__ = (
        "_address",
        "_closed",
        "_network",
        "_queue",
        "_queued_bytes",
        "_readable",
        "host",
    )

    def __init__(
        self,
        network: DatagramNetwork,
        address: tuple[str, int],
        readable: _Waker,
        *,
        host: str = "",
    ) -> None:
        self._network = network
        self._address = address
        self.host = host  # the simulated host it is bound on ("" in the in-memory network)
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._queued_bytes = 0
        self._readable = readable
        self._closed = False

    def __repr__(self) -> str:
        state = " (closed)" if self._closed else ""
        return f"<anyrt MemoryUDPSocket {self._address}{state}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        return self._address

    def deliver(self, data: bytes, sender: tuple[str, int]) -> None:
        """Queue a datagram that arrived (dropped if the receive buffer is full)."""
        if self._queued_bytes + len(data) > self._network.buffer_size:
            return  # a full receive buffer drops the datagram, as the kernel does
        self._queue.append((data, sender))
        self._queued_bytes += len(data)
        self._readable.fire()

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``; dropped if nobody has bound it.

        Raises:
            OSError: ``EMSGSIZE`` for a datagram over 65,507 bytes.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_to() takes bytes, not {type(data).__name__}")
        address = check_address(address)
        self._check_open("send_to")
        payload = bytes(data)
        if len(payload) > MAX_DATAGRAM:
            raise OSError(errno.EMSGSIZE, f"message too long: {len(payload)} bytes")
        await YIELD  # a send is a scheduling point, as on a stream
        self._check_open("send_to")
        self._network.route_datagram(self, payload, address)

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's ``(host, port)``."""
        check_positive_int(max_bytes, "receive_from(max_bytes)")
        self._check_open("receive_from")
        while not self._queue:
            await self._readable.wait()
            if self._closed:
                raise ClosedResourceError("the UDP socket was closed while receive_from() waited")
        data, sender = self._queue.popleft()
        self._queued_bytes -= len(data)
        return data[:max_bytes], sender

    async def aclose(self) -> None:
        """Close the socket, waking a task waiting on it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._network.unbind_udp(self)
        self._readable.fire()

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed UDP socket")
