"""The in-memory network: the reactor of the `single-threaded` runtime.

No socket and no selector: a connection is two bounded byte buffers, one per
direction. The semantics follow TCP where a program can tell the difference:

* ``connect_tcp`` to an address nobody listens on raises `ConnectionRefusedError`;
* ``send`` waits while the peer's receive buffer is full (backpressure);
* ``send_eof`` is a half-close: the peer reads what was sent, then ``b""``;
* closing a stream whose receive buffer still holds unread data resets the
  connection (as the kernel sends RST), so the peer's next ``receive`` raises
  `ConnectionResetError`; otherwise the peer sees EOF, and its ``send`` raises
  `BrokenPipeError`;
* closing a stream (or listener) wakes its own waiting tasks with
  `ClosedResourceError`.

Hosts are plain names; ``localhost`` is ``127.0.0.1`` and a listener bound to
``0.0.0.0``, ``::`` or ``""`` accepts connections to any host on its port.
"""

from __future__ import annotations

import errno
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, final

from ._exceptions import ClosedResourceError
from ._listener import AsyncResource, serve_listener
from ._memudp import MemoryUDPSocket
from ._protocols import ByteStream, Receiver, Sender
from ._streamguard import StreamGuard
from ._task import YIELD
from ._validate import check_port, check_positive_int

if TYPE_CHECKING:
    from ._native import NativeRuntime

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_ALIASES = {"localhost": "127.0.0.1", "::1": "::1"}
_FIRST_EPHEMERAL_PORT = 49152


def _normalize(host: str) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return _ALIASES.get(host, host)


class _Signal:
    """Wakes every task waiting for a buffer to change: one oneshot per waiting task.

    Only the loop's thread touches it, so it needs no lock (unlike `Event`).
    """

    __slots__ = ("_oneshot", "_senders")

    def __init__(self, runtime: NativeRuntime) -> None:
        self._oneshot = runtime.oneshot
        self._senders: list[Sender[None]] = []

    async def wait(self) -> None:
        """Wait for the next `fire`."""
        pair: tuple[Sender[None], Receiver[None]] = self._oneshot()
        sender, receiver = pair
        self._senders.append(sender)
        try:
            await receiver
        except BaseException:
            if sender in self._senders:  # cancelled before a fire: forget it
                self._senders.remove(sender)
            raise

    def fire(self) -> None:
        """Wake every waiting task, first come first woken."""
        senders = self._senders
        if senders:
            self._senders = []
            for sender in senders:
                sender.send(None)


class _Pipe:
    """One direction of a connection: a bounded buffer and its signals."""

    __slots__ = ("buffer", "capacity", "eof", "readable", "reader_closed", "reset", "writable")

    def __init__(self, runtime: NativeRuntime, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.eof = False
        self.reset = False
        self.reader_closed = False
        self.readable = _Signal(runtime)
        self.writable = _Signal(runtime)


@final
class MemoryStream(AsyncResource):
    """One end of an in-memory connection; implements `anyrt.ByteStream`."""

    __slots__ = (
        "_broken",
        "_closed",
        "_eof_sent",
        "_guard",
        "_inbound",
        "_outbound",
        "_runtime",
        "local",
        "remote",
    )

    def __init__(
        self,
        runtime: NativeRuntime,
        inbound: _Pipe,
        outbound: _Pipe,
        local: tuple[str, int],
        remote: tuple[str, int],
    ) -> None:
        self._runtime = runtime
        self._guard = StreamGuard(runtime)
        self._inbound = inbound
        self._outbound = outbound
        self.local = local
        self.remote = remote
        self._closed = False
        self._eof_sent = False
        self._broken = False  # a send failed: the connection is gone

    def __repr__(self) -> str:
        return f"<anyrt MemoryStream {self.local} -> {self.remote}>"

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
        """Return up to ``max_bytes`` bytes; ``b""`` at EOF."""
        check_positive_int(max_bytes, "receive(max_bytes)")
        self._check_open("receive")
        pipe = self._inbound
        while True:
            if pipe.buffer:
                data = bytes(pipe.buffer[:max_bytes])
                del pipe.buffer[:max_bytes]
                pipe.writable.fire()
                return data
            if pipe.reset and not self._broken:
                raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
            if pipe.reset:
                return b""  # a send failed already: the end of the stream, on every backend
            if pipe.eof:
                return b""
            await pipe.readable.wait()
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
        """Send all of ``data``, waiting while the peer's buffer is full."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        self._check_open("send")
        if self._eof_sent:
            raise ClosedResourceError("send() after send_eof()")
        pipe = self._outbound
        view = memoryview(data).cast("B")
        await YIELD  # a send is a scheduling point even when the buffer has room
        while True:
            if self._closed:
                raise ClosedResourceError("the stream was closed while send() waited")
            if pipe.reader_closed or pipe.reset:
                raise BrokenPipeError(errno.EPIPE, "the peer closed the connection")
            room = pipe.capacity - len(pipe.buffer)
            if room > 0:
                pipe.buffer += view[:room]
                view = view[room:]
                pipe.readable.fire()
                if not view:
                    return
            await pipe.writable.wait()

    async def send_eof(self) -> None:
        """Half-close: the peer reads what was sent, then ``b""``."""
        self._check_open("send_eof")
        if not self._eof_sent:
            self._eof_sent = True
            self._outbound.eof = True
            self._outbound.readable.fire()

    async def aclose(self) -> None:
        """Close the stream; idempotent."""
        if self._closed:
            return
        self._closed = True
        inbound, outbound = self._inbound, self._outbound
        if inbound.buffer and not inbound.eof:
            outbound.reset = True  # unread data: the kernel would answer with RST
        inbound.reader_closed = True
        inbound.buffer.clear()
        outbound.eof = True
        for signal in (inbound.readable, inbound.writable, outbound.readable, outbound.writable):
            signal.fire()


@final
class MemoryListener(AsyncResource):
    """A listening address in the in-memory network; implements `anyrt.Listener`."""

    __slots__ = ("_address", "_backlog", "_closed", "_network", "_ready")

    def __init__(self, network: MemoryNetwork, address: tuple[str, int]) -> None:
        self._network = network
        self._address = address
        self._backlog: deque[MemoryStream] = deque()
        self._ready = _Signal(network.runtime)
        self._closed = False

    def __repr__(self) -> str:
        return f"<anyrt MemoryListener {self._address}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        return self._address

    def _enqueue(self, stream: MemoryStream) -> None:
        self._backlog.append(stream)
        self._ready.fire()

    async def accept(self) -> MemoryStream:
        """Wait for the next connection."""
        while True:
            if self._closed:
                raise ClosedResourceError("accept() on a closed listener")
            if self._backlog:
                return self._backlog.popleft()
            await self._ready.wait()

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled, spawning ``handler(stream)`` per connection."""
        await serve_listener(self, self._network.runtime.spawn, handler)

    async def aclose(self) -> None:
        """Stop listening; pending connections are reset, waiting accepts woken."""
        if self._closed:
            return
        self._closed = True
        self._network._unbind(self)
        while self._backlog:
            await self._backlog.popleft().aclose()
        self._ready.fire()


class MemoryNetwork:
    """The virtual hosts and ports of one runtime."""

    def __init__(self, runtime: NativeRuntime, *, buffer_size: int = 65536) -> None:
        self.runtime = runtime
        self.buffer_size = check_positive_int(buffer_size, "network buffer_size")
        self._listeners: dict[tuple[str, int], list[MemoryListener]] = {}
        self._ports = itertools.count(_FIRST_EPHEMERAL_PORT)
        self._round_robin = itertools.count()
        self._reuse_port: dict[tuple[str, int], bool] = {}
        self._udp: dict[tuple[str, int], MemoryUDPSocket] = {}
        self._udp_ports = itertools.count(_FIRST_EPHEMERAL_PORT)

    def _find(self, host: str, port: int) -> list[MemoryListener] | None:
        return self._listeners.get((host, port)) or next(
            (
                self._listeners[key]
                for key in self._listeners
                if key[1] == port and key[0] in _WILDCARDS
            ),
            None,
        )

    def _free_port(self, host: str) -> int:
        for port in self._ports:
            if port > 65535:
                break
            if self._find(host, port) is None:
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free port left in the in-memory network")

    async def listen_tcp(self, host: str, port: int, *, reuse_port: bool = False) -> MemoryListener:
        """Bind ``host:port`` (port 0 picks a free port)."""
        host = _normalize(host)
        port = check_port(port)
        if port == 0:
            port = self._free_port(host)
        existing = self._listeners.get((host, port))
        if existing and not (reuse_port and self._reuse_port.get((host, port))):
            raise OSError(errno.EADDRINUSE, f"address already in use: {host}:{port}")
        if not existing:
            self._reuse_port[host, port] = reuse_port
        listener = MemoryListener(self, (host, port))
        self._listeners.setdefault((host, port), []).append(listener)
        await YIELD
        return listener

    def _unbind(self, listener: MemoryListener) -> None:
        key = listener.address
        group = self._listeners.get(key, [])
        if listener in group:
            group.remove(listener)
        if not group:
            self._listeners.pop(key, None)
            self._reuse_port.pop(key, None)

    async def connect_tcp(self, host: str, port: int) -> MemoryStream:
        """Connect to a listener, or raise `ConnectionRefusedError`."""
        host = _normalize(host)
        port = check_port(port)
        await YIELD
        group = self._find(host, port)
        if not group:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"connection refused: nothing listens on {host}:{port} in the in-memory network",
            )
        listener = group[next(self._round_robin) % len(group)]
        client_address = ("127.0.0.1" if host == "127.0.0.1" else host, self._free_port(host))
        to_server = _Pipe(self.runtime, self.buffer_size)
        to_client = _Pipe(self.runtime, self.buffer_size)
        client = MemoryStream(self.runtime, to_client, to_server, client_address, listener.address)
        server = MemoryStream(self.runtime, to_server, to_client, listener.address, client_address)
        listener._enqueue(server)
        return client

    async def open_udp(self, host: str, port: int) -> MemoryUDPSocket:
        """Bind a UDP socket to ``host:port`` (port 0 picks a free port)."""
        if not isinstance(host, str):
            raise TypeError(f"local_host must be a str, not {type(host).__name__}")
        host = _normalize(host)
        port = check_port(port)
        if port == 0:
            port = self._free_udp_port(host)
        elif self._udp_port_taken(host, port):
            raise OSError(errno.EADDRINUSE, f"address already in use: UDP {host}:{port}")
        sock = MemoryUDPSocket(self, (host, port), _Signal(self.runtime))
        self._udp[host, port] = sock
        await YIELD
        return sock

    def _free_udp_port(self, host: str) -> int:
        for port in self._udp_ports:
            if port > 65535:
                break
            if not self._udp_port_taken(host, port):
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free UDP port left in the in-memory network")

    def _udp_port_taken(self, host: str, port: int) -> bool:
        wildcard = host in _WILDCARDS
        return any(p == port and (wildcard or h in (host, *_WILDCARDS)) for h, p in self._udp)

    def _find_udp(self, address: tuple[str, int]) -> MemoryUDPSocket | None:
        host, port = _normalize(address[0]), address[1]
        found = self._udp.get((host, port))
        if found is None:
            found = next((self._udp[(w, port)] for w in _WILDCARDS if (w, port) in self._udp), None)
        return found

    def route_datagram(
        self, sock: MemoryUDPSocket, payload: bytes, address: tuple[str, int]
    ) -> None:
        """Deliver a datagram at once, or drop it if nobody has bound ``address``."""
        receiver = self._find_udp(address)
        if receiver is not None:
            host, port = sock.address
            # A socket bound to a wildcard sends from the address it sends to, as
            # loopback traffic does.
            receiver.deliver(payload, (address[0] if host in _WILDCARDS else host, port))

    def unbind_udp(self, sock: MemoryUDPSocket) -> None:
        """Forget a closed UDP socket."""
        if self._udp.get(sock.address) is sock:
            del self._udp[sock.address]

    async def aclose(self) -> None:
        """Close every listener and UDP socket."""
        for group in list(self._listeners.values()):
            for listener in list(group):
                await listener.aclose()
        for sock in list(self._udp.values()):
            await sock.aclose()
