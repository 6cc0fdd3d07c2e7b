"""Virtual time on the asyncio and uvloop loops: idle time jumps, blocking work takes real time."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from anyrt_asyncio import AsyncioRuntime

import anyrt

try:
    import uvloop
    from anyrt_asyncio._uvloop import UvloopRuntime
except ImportError as missing:  # uvloop has no free-threaded build
    RUNTIMES = {"asyncio": AsyncioRuntime}
    needs_uvloop = pytest.mark.skip(reason=f"uvloop cannot be imported: {missing}")
else:
    RUNTIMES = {"asyncio": AsyncioRuntime, "uvloop": UvloopRuntime}
    needs_uvloop = pytest.mark.skipif(False, reason="uvloop is installed")


@pytest.fixture(params=["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend of this adapter; each test runs on both."""
    name: str = request.param
    return name


def test_a_day_of_sleeping_takes_no_real_time(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        async with anyrt.TaskGroup(rt) as tg:
            for hours in (24, 1, 12):
                tg.spawn(rt.sleep(hours * 3600))
        return rt.now() - start

    started = time.monotonic()
    elapsed = anyrt.run(main, backend=backend, clock="virtual")
    assert 24 * 3600 <= elapsed < 24 * 3600 + 1
    assert time.monotonic() - started < 5


def test_an_hour_of_sleeping_takes_well_under_a_second(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        await rt.sleep(3600)
        return rt.now() - start

    with anyrt.runtime(backend, clock="virtual") as rt:
        started = time.monotonic()
        assert rt.block_on(main(rt)) == 3600
        assert time.monotonic() - started < 0.5


def test_asyncio_code_in_place_is_in_virtual_time_too(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        await asyncio.sleep(600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.Event().wait()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 40)
        return rt.now() - start

    assert anyrt.run(main, backend=backend, clock="virtual") == pytest.approx(700)


def test_an_injected_clock_can_be_jumped_by_hand(backend: str) -> None:
    clock = anyrt.VirtualClock(start=1000.0)

    async def main(rt: anyrt.Runtime) -> tuple[float, float, float]:
        before = rt.now()
        clock.jump(3)
        jumped = rt.now()
        await rt.sleep(2)
        return before, jumped, rt.now()

    with RUNTIMES[backend](clock=clock) as rt:
        assert rt.block_on(main(rt)) == (1000.0, 1003.0, 1005.0)


def test_a_timeout_around_blocking_work_is_not_cut_short(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        async with rt.timeout(30):
            await rt.spawn_blocking(time.sleep, 0.05)
        return rt.now() - start

    # While the thread works, virtual time runs at the real rate instead of jumping.
    started = time.monotonic()
    elapsed = anyrt.run(main, backend=backend, clock="virtual")
    assert 0.04 <= elapsed < 5
    assert time.monotonic() - started < 5  # the wait ended with the thread, not at 30 s


def test_a_timeout_shorter_than_blocking_work_fires_in_real_time(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> tuple[float, float]:
        start, real_start = rt.now(), time.monotonic()
        with pytest.raises(TimeoutError):
            async with rt.timeout(0.05):
                await rt.spawn_blocking(time.sleep, 0.5)
        return rt.now() - start, time.monotonic() - real_start

    elapsed, real_elapsed = anyrt.run(main, backend=backend, clock="virtual")
    assert elapsed == pytest.approx(0.05)
    assert 0.04 <= real_elapsed < 0.4  # waited for the timeout, not for the thread


def test_time_jumps_even_while_a_timer_is_far_away_and_tasks_chatter(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> int:
        channel = anyrt.Channel[int](rt, 1)

        async def producer() -> None:
            for item in range(100):
                await channel.send(item)
                await rt.sleep(1)
            channel.close()

        rt.spawn(producer()).detach()
        total = 0
        async with rt.timeout(3600):
            async for item in channel:
                total += item
        return total

    assert anyrt.run(main, backend=backend, clock="virtual") == sum(range(100))


def test_a_timer_set_for_now_by_a_timer_waits_for_the_next_turn(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> int:
        loop = asyncio.get_running_loop()
        fired = 0
        stop = False

        def again() -> None:  # forever re-arms itself for "now", until told to stop
            nonlocal fired
            fired += 1
            if not stop:
                loop.call_later(0, again)

        loop.call_later(0, again)
        for _ in range(10):  # each turn of the loop fires it about once
            await asyncio.sleep(0)
        stop = True
        await rt.sleep(1)
        return fired

    assert 5 <= anyrt.run(main, backend=backend, clock="virtual") <= 20


def test_cpu_bound_work_that_yields_does_not_let_a_timer_jump(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        async with rt.timeout(1):  # would raise TimeoutError, had time jumped
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:  # busy, but yielding at every step
                sum(range(1000))
                await rt.sleep(0)
        return rt.now() - start

    assert anyrt.run(main, backend=backend, clock="virtual") == 0.0


def test_io_between_tasks_is_not_mistaken_for_idle_time(backend: str) -> None:
    async def main(rt: anyrt.Runtime) -> float:
        async def echo(stream: anyrt.ByteStream) -> None:
            async with stream:
                while data := await stream.receive():
                    await stream.send(data)

        async def tick() -> None:  # a timer always pending, one second away
            while True:
                await rt.sleep(1)

        async with await rt.listen_tcp("127.0.0.1", 0) as listener, anyrt.TaskGroup(rt) as tg:
            ticker = tg.spawn(tick())
            server = tg.spawn(listener.serve(echo))
            start = rt.now()
            async with await rt.connect_tcp(*listener.address) as client:
                for round_trip in range(200):
                    payload = b"%d" % round_trip
                    await client.send(payload)
                    assert await client.receive() == payload
            elapsed = rt.now() - start
            ticker.cancel()
            server.cancel()
        return elapsed

    # Had the loop thought itself idle between a send and the echo, time would have
    # jumped a second.
    assert anyrt.run(main, backend=backend, clock="virtual") < 1


@needs_uvloop
def test_a_uvloop_name_lookup_counts_as_blocking_work() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(0.5):  # a jump would fire it before the answer
            infos = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        assert infos

    anyrt.run(main, backend="uvloop", clock="virtual")


@needs_uvloop
def test_uvloop_runs_virtual_time_on_a_uvloop_loop() -> None:
    with anyrt.runtime("uvloop", clock="virtual") as rt:
        assert isinstance(rt, UvloopRuntime)
        assert isinstance(rt.loop, uvloop.Loop)
        assert rt.name == "uvloop"
        assert "virtual-time" in rt.capabilities
        assert isinstance(rt.virtual_clock, anyrt.VirtualClock)
    with anyrt.runtime("uvloop") as rt:
        assert "virtual-time" not in rt.capabilities
        assert rt.virtual_clock is None


@needs_uvloop
def test_uvloop_rejects_an_unknown_clock() -> None:
    with pytest.raises(ValueError, match="clock must be 'real', 'virtual'"):
        anyrt.runtime("uvloop", clock="sundial")
