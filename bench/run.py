"""Run the benchmark workloads on each runtime and print a table per workload.

    uv run python bench/run.py [--quick] [--repeat N] [--workload NAME ...]
                               [--runtime NAME ...] [--timeout SECONDS] [--json FILE]

A case is one workload on one runtime. Every run of a case happens in a fresh
subprocess (``python -m bench.run --child WORKLOAD RUNTIME SIZE``, which prints its
metrics as one JSON line), so no run inherits another's heap or warmed-up caches.
The cases are interleaved - every case once per round, round after round - so that
slow drifts of a noisy machine spread over all of them, and the first round is a
warm-up whose results are discarded (not with ``--quick``). The garbage collector stays
on: it is part of what running tasks costs.

A case whose runtime lacks a capability the workload needs (``Workload.needs``) is
skipped and shown as n/a. A run that crashes or hangs (no result within
``--timeout``; the child then prints where each of its threads was) is reported on
stderr with its traceback, its case is shown as FAILED and not run again, the other
cases go on, and the exit status is 1.

A runtime is an entry in `RUNTIMES`: a name and a `Runner`, which runs a workload in
the current process and tells the runtime's capabilities. Adding a backend is one line
there.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as ``python bench/run.py``: make the ``bench`` package importable
    sys.path.insert(0, str(ROOT))

import anyrt  # noqa: E402
from anyrt._registry import backend_factory  # noqa: E402  (for a backend's capabilities)
from bench.workloads import WORKLOADS, Metric, Metrics, Workload  # noqa: E402


class Runner(Protocol):
    """Runs workloads in the current process on one runtime."""

    def __call__(self, workload: Workload, size: int) -> Metrics:
        """Run ``workload`` at ``size`` and return its metrics."""
        ...

    def capabilities(self) -> tuple[str, ...]:
        """What the runtime can do, in the words of the backends' ``capabilities``."""
        ...


@dataclass(frozen=True)
class AnyrtBackend:
    """Runs the anyrt version of a workload on an anyrt backend; see `anyrt_backend`."""

    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    real_clock: dict[str, Any] = field(default_factory=dict)

    def __call__(self, workload: Workload, size: int) -> Metrics:
        """Run ``workload`` at ``size`` on a fresh runtime and return its metrics."""
        extra = self.real_clock if workload.real_clock else {}
        with anyrt.runtime(self.backend, **self.options, **extra) as rt:
            return rt.block_on(workload.on_anyrt(rt, size))

    def capabilities(self) -> tuple[str, ...]:
        """The backend class's declared capabilities (the runtime is not created)."""
        return tuple(getattr(backend_factory(self.backend), "capabilities", ()))


@dataclass(frozen=True)
class RawAsyncio:
    """Runs the plain-asyncio version of a workload; see `raw_asyncio`."""

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None

    def __call__(self, workload: Workload, size: int) -> Metrics:
        """Run ``workload`` at ``size`` on a new event loop and return its metrics."""
        with asyncio.Runner(loop_factory=self.loop_factory) as runner:
            return runner.run(workload.on_asyncio(size))

    def capabilities(self) -> tuple[str, ...]:
        """An event loop wakes from any thread and polls real sockets."""
        return ("threads", "os-reactor")


def anyrt_backend(
    backend: str, *, real_clock: dict[str, Any] | None = None, **options: Any
) -> AnyrtBackend:
    """Run the anyrt version of a workload on the anyrt backend ``backend``.

    Args:
        backend: the registered backend name.
        real_clock: the extra options that give the backend a real clock, for workloads
            that measure real time (only needed by backends whose default clock is virtual).
        **options: the backend's options for every workload.
    """
    return AnyrtBackend(backend, options, real_clock or {})


def raw_asyncio(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> RawAsyncio:
    """Run the plain-asyncio version of a workload on a new event loop."""
    return RawAsyncio(loop_factory)


RUNTIMES: dict[str, Runner] = {
    "single-threaded": anyrt_backend("single-threaded", real_clock={"clock": "real"}),
    "work-stealing-1": anyrt_backend("work-stealing", workers=1),
    "work-stealing-2": anyrt_backend("work-stealing", workers=2),
    "thread-per-core-1": anyrt_backend("thread-per-core", cores=1),
    "thread-per-core-2": anyrt_backend("thread-per-core", cores=2),
    "asyncio": raw_asyncio(),
    "uvloop": raw_asyncio(lambda: importlib.import_module("uvloop").new_event_loop()),
}

BASELINE = "asyncio"
"""The runtime every other one is compared with."""

DEFAULT_TIMEOUT = 300.0
"""Seconds one run of a case may take before it counts as hung."""

ENV_PADDING_MAX = 4096
"""Each child gets an environment variable of a random 0 to this many characters."""


def skip_reason(workload: Workload, runtime: str) -> str | None:
    """Why ``runtime`` cannot run ``workload`` at all, or None if it can."""
    missing = [need for need in workload.needs if need not in RUNTIMES[runtime].capabilities()]
    return f"n/a: needs {', '.join(missing)}" if missing else None


def note(workload: Workload, runtime: str) -> str | None:
    """What a reader must know before comparing ``runtime``'s numbers, if anything."""
    if workload.sockets and "in-memory-network" in RUNTIMES[runtime].capabilities():
        return f"{runtime} runs over its in-memory network, not real sockets: not comparable"
    return None


# -- the child: one run of one case --------------------------------------------------------


def run_child(workload: str, runtime: str, size: int, dump_after: float | None) -> None:
    """Run one case in this process and print its metrics as one JSON line.

    With ``dump_after``, a run still going after that many seconds prints the stack of
    every thread to stderr and exits, so that a hang says where it hangs.
    """
    if dump_after is not None:
        faulthandler.dump_traceback_later(dump_after, exit=True)
    metrics = RUNTIMES[runtime](WORKLOADS[workload], size)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(metrics))


class CaseFailed(RuntimeError):
    """A child process did not report its metrics: it crashed or hung."""


def run_case(
    workload: str, runtime: str, size: int, *, timeout: float = DEFAULT_TIMEOUT
) -> Metrics:
    """Run one case in a fresh subprocess and return its metrics.

    Raises:
        CaseFailed: the child failed (with its stderr, i.e. the traceback) or did not
            finish within ``timeout`` seconds (with the stacks of its threads).
    """
    dump_after = timeout - min(10.0, timeout / 10)
    command = [sys.executable, "-m", "bench.run", "--child", workload, runtime, str(size)]
    command += ["--dump-after", repr(dump_after)]
    # The size of the environment shifts the initial stack, and with it the alignment of
    # everything after; on some machines that alone moves a run between two speeds (the
    # selector event loop's TCP echo: 2.5x). A random size per run turns that hidden,
    # fixed bias into spread that the min-max shows and the median absorbs.
    padding = "x" * random.randrange(ENV_PADDING_MAX + 1)
    env = {**os.environ, "ANYRT_BENCH_ENV_PADDING": padding}
    case = f"{workload} on {runtime}"
    try:
        child = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
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


# -- the parent: rounds of cases, then the tables ------------------------------------------


@dataclass
class CaseResult:
    """What the runs of one case gave."""

    runs: list[Metrics] = field(default_factory=list)
    """The metrics of each measured run."""
    skipped: str | None = None
    """Why the case was not run, if it was not."""
    error: str | None = None
    """How its first failed run failed; a failed case is not run again."""


Results = dict[tuple[str, str], CaseResult]


def run_all(
    workloads: Sequence[Workload],
    runtimes: Sequence[str],
    *,
    repeat: int,
    quick: bool,
    timeout: float = DEFAULT_TIMEOUT,
) -> Results:
    """Run every case ``repeat`` times, interleaved, after one discarded warm-up round.

    A case the runtime cannot run is skipped; a case that fails is reported on stderr
    at once, recorded, and not run again; the other cases go on.
    """
    warmups = 0 if quick else 1
    rounds = warmups + repeat
    results: Results = {
        (w.name, r): CaseResult(skipped=skip_reason(w, r)) for w in workloads for r in runtimes
    }
    total = rounds * sum(result.skipped is None for result in results.values())
    done = 0
    for round_ in range(rounds):
        label = "warm-up" if round_ < warmups else f"round {round_ - warmups + 1}/{repeat}"
        for workload in workloads:
            size = workload.quick_size if quick else workload.size
            for runtime in runtimes:
                result = results[workload.name, runtime]
                if result.skipped is not None:
                    continue
                done += 1
                if result.error is not None:
                    continue
                print(f"[{done}/{total}] {label}: {workload.name} on {runtime}", file=sys.stderr)
                try:
                    metrics = run_case(workload.name, runtime, size, timeout=timeout)
                except CaseFailed as exc:
                    result.error = str(exc)
                    print(f"error: {exc}", file=sys.stderr)
                    continue
                if round_ >= warmups:
                    result.runs.append(metrics)
    return results


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _ratio(metric: Metric, ours: float, baseline: float | None) -> str:
    """Compare with the baseline so that > 1 always means better than it."""
    if baseline is None:
        return "-"
    top, bottom = (ours, baseline) if metric.higher_is_better else (baseline, ours)
    return f"{top / bottom:.2f}x" if bottom > 0 else "-"


def format_tables(
    results: Results, workloads: Sequence[Workload], runtimes: Sequence[str], *, quick: bool
) -> str:
    """Return one table per workload: per runtime the median, min-max and ratio."""
    width = max(len("runtime"), *map(len, runtimes))

    def row(runtime: str, median: str, spread: str, versus: str) -> str:
        return f"  {runtime:<{width}}  {median:>12}  {spread:>25}  {versus:>10}"

    out: list[str] = []
    for workload in workloads:
        size = workload.quick_size if quick else workload.size
        out.append(f"\n{workload.name}: {workload.description.format(n=size)}")
        out.extend(f"  note: {text}" for runtime in runtimes if (text := note(workload, runtime)))
        cases = {runtime: results[workload.name, runtime] for runtime in runtimes}
        for metric in workload.metrics:
            better = "higher" if metric.higher_is_better else "lower"
            ratio = f"ours / {BASELINE}" if metric.higher_is_better else f"{BASELINE} / ours"
            out.append(
                f"  {metric.key} ({better} is better; vs {BASELINE} = {ratio}, > 1 is better)"
            )
            out.append(row("runtime", "median", "min - max", f"vs {BASELINE}"))
            medians = {
                runtime: statistics.median(run[metric.key] for run in case.runs)
                for runtime, case in cases.items()
                if case.runs
            }
            for runtime, case in cases.items():
                if case.skipped is not None:
                    out.append(row(runtime, "n/a", case.skipped.removeprefix("n/a: "), "-"))
                elif not case.runs:
                    out.append(row(runtime, "FAILED", "see the error on stderr", "-"))
                else:
                    values = [run[metric.key] for run in case.runs]
                    out.append(
                        row(
                            runtime,
                            _number(medians[runtime]),
                            f"{_number(min(values))} - {_number(max(values))}",
                            _ratio(metric, medians[runtime], medians.get(BASELINE)),
                        )
                    )
    return "\n".join(out)


def environment() -> dict[str, Any]:
    """Describe the machine and interpreter the numbers come from."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "anyrt": anyrt.__version__,
    }


# -- the command line ----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark anyrt's runtimes against asyncio.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a twentieth of the sizes, no warm-up round"
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=5,
        metavar="N",
        help="measured runs per case (default 5)",
    )
    parser.add_argument(
        "--workload",
        nargs="+",
        action="extend",
        choices=list(WORKLOADS),
        metavar="NAME",
        help=f"workloads to run (default all: {', '.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--runtime",
        nargs="+",
        action="extend",
        choices=list(RUNTIMES),
        metavar="NAME",
        help=f"runtimes to run (default all: {', '.join(RUNTIMES)})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"a run taking longer has hung (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--child", nargs=3, metavar=("WORKLOAD", "RUNTIME", "SIZE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--dump-after", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        workload, runtime, size = args.child
        run_child(workload, runtime, int(size), args.dump_after)
        return 0
    workloads = [WORKLOADS[name] for name in dict.fromkeys(args.workload or WORKLOADS)]
    runtimes = list(dict.fromkeys(args.runtime or RUNTIMES))
    env = environment()
    print(
        f"{env['python']} on {env['platform']}, {env['cpus']} CPUs, anyrt {env['anyrt']}\n"
        f"{'quick' if args.quick else 'full'} sizes, {args.repeat} measured run(s) per case"
        f"{'' if args.quick else ' after 1 warm-up'}, each run in a fresh process",
        flush=True,
    )
    results = run_all(
        workloads, runtimes, repeat=args.repeat, quick=args.quick, timeout=args.timeout
    )
    print(format_tables(results, workloads, runtimes, quick=args.quick))
    if args.json:
        report = {
            "environment": env,
            "quick": args.quick,
            "repeat": args.repeat,
            "cases": [
                {
                    "workload": workload.name,
                    "runtime": runtime,
                    "size": workload.quick_size if args.quick else workload.size,
                    "runs": result.runs,
                    **({"skipped": result.skipped} if result.skipped is not None else {}),
                    **({"error": result.error} if result.error is not None else {}),
                }
                for workload in workloads
                for runtime in runtimes
                for result in [results[workload.name, runtime]]
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [result.error for result in results.values() if result.error is not None]
    for error in failed:
        print(f"\nerror: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
