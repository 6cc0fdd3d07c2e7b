"""The pieces of a simulated connection: flows, segments, streams, listeners, hosts.

A connection is two `Flow` objects, one per direction: the segments on the wire, each
with its arrival time, then the receiver's buffer. The `SimNetwork` (``_simnet``) puts
segments on the wire and delivers them with a `Delivery` timer; a `SimStream` reads
and writes its two flows; a `Host` holds its listeners and its ephemeral ports.
"""

from __future__ import annotations

import errno
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource, serve_listener
from ._listener import _handler_name as handler_name
from ._memnet import _Signal
from ._memudp import MemoryUDPSocket
from ._protocols import ByteStream
from ._streamguard import StreamGuard
from ._task import YIELD
from ._timers import TimerEntry
from ._validate import check_positive_int

if TYPE_CHECKING:
    from ._simnet import SimNetwork
    from ._single_threaded import SingleThreaded

__all__ = [
    "ANY",
    "FIN",
    "FIRST_EPHEMERAL_PORT",
    "RST",
    "Accept",
    "Delivery",
    "Flow",
    "Host",
    "Marker",
    "Segment",
    "SimListener",
    "SimStream",
]

FIRST_EPHEMERAL_PORT: Final = 49152
#: A listener bound to every address of its host (the other kinds are in ``_simnet``).
ANY: Final = 0


class Marker:
    """A control segment: the end of data, or a reset."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


FIN: Final = Marker("FIN")
RST: Final = Marker("RST")


class Accept:
    """The handshake's last segment: on arrival the server's end joins the backlog."""

    __slots__ = ("listener", "stream")

    def __init__(self, listener: SimListener, stream: SimStream) -> None:
        self.listener = listener
        self.stream = stream


Segment = bytes | Marker | Accept


class Flow:
    """One direction of a connection: segments on the wire, then the receiver's buffer."""

    __slots__ = (
        "armed",
        "broken",
        "buffer",
        "capacity",
        "dst",
        "eof",
        "last_arrival",
        "pair",
        "readable",
        "reader_closed",
        "reset",
        "reverse",
        "rst_sent",
        "src",
        "stalled",
        "wire",
        "wire_bytes",
        "writable",
    )

    reverse: Flow

    def __init__(self, runtime: SingleThreaded, src: str, dst: str, capacity: int) -> None:
        self.src = src
        self.dst = dst
        self.pair = frozenset((src, dst))
        self.capacity = capacity
        self.wire: deque[tuple[float, Segment]] = deque()
        self.wire_bytes = 0
        self.last_arrival = -math.inf
        self.armed = False  # a delivery timer is pending for the head of the wire
        self.stalled = False  # the head is due but a partition or hold stops it
        self.buffer = bytearray()  # arrived, not yet read
        self.eof = False  # FIN arrived
        self.reset = False  # RST arrived: the receiver's reads fail once drained
        self.broken = False  # the sender learnt of a reset: its sends fail
        self.reader_closed = False  # the receiving end was closed
        self.rst_sent = False  # the receiving end already answered with a reset
        self.readable = _Signal(runtime)
        self.writable = _Signal(runtime)


class Delivery(TimerEntry):
    """The timer that delivers the due head of a flow's wire."""

    __slots__ = ("flow", "network")

    def __init__(self, deadline: float, network: SimNetwork, flow: Flow) -> None:
        super().__init__(deadline)
        self.network = network
        self.flow = flow

    def fire(self) -> None:
        self.flow.armed = False
        self.network._deliver(self.flow)


@final
class SimStream(AsyncResource):
    """One end of a simulated TCP connection; implements `anyrt.ByteStream`."""

    __slots__ = (
        "_accept",
        "_broken",
        "_closed",
        "_eof_sent",
        "_guard",
        "_inbound",
        "_network",
        "_outbound",
        "local",
        "remote",
    )

    def __init__(
        self,
        network: SimNetwork,
        inbound: Flow,
        outbound: Flow,
        local: tuple[str, int],
        remote: tuple[str, int],
    ) -> None:
        self._network = network
        self._guard = StreamGuard(network.runtime)
        self._inbound = inbound
        self._outbound = outbound
        self.local = local
        self.remote = remote
        self._closed = False
        self._eof_sent = False
        self._broken = False  # a send failed: the connection is gone
        self._accept: Accept | None = None  # a client's, until its handshake ends

    def __repr__(self) -> str:
        return f"<anyrt SimStream {self.local} -> {self.remote}>"

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed stream")

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes; ``b""`` at EOF. One task at a time."""
        guard = self._guard
        guard.begin_receive()
        try:
            return await self._receive(max_bytes)
        finally:
            guard.end_receive()

    async def _receive(self, max_bytes: int) -> bytes:
        """Return up to ``max_bytes`` bytes that have arrived; ``b""`` at EOF."""
        check_positive_int(max_bytes, "receive(max_bytes)")
        self._check_open("receive")
        flow = self._inbound
        while True:
            if flow.buffer:
                data = bytes(flow.buffer[:max_bytes])
                del flow.buffer[:max_bytes]
                flow.writable.fire()
                return data
            if flow.reset and not self._broken:
                raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
            if flow.reset:
                return b""  # a send failed already: the end of the stream, on every backend
            if flow.eof:
                return b""
            await flow.readable.wait()
            if self._closed:
                raise ClosedResourceError("the stream was closed while receive() waited")

    async def send(self, data: bytes) -> None:
        """Send all of ``data``; concurrent sends go one after the other."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        guard = self._guard
        await guard.begin_send()
        try:
            await self._send(data)
        except ConnectionError:
            self._broken = True  # receive() reports EOF from now on
            raise
        finally:
            guard.end_send()

    async def _send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the window (the peer's buffer) is full."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        self._check_open("send")
        if self._eof_sent:
            raise ClosedResourceError("send() after send_eof()")
        flow = self._outbound
        view = memoryview(data).cast("B")
        await YIELD  # a send is a scheduling point even when the window is open
        while True:
            if self._closed:
                raise ClosedResourceError("the stream was closed while send() waited")
            if flow.broken:
                raise BrokenPipeError(errno.EPIPE, "the connection was reset")
            if not view:
                return
            room = flow.capacity - len(flow.buffer) - flow.wire_bytes
            if room > 0:
                self._network._send_data(flow, bytes(view[:room]))
                view = view[room:]
                if not view:
                    return
            await flow.writable.wait()

    async def send_eof(self) -> None:
        """Half-close: the peer reads what was sent, then ``b""``."""
        self._check_open("send_eof")
        if not self._eof_sent:
            self._eof_sent = True
            if not self._outbound.broken:
                self._network._transmit(self._outbound, FIN, 0)

    async def aclose(self) -> None:
        """Close the stream; idempotent.

        With unread data the peer is reset (as a kernel does); otherwise it reads
        what is in flight, then EOF.
        """
        if self._closed:
            return
        self._closed = True
        inbound, outbound = self._inbound, self._outbound
        unread = bool(inbound.buffer) and not inbound.eof
        inbound.reader_closed = True
        inbound.buffer.clear()
        if not outbound.broken and not inbound.reset:
            if unread:
                inbound.rst_sent = True
                self._network._transmit(outbound, RST, 0)
            elif not self._eof_sent:
                self._network._transmit(outbound, FIN, 0)
        self._eof_sent = True
        for signal in (inbound.readable, inbound.writable, outbound.readable, outbound.writable):
            signal.fire()


@final
class SimListener(AsyncResource):
    """A listening address of a simulated host; implements `anyrt.Listener`."""

    __slots__ = ("_address", "_backlog", "_closed", "_host", "_key", "_network", "_ready")

    def __init__(
        self, network: SimNetwork, host: Host, key: tuple[int, int], address: tuple[str, int]
    ) -> None:
        self._network = network
        self._host = host
        self._key = key
        self._address = address
        self._backlog: deque[SimStream] = deque()
        self._ready = _Signal(network.runtime)
        self._closed = False

    def __repr__(self) -> str:
        return f"<anyrt SimListener {self._address} on host {self._host.name!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        return self._address

    def _enqueue(self, stream: SimStream) -> None:
        self._backlog.append(stream)
        self._ready.fire()

    async def accept(self) -> SimStream:
        """Wait for the next connection."""
        while True:
            if self._closed:
                raise ClosedResourceError("accept() on a closed listener")
            if self._backlog:
                return self._backlog.popleft()
            await self._ready.wait()

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled, spawning ``handler(stream)`` per connection.

        Each handler's task is named after the handler and the peer (as in
        ``serve:Server.handle <- app:49152``), to tell them apart in a trace.
        """
        name = handler_name(handler)

        def task_name(stream: ByteStream) -> str:
            host, port = stream.remote  # type: ignore[attr-defined]  # a SimStream
            return f"{name} <- {host}:{port}"

        await serve_listener(self, self._network.runtime.spawn, handler, task_name=task_name)

    async def aclose(self) -> None:
        """Stop listening; pending connections are reset, waiting accepts woken."""
        if self._closed:
            return
        self._closed = True
        self._host.unbind(self)
        while self._backlog:
            await self._backlog.popleft().aclose()
        self._ready.fire()


class Host:
    """One simulated machine: its listeners, UDP sockets and ephemeral ports."""

    __slots__ = ("listeners", "name", "ports", "reuse", "udp")

    def __init__(self, name: str) -> None:
        self.name = name
        self.listeners: dict[tuple[int, int], list[SimListener]] = {}
        self.udp: dict[int, MemoryUDPSocket] = {}
        self.reuse: dict[tuple[int, int], bool] = {}
        self.ports = itertools.count(FIRST_EPHEMERAL_PORT)

    def find(self, kind: int, port: int) -> list[SimListener]:
        """Return the listeners a connection to ``port`` by ``kind`` of address reaches."""
        return self.listeners.get((kind, port)) or self.listeners.get((ANY, port)) or []

    def port_used(self, port: int) -> bool:
        return any(key[1] == port for key in self.listeners)

    def free_port(self) -> int:
        for port in self.ports:
            if port > 65535:
                break
            if not self.port_used(port) and port not in self.udp:
                return port
        raise OSError(errno.EADDRNOTAVAIL, f"no free port left on host {self.name!r}")

    def unbind(self, listener: SimListener) -> None:
        key = listener._key
        group = self.listeners.get(key, [])
        if listener in group:
            group.remove(listener)
        if not group:
            self.listeners.pop(key, None)
            self.reuse.pop(key, None)


class DatagramArrival(TimerEntry):
    """The timer at which a datagram reaches its destination host."""

    __slots__ = ("deliver",)

    def __init__(self, deadline: float, deliver: Callable[[], None]) -> None:
        super().__init__(deadline)
        self.deliver = deliver

    def fire(self) -> None:
        self.deliver()
