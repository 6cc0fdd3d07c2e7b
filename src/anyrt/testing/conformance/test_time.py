"""The clock: `now`, sleep order, `sleep_until`, `interval`, and argument checks."""

from __future__ import annotations

import itertools
import math
import random
import time

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER


async def test_now_is_monotonic(runtime: anyrt.Runtime) -> None:
    readings = [runtime.now()]
    for _ in range(50):
        await runtime.sleep(0)
        readings.append(runtime.now())
    await runtime.sleep(0.001)
    readings.append(runtime.now())
    assert readings == sorted(readings)
    assert all(isinstance(reading, float) for reading in readings)


async def test_sleep_lasts_at_least_its_duration(runtime: anyrt.Runtime) -> None:
    start = runtime.now()
    await runtime.sleep(0.01)
    assert runtime.now() - start >= 0.01


async def test_sleep_zero_lets_other_tasks_run(runtime: anyrt.Runtime) -> None:
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = runtime.spawn(other())
    while not ran:
        await runtime.sleep(0)
    await task
    assert ran == ["other"]


async def test_sleepers_wake_in_deadline_order(runtime: anyrt.Runtime) -> None:
    woke: list[float] = []
    offsets = [0.02 * i for i in range(1, 6)]
    random.Random(7).shuffle(offsets)
    # One shared start, so that the deadlines' order does not depend on when each
    # sleeper first ran (on a loaded machine, a worker may start one late).
    start = runtime.now()

    async def sleeper(offset: float) -> None:
        await runtime.sleep_until(start + offset)
        woke.append(offset)

    async with anyrt.TaskGroup(runtime) as tg:
        for offset in offsets:
            tg.spawn(sleeper(offset))
    assert woke == sorted(offsets)


async def test_sleep_until(runtime: anyrt.Runtime) -> None:
    deadline = runtime.now() + 0.01
    await runtime.sleep_until(deadline)
    assert runtime.now() >= deadline


async def test_sleep_until_a_past_deadline_returns(runtime: anyrt.Runtime) -> None:
    before = runtime.now()
    await runtime.sleep_until(before - 10)
    await runtime.sleep_until(before)
    assert runtime.now() >= before


async def test_interval_ticks_are_spaced_by_the_period(runtime: anyrt.Runtime) -> None:
    period = 0.01
    start = runtime.now()
    ticks: list[float] = []
    async for tick in runtime.interval(period):
        assert runtime.now() >= tick
        ticks.append(tick)
        if len(ticks) == 4:
            break
    assert ticks[0] >= start + period
    for earlier, later in itertools.pairwise(ticks):
        # A consumer that fell behind skips ticks: the gap is a whole number of periods.
        periods = (later - earlier) / period
        assert periods >= 1 - 1e-6
        assert periods == pytest.approx(round(periods), abs=1e-6)


@pytest.mark.anyrt_requires("virtual-time")
async def test_sleep_an_hour_in_virtual_time(runtime: anyrt.Runtime) -> None:
    start = runtime.now()
    await runtime.sleep(FOREVER)
    assert FOREVER <= runtime.now() - start < FOREVER + 1


@pytest.mark.anyrt_requires("virtual-time")
async def test_interval_keeps_a_fixed_schedule_and_skips_missed_ticks(
    runtime: anyrt.Runtime,
) -> None:
    start = runtime.now()
    ticks: list[float] = []  # deadline, then when it was delivered, for each tick
    async for tick in runtime.interval(10):
        ticks += [tick - start, runtime.now() - start]
        if len(ticks) == 4:
            await runtime.sleep(25)  # fall two and a half periods behind
        if len(ticks) == 8:
            break
    # Like tokio's MissedTickBehavior::Skip: the overdue tick comes at once, the one
    # after it is skipped, and the schedule resumes on its grid.
    assert ticks == pytest.approx([10, 10, 20, 20, 30, 45, 50, 50])


@pytest.mark.anyrt_requires("virtual-time")
async def test_long_sleepers_wake_in_deadline_order(runtime: anyrt.Runtime) -> None:
    woke: list[int] = []
    hours = list(range(1, 21))
    random.Random(3).shuffle(hours)

    async def sleeper(hour: int) -> None:
        await runtime.sleep(hour * 3600)
        woke.append(hour)
        assert runtime.now() >= hour * 3600

    async with anyrt.TaskGroup(runtime) as tg:
        for hour in hours:
            tg.spawn(sleeper(hour))
    assert woke == sorted(hours)


@pytest.mark.parametrize("seconds", [-1.0, -1e-9, math.nan])
async def test_bad_durations_raise_value_error(runtime: anyrt.Runtime, seconds: float) -> None:
    with pytest.raises(ValueError):
        await runtime.sleep(seconds)
    with pytest.raises(ValueError):
        async with runtime.timeout(seconds):
            pass
    with pytest.raises(ValueError):
        await anext(aiter(runtime.interval(seconds)))


async def test_sleep_until_nan_raises_value_error(runtime: anyrt.Runtime) -> None:
    with pytest.raises(ValueError):
        await runtime.sleep_until(math.nan)


@pytest.mark.anyrt_requires("threads")
async def test_an_enormous_sleep_waits_and_is_cancelled(runtime: anyrt.Runtime) -> None:
    sleeper = runtime.spawn(runtime.sleep(1e300))  # past what the OS can wait for at once
    await runtime.spawn_blocking(time.sleep, 0.02)  # meanwhile the loop waits for it
    assert not sleeper.done()
    sleeper.cancel()
    with pytest.raises(anyrt.Cancelled):
        await sleeper
