"""TLS through ``connect_tcp(..., ssl=)`` and ``listen_tcp(..., ssl=)``.

The certificates come from `trustme` (skipped where it is not installed). Addresses
are ``127.0.0.1`` with port 0, so the same code runs on the in-memory network.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest

import anyrt
from anyrt.testing.conformance import receive_all, receive_exactly

if TYPE_CHECKING:
    import trustme
else:
    trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


async def test_an_echo_over_tls_both_ways_at_once(
    runtime: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB: many TLS records, both ways at once
    async with await runtime.listen_tcp("127.0.0.1", 0, ssl=server_context) as listener:
        server = runtime.spawn(listener.serve(_echo))
        client = await runtime.connect_tcp("127.0.0.1", listener.address[1], ssl=client_context)
        async with client:
            assert isinstance(client, anyrt.ByteStream)

            async def send() -> None:
                await client.send(payload)
                await client.send_eof()

            sender = runtime.spawn(send())
            echoed = await receive_all(client)
            await sender
        server.cancel()
    assert echoed == payload


async def test_server_hostname_is_checked(
    runtime: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with await runtime.listen_tcp("127.0.0.1", 0, ssl=server_context) as listener:
        server = runtime.spawn(listener.serve(_echo))
        port = listener.address[1]
        async with await runtime.connect_tcp(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        ) as client:
            await client.send(b"named")
            assert await receive_exactly(client, 5) == b"named"
        with pytest.raises(ssl.SSLCertVerificationError):
            await runtime.connect_tcp(
                "127.0.0.1", port, ssl=client_context, server_hostname="example.org"
            )
        server.cancel()


async def test_a_failed_handshake_does_not_stop_the_listener(
    runtime: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    untrusting = ssl.create_default_context()  # does not trust the test CA
    async with await runtime.listen_tcp("127.0.0.1", 0, ssl=server_context) as listener:
        server = runtime.spawn(listener.serve(_echo))
        port = listener.address[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await runtime.connect_tcp("127.0.0.1", port, ssl=untrusting)
        async with await runtime.connect_tcp("127.0.0.1", port, ssl=client_context) as client:
            await client.send(b"still serving")
            assert await receive_exactly(client, 13) == b"still serving"
        assert not server.done()
        server.cancel()


async def test_send_eof_is_a_tls_half_close(
    runtime: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def count_then_reply(stream: anyrt.ByteStream) -> None:
        request = await receive_all(stream)  # ends at the client's close_notify
        await stream.send(b"got %d bytes" % len(request))

    async with await runtime.listen_tcp("127.0.0.1", 0, ssl=server_context) as listener:
        server = runtime.spawn(listener.serve(count_then_reply))
        client = await runtime.connect_tcp("127.0.0.1", listener.address[1], ssl=client_context)
        async with client:
            await client.send(b"x" * 1000)
            await client.send_eof()
            with pytest.raises(anyrt.ClosedResourceError, match="send_eof"):
                await client.send(b"more")
            assert await receive_all(client) == b"got 1000 bytes"
        server.cancel()


async def test_a_send_cut_short_breaks_the_tls_stream(
    runtime: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    stalled = anyrt.Event(runtime)

    async def never_read(stream: anyrt.ByteStream) -> None:
        await stalled.wait()  # the peer's buffers fill up: the client's send blocks

    async with await runtime.listen_tcp("127.0.0.1", 0, ssl=server_context) as listener:
        server = runtime.spawn(listener.serve(never_read))
        client = await runtime.connect_tcp("127.0.0.1", listener.address[1], ssl=client_context)
        async with client:
            with runtime.move_on_after(0.05) as scope:
                await client.send(b"x" * (32 << 20))
            assert scope.cancelled_caught
            with pytest.raises(anyrt.BrokenResourceError):
                await client.send(b"more")
            with pytest.raises(anyrt.BrokenResourceError):
                await client.receive()
        stalled.set()
        server.cancel()
