"""The benchmark runner works end to end; no speed is asserted (the machine is noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("spawn-join", "yield-storm", "ping-pong", "ping-pong-event", "timers")
RUNTIMES = ("single-threaded", "asyncio")


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sections(table: str) -> dict[str, list[str]]:
    """Split the printed tables into the lines under each ``name: description`` header."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in table.splitlines():
        name, colon, _ = line.partition(": ")
        if colon and name in WORKLOADS:
            current = found.setdefault(name, [])
        else:
            current.append(line)
    return found


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    report = tmp_path_factory.mktemp("bench") / "results.json"
    done = run_bench("--quick", "--repeat", "1", "--json", str(report))
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(report.read_text())


def test_quick_run_prints_a_row_for_every_case(quick_run: tuple[str, dict[str, object]]) -> None:
    stdout, _ = quick_run
    assert "CPUs" in stdout.splitlines()[0]
    found = sections(stdout)
    assert set(found) == set(WORKLOADS)
    for workload, lines in found.items():
        for runtime in RUNTIMES:
            rows = [line for line in lines if line.split()[:1] == [runtime]]
            assert rows, f"no row for {workload} on {runtime}:\n{stdout}"
        # The baseline compares equal to itself on every metric.
        assert all(line.endswith("1.00x") for line in lines if line.split()[:1] == ["asyncio"])


def test_quick_run_writes_every_case_to_json(quick_run: tuple[str, dict[str, object]]) -> None:
    _, report = quick_run
    cases = report["cases"]
    assert isinstance(cases, list)
    assert {(case["workload"], case["runtime"]) for case in cases} == {
        (workload, runtime) for workload in WORKLOADS for runtime in RUNTIMES
    }
    for case in cases:
        assert len(case["runs"]) == 1
        assert all(value > 0 for key, value in case["runs"][0].items() if key.endswith("/s"))


def test_timers_run_on_a_real_clock(quick_run: tuple[str, dict[str, object]]) -> None:
    # On a virtual clock the sleeps would return at once, i.e. ~50 ms before their
    # deadlines on perf_counter, and the whole run would beat the 100 ms ideal.
    _, report = quick_run
    cases = report["cases"]
    assert isinstance(cases, list)
    for case in cases:
        if case["workload"] == "timers":
            (run,) = case["runs"]
            assert run["lateness p50 ms"] > -1, case
            assert run["overhead ms"] > -1, case


def test_selected_cases_only(tmp_path: Path) -> None:
    report = tmp_path / "results.json"
    done = run_bench(
        "--quick",
        "--repeat",
        "2",
        "--workload",
        "ping-pong",
        "--runtime",
        "single-threaded",
        "--json",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    assert set(sections(done.stdout)) == {"ping-pong"}
    (case,) = json.loads(report.read_text())["cases"]
    assert (case["workload"], case["runtime"], len(case["runs"])) == (
        "ping-pong",
        "single-threaded",
        2,
    )
    # Without the asyncio baseline there is nothing to compare with.
    assert sections(done.stdout)["ping-pong"][-1].endswith("-")


@pytest.mark.parametrize(
    ("option", "valid"),
    [("--workload", WORKLOADS), ("--runtime", RUNTIMES)],
)
def test_unknown_name_lists_the_valid_ones(option: str, valid: tuple[str, ...]) -> None:
    done = run_bench(option, "no-such-thing")
    assert done.returncode == 2
    assert "no-such-thing" in done.stderr
    for name in valid:
        assert name in done.stderr
    assert done.stdout == ""


def test_repeat_must_be_positive() -> None:
    done = run_bench("--repeat", "0")
    assert done.returncode == 2
    assert "positive integer" in done.stderr


@pytest.fixture
def workloads(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    import bench.workloads

    return bench.workloads


def test_timer_delays_are_seeded_and_in_range(workloads: ModuleType) -> None:
    delays = workloads.timer_delays(1000)
    assert delays == workloads.timer_delays(1000)
    assert all(0 <= delay <= workloads.TIMER_MAX_DELAY for delay in delays)
    assert delays != workloads.timer_delays(1000, seed=workloads.TIMER_SEED + 1)


def test_percentile_is_nearest_rank(workloads: ModuleType) -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert workloads.percentile(values, 0.5) == 50
    assert workloads.percentile(values, 0.99) == 99
    assert workloads.percentile(values, 1.0) == 100
    assert workloads.percentile([7.0], 0.5) == 7


def test_quick_sizes_are_a_twentieth(workloads: ModuleType) -> None:
    for workload in workloads.WORKLOADS.values():
        assert workload.quick_size == workload.size // 20
    assert tuple(workloads.WORKLOADS) == WORKLOADS
