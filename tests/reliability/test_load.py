"""Load: as many concurrent TCP connections as the fd limit allows (up to 10,000).

Every connection stays open until all of them are connected, then does one
request/response; every reply is checked, so a dropped connection or a lost reply
fails the test.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import pytest

import anyrt
from anyrt.testing.conformance import receive_exactly

TARGET = 10_000
#: fds kept back for the interpreter, the runtime's reactors and pools, and pytest.
RESERVE = 300


@pytest.fixture(scope="module")
def connections() -> Iterator[int]:
    """Raise the soft fd limit to the hard one; yield how many connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else 2 * TARGET + RESERVE
    resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    try:
        yield min(TARGET, (ceiling - RESERVE) // 2)  # a client and a server fd each
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_thousands_of_concurrent_connections_each_get_their_reply(
    os_runtime: anyrt.Runtime, connections: int, record_property: pytest.RecordProperty
) -> None:
    rt = os_runtime
    served = 0

    async def handler(stream: anyrt.ByteStream) -> None:
        nonlocal served
        request = await receive_exactly(stream, 8)
        await stream.send(request[::-1])
        served += 1  # handlers of one connection only; read after all have ended

    async def main() -> tuple[int, float]:
        connected = anyrt.Semaphore(rt, 0)
        everyone_in = anyrt.Event(rt)
        listener = await rt.listen_tcp("127.0.0.1", 0)
        server = rt.spawn(listener.serve(handler))
        port = listener.address[1]

        async def client(index: int) -> bool:
            stream = await rt.connect_tcp("127.0.0.1", port)
            async with stream:
                connected.release()
                await everyone_in.wait()
                request = index.to_bytes(8, "big")
                await stream.send(request)
                return await receive_exactly(stream, 8) == request[::-1]

        start = time.perf_counter()
        clients = [rt.spawn(client(index)) for index in range(connections)]
        for _ in range(connections):
            await connected.acquire()
        everyone_in.set()
        replies = [await task for task in clients]
        elapsed = time.perf_counter() - start
        await listener.aclose()
        server.cancel()
        return sum(replies), elapsed

    async def bounded() -> tuple[int, float]:
        async with rt.timeout(120):
            return await main()

    correct, elapsed = rt.block_on(bounded())
    record_property("connections", connections)
    record_property("seconds", round(elapsed, 2))
    assert correct == connections
