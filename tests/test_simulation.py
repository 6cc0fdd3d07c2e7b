"""Deterministic simulation: seeded schedules, replay, traces, determinism, buggify."""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import anyrt
import anyrt.testing
from anyrt import SingleThreaded
from anyrt._sim import SimTimerQueue
from anyrt._timers import TimerEntry, TimerQueue
from anyrt.testing import (
    SimHost,
    Simulation,
    SimulationFailure,
    SimulationStats,
    StepLimitExceeded,
    TraceEntry,
    buggify,
    current_simulation,
    simulate,
)


@pytest.fixture(autouse=True)
def _no_replay_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests run many seeds on purpose; a replay seed in the environment is for
    # the user's own tests.
    monkeypatch.delenv("ANYRT_SEED", raising=False)


async def three_workers(rt: anyrt.Runtime) -> list[str]:
    """Three tasks that each append their name after a few scheduling points."""
    order: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(3):
            await rt.sleep(0)
        await rt.sleep(0.5)  # all three wake at the same virtual instant
        order.append(name)

    async with anyrt.TaskGroup(rt) as tg:
        for name in "abc":
            tg.spawn(worker(name), name=f"worker-{name}")
    return order


def run_one(seed: int, test_fn: object = three_workers, **options: object) -> Simulation:
    simulation = Simulation(seed, **options)  # type: ignore[arg-type]
    simulation.run(test_fn)  # type: ignore[arg-type]
    return simulation


# -- seeds and traces -------------------------------------------------------------------


def test_the_same_seed_gives_the_same_trace() -> None:
    first, second = run_one(7), run_one(7)
    assert first.steps == second.steps > 0
    assert first.trace_digest == second.trace_digest
    assert first.trace == second.trace


def test_different_seeds_give_different_traces() -> None:
    digests = {run_one(seed).trace_digest for seed in range(20)}
    assert len(digests) >= 15


def test_seeds_explore_every_order_of_ready_tasks() -> None:
    orders = set()
    for seed in range(40):
        simulation = Simulation(seed)
        orders.add("".join(simulation.run(three_workers)))
    assert orders == {"".join(p) for p in itertools.permutations("abc")}


DIGEST_PROGRAM = """
import anyrt
from anyrt.testing import Simulation

async def main(rt):
    async def child(n):
        for _ in range(n):
            await rt.sleep(0.1)
    async with anyrt.TaskGroup(rt) as tg:
        for n in range(4):
            tg.spawn(child(n))

simulation = Simulation(3)
simulation.run(main)
print(simulation.trace_digest)
"""


def test_the_trace_digest_does_not_depend_on_the_process() -> None:
    # Nothing hashed into the digest is a str or an id(): the value is the same in
    # every process, whatever its hash seed.
    digests = set()
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", DIGEST_PROGRAM],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1
    assert re.fullmatch(r"[0-9a-f]{16}", digests.pop())


def test_trace_entries_name_the_task_the_time_and_the_waits() -> None:
    simulation = run_one(1, trace=1000)
    entries = simulation.trace
    assert all(isinstance(entry, TraceEntry) for entry in entries)
    assert [entry.step for entry in entries if entry.task] == list(range(1, simulation.steps + 1))
    worker_steps = [entry for entry in entries if entry.task == "worker-a"]
    assert worker_steps[0].text.startswith("started: yields in sleep() at test_simulation.py:")
    assert "in worker" in worker_steps[0].text
    assert worker_steps[-1].text.endswith("returned")
    assert any("waits on sleep()" in entry.text and entry.time == 0.0 for entry in worker_steps), (
        worker_steps
    )
    assert worker_steps[-1].time == 0.5
    assert str(worker_steps[-1]).startswith(f"#{worker_steps[-1].step:<6} t=0.500000")


def test_the_trace_keeps_the_last_steps() -> None:
    simulation = run_one(1, trace=5)
    assert len(simulation.trace) == 5
    assert simulation.trace[-1].step == simulation.steps


def test_trace_zero_records_nothing() -> None:
    simulation = run_one(1, trace=0)
    assert simulation.trace == ()
    assert simulation.steps > 0


def test_simultaneous_timers_fire_in_a_seeded_order() -> None:
    class Mark(TimerEntry):
        def __init__(self, fired: list[int], label: int) -> None:
            super().__init__(1.0)
            self.fired = fired
            self.label = label

        def fire(self) -> None:
            self.fired.append(self.label)

    def order(queue: TimerQueue) -> list[int]:
        fired: list[int] = []
        for label in range(8):
            queue.push(Mark(fired, label))
        early = Mark(fired, -1)
        early.deadline = 0.5
        queue.push(early)
        queue.fire_due(1.0)
        return fired

    assert order(TimerQueue()) == [-1, *range(8)]  # plain runtimes: first in, first out
    seeded = [order(SimTimerQueue(random.Random(seed))) for seed in range(6)]
    assert all(fired[0] == -1 for fired in seeded)
    assert all(sorted(fired[1:]) == list(range(8)) for fired in seeded)
    assert len({tuple(fired) for fired in seeded}) > 1
    assert order(SimTimerQueue(random.Random(4))) == seeded[4]


# -- simulate: failures, replay ---------------------------------------------------------


async def startup(rt: anyrt.Runtime) -> bool:
    config: dict[str, bool] = {}

    async def load_config() -> None:
        await rt.sleep(0.1)
        config["debug"] = False

    async def start_server() -> bool:
        await rt.sleep(0.1)
        return config["debug"]  # bug: assumes load_config() has run

    loader = rt.spawn(load_config())
    server = rt.spawn(start_server())
    await loader
    return await server


def test_simulate_reports_the_failing_seed_and_how_to_replay_it() -> None:
    with pytest.raises(SimulationFailure) as caught:
        simulate(startup, seeds=50)
    failure = caught.value
    assert isinstance(failure, AssertionError)
    assert isinstance(failure.__cause__, KeyError)
    seed = failure.seed
    message = str(failure)
    assert message.startswith(f"seed {seed} failed: KeyError: 'debug'\n")
    assert failure.reproduction == f"simulate(startup, seed={seed})"
    assert f"  simulate(startup, seed={seed})\n" in message
    assert "(replayed once: the same failure at the same step)" in message
    assert failure.trace
    assert failure.trace[-1].task == "startup"
    assert failure.trace[-1].text.endswith("raised KeyError: 'debug'")
    assert failure.steps == failure.trace[-1].step
    assert failure.time == pytest.approx(0.1)
    # The seed replays the same failure, step for step.
    with pytest.raises(SimulationFailure) as again:
        simulate(startup, seed=seed)
    assert again.value.trace == failure.trace
    # Seeds before it pass.
    if seed:
        simulate(startup, seeds=range(seed))


def test_the_first_failing_seed_is_the_same_every_time() -> None:
    seeds = []
    for _ in range(2):
        with pytest.raises(SimulationFailure) as caught:
            simulate(startup, seeds=50)
        seeds.append(caught.value.seed)
    assert seeds[0] == seeds[1]


def test_simulate_returns_what_it_ran() -> None:
    stats = simulate(three_workers, seeds=5)
    assert isinstance(stats, SimulationStats)
    assert stats.seeds == 5
    assert stats.runs == 6  # the first seed twice: the determinism check
    assert stats.steps > 6 * 12
    assert stats.virtual_time == pytest.approx(6 * 0.5)
    assert stats.wall_time > 0
    assert stats.steps_per_second > 0
    assert simulate(three_workers, seeds=[3, 9], check_determinism=False).runs == 2


def test_anyrt_seed_replays_one_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    async def record(rt: anyrt.Runtime) -> None:
        seen.append(current_simulation().seed)

    monkeypatch.setenv("ANYRT_SEED", "17")
    stats = simulate(record, seeds=100)
    assert seen == [17, 17]  # and checked for determinism
    assert stats.seeds == 1
    simulate(record, seed=4, check_determinism=False)  # an explicit seed wins
    assert seen[-1] == 4
    monkeypatch.setenv("ANYRT_SEED", "seventeen")
    with pytest.raises(ValueError, match="ANYRT_SEED='seventeen' is not a seed"):
        simulate(record)


@pytest.mark.parametrize(
    ("seeds", "error", "match"),
    [
        ([], ValueError, "no seed to run"),
        (True, TypeError, "not a bool"),
        (["1"], TypeError, "a seed is an int, not str"),
    ],
)
def test_simulate_checks_the_seeds(seeds: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        simulate(three_workers, seeds=seeds)  # type: ignore[arg-type]


def test_simulate_refuses_what_is_not_an_async_function() -> None:
    def not_async(rt: anyrt.Runtime) -> None:
        pass

    with pytest.raises(SimulationFailure) as caught:
        simulate(not_async, seeds=1)  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, TypeError)
    assert "an async function taking the runtime" in str(caught.value.__cause__)
    with pytest.raises(TypeError, match="takes an async function"):
        simulate(42, seeds=1)  # type: ignore[arg-type]


def test_a_livelock_fails_at_the_step_limit() -> None:
    async def spin(rt: anyrt.Runtime) -> None:
        while True:
            await rt.sleep(0)

    with pytest.raises(SimulationFailure) as caught:
        simulate(spin, seeds=1, max_steps=500)
    assert isinstance(caught.value.__cause__, StepLimitExceeded)
    assert str(caught.value).startswith(
        "seed 0 did not finish: the run did not finish within 500 steps"
    )
    assert caught.value.steps == 500


def test_a_deadlock_fails_with_the_parked_tasks() -> None:
    async def stuck(rt: anyrt.Runtime) -> None:
        await anyrt.Event(rt).wait()

    with pytest.raises(SimulationFailure) as caught:
        simulate(stuck, seeds=1)
    assert isinstance(caught.value.__cause__, anyrt.Deadlock)
    assert "can never finish" in str(caught.value)


def test_a_detached_failure_fails_the_run(caplog: pytest.LogCaptureFixture) -> None:
    async def leaky(rt: anyrt.Runtime) -> None:
        async def refresh() -> None:
            await rt.sleep(1)
            raise OSError("disk full")

        rt.spawn(refresh(), name="refresh").detach()
        await rt.sleep(2)

    with pytest.raises(SimulationFailure) as caught:
        simulate(leaky, seeds=1)
    assert "failed: OSError: disk full (in an exception group)" in str(caught.value)
    group = caught.value.__cause__
    assert isinstance(group, BaseExceptionGroup)
    assert "in task 'refresh' (detached) of the simulation" in group.exceptions[0].__notes__
    assert "task 'refresh' failed (detached): OSError('disk full')" in str(caught.value)
    # The trace stops where the task failed, not after the test ended.
    assert caught.value.time == 1.0
    with caplog.at_level(logging.ERROR, logger="anyrt"):
        simulate(leaky, seeds=1, fail_on_task_errors=False)
    assert "unhandled exception in detached task 'refresh'" in caplog.text


# -- determinism check ------------------------------------------------------------------


def test_the_determinism_check_catches_state_left_by_an_earlier_run() -> None:
    runs: list[int] = []

    async def leaky_state(rt: anyrt.Runtime) -> None:
        runs.append(1)
        for _ in range(3 + len(runs)):  # one more step every run
            await rt.sleep(0)

    with pytest.raises(SimulationFailure) as caught:
        simulate(leaky_state, seeds=3)
    message = str(caught.value)
    assert message.startswith("seed 0 is not deterministic: two runs of it differ")
    assert "first run, up to the difference:" in message
    assert "second run, up to the difference:" in message
    simulate(leaky_state, seeds=3, check_determinism=False)  # the check is what failed


def test_the_determinism_check_shows_where_two_runs_part() -> None:
    calls = itertools.count()

    async def flaky(rt: anyrt.Runtime) -> None:
        async def child() -> None:
            await rt.sleep(0)

        await rt.sleep(0)
        if next(calls) == 1:  # the second run takes another path
            await rt.spawn(child(), name="extra")
        await rt.sleep(1)

    with pytest.raises(SimulationFailure) as caught:
        simulate(flaky, seeds=1)
    assert "at step 2 the second run took a different step" in str(caught.value)
    assert caught.value.trace[-1].step == 2


def test_a_replay_that_does_not_fail_the_same_way_is_flagged() -> None:
    calls = itertools.count()

    async def fails_once(rt: anyrt.Runtime) -> None:
        await rt.sleep(0)
        if next(calls) == 0:
            raise ValueError("only the first time")

    with pytest.raises(SimulationFailure) as caught:
        simulate(fails_once, seeds=1)
    assert "WARNING: replaying it once did not fail the same way" in str(caught.value)


# -- the simulation object --------------------------------------------------------------


def test_a_simulation_runs_once_and_closes_its_runtime() -> None:
    simulation = Simulation(5)
    assert simulation.seed == 5
    assert isinstance(simulation.runtime, SingleThreaded)
    assert simulation.run(three_workers) in (list(p) for p in itertools.permutations("abc"))
    assert simulation.runtime.closed
    assert simulation.now() == 0.5
    with pytest.raises(RuntimeError, match="a Simulation runs once"):
        simulation.run(three_workers)
    assert repr(simulation) == f"<anyrt Simulation seed=5 steps={simulation.steps}>"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"seed": "1"}, TypeError, "a simulation seed is an int"),
        ({"seed": 1, "trace": -1}, ValueError, "trace"),
        ({"seed": 1, "max_steps": 0}, ValueError, "max_steps"),
        ({"seed": 1, "link": object()}, TypeError, "anyrt.testing.Link"),
    ],
)
def test_simulation_checks_its_options(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Simulation(**options)  # type: ignore[arg-type]


def test_current_simulation_inside_and_outside() -> None:
    async def inside(rt: anyrt.Runtime) -> Simulation:
        return current_simulation()

    simulation = Simulation(2)
    assert simulation.run(inside) is simulation
    with pytest.raises(RuntimeError, match="only available inside a simulated run"):
        current_simulation()
    with pytest.raises(RuntimeError, match="only available inside a simulated run"):
        anyrt.run(inside, backend="single-threaded")


def test_the_random_generator_is_the_runs_own() -> None:
    async def draw(rt: anyrt.Runtime) -> list[float]:
        return [current_simulation().random.random() for _ in range(3)]

    assert Simulation(8).run(draw) == Simulation(8).run(draw)
    assert Simulation(8).run(draw) != Simulation(9).run(draw)


def test_a_host_view_is_a_runtime_of_the_simulation() -> None:
    async def use_views(rt: anyrt.Runtime) -> None:
        sim = current_simulation()
        db = sim.host("db")
        assert sim.host("db") is db
        assert isinstance(db, SimHost)
        assert isinstance(db, anyrt.Runtime)
        assert db.host == "db"
        assert db.simulation is sim
        assert db.name == "single-threaded"
        assert db.cancelled_exc is anyrt.Cancelled
        assert "virtual-time" in db.capabilities
        assert sim.hosts == ("main", "db")
        assert repr(db).startswith("<anyrt SimHost 'db' of <anyrt Simulation seed=")
        # Everything but the network is the simulation's runtime.
        event = anyrt.Event(db)
        task = db.spawn(event.wait())
        local = db.spawn_local(db.sleep(1))
        await db.sleep_until(0.5)
        assert db.now() == rt.now() == 0.5
        event.set()
        await task
        await local
        assert await db.spawn_blocking(sum, [1, 2]) == 3
        pair: tuple[anyrt.Sender[int], anyrt.Receiver[int]] = db.oneshot()
        sender, receiver = pair
        sender.send(4)
        assert await receiver == 4
        ticks = db.interval(1)
        assert await anext(ticks) == 2.0
        with pytest.raises(TimeoutError):
            async with db.timeout(1):
                await db.sleep(5)
        with pytest.raises(RuntimeError, match="no OS"):
            await db.wait_readable(0)
        with pytest.raises(RuntimeError, match="no OS"):
            await db.wait_writable(0)
        with pytest.raises(RuntimeError, match="block_on"):
            db.block_on(db.sleep(0))
        with db:
            pass  # closing a view does nothing: the simulation owns the runtime
        assert not db.closed

    simulate(use_views, seeds=2)


@pytest.mark.parametrize("name", ["", "localhost", "127.0.0.1", "0.0.0.0"])
def test_host_names_cannot_be_addresses(name: str) -> None:
    simulation = Simulation(0)
    with pytest.raises(ValueError, match="cannot name a simulated host"):
        simulation.host(name)
    with pytest.raises(TypeError, match="a host name is a str"):
        simulation.host(3)  # type: ignore[arg-type]
    simulation.runtime.close()


# -- buggify ----------------------------------------------------------------------------


def fault_point(probability: float) -> bool:
    return buggify(probability)


def test_buggify_is_false_outside_a_simulation() -> None:
    assert fault_point(1.0) is False  # no runtime at all

    async def plain(rt: anyrt.Runtime) -> bool:
        return fault_point(1.0)

    assert anyrt.run(plain, backend="single-threaded", seed=1) is False
    assert anyrt.run(plain, backend="work-stealing", workers=1) is False


def test_buggify_is_seeded_under_simulation() -> None:
    async def draws(rt: anyrt.Runtime) -> list[bool]:
        hits = []
        for _ in range(400):
            hits.append(fault_point(0.25))
            await rt.sleep(0)
        return hits

    first = Simulation(11).run(draws)
    assert first == Simulation(11).run(draws)
    assert first != Simulation(12).run(draws)
    assert 60 < sum(first) < 140

    async def extremes(rt: anyrt.Runtime) -> tuple[bool, bool]:
        return fault_point(0), fault_point(1)

    assert Simulation(0).run(extremes) == (False, True)


def test_buggify_that_fires_is_in_the_trace() -> None:
    async def once(rt: anyrt.Runtime) -> None:
        assert fault_point(1.0)

    simulation = Simulation(0)
    simulation.run(once)
    notes = [entry for entry in simulation.trace if entry.task is None]
    assert len(notes) == 1
    assert re.fullmatch(
        r"buggify\(1\.0\) fired in fault_point \(test_simulation\.py:\d+\)", notes[0].text
    )
    assert str(notes[0]).startswith("#0      t=0.000000    *  buggify(1.0) fired")


@pytest.mark.parametrize(("probability", "error"), [(1.5, ValueError), ("x", TypeError)])
def test_buggify_checks_its_probability_under_simulation(
    probability: object, error: type[Exception]
) -> None:
    async def misuse(rt: anyrt.Runtime) -> None:
        buggify(probability)  # type: ignore[arg-type]

    with pytest.raises(error, match="buggify"):
        Simulation(0).run(misuse)


# -- the runtime itself ------------------------------------------------------------------


@pytest.fixture
def plain() -> Iterator[SingleThreaded]:
    with SingleThreaded() as rt:
        yield rt


def test_a_runtime_is_put_under_simulation_only_when_new(plain: SingleThreaded) -> None:
    simulation = Simulation(0)

    async def noop() -> None:
        pass

    plain.block_on(noop())
    with pytest.raises(RuntimeError, match="before it runs anything"):
        plain._attach_simulation(simulation, SimTimerQueue(random.Random(0)), plain._network)
    with SingleThreaded(clock="real") as real, pytest.raises(RuntimeError, match="virtual time"):
        real._attach_simulation(simulation, SimTimerQueue(random.Random(0)), real._network)
    simulation.runtime.close()


def test_every_testing_name_is_documented() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text("utf-8")
    documented = set(re.findall(r"^#### `anyrt\.testing\.(\w+)`", page, re.MULTILINE))
    assert documented == set(anyrt.testing.__all__)
