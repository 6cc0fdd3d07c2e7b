"""Running the cases: each run in a fresh child process, the runs interleaved in rounds.

A *case* is one workload on one runtime. Every run of a case is a fresh
``python -P -m anyrt._bench --child WORKLOAD RUNTIME SIZE`` process, which prints its
metrics as one JSON line, so no run inherits another's heap or warmed-up caches. The
cases are interleaved - every case once per round, round after round - so that slow
drifts of a noisy machine spread over all of them, and the first rounds are warm-ups
whose results are kept apart from the measured ones. The garbage collector stays on:
it is part of what running tasks costs.

A case the runtime cannot run is n/a. A run that crashes, or hangs (no result within
the timeout; the child then prints where each of its threads was), is reported at once,
its case is FAILED and not run again, and the other cases go on.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from anyrt._exceptions import BackendNotFound

from .common import Metrics
from .progress import Estimate, Progress, format_duration
from .runtimes import Runner, runtimes
from .workloads import WORKLOADS, Workload

DEFAULT_TIMEOUT = 300.0
"""Seconds one run of a case may take before it counts as hung."""

ENV_PADDING_MAX = 4096
"""Each child gets an environment variable of a random 0 to this many characters."""


# -- the child: one run of one case --------------------------------------------------------


def child_main(argv: Sequence[str] | None = None) -> int:
    """Run one case in this process and print its metrics as one JSON line.

    The command line is ``--child WORKLOAD RUNTIME SIZE [--dump-after SECONDS
    [--launched EPOCH]]``; with ``--dump-after``, a run still going that many seconds
    after it was launched (at ``time.time()`` EPOCH, default: now) prints the stack of
    every thread to standard error and exits, so that a hang says where it hangs.
    """
    parser = argparse.ArgumentParser(
        prog="python -m anyrt._bench",
        description="Run one benchmark case (the child process of 'anyrt bench').",
    )
    parser.add_argument("--child", nargs=3, required=True, metavar=("WORKLOAD", "RUNTIME", "SIZE"))
    parser.add_argument("--dump-after", type=float, metavar="SECONDS")
    parser.add_argument("--launched", type=float, metavar="EPOCH")
    args = parser.parse_args(argv)
    workload_name, runtime, size = args.child
    if args.dump_after is not None:
        # Counted from the launch, so that a slow start-up (a loaded machine) does not
        # push the dump past the parent's timeout.
        started = time.time() - args.launched if args.launched is not None else 0.0
        faulthandler.dump_traceback_later(max(0.1, args.dump_after - started), exit=True)
    runner = runtimes(probe=False).runners.get(runtime)
    workload = WORKLOADS.get(workload_name)
    if runner is None or workload is None:
        parser.error(f"unknown workload {workload_name!r} or runtime {runtime!r}")
    metrics = runner.run(workload, int(size))
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(metrics), flush=True)
    return 0


# -- the parent: one run of one case in a child process ------------------------------------


class CaseFailed(RuntimeError):
    """A child process did not report its metrics: it crashed or hung."""


def run_case(
    workload: str, runtime: str, size: int, *, timeout: float = DEFAULT_TIMEOUT
) -> Metrics:
    """Run one case in a fresh child process and return its metrics.

    Raises:
        CaseFailed: the child failed (with its stderr, i.e. the traceback) or did not
            finish within ``timeout`` seconds (with the stacks of its threads).
    """
    dump_after = timeout - min(10.0, timeout / 10)
    command = [sys.executable, "-P", "-m", "anyrt._bench", "--child", workload, runtime]
    command += [str(size), "--dump-after", repr(dump_after), "--launched", repr(time.time())]
    # The size of the environment shifts the initial stack, and with it the alignment of
    # everything after; on some machines that alone moves a run between two speeds (the
    # selector event loop's TCP echo: 2.5x). A random size per run turns that hidden,
    # fixed bias into spread that the min-max shows and the median absorbs.
    padding = "x" * random.randrange(ENV_PADDING_MAX + 1)
    env = {**os.environ, "ANYRT_BENCH_ENV_PADDING": padding}
    case = f"{workload} on {runtime}"
    try:
        child = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise CaseFailed(f"{case} hung: killed after {timeout:g} s\n{stderr}") from None
    lines = child.stdout.strip().splitlines()
    if child.returncode == 0 and lines:
        metrics: Metrics = json.loads(lines[-1])
        return metrics
    if child.stderr.startswith("Timeout ("):  # faulthandler's dump_traceback_later
        raise CaseFailed(
            f"{case} hung: no result after {dump_after:g} s; where each thread was:\n{child.stderr}"
        )
    raise CaseFailed(f"{case} failed (exit {child.returncode}):\n{child.stderr}")


# -- the parent: rounds of cases -----------------------------------------------------------


@dataclass
class CaseResult:
    """What the runs of one case gave."""

    size: int
    """The size every run of the case ran at."""
    runs: list[Metrics] = field(default_factory=list)
    """The metrics of each measured run."""
    warmups: list[Metrics] = field(default_factory=list)
    """The metrics of each warm-up run (not in the tables)."""
    seconds: list[float] = field(default_factory=list)
    """Each run's wall time, child process included, warm-ups first."""
    skipped: str | None = None
    """Why the case was not run (it is n/a), if it was not."""
    error: str | None = None
    """How its first failed run failed; a failed case is not run again."""

    @property
    def runnable(self) -> bool:
        """Whether the case is to be run: neither n/a nor failed up front."""
        return self.skipped is None and self.error is None


Results = dict[tuple[str, str], CaseResult]
"""Each case's result, by (workload name, runtime name)."""


def plan(
    workloads: Sequence[Workload], runners: dict[str, Runner], sizes: dict[str, int]
) -> Results:
    """The cases of every workload on every runtime, the ones that cannot run marked so.

    A backend that is registered but cannot be loaded makes its cases fail up front.
    """
    results: Results = {}
    for workload in workloads:
        for name, runner in runners.items():
            result = CaseResult(sizes[workload.name])
            try:
                result.skipped = runner.skip_reason(workload)
            except BackendNotFound as exc:
                result.error = f"{workload.name} on {name} failed: {exc}"
            results[workload.name, name] = result
    return results


def run_all(
    results: Results,
    *,
    repeat: int,
    warmups: int,
    timeout: float = DEFAULT_TIMEOUT,
    stream: TextIO | None = None,
    interactive: bool | None = None,
) -> None:
    """Run every runnable case of ``results`` ``warmups + repeat`` times, interleaved.

    Fills ``results`` in as it goes, so that an interrupted run keeps what it measured.
    A case that fails is reported at once, recorded and not run again; the others go on.
    Progress and the estimated time left go to ``stream`` (default: standard error).
    """
    stream = sys.stderr if stream is None else stream
    cases = [case for case, result in results.items() if result.runnable]
    rounds = warmups + repeat
    schedule = [(round_, case) for round_ in range(rounds) for case in cases]
    estimate = Estimate([case for _, case in schedule])
    progress = Progress(len(schedule), stream, interactive=interactive)
    started = time.perf_counter()
    for position, (round_, case) in enumerate(schedule):
        result = results[case]
        if result.error is not None:
            continue
        workload, runtime = case
        label = "warm-up" if round_ < warmups else f"round {round_ - warmups + 1}/{repeat}"
        progress.update(position, f"{label}: {workload} on {runtime}", estimate.remaining(position))
        run_started = time.perf_counter()
        try:
            metrics = run_case(workload, runtime, result.size, timeout=timeout)
        except CaseFailed as exc:
            result.error = str(exc)
            estimate.drop(case)
            progress.message(f"error: {exc}")
            continue
        finally:
            seconds = time.perf_counter() - run_started
            result.seconds.append(seconds)
            estimate.record(case, seconds)
        (result.warmups if round_ < warmups else result.runs).append(metrics)
    elapsed = format_duration(time.perf_counter() - started)
    progress.finish(f"{len(schedule)} runs of {len(cases)} cases in {elapsed}")
