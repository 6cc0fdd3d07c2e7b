"""The simulated network: hosts, links with latency, jitter and bandwidth, and faults.

It replaces the in-memory network of a `single-threaded` runtime that runs under an
`anyrt.testing.Simulation`. The TCP semantics are those of `anyrt._memnet` (refused
connects, backpressure, half-close, resets on close with unread data), with time and
faults added:

* a connection is two *flows*, one per direction. ``send`` puts a segment on the
  flow's wire, to arrive after the link's latency, a random jitter and, with a
  bandwidth, its transmission time; a flow never reorders (TCP is ordered), so a
  segment never arrives before one sent earlier on the same flow;
* the window is the receiver's buffer: ``send`` waits while the bytes in flight plus
  the bytes unread reach the buffer size;
* what one end does reaches the other only by a segment: the end of data (FIN), a
  reset (RST), and the handshake. ``connect_tcp`` takes a round trip; the server's
  ``accept`` sees the connection half a round trip later. Data that arrives at an end
  that was closed is answered with a reset, as a kernel does;
* a partition or a hold between two hosts stops delivery between them: segments wait
  on the wire (TCP retransmits them) and arrive one link latency after `heal` or
  `release`. A ``connect_tcp`` across a partition fails with `TimeoutError` after the
  simulation's ``connect_timeout``; across a hold it waits for the release;
* a link may reset connections and refuse connects at random, and split a segment in
  two that arrive separately, each with a configured probability.

Everything random is drawn from the simulation's one seeded generator, and every
collection iterated here keeps insertion order, so a seed fully determines a run.
Connections to the host itself (``127.0.0.1``, or its own name) go over a loopback
link: no latency, no fault.
"""

from __future__ import annotations

import errno
import math
import socket
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

from ._memnet import _Signal
from ._memudp import MemoryUDPSocket
from ._simstream import (
    ANY,
    FIN,
    RST,
    Accept,
    DatagramArrival,
    Delivery,
    Flow,
    Host,
    Segment,
    SimListener,
    SimStream,
)
from ._sync import Event
from ._task import YIELD
from ._validate import check_port, check_positive_int

if TYPE_CHECKING:
    from ._sim import Simulation
    from ._single_threaded import SingleThreaded

__all__ = ["DEFAULT_HOST", "Link", "SimListener", "SimNetwork", "SimStream"]

#: The host of the runtime a simulation passes to the test function.
DEFAULT_HOST: Final = "main"

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})
_RESERVED: Final = _LOOPBACK | _WILDCARDS | {"localhost"}

# Where a listener is bound on its host: every address (`ANY`), loopback only, or its name.
_LO: Final = 1
_NAME: Final = 2


@dataclass(frozen=True, slots=True)
class Link:
    """How the network between two hosts behaves, in both directions.

    Attributes:
        latency: seconds a segment takes from one host to the other.
        jitter: up to this many more seconds, drawn uniformly per segment (a flow
            still delivers in order: a segment waits for the one before it).
        bandwidth: bytes per second the link carries in each direction, shared by
            its connections (``None``: unlimited).
        reset_rate: probability that a segment is lost and resets its connection
            (both ends then see `ConnectionResetError` / `BrokenPipeError`).
        refuse_rate: probability that a connect is refused although a listener is
            there.
        split_rate: probability that a segment is split in two parts that arrive
            separately, so that a ``receive`` may return part of one ``send``.
        drop_rate: probability that a UDP datagram is lost (datagrams are also lost
            across a partition or a hold, and may arrive out of order with jitter).
    """

    latency: float = 0.001
    jitter: float = 0.001
    bandwidth: float | None = None
    reset_rate: float = 0.0
    refuse_rate: float = 0.0
    split_rate: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Link({name}=...) takes seconds, not {type(value).__name__}")
            if not 0 <= value < math.inf:
                raise ValueError(f"Link({name}=...) takes finite seconds >= 0, got {value!r}")
        bandwidth = self.bandwidth
        if bandwidth is not None and (
            isinstance(bandwidth, bool)
            or not isinstance(bandwidth, (int, float))
            or not 0 < bandwidth < math.inf
        ):
            raise ValueError(
                f"Link(bandwidth=...) takes bytes per second > 0, or None for unlimited; "
                f"got {bandwidth!r}"
            )
        for name in ("reset_rate", "refuse_rate", "split_rate", "drop_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Link({name}=...) takes a probability, not {type(value).__name__}")
            if not 0 <= value <= 1:
                raise ValueError(f"Link({name}=...) takes a probability in [0, 1], got {value!r}")


_LINK_FIELDS: Final = frozenset(field.name for field in fields(Link))
_LOOPBACK_LINK: Final = Link(latency=0.0, jitter=0.0)


def changed_link(link: Link, changes: dict[str, Any]) -> Link:
    """Return ``link`` with ``changes`` applied, refusing unknown settings."""
    unknown = sorted(set(changes) - _LINK_FIELDS)
    if unknown:
        raise TypeError(
            f"unknown link setting {', '.join(map(repr, unknown))}; the settings are "
            f"{', '.join(sorted(_LINK_FIELDS))}"
        )
    return replace(link, **changes)


class SimNetwork:
    """The hosts and links of one simulation, and the connections between them."""

    def __init__(
        self, runtime: SingleThreaded, simulation: Simulation, *, buffer_size: int
    ) -> None:
        self.runtime = runtime
        self.simulation = simulation
        self.buffer_size = check_positive_int(buffer_size, "network buffer_size")
        self.default_link = Link()
        self.connect_timeout = 10.0
        self._random = simulation.random.random
        self._hosts: dict[str, Host] = {DEFAULT_HOST: Host(DEFAULT_HOST)}
        self._links: dict[frozenset[str], Link] = {}
        self._busy_until: dict[tuple[str, str], float] = {}  # bandwidth, per direction
        self._partitioned: dict[frozenset[str], None] = {}
        self._held: dict[frozenset[str], None] = {}
        self._stalled: dict[Flow, None] = {}
        self._unblocked = Event(runtime)

    # -- hosts and links ------------------------------------------------------------------

    def add_host(self, name: str) -> None:
        """Create host ``name`` if it does not exist yet."""
        if not isinstance(name, str):
            raise TypeError(f"a host name is a str, not {type(name).__name__}")
        if not name or name in _RESERVED:
            raise ValueError(
                f"{name!r} cannot name a simulated host: it is an address every host has "
                "(choose a name such as 'db' or 'node-1')"
            )
        if name not in self._hosts:
            self._hosts[name] = Host(name)

    def hosts(self) -> tuple[str, ...]:
        """Return the host names, in order of creation."""
        return tuple(self._hosts)

    def check_pair(self, a: str, b: str, what: str) -> frozenset[str]:
        """Return the pair of hosts ``a`` and ``b``, which must exist and differ."""
        for name in (a, b):
            if name not in self._hosts:
                raise ValueError(
                    f"{what}: there is no host {name!r} in this simulation (hosts: "
                    f"{', '.join(map(repr, self._hosts))}); create it with sim.host({name!r})"
                )
        if a == b:
            raise ValueError(f"{what} takes two different hosts, got {a!r} twice")
        return frozenset((a, b))

    def link(self, a: str, b: str) -> Link:
        """Return how the link between hosts ``a`` and ``b`` behaves."""
        if a == b:
            return _LOOPBACK_LINK
        return self._links.get(frozenset((a, b)), self.default_link)

    def set_link(self, a: str, b: str, link: Link) -> None:
        """Configure the link between ``a`` and ``b``."""
        self._links[self.check_pair(a, b, "set_link()")] = link

    def _delay(self, link: Link) -> float:
        """One-way delay of a control segment (no transmission time)."""
        delay = link.latency
        if link.jitter:
            delay += self._random() * link.jitter
        return delay

    # -- partitions and holds ---------------------------------------------------------------

    def partition(self, a: str, b: str) -> None:
        """Stop all traffic between ``a`` and ``b`` until `heal`."""
        pair = self.check_pair(a, b, "partition()")
        if pair not in self._partitioned:
            self._partitioned[pair] = None
            self.simulation._note(f"partition {a} | {b}")

    def hold(self, a: str, b: str) -> None:
        """Hold all traffic between ``a`` and ``b`` on the wire until `release`."""
        pair = self.check_pair(a, b, "hold()")
        if pair not in self._held:
            self._held[pair] = None
            self.simulation._note(f"hold {a} | {b}")

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """End the partition between ``a`` and ``b``, or every partition."""
        self._unblock(self._partitioned, a, b, "heal")

    def release(self, a: str | None = None, b: str | None = None) -> None:
        """Release the hold between ``a`` and ``b``, or every hold."""
        self._unblock(self._held, a, b, "release")

    def blocked(self, a: str, b: str) -> bool:
        """Whether a partition or a hold stops traffic between ``a`` and ``b``."""
        pair = frozenset((a, b))
        return pair in self._partitioned or pair in self._held

    def _unblock(
        self, blocks: dict[frozenset[str], None], a: str | None, b: str | None, what: str
    ) -> None:
        if (a is None) != (b is None):
            raise TypeError(f"{what}() takes two hosts, or none for all of them")
        if a is None or b is None:
            pairs = list(blocks)
        else:
            pair = self.check_pair(a, b, f"{what}()")
            pairs = [pair] if pair in blocks else []
        if not pairs:
            return
        for pair in pairs:
            del blocks[pair]
            self.simulation._note(f"{what} {' | '.join(sorted(pair))}")
        now = self.runtime.now()
        for flow in list(self._stalled):
            if flow.pair in self._partitioned or flow.pair in self._held:
                continue
            del self._stalled[flow]
            flow.stalled = False
            # Retransmitted (or let go): the waiting segments arrive one latency from now.
            base = now + self.link(flow.src, flow.dst).latency
            flow.wire = deque((max(at, base), segment) for at, segment in flow.wire)
            flow.last_arrival = max(flow.last_arrival, base)
            self._arm(flow)
        unblocked, self._unblocked = self._unblocked, Event(self.runtime)
        unblocked.set()

    # -- the wire ---------------------------------------------------------------------------

    def _transmit(self, flow: Flow, segment: Segment, size: int) -> None:
        """Put ``segment`` on ``flow``'s wire, to arrive after the link's delays."""
        now = self.runtime._now_fn()
        if flow.src == flow.dst:
            at = now
        else:
            link = self.link(flow.src, flow.dst)
            at = now
            if link.bandwidth is not None and size:
                direction = (flow.src, flow.dst)
                start = max(now, self._busy_until.get(direction, now))
                at = start + size / link.bandwidth
                self._busy_until[direction] = at
            at += link.latency
            if link.jitter:
                at += self._random() * link.jitter
        at = max(at, flow.last_arrival)  # in order: never before the segment sent earlier
        flow.last_arrival = at
        flow.wire.append((at, segment))
        flow.wire_bytes += size
        if not flow.armed and not flow.stalled:
            self._arm(flow)

    def _send_data(self, flow: Flow, data: bytes) -> None:
        """Transmit ``data``, or the fault a link may inject instead."""
        if flow.src != flow.dst:
            link = self.link(flow.src, flow.dst)
            if link.reset_rate and self._random() < link.reset_rate:
                self._inject_reset(flow)
                return
            if link.split_rate and len(data) > 1 and self._random() < link.split_rate:
                cut = 1 + int(self._random() * (len(data) - 1))
                self._transmit(flow, data[:cut], cut)
                # The second part is held back for up to one more latency.
                flow.last_arrival += self._random() * max(link.latency, 1e-6)
                self._transmit(flow, data[cut:], len(data) - cut)
                return
        self._transmit(flow, data, len(data))

    def _inject_reset(self, flow: Flow) -> None:
        """Lose a segment and reset its connection: both ends get an RST."""
        self.simulation._note(f"fault: reset the connection {flow.src} -> {flow.dst}")
        self._transmit(flow, RST, 0)
        self._transmit(flow.reverse, RST, 0)

    def _arm(self, flow: Flow) -> None:
        if flow.wire:
            flow.armed = True
            self.runtime._loop.timers.push(Delivery(flow.wire[0][0], self, flow))

    def _deliver(self, flow: Flow) -> None:
        """Deliver the segments of ``flow`` that are due (the timer fired)."""
        if flow.src != flow.dst and (self._partitioned or self._held):
            pair = flow.pair
            if pair in self._partitioned or pair in self._held:
                flow.stalled = True
                self._stalled[flow] = None
                return
        now = self.runtime._now_fn()
        wire = flow.wire
        while wire and wire[0][0] <= now:
            segment = wire.popleft()[1]
            if type(segment) is bytes:
                flow.wire_bytes -= len(segment)
                self._arrive_data(flow, segment)
            elif segment is FIN:
                flow.eof = True
                flow.readable.fire()
            elif segment is RST:
                self._arrive_reset(flow)
            else:
                assert isinstance(segment, Accept)
                self._arrive_accept(flow, segment)
        self._arm(flow)

    def _arrive_data(self, flow: Flow, data: bytes) -> None:
        if flow.reset:
            return
        if flow.reader_closed:
            flow.writable.fire()  # the bytes left the window
            if not flow.rst_sent:  # a closed end answers data with a reset
                flow.rst_sent = True
                self._transmit(flow.reverse, RST, 0)
            return
        flow.buffer += data
        flow.readable.fire()

    def _arrive_reset(self, flow: Flow) -> None:
        if flow.reset:
            return
        flow.reset = True
        reverse = flow.reverse
        reverse.broken = True
        for signal in (flow.readable, flow.writable, reverse.readable, reverse.writable):
            signal.fire()

    def _arrive_accept(self, flow: Flow, accept: Accept) -> None:
        listener = accept.listener
        if listener._closed:
            accept.stream._closed = True
            flow.reader_closed = True
            flow.rst_sent = True
            self._transmit(flow.reverse, RST, 0)
            return
        listener._enqueue(accept.stream)

    # -- listen and connect -----------------------------------------------------------------

    async def listen_tcp(self, host: str, port: int, *, reuse_port: bool = False) -> SimListener:
        """Listen on ``host:port`` of the default host."""
        return await self.listen_on(DEFAULT_HOST, host, port, reuse_port=reuse_port)

    async def connect_tcp(self, host: str, port: int) -> SimStream:
        """Connect from the default host."""
        return await self.connect_from(DEFAULT_HOST, host, port)

    async def listen_on(
        self, source: str, host: str, port: int, *, reuse_port: bool = False
    ) -> SimListener:
        """Bind ``host:port`` on host ``source`` (port 0 picks a free port)."""
        address = _normalize(host)
        port = check_port(port)
        machine = self._hosts[source]
        if address in _LOOPBACK:
            kind = _LO
        elif address in _WILDCARDS:
            kind = ANY
        elif address == source:
            kind = _NAME
        else:
            owner = (
                f"it is host {address!r}: listen through sim.host({address!r})"
                if address in self._hosts
                else "bind to the host's own name, 127.0.0.1 or 0.0.0.0"
            )
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"cannot listen on {address!r} from host {source!r}: {owner}",
            )
        if port == 0:
            port = machine.free_port()
        key = (kind, port)
        clashes = (
            [k for k in machine.listeners if k[1] == port]
            if kind == ANY
            else [k for k in ((kind, port), (ANY, port)) if k in machine.listeners]
        )
        if clashes and not (reuse_port and clashes == [key] and machine.reuse.get(key)):
            raise OSError(errno.EADDRINUSE, f"address already in use: {address}:{port}")
        if key not in machine.listeners:
            machine.reuse[key] = reuse_port
        listener = SimListener(self, machine, key, (address, port))
        machine.listeners.setdefault(key, []).append(listener)
        await YIELD
        return listener

    # -- UDP ---------------------------------------------------------------------------------

    async def open_udp(self, host: str, port: int) -> MemoryUDPSocket:
        """Bind a UDP socket on the default host."""
        return await self.open_udp_on(DEFAULT_HOST, host, port)

    async def open_udp_on(self, source: str, host: str, port: int) -> MemoryUDPSocket:
        """Bind a UDP socket to ``host:port`` on host ``source`` (port 0: a free port)."""
        if not isinstance(host, str):
            raise TypeError(f"local_host must be a str, not {type(host).__name__}")
        address = _normalize(host)
        port = check_port(port)
        machine = self._hosts[source]
        if address not in _LOOPBACK and address not in _WILDCARDS and address != source:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"cannot bind UDP {address!r} on host {source!r}: bind to the host's own "
                "name, 127.0.0.1 or 0.0.0.0",
            )
        if port == 0:
            port = machine.free_port()
        elif port in machine.udp:
            raise OSError(errno.EADDRINUSE, f"address already in use: UDP {address}:{port}")
        sock = MemoryUDPSocket(self, (address, port), _Signal(self.runtime), host=source)
        machine.udp[port] = sock
        await YIELD
        return sock

    def route_datagram(
        self, sock: MemoryUDPSocket, payload: bytes, address: tuple[str, int]
    ) -> None:
        """Send a datagram over the link: it arrives after the link's delay, or is lost."""
        source = sock.host
        target, kind = self._resolve(source, _normalize(address[0]))
        port = address[1]
        sender = ("127.0.0.1" if kind == _LO else source, sock.address[1])
        delay = 0.0
        if target.name != source:
            link = self.link(source, target.name)
            if link.drop_rate and self._random() < link.drop_rate:
                self.simulation._note(f"fault: drop a datagram {source} -> {target.name}:{port}")
                return
            delay = self._delay(link)

        def arrive() -> None:
            if target.name != source and self.blocked(source, target.name):
                self.simulation._note(
                    f"lost across a partition: a datagram {source} -> {target.name}:{port}"
                )
                return
            receiver = target.udp.get(port)
            if receiver is not None:
                receiver.deliver(payload, sender)

        self.runtime._loop.timers.push(DatagramArrival(self.runtime._now_fn() + delay, arrive))

    def unbind_udp(self, sock: MemoryUDPSocket) -> None:
        """Forget a closed UDP socket."""
        machine = self._hosts[sock.host]
        if machine.udp.get(sock.address[1]) is sock:
            del machine.udp[sock.address[1]]

    def _resolve(self, source: str, address: str) -> tuple[Host, int]:
        if address in _LOOPBACK or address in _WILDCARDS:
            return self._hosts[source], _LO
        host = self._hosts.get(address)
        if host is None:
            raise socket.gaierror(
                socket.EAI_NONAME,
                f"Name or service not known: {address!r} is not a host of this simulation "
                f"(hosts: {', '.join(map(repr, self._hosts))}; create it with "
                f"sim.host({address!r}))",
            )
        return host, _NAME

    async def connect_from(self, source: str, host: str, port: int) -> SimStream:
        """Connect from host ``source`` to ``host:port``; raise like a kernel would."""
        address = _normalize(host)
        port = check_port(port)
        await YIELD
        target, kind = self._resolve(source, address)
        if target.name == source:
            group = target.find(kind, port)
            if not group:
                raise _refused(address, port, source)
            return self._open(source, group, address, port)
        link = self.link(source, target.name)
        deadline = self.runtime.now() + self.connect_timeout
        await self._travel(source, target.name, deadline, address, port)  # SYN
        group = target.find(kind, port)
        injected = bool(group) and bool(link.refuse_rate) and self._random() < link.refuse_rate
        if not group or injected:
            if injected:
                self.simulation._note(f"fault: refuse {source} -> {address}:{port}")
            await self._travel(target.name, source, deadline, address, port)  # RST
            raise _refused(address, port, source)
        client = self._open(source, group, address, port)
        await self._travel(target.name, source, deadline, address, port)  # SYN-ACK
        # The client's ACK: the server accepts when it arrives, and whatever the
        # client sends queues behind it.
        accept, client._accept = client._accept, None
        assert accept is not None
        self._transmit(client._outbound, accept, 0)
        return client

    def _open(self, source: str, group: list[SimListener], address: str, port: int) -> SimStream:
        listener = group[0] if len(group) == 1 else group[int(self._random() * len(group))]
        server_host = listener._host.name
        client_port = self._hosts[source].free_port()
        local_host = "127.0.0.1" if address in _LOOPBACK else source
        to_server = Flow(self.runtime, source, server_host, self.buffer_size)
        to_client = Flow(self.runtime, server_host, source, self.buffer_size)
        to_server.reverse = to_client
        to_client.reverse = to_server
        client = SimStream(self, to_client, to_server, (local_host, client_port), (address, port))
        server = SimStream(self, to_server, to_client, (address, port), (local_host, client_port))
        if server_host == source:
            listener._enqueue(server)  # loopback: no handshake to wait for
        else:
            client._accept = Accept(listener, server)
        return client

    async def _travel(self, src: str, dst: str, deadline: float, address: str, port: int) -> None:
        """Wait for a handshake segment to cross from ``src`` to ``dst``."""
        runtime = self.runtime
        await runtime.sleep(self._delay(self.link(src, dst)))
        while self.blocked(src, dst):
            unblocked = self._unblocked
            if frozenset((src, dst)) in self._held:
                await unblocked.wait()
                continue
            remaining = deadline - runtime.now()
            try:
                if remaining <= 0:
                    raise TimeoutError  # noqa: TRY301 - one path for both ways to time out
                async with runtime.timeout(remaining):
                    await unblocked.wait()
            except TimeoutError:
                raise TimeoutError(
                    errno.ETIMEDOUT,
                    f"connect from host {src!r} to {address}:{port} timed out after "
                    f"{self.connect_timeout} s: the hosts are partitioned",
                ) from None
            await runtime.sleep(self._delay(self.link(src, dst)))

    async def aclose(self) -> None:
        """Close every listener and UDP socket of every host."""
        for host in list(self._hosts.values()):
            for group in list(host.listeners.values()):
                for listener in list(group):
                    await listener.aclose()
            for sock in list(host.udp.values()):
                await sock.aclose()


def _normalize(host: str) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return "127.0.0.1" if host == "localhost" else host


def _refused(address: str, port: int, source: str) -> ConnectionRefusedError:
    return ConnectionRefusedError(
        errno.ECONNREFUSED,
        f"connection refused: nothing listens on {address}:{port} (from host {source!r})",
    )
