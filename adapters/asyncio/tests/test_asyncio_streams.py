"""Streams on the loop's transports: flow control, errors, Unix sockets, fd waits."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
from anyrt_asyncio import AsyncioRuntime, AsyncioStream
from anyrt_asyncio._streams import READ_HIGH_WATER

import anyrt


async def _pair(rt: anyrt.Runtime, listener: anyrt.Listener) -> tuple[AsyncioStream, AsyncioStream]:
    client = await rt.connect_tcp(*listener.address)
    server = await listener.accept()
    assert isinstance(client, AsyncioStream)
    assert isinstance(server, AsyncioStream)
    return client, server


def test_unread_data_is_bounded_by_pausing_the_transport(rt: AsyncioRuntime) -> None:
    payload = os.urandom(4 * 1024 * 1024)

    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client, server = await _pair(rt, listener)
            async with client, server:
                sending = rt.spawn(client.send(payload))
                async with rt.timeout(30):
                    while not server._reading_paused:
                        await rt.sleep(0.001)
                # The rest waits in the kernel's buffers and the sender's transport.
                assert server._buffered <= READ_HIGH_WATER + 256 * 1024 < len(payload) // 4
                received = bytearray()
                while len(received) < len(payload):
                    received += await server.receive()
                await sending
                assert received == payload

    rt.block_on(main())


def test_send_after_the_peer_is_gone_raises(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client, server = await _pair(rt, listener)
            await client.aclose()

            async def send_until_it_fails() -> None:
                async with rt.timeout(10):
                    while True:  # the first sends may still be accepted by the kernel
                        await server.send(b"x" * 1024)
                        await rt.sleep(0.001)

            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                await send_until_it_fails()
            await server.aclose()

    rt.block_on(main())


def test_misuse_of_a_stream_names_the_fix(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client, server = await _pair(rt, listener)
            async with client, server:
                receiving = rt.spawn(server.receive())
                await rt.sleep(0)
                with pytest.raises(RuntimeError, match="already receiving"):
                    await server.receive()
                with pytest.raises(TypeError, match="bytes"):
                    await client.send("text")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="max_bytes"):
                    await server.receive(0)
                await client.send(bytearray(b"abc"))
                assert await receiving == b"abc"
                await client.send_eof()
                with pytest.raises(BrokenPipeError, match="send_eof"):
                    await client.send(b"more")
                assert await server.receive() == b""

    rt.block_on(main())


def test_unix_sockets(rt: AsyncioRuntime) -> None:
    async def main(path: str) -> bytes:
        async with await rt.listen_unix(path) as listener:
            assert listener.address == (path, 0)
            async with await rt.connect_unix(path) as client, await listener.accept() as server:
                await client.send(b"over a unix socket")
                await client.send_eof()
                received = b""
                while chunk := await server.receive():
                    received += chunk
                return received

    with tempfile.TemporaryDirectory() as tmp:
        assert rt.block_on(main(os.path.join(tmp, "sock"))) == b"over a unix socket"


def test_many_tasks_wait_on_one_fd_and_one_may_be_cancelled(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            waiters = [rt.spawn(rt.wait_readable(left)) for _ in range(3)]
            await rt.sleep(0)
            waiters[0].cancel()
            right.send(b"x")
            for waiter in waiters[1:]:
                await waiter
            with pytest.raises(anyrt.Cancelled):
                await waiters[0]
            assert left.recv(1) == b"x"
            await rt.wait_writable(left)

    rt.block_on(main())


def test_a_closed_socket_is_refused(rt: AsyncioRuntime) -> None:
    sock = socket.socket()
    sock.close()

    async def main() -> None:
        with pytest.raises(ValueError, match="invalid file descriptor"):
            await rt.wait_readable(sock)
        with pytest.raises(TypeError, match="fileno"):
            await rt.wait_readable("not a socket")  # type: ignore[arg-type]

    rt.block_on(main())
