"""TLS: `anyrt.TLSStream` over real sockets and the in-memory network, against peers
that anyrt did not write (Python's own blocking `ssl`, and ``openssl s_client``).

The socket tests run on every installed backend with an OS reactor: the native
threaded runtimes and the asyncio, uvloop and trio adapters.

The certificates are the conformance suite's (`trustme`), through tests/conftest.py.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import anyrt
from anyrt.testing import backend_params
from anyrt.testing.conformance import receive_all, receive_exactly

trustme = pytest.importorskip("trustme", reason="TLS tests need trustme (and cryptography)")

OPTIONS = {"work-stealing": {"workers": 2}, "thread-per-core": {"cores": 2}}
#: Every installed backend on real sockets (one that cannot be imported is skipped).
OS_BACKENDS = backend_params("os-reactor")


@pytest.fixture(params=OS_BACKENDS)
def rt(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    with anyrt.runtime(request.param, **OPTIONS.get(request.param, {})) as runtime:
        yield runtime


async def _echo(stream: anyrt.ByteStream) -> None:
    while data := await stream.receive():
        await stream.send(data)


def test_connect_and_listen_with_ssl_echo_both_ways_at_once(
    rt: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """1 MiB sent by one task while another receives it back: the SSLObject is shared."""
    payload = bytes(range(256)) * 4096

    async def main() -> bytes:
        listener = await rt.listen_tcp("127.0.0.1", 0, ssl=server_context)
        async with listener:
            server = rt.spawn(listener.serve(_echo))
            client = await rt.connect_tcp(
                "127.0.0.1", listener.address[1], ssl=client_context, server_hostname="localhost"
            )
            async with client:
                assert isinstance(client, anyrt.TLSStream)
                assert client.version() in ("TLSv1.2", "TLSv1.3")

                async def upload() -> None:
                    for offset in range(0, len(payload), 10_000):
                        await client.send(payload[offset : offset + 10_000])

                uploading = rt.spawn(upload())
                echoed = await receive_exactly(client, len(payload))
                await uploading
            server.cancel()
            return echoed

    assert main_result(rt, main) == payload


def main_result(rt: anyrt.Runtime, main: object) -> object:
    async def bounded() -> object:
        async with rt.timeout(30):
            return await main()  # type: ignore[operator]

    return rt.block_on(bounded())


@pytest.mark.parametrize("backend", OS_BACKENDS)
def test_an_untrusted_certificate_fails_the_handshake_and_serve_goes_on(
    backend: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Each failed handshake reaches the error handler; the next client is served."""
    failures: list[anyrt.TaskError] = []
    with anyrt.runtime(backend, error_handler=failures.append, **OPTIONS.get(backend, {})) as rt:
        _untrusted_then_trusted(rt, server_context, client_context)
    assert len(failures) == 2, failures
    assert all(isinstance(failure.exception, ssl.SSLError) for failure in failures), failures


def _untrusted_then_trusted(
    rt: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0, ssl=server_context)
        async with listener:
            server = rt.spawn(listener.serve(_echo))
            with pytest.raises(ssl.SSLCertVerificationError):
                await rt.connect_tcp(
                    "localhost", listener.address[1], ssl=ssl.create_default_context()
                )
            other_ca = trustme.CA()
            wrong_name = ssl.create_default_context()
            other_ca.configure_trust(wrong_name)
            with pytest.raises(ssl.SSLCertVerificationError):
                await rt.connect_tcp("localhost", listener.address[1], ssl=wrong_name)
            async with await rt.connect_tcp(
                "localhost", listener.address[1], ssl=client_context
            ) as good:
                await good.send(b"still serving")
                assert await receive_exactly(good, 13) == b"still serving"
            server.cancel()

    main_result(rt, main)


def test_a_connection_dropped_without_close_notify_is_an_error(
    rt: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def drop(stream: anyrt.ByteStream) -> None:
        assert isinstance(stream, anyrt.TLSStream)
        await stream.send(b"partial")
        await stream.transport.aclose()  # the TCP connection, under TLS's feet

    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0, ssl=server_context)
        async with listener:
            server = rt.spawn(listener.serve(drop))
            client = await rt.connect_tcp("localhost", listener.address[1], ssl=client_context)
            async with client:
                assert await receive_exactly(client, 7) == b"partial"
                with pytest.raises(ssl.SSLEOFError):
                    await client.receive()  # a truncation, not a clean end
            server.cancel()

    main_result(rt, main)


# -- against peers anyrt did not write ------------------------------------------------------


def test_client_against_pythons_blocking_ssl_server(
    rt: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain:

        def serve_one() -> None:
            conn, _ = plain.accept()
            with server_context.wrap_socket(conn, server_side=True) as tls:
                data = b""
                while not data.endswith(b"\n"):
                    data += tls.recv(1024)
                tls.sendall(data.upper())
                tls.unwrap()  # a clean close_notify

        thread = threading.Thread(target=serve_one)
        thread.start()

        async def main() -> bytes:
            client = await rt.connect_tcp("localhost", plain.getsockname()[1], ssl=client_context)
            async with client:
                await client.send(b"hello from anyrt\n")
                return await receive_all(client)

        try:
            assert main_result(rt, main) == b"HELLO FROM ANYRT\n"
        finally:
            thread.join(timeout=10)


def test_server_against_pythons_blocking_ssl_client(
    rt: anyrt.Runtime, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    replies: list[bytes] = []

    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0, ssl=server_context)
        async with listener:
            server = rt.spawn(listener.serve(_echo))
            port = listener.address[1]

            def client() -> None:
                with (
                    socket.create_connection(("127.0.0.1", port)) as raw,
                    client_context.wrap_socket(raw, server_hostname="localhost") as tls,
                ):
                    tls.sendall(b"ping")
                    replies.append(tls.recv(4))

            await rt.spawn_blocking(client)
            server.cancel()

    main_result(rt, main)
    assert replies == [b"ping"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_server_against_openssl_s_client(
    rt: anyrt.Runtime, ca: trustme.CA, server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def answer_one_line(stream: anyrt.ByteStream) -> None:
        line = b""
        while not line.endswith(b"\n"):
            line += await stream.receive()
        await stream.send(line.upper())  # then close: TLS close_notify, then TCP FIN

    async def main() -> str:
        listener = await rt.listen_tcp("127.0.0.1", 0, ssl=server_context)
        async with listener:
            server = rt.spawn(listener.serve(answer_one_line))
            command = [
                "openssl", "s_client", "-quiet", "-ign_eof", "-verify_return_error",
                "-connect", f"127.0.0.1:{listener.address[1]}",
                "-servername", "localhost", "-CAfile", str(ca_file),
            ]  # fmt: skip

            def run_client() -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    command,
                    input="echo me\n",
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=False,
                )

            done = await rt.spawn_blocking(run_client)
            server.cancel()
            return done.stdout

    assert "ECHO ME" in main_result(rt, main)  # type: ignore[operator]


# -- the in-memory network ------------------------------------------------------------------


def test_tls_stream_over_the_in_memory_network(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """TLSStream only needs a ByteStream: it runs on the no-OS backend, in virtual time."""

    async def main(rt: anyrt.Runtime) -> bytes:
        listener = await rt.listen_tcp("10.0.0.1", 443)

        async def serve() -> None:
            raw = await listener.accept()
            async with await anyrt.TLSStream.wrap(rt, raw, server_context, server_side=True) as s:
                await _echo(s)

        server = rt.spawn(serve())
        raw = await rt.connect_tcp("10.0.0.1", 443)
        async with await anyrt.TLSStream.wrap(
            rt, raw, client_context, server_hostname="localhost"
        ) as client:
            await client.send(b"in memory, encrypted")
            await client.send_eof()
            reply = await receive_all(client)
        await server
        await listener.aclose()
        return reply

    assert anyrt.run(main, backend="single-threaded") == b"in memory, encrypted"


def test_bad_arguments_are_clear(rt: anyrt.Runtime) -> None:
    async def main() -> None:
        listener = await rt.listen_tcp("127.0.0.1", 0)
        async with listener:
            with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
                anyrt.TLSListener(rt, listener, "not a context")  # type: ignore[arg-type]
            stream = await rt.connect_tcp("127.0.0.1", listener.address[1])
            async with stream:
                with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
                    anyrt.TLSStream(rt, stream, None)  # type: ignore[arg-type]

    main_result(rt, main)
