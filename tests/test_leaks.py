"""The threaded runtimes leave nothing behind: threads, fds, memory, parked tasks.

Every test runs on `work-stealing` and on `thread-per-core`.

Every check compares a measurement before and after, so it fails on any leak.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import anyrt
from anyrt._threaded import ThreadedRuntime

Threaded = Callable[..., anyrt.Runtime]
_THREAD_OPTION = {"work-stealing": "workers", "thread-per-core": "cores"}


@pytest.fixture(params=sorted(_THREAD_OPTION))
def threaded(request: pytest.FixtureRequest) -> Threaded:
    """Make a runtime of the backend under test with ``threads`` worker/core threads."""
    name: str = request.param

    def make(threads: int, **options: Any) -> anyrt.Runtime:
        return anyrt.runtime(name, **{_THREAD_OPTION[name]: threads}, **options)

    return make


PROC_FD = "/proc/self/fd"


def _open_fds() -> int:
    return len(os.listdir(PROC_FD))


@pytest.fixture
def no_new_threads() -> Iterator[None]:
    """Fail unless every thread started during the test has ended by its end."""
    before = set(threading.enumerate())
    count = threading.active_count()
    yield
    leftover = [thread.name for thread in set(threading.enumerate()) - before]
    assert leftover == []
    assert threading.active_count() <= count


@pytest.fixture
def no_new_fds() -> Iterator[None]:
    if not os.path.isdir(PROC_FD):
        pytest.skip("needs /proc/self/fd")
    before = _open_fds()
    yield
    assert _open_fds() == before


def _workload(rt: anyrt.Runtime) -> None:
    """Use every part of the runtime: tasks, timers, oneshots, channel, pool, sockets."""

    async def echo(stream: anyrt.ByteStream) -> None:
        async with stream:
            while data := await stream.receive():
                await stream.send(data)

    async def child(index: int) -> int:
        await rt.sleep(0.0005)
        return await rt.spawn_blocking(abs, -index)

    async def main() -> None:
        children = [rt.spawn(child(index)) for index in range(20)]
        channel: anyrt.Channel[int] = anyrt.Channel(rt, 1)
        consumer = rt.spawn(_drain(channel))
        for task in children:
            await channel.send(await task)
        channel.close()
        assert await consumer == sum(range(20))
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(echo))
            async with await rt.connect_tcp(*listener.address) as client:
                await client.send(b"ping")
                assert await client.receive() == b"ping"
            server.cancel()
            with contextlib.suppress(anyrt.Cancelled):
                await server

    rt.block_on(main())


async def _drain(channel: anyrt.Channel[int]) -> int:
    return sum([item async for item in channel])


# -- threads and fds ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_new_threads", "no_new_fds")
def test_close_joins_every_thread_and_closes_every_fd(threaded: Threaded) -> None:
    rt = threaded(4)
    assert isinstance(rt, ThreadedRuntime)
    _workload(rt)
    assert rt._blocking.threads > 0  # the pool did start threads
    rt.close()
    rt.close()  # idempotent


@pytest.mark.usefixtures("no_new_threads", "no_new_fds")
def test_many_short_lived_runtimes_leak_nothing(threaded: Threaded) -> None:
    for workers in (1, 2, 3) * 5:
        with threaded(workers) as rt:
            assert rt.block_on(_answer(rt)) == 42


async def _answer(rt: anyrt.Runtime) -> int:
    await rt.sleep(0)
    return 42


@pytest.mark.usefixtures("no_new_threads")
def test_blocking_pool_threads_are_joined_by_close(threaded: Threaded) -> None:
    limit = 5
    rt = threaded(1, max_blocking_threads=limit)
    assert isinstance(rt, ThreadedRuntime)
    barrier = threading.Barrier(limit)

    async def burst() -> None:
        tasks = [rt.spawn(rt.spawn_blocking(barrier.wait, 10)) for _ in range(limit)]
        for task in tasks:
            await task

    rt.block_on(burst())
    assert rt._blocking.threads == limit  # idle, and idle threads live for 10 s
    rt.close()
    assert rt._blocking.threads == 0


# -- memory ---------------------------------------------------------------------------------


def test_memory_is_flat_across_50_runtime_lifecycles(threaded: Threaded) -> None:
    def cycle() -> None:
        with threaded(2) as rt:
            _workload(rt)

    def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        for _ in range(10):
            cycle()
        at_10 = traced()
        for _ in range(40):
            cycle()
        at_50 = traced()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert at_50 - at_10 < 200 * 1024, f"grew {at_50 - at_10} bytes over 40 runtimes"


# -- close() and parked tasks ------------------------------------------------------------------


@pytest.mark.usefixtures("no_new_threads", "no_new_fds")
def test_close_cancels_parked_tasks_and_runs_their_finally_blocks(threaded: Threaded) -> None:
    rt = threaded(2)
    outcomes: dict[str, str] = {}
    outcomes_lock = threading.Lock()
    parked = threading.Semaphore(0)
    local_sock, remote_sock = socket.socketpair()

    async def guarded(label: str, wait: Callable[[], Any]) -> None:
        outcome = "returned"
        try:
            awaitable = wait()
            parked.release()
            await awaitable
        except BaseException as exc:
            outcome = "cancelled" if isinstance(exc, anyrt.Cancelled) else type(exc).__name__
            raise  # so that a task joining this one sees the cancellation too
        finally:
            with outcomes_lock:
                outcomes[label] = f"finally ran after: {outcome}"

    event = anyrt.Event(rt)
    empty: anyrt.Channel[int] = anyrt.Channel(rt, 0)
    full: anyrt.Channel[int] = anyrt.Channel(rt, 0)  # nobody ever receives
    lock = anyrt.Lock(rt)
    _, receiver = rt.oneshot()

    async def main() -> None:
        await lock.acquire()  # and never release it
        target = rt.spawn(guarded("join target", lambda: rt.sleep(3600)))
        waits: dict[str, Callable[[], Any]] = {
            "oneshot": lambda: receiver,
            "event": event.wait,
            "sleep": lambda: rt.sleep(3600),
            "channel receive": empty.receive,
            "channel send": lambda: full.send(1),
            "lock": lock.acquire,
            "join": lambda: target,
            "wait_readable": lambda: rt.wait_readable(local_sock),
        }
        for label, wait in waits.items():
            rt.spawn(guarded(label, wait))
        rt.spawn_local(guarded("pinned", lambda: rt.sleep(3600)))

    rt.block_on(main())
    for _ in range(10):  # every one of them got as far as its await
        assert parked.acquire(timeout=10)

    started = time.monotonic()
    rt.close()
    assert time.monotonic() - started < 5  # nobody needed the 5 s grace rounds
    local_sock.close()
    remote_sock.close()
    expected = {
        label: "finally ran after: cancelled"
        for label in (
            "oneshot",
            "event",
            "sleep",
            "channel receive",
            "channel send",
            "lock",
            "join",
            "wait_readable",
            "pinned",
            "join target",
        )
    }
    assert outcomes == expected


def test_close_wakes_a_task_blocked_in_wait_readable(threaded: Threaded) -> None:
    rt = threaded(1)
    a, b = socket.socketpair()
    seen: list[type[BaseException]] = []
    waiting = threading.Event()

    async def reader() -> None:
        try:
            coro = rt.wait_readable(a)
            waiting.set()
            await coro
        except BaseException as exc:
            seen.append(type(exc))
            raise

    task = rt.spawn(reader())
    assert waiting.wait(timeout=10)
    started = time.monotonic()
    rt.close()
    assert time.monotonic() - started < 5
    assert seen == [anyrt.Cancelled]
    assert task.done()
    # The fd was never read; it is still the caller's, and still usable.
    b.send(b"x")
    assert a.recv(1) == b"x"
    a.close()
    b.close()


@pytest.mark.usefixtures("no_new_threads")
def test_close_under_load_stops_promptly(threaded: Threaded) -> None:
    rt = threaded(4)
    progress = [0]

    async def leaf() -> None:
        await rt.sleep(0)

    async def churn() -> None:
        while True:
            progress[0] += 1
            try:
                child = rt.spawn(leaf())
            except RuntimeError:  # close() began between our steps
                return
            await child

    for _ in range(20):
        rt.spawn(churn())

    async def until_busy() -> None:
        while progress[0] < 1_000:
            await rt.sleep(0.001)

    rt.block_on(until_busy())
    started = time.monotonic()
    rt.close()
    assert time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="closed"):
        rt.spawn(leaf())


def test_close_from_inside_a_task_raises(threaded: Threaded) -> None:
    with threaded(1) as rt:

        async def main() -> None:
            rt.close()

        with pytest.raises(RuntimeError, match=r"close\(\) cannot be called from inside a task"):
            rt.block_on(main())
        assert not rt.closed


# -- races that were core bugs ------------------------------------------------------------


def test_spawn_racing_close_from_another_thread_never_leaves_a_task_behind(
    threaded: Threaded,
) -> None:
    rt = threaded(1)
    assert isinstance(rt, ThreadedRuntime)
    checked, closed = threading.Event(), threading.Event()
    new_task = rt._new_task

    def preempted_new_task(*args: Any, **kwargs: Any) -> Any:
        # Pretend the spawning thread is preempted right after the "is it closed?"
        # check, and resumes only once close() has returned.
        task = new_task(*args, **kwargs)
        checked.set()
        closed.wait(timeout=10)
        return task

    rt._new_task = preempted_new_task  # type: ignore[method-assign]
    outcome: list[object] = []

    async def noop() -> None:  # pragma: no cover - must not run after close
        pass

    def spawner() -> None:
        try:
            outcome.append(rt.spawn(noop()))
        except RuntimeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=spawner)
    thread.start()
    assert checked.wait(timeout=10)
    rt.close()
    closed.set()
    thread.join()
    (result,) = outcome
    try:
        # Either spawn() refused (the runtime closed first), or close() finished the task.
        assert isinstance(result, RuntimeError) or result.done()  # type: ignore[attr-defined]
    finally:
        coro = getattr(result, "_coro", None)
        if coro is not None:
            coro.close()  # no "never awaited" warning leaking into a later test
