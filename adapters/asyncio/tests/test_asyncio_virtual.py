"""Virtual time on the asyncio loop: idle time jumps, blocking work takes real time."""

from __future__ import annotations

import asyncio
import time

import pytest
from anyrt_asyncio import AsyncioRuntime

import anyrt


def test_a_day_of_sleeping_takes_no_real_time() -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        async with anyrt.TaskGroup(rt) as tg:
            for hours in (24, 1, 12):
                tg.spawn(rt.sleep(hours * 3600))
        return rt.now() - start

    started = time.monotonic()
    elapsed = anyrt.run(main, backend="asyncio", clock="virtual")
    assert 24 * 3600 <= elapsed < 24 * 3600 + 1
    assert time.monotonic() - started < 5


def test_asyncio_code_in_place_is_in_virtual_time_too() -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        await asyncio.sleep(600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.Event().wait()
        return rt.now() - start

    assert anyrt.run(main, backend="asyncio", clock="virtual") == pytest.approx(660)


def test_an_injected_clock_can_be_jumped_by_hand() -> None:
    clock = anyrt.VirtualClock(start=1000.0)

    async def main(rt: anyrt.Runtime) -> tuple[float, float]:
        before = rt.now()
        clock.jump(3)
        return before, rt.now()

    with AsyncioRuntime(clock=clock) as rt:
        assert rt.block_on(main(rt)) == (1000.0, 1003.0)


def test_a_timeout_around_blocking_work_is_not_cut_short() -> None:
    async def main(rt: anyrt.Runtime) -> float:
        start = rt.now()
        async with rt.timeout(30):
            await rt.spawn_blocking(time.sleep, 0.05)
        return rt.now() - start

    # While the thread works, virtual time runs at the real rate instead of jumping.
    elapsed = anyrt.run(main, backend="asyncio", clock="virtual")
    assert 0.04 <= elapsed < 5


def test_time_jumps_even_while_a_timer_is_far_away_and_tasks_chatter() -> None:
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

    assert anyrt.run(main, backend="asyncio", clock="virtual") == sum(range(100))


def test_uvloop_refuses_virtual_time_and_names_the_alternative() -> None:
    with pytest.raises(ValueError, match=r"anyrt\.runtime\('asyncio', clock='virtual'\)"):
        anyrt.runtime("uvloop", clock="virtual")
