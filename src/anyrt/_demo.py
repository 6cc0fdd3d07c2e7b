"""The demo behind ``anyrt demo``: a line-based key-value server and its clients.

It is written only against the protocols (`Runtime`, `ByteStream`, `Listener`) and the
generic primitives (`Lock`, `TaskGroup`), so it runs unchanged on every backend: on
``single-threaded`` over the in-memory network and the virtual clock, on the OS
backends over real sockets.

The protocol, one command per line, one reply per line::

    SET key value  ->  OK
    GET key        ->  value, or NIL
    INCR key       ->  the new integer value
    QUIT           ->  BYE, then the server closes the connection
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ._protocols import ByteStream, Runtime
from ._sync import Lock
from ._taskgroup import TaskGroup

__all__ = ["Client", "ClientSummary", "DemoResult", "KeyValueServer", "LineReader", "demo"]

_MAX_LINE = 64 * 1024


class LineReader:
    """Read newline-terminated lines from a `ByteStream`, however the bytes arrive.

    A receive may return half a line or several lines; the remainder is kept for the
    next call.

    Args:
        stream: the stream to read from.
        max_line: the longest line accepted, in bytes.
    """

    def __init__(self, stream: ByteStream, *, max_line: int = _MAX_LINE) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max_line = max_line

    async def readline(self) -> str | None:
        """Return the next line without its line ending, or None at end of stream.

        An unterminated last line before the end of the stream is returned as a line.

        Raises:
            ValueError: a line is longer than ``max_line``.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.decode().removesuffix("\r")
            if len(self._buffer) > self._max_line:
                raise ValueError(f"line longer than {self._max_line} bytes")
            data = await self._stream.receive()
            if not data:
                if not self._buffer:
                    return None
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest.decode().removesuffix("\r")
            self._buffer += data


class KeyValueServer:
    """An in-memory key-value store served one line per command.

    Args:
        runtime: where the server runs.
        latency: seconds of simulated work per command, slept on the runtime's clock.
    """

    def __init__(self, runtime: Runtime, *, latency: float = 0.001) -> None:
        self._runtime = runtime
        self._latency = latency
        self._store: dict[str, str] = {}
        # Handlers may run on several threads at once (on the threaded backends):
        # INCR's read-modify-write must not interleave.
        self._lock = Lock(runtime)

    async def handle(self, stream: ByteStream) -> None:
        """Serve one connection until the client sends ``QUIT`` or hangs up."""
        reader = LineReader(stream)
        while (line := await reader.readline()) is not None:
            if line.strip().upper() == "QUIT":
                await stream.send(b"BYE\n")
                return
            await self._runtime.sleep(self._latency)
            reply = await self.execute(line)
            await stream.send(reply.encode() + b"\n")

    async def execute(self, line: str) -> str:
        """Run one ``SET``, ``GET`` or ``INCR`` command and return its reply."""
        command, *args = line.split(" ", 2)
        command = command.upper()
        async with self._lock:
            if command == "SET" and len(args) == 2:
                self._store[args[0]] = args[1]
                return "OK"
            if command == "GET" and len(args) == 1:
                return self._store.get(args[0], "NIL")
            if command == "INCR" and len(args) == 1:
                try:
                    value = int(self._store.get(args[0], "0")) + 1
                except ValueError:
                    return "ERR value is not an integer"
                self._store[args[0]] = str(value)
                return str(value)
        return f"ERR bad command {line!r}"


class Client:
    """One connection to a `KeyValueServer`.

    Args:
        stream: a connected stream.
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._reader = LineReader(stream)
        self.sent = 0

    async def command(self, line: str) -> str:
        """Send one command and return the reply.

        Raises:
            ConnectionError: the server closed the connection.
        """
        await self._stream.send(line.encode() + b"\n")
        self.sent += 1
        reply = await self._reader.readline()
        if reply is None:
            raise ConnectionError(f"the server closed the connection after {line!r}")
        return reply


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """What one demo client did.

    Attributes:
        name: the client's name, also its key.
        requests: requests completed.
        commands: commands sent, ``QUIT`` included.
        first_hit: the counter value its first ``INCR hits`` returned.
        last_hit: the counter value its last ``INCR hits`` returned.
        elapsed: seconds on the runtime's clock from connect to ``QUIT``.
    """

    name: str
    requests: int
    commands: int
    first_hit: int
    last_hit: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `demo` did, for tests and callers.

    Attributes:
        backend: the runtime's backend name.
        address: the ``(host, port)`` the server listened on.
        clients: how many clients ran concurrently.
        requests: requests completed in total (each is SET, INCR hits, GET).
        commands: commands sent in total, the final checks included.
        hits: the final value of the shared counter; equals ``requests``.
        elapsed: seconds on the runtime's clock.
        wall: seconds on the wall clock.
        summaries: one per client.
    """

    backend: str
    address: tuple[str, int]
    clients: int
    requests: int
    commands: int
    hits: int
    elapsed: float
    wall: float
    summaries: tuple[ClientSummary, ...]


async def demo(
    runtime: Runtime,
    *,
    clients: int = 5,
    requests: int = 20,
    timeout: float = 5.0,
    out: Callable[[str], object] = print,
) -> DemoResult:
    """Serve the key-value store and run concurrent clients against it.

    Each client makes ``requests`` requests; a request is ``SET <client> <n>``,
    ``INCR hits`` and ``GET <client>`` (which must return ``<n>``). At the end
    ``GET hits`` must equal ``clients * requests``: no increment was lost.

    Args:
        runtime: any anyrt runtime.
        clients: how many clients run concurrently.
        requests: requests per client.
        timeout: seconds each request may take, on the runtime's clock.
        out: where the transcript goes, one line per call.

    Returns:
        What happened, counted.

    Raises:
        ValueError: ``clients`` or ``requests`` is less than 1.
        RuntimeError: a reply was wrong (a lost update, a wrong value).
    """
    if clients < 1 or requests < 1:
        raise ValueError("the demo needs at least one client and one request")
    wall_start = time.perf_counter()
    start = runtime.now()
    server = KeyValueServer(runtime)
    out(f"anyrt demo on the {runtime.name!r} backend")
    async with await runtime.listen_tcp("127.0.0.1", 0) as listener:
        address = listener.address
        out(f"key-value server listening on {address[0]}:{address[1]}")
        out(
            f"{clients} clients x {requests} requests "
            "(SET <client> <n>, INCR hits, GET <client>); sample exchanges:"
        )
        server_task = runtime.spawn(listener.serve(server.handle), name="kv-server")
        try:
            async with TaskGroup(runtime) as tg:
                tasks = [
                    tg.spawn(
                        _run_client(
                            runtime, address, index=i, requests=requests, timeout=timeout, out=out
                        ),
                        name=f"client-{i}",
                    )
                    for i in range(clients)
                ]
            summaries = tuple([await task for task in tasks])
            hits, check_commands = await _check_counter(runtime, address, timeout, out)
        finally:
            await listener.aclose()
            await server_task
    elapsed = runtime.now() - start
    wall = time.perf_counter() - wall_start

    total = clients * requests
    if hits != total:
        raise RuntimeError(f"lost updates: GET hits returned {hits}, expected {total}")
    commands = sum(summary.commands for summary in summaries) + check_commands
    out("clients:")
    for summary in summaries:
        out(
            f"  {summary.name}: {summary.requests} requests, its INCRs saw hits "
            f"{summary.first_hit}..{summary.last_hit}, {summary.elapsed * 1000:.1f} ms"
        )
    out(f"final counter: hits = {hits} (= {clients} clients x {requests} requests, none lost)")
    out(f"total: {total} requests, {commands} commands")
    out(f"elapsed: {elapsed * 1000:.1f} ms on the runtime's clock, {wall * 1000:.1f} ms wall clock")
    return DemoResult(
        backend=runtime.name,
        address=address,
        clients=clients,
        requests=total,
        commands=commands,
        hits=hits,
        elapsed=elapsed,
        wall=wall,
        summaries=summaries,
    )


async def _run_client(
    runtime: Runtime,
    address: tuple[str, int],
    *,
    index: int,
    requests: int,
    timeout: float,
    out: Callable[[str], object],
) -> ClientSummary:
    name = f"client-{index}"
    start = runtime.now()
    hits: list[int] = []
    async with await runtime.connect_tcp(*address) as stream:
        client = Client(stream)
        for n in range(requests):
            async with runtime.timeout(timeout):  # raises TimeoutError if the server stalls
                transcript = await _request(client, name, n)
            hits.append(int(transcript[1][1]))
            if index == 0 and n == 0:
                for line, reply in transcript:
                    out(f"  {name} > {line:<16} < {reply}")
        await client.command("QUIT")
    return ClientSummary(name, requests, client.sent, hits[0], hits[-1], runtime.now() - start)


async def _request(client: Client, name: str, n: int) -> list[tuple[str, str]]:
    """One request: store ``n`` under the client's key, count a hit, read ``n`` back."""
    transcript: list[tuple[str, str]] = []
    for line, expected in ((f"SET {name} {n}", "OK"), ("INCR hits", None), (f"GET {name}", str(n))):
        reply = await client.command(line)
        if expected is not None and reply != expected:
            raise RuntimeError(f"{name}: {line!r} returned {reply!r}, expected {expected!r}")
        transcript.append((line, reply))
    return transcript


async def _check_counter(
    runtime: Runtime, address: tuple[str, int], timeout: float, out: Callable[[str], object]
) -> tuple[int, int]:
    """Read the counter (and a missing key) on a fresh connection; return (hits, commands)."""
    async with await runtime.connect_tcp(*address) as stream:
        client = Client(stream)
        async with runtime.timeout(timeout):
            missing = await client.command("GET no-such-key")
            hits = await client.command("GET hits")
            bye = await client.command("QUIT")
    for line, reply in (("GET no-such-key", missing), ("GET hits", hits), ("QUIT", bye)):
        out(f"  checker  > {line:<16} < {reply}")
    return int(hits), client.sent
