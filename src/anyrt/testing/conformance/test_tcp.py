"""TCP through the reactor: listen, connect, serve, half-close, errors, backpressure.

Addresses are ``127.0.0.1`` with port 0; on a backend with an in-memory network the
same code runs without touching the OS.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Callable

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals, receive_all, receive_exactly


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


async def test_listener_address_resolves_port_zero(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        assert isinstance(listener, anyrt.Listener)
        host, port = listener.address
        assert isinstance(host, str)
        assert 0 < port < 65536


async def test_accept_and_exchange(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        client = await runtime.connect_tcp(*listener.address)
        server = await listener.accept()
        assert isinstance(client, anyrt.ByteStream)
        async with client, server:
            await client.send(b"ping")
            assert await receive_exactly(server, 4) == b"ping"
            await server.send(b"pong")
            assert await receive_exactly(client, 4) == b"pong"


async def test_echo_server_with_many_clients(runtime: anyrt.Runtime) -> None:
    listener = await runtime.listen_tcp("127.0.0.1", 0)
    server = runtime.spawn(listener.serve(_echo))

    async def client(index: int) -> list[bytes]:
        replies = []
        async with await runtime.connect_tcp(*listener.address) as stream:
            for round_trip in range(5):
                message = f"client {index} round {round_trip}".encode()
                await stream.send(message)
                replies.append(await receive_exactly(stream, len(message)))
        return replies

    async with anyrt.TaskGroup(runtime) as tg:
        clients = [tg.spawn(client(index)) for index in range(50)]
    for index, task in enumerate(clients):
        assert await task == [f"client {index} round {i}".encode() for i in range(5)]
    await listener.aclose()
    await server  # serve() returns once the listener is closed


async def test_send_eof_is_a_half_close(runtime: anyrt.Runtime) -> None:
    async def count_then_reply(stream: anyrt.ByteStream) -> None:
        received = await receive_all(stream)  # ends at the client's EOF
        await stream.send(f"got {len(received)} bytes".encode())

    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        server = runtime.spawn(listener.serve(count_then_reply))
        async with await runtime.connect_tcp(*listener.address) as stream:
            await stream.send(b"x" * 1000)
            await stream.send_eof()
            # Our sending side is closed; the receiving side still works.
            assert await receive_all(stream) == b"got 1000 bytes"
    await server


async def test_connect_to_a_closed_port_is_refused(runtime: anyrt.Runtime) -> None:
    listener = await runtime.listen_tcp("127.0.0.1", 0)
    port = listener.address[1]
    await listener.aclose()
    await listener.aclose()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        await runtime.connect_tcp("127.0.0.1", port)


async def test_receive_after_own_close_raises(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        client = await runtime.connect_tcp(*listener.address)
        async with await listener.accept():
            await client.aclose()
            await client.aclose()  # idempotent
            with pytest.raises(anyrt.ClosedResourceError):
                await client.receive()


async def test_closing_a_stream_wakes_its_own_receiver(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        client = await runtime.connect_tcp(*listener.address)
        async with await listener.accept():
            arrivals = Arrivals(runtime, 1)

            async def receive() -> bytes:
                return await arrivals.enter("receiver", client.receive())

            task = runtime.spawn(receive())
            await arrivals.all_in.wait()
            await client.aclose()
            with pytest.raises(anyrt.ClosedResourceError):
                await task


async def test_closing_a_listener_wakes_accept(runtime: anyrt.Runtime) -> None:
    listener = await runtime.listen_tcp("127.0.0.1", 0)
    arrivals = Arrivals(runtime, 1)

    async def accept() -> anyrt.ByteStream:
        return await arrivals.enter("acceptor", listener.accept())

    task = runtime.spawn(accept())
    await arrivals.all_in.wait()
    await listener.aclose()
    with pytest.raises(anyrt.ClosedResourceError):
        await task


async def test_peer_close_reads_as_eof(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        client = await runtime.connect_tcp(*listener.address)
        server = await listener.accept()
        await client.send(b"last words")
        await client.aclose()
        async with server:
            assert await receive_all(server) == b"last words"


def test_handler_exception_does_not_stop_the_listener(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    errors: list[anyrt.TaskError] = []
    rt = make_runtime(error_handler=errors.append)

    async def handler(stream: anyrt.ByteStream) -> None:
        if await stream.receive() == b"boom":
            raise KeyError("handler failed")
        await stream.send(b"fine")

    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(handler))
            async with await rt.connect_tcp(*listener.address) as first:
                await first.send(b"boom")
                with contextlib.suppress(ConnectionResetError):
                    assert await receive_all(first) == b""  # closed after the failure
            async with await rt.connect_tcp(*listener.address) as second:
                await second.send(b"hello")
                assert await receive_exactly(second, 4) == b"fine"
            assert not server.done()
        await server
        async with rt.timeout(10):
            while not errors:  # the report may come from another thread
                await rt.sleep(0.001)

    rt.block_on(main())
    assert [type(error.exception) for error in errors] == [KeyError]


async def test_large_payload_arrives_intact(runtime: anyrt.Runtime) -> None:
    payload = random.Random(1).randbytes(1024 * 1024)
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        server = runtime.spawn(listener.serve(_echo))
        async with await runtime.connect_tcp(*listener.address) as stream:

            async def upload() -> None:
                await stream.send(payload)  # waits while the echo backs up
                await stream.send_eof()

            uploader = runtime.spawn(upload())
            echoed = await receive_all(stream)
            await uploader
    await server
    assert len(echoed) == len(payload)
    assert echoed == payload


async def test_receive_respects_max_bytes(runtime: anyrt.Runtime) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        client = await runtime.connect_tcp(*listener.address)
        async with client, await listener.accept() as server:
            await client.send(b"abcdefgh")
            chunks: list[bytes] = []
            while sum(len(chunk) for chunk in chunks) < 8:
                chunk = await server.receive(3)
                assert 0 < len(chunk) <= 3
                chunks.append(chunk)
            assert b"".join(chunks) == b"abcdefgh"


@pytest.mark.anyrt_requires("os-reactor")
async def test_wait_readable_and_writable(runtime: anyrt.Runtime) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        await runtime.wait_writable(left)
        arrivals = Arrivals(runtime, 1)
        task = runtime.spawn(_await_readable(runtime, arrivals, left))
        await arrivals.all_in.wait()
        right.send(b"x")
        await task
        assert left.recv(1) == b"x"
        right.send(b"y")
        await runtime.wait_readable(left.fileno())  # a raw descriptor works too
        assert left.recv(1) == b"y"


async def _await_readable(rt: anyrt.Runtime, arrivals: Arrivals, sock: socket.socket) -> None:
    await arrivals.enter("reader", rt.wait_readable(sock))
