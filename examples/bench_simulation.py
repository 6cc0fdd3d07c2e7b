"""How fast the simulator runs: 1,000 seeds of 10 tasks exchanging 100 messages.

Five clients on host ``app`` each send 20 messages to an echo server on host ``db``
(one handler task per connection: 10 tasks) over a link with latency and jitter, and
check every echo. Then the lease example of ``leases.py``, buggy and fixed.

Run it: ``uv run python examples/bench_simulation.py [SEEDS]`` (default 1,000).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyrt
from anyrt.testing import SimulationFailure, current_simulation, simulate

CLIENTS = 5
MESSAGES = 20  # per client: 100 in all


async def echo(stream: anyrt.ByteStream) -> None:
    """Send back everything received."""
    while data := await stream.receive():
        await stream.send(data)


async def receive_exactly(stream: anyrt.ByteStream, size: int) -> bytes:
    """Receive exactly ``size`` bytes."""
    data = b""
    while len(data) < size:
        chunk = await stream.receive(size - len(data))
        if not chunk:
            raise EOFError(f"the stream ended after {len(data)} of {size} bytes")
        data += chunk
    return data


async def echo_clients(rt: anyrt.Runtime) -> None:
    """Five clients, 20 messages each, through an echo server on another host."""
    sim = current_simulation()
    sim.set_default_link(latency=0.002, jitter=0.003)
    app = sim.host("app")
    listener = await sim.host("db").listen_tcp("0.0.0.0", 9000)
    server = rt.spawn(listener.serve(echo))

    async def client(index: int) -> None:
        async with await app.connect_tcp("db", 9000) as stream:
            for number in range(MESSAGES):
                message = f"client {index} message {number}\n".encode()
                await stream.send(message)
                assert await receive_exactly(stream, len(message)) == message

    async with anyrt.TaskGroup(rt) as tg:
        for index in range(CLIENTS):
            tg.spawn(client(index))
    await listener.aclose()
    await server


def main() -> None:
    """Time the echo test and the lease example over many seeds."""
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    stats = simulate(echo_clients, seeds=seeds, check_determinism=False)
    print(
        f"echo, {CLIENTS * 2} tasks, {CLIENTS * MESSAGES} messages: {seeds:,} seeds in "
        f"{stats.wall_time:.2f} s ({stats.wall_time / seeds * 1000:.2f} ms per seed), "
        f"{stats.steps:,} steps, {stats.steps_per_second:,.0f} steps/s"
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import leases  # noqa: PLC0415 - the sibling example, found through sys.path

    stats = simulate(leases.test_fixed_leases, seeds=seeds, check_determinism=False)
    print(
        f"leases (fixed): {seeds:,} seeds in {stats.wall_time:.2f} s "
        f"({stats.wall_time / seeds * 1000:.2f} ms per seed), {stats.steps:,} steps, "
        f"{stats.steps_per_second:,.0f} steps/s"
    )
    started = time.perf_counter()
    try:
        simulate(leases.test_naive_leases, seeds=seeds)
    except SimulationFailure as failure:
        print(
            f"leases (naive): fails at seed {failure.seed}, found and replayed in "
            f"{time.perf_counter() - started:.2f} s"
        )


if __name__ == "__main__":
    main()
