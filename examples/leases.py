"""A leader lease over TCP, with a planted race that anyrt's simulator finds.

A lease server grants one lease at a time, for ``TTL`` seconds; nodes ask for it over
TCP and lead while they believe they hold it. `Node` has a classic bug: it counts its
lease from the moment the reply arrives, but the server started the lease when it
granted it, earlier by the reply's network delay (and by anything that slowed the
server down). When the holder is cut off and another node takes over, both believe
they lead: split brain. `FixedNode` counts from the moment it asked, which is never
later than the grant.

Run it: ``uv run python examples/leases.py [SEEDS]``. It searches 200 seeds for the
bug, replays the failing seed, then checks the fixed node on 2,000 seeds (or SEEDS).
"""

from __future__ import annotations

import contextlib
import sys
import time

import anyrt
from anyrt.testing import SimulationFailure, buggify, current_simulation, simulate

TTL = 1.0
PORT = 7000
NODES = ("n1", "n2", "n3")


class Lines:
    """Newline-terminated lines from a stream (a ``receive`` may return any part)."""

    def __init__(self, stream: anyrt.ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read(self) -> str | None:
        """Return the next line without its newline, or None at the end of the stream."""
        while (end := self.buffer.find(b"\n")) < 0:
            data = await self.stream.receive()
            if not data:
                return None
            self.buffer += data
        line = self.buffer[:end].decode()
        del self.buffer[: end + 1]
        return line


class LeaseServer:
    """Grants the lease to one node at a time, for ``ttl`` seconds of its clock.

    ``ACQUIRE name`` is answered ``GRANTED ttl`` (also to the holder: a renewal) or
    ``HELD seconds-left``.
    """

    def __init__(self, rt: anyrt.Runtime, ttl: float = TTL) -> None:
        self.rt = rt
        self.ttl = ttl
        self.holder: str | None = None
        self.expires = 0.0

    async def handle(self, stream: anyrt.ByteStream) -> None:
        """Serve one connection until the node hangs up."""
        # A node that hangs up without reading its reply resets the connection.
        with contextlib.suppress(ConnectionError):
            await self.answer(Lines(stream), stream)

    async def answer(self, lines: Lines, stream: anyrt.ByteStream) -> None:
        """Answer each request of one connection."""
        while (line := await lines.read()) is not None:
            name = line.removeprefix("ACQUIRE ")
            now = self.rt.now()
            if self.holder == name or now >= self.expires:
                self.holder, self.expires = name, now + self.ttl
                if buggify(0.1):
                    await self.rt.sleep(0.2)  # writing the grant to disk was slow
                await stream.send(f"GRANTED {self.ttl}\n".encode())
            else:
                await stream.send(f"HELD {self.expires - now}\n".encode())


class Ledger:
    """Every lease term the nodes believe in, checked on the simulation's one clock."""

    def __init__(self) -> None:
        self.terms: list[tuple[str, float, float]] = []

    def lead(self, name: str, start: float, end: float) -> None:
        """Record that ``name`` leads from ``start`` to ``end``; no one else may then."""
        for other, other_start, other_end in self.terms:
            if other != name and start < other_end and other_start < end:
                raise AssertionError(
                    f"split brain: {name} leads from t={start:.4f} while {other} leads "
                    f"until t={other_end:.4f}"
                )
        self.terms.append((name, start, end))


class Node:
    """A node that wants to lead: it asks for the lease, and leads while it holds it."""

    def __init__(self, rt: anyrt.Runtime, name: str, ledger: Ledger) -> None:
        self.rt = rt
        self.name = name
        self.ledger = ledger
        self.stream: anyrt.ByteStream | None = None
        self.lines: Lines | None = None

    def lease_end(self, asked_at: float, ttl: float) -> float:
        """When the lease just granted ends, on this node's clock."""
        return self.rt.now() + ttl  # the planted bug: counts from the reply

    async def ask(self) -> tuple[bool, float]:
        """Ask for the lease: (True, when it ends) or (False, when to ask again)."""
        asked_at = self.rt.now()
        if self.stream is None or self.lines is None:
            self.stream = await self.rt.connect_tcp("lock", PORT)
            self.lines = Lines(self.stream)
        await self.stream.send(f"ACQUIRE {self.name}\n".encode())
        reply = await self.lines.read()
        if reply is None:
            raise ConnectionResetError("the lease server hung up")
        verb, seconds = reply.split()
        if verb == "GRANTED":
            return True, self.lease_end(asked_at, float(seconds))
        return False, self.rt.now() + float(seconds)

    async def hang_up(self) -> None:
        """Drop the connection: a late reply must never answer a later request."""
        stream, self.stream, self.lines = self.stream, None, None
        if stream is not None:
            await stream.aclose()

    async def run(self, until: float) -> None:
        """Lead whenever possible until ``until``, renewing at half the lease."""
        while self.rt.now() < until:
            granted, when = False, self.rt.now() + 0.1
            try:
                async with self.rt.timeout(TTL / 2):
                    granted, when = await self.ask()
            except OSError:  # refused, reset, timed out: try again soon
                await self.hang_up()
            now = self.rt.now()
            if granted and when > now:
                self.ledger.lead(self.name, now, when)
                await self.rt.sleep((when - now) / 2)
            else:
                await self.rt.sleep_until(max(when, now))
        await self.hang_up()


class FixedNode(Node):
    """The fix: count the lease from when we asked, never later than the grant."""

    def lease_end(self, asked_at: float, ttl: float) -> float:
        """When the lease just granted ends, on this node's clock."""
        return asked_at + ttl


async def nemesis(rt: anyrt.Runtime, until: float) -> None:
    """Now and then, cut a random node off the lease server for a while."""
    sim = current_simulation()
    while rt.now() < until:
        await rt.sleep(sim.random.uniform(0.5, 2.0))
        victim = sim.random.choice(NODES)
        sim.partition(victim, "lock")
        await rt.sleep(sim.random.uniform(0.2, 1.5))
        sim.heal()


async def cluster(rt: anyrt.Runtime, node_type: type[Node], until: float = 5.0) -> None:
    """Run a lease server and three nodes under a nemesis; fail on split brain."""
    sim = current_simulation()
    sim.set_default_link(latency=0.005, jitter=0.05)
    lock = sim.host("lock")
    listener = await lock.listen_tcp("0.0.0.0", PORT)
    serving = rt.spawn(listener.serve(LeaseServer(lock).handle), name="lease-server")
    ledger = Ledger()
    async with anyrt.TaskGroup(rt) as tg:
        for name in NODES:
            tg.spawn(node_type(sim.host(name), name, ledger).run(until), name=name)
        tg.spawn(nemesis(rt, until), name="nemesis")
    await listener.aclose()
    await serving


async def test_naive_leases(rt: anyrt.Runtime) -> None:
    """The cluster with the planted bug."""
    await cluster(rt, Node)


async def test_fixed_leases(rt: anyrt.Runtime) -> None:
    """The cluster with the fix."""
    await cluster(rt, FixedNode)


def main() -> int:
    """Find the bug, replay it, check the fix; print what happens and how long it takes."""
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    started = time.perf_counter()
    try:
        simulate(test_naive_leases, seeds=range(200))
    except SimulationFailure as failure:
        print(failure)
        print(f"\nfound in {time.perf_counter() - started:.2f} s; replaying seed {failure.seed}:")
        try:
            simulate(test_naive_leases, seed=failure.seed)
        except SimulationFailure as again:
            print(f"  {str(again).splitlines()[0]}, after {again.steps:,} steps again")
    else:
        print("the planted bug was not found in 200 seeds")
        return 1
    stats = simulate(test_fixed_leases, seeds=range(seeds))
    print(
        f"\nthe fixed nodes pass {stats.seeds:,} seeds: {stats.steps:,} steps in "
        f"{stats.wall_time:.2f} s ({stats.steps_per_second:,.0f} steps/s, "
        f"{stats.virtual_time:,.0f} s of virtual time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
