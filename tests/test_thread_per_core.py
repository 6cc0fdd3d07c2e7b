"""What only `thread-per-core` promises: placement, no migration, sharded listeners, pinning.

The shared behaviour is in the conformance suite, and the leak and stress tests run
on this backend too.
"""

from __future__ import annotations

import collections
import itertools
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator

import pytest

import anyrt
from anyrt import ThreadPerCore

CORES = 4


@pytest.fixture
def rt() -> Iterator[ThreadPerCore]:
    with ThreadPerCore(cores=CORES) as runtime:
        yield runtime


def test_default_cores_is_the_cpus_this_process_may_use() -> None:
    with ThreadPerCore() as rt:
        expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        assert rt.cores == (expected or os.cpu_count())


# -- placement --------------------------------------------------------------------------


def test_spawn_from_a_plain_thread_goes_to_the_least_loaded_core(rt: ThreadPerCore) -> None:
    release = anyrt.Event(rt)

    async def hold() -> int:
        core = rt.current_core()
        await release.wait()
        return core

    # Every spawn finds the previous ones still alive, so each lands on an empty core.
    first = [rt.spawn(hold()) for _ in range(CORES)]
    # A second round: every core has one task, so the round-robin tie-break spreads them.
    second = [rt.spawn(hold()) for _ in range(CORES)]
    release.set()

    async def cores_of(tasks: list[anyrt.Task[int]]) -> list[int]:
        return [await task for task in tasks]

    assert sorted(rt.block_on(cores_of(first))) == list(range(CORES))
    assert sorted(rt.block_on(cores_of(second))) == list(range(CORES))


def test_spawn_from_a_core_stays_on_that_core(rt: ThreadPerCore) -> None:
    async def child() -> int:
        return rt.current_core()

    async def parent(core: int) -> list[int]:
        assert rt.current_core() == core
        children = [rt.spawn(child()) for _ in range(10)]
        children.append(rt.spawn_local(child()))
        return [await task for task in children]

    for core in range(CORES):
        assert rt.block_on(_on(rt, core, parent(core))) == [core] * 11


async def _on(rt: ThreadPerCore, core: int, coro: object) -> object:
    return await rt.spawn_on(core, coro)  # type: ignore[arg-type]


def test_spawn_on_validates_the_core_and_closes_the_coroutine(rt: ThreadPerCore) -> None:
    async def nothing() -> None:
        pass

    coro = nothing()
    with pytest.raises(ValueError, match=r"range\(0, 4\), got 4"):
        rt.spawn_on(CORES, coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning later
    with pytest.raises(ValueError, match="got -1"):
        rt.spawn_on(-1, nothing())
    with pytest.raises(TypeError, match="core number"):
        rt.spawn_on("0", nothing())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="core number"):
        rt.spawn_on(True, nothing())


def test_current_core_and_spawn_local_refuse_a_plain_thread(rt: ThreadPerCore) -> None:
    async def nothing() -> None:
        pass

    with pytest.raises(RuntimeError, match="current_core"):
        rt.current_core()
    coro = nothing()
    with pytest.raises(RuntimeError, match="spawn_on"):
        rt.spawn_local(coro)
    assert coro.cr_frame is None
    with ThreadPerCore(cores=1) as other:

        async def ask_other() -> None:
            rt.current_core()

        with pytest.raises(RuntimeError, match="current_core"):
            other.block_on(ask_other())


# -- tasks never migrate ----------------------------------------------------------------


def test_no_task_ever_resumes_on_another_thread(rt: ThreadPerCore) -> None:
    """Record the thread at every resumption of tasks that wait on every kind of wake-up.

    The wake-ups come from other cores (a channel, an event, oneshots), from timers and
    from the blocking pool, so a runtime that resumed a task where it was woken would
    fail.
    """
    rounds = 30
    seen: dict[str, set[int]] = collections.defaultdict(set)
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock:
            seen[name].add(threading.get_ident())

    channel: anyrt.Channel[int] = anyrt.Channel(rt, 4)
    go = anyrt.Event(rt)

    async def producer(name: str) -> None:
        record(name)
        await go.wait()
        for item in range(rounds):
            record(name)
            await channel.send(item)
            record(name)
            await rt.sleep(0.0005)
            record(name)

    async def consumer(name: str) -> int:
        record(name)
        total = 0
        for _ in range(rounds):
            total += await channel.receive()
            record(name)
            total += await rt.spawn_blocking(int, "1")
            record(name)
            await rt.sleep(0)
            record(name)
        return total

    async def main() -> list[int]:
        producers = [rt.spawn_on(i % CORES, producer(f"p{i}")) for i in range(4)]
        consumers = [rt.spawn_on((i + 1) % CORES, consumer(f"c{i}")) for i in range(4)]
        go.set()
        for task in producers:
            await task
        return [await task for task in consumers]

    totals = rt.block_on(main())
    assert sum(totals) == 4 * (sum(range(rounds)) + rounds)
    assert len(seen) == 8
    assert all(len(threads) == 1 for threads in seen.values()), seen
    assert len(set().union(*seen.values())) == CORES  # and they did spread over cores


def test_a_thread_affine_sqlite_connection_lives_in_a_pinned_task(rt: ThreadPerCore) -> None:
    """sqlite3 refuses a connection used from another thread; here it is never moved."""
    updates = anyrt.Channel[int](rt, 0)

    async def store() -> list[tuple[int, int]]:
        db = sqlite3.connect(":memory:")  # check_same_thread=True, the default
        try:
            db.execute("CREATE TABLE hits (core INTEGER, n INTEGER)")
            async for n in updates:
                db.execute("INSERT INTO hits VALUES (?, ?)", (rt.current_core(), n))
                await rt.sleep(0.0001)  # any suspension point: the task stays here
            return list(db.execute("SELECT core, SUM(n) FROM hits GROUP BY core"))
        finally:
            db.close()

    async def main() -> list[tuple[int, int]]:
        owner = rt.spawn_local(store())
        writers = [rt.spawn_on(core, _send_all(updates, range(10))) for core in range(CORES)]
        for writer in writers:
            await writer
        updates.close()
        return await owner

    rows = rt.block_on(_on(rt, 2, main()))  # type: ignore[arg-type]
    assert rows == [(2, CORES * sum(range(10)))]


async def _send_all(channel: anyrt.Channel[int], items: range) -> None:
    for item in items:
        await channel.send(item)


# -- cross-core wake-ups under load --------------------------------------------------------


def test_oneshot_ping_pong_between_two_cores(rt: ThreadPerCore) -> None:
    rounds = 2_000

    async def player(inbox: anyrt.Channel[int], outbox: anyrt.Channel[int], core: int) -> int:
        count = 0
        async for ball in inbox:
            assert rt.current_core() == core
            count += 1
            if ball == rounds:
                outbox.close()
                break
            await outbox.send(ball + 1)
        return count

    async def main() -> tuple[int, int]:
        ab: anyrt.Channel[int] = anyrt.Channel(rt, 0)
        ba: anyrt.Channel[int] = anyrt.Channel(rt, 0)
        a = rt.spawn_on(0, player(ba, ab, 0))
        b = rt.spawn_on(1, player(ab, ba, 1))
        await ba.send(1)
        return await a, await b

    a, b = rt.block_on(main())
    assert a + b == rounds


def test_an_event_on_one_core_wakes_waiters_on_every_core(rt: ThreadPerCore) -> None:
    per_core = 50

    async def main() -> list[int]:
        event = anyrt.Event(rt)
        arrived = anyrt.Semaphore(rt, 0)

        async def waiter() -> int:
            arrived.release()
            await event.wait()
            return rt.current_core()

        waiters = [rt.spawn_on(core, waiter()) for core in range(CORES) for _ in range(per_core)]
        for _ in waiters:
            await arrived.acquire()
        await rt.spawn_on(3, _set(event))
        return [await task for task in waiters]

    cores = rt.block_on(main())
    assert collections.Counter(cores) == {core: per_core for core in range(CORES)}


async def _set(event: anyrt.Event) -> None:
    event.set()


# -- listeners ------------------------------------------------------------------------------


async def _echo_client(rt: anyrt.Runtime, port: int, rounds: int) -> None:
    stream = await rt.connect_tcp("127.0.0.1", port)
    async with stream:
        for index in range(rounds):
            payload = f"{index:08d}".encode()
            await stream.send(payload)
            got = b""
            while len(got) < len(payload):
                chunk = await stream.receive(len(payload) - len(got))
                assert chunk
                got += chunk
            assert got == payload


def test_reuse_port_serves_each_connection_on_the_core_that_accepted_it() -> None:
    clients, rounds = 40, 20
    with ThreadPerCore(cores=2) as rt:
        # One entry per handler. (Keyed by id(stream), as it once was, two connections
        # could share a key - a stream's id is reused once it is freed - and the wait
        # below for one entry per client then never ended.)
        served: dict[int, set[int]] = {}
        lock = threading.Lock()
        handlers = itertools.count()

        async def echo(stream: anyrt.ByteStream) -> None:
            with lock:
                key = next(handlers)
            cores = {rt.current_core()}
            while data := await stream.receive():
                cores.add(rt.current_core())
                await stream.send(data)
                cores.add(rt.current_core())
            with lock:
                served[key] = cores

        async def main() -> int:
            listener = await rt.listen_tcp("127.0.0.1", 0, reuse_port=True)
            async with listener:
                assert getattr(listener, "shards", 1) == 2
                server = rt.spawn(listener.serve(echo))
                port = listener.address[1]
                tasks = [rt.spawn(_echo_client(rt, port, rounds)) for _ in range(clients)]
                for task in tasks:
                    await task
                while len(served) < clients:  # handlers finish after their clients
                    await rt.sleep(0.001)
                server.cancel()
                return port

        rt.block_on(main())
    assert len(served) == clients
    assert all(len(cores) == 1 for cores in served.values())  # never moved
    per_core = collections.Counter(next(iter(cores)) for cores in served.values())
    assert set(per_core) == {0, 1}  # the kernel spread the connections over both cores


def test_without_reuse_port_serve_hands_connections_to_the_cores_in_turn(
    rt: ThreadPerCore,
) -> None:
    clients = 2 * CORES
    cores: list[int] = []

    async def handler(stream: anyrt.ByteStream) -> None:
        cores.append(rt.current_core())  # the list is only appended, once per handler
        await stream.send(b"x")

    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0)
        async with listener:
            server = rt.spawn_on(0, listener.serve(handler))
            for _ in range(clients):
                stream = await rt.connect_tcp("127.0.0.1", listener.address[1])
                async with stream:
                    assert await stream.receive() == b"x"
            server.cancel()

    rt.block_on(main())
    assert collections.Counter(cores) == {core: 2 for core in range(CORES)}


def test_accept_on_a_sharded_listener_takes_connections_from_every_shard(
    rt: ThreadPerCore,
) -> None:
    clients = 24

    async def main() -> set[bytes]:
        listener = await rt.listen_tcp("127.0.0.1", 0, reuse_port=True)
        async with listener:
            port = listener.address[1]

            async def client(index: int) -> None:
                stream = await rt.connect_tcp("127.0.0.1", port)
                async with stream:
                    await stream.send(b"%02d" % index)

            senders = [rt.spawn(client(index)) for index in range(clients)]
            received = set()
            for _ in range(clients):
                stream = await listener.accept()
                async with stream:
                    received.add(await stream.receive())
            for sender in senders:
                await sender
            return received

    assert rt.block_on(main()) == {b"%02d" % index for index in range(clients)}


def test_closing_a_sharded_listener_wakes_a_task_in_accept(rt: ThreadPerCore) -> None:
    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0, reuse_port=True)
        address = listener.address
        accepting = rt.spawn(listener.accept())
        await rt.sleep(0.01)
        await listener.aclose()
        with pytest.raises(anyrt.ClosedResourceError):
            await accepting
        with pytest.raises(anyrt.ClosedResourceError):
            await listener.accept()
        probe = socket.socket()
        try:
            assert probe.connect_ex(address) != 0  # nobody listens any more
        finally:
            probe.close()

    rt.block_on(main())


# -- pinning ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_pin_pins_each_core_thread_to_one_cpu() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    with ThreadPerCore(cores=2, pin=True) as rt:
        expected = {core: cpus[core % len(cpus)] for core in range(2)}
        assert rt.pinned == expected

        async def affinity() -> set[int]:
            return os.sched_getaffinity(0)

        for core in range(2):
            assert rt.block_on(_on(rt, core, affinity())) == {expected[core]}
    assert os.sched_getaffinity(0) == set(cpus)  # the calling thread is untouched


def test_pin_without_sched_setaffinity_is_a_precise_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(RuntimeError, match=f"pin=True.*{sys.platform}.*pin=False"):
        ThreadPerCore(cores=1, pin=True)
    with pytest.raises(TypeError, match="pin must be a bool"):
        ThreadPerCore(cores=1, pin=1)  # type: ignore[arg-type]
