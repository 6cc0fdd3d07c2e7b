"""The progress of a benchmark run on standard error, with an estimate of the time left.

On a terminal it is one bar redrawn in place; anywhere else (a pipe, a CI log) it is a
plain line per run, so that logs stay readable. The estimate of the time left comes
from the durations of the runs seen so far (see `Estimate`).
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Sequence
from typing import TextIO

BAR_WIDTH = 24
"""How many characters the bar itself takes on a terminal."""


def format_duration(seconds: float) -> str:
    """Format a duration for people: ``45s``, ``12m 05s``, ``1h 02m``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class Estimate:
    """The time left in a fixed schedule of runs, from the durations seen so far.

    A case (workload, runtime) already run is expected to take its mean so far; one not
    run yet, the mean of its workload on the runtimes that ran it (the workload, more
    than the runtime, sets how long a run takes), else the mean of every run.

    Args:
        schedule: the case of each run, in the order they will happen.
    """

    def __init__(self, schedule: Sequence[tuple[str, str]]) -> None:
        self._schedule = list(schedule)
        self._durations: dict[tuple[str, str], list[float]] = {}
        self._dropped: set[tuple[str, str]] = set()

    def record(self, case: tuple[str, str], seconds: float) -> None:
        """Note that one run of ``case`` took ``seconds``."""
        self._durations.setdefault(case, []).append(seconds)

    def drop(self, case: tuple[str, str]) -> None:
        """``case`` will not run again (it failed): its runs left cost nothing."""
        self._dropped.add(case)

    def remaining(self, position: int) -> float | None:
        """Seconds left for the runs from ``position`` on; None before any run finished."""
        if not self._durations:
            return None
        by_workload: dict[str, list[float]] = {}
        for (workload, _), runs in self._durations.items():
            by_workload.setdefault(workload, []).extend(runs)
        typical = statistics.fmean(s for runs in by_workload.values() for s in runs)
        workload_means = {name: statistics.fmean(runs) for name, runs in by_workload.items()}
        case_means = {case: statistics.fmean(runs) for case, runs in self._durations.items()}
        return sum(
            case_means.get(case, workload_means.get(case[0], typical))
            for case in self._schedule[position:]
            if case not in self._dropped
        )


class Progress:
    """Shows which run is going, how far along the whole is, and the time left.

    Args:
        total: how many runs there are.
        stream: where to write (standard error).
        interactive: redraw one line in place; default: whether ``stream`` is a
            terminal (and ``TERM`` is not ``dumb``).
    """

    def __init__(self, total: int, stream: TextIO, *, interactive: bool | None = None) -> None:
        if interactive is None:
            interactive = stream.isatty() and os.environ.get("TERM") != "dumb"
        self._total = total
        self._stream = stream
        self._interactive = interactive
        self._line = ""

    def update(self, done: int, label: str, remaining: float | None) -> None:
        """Show that run ``done + 1`` of the total, described by ``label``, is starting."""
        eta = "ETA --" if remaining is None else f"ETA {format_duration(remaining)}"
        counter = f"{done + 1}/{self._total}"
        if not self._interactive:
            self._stream.write(f"[{counter}] {label} ({eta})\n")
            self._stream.flush()
            return
        filled = BAR_WIDTH * done // max(1, self._total)
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * (BAR_WIDTH - filled - 1)
        percent = 100 * done // max(1, self._total)
        self._draw(f"[{bar[:BAR_WIDTH]}] {percent:3d}% {counter} {eta}  {label}")

    def message(self, text: str) -> None:
        """Write ``text`` on lines of its own, above the bar."""
        if self._interactive and self._line:
            self._stream.write("\r\x1b[K")
        self._stream.write(text.rstrip("\n") + "\n")
        if self._interactive and self._line:
            self._stream.write(self._line)
        self._stream.flush()

    def finish(self, text: str) -> None:
        """Replace the bar with ``text``, a closing line."""
        if self._interactive and self._line:
            self._stream.write("\r\x1b[K")
            self._line = ""
        self._stream.write(text + "\n")
        self._stream.flush()

    def _draw(self, line: str) -> None:
        width = shutil.get_terminal_size().columns - 1
        self._line = line[:width]
        self._stream.write("\r\x1b[K" + self._line)
        self._stream.flush()
