"""Stress tests of the threaded runtimes: nothing lost, nothing doubled, no overlap.

Each runs on `work-stealing` (tasks move between workers) and `thread-per-core` (tasks
stay put and every wake-up between cores crosses threads).

Each test counts every event it cares about and compares the count with what must
have happened, so a lost wake-up, a task run twice or a lost update fails it rather
than passing by luck. Sizes keep the whole file to a few seconds on two cores.
"""

from __future__ import annotations

import collections
import hashlib
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import anyrt

WORKERS = 4


THREADED = {"work-stealing": {"workers": WORKERS}, "thread-per-core": {"cores": WORKERS}}


@pytest.fixture(params=sorted(THREADED))
def rt(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    with anyrt.runtime(request.param, **THREADED[request.param]) as runtime:
        yield runtime


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch the GIL between threads every few microseconds, so racers interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class PerThreadLog:
    """One list per recording thread, so recording never races (no shared append)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._lists: dict[str, list[Any]] = {}

    def record(self, item: Any) -> None:
        items = getattr(self._local, "items", None)
        if items is None:
            items = self._local.items = []
            with self._lock:
                self._lists[f"{threading.current_thread().name}/{threading.get_ident()}"] = items
        items.append(item)

    def counter(self) -> collections.Counter[Any]:
        with self._lock:
            return collections.Counter(item for items in self._lists.values() for item in items)

    def threads(self) -> set[str]:
        with self._lock:
            return {key.split("/")[0] for key in self._lists}


# -- spawning ------------------------------------------------------------------------------


def test_100k_tasks_spawned_from_four_plain_threads_each_run_exactly_once(
    rt: anyrt.Runtime,
) -> None:
    spawners, per_spawner = 4, 25_000
    started, finished = PerThreadLog(), PerThreadLog()

    async def job(key: int) -> int:
        started.record(key)
        await rt.sleep(0)  # a second step, possibly on another worker
        finished.record(key)
        return key

    go = threading.Barrier(spawners)
    handles: list[list[anyrt.Task[int]]] = [[] for _ in range(spawners)]

    def spawner(index: int) -> None:
        go.wait(timeout=10)
        base = index * per_spawner
        handles[index] = [rt.spawn(job(base + offset)) for offset in range(per_spawner)]

    threads = [threading.Thread(target=spawner, args=(index,)) for index in range(spawners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def join_all() -> list[int]:
        return [await task for tasks in handles for task in tasks]

    results = rt.block_on(join_all())
    expected = collections.Counter(range(spawners * per_spawner))
    assert collections.Counter(results) == expected
    assert started.counter() == expected
    assert finished.counter() == expected
    workers = started.threads()
    assert workers <= {f"anyrt-{rt.name}-{index}" for index in range(WORKERS)}
    assert len(workers) > 1  # the work was shared out


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("work-stealing", {"workers": 1}),
        ("work-stealing", {"workers": 2}),
        ("thread-per-core", {"cores": 1}),
        ("thread-per-core", {"cores": 2}),
        ("single-threaded", {}),
    ],
    ids=[
        "work-stealing-1",
        "work-stealing-2",
        "thread-per-core-1",
        "thread-per-core-2",
        "single-threaded",
    ],
)
def test_100k_tasks_that_return_at_once_all_end_in_one_task_group(
    backend: str, options: dict[str, Any]
) -> None:
    # With one worker the group's task runs before its children, so it waits for each
    # in turn; the wait once rescanned the children from the first every time, which
    # made this quadratic (minutes, past the test timeout).
    count = 100_000

    async def job(index: int) -> int:
        return index

    async def main(rt: anyrt.Runtime) -> list[int]:
        async with anyrt.TaskGroup(rt) as group:
            tasks = [group.spawn(job(index)) for index in range(count)]
        assert all(task.done() for task in tasks)  # the group left none running
        return [await task for task in tasks]

    with anyrt.runtime(backend, **options) as rt:
        assert rt.block_on(main(rt)) == list(range(count))


# -- oneshot delivery racing cancellation --------------------------------------------------


def _race_one_batch(rt: anyrt.Runtime, per_batch: int, *, crossing: bool) -> int:
    """Race sends against cancels over ``per_batch`` pairs; return how many delivered."""
    senders: list[anyrt.Sender[int]] = []
    receivers: list[anyrt.Receiver[int]] = []
    for _ in range(per_batch):
        sender, receiver = rt.oneshot()
        senders.append(sender)
        receivers.append(receiver)
    entered = [0]
    entered_lock = threading.Lock()
    all_entered = threading.Event()

    async def receive(receiver: anyrt.Receiver[int]) -> int:
        # Count ourselves in, then await in the same step: once every receiver has
        # entered, each one is parked or about to park on its oneshot. (A task
        # cancelled before its first step never awaits its receiver at all.)
        with entered_lock:
            entered[0] += 1
            if entered[0] == per_batch:
                all_entered.set()
        return await receiver

    tasks = [rt.spawn(receive(receiver)) for receiver in receivers]
    assert all_entered.wait(timeout=10)

    order = list(range(per_batch))
    cancel_order = order[::-1] if crossing else order
    sent: list[bool | None] = [None] * per_batch
    go = threading.Barrier(2)

    def send_all() -> None:
        go.wait(timeout=10)
        for index in order:
            sent[index] = senders[index].send(index)

    def cancel_all() -> None:
        go.wait(timeout=10)
        for index in cancel_order:
            tasks[index].cancel()

    racers = [threading.Thread(target=send_all), threading.Thread(target=cancel_all)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    async def outcomes() -> list[object]:
        results: list[object] = []
        for task in tasks:
            try:
                results.append(await task)
            except anyrt.Cancelled:
                results.append("cancelled")
        return results

    for index, outcome in enumerate(rt.block_on(outcomes())):
        if sent[index]:
            assert outcome == index, f"pair {index}: send returned True, but {outcome}"
        else:
            assert sent[index] is False
            assert outcome == "cancelled", f"pair {index}: send returned False, got {outcome}"
    return sent.count(True)


@pytest.mark.usefixtures("fine_switching")
def test_oneshot_send_racing_cancel_never_loses_or_doubles_a_value(rt: anyrt.Runtime) -> None:
    """For each of 10k pairs: delivered (send True, task returns it) xor cancelled."""
    batches, per_batch = 10, 1_000
    delivered = 0
    for batch in range(batches):
        # Same order: sender and canceller run neck and neck over every pair;
        # opposite orders: they meet in the middle.
        delivered += _race_one_batch(rt, per_batch, crossing=batch % 2 == 1)
    # Both sides won some races, so both branches of the check above were exercised.
    assert 0 < delivered < batches * per_batch


# -- Channel ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("fine_switching")
@pytest.mark.parametrize("capacity", [0, 1, 16])
def test_channel_with_8_producers_and_8_consumers_loses_and_duplicates_nothing(
    rt: anyrt.Runtime, capacity: int
) -> None:
    producers, consumers, per_producer = 8, 8, 1_500
    channel: anyrt.Channel[tuple[int, int]] = anyrt.Channel(rt, capacity)

    async def produce(producer: int) -> None:
        for sequence in range(per_producer):
            await channel.send((producer, sequence))

    async def consume() -> list[tuple[int, int]]:
        return [item async for item in channel]

    async def main() -> list[list[tuple[int, int]]]:
        receiving = [rt.spawn(consume()) for _ in range(consumers)]
        sending = [rt.spawn(produce(producer)) for producer in range(producers)]
        for task in sending:
            await task
        channel.close()
        return [await task for task in receiving]

    received = rt.block_on(main())
    expected = collections.Counter(
        (producer, sequence) for producer in range(producers) for sequence in range(per_producer)
    )
    assert collections.Counter(item for items in received for item in items) == expected
    # FIFO: each consumer sees each producer's items in the order they were sent.
    for items in received:
        for producer in range(producers):
            sequences = [sequence for origin, sequence in items if origin == producer]
            assert sequences == sorted(sequences)


# -- Lock ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fine_switching")
def test_lock_protects_a_read_modify_write_across_workers(rt: anyrt.Runtime) -> None:
    tasks_count, rounds = 100, 40

    class State:
        value = 0
        holder: object = None
        overlaps = 0

    async def bump(state: State, lock: anyrt.Lock | None) -> None:
        me = object()
        for _ in range(rounds):
            if lock is not None:
                await lock.acquire()
            try:
                if state.holder is not None:
                    state.overlaps += 1
                state.holder = me
                value = state.value
                await rt.sleep(0)  # let every other task (and worker) run in between
                state.value = value + 1
                if state.holder is me:
                    state.holder = None
            finally:
                if lock is not None:
                    lock.release()

    async def run(lock: anyrt.Lock | None) -> State:
        state = State()
        for task in [rt.spawn(bump(state, lock)) for _ in range(tasks_count)]:
            await task
        return state

    locked = rt.block_on(run(anyrt.Lock(rt)))
    assert locked.value == tasks_count * rounds
    assert locked.overlaps == 0
    # The control: the same program without the lock does lose updates, so the
    # assertion above is able to fail.
    unlocked = rt.block_on(run(None))
    assert unlocked.value < tasks_count * rounds
    assert unlocked.overlaps > 0


# -- one task, one thread at a time ------------------------------------------------------------


@pytest.mark.usefixtures("fine_switching")
def test_a_task_never_runs_on_two_threads_at_once(rt: anyrt.Runtime) -> None:
    """Tasks swallow a hail of cancels from plain threads and keep stepping.

    Every wake source is live at once: yields, timers firing on workers, oneshots sent
    from a plain thread, and ``cancel()`` from three plain threads (each a wake). A
    scheduler that queued a task twice would run two of its steps concurrently, which
    the per-task flag (checked around a GIL-releasing hash) detects.
    """
    tasks_count, steps = 100, 60
    payload = bytes(16 * 1024)  # hashing more than 2 KiB releases the GIL

    class Probe:
        def __init__(self) -> None:
            self.busy = False
            self.overlaps = 0
            self.regions = 0
            self.cancels_seen = 0

    probes = [Probe() for _ in range(tasks_count)]
    mailbox: collections.deque[anyrt.Sender[None]] = collections.deque()
    mail = threading.Semaphore(0)

    def region(probe: Probe) -> None:
        if probe.busy:
            probe.overlaps += 1
        probe.busy = True
        ident = threading.get_ident()
        hashlib.sha256(payload).digest()
        if threading.get_ident() != ident:  # pragma: no cover - cannot happen in a region
            probe.overlaps += 1
        probe.busy = False
        probe.regions += 1

    async def body(probe: Probe) -> int:
        for step in range(steps):
            region(probe)
            try:
                if step % 3 == 0:
                    await rt.sleep(0)
                elif step % 3 == 1:
                    await rt.sleep(0.0001)
                else:
                    sender, receiver = rt.oneshot()
                    mailbox.append(sender)
                    mail.release()
                    await receiver
            except anyrt.Cancelled:
                probe.cancels_seen += 1
        region(probe)
        return probe.regions

    stop = threading.Event()

    def postman() -> None:
        while True:
            mail.acquire()
            if stop.is_set() and not mailbox:
                return
            mailbox.popleft().send(None)

    tasks = [rt.spawn(body(probe)) for probe in probes]

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            index = rng.randrange(tasks_count)
            # Only tasks inside their try blocks: a cancel before the first step
            # would (rightly) end the task before it could swallow anything.
            if probes[index].regions:
                tasks[index].cancel()

    helpers = [threading.Thread(target=postman)]
    helpers += [threading.Thread(target=hammer, args=(seed,)) for seed in range(3)]
    for helper in helpers:
        helper.start()
    try:

        async def join_all() -> list[int]:
            return [await task for task in tasks]

        regions = rt.block_on(join_all())
    finally:
        stop.set()
        mail.release()
        for helper in helpers:
            helper.join()

    assert regions == [steps + 1] * tasks_count
    assert [probe.overlaps for probe in probes] == [0] * tasks_count
    assert sum(probe.cancels_seen for probe in probes) > 0  # the hail did arrive
