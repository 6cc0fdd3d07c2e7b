"""TCP on trio: what a raw trio socket does differently, and how the streams hide it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
from anyrt_trio import TrioRuntime

import anyrt
from anyrt.testing.conformance import Arrivals


@pytest.fixture
def rt() -> Iterator[TrioRuntime]:
    with TrioRuntime() as runtime:
        yield runtime


@asynccontextmanager
async def _connected(
    rt: TrioRuntime,
) -> AsyncIterator[tuple[anyrt.ByteStream, anyrt.ByteStream]]:
    async with (
        await rt.listen_tcp("127.0.0.1", 0) as listener,
        await rt.connect_tcp(*listener.address) as client,
        await listener.accept() as server,
    ):
        yield client, server


def test_receive_asks_the_os_for_at_most_a_mebibyte(rt: TrioRuntime) -> None:
    async def main() -> bytes:
        async with _connected(rt) as (client, server):
            await server.send(b"x")
            return await client.receive(2**40)  # recv() would allocate all of it first

    assert rt.block_on(main()) == b"x"


def test_several_tasks_may_wait_in_accept(rt: TrioRuntime) -> None:
    """A trio socket refuses a second waiter; the listener lets acceptors take turns."""

    async def main() -> int:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            arrivals = Arrivals(rt, 2)
            acceptors = [
                rt.spawn(_await(arrivals.enter(index, listener.accept()))) for index in range(2)
            ]
            await arrivals.all_in.wait()
            clients = [await rt.connect_tcp(*listener.address) for _ in range(2)]
            servers = [await acceptor for acceptor in acceptors]
            for stream in (*clients, *servers):
                await stream.aclose()
            return len(servers)

    assert rt.block_on(main()) == 2


def test_a_task_waiting_on_the_raw_socket_makes_receive_busy_not_a_trio_error(
    rt: TrioRuntime,
) -> None:
    async def main() -> None:
        async with _connected(rt) as (client, _):
            assert isinstance(client, anyrt.ByteStream)
            raw = client.socket  # type: ignore[attr-defined]
            arrivals = Arrivals(rt, 1)
            waiter = rt.spawn(_await(arrivals.enter("raw", rt.wait_readable(raw))))
            await arrivals.all_in.wait()
            try:
                with pytest.raises(anyrt.BusyResourceError) as info:
                    await client.receive()
                assert not isinstance(info.value, trio.BusyResourceError)
            finally:
                waiter.cancel()
                with pytest.raises(anyrt.Cancelled):
                    await waiter

    rt.block_on(main())


async def _await(awaitable: object) -> object:
    return await awaitable  # type: ignore[misc]
