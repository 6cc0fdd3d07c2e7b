"""One stream, several tasks: sends are serialised, a second receive is refused."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals, receive_all, receive_exactly

T = TypeVar("T")

CHUNK = 256 * 1024


async def test_concurrent_sends_never_interleave(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.listen_tcp("127.0.0.1", 0) as listener,
        await runtime.connect_tcp(*listener.address) as client,
        await listener.accept() as server,
    ):
        reader = runtime.spawn(receive_exactly(server, 3 * CHUNK))
        async with anyrt.TaskGroup(runtime) as tg:
            for mark in (b"a", b"b", b"c"):
                tg.spawn(client.send(mark * CHUNK))
        data = await reader
    runs = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    assert sorted(run[:1] for run in runs) == [b"a", b"b", b"c"]
    assert all(run == run[:1] * CHUNK for run in runs)


async def test_a_second_concurrent_receive_raises_busy_resource_error(
    runtime: anyrt.Runtime,
) -> None:
    async with (
        await runtime.listen_tcp("127.0.0.1", 0) as listener,
        await runtime.connect_tcp(*listener.address) as client,
        await listener.accept() as server,
    ):
        arrivals = Arrivals(runtime, 1)
        first = runtime.spawn(_await(arrivals.enter("first", client.receive())))
        await arrivals.all_in.wait()
        with pytest.raises(anyrt.BusyResourceError):
            await client.receive()
        await server.send(b"for the first")
        assert await first == b"for the first"
        await server.send(b"later")
        assert await client.receive() == b"later"  # free again


async def test_a_cancelled_receive_frees_the_stream(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.listen_tcp("127.0.0.1", 0) as listener,
        await runtime.connect_tcp(*listener.address) as client,
        await listener.accept() as server,
    ):
        with runtime.move_on_after(0.01):
            await client.receive()
        await server.send(b"x")
        assert await client.receive() == b"x"


async def test_after_a_broken_send_receive_returns_eof(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.listen_tcp("127.0.0.1", 0) as listener,
        await runtime.connect_tcp(*listener.address) as client,
    ):
        server = await listener.accept()
        await server.aclose()
        with runtime.fail_after(5), pytest.raises(OSError):  # BrokenPipe or ConnectionReset
            await _send_until_it_fails(runtime, client)
        assert await client.receive() == b""
        assert await client.receive() == b""
        assert await receive_all(client) == b""


async def _send_until_it_fails(runtime: anyrt.Runtime, stream: anyrt.ByteStream) -> None:
    while True:
        await stream.send(b"into the void" * 1000)
        await runtime.sleep(0.001)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
