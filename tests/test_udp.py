"""UDP on the OS backends: `open_udp`, `send_to`, `receive_from`.

Every installed backend with an OS reactor: the native threaded runtimes and the
asyncio, uvloop and trio adapters.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import anyrt
from anyrt._registry import backend_factory

OPTIONS = {"work-stealing": {"workers": 2}, "thread-per-core": {"cores": 2}}
#: Every installed backend on real sockets.
OS_BACKENDS = sorted(
    name
    for name in anyrt.backends()
    if "os-reactor" in getattr(backend_factory(name), "capabilities", ())
)


@pytest.fixture(params=OS_BACKENDS)
def rt(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    with anyrt.runtime(request.param, **OPTIONS.get(request.param, {})) as runtime:
        yield runtime


def test_datagrams_keep_their_boundaries_and_senders(rt: anyrt.Runtime) -> None:
    async def main() -> list[tuple[bytes, tuple[str, int]]]:
        server = await rt.open_udp("127.0.0.1", 0)
        client = await rt.open_udp("127.0.0.1", 0)
        assert isinstance(server, anyrt.DatagramSocket)
        async with server, client:
            received = rt.spawn(_receive(server, 3))
            for payload in (b"one", b"two" * 100, b""):
                await client.send_to(payload, server.address)
            got = await received
            assert all(sender == client.address for _, sender in got)
            return got

    got = rt.block_on(main())
    assert [data for data, _ in got] == [b"one", b"two" * 100, b""]


async def _receive(sock: anyrt.DatagramSocket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    return [await sock.receive_from() for _ in range(count)]


def test_a_plain_socket_peer_and_a_reply(rt: anyrt.Runtime) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)

        async def main() -> bytes:
            udp = await rt.open_udp("127.0.0.1", 0)
            async with udp:
                await udp.send_to(b"ping", peer.getsockname())
                data, sender = await rt.spawn_blocking(peer.recvfrom, 100)
                assert sender == udp.address
                await rt.spawn_blocking(peer.sendto, data.upper(), sender)
                reply, source = await udp.receive_from()
                assert source == peer.getsockname()
                return reply

        assert rt.block_on(main()) == b"PING"


def test_closing_wakes_a_waiting_receiver_and_bad_input_is_clear(rt: anyrt.Runtime) -> None:
    async def main() -> None:
        udp = await rt.open_udp("127.0.0.1", 0)
        waiting = rt.spawn(udp.receive_from())
        await rt.sleep(0.01)
        await udp.aclose()
        with pytest.raises(anyrt.ClosedResourceError):
            await waiting
        with pytest.raises(anyrt.ClosedResourceError, match="closed UDP socket"):
            await udp.send_to(b"x", ("127.0.0.1", 9))
        other = await rt.open_udp("127.0.0.1", 0)
        async with other:
            with pytest.raises(TypeError, match="bytes"):
                await other.send_to("text", ("127.0.0.1", 9))  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"\(host, port\)"):
                await other.send_to(b"x", "127.0.0.1:9")  # type: ignore[arg-type]
            with pytest.raises(OverflowError, match="port"):
                await other.send_to(b"x", ("127.0.0.1", 70000))
        with pytest.raises(TypeError, match="local_host"):
            await rt.open_udp(None, 0)  # type: ignore[arg-type]

    rt.block_on(main())
