"""`Event`, `Lock` and `Semaphore` on every backend."""

from __future__ import annotations

import threading

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals

WAITERS = 10


async def test_event_wakes_every_waiter(runtime: anyrt.Runtime) -> None:
    event = anyrt.Event(runtime)
    arrivals = Arrivals(runtime, WAITERS)
    woke: list[int] = []

    async def wait(index: int) -> None:
        await arrivals.enter(index, event.wait())
        woke.append(index)

    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(WAITERS):
            tg.spawn(wait(index))
        await arrivals.all_in.wait()
        assert not event.is_set()
        assert woke == []
        event.set()
    assert sorted(woke) == list(range(WAITERS))
    assert event.is_set()


async def test_event_wait_returns_at_once_when_set(runtime: anyrt.Runtime) -> None:
    event = anyrt.Event(runtime)
    event.set()
    event.set()  # idempotent
    await event.wait()
    assert event.is_set()


@pytest.mark.anyrt_requires("threads")
async def test_event_set_from_a_foreign_thread(runtime: anyrt.Runtime) -> None:
    event = anyrt.Event(runtime)
    thread = threading.Thread(target=event.set)
    thread.start()
    await event.wait()
    thread.join()


async def test_lock_mutual_exclusion(runtime: anyrt.Runtime) -> None:
    lock = anyrt.Lock(runtime)
    inside = 0
    most_inside = 0
    counter = 0

    async def increment() -> None:
        nonlocal inside, most_inside, counter
        for _ in range(20):
            async with lock:
                inside += 1
                most_inside = max(most_inside, inside)
                value = counter
                await runtime.sleep(0)  # another task would read the same value here
                counter = value + 1
                inside -= 1

    async with anyrt.TaskGroup(runtime) as tg:
        for _ in range(10):
            tg.spawn(increment())
    assert counter == 200
    assert most_inside == 1
    assert not lock.locked()


async def test_lock_is_fifo(runtime: anyrt.Runtime) -> None:
    lock = anyrt.Lock(runtime)
    arrivals = Arrivals(runtime, WAITERS)
    granted: list[object] = []

    async def take(index: int) -> None:
        await arrivals.enter(index, lock.acquire())
        granted.append(index)
        await runtime.sleep(0)
        lock.release()

    await lock.acquire()
    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(WAITERS):
            tg.spawn(take(index))
        await arrivals.all_in.wait()
        assert lock.locked()
        lock.release()
    assert granted == arrivals.order
    assert not lock.locked()


def test_releasing_an_unlocked_lock_raises(runtime: anyrt.Runtime) -> None:
    with pytest.raises(RuntimeError):
        anyrt.Lock(runtime).release()


async def test_semaphore_bound_is_respected(runtime: anyrt.Runtime) -> None:
    semaphore = anyrt.Semaphore(runtime, 3)
    inside = 0
    most_inside = 0

    async def work() -> None:
        nonlocal inside, most_inside
        for _ in range(5):
            async with semaphore:
                inside += 1
                most_inside = max(most_inside, inside)
                await runtime.sleep(0.001)
                inside -= 1

    async with anyrt.TaskGroup(runtime) as tg:
        for _ in range(10):
            tg.spawn(work())
    assert 1 <= most_inside <= 3
    assert semaphore.value == 3


async def test_semaphore_admits_exactly_its_value_at_once(runtime: anyrt.Runtime) -> None:
    semaphore = anyrt.Semaphore(runtime, 3)
    holding = Arrivals(runtime, 3)  # set once three tasks hold it
    release = anyrt.Event(runtime)
    fourth = anyrt.Event(runtime)

    async def hold(index: int) -> None:
        async with semaphore:
            if index == 3:
                fourth.set()
                return
            await holding.enter(index, release.wait())

    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(3):
            tg.spawn(hold(index))
        await holding.all_in.wait()  # three hold it at once: the bound is not below 3
        assert semaphore.value == 0
        tg.spawn(hold(3))
        with pytest.raises(TimeoutError):
            async with runtime.timeout(0.01):
                await fourth.wait()  # the fourth may not get in while three hold it
        release.set()
        await fourth.wait()


async def test_semaphore_is_fifo(runtime: anyrt.Runtime) -> None:
    semaphore = anyrt.Semaphore(runtime, 0)
    arrivals = Arrivals(runtime, WAITERS)
    granted = anyrt.Channel[object](runtime, WAITERS)

    async def take(index: int) -> None:
        await arrivals.enter(index, semaphore.acquire())
        await granted.send(index)

    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(WAITERS):
            tg.spawn(take(index))
        await arrivals.all_in.wait()
        order = []
        for _ in range(WAITERS):
            semaphore.release()
            order.append(await granted.receive())  # one grant at a time
    assert order == arrivals.order
    assert semaphore.value == 0
