"""UDP on the OS backends against a peer anyrt did not write: a plain OS socket.

Every installed backend with an OS reactor: the native threaded runtimes and the
asyncio, uvloop and trio adapters. What every backend promises about datagrams is
tested once, in the conformance suite's ``test_udp.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import anyrt
from anyrt.testing import backend_params

OPTIONS = {"work-stealing": {"workers": 2}, "thread-per-core": {"cores": 2}}
#: Every installed backend on real sockets (one that cannot be imported is skipped).
OS_BACKENDS = backend_params("os-reactor")


@pytest.fixture(params=OS_BACKENDS)
def rt(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    with anyrt.runtime(request.param, **OPTIONS.get(request.param, {})) as runtime:
        yield runtime


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
