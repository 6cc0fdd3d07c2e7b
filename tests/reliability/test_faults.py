"""Faults from peers and from handlers: the server survives, and nothing is lost.

Each test runs on every backend with an OS reactor, against raw sockets that misbehave
on purpose: resets, half-closes, garbage, stalls, silent connections, failing
handlers and a failing error handler.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import anyrt
from anyrt.testing import backend_params
from anyrt.testing.conformance import receive_exactly

#: Every request is a 4-byte big-endian length and that many bytes; the reply echoes it.
MAX_REQUEST = 1024


async def framed_echo(stream: anyrt.ByteStream) -> None:
    """Serve length-prefixed requests until EOF; garbage raises `ValueError`."""
    while True:
        header = await stream.receive(4)
        if not header:
            return
        header += await receive_exactly(stream, 4 - len(header))
        (size,) = struct.unpack(">I", header)
        if size > MAX_REQUEST:
            raise ValueError(f"request of {size} bytes: this is not our protocol")
        body = await receive_exactly(stream, size)
        await stream.send(header + body)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def serve_and_run(
    backend: str,
    handler: Callable[[anyrt.ByteStream], Awaitable[None]],
    peer: Callable[[int], Any],
    **options: Any,
) -> tuple[Any, list[anyrt.TaskError]]:
    """Run ``handler`` behind a listener, ``peer(port)`` in a plain thread; then check
    that a well-behaved client is still served. Return the peer's result and every
    failure the runtime reported."""
    errors: list[anyrt.TaskError] = []
    with anyrt.runtime(backend, error_handler=errors.append, **options) as rt:
        ended = anyrt.Semaphore(rt, 0)

        async def tracked(stream: anyrt.ByteStream) -> None:
            try:
                await handler(stream)
            finally:
                ended.release()

        async def main() -> Any:
            listener = await rt.listen_tcp("127.0.0.1", 0)
            async with listener:
                server = rt.spawn(listener.serve(tracked))
                port = listener.address[1]
                result = await rt.spawn_blocking(peer, port)
                await ended.acquire()  # the misbehaving peer's handler did end
                # The listener survived whatever the peer did: a good client is served.
                good = await rt.connect_tcp("127.0.0.1", port)
                async with good:
                    await good.send(frame(b"still here"))
                    assert await receive_exactly(good, 14) == frame(b"still here")
                server.cancel()
            return result

        async def bounded() -> Any:
            async with rt.timeout(30):
                return await main()

        result = rt.block_on(bounded())
    return result, errors


@pytest.fixture(params=backend_params("os-reactor"))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_a_peer_that_resets_mid_stream(backend: str) -> None:
    def peer(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(b"x" * 100)[:50])  # half a request
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # closing with SO_LINGER 0 sends an RST

    _, errors = serve_and_run(backend, framed_echo, peer)
    # The handler saw the reset (or an EOF, if the RST raced the read): either way it
    # ended, and a failure, if any, was reported rather than lost.
    assert all(isinstance(error.exception, (ConnectionError, EOFError)) for error in errors), errors


def test_a_peer_that_half_closes_still_gets_its_replies(backend: str) -> None:
    def peer(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(b"one") + frame(b"two"))
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(1024):
                data += chunk
            return data

    replies, errors = serve_and_run(backend, framed_echo, peer)
    assert replies == frame(b"one") + frame(b"two")
    assert errors == []


def test_garbage_fails_that_handler_only(backend: str) -> None:
    def peer(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                return sock.recv(1024)  # the server closes the connection: b""...
            except ConnectionResetError:
                return b""  # ...with our unread bytes in its buffer, so as an RST

    reply, errors = serve_and_run(backend, framed_echo, peer)
    assert reply == b""
    assert len(errors) == 1
    assert isinstance(errors[0].exception, ValueError)
    assert "not our protocol" in str(errors[0].exception)


def test_stalled_and_silent_peers_are_shed_without_blocking_others(backend: str) -> None:
    """Peers that connect and never send, or stop mid-request, time out alone."""

    async def guarded(stream: anyrt.ByteStream) -> None:
        rt = guarded_runtime[0]
        try:
            async with rt.timeout(0.3):
                await framed_echo(stream)
        except TimeoutError:
            shed.append(1)  # appended from handler tasks; read once they have ended

    shed: list[int] = []
    guarded_runtime: list[anyrt.Runtime] = []

    def peer(port: int) -> list[bytes]:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            for sock in stalled:
                sock.sendall(frame(b"never finished")[:6])
            # While those ten hang, a good client is served at once.
            with socket.create_connection(("127.0.0.1", port)) as good:
                good.sendall(frame(b"quick"))
                reply = good.recv(1024)
            # Then every hanging connection is closed by the server.
            closed = [sock.recv(1024) for sock in silent + stalled]
            return [reply, *closed]
        finally:
            for sock in silent + stalled:
                sock.close()

    errors: list[anyrt.TaskError] = []
    with anyrt.runtime(backend, error_handler=errors.append) as rt:
        guarded_runtime.append(rt)

        async def main() -> list[bytes]:
            listener = await rt.listen_tcp("127.0.0.1", 0)
            async with listener:
                server = rt.spawn(listener.serve(guarded))
                result: list[bytes] = await rt.spawn_blocking(peer, listener.address[1])
                server.cancel()
            return result

        results = rt.block_on(main())
    assert results[0] == frame(b"quick")
    assert results[1:] == [b""] * 10
    assert len(shed) == 10
    assert errors == []


def test_an_error_handler_that_raises_is_contained_and_reported(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_handler(error: anyrt.TaskError) -> None:
        raise RuntimeError("the error handler itself failed")

    async def failing(stream: anyrt.ByteStream) -> None:
        raise KeyError("handler bug")

    def peer(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            return sock.recv(1024)

    handler_calls = threading.Event()

    def counting_broken_handler(error: anyrt.TaskError) -> None:
        handler_calls.set()
        broken_handler(error)

    with (
        caplog.at_level(logging.ERROR, logger="anyrt"),
        anyrt.runtime(backend, error_handler=counting_broken_handler) as rt,
    ):

        async def main() -> bytes:
            listener = await rt.listen_tcp("127.0.0.1", 0)
            async with listener:
                server = rt.spawn(listener.serve(failing))
                reply: bytes = await rt.spawn_blocking(peer, listener.address[1])
                # The listener goes on after the failing handler and the failing report.
                second: bytes = await rt.spawn_blocking(peer, listener.address[1])
                server.cancel()
            return reply + second

        assert rt.block_on(main()) == b""
    assert handler_calls.is_set()
    assert "the error handler itself failed" in caplog.text
    assert "handler bug" in caplog.text  # the original failure was still logged
