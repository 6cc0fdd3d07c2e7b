"""Objects of one trio runtime used in another's run: a precise error, never a hang.

Each trio runtime has a trio run (and a reactor) of its own; what the conformance
suite does not cover of `test_misuse` is here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anyrt_trio import TrioRuntime

import anyrt

OF_A_UDP_SOCKET = "of a UDP socket of the 'trio' runtime"


@pytest.fixture
def two() -> Iterator[tuple[TrioRuntime, TrioRuntime]]:
    with TrioRuntime() as owner, TrioRuntime() as other:
        yield owner, other


def test_a_udp_socket_of_another_runtime_raises(two: tuple[TrioRuntime, TrioRuntime]) -> None:
    owner, other = two

    async def bind() -> anyrt.DatagramSocket:
        return await owner.open_udp("127.0.0.1", 0)

    sock = owner.block_on(bind())

    async def main() -> None:
        with other.fail_after(5):
            with pytest.raises(RuntimeError, match=rf"receive_from\(\) {OF_A_UDP_SOCKET}"):
                await sock.receive_from()
            with pytest.raises(RuntimeError, match=rf"send_to\(\) {OF_A_UDP_SOCKET}"):
                await sock.send_to(b"x", sock.address)

    try:
        other.block_on(main())
    finally:
        owner.block_on(sock.aclose())


def test_a_listener_of_another_runtime_raises(two: tuple[TrioRuntime, TrioRuntime]) -> None:
    owner, other = two

    async def listen() -> anyrt.Listener:
        return await owner.listen_tcp("127.0.0.1", 0)

    listener = owner.block_on(listen())

    async def main() -> None:
        with (
            other.fail_after(5),
            pytest.raises(RuntimeError, match=r"accept\(\) of a listener of the 'trio' runtime"),
        ):
            await listener.accept()

    try:
        other.block_on(main())
    finally:
        owner.block_on(listener.aclose())


def test_the_error_names_the_runtime_it_was_used_in(two: tuple[TrioRuntime, TrioRuntime]) -> None:
    owner, other = two

    async def main() -> None:
        with pytest.raises(RuntimeError) as info:
            await owner.sleep(0)
        assert repr(owner) in str(info.value)
        assert f"a task of another runtime, {other!r}" in str(info.value)

    other.block_on(main())
