"""`Timer.timeout`: fires, passes through, nests, and yields to an outside cancellation."""

from __future__ import annotations

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals


async def test_raises_timeout_error_when_exceeded(runtime: anyrt.Runtime) -> None:
    progress: list[str] = []

    async def bounded() -> None:
        async with runtime.timeout(0.01):
            await runtime.sleep(FOREVER)
            progress.append("slept")

    with pytest.raises(TimeoutError):
        await bounded()
    assert progress == []


async def test_zero_timeout_fires_at_the_first_suspension(runtime: anyrt.Runtime) -> None:
    with pytest.raises(TimeoutError):
        async with runtime.timeout(0):
            await runtime.sleep(FOREVER)


async def test_passes_through_when_not_exceeded(runtime: anyrt.Runtime) -> None:
    async with runtime.timeout(FOREVER):
        await runtime.sleep(0.001)
        value = "finished"
    assert value == "finished"


async def test_an_exited_timeout_never_fires_later(runtime: anyrt.Runtime) -> None:
    async with runtime.timeout(0.01):
        pass
    await runtime.sleep(0.03)  # past the old deadline: nothing may cancel us
    await runtime.sleep(0)


async def test_other_exceptions_pass_through(runtime: anyrt.Runtime) -> None:
    async def fail() -> None:
        async with runtime.timeout(FOREVER):
            await runtime.sleep(0)
            raise KeyError("not a timeout")

    with pytest.raises(KeyError):
        await fail()


async def test_inner_timeout_fires_and_the_outer_goes_on(runtime: anyrt.Runtime) -> None:
    async with runtime.timeout(FOREVER):
        with pytest.raises(TimeoutError):
            async with runtime.timeout(0.01):
                await runtime.sleep(FOREVER)
        await runtime.sleep(0.001)
        survived = True
    assert survived


async def test_outer_timeout_fires_through_the_inner(runtime: anyrt.Runtime) -> None:
    inner_raised: list[BaseException] = []

    async def nested() -> None:
        async with runtime.timeout(0.01):
            try:
                async with runtime.timeout(FOREVER):
                    await runtime.sleep(FOREVER)
            except BaseException as exc:
                inner_raised.append(exc)
                raise

    with pytest.raises(TimeoutError):
        await nested()
    # The inner block saw the cancellation itself, not a TimeoutError of its own.
    assert len(inner_raised) == 1
    assert not isinstance(inner_raised[0], TimeoutError)


async def test_timeout_in_a_task(runtime: anyrt.Runtime) -> None:
    async def bounded() -> str:
        try:
            async with runtime.timeout(0.01):
                await runtime.sleep(FOREVER)
        except TimeoutError:
            return "timed out"
        return "slept"

    assert await runtime.spawn(bounded()) == "timed out"


async def test_external_cancel_wins_over_a_pending_timeout(runtime: anyrt.Runtime) -> None:
    arrivals = Arrivals(runtime, 1)
    escaped: list[type[BaseException]] = []

    async def guarded() -> None:
        try:
            async with runtime.timeout(FOREVER):
                await arrivals.enter("guarded", runtime.sleep(FOREVER))
        except BaseException as exc:
            escaped.append(type(exc))
            raise

    task = runtime.spawn(guarded())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert len(escaped) == 1
    assert issubclass(escaped[0], runtime.cancelled_exc)
    assert not issubclass(escaped[0], TimeoutError)


async def test_timeout_inside_a_task_group_child(runtime: anyrt.Runtime) -> None:
    outcomes: list[str] = []

    async def child() -> None:
        try:
            async with runtime.timeout(0.01):
                await runtime.sleep(FOREVER)
        except TimeoutError:
            outcomes.append("timed out")

    async with anyrt.TaskGroup(runtime) as tg:
        tg.spawn(child())
        tg.spawn(child())
    assert outcomes == ["timed out", "timed out"]


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
async def test_negative_or_nan_timeout_raises_value_error(
    runtime: anyrt.Runtime, seconds: float
) -> None:
    with pytest.raises(ValueError):
        async with runtime.timeout(seconds):
            pass
