"""UDP through the reactor: datagrams keep their boundaries and their senders.

``open_udp`` binds on ``127.0.0.1`` with port 0; on a backend with an in-memory network
the same code runs without touching the OS. Loopback UDP does not lose or reorder
datagrams sent one after another by one socket, on Linux and in memory alike.
"""

from __future__ import annotations

import pytest

import anyrt


async def test_datagrams_keep_their_boundaries_and_senders(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.open_udp("127.0.0.1", 0) as server,
        await runtime.open_udp("127.0.0.1", 0) as client,
    ):
        assert isinstance(server, anyrt.DatagramSocket)
        host, port = server.address
        assert isinstance(host, str)
        assert 0 < port < 65536
        assert client.address != server.address
        payloads = [b"one", b"two" * 1000, b""]
        for payload in payloads:
            await client.send_to(payload, server.address)
        received = [await server.receive_from() for _ in payloads]
        assert [data for data, _ in received] == payloads
        assert all(sender == client.address for _, sender in received)


async def test_a_reply_goes_back_to_the_sender(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.open_udp("127.0.0.1", 0) as server,
        await runtime.open_udp("127.0.0.1", 0) as client,
    ):

        async def respond() -> None:
            for _ in range(3):
                data, sender = await server.receive_from()
                await server.send_to(data.upper(), sender)

        responder = runtime.spawn(respond())
        replies = []
        for word in (b"a", b"bb", b"ccc"):
            await client.send_to(word, server.address)
            replies.append(await client.receive_from())
        await responder
        assert replies == [
            (b"A", server.address),
            (b"BB", server.address),
            (b"CCC", server.address),
        ]


async def test_a_datagram_longer_than_max_bytes_is_truncated(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.open_udp("127.0.0.1", 0) as server,
        await runtime.open_udp("127.0.0.1", 0) as client,
    ):
        await client.send_to(b"0123456789", server.address)
        await client.send_to(b"next", server.address)
        assert (await server.receive_from(4))[0] == b"0123"
        assert (await server.receive_from())[0] == b"next"


async def test_sending_to_a_port_nobody_bound_is_not_an_error(runtime: anyrt.Runtime) -> None:
    async with await runtime.open_udp("127.0.0.1", 0) as nobody:
        address = nobody.address
    async with (
        await runtime.open_udp("127.0.0.1", 0) as client,
        await runtime.open_udp("127.0.0.1", 0) as server,
    ):
        await client.send_to(b"lost", address)
        await client.send_to(b"kept", server.address)
        assert (await server.receive_from())[0] == b"kept"


async def test_binding_a_bound_port_fails(runtime: anyrt.Runtime) -> None:
    async with await runtime.open_udp("127.0.0.1", 0) as first:
        with pytest.raises(OSError, match="in use"):
            await runtime.open_udp("127.0.0.1", first.address[1])


async def test_closing_wakes_a_waiting_receiver(runtime: anyrt.Runtime) -> None:
    sock = await runtime.open_udp("127.0.0.1", 0)
    started = anyrt.Event(runtime)

    async def receive() -> object:
        started.set()
        return await sock.receive_from()

    waiting = runtime.spawn(receive())
    await started.wait()
    await runtime.sleep(0.01)  # let the receiver park (on backends that poll the OS)
    await sock.aclose()
    with pytest.raises(anyrt.ClosedResourceError):
        await waiting
    await sock.aclose()  # idempotent


async def test_use_after_close_and_bad_input_are_clear(runtime: anyrt.Runtime) -> None:
    sock = await runtime.open_udp("127.0.0.1", 0)
    async with sock:
        with pytest.raises(TypeError, match="bytes"):
            await sock.send_to("text", ("127.0.0.1", 9))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"\(host, port\)"):
            await sock.send_to(b"x", "127.0.0.1:9")  # type: ignore[arg-type]
        with pytest.raises(OverflowError, match="port"):
            await sock.send_to(b"x", ("127.0.0.1", 70000))
        with pytest.raises(ValueError, match="max_bytes"):
            await sock.receive_from(0)
    with pytest.raises(anyrt.ClosedResourceError, match="closed UDP socket"):
        await sock.send_to(b"x", ("127.0.0.1", 9))
    with pytest.raises(anyrt.ClosedResourceError, match="closed UDP socket"):
        await sock.receive_from()
    with pytest.raises(TypeError, match="local_host"):
        await runtime.open_udp(None, 0)  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="port"):
        await runtime.open_udp("127.0.0.1", -1)
