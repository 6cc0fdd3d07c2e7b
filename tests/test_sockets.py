"""Real sockets on the `work-stealing` runtime: readiness waits, TCP, IPv6, Unix sockets.

Tests that need a task to be parked *before* the main task acts use `park_first` on a
one-worker runtime, which makes that order certain rather than likely.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import anyrt
from anyrt._reactor import BusyResourceError
from anyrt.testing.conformance import receive_all, receive_exactly

T = TypeVar("T")


@pytest.fixture
def rt() -> Iterator[anyrt.Runtime]:
    with anyrt.runtime("work-stealing", workers=2) as runtime:
        yield runtime


@pytest.fixture
def rt1() -> Iterator[anyrt.Runtime]:
    with anyrt.runtime("work-stealing", workers=1) as runtime:
        yield runtime


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        yield a, b


def run(rt: anyrt.Runtime, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` on ``rt`` with a 20 s bound, so a lost wake-up fails, not hangs."""

    async def bounded() -> T:
        async with rt.timeout(20):
            return await fn()

    return rt.block_on(bounded())


async def park_first(rt1: anyrt.Runtime, coro: Any) -> anyrt.Task[Any]:
    """Start ``coro`` and let it run up to its first suspension before returning.

    On a one-worker runtime a pinned (`spawn_local`) task is run before the spawner,
    which goes to the back of the queue at ``sleep(0)``; no other worker can steal it.
    """
    task: anyrt.Task[Any] = rt1.spawn_local(coro)
    await rt1.sleep(0)
    return task


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


# -- readiness on raw sockets ----------------------------------------------------------------


def test_wait_readable_on_a_socketpair(
    rt1: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    async def reader() -> bytes:
        with pytest.raises(BlockingIOError):
            b.recv(10)  # nothing there yet: the wait below really parks
        await rt1.wait_readable(b)
        return b.recv(10)

    async def main() -> bytes:
        task = await park_first(rt1, reader())
        assert not task.done()
        a.send(b"hello")
        return await task

    assert run(rt1, main) == b"hello"


def test_wait_readable_woken_from_a_plain_thread_on_many_workers(
    rt: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    rounds = 200

    async def main() -> int:
        received = 0
        for index in range(rounds):
            writer = threading.Thread(target=a.send, args=(bytes([index % 256]),))
            writer.start()
            await rt.wait_readable(b)
            received += len(b.recv(10))
            writer.join()
        return received

    assert run(rt, main) == rounds


def test_wait_readable_accepts_an_int_fd(
    rt: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    a.send(b"x")

    async def main() -> bytes:
        await rt.wait_readable(b.fileno())
        return b.recv(1)

    assert run(rt, main) == b"x"


def test_wait_writable_waits_for_room_in_the_send_buffer(
    rt1: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    chunk = b"\0" * 65536
    filled = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filled += a.send(chunk)
    assert filled > 0

    async def writer() -> int:
        await rt1.wait_writable(a)
        return a.send(b"more")

    async def main() -> int:
        task = await park_first(rt1, writer())
        assert not task.done()  # parked: the buffer is full
        drained = 0
        while drained < filled:
            await rt1.wait_readable(b)
            with contextlib.suppress(BlockingIOError):
                while True:
                    drained += len(b.recv(1 << 20))
        return await task

    assert run(rt1, main) == 4


def test_wait_writable_returns_at_once_on_a_writable_socket(
    rt: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair

    async def main() -> None:
        for _ in range(100):
            await rt.wait_writable(a)

    run(rt, main)


def test_a_second_reader_of_the_same_fd_gets_busy_resource_error(
    rt: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Two tasks race to wait on one fd: exactly one waits, the other is told why."""
    a, b = pair

    async def reader(failures: anyrt.Channel[str]) -> bytes:
        try:
            await rt.wait_readable(b)
        except BusyResourceError as exc:
            await failures.send(str(exc))
            raise
        return b.recv(10)

    async def main() -> None:
        failures: anyrt.Channel[str] = anyrt.Channel(rt, 2)
        tasks = [rt.spawn(reader(failures)) for _ in range(2)]
        message = await failures.receive()
        assert f"another task is already waiting for fd {b.fileno()}" in message
        assert "readable" in message
        # Waiting for writability of the same fd is a different slot: allowed.
        await rt.wait_writable(b)
        a.send(b"data")
        outcomes = []
        for task in tasks:
            try:
                outcomes.append(await task)
            except BusyResourceError:
                outcomes.append(b"busy")
        assert sorted(outcomes) == [b"busy", b"data"]
        # Both waits are gone: the fd can be waited on again.
        a.send(b"again")
        await rt.wait_readable(b)
        assert b.recv(10) == b"again"

    run(rt, main)


def test_a_cancelled_wait_frees_the_fd(
    rt1: anyrt.Runtime, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    async def main() -> bytes:
        first = await park_first(rt1, rt1.wait_readable(b))
        first.cancel()
        with pytest.raises(anyrt.Cancelled):
            await first
        a.send(b"ok")
        await rt1.wait_readable(b)  # no BusyResourceError: the slot was freed
        return b.recv(2)

    assert run(rt1, main) == b"ok"


def test_wait_on_a_closed_socket_raises(rt: anyrt.Runtime) -> None:
    sock = socket.socket()
    sock.close()

    async def main() -> None:
        with pytest.raises(anyrt.ClosedResourceError):
            await rt.wait_readable(sock)

    run(rt, main)


# -- streams -------------------------------------------------------------------------------


async def _connected(rt: anyrt.Runtime) -> tuple[anyrt.ByteStream, anyrt.ByteStream]:
    async with await rt.listen_tcp("127.0.0.1", 0) as listener:
        client = await rt.connect_tcp(*listener.address)
        server = await listener.accept()
    return client, server


def test_aclose_wakes_a_task_waiting_in_receive(rt1: anyrt.Runtime) -> None:
    async def main() -> None:
        client, server = await _connected(rt1)
        async with client:
            receiving = await park_first(rt1, server.receive())
            assert not receiving.done()
            await server.aclose()
            with pytest.raises(anyrt.ClosedResourceError):
                await receiving
            with pytest.raises(anyrt.ClosedResourceError):
                await server.receive()
            await server.aclose()  # idempotent

    run(rt1, main)


def test_aclose_wakes_a_task_waiting_in_accept(rt1: anyrt.Runtime) -> None:
    async def main() -> None:
        listener = await rt1.listen_tcp("127.0.0.1", 0)
        accepting = await park_first(rt1, listener.accept())
        assert not accepting.done()
        await listener.aclose()
        with pytest.raises(anyrt.ClosedResourceError):
            await accepting

    run(rt1, main)


def test_connect_to_a_closed_port_is_refused(rt: anyrt.Runtime) -> None:
    # A bound socket that does not listen keeps the port ours and refuses connections.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]

        async def main() -> None:
            with pytest.raises(ConnectionRefusedError):
                await rt.connect_tcp("127.0.0.1", port)

        run(rt, main)


def test_bad_ports_and_hosts_raise(rt: anyrt.Runtime) -> None:
    async def main() -> None:
        with pytest.raises(OverflowError):
            await rt.connect_tcp("127.0.0.1", 70000)
        with pytest.raises(TypeError):
            await rt.connect_tcp("127.0.0.1", "80")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await rt.listen_tcp(b"127.0.0.1", 0)  # type: ignore[arg-type]

    run(rt, main)


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback")
def test_ipv6_echo(rt: anyrt.Runtime) -> None:
    async def main() -> bytes:
        async with await rt.listen_tcp("::1", 0) as listener:
            host, port = listener.address
            assert host == "::1"
            server = rt.spawn(listener.serve(_echo))
            async with await rt.connect_tcp("::1", port) as client:
                await client.send(b"over IPv6")
                reply = await receive_exactly(client, 9)
            server.cancel()
            return reply

    assert run(rt, main) == b"over IPv6"


def test_connect_to_localhost(rt: anyrt.Runtime) -> None:
    """``localhost`` is resolved in the blocking pool (to ::1 and/or 127.0.0.1, tried
    in turn, so a ::1 answer that refuses falls through to the IPv4 listener)."""

    async def main() -> bytes:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(_echo))
            async with await rt.connect_tcp("localhost", listener.address[1]) as client:
                await client.send(b"hi")
                reply = await receive_exactly(client, 2)
            server.cancel()
            return reply

    assert run(rt, main) == b"hi"


def test_listen_on_localhost(rt: anyrt.Runtime) -> None:
    async def main() -> str:
        async with await rt.listen_tcp("localhost", 0) as listener:
            host, port = listener.address
            async with await rt.connect_tcp(host, port) as client, await listener.accept():
                assert client is not None
            return host

    assert run(rt, main) in ("127.0.0.1", "::1")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT semantics")
def test_reuse_port_lets_two_listeners_share_a_port(rt: anyrt.Runtime) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0, reuse_port=True) as first:
            port = first.address[1]
            # Without the option the port is taken...
            with pytest.raises(OSError, match="in use"):
                await rt.listen_tcp("127.0.0.1", port)
            # ...with it on both sides, a second listener shares it.
            async with await rt.listen_tcp("127.0.0.1", port, reuse_port=True) as second:
                assert second.address == first.address
                servers = [rt.spawn(listener.serve(_echo)) for listener in (first, second)]
                for index in range(20):
                    async with await rt.connect_tcp("127.0.0.1", port) as client:
                        message = f"client {index}".encode()
                        await client.send(message)
                        assert await receive_exactly(client, len(message)) == message
                for server in servers:
                    server.cancel()

    run(rt, main)


def test_unix_socket_echo(rt: anyrt.Runtime, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    if len(str(path)) > 100:
        pytest.skip("tmp_path too long for a Unix socket address")

    async def main() -> bytes:
        listener = await rt.listen_unix(path)  # type: ignore[attr-defined]
        async with listener:
            assert listener.address == (str(path), 0)
            server = rt.spawn(listener.serve(_echo))
            client = await rt.connect_unix(path)  # type: ignore[attr-defined]
            async with client:
                await client.send(b"unix")
                reply = await receive_exactly(client, 4)
                await client.send_eof()
                assert await client.receive() == b""  # the echo handler saw EOF and closed
            server.cancel()
            return bytes(reply)

    assert run(rt, main) == b"unix"
    assert path.exists()  # the socket file is the caller's to remove


def test_connect_unix_to_a_missing_path_raises(rt: anyrt.Runtime, tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await rt.connect_unix(tmp_path / "missing.sock")  # type: ignore[attr-defined]

    run(rt, main)


def test_a_4_mib_payload_is_echoed_intact(rt: anyrt.Runtime) -> None:
    payload = random.Random(4).randbytes(4 * 1024 * 1024)

    async def main() -> bytes:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(_echo))
            async with await rt.connect_tcp(*listener.address) as client:

                async def upload() -> None:
                    await client.send(payload)  # blocks on backpressure until echoed
                    await client.send_eof()

                uploading = rt.spawn(upload())
                echoed = await receive_all(client)
                await uploading
            server.cancel()
            return echoed

    echoed = run(rt, main)
    assert len(echoed) == len(payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


def test_send_eof_half_closes(rt: anyrt.Runtime) -> None:
    async def main() -> None:
        client, server = await _connected(rt)
        async with client, server:
            await client.send(b"request")
            await client.send_eof()
            assert await receive_all(server) == b"request"  # EOF after the data
            # The other direction still works.
            await server.send(b"response")
            await server.send_eof()
            assert await receive_all(client) == b"response"

    run(rt, main)


def test_200_concurrent_clients_echo(rt: anyrt.Runtime) -> None:
    clients = 200

    async def client(address: tuple[str, int], index: int) -> list[bytes]:
        replies = []
        async with await rt.connect_tcp(*address) as stream:
            for round_trip in range(3):
                message = f"client {index} round {round_trip}".encode()
                await stream.send(message)
                replies.append(await receive_exactly(stream, len(message)))
        return replies

    async def main() -> list[list[bytes]]:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(_echo))
            async with anyrt.TaskGroup(rt) as tg:
                tasks = [tg.spawn(client(listener.address, index)) for index in range(clients)]
            server.cancel()
        return [await task for task in tasks]

    results = run(rt, main)
    assert results == [
        [f"client {index} round {round_trip}".encode() for round_trip in range(3)]
        for index in range(clients)
    ]


@pytest.mark.parametrize("backend", ["work-stealing", "thread-per-core"])
def test_eof_that_arrives_with_the_last_data_is_seen(backend: str) -> None:
    """Data and the peer's FIN arriving in one readiness edge: EOF must still be read.

    A short read makes the stream wait for readiness before its next recv; the FIN
    that came with the data brings no new edge, so the reactor has to remember it.
    """
    rounds = 30
    with socket.create_server(("127.0.0.1", 0)) as server, anyrt.runtime(backend) as rt:

        def peer() -> None:
            for _ in range(rounds):
                conn, _ = server.accept()
                with conn:
                    assert conn.recv(1) == b"?"  # the client is now waiting to read
                    conn.sendall(b"last words")
                    conn.shutdown(socket.SHUT_WR)  # the FIN right behind the data
                    assert conn.recv(1) == b""

        thread = threading.Thread(target=peer)
        thread.start()

        async def client() -> bytes:
            stream = await rt.connect_tcp(*server.getsockname())
            async with stream:
                await stream.send(b"?")
                return await receive_all(stream)

        try:
            for _ in range(rounds):
                assert run(rt, client) == b"last words"
        finally:
            thread.join(timeout=30)


def test_receive_with_a_huge_max_bytes_does_not_allocate_it(rt: anyrt.Runtime) -> None:
    """recv() allocates the size it is asked for: receive caps it (found by fuzzing)."""

    async def main() -> bytes:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(_echo))
            async with await rt.connect_tcp(*listener.address) as client:
                await client.send(b"small")
                reply = await client.receive(10**12)
            server.cancel()
        return reply

    assert run(rt, main) == b"small"
