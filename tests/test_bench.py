"""The benchmark runner works end to end; no speed is asserted (the machine is noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = (
    "spawn-join",
    "yield-storm",
    "ping-pong",
    "ping-pong-event",
    "timers",
    "tcp-echo",
    "tcp-echo-sharded",
    "tcp-echo-protocols",
    "hash",
    "hash-spread",
    "cross-thread",
)
RUNTIMES = (
    "single-threaded",
    "work-stealing-1",
    "work-stealing-2",
    "thread-per-core-1",
    "thread-per-core-2",
    "asyncio",
    "uvloop",
)
SOCKET_WORKLOADS = ("tcp-echo", "tcp-echo-sharded", "tcp-echo-protocols")
# A plain thread cannot wake single-threaded: it has no threads, and would report a deadlock.
SKIPPED = {("cross-thread", "single-threaded")}


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
        notes = [line for line in lines if line.startswith("  note: ")]
        if workload in SOCKET_WORKLOADS:
            assert notes == [
                "  note: single-threaded runs over its in-memory network, "
                "not real sockets: not comparable"
            ]
        else:
            assert notes == []
    (skipped,) = [line for line in found["cross-thread"] if line.split()[:1] == ["single-threaded"]]
    assert skipped.split() == ["single-threaded", "n/a", "needs", "threads", "-"]


def test_quick_run_writes_every_case_to_json(quick_run: tuple[str, dict[str, object]]) -> None:
    _, report = quick_run
    cases = report["cases"]
    assert isinstance(cases, list)
    assert {(case["workload"], case["runtime"]) for case in cases} == {
        (workload, runtime) for workload in WORKLOADS for runtime in RUNTIMES
    }
    for case in cases:
        assert "error" not in case, case["error"]
        if (case["workload"], case["runtime"]) in SKIPPED:
            assert case["runs"] == []
            assert case["skipped"] == "n/a: needs threads"
            continue
        assert "skipped" not in case
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--repeat", "0"), "positive integer"),
        (("--timeout", "0"), "positive number of seconds"),
        (("--timeout", "nan"), "positive number of seconds"),
    ],
)
def test_counts_must_be_positive(args: tuple[str, str], message: str) -> None:
    done = run_bench(*args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.fixture
def workloads(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    import bench.workloads

    return bench.workloads


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    import bench.run

    return bench.run


def test_a_hung_run_reports_where_its_threads_were(runner: ModuleType) -> None:
    # A billion cross-thread wake-ups cannot finish within the timeout; the child dumps
    # its threads' stacks at 90% of it (the last 10%, at most 10 s, is the margin).
    with pytest.raises(runner.CaseFailed) as caught:
        runner.run_case("cross-thread", "work-stealing-2", 10**9, timeout=4)
    message = str(caught.value)
    assert message.startswith("cross-thread on work-stealing-2 hung: no result after 3.6 s")
    assert "(most recent call first)" in message
    assert "bench/workloads.py" in message.replace("\\", "/")


def test_a_failed_case_is_reported_and_the_others_go_on(
    runner: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_case(workload: str, runtime: str, size: int, *, timeout: float) -> dict[str, float]:
        if runtime == "work-stealing-1":
            raise runner.CaseFailed(f"{workload} on {runtime} failed (exit 1):\nTraceback ...")
        return {"hashes/s": 100.0 if runtime == "asyncio" else 150.0}

    monkeypatch.setattr(runner, "run_case", run_case)
    hash_ = runner.WORKLOADS["hash"]
    runtimes = ["work-stealing-1", "work-stealing-2", "asyncio"]
    results = runner.run_all([hash_], runtimes, repeat=3, quick=True)
    failed = results["hash", "work-stealing-1"]
    assert (failed.runs, failed.error) == (
        [],
        "hash on work-stealing-1 failed (exit 1):\nTraceback ...",
    )
    assert len(results["hash", "work-stealing-2"].runs) == 3
    assert capsys.readouterr().err.count("error: hash on work-stealing-1 failed") == 1
    table = runner.format_tables(results, [hash_], runtimes, quick=True).splitlines()
    assert table[-3].split()[:2] == ["work-stealing-1", "FAILED"]
    assert table[-2].split()[-1] == "1.50x"


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
