"""The simulated network: hosts, latency, bandwidth, partitions, holds and faults."""

from __future__ import annotations

import errno
import importlib
import inspect
import pkgutil
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import anyrt
from anyrt.testing import (
    Link,
    SimListener,
    SimStream,
    Simulation,
    SimulationFailure,
    conformance,
    current_simulation,
    simulate,
)

Scenario = Callable[[anyrt.Runtime], Awaitable[object]]


@pytest.fixture(autouse=True)
def _no_replay_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_SEED", raising=False)


def run(scenario: Scenario, seed: int = 0, **options: Any) -> Simulation:
    simulation = Simulation(seed, **options)
    simulation.run(scenario)  # type: ignore[arg-type]
    return simulation


async def receive_all(stream: anyrt.ByteStream) -> bytes:
    data = b""
    while chunk := await stream.receive():
        data += chunk
    return data


async def receive_exactly(stream: anyrt.ByteStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive(size - len(data))
        assert chunk, "EOF too early"
        data += chunk
    return data


async def echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


async def serve_echo(host: anyrt.Runtime, port: int = 7000) -> tuple[SimListener, anyrt.Task[None]]:
    listener = await host.listen_tcp("0.0.0.0", port)
    assert isinstance(listener, SimListener)
    return listener, host.spawn(listener.serve(echo))


# -- hosts and addresses ------------------------------------------------------------------


def test_each_host_sees_its_own_addresses() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db, app = sim.host("db"), sim.host("app")
        listener, server = await serve_echo(db, 5432)
        assert listener.address == ("0.0.0.0", 5432)
        assert repr(listener) == "<anyrt SimListener ('0.0.0.0', 5432) on host 'db'>"
        named = await app.listen_tcp("app", 0)
        assert named.address[0] == "app"
        conn = await app.connect_tcp("db", 5432)
        assert isinstance(conn, SimStream)
        assert conn.local == ("app", 49153)  # 49152 is the listener's
        assert conn.remote == ("db", 5432)
        assert repr(conn) == "<anyrt SimStream ('app', 49153) -> ('db', 5432)>"
        from_main = await rt.connect_tcp("db", 5432)  # the runtime itself is host "main"
        assert isinstance(from_main, SimStream)
        assert from_main.local[0] == "main"
        await conn.aclose()
        await from_main.aclose()
        await named.aclose()
        await listener.aclose()
        await server

    run(scenario)


def test_loopback_stays_on_the_host() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db, app = sim.host("db"), sim.host("app")
        local = await db.listen_tcp("localhost", 6379)
        assert local.address == ("127.0.0.1", 6379)
        with pytest.raises(ConnectionRefusedError, match="nothing listens on db:6379"):
            await app.connect_tcp("db", 6379)  # loopback only: not reachable by name
        with pytest.raises(ConnectionRefusedError):
            await app.connect_tcp("127.0.0.1", 6379)  # app's own loopback
        start = rt.now()
        conn = await db.connect_tcp("127.0.0.1", 6379)
        assert rt.now() == start  # no latency on loopback
        server = await local.accept()
        assert server.remote == conn.local == ("127.0.0.1", conn.local[1])
        await conn.send(b"x")
        assert await server.receive() == b"x"
        await conn.aclose()
        await server.aclose()
        await local.aclose()

    run(scenario)


def test_addresses_are_checked_like_a_kernel_would() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        with pytest.raises(socket.gaierror, match="'nowhere' is not a host of this simulation"):
            await db.connect_tcp("nowhere", 80)
        with pytest.raises(OSError, match=r"listen through sim\.host") as caught:
            await db.listen_tcp("main", 80)
        assert caught.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(OSError, match="bind to the host's own name"):
            await db.listen_tcp("10.0.0.1", 80)
        first = await db.listen_tcp("0.0.0.0", 80)
        with pytest.raises(OSError, match="address already in use") as caught:
            await db.listen_tcp("db", 80)
        assert caught.value.errno == errno.EADDRINUSE
        await first.aclose()
        named = await db.listen_tcp("db", 80)
        loop = await db.listen_tcp("127.0.0.1", 80)  # another address: no clash
        with pytest.raises(OSError, match="address already in use"):
            await db.listen_tcp("", 80)
        shared = [await db.listen_tcp("0.0.0.0", 81, reuse_port=True) for _ in range(2)]
        with pytest.raises(OSError, match="address already in use"):
            await db.listen_tcp("0.0.0.0", 81)
        for listener in (named, loop, *shared):
            await listener.aclose()
        with pytest.raises(TypeError, match="host must be a str"):
            await db.connect_tcp(None, 80)  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            await db.connect_tcp("db", 70000)

    run(scenario)


def test_reuse_port_spreads_connections_over_the_listeners() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        db = current_simulation().host("db")
        listeners = [await db.listen_tcp("0.0.0.0", 81, reuse_port=True) for _ in range(2)]
        for _ in range(20):
            await (await rt.connect_tcp("db", 81)).aclose()
        await rt.sleep(1)
        backlogs = [len(listener._backlog) for listener in listeners]
        assert sum(backlogs) == 20
        assert min(backlogs) > 0
        for listener in listeners:
            await listener.aclose()

    run(scenario)


# -- latency, jitter, bandwidth ---------------------------------------------------------------


def test_latency_delays_connects_and_data() -> None:
    times: dict[str, float] = {}

    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_link("main", sim.host("db").host, latency=0.05, jitter=0)
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        times["connected"] = rt.now()  # SYN and SYN-ACK: one round trip
        server = await listener.accept()
        times["accepted"] = rt.now()  # and the ACK
        await conn.send(b"ping")
        assert await server.receive() == b"ping"
        times["received"] = rt.now()
        await conn.aclose()
        assert await server.receive() == b""
        times["eof"] = rt.now()
        await server.aclose()
        await listener.aclose()

    run(scenario)
    assert times == pytest.approx(
        {"connected": 0.1, "accepted": 0.15, "received": 0.2, "eof": 0.25}
    )


def test_jitter_never_reorders_a_connection() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_default_link(latency=0.001, jitter=0.5)
        listener, server = await serve_echo(sim.host("db"))
        async with await rt.connect_tcp("db", 7000) as conn:
            sent = b"".join(b"%d," % n for n in range(200))
            for n in range(200):
                await conn.send(b"%d," % n)
            await conn.send_eof()
            assert await receive_all(conn) == sent
        await listener.aclose()
        await server

    simulate(scenario, seeds=10)


def test_bandwidth_limits_the_throughput() -> None:
    async def scenario(rt: anyrt.Runtime) -> float:
        sim = current_simulation()
        sim.set_link("main", sim.host("db").host, latency=0.01, jitter=0, bandwidth=100_000)
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        start = rt.now()
        payload = bytes(500_000)

        async def send() -> None:
            await conn.send(payload)
            await conn.send_eof()

        sender = rt.spawn(send())
        assert await receive_all(server) == payload
        await sender
        await conn.aclose()
        await server.aclose()
        await listener.aclose()
        return rt.now() - start

    simulation = Simulation(0, network_buffer=65536)
    elapsed = simulation.run(scenario)
    assert 5.0 <= elapsed < 5.2  # 500 kB at 100 kB/s, plus latency


def test_the_window_is_the_receivers_buffer() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        db = current_simulation().host("db")
        listener = await db.listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        sender = rt.spawn(conn.send(bytes(3000)))
        await rt.sleep(1)
        assert not sender.done()  # 1,000 bytes in the window, the rest waits
        assert len(await server.receive(10_000)) == 1000
        await rt.sleep(1)
        assert not sender.done()
        assert len(await receive_exactly(server, 2000)) == 2000
        await sender
        await conn.aclose()
        await server.aclose()
        await listener.aclose()

    Simulation(0, network_buffer=1000).run(scenario)


def test_link_settings() -> None:
    simulation = Simulation(0, link=Link(latency=0.2))
    simulation.host("db")
    assert simulation.link("main", "db") == Link(latency=0.2)
    assert simulation.set_link("db", "main", jitter=0.1) == Link(latency=0.2, jitter=0.1)
    assert simulation.link("main", "db").jitter == 0.1
    assert simulation.set_default_link(latency=0.3).latency == 0.3
    assert simulation.link("main", "db").latency == 0.2  # set explicitly: kept
    with pytest.raises(TypeError, match="unknown link setting 'latncy'"):
        simulation.set_link("main", "db", latncy=1)
    with pytest.raises(ValueError, match="there is no host 'dbx'"):
        simulation.link("main", "dbx")
    with pytest.raises(ValueError, match="two different hosts"):
        simulation.partition("db", "db")
    simulation.connect_timeout = 2
    assert simulation.connect_timeout == 2.0
    with pytest.raises(ValueError, match="connect_timeout"):
        simulation.connect_timeout = 0
    simulation.runtime.close()


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"latency": -1}, ValueError),
        ({"latency": float("inf")}, ValueError),
        ({"jitter": "1"}, TypeError),
        ({"bandwidth": 0}, ValueError),
        ({"reset_rate": 1.5}, ValueError),
        ({"refuse_rate": None}, TypeError),
    ],
)
def test_link_checks_its_settings(settings: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="Link"):
        Link(**settings)


# -- partitions and holds ------------------------------------------------------------------


def test_a_partition_stalls_data_until_healed() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_link("main", sim.host("db").host, latency=0.01, jitter=0)
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        sim.partition("main", "db")
        assert sim.blocked("db", "main")
        await conn.send(b"held")
        receiving = rt.spawn(server.receive())
        await rt.sleep(5)
        assert not receiving.done()
        sim.heal()
        healed_at = rt.now()
        assert not sim.blocked("db", "main")
        assert await receiving == b"held"
        assert rt.now() == pytest.approx(healed_at + 0.01)  # one latency after the heal
        await conn.aclose()
        await server.aclose()
        await listener.aclose()

    simulation = run(scenario)
    events = [entry.text for entry in simulation.trace if entry.task is None]
    assert events == ["partition main | db", "heal db | main"]


def test_a_connect_across_a_partition_times_out() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        sim.connect_timeout = 3
        listener = await db.listen_tcp("0.0.0.0", 1)
        sim.partition("db", "main")
        with pytest.raises(TimeoutError, match="the hosts are partitioned") as caught:
            await rt.connect_tcp("db", 1)
        assert caught.value.errno == errno.ETIMEDOUT
        assert rt.now() == pytest.approx(3.0, abs=0.01)

        async def heal_later() -> None:
            await rt.sleep(1)
            sim.heal("main", "db")

        healer = rt.spawn(heal_later())
        conn = await rt.connect_tcp("db", 1)  # healed before the timeout: connects
        await healer
        assert rt.now() < 5
        await conn.aclose()
        await listener.aclose()

    run(scenario)


def test_a_hold_keeps_everything_until_released() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_default_link(latency=0.01, jitter=0)
        listener, server = await serve_echo(sim.host("db"))
        conn = await rt.connect_tcp("db", 7000)
        sim.hold("main", "db")
        await conn.send(b"a")
        replying = rt.spawn(conn.receive())
        late = rt.spawn(rt.connect_tcp("db", 7000))
        await rt.sleep(3600)  # no timeout, however long the hold
        assert not replying.done()
        assert not late.done()
        sim.release("db", "main")
        assert await replying == b"a"
        await (await late).aclose()
        await conn.aclose()
        await listener.aclose()
        await server

    run(scenario)


def test_heal_and_release_take_two_hosts_or_none() -> None:
    simulation = Simulation(0)
    simulation.host("a")
    simulation.host("b")
    simulation.partition("a", "b")
    simulation.partition("a", "main")
    simulation.heal("b", "a")
    assert not simulation.blocked("a", "b")
    assert simulation.blocked("a", "main")
    simulation.heal()
    assert not simulation.blocked("a", "main")
    simulation.hold("a", "b")
    simulation.release()
    assert not simulation.blocked("a", "b")
    with pytest.raises(TypeError, match="takes two hosts, or none"):
        simulation.heal("a")
    simulation.heal("a", "b")  # nothing to heal: nothing happens
    simulation.runtime.close()


# -- faults ------------------------------------------------------------------------------------


def test_refused_connects() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        sim.set_link("main", "db", latency=0.02, jitter=0)
        with pytest.raises(ConnectionRefusedError, match="nothing listens on db:1"):
            await rt.connect_tcp("db", 1)
        assert rt.now() == pytest.approx(0.04)  # the RST comes back after a round trip
        listener = await db.listen_tcp("0.0.0.0", 1)
        sim.set_link("main", "db", refuse_rate=1.0)
        with pytest.raises(ConnectionRefusedError):
            await rt.connect_tcp("db", 1)
        await listener.aclose()

    simulation = run(scenario)
    assert "fault: refuse main -> db:1" in [entry.text for entry in simulation.trace]


def test_a_listener_closed_during_the_handshake_resets_the_connection() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_default_link(latency=0.1, jitter=0)
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)  # the ACK is still on its way
        await listener.aclose()
        with pytest.raises(ConnectionResetError):
            await conn.receive()
        with pytest.raises(BrokenPipeError):
            await conn.send(b"x")
        await conn.aclose()

    run(scenario)


def test_injected_resets_reach_both_ends() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        listener = await db.listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        sim.set_link("main", "db", reset_rate=1.0)
        await conn.send(b"lost")
        with pytest.raises(ConnectionResetError):
            await server.receive()
        with pytest.raises(ConnectionResetError):
            await conn.receive()
        with pytest.raises(BrokenPipeError):
            await server.send(b"x")
        await conn.aclose()
        await server.aclose()
        await listener.aclose()

    simulation = run(scenario)
    assert "fault: reset the connection main -> db" in [entry.text for entry in simulation.trace]


def test_split_segments_arrive_in_parts() -> None:
    parts: list[int] = []

    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        sim.set_default_link(latency=0.01, split_rate=1.0)
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        for _ in range(5):
            await conn.send(b"0123456789")
            first = await server.receive()
            rest = await receive_exactly(server, 10 - len(first))
            assert first + rest == b"0123456789"
            parts.append(len(first))
        await conn.aclose()
        await server.aclose()
        await listener.aclose()

    run(scenario)
    assert all(0 < part < 10 for part in parts)


# -- closing -------------------------------------------------------------------------------------


def test_closing_with_unread_data_resets_the_peer() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        await conn.send(b"unread")
        await rt.sleep(1)
        await server.aclose()
        await rt.sleep(1)
        with pytest.raises(ConnectionResetError):
            await conn.receive()
        with pytest.raises(BrokenPipeError):
            await conn.send(b"more")
        await conn.aclose()
        await listener.aclose()

    run(scenario)


def test_data_sent_to_a_closed_end_is_answered_with_a_reset() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        listener = await sim.host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        server = await listener.accept()
        await server.aclose()  # nothing unread: a FIN
        assert await conn.receive() == b""
        await conn.send(b"anyone there?")  # accepted into the window...
        await rt.sleep(1)
        with pytest.raises(BrokenPipeError):  # ...and answered with a reset
            await conn.send(b"hello?")
        await conn.aclose()
        await listener.aclose()

    run(scenario)


def test_closing_a_stream_wakes_its_own_tasks() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        listener = await current_simulation().host("db").listen_tcp("0.0.0.0", 1)
        conn = await rt.connect_tcp("db", 1)
        receiving = rt.spawn(conn.receive())
        await rt.sleep(0.5)
        await conn.aclose()
        with pytest.raises(anyrt.ClosedResourceError):
            await receiving
        with pytest.raises(anyrt.ClosedResourceError, match="on a closed stream"):
            await conn.send(b"x")
        await listener.aclose()

    run(scenario)


# -- the conformance suite, under simulation ---------------------------------------------


def _conformance_tests() -> list[Any]:
    """The conformance tests that need nothing but a runtime without threads or an OS."""
    found = []
    for info in pkgutil.iter_modules(conformance.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{conformance.__name__}.{info.name}")
        for name, function in vars(module).items():
            if not name.startswith("test_") or not inspect.iscoroutinefunction(function):
                continue
            marks = getattr(function, "pytestmark", [])
            needs = {arg for mark in marks if mark.name == "anyrt_requires" for arg in mark.args}
            if list(inspect.signature(function).parameters) != ["runtime"]:
                continue
            if needs & {"threads", "os-reactor"} or any(m.name == "parametrize" for m in marks):
                continue
            found.append(pytest.param(function, id=f"{info.name}::{name}"))
    return found


@pytest.mark.parametrize("conformance_test", _conformance_tests())
def test_the_conformance_suite_passes_under_simulation(conformance_test: Scenario) -> None:
    try:
        simulate(conformance_test, seeds=4)  # type: ignore[arg-type]
    except SimulationFailure as failure:
        if isinstance(failure.__cause__, pytest.skip.Exception):  # it needs a real clock, say
            pytest.skip(str(failure.__cause__))
        raise


# -- UDP -------------------------------------------------------------------------------------


def test_datagrams_cross_a_link_after_its_latency() -> None:
    async def scenario(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        sim.set_link("main", "db", latency=0.05, jitter=0)
        async with (
            await db.open_udp("0.0.0.0", 53) as server,
            await rt.open_udp("0.0.0.0", 0) as client,
        ):
            start = rt.now()
            await client.send_to(b"query", ("db", 53))
            data, sender = await server.receive_from()
            assert data == b"query"
            assert sender == ("main", client.address[1])
            assert rt.now() == pytest.approx(start + 0.05)
            await server.send_to(b"answer", sender)
            assert await client.receive_from() == (b"answer", ("db", 53))
            assert rt.now() == pytest.approx(start + 0.10)

    run(scenario)


def test_a_partition_and_the_drop_rate_lose_datagrams() -> None:
    async def scenario(rt: anyrt.Runtime) -> list[bytes]:
        sim = current_simulation()
        db = sim.host("db")
        async with (
            await db.open_udp("0.0.0.0", 53) as server,
            await rt.open_udp("0.0.0.0", 0) as client,
        ):
            sim.partition("main", "db")
            await client.send_to(b"partitioned", ("db", 53))
            await rt.sleep(1)
            sim.heal()
            sim.set_link("main", "db", drop_rate=1.0)
            await client.send_to(b"dropped", ("db", 53))
            sim.set_link("main", "db", drop_rate=0.0)
            await client.send_to(b"delivered", ("db", 53))
            received = [(await server.receive_from())[0]]
            with pytest.raises(TimeoutError):
                async with rt.timeout(1):  # nothing else is on the way
                    received.append((await server.receive_from())[0])
            return received

    simulation = Simulation(0)
    assert simulation.run(scenario) == [b"delivered"]
    notes = [entry.text for entry in simulation.trace if entry.task is None]
    assert any("lost across a partition" in note for note in notes)
    assert any("fault: drop a datagram" in note for note in notes)


def test_jitter_can_reorder_datagrams_the_same_way_for_a_seed() -> None:
    async def scenario(rt: anyrt.Runtime) -> list[bytes]:
        sim = current_simulation()
        db = sim.host("db")
        sim.set_link("main", "db", latency=0.01, jitter=0.05)
        async with (
            await db.open_udp("0.0.0.0", 9) as server,
            await rt.open_udp("0.0.0.0", 0) as client,
        ):
            for index in range(20):
                await client.send_to(b"%d" % index, ("db", 9))
            return [(await server.receive_from())[0] for _ in range(20)]

    orders = [Simulation(seed).run(scenario) for seed in (1, 1, 2)]
    assert sorted(orders[0], key=int) == [b"%d" % i for i in range(20)]
    assert orders[0] == orders[1]  # replayable
    assert any(order != sorted(order, key=int) for order in orders)  # UDP does not reorder back
