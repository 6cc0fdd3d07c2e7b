"""The ``anyrt bench`` command line: its options, and the run they describe.

`add_arguments` fills the ``bench`` sub-command's parser (``anyrt._cli`` owns the
program); `run` validates the names, measures, prints the tables and writes the
reports. A mistake on the command line raises `BenchUsageError` before anything runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .progress import format_duration
from .report import (
    check_plotting,
    describe_machine,
    format_tables,
    json_report,
    load_average,
    machine,
    plot,
)
from .runner import DEFAULT_TIMEOUT, Results, plan, run_all
from .runtimes import BASELINE, runtimes
from .workloads import WORKLOADS

DEFAULT_REPEAT = 5
"""Measured runs per case."""

DEFAULT_WARMUP = 1
"""Warm-up rounds before the measured ones (none with ``--quick``)."""

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class BenchUsageError(Exception):
    """A mistake on the ``anyrt bench`` command line (exit status 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count (0 or more), got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def epilog() -> str:
    """The workloads and runtimes, listed for ``--help``."""
    table = runtimes()
    width = max(map(len, [*WORKLOADS, *table.runners, *table.not_installed]))
    lines = ["workloads (at full size; --quick runs a twentieth):"]
    lines += [f"  {w.name:<{width}}  {w.description.format(n=w.size)}" for w in WORKLOADS.values()]
    lines += ["", "runtimes:"]
    lines += [f"  {name:<{width}}  {runner.summary}" for name, runner in table.runners.items()]
    lines += [
        f"  {name:<{width}}  not installed: {why}" for name, why in table.not_installed.items()
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``anyrt bench`` options to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = epilog()
    parser.add_argument(
        "--workload",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="workloads to run (default: all)",
    )
    parser.add_argument(
        "--runtime",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="runtimes to run (default: every installed one)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=DEFAULT_REPEAT,
        metavar="N",
        help=f"measured runs per case (default {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--warmup",
        type=_count,
        metavar="N",
        help=f"warm-up rounds, not measured (default {DEFAULT_WARMUP}; 0 with --quick)",
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="WORKLOAD=N",
        help="run WORKLOAD at size N instead of its default; repeatable",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a twentieth of the sizes, no warm-up: a smoke run (about a minute for every "
        "runtime on 2 CPUs; process start-up dominates)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"a run taking longer has hung (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write every sample and the machine here"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="also draw a bar chart of the ratios to asyncio (needs anyrt[plot])",
    )


def _select(
    kind: str, given: list[str] | None, valid: list[str], missing: dict[str, str]
) -> list[str]:
    if not given:
        return valid
    for name in given:
        if name in missing:
            raise BenchUsageError(f"{kind} {name!r} is unavailable: {missing[name]}")
        if name not in valid:
            raise BenchUsageError(f"unknown {kind} {name!r}; choose from: {', '.join(valid)}")
    return list(dict.fromkeys(given))


def _sizes(args: argparse.Namespace, workloads: list[str]) -> dict[str, int]:
    sizes = {
        name: WORKLOADS[name].quick_size if args.quick else WORKLOADS[name].size
        for name in workloads
    }
    for text in args.size:
        name, sep, value = text.partition("=")
        if not sep or name not in WORKLOADS:
            raise BenchUsageError(
                f"expected --size WORKLOAD=N with a workload from {', '.join(WORKLOADS)}, "
                f"got {text!r}"
            )
        try:
            sizes[name] = _positive_int(value)
        except argparse.ArgumentTypeError as exc:
            raise BenchUsageError(f"--size {name}: {exc}") from None
    return sizes


def _check_output(option: str, path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        raise BenchUsageError(f"{option} {path}: the directory {str(path.parent)!r} does not exist")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark that ``args`` describes; return the exit status.

    0 when every case ran, 1 when a case failed, 130 when interrupted (what was
    measured is still printed and written).

    Raises:
        BenchUsageError: an unknown name, a bad ``--size``, an output directory that
            does not exist, or ``--plot`` without matplotlib or without the baseline.
    """
    table = runtimes()
    workload_names = _select("workload", args.workload, list(WORKLOADS), {})
    runtime_names = _select("runtime", args.runtime, list(table.runners), table.not_installed)
    sizes = _sizes(args, workload_names)
    _check_output("--json", args.json)
    _check_output("--plot", args.plot)
    if args.plot is not None:
        try:
            check_plotting()
        except ImportError as exc:
            raise BenchUsageError(str(exc)) from None
        if BASELINE not in runtime_names:
            raise BenchUsageError(f"--plot draws ratios to {BASELINE}: add it to --runtime")
    warmups = args.warmup if args.warmup is not None else 0 if args.quick else DEFAULT_WARMUP
    workloads = [WORKLOADS[name] for name in workload_names]
    runners = {name: table.runners[name] for name in runtime_names}

    info = machine()
    print(describe_machine(info))
    print(
        f"{'quick' if args.quick else 'full'} sizes, {args.repeat} measured run(s) per case "
        f"after {warmups} warm-up round(s), each run in a fresh process"
    )
    for name, why in table.not_installed.items():
        print(f"note: {name} is left out: {why}")
    sys.stdout.flush()

    results: Results = plan(workloads, runners, sizes)
    load_before = load_average()
    started = time.time()
    interrupted = False
    try:
        run_all(results, repeat=args.repeat, warmups=warmups, timeout=args.timeout)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: the tables show what was measured", file=sys.stderr)
    elapsed = time.time() - started
    print(format_tables(results, workloads, runners))

    settings = {
        "quick": args.quick,
        "repeat": args.repeat,
        "warmups": warmups,
        "timeout": args.timeout,
        "sizes": sizes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(elapsed, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "interrupted": interrupted,
        "not_installed": table.not_installed,
    }
    if args.json is not None:
        report = json_report(results, workloads, runners, info=info, settings=settings)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        title = (
            f"{describe_machine(info)}\nmedians of {args.repeat} runs, {format_duration(elapsed)}"
        )
        plot(args.plot, results, workloads, runners, title=title)

    failed = [result.error for result in results.values() if result.error is not None]
    for error in failed:
        print(f"\nerror: {error}", file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else 0
