"""Blocking work: `spawn_blocking` and `from_future` with a thread pool."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals


def _add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def _raise(exc: BaseException) -> None:
    raise exc


async def test_spawn_blocking_returns_the_value(runtime: anyrt.Runtime) -> None:
    assert await runtime.spawn_blocking(_add, 1, 2) == 3
    assert await runtime.spawn_blocking(_add, 1, 2, scale=10) == 30


async def test_spawn_blocking_propagates_the_exception(runtime: anyrt.Runtime) -> None:
    error = LookupError("from the blocking call")
    with pytest.raises(LookupError) as info:
        await runtime.spawn_blocking(_raise, error)
    assert info.value is error


async def test_spawn_blocking_from_many_tasks(runtime: anyrt.Runtime) -> None:
    async def call(index: int) -> int:
        return await runtime.spawn_blocking(_add, index, index)

    tasks = [runtime.spawn(call(index)) for index in range(50)]
    assert [await task for task in tasks] == [2 * index for index in range(50)]


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


async def test_from_future_returns_the_result(
    runtime: anyrt.Runtime, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    gate = threading.Event()

    def work() -> str:
        gate.wait(10)
        return "from the pool"

    future = pool.submit(work)
    arrivals = Arrivals(runtime, 1)

    async def wait() -> str:
        return await arrivals.enter("waiter", anyrt.from_future(runtime, future))

    task = runtime.spawn(wait())
    await arrivals.all_in.wait()
    gate.set()  # the future completes while the task waits on it
    assert await task == "from the pool"


async def test_from_future_already_done(
    runtime: anyrt.Runtime, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    future = pool.submit(_add, 2, 3)
    concurrent.futures.wait([future])
    assert await anyrt.from_future(runtime, future) == 5


async def test_from_future_propagates_the_exception(
    runtime: anyrt.Runtime, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    error = KeyError("from the pool")
    with pytest.raises(KeyError) as info:
        await anyrt.from_future(runtime, pool.submit(_raise, error))
    assert info.value is error


async def test_from_future_of_a_cancelled_future(runtime: anyrt.Runtime) -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        await anyrt.from_future(runtime, future)


async def test_cancelling_the_waiter_cancels_a_pending_future(runtime: anyrt.Runtime) -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    arrivals = Arrivals(runtime, 1)

    async def wait() -> int:
        return await arrivals.enter("waiter", anyrt.from_future(runtime, future))

    task = runtime.spawn(wait())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert future.cancelled()
