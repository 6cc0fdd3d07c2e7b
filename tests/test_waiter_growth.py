"""Timed-out waits leave nothing behind: memory stays flat over 100,000 of them.

A "wake every 10 ms" loop (``with rt.move_on_after(0.01): await event.wait()``) must
not grow its primitive's waiter queue. Every backend; every primitive that parks.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Awaitable, Callable

import pytest

import anyrt
from anyrt.testing import each_backend

#: Timed-out waits per primitive: 100,000 on those a "wake every 10 ms" loop waits on,
#: 20,000 on the others (a leak of one waiter per wait shows after a few thousand).
WAITS = {"event": 100_000, "channel-receive": 100_000, "lock": 100_000}
OTHER_WAITS = 20_000
#: Memory blocks the interpreter may hold more after the last 90% of the waits than
#: before them (caches, free lists); a leak of one waiter per wait would be 18,000 or
#: more.
ALLOWED_GROWTH = 2_000


def _event(rt: anyrt.Runtime) -> Callable[[], Awaitable[object]]:
    return anyrt.Event(rt).wait


def _receive(rt: anyrt.Runtime) -> Callable[[], Awaitable[object]]:
    return anyrt.Channel[int](rt, 0).receive


def _send(rt: anyrt.Runtime) -> Callable[[], Awaitable[object]]:
    channel = anyrt.Channel[int](rt, 0)
    return lambda: channel.send(1)


def _lock(rt: anyrt.Runtime) -> Callable[[], Awaitable[object]]:
    lock = anyrt.Lock(rt)
    lock._try_acquire()  # held for ever: every acquire waits
    return lock.acquire


def _semaphore(rt: anyrt.Runtime) -> Callable[[], Awaitable[object]]:
    return anyrt.Semaphore(rt, 0).acquire


WAITERS = {
    "event": _event,
    "channel-receive": _receive,
    "channel-send": _send,
    "lock": _lock,
    "semaphore": _semaphore,
}


@pytest.mark.parametrize("anyrt_backend", each_backend())
@pytest.mark.parametrize("primitive", list(WAITERS))
async def test_timed_out_waits_keep_memory_flat(runtime: anyrt.Runtime, primitive: str) -> None:
    if sys.getallocatedblocks() == 0:
        pytest.skip("this interpreter does not count its memory blocks (free-threaded builds)")
    wait = WAITERS[primitive](runtime)
    waits = WAITS.get(primitive, OTHER_WAITS)

    async def time_out(count: int) -> None:
        for _ in range(count):
            with runtime.move_on_after(0):
                await wait()

    await time_out(waits // 10)  # warm up: caches, free lists, the timer heap
    gc.collect()
    before = sys.getallocatedblocks()
    await time_out(waits - waits // 10)
    gc.collect()
    growth = sys.getallocatedblocks() - before
    assert growth < ALLOWED_GROWTH, f"{primitive}: {growth} more memory blocks after {waits} waits"
