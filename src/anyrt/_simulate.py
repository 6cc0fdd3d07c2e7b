"""`simulate`: run a test once per seed, report the failing seed, check determinism."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ._protocols import Runtime
from ._sim import Simulation, StepLimitExceeded, TraceEntry, _Diverged, _Stopped
from ._simnet import Link

__all__ = ["SimulationFailure", "SimulationStats", "seeds_to_run", "simulate"]

#: The environment variable that replays one seed.
SEED_VARIABLE: Final = "ANYRT_SEED"

TestFunction = Callable[[Runtime], Coroutine[Any, Any, object]]


class SimulationFailure(AssertionError):
    """A simulated test failed for one seed (or was not deterministic).

    The exception that failed the test is its ``__cause__``.

    Attributes:
        seed: the seed that fails.
        reproduction: how to replay it, one command per line.
        trace: the last steps before the failure, oldest first.
        steps: the number of steps the run had taken when it failed.
        time: the virtual time at the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        seed: int,
        reproduction: str,
        trace: tuple[TraceEntry, ...],
        steps: int,
        time: float,
    ) -> None:
        super().__init__(message)
        self.seed = seed
        self.reproduction = reproduction
        self.trace = trace
        self.steps = steps
        self.time = time


@dataclass(frozen=True, slots=True)
class SimulationStats:
    """What a `simulate` call ran.

    Attributes:
        seeds: how many seeds passed.
        runs: how many runs that took (the determinism check runs a seed twice).
        steps: task steps over every run.
        virtual_time: virtual seconds simulated over every run.
        wall_time: real seconds the whole call took.
    """

    seeds: int
    runs: int
    steps: int
    virtual_time: float
    wall_time: float

    @property
    def steps_per_second(self) -> float:
        """Simulated steps per real second."""
        return self.steps / self.wall_time if self.wall_time > 0 else 0.0


def seeds_to_run(seeds: int | Iterable[int], seed: int | None) -> list[int]:
    """Return the seeds to run: ``seed``, else ``$ANYRT_SEED``, else ``seeds``.

    Raises:
        ValueError: ``$ANYRT_SEED`` is not an integer, or there is no seed to run.
        TypeError: a seed is not an int.
    """
    if seed is not None:
        chosen: Iterable[int] = [seed]
    elif (replay := os.environ.get(SEED_VARIABLE, "").strip()) != "":
        try:
            chosen = [int(replay)]
        except ValueError:
            raise ValueError(
                f"{SEED_VARIABLE}={replay!r} is not a seed: set it to the integer a failure "
                "reported, or unset it to run every seed"
            ) from None
    elif isinstance(seeds, bool):
        raise TypeError("seeds= takes a number of seeds or an iterable of seeds, not a bool")
    elif isinstance(seeds, int):
        chosen = range(seeds)
    else:
        chosen = seeds
    result = list(chosen)
    for value in result:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a seed is an int, not {type(value).__name__}: {value!r}")
    if not result:
        raise ValueError("simulate() has no seed to run: seeds= is empty")
    return result


def simulate(
    test_fn: TestFunction,
    *,
    seeds: int | Iterable[int] = 100,
    seed: int | None = None,
    link: Link | None = None,
    trace: int = 32,
    max_steps: int = 1_000_000,
    check_determinism: bool = True,
    fail_on_task_errors: bool = True,
) -> SimulationStats:
    """Run ``await test_fn(runtime)`` once per seed on a simulated world.

    Each run gets a new `Simulation`: a `single-threaded` runtime on virtual time whose
    ready tasks, simultaneous timers, network delays and faults and `buggify` points
    are all decided by the seed. ``test_fn`` gets the runtime (the host ``"main"``);
    inside, `current_simulation` gives the controls (hosts, partitions, links).

    Args:
        test_fn: an async function taking the runtime; a failure is an exception.
        seeds: the seeds to run, or how many (``range(seeds)``).
        seed: run only this seed (a replay); overrides ``seeds`` and ``$ANYRT_SEED``.
        link: how every link behaves by default.
        trace: how many steps to keep and show when a run fails.
        max_steps: fail a run that takes more steps than this.
        check_determinism: run the first seed twice and fail if the two runs differ.
        fail_on_task_errors: fail a run when a task fails and nobody awaits it.

    Without ``seed``, the environment variable ``ANYRT_SEED`` replays just that seed.

    Returns:
        How many seeds, runs and steps were simulated, and how long it took.

    Raises:
        SimulationFailure: a seed failed (or the first seed ran differently twice);
            it names the seed, the line that replays it and the last steps.
    """
    name = getattr(test_fn, "__qualname__", None) or repr(test_fn)
    return run_seeds(
        test_fn,
        seeds_to_run(seeds, seed),
        reproduce=lambda failing: f"simulate({name}, seed={failing})",
        link=link,
        trace=trace,
        max_steps=max_steps,
        check_determinism=check_determinism,
        fail_on_task_errors=fail_on_task_errors,
    )


@dataclass(slots=True)
class _Outcome:
    """How one run ended."""

    simulation: Simulation
    error: BaseException | None

    @property
    def steps(self) -> int:
        point = self.simulation._failure_point
        return point[0] if point is not None and self.error is not None else self.simulation.steps

    @property
    def time(self) -> float:
        point = self.simulation._failure_point
        return point[1] if point is not None and self.error is not None else self.simulation.now()


def run_seeds(
    test_fn: TestFunction,
    seeds: list[int],
    *,
    reproduce: Callable[[int], str],
    link: Link | None,
    trace: int,
    max_steps: int,
    check_determinism: bool,
    fail_on_task_errors: bool,
) -> SimulationStats:
    """Run ``test_fn`` for each of ``seeds``; see `simulate`."""
    if not callable(test_fn):
        raise TypeError(
            f"simulate() takes an async function test_fn(runtime), not {type(test_fn).__name__}"
        )
    started = time.perf_counter()
    options: dict[str, Any] = {
        "link": link,
        "trace": trace,
        "max_steps": max_steps,
        "fail_on_task_errors": fail_on_task_errors,
    }

    def run(seed: int, **tracing: Any) -> _Outcome:
        simulation = Simulation(seed, **options)
        tracer = simulation._tracer
        tracer.history = tracing.get("history")
        tracer.expected = tracing.get("expected")
        if "stop_at" in tracing:
            tracer.stop(tracing["stop_at"])
        try:
            simulation.run(test_fn)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            return _Outcome(simulation, error)
        return _Outcome(simulation, None)

    runs = steps = 0
    virtual = 0.0
    for index, seed in enumerate(seeds):
        first = run(seed, history=[]) if check_determinism and index == 0 else run(seed)
        runs += 1
        steps += first.simulation.steps
        virtual += first.simulation.now()
        if first.error is not None:
            raise _failure(first, seed, reproduce, run)
        if check_determinism and index == 0:
            history = first.simulation._tracer.history
            assert history is not None
            second = run(seed, history=[], expected=history)
            runs += 1
            steps += second.simulation.steps
            virtual += second.simulation.now()
            _check_same(first, second, seed, reproduce, run)
    return SimulationStats(len(seeds), runs, steps, virtual, time.perf_counter() - started)


def _describe_error(error: BaseException) -> str:
    """Name the error; a group of one error (a task group's) is named by that error."""
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return f"{_describe_error(error.exceptions[0])} (in an exception group)"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _trace_lines(entries: tuple[TraceEntry, ...], title: str) -> str:
    if not entries:
        return f"{title}: (not recorded; pass trace=N to keep the last N steps)"
    return f"{title}:\n" + "\n".join(f"  {entry}" for entry in entries)


def _failure(
    outcome: _Outcome, seed: int, reproduce: Callable[[int], str], run: Callable[..., _Outcome]
) -> SimulationFailure:
    """Build the report of a failing seed, after replaying it once to confirm."""
    error = outcome.error
    assert error is not None
    simulation = outcome.simulation
    if isinstance(error, StepLimitExceeded):
        what = f"did not finish: {error}"
    elif isinstance(error, _Diverged | _Stopped):  # pragma: no cover - only in check runs
        what = "stopped"
    else:
        what = f"failed: {_describe_error(error)}"
    replay = run(seed)
    same = (
        replay.error is not None
        and type(replay.error) is type(error)
        and str(replay.error) == str(error)
        and replay.steps == outcome.steps
        and replay.time == outcome.time
    )
    replayed = (
        "(replayed once: the same failure at the same step)"
        if same
        else "(WARNING: replaying it once did not fail the same way, so the test is not "
        "deterministic: it depends on something outside the simulation, such as wall-clock "
        "time, an unseeded random generator, threads or state left by an earlier run)"
    )
    reproduction = reproduce(seed)
    message = (
        f"seed {seed} {what}\n"
        f"after {outcome.steps:,} steps, at virtual time {outcome.time:.6f}\n"
        f"replay it with:\n  {reproduction.replace(chr(10), chr(10) + '  ')}\n"
        f"{replayed}\n" + _trace_lines(simulation.failure_trace(), "last steps (oldest first)")
    )
    failure = SimulationFailure(
        message,
        seed=seed,
        reproduction=reproduction,
        trace=simulation.failure_trace(),
        steps=outcome.steps,
        time=outcome.time,
    )
    failure.__cause__ = error
    return failure


def _check_same(
    first: _Outcome,
    second: _Outcome,
    seed: int,
    reproduce: Callable[[int], str],
    run: Callable[..., _Outcome],
) -> None:
    """Fail if the second run of ``seed`` did not take exactly the steps of the first."""
    error = second.error
    history = first.simulation._tracer.history
    assert history is not None
    if error is None and second.simulation._tracer.history == history:
        return
    if isinstance(error, _Diverged):
        step = error.args[0]
        how = f"at step {step:,} the second run took a different step"
    elif error is None:
        step = len(second.simulation._tracer.history or ()) + 1
        how = f"the second run ended after {step - 1:,} steps, the first after {len(history):,}"
    else:
        step = second.steps
        how = f"the second run failed ({_describe_error(error)}) where the first passed"
    # Replay the first run's steps up to the difference, to show both sides of it.
    again = run(seed, stop_at=step) if step <= len(history) else first
    message = (
        f"seed {seed} is not deterministic: two runs of it differ ({how}).\n"
        "A simulated test must depend on nothing but the seed: no wall-clock time, no "
        "unseeded random generator (draw from current_simulation().random), no threads, "
        "no state left by an earlier run, no ordering by id() or by the hash of a str.\n"
        f"replay it with:\n  {reproduce(seed)}\n"
        + _trace_lines(again.simulation.failure_trace(), "first run, up to the difference")
        + "\n"
        + _trace_lines(second.simulation.failure_trace(), "second run, up to the difference")
    )
    failure = SimulationFailure(
        message,
        seed=seed,
        reproduction=reproduce(seed),
        trace=second.simulation.failure_trace(),
        steps=second.steps,
        time=second.time,
    )
    if error is not None and not isinstance(error, _Diverged):
        failure.__cause__ = error
    raise failure
