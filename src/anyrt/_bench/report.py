"""What a benchmark run reports: the machine, a table per workload, JSON, and a chart.

Every comparison is with the baseline (raw asyncio) and arranged so that **> 1 always
means better than it**: ours / baseline for rates, baseline / ours for times and bytes.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyrt

from .runner import CaseResult, Results
from .runtimes import BASELINE, Runner
from .workloads import Metric, Workload

PEER_DISTRIBUTIONS = ("anyrt-asyncio", "anyrt-trio", "uvloop", "trio", "anyio")
"""The distributions whose versions the machine description records, when installed."""


def machine() -> dict[str, Any]:
    """Describe the interpreter and machine the numbers come from."""
    gil_check = getattr(sys, "_is_gil_enabled", None)
    versions: dict[str, str] = {}
    for distribution in PEER_DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_check() if gil_check is not None else True,
        "cpus": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity is not None else os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "anyrt": anyrt.__version__,
        "versions": versions,
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the top of the output, e.g. ``CPython 3.11.7, GIL, on Linux..., 2 CPUs``."""
    threading = "free-threaded" if info["free_threaded"] else "with the GIL"
    if info["free_threaded"] and info["gil_enabled"]:
        threading += " (GIL re-enabled)"
    return (
        f"{info['python']} ({info['python_build']}) {threading}, on {info['platform']}, "
        f"{info['cpus']} CPUs, anyrt {info['anyrt']}"
    )


# -- the tables ----------------------------------------------------------------------------


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def ratio(metric: Metric, ours: float, baseline: float) -> float | None:
    """Compare ``ours`` with ``baseline`` so that > 1 means better; None if undefined."""
    top, bottom = (ours, baseline) if metric.higher_is_better else (baseline, ours)
    return top / bottom if bottom > 0 and top > 0 else None


def medians(results: Results, workload: Workload, metric: Metric) -> dict[str, float]:
    """Each runtime's median of ``metric`` over its measured runs (runtimes that ran)."""
    return {
        runtime: statistics.median(run[metric.key] for run in result.runs)
        for (name, runtime), result in results.items()
        if name == workload.name and result.runs
    }


def format_tables(
    results: Results,
    workloads: Sequence[Workload],
    runners: dict[str, Runner],
) -> str:
    """Return one table per workload: per runtime the median, min-max and ratio."""
    width = max(len("runtime"), *map(len, runners))

    def row(runtime: str, median: str, spread: str, versus: str, comment: str = "") -> str:
        line = f"  {runtime:<{width}}  {median:>12}  {spread:>25}  {versus:>9}"
        return f"{line}  {comment}" if comment else line

    out: list[str] = []
    for workload in workloads:
        size = next(iter(r.size for (w, _), r in results.items() if w == workload.name), 0)
        out.append(f"\n{workload.name}: {workload.description.format(n=size)}")
        out.extend(f"  note: {text}" for text in notes(workload, runners))
        for metric in workload.metrics:
            better = "higher" if metric.higher_is_better else "lower"
            how = f"ours / {BASELINE}" if metric.higher_is_better else f"{BASELINE} / ours"
            out.append(f"  {metric.key} ({better} is better; vs {BASELINE} = {how}, > 1 is better)")
            out.append(row("runtime", "median", "min - max", f"vs {BASELINE}"))
            found = medians(results, workload, metric)
            baseline = found.get(BASELINE)
            for runtime in runners:
                case = results[workload.name, runtime]
                if case.skipped is not None:
                    out.append(row(runtime, "n/a", "-", "-", case.skipped))
                elif not case.runs:
                    reason = "see the error above" if case.error else "no measured run"
                    out.append(row(runtime, "FAILED" if case.error else "-", "-", "-", reason))
                else:
                    values = [run[metric.key] for run in case.runs]
                    versus = None if baseline is None else ratio(metric, found[runtime], baseline)
                    out.append(
                        row(
                            runtime,
                            _number(found[runtime]),
                            f"{_number(min(values))} - {_number(max(values))}",
                            "-" if versus is None else f"{versus:.2f}x",
                        )
                    )
    return "\n".join(out)


def notes(workload: Workload, runners: dict[str, Runner]) -> list[str]:
    """What a reader must know about ``workload``'s rows: per runtime, then per peer."""
    found = [
        f"{name} {text}" for name, runner in runners.items() if (text := runner.note(workload))
    ]
    families: dict[str, list[str]] = {}
    for name, runner in runners.items():
        family = getattr(runner, "family", None)  # raw peers have one, backends not
        if isinstance(family, str) and family in workload.peers:
            families.setdefault(family, []).append(name)
    found += [f"{', '.join(names)}: {workload.peers[family]}" for family, names in families.items()]
    return found


# -- the JSON report -----------------------------------------------------------------------


def json_report(
    results: Results,
    workloads: Sequence[Workload],
    runners: dict[str, Runner],
    *,
    info: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Everything a run measured, every raw sample included, and where it was measured."""
    return {
        "machine": info,
        "settings": settings,
        "runtimes": {name: runner.summary for name, runner in runners.items()},
        "workloads": {
            workload.name: {
                "description": workload.description.format(n=results_size(results, workload)),
                "metrics": {
                    m.key: "higher" if m.higher_is_better else "lower" for m in workload.metrics
                },
            }
            for workload in workloads
        },
        "cases": [
            case_json(workload.name, runtime, results[workload.name, runtime])
            for workload in workloads
            for runtime in runners
        ],
    }


def results_size(results: Results, workload: Workload) -> int:
    """The size ``workload`` ran at in ``results``."""
    return next(r.size for (name, _), r in results.items() if name == workload.name)


def case_json(workload: str, runtime: str, result: CaseResult) -> dict[str, Any]:
    """One case of the JSON report."""
    case: dict[str, Any] = {
        "workload": workload,
        "runtime": runtime,
        "size": result.size,
        "runs": result.runs,
        "warmups": result.warmups,
        "seconds": [round(seconds, 4) for seconds in result.seconds],
    }
    if result.skipped is not None:
        case["skipped"] = result.skipped
    if result.error is not None:
        case["error"] = result.error
    return case


# -- the chart -----------------------------------------------------------------------------

RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
"""Where the chart's log axis is labelled, where in range."""

PLOT_INSTALL = "pip install 'anyrt[plot]'"
"""What to install for ``--plot``."""


def check_plotting() -> None:
    """Fail early, before minutes of measuring, if the chart cannot be drawn.

    Raises:
        ImportError: matplotlib is not installed; the message names the fix.
    """
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional
    except ImportError as exc:
        raise ImportError(
            f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL}"
        ) from exc


def plot(
    path: Path,
    results: Results,
    workloads: Sequence[Workload],
    runners: dict[str, Runner],
    *,
    title: str,
) -> None:
    """Draw a grouped bar chart of every runtime's ratios to the baseline, as a PNG.

    One group per workload metric, one bar per runtime other than the baseline, on a
    log scale around the baseline's 1. Missing bars are n/a or failed cases; hatched
    bars are not comparable (an in-memory network instead of sockets).
    """
    from matplotlib.figure import Figure  # noqa: PLC0415 - optional, and slow to import
    from matplotlib.patches import Patch  # noqa: PLC0415
    from matplotlib.ticker import NullFormatter  # noqa: PLC0415

    groups: list[tuple[str, Workload, Metric]] = []
    for workload in workloads:
        for metric in workload.metrics:
            label = (
                workload.name if len(workload.metrics) == 1 else f"{workload.name}\n{metric.key}"
            )
            groups.append((label, workload, metric))
    names = [name for name in runners if name != BASELINE]
    figure = Figure(figsize=(max(10.0, 1.1 * len(groups) + 3), 7.5), layout="constrained")
    axes = figure.subplots()
    colours = figure_colours(len(names))
    width = 0.85 / max(1, len(names))
    for index, name in enumerate(names):
        xs, heights, hatches = [], [], []
        for position, (_, workload, metric) in enumerate(groups):
            found = medians(results, workload, metric)
            if name not in found or BASELINE not in found:
                continue
            value = ratio(metric, found[name], found[BASELINE])
            if value is None:
                continue
            xs.append(position - 0.425 + width * (index + 0.5))
            heights.append(value)
            hatches.append("//" if runners[name].note(workload) else "")
        bars = axes.bar(xs, heights, width, label=name, color=colours[index])
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    axes.axhline(1.0, color="black", linewidth=1)
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    ticks = [t for t in RATIO_TICKS if low <= t <= high]
    axes.set_yticks(ticks, [f"{t:g}x" for t in ticks])
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks(range(len(groups)), [label for label, _, _ in groups], fontsize=8)
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.set_ylabel(f"vs {BASELINE} (> 1 is better; log scale)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
    labels.append("in-memory network:\nnot comparable")
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.savefig(path, dpi=100)


def figure_colours(count: int) -> list[Any]:
    """``count`` distinct colours, from matplotlib's qualitative palettes."""
    from matplotlib import colormaps  # noqa: PLC0415 - optional

    palette = [*colormaps["tab20"].colors, *colormaps["tab20b"].colors]  # type: ignore[attr-defined]
    return [palette[index % len(palette)] for index in range(count)]
