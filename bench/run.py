"""Run the benchmark workloads on each runtime and print a table per workload.

    uv run python bench/run.py [--quick] [--repeat N] [--workload NAME ...]
                               [--runtime NAME ...] [--json FILE]

A case is one workload on one runtime. Every run of a case happens in a fresh
subprocess (``python -m bench.run --child WORKLOAD RUNTIME SIZE``, which prints its
metrics as one JSON line), so no run inherits another's heap or warmed-up caches.
The cases are interleaved - every case once per round, round after round - so that
slow drifts of a noisy machine spread over all of them, and the first round is a
warm-up whose results are discarded (not with ``--quick``). The garbage collector stays
on: it is part of what running tasks costs.

A runtime is an entry in `RUNTIMES`: a name and a `Runner`, the function that runs a
workload in the current process. Adding a backend is one line there.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as ``python bench/run.py``: make the ``bench`` package importable
    sys.path.insert(0, str(ROOT))

import anyrt  # noqa: E402
from bench.workloads import WORKLOADS, Metric, Metrics, Workload  # noqa: E402

Runner = Callable[[Workload, int], Metrics]
"""Runs one workload of the given size in the current process and returns its metrics."""


def anyrt_backend(
    backend: str, *, real_clock: dict[str, Any] | None = None, **options: Any
) -> Runner:
    """Run the anyrt version of a workload on the anyrt backend ``backend``.

    Args:
        backend: the registered backend name.
        real_clock: the extra options that give the backend a real clock, for workloads
            that measure real time (only needed by backends whose default clock is virtual).
        **options: the backend's options for every workload.
    """

    def run(workload: Workload, size: int) -> Metrics:
        extra = real_clock if workload.real_clock and real_clock else {}
        with anyrt.runtime(backend, **options, **extra) as rt:
            return rt.block_on(workload.on_anyrt(rt, size))

    return run


def raw_asyncio(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> Runner:
    """Run the plain-asyncio version of a workload on a new event loop."""

    def run(workload: Workload, size: int) -> Metrics:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(workload.on_asyncio(size))

    return run


RUNTIMES: dict[str, Runner] = {
    "single-threaded": anyrt_backend("single-threaded", real_clock={"clock": "real"}),
    "work-stealing-1": anyrt_backend("work-stealing", workers=1),
    "work-stealing-2": anyrt_backend("work-stealing", workers=2),
    "asyncio": raw_asyncio(),
    "uvloop": raw_asyncio(lambda: importlib.import_module("uvloop").new_event_loop()),
}

BASELINE = "asyncio"
"""The runtime every other one is compared with."""


# -- the child: one run of one case --------------------------------------------------------


def run_child(workload: str, runtime: str, size: int) -> None:
    """Run one case in this process and print its metrics as one JSON line."""
    metrics = RUNTIMES[runtime](WORKLOADS[workload], size)
    print(json.dumps(metrics))


class CaseFailed(RuntimeError):
    """A child process did not report its metrics."""


def run_case(workload: str, runtime: str, size: int) -> Metrics:
    """Run one case in a fresh subprocess and return its metrics."""
    command = [sys.executable, "-m", "bench.run", "--child", workload, runtime, str(size)]
    child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise CaseFailed(
            f"{workload} on {runtime} failed (exit {child.returncode}):\n{child.stderr}"
        )
    metrics: Metrics = json.loads(lines[-1])
    return metrics


# -- the parent: rounds of cases, then the tables ------------------------------------------

Results = dict[tuple[str, str], list[Metrics]]


def run_all(
    workloads: Sequence[Workload], runtimes: Sequence[str], *, repeat: int, quick: bool
) -> Results:
    """Run every case ``repeat`` times, interleaved, after one discarded warm-up round."""
    warmups = 0 if quick else 1
    rounds = warmups + repeat
    results: Results = {(w.name, r): [] for w in workloads for r in runtimes}
    total = rounds * len(results)
    done = 0
    for round_ in range(rounds):
        label = "warm-up" if round_ < warmups else f"round {round_ - warmups + 1}/{repeat}"
        for workload in workloads:
            size = workload.quick_size if quick else workload.size
            for runtime in runtimes:
                done += 1
                print(f"[{done}/{total}] {label}: {workload.name} on {runtime}", file=sys.stderr)
                metrics = run_case(workload.name, runtime, size)
                if round_ >= warmups:
                    results[workload.name, runtime].append(metrics)
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
        for metric in workload.metrics:
            better = "higher" if metric.higher_is_better else "lower"
            ratio = f"ours / {BASELINE}" if metric.higher_is_better else f"{BASELINE} / ours"
            out.append(
                f"  {metric.key} ({better} is better; vs {BASELINE} = {ratio}, > 1 is better)"
            )
            out.append(row("runtime", "median", "min - max", f"vs {BASELINE}"))
            runs = {runtime: results[workload.name, runtime] for runtime in runtimes}
            medians = {
                runtime: statistics.median(run[metric.key] for run in runs[runtime])
                for runtime in runtimes
            }
            for runtime in runtimes:
                values = [run[metric.key] for run in runs[runtime]]
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
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--child", nargs=3, metavar=("WORKLOAD", "RUNTIME", "SIZE"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        workload, runtime, size = args.child
        run_child(workload, runtime, int(size))
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
    try:
        results = run_all(workloads, runtimes, repeat=args.repeat, quick=args.quick)
    except CaseFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
                    "runs": results[workload.name, runtime],
                }
                for workload in workloads
                for runtime in runtimes
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
