"""Virtual time on trio: `MockClock` autojump, governed for threads and idle runtimes."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from anyrt_trio import TrioRuntime

import anyrt


@pytest.fixture
def rt() -> Iterator[TrioRuntime]:
    with TrioRuntime(clock="virtual") as runtime:
        yield runtime


def test_idle_time_jumps_to_the_next_deadline(rt: TrioRuntime) -> None:
    assert isinstance(rt.clock, trio.testing.MockClock)
    assert "virtual-time" in rt.capabilities

    async def main() -> float:
        await rt.sleep(3600)
        await trio.sleep(60)  # trio's own sleeps jump as well
        return rt.now()

    started = time.monotonic()
    assert rt.block_on(main()) == 3660
    assert time.monotonic() - started < 5


def test_a_blocking_call_holds_the_clock(rt: TrioRuntime) -> None:
    async def main() -> tuple[bool, float, float]:
        sleeper = rt.spawn(rt.sleep(10))
        async with rt.timeout(1):  # 50 ms of real work inside a 1 s virtual timeout
            await rt.spawn_blocking(time.sleep, 0.05)
        during = rt.now()
        done_meanwhile = sleeper.done()
        await sleeper
        return done_meanwhile, during, rt.now()

    assert rt.block_on(main()) == (False, 0, 10)


def test_a_future_holds_the_clock_too(rt: TrioRuntime) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def main() -> str:
            future = pool.submit(lambda: time.sleep(0.05) or "from the pool")
            async with rt.timeout(1):
                return await anyrt.from_future(rt, future)

        assert rt.block_on(main()) == "from the pool"


def test_a_thread_the_runtime_does_not_know_of_does_not_hold_it(rt: TrioRuntime) -> None:
    # The documented caveat: a plain thread that will send later is not seen, so a
    # pending deadline is jumped to (use spawn_blocking or from_future instead).
    async def main() -> float:
        sender, receiver = rt.oneshot()
        thread = threading.Timer(0.05, sender.send, args=("late",))
        thread.start()
        start = rt.now()
        with pytest.raises(TimeoutError):
            async with rt.timeout(5):
                await receiver
        thread.join()
        return rt.now() - start

    assert rt.block_on(main()) == 5


def test_time_stands_still_between_block_on_calls(rt: TrioRuntime) -> None:
    async def start() -> anyrt.Task[None]:
        return rt.spawn(rt.sleep(5))

    sleeper = rt.block_on(start())
    time.sleep(0.05)  # the caller's thread does something else; tasks must not race ahead
    assert not sleeper.done()
    assert rt.now() == 0

    async def finish() -> float:
        await sleeper
        return rt.now()

    assert rt.block_on(finish()) == 5


def _cpu_while(seconds: float) -> float:
    before = time.process_time()
    time.sleep(seconds)
    return time.process_time() - before


def test_an_idle_virtual_runtime_does_not_spin(rt: TrioRuntime) -> None:
    # Trio's autojump with a threshold of 0 busy-loops when no deadline is pending; the
    # runtime switches it off then, and while no block_on runs.
    pending = rt.spawn(rt.sleep(100))
    assert _cpu_while(0.5) < 0.05  # idle between block_on calls, a deadline pending
    pending.cancel()
    sender, receiver = rt.oneshot()

    async def wait_for_the_thread() -> object:
        return await receiver  # no deadline anywhere while block_on waits

    thread = threading.Thread(target=lambda: (time.sleep(0.5), sender.send("done")))
    thread.start()
    before = time.process_time()
    assert rt.block_on(wait_for_the_thread()) == "done"
    assert time.process_time() - before < 0.05
    thread.join()


def test_a_mock_clock_can_be_passed_in() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    with TrioRuntime(clock=clock) as rt:
        assert rt.clock is clock
        assert "virtual-time" in rt.capabilities
        assert rt.block_on(rt.sleep(7)) is None
        assert rt.now() == 7
    manual = trio.testing.MockClock()  # no autojump: time moves only by jump()
    with TrioRuntime(clock=manual) as rt:
        assert "virtual-time" not in rt.capabilities

        async def main() -> float:
            sleeper = rt.spawn(rt.sleep(3))
            await trio.testing.wait_all_tasks_blocked()  # the sleeper has set its deadline
            manual.jump(3)
            await sleeper
            return rt.now()

        assert rt.block_on(main()) == 3


def test_the_real_clock_is_trios() -> None:
    with TrioRuntime(clock="real") as rt:
        assert "virtual-time" not in rt.capabilities
        before = rt.now()
        assert rt.block_on(rt.sleep(0.01)) is None
        assert rt.now() - before >= 0.01
