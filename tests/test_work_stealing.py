"""What only the `work-stealing` backend promises: worker threads, pinning, spreading,
plain-thread entry points, the blocking pool and its options.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import hashlib
import os
import re
import threading
from collections.abc import Iterator

import pytest

import anyrt
from anyrt import WorkStealing

WORKER_NAME = re.compile(r"anyrt-work-stealing-\d+")


@pytest.fixture
def rt() -> Iterator[WorkStealing]:
    with anyrt.runtime("work-stealing", workers=4) as runtime:
        assert isinstance(runtime, WorkStealing)
        yield runtime


def _run_in_thread(fn: object) -> object:
    """Call ``fn()`` on a new plain thread; return its result or raise its exception."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=30)  # type: ignore[arg-type]


# -- construction ------------------------------------------------------------------------


def test_backend_identity() -> None:
    with anyrt.runtime("work-stealing", workers=3) as rt:
        assert isinstance(rt, WorkStealing)
        assert rt.name == "work-stealing"
        assert rt.workers == 3
        assert rt.cancelled_exc is anyrt.Cancelled
        assert isinstance(rt, anyrt.Runtime)
        expected = {"threads", "os-reactor", "work-stealing", "blocking-pool", "unix-sockets"}
        assert expected <= set(rt.capabilities)


def test_default_worker_count_is_the_cpu_count() -> None:
    with anyrt.runtime("work-stealing") as rt:
        assert isinstance(rt, WorkStealing)
        assert rt.workers == (os.cpu_count() or 1)


def test_worker_threads_are_named_and_run_the_tasks() -> None:
    with anyrt.runtime("work-stealing", workers=3) as rt:
        names = {thread.name for thread in threading.enumerate()}
        assert {f"anyrt-work-stealing-{index}" for index in range(3)} <= names

        async def where() -> str:
            await rt.sleep(0)
            return threading.current_thread().name

        assert WORKER_NAME.fullmatch(rt.block_on(where()))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"workers": 0}, ValueError, r"workers must be at least 1, got 0"),
        ({"workers": -2}, ValueError, r"workers must be at least 1"),
        ({"workers": "x"}, TypeError, r"workers must be an int, not str"),
        ({"workers": 2.0}, TypeError, r"workers must be an int, not float"),
        ({"workers": True}, TypeError, r"workers must be an int, not bool"),
        ({"max_blocking_threads": 0}, ValueError, r"max_blocking_threads must be at least 1"),
    ],
)
def test_bad_options_raise_clear_errors_and_start_nothing(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    threads_before = threading.active_count()
    with pytest.raises(error, match=message):
        anyrt.runtime("work-stealing", **options)
    assert threading.active_count() == threads_before


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="workers"):
        anyrt.runtime("work-stealing", worker=2)


# -- spawn_local ---------------------------------------------------------------------------


def test_spawn_local_keeps_a_task_on_one_thread_across_suspensions(rt: WorkStealing) -> None:
    """Pinned while plenty of unpinned tasks keep every worker busy and stealing."""
    payload = bytes(64 * 1024)

    async def busy() -> set[str]:
        seen = set()
        for _ in range(50):
            hashlib.sha256(payload).digest()
            seen.add(threading.current_thread().name)
            await rt.sleep(0)
        return seen

    threads: list[threading.Thread] = []

    async def pinned(partner: anyrt.Task[None]) -> list[int]:
        idents = [threading.get_ident()]
        for step in range(150):
            kind = step % 5
            if kind == 0:
                await rt.sleep(0)
            elif kind == 1:
                await rt.sleep(0.0001)
            elif kind == 2:
                # Woken from a plain thread.
                sender, receiver = rt.oneshot()
                thread = threading.Thread(target=sender.send, args=(step,))
                thread.start()
                threads.append(thread)
                assert await receiver == step
            elif kind == 3:
                # Woken from whatever worker runs the helper.
                sender, receiver = rt.oneshot()
                rt.spawn(_send_later(rt, sender, step)).detach()
                assert await receiver == step
            else:
                assert await rt.spawn_blocking(int, step) == step
            idents.append(threading.get_ident())
        await partner
        return idents

    async def main() -> tuple[int, list[int], set[str]]:
        home = threading.get_ident()
        others = [rt.spawn(busy()) for _ in range(16)]
        partner = rt.spawn(rt.sleep(0.01))
        task = rt.spawn_local(pinned(partner))
        idents = await task
        seen: set[str] = set()
        for other in others:
            seen |= await other
        return home, idents, seen

    home, idents, seen = rt.block_on(main())
    for thread in threads:
        thread.join()
    assert len(idents) == 151
    assert set(idents) == {home}
    assert len(seen) > 1  # meanwhile the unpinned tasks ran on several workers


async def _send_later(rt: anyrt.Runtime, sender: anyrt.Sender[int], value: int) -> None:
    await rt.sleep(0)
    assert sender.send(value)


def test_spawn_local_from_a_plain_thread_raises_and_closes_the_coroutine(
    rt: WorkStealing,
) -> None:
    async def body() -> None:  # pragma: no cover - never runs
        pass

    coro = body()
    with pytest.raises(
        RuntimeError, match=r"spawn_local\(\) must be called from a task.*spawn\(\)"
    ):
        rt.spawn_local(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning later

    def from_other_thread() -> None:
        with pytest.raises(RuntimeError, match=r"spawn_local\(\)"):
            rt.spawn_local(body())

    _run_in_thread(from_other_thread)


def test_spawn_local_from_another_runtime_s_worker_raises(rt: WorkStealing) -> None:
    with anyrt.runtime("work-stealing", workers=1) as other:

        async def body() -> None:  # pragma: no cover - never runs
            pass

        async def main() -> None:
            with pytest.raises(RuntimeError, match=r"spawn_local\(\)"):
                rt.spawn_local(body())

        other.block_on(main())


# -- spreading -------------------------------------------------------------------------------


def test_parallel_work_spreads_across_workers() -> None:
    payload = bytes(1024 * 1024)

    async def crunch() -> set[str]:
        seen = set()
        for _ in range(4):
            hashlib.sha256(payload).digest()  # releases the GIL
            seen.add(threading.current_thread().name)
            await rt.sleep(0)
        return seen

    async def main() -> set[str]:
        tasks = [rt.spawn(crunch()) for _ in range(16)]
        seen: set[str] = set()
        for task in tasks:
            seen |= await task
        return seen

    with anyrt.runtime("work-stealing", workers=2) as rt:
        seen = rt.block_on(main())
    assert seen == {"anyrt-work-stealing-0", "anyrt-work-stealing-1"}


# -- block_on --------------------------------------------------------------------------------


def test_block_on_from_the_main_thread_and_from_plain_threads(rt: WorkStealing) -> None:
    async def double(value: int) -> tuple[int, str]:
        await rt.sleep(0.001)
        return value * 2, threading.current_thread().name

    assert rt.block_on(double(21))[0] == 42

    # Several plain threads blocked in block_on at once.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(rt.block_on, double(value)) for value in range(8)]
        results = [future.result(timeout=30) for future in futures]
    assert [value for value, _ in results] == [value * 2 for value in range(8)]
    assert all(WORKER_NAME.fullmatch(name) for _, name in results)


def test_block_on_inside_a_task_raises_and_closes_the_coroutine(rt: WorkStealing) -> None:
    async def inner() -> None:  # pragma: no cover - never runs
        pass

    async def main() -> bool:
        coro = inner()
        with pytest.raises(RuntimeError, match=r"block_on\(\) was called from inside a task"):
            rt.block_on(coro)
        return coro.cr_frame is None

    assert rt.block_on(main())


def test_block_on_propagates_the_exception(rt: WorkStealing) -> None:
    async def fail() -> None:
        await rt.sleep(0)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        rt.block_on(fail())


# -- plain threads -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_spawn_from_a_plain_thread_wakes_an_idle_runtime(workers: int) -> None:
    """No lost wake-up: each spawn lands while the workers park or are parked."""
    rounds = 1_000

    async def reply(future: concurrent.futures.Future[int], value: int) -> None:
        future.set_result(value)

    def spawner(rt: anyrt.Runtime, base: int) -> list[int]:
        results = []
        for value in range(base, base + rounds):
            future: concurrent.futures.Future[int] = concurrent.futures.Future()
            rt.spawn(reply(future, value)).detach()
            done, _ = concurrent.futures.wait([future], timeout=10)
            assert done, f"spawned task {value} never ran: a lost wake-up"
            results.append(future.result())
        return results

    with anyrt.runtime("work-stealing", workers=workers) as rt:
        assert spawner(rt, 0) == list(range(rounds))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(spawner, rt, base) for base in (1000, 2000)]
            assert [future.result(timeout=60) for future in futures] == [
                list(range(base, base + rounds)) for base in (1000, 2000)
            ]


def test_oneshot_sent_from_a_plain_thread_wakes_a_parked_task(rt: WorkStealing) -> None:
    rounds = 200

    async def waiter(slots: list[concurrent.futures.Future[anyrt.Sender[int]]]) -> list[int]:
        received = []
        for slot in slots:
            sender, receiver = rt.oneshot()
            slot.set_result(sender)
            received.append(await receiver)
        return received

    slots: list[concurrent.futures.Future[anyrt.Sender[int]]]
    slots = [concurrent.futures.Future() for _ in range(rounds)]
    task = rt.spawn(waiter(slots))
    for value, slot in enumerate(slots):
        assert slot.result(timeout=10).send(value)

    async def join() -> list[int]:
        return await task

    assert rt.block_on(join()) == list(range(rounds))


def test_cancel_from_a_plain_thread(rt: WorkStealing) -> None:
    parked = threading.Event()
    seen: list[str] = []

    async def forever() -> None:
        _, receiver = rt.oneshot()
        parked.set()
        try:
            await receiver
        except anyrt.Cancelled:
            seen.append(threading.current_thread().name)
            raise

    task = rt.spawn(forever())
    assert parked.wait(timeout=10)
    assert _run_in_thread(task.cancel) is True

    async def join() -> None:
        await task

    with pytest.raises(anyrt.Cancelled):
        rt.block_on(join())
    assert task.done()
    assert len(seen) == 1
    assert WORKER_NAME.fullmatch(seen[0])
    assert _run_in_thread(task.cancel) is False  # already finished


def test_cancel_from_a_plain_thread_before_the_task_starts() -> None:
    started: list[bool] = []

    async def body() -> None:  # pragma: no cover - must never start
        started.append(True)

    with anyrt.runtime("work-stealing", workers=1) as rt:

        async def main() -> None:
            task = rt.spawn(body())
            # The only worker is busy running `main`, so the new task has not started.
            assert _run_in_thread(task.cancel) is True
            with pytest.raises(anyrt.Cancelled):
                await task

        rt.block_on(main())
    assert started == []


# -- spawn_blocking --------------------------------------------------------------------------


def test_spawn_blocking_runs_off_the_workers_and_returns_or_raises(rt: WorkStealing) -> None:
    def work(value: int) -> str:
        if value < 0:
            raise ValueError("negative")
        return threading.current_thread().name

    async def main() -> str:
        name = await rt.spawn_blocking(work, 1)
        with pytest.raises(ValueError, match="negative"):
            await rt.spawn_blocking(work, -1)
        return name

    name = rt.block_on(main())
    assert name.startswith("anyrt-work-stealing-blocking-")
    assert not WORKER_NAME.fullmatch(name)


def test_spawn_blocking_grows_on_demand_up_to_max_and_not_beyond() -> None:
    limit = 6
    with anyrt.runtime("work-stealing", workers=2, max_blocking_threads=limit) as rt:
        assert isinstance(rt, WorkStealing)
        assert rt._blocking.threads == 0  # nothing until the first call

        async def sequential() -> None:
            for _ in range(3):
                await rt.spawn_blocking(int)

        rt.block_on(sequential())
        assert rt._blocking.threads == 1  # an idle thread is reused, not multiplied

        # `limit` calls that can only finish together: proof they run concurrently.
        barrier = threading.Barrier(limit)
        names: list[str] = []

        def rendezvous() -> None:
            barrier.wait(timeout=10)
            names.append(threading.current_thread().name)

        async def burst(calls: int) -> None:
            tasks = [rt.spawn(rt.spawn_blocking(rendezvous)) for _ in range(calls)]
            for task in tasks:
                await task

        # Twice as many calls as threads: two generations of the barrier. A pool
        # capped below `limit` would break the barrier; one that grew past it would
        # show more threads (none is reaped: idle threads live for 10 s).
        rt.block_on(burst(2 * limit))
        assert rt._blocking.threads == limit
        assert len(set(names)) == limit
        assert len(names) == 2 * limit


def test_spawn_blocking_reaps_idle_threads() -> None:
    with anyrt.runtime("work-stealing", workers=1, max_blocking_threads=4) as rt:
        assert isinstance(rt, WorkStealing)
        rt._blocking._idle_timeout = 0.05  # the default is 10 s
        barrier = threading.Barrier(4)

        async def burst() -> None:
            tasks = [rt.spawn(rt.spawn_blocking(barrier.wait, 10)) for _ in range(4)]
            for task in tasks:
                await task

        rt.block_on(burst())
        assert rt._blocking.threads == 4
        for thread in _blocking_threads():
            thread.join(timeout=10)  # each exits on its own once idle
        assert _blocking_threads() == []
        assert rt._blocking.threads == 0
        # The pool grows again after reaping.
        assert rt.block_on(rt.spawn_blocking(len, "abc")) == 3
        assert rt._blocking.threads == 1


def _blocking_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("anyrt-work-stealing-blocking")]


def test_spawn_blocking_copies_the_context(rt: WorkStealing) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        var.set("task value")
        return await rt.spawn_blocking(var.get)

    assert rt.block_on(main()) == "task value"


# -- races that were core bugs ------------------------------------------------------------


class _StolenOnAppend(collections.deque[object]):
    """A local queue whose every append is followed, at once, by a thief's steal.

    Stands for the interleaving "owner appends, another worker's `steal` empties the
    queue, owner pops", which real threads hit about once in a few thousand stress runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stolen: list[object] = []

    def append(self, item: object) -> None:
        super().append(item)
        self.stolen.append(self.popleft())


def test_lifo_demotion_survives_a_concurrent_steal() -> None:
    from anyrt._work_stealing import LIFO_RUN_LIMIT, _Worker

    with anyrt.runtime("work-stealing", workers=1) as rt:
        assert isinstance(rt, WorkStealing)
        worker = _Worker(rt, 99)  # never started: its queues are driven by hand
        queue = _StolenOnAppend()
        worker.local = queue  # type: ignore[assignment]
        task = object()
        worker.lifo = task  # type: ignore[assignment]
        worker.lifo_runs = LIFO_RUN_LIMIT  # the next LIFO pop demotes the task
        returned = worker.pop_lifo()
        # The task runs exactly once: here, or on the thief's worker.
        assert (returned is task) != (task in queue.stolen)
