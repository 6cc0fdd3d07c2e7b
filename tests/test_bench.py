"""``anyrt bench`` works end to end; no speed is ever asserted (the machine is noisy).

The quick run in a subprocess covers the whole pipeline - child processes, rounds,
tables, JSON, chart - on a few runtimes (every runtime would take about a minute:
process start-up dominates a quick case). Every other cell of the matrix runs
in-process at a tiny size, and the full matrix is checked to be listed.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import anyrt
from anyrt._bench import cli, common, progress, report, runner, runtimes, workloads
from anyrt._cli import main
from anyrt.testing._params import load_backend

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = (
    "spawn-join",
    "yield-storm",
    "ping-pong",
    "ping-pong-event",
    "timers",
    "tcp-echo",
    "tcp-echo-timeout",
    "tcp-echo-sharded",
    "tcp-echo-protocols",
    "hash",
    "hash-spread",
    "cross-thread",
    "channel-fan",
    "parked-memory",
)
BUNDLED = (
    "single-threaded",
    "work-stealing-1",
    "work-stealing-2",
    "thread-per-core-1",
    "thread-per-core-2",
)
PEERS = {  # name: the modules it needs
    "asyncio": (),
    "uvloop": ("uvloop",),
    "trio": ("trio",),
    "anyio-asyncio": ("anyio",),
    "anyio-trio": ("anyio", "trio"),
}
QUICK_RUNTIMES = ("single-threaded", "asyncio", "trio")
#: `--plot` needs matplotlib (anyrt[plot]), which has no free-threaded build.
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(
    not HAVE_MATPLOTLIB, reason="matplotlib is not installed (pip install 'anyrt[plot]')"
)
SOCKET_WORKLOADS = ("tcp-echo", "tcp-echo-timeout", "tcp-echo-sharded", "tcp-echo-protocols")
# What the quick runtimes cannot run, and the reason the table gives.
SKIPPED = {
    ("cross-thread", "single-threaded"): "needs threads",
    ("tcp-echo-protocols", "trio"): "trio has no callback-protocol API",
}


def run_bench(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyrt", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
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


def rows(lines: list[str], runtime: str) -> list[str]:
    return [line for line in lines if line.split()[:1] == [runtime]]


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_BACKEND", raising=False)


# -- the quick run, in a subprocess, as a user runs it ---------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    plot = ("--plot", str(out / "chart.png")) if HAVE_MATPLOTLIB else ()
    done = run_bench(
        "--quick",
        "--repeat",
        "1",
        "--runtime",
        *QUICK_RUNTIMES,
        "--json",
        str(out / "results.json"),
        *plot,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, json.loads((out / "results.json").read_text()), out


def test_quick_run_prints_a_row_for_every_case(
    quick_run: tuple[str, str, dict[str, Any], Path],
) -> None:
    stdout, _, _, _ = quick_run
    assert "CPUs" in stdout.splitlines()[0]
    found = sections(stdout)
    assert tuple(found) == WORKLOADS
    for workload, lines in found.items():
        metrics = workloads.WORKLOADS[workload].metrics
        for runtime in QUICK_RUNTIMES:
            assert len(rows(lines, runtime)) == len(metrics), f"{workload} on {runtime}"
        # The baseline compares equal to itself on every metric.
        assert all(line.endswith("1.00x") for line in rows(lines, "asyncio"))
        in_memory = [line for line in lines if "in-memory network" in line]
        assert len(in_memory) == (workload in SOCKET_WORKLOADS), lines
    for (workload, runtime), reason in SKIPPED.items():
        (skipped,) = rows(found[workload], runtime)
        assert skipped.split()[1:4] == ["n/a", "-", "-"]
        assert reason in skipped


def test_quick_run_shows_progress_and_the_time_left(
    quick_run: tuple[str, str, dict[str, Any], Path],
) -> None:
    _, stderr, _, _ = quick_run
    lines = stderr.splitlines()
    total = len(WORKLOADS) * len(QUICK_RUNTIMES) - len(SKIPPED)
    assert lines[0] == f"[1/{total}] round 1/1: spawn-join on single-threaded (ETA --)"
    assert lines[1].startswith(f"[2/{total}] round 1/1: spawn-join on asyncio (ETA ")
    assert lines[1].endswith("s)")
    assert lines[-1].startswith(f"{total} runs of {total} cases in ")


def test_quick_run_writes_every_sample_and_the_machine_to_json(
    quick_run: tuple[str, str, dict[str, Any], Path],
) -> None:
    _, _, report_, _ = quick_run
    machine = report_["machine"]
    for key in ("python", "python_build", "free_threaded", "gil_enabled", "cpus", "platform"):
        assert key in machine
    assert machine["anyrt"] == anyrt.__version__
    settings = report_["settings"]
    assert (settings["quick"], settings["repeat"], settings["warmups"]) == (True, 1, 0)
    assert settings["sizes"] == {w: workloads.WORKLOADS[w].quick_size for w in WORKLOADS}
    assert set(report_["runtimes"]) == set(QUICK_RUNTIMES)
    cases = report_["cases"]
    assert [(c["workload"], c["runtime"]) for c in cases] == [
        (w, r) for w in WORKLOADS for r in QUICK_RUNTIMES
    ]
    for case in cases:
        assert "error" not in case, case["error"]
        key = (case["workload"], case["runtime"])
        if key in SKIPPED:
            assert case["runs"] == []
            assert SKIPPED[key] in case["skipped"]
            continue
        assert "skipped" not in case
        (run,) = case["runs"]
        assert set(run) == {m.key for m in workloads.WORKLOADS[case["workload"]].metrics}
        assert len(case["seconds"]) == 1


def test_timers_run_on_a_real_clock(quick_run: tuple[str, str, dict[str, Any], Path]) -> None:
    # On a virtual clock the sleeps would return at once, i.e. ~50 ms before their
    # deadlines on perf_counter, and the whole run would beat the 100 ms ideal.
    _, _, report_, _ = quick_run
    for case in report_["cases"]:
        if case["workload"] == "timers":
            (run,) = case["runs"]
            assert run["lateness p50 ms"] > -1, case
            assert run["overhead ms"] > -1, case


@needs_matplotlib
def test_quick_run_draws_the_chart(quick_run: tuple[str, str, dict[str, Any], Path]) -> None:
    from matplotlib.image import imread

    _, _, _, out = quick_run
    image = imread(out / "chart.png")
    height, width, channels = image.shape
    assert (height, channels) == (750, 4)
    assert width >= 1000
    # Bars, axes, labels: far more than a blank canvas's one colour.
    colours = {tuple(pixel) for pixel in image.reshape(-1, channels)[::7]}
    assert len(colours) > 50


# -- the whole matrix: listed, and every cell run in-process at a tiny size ------------------


def expected_runtimes() -> list[str]:
    names = list(BUNDLED)
    names += [
        f"anyrt-{backend}" if backend in PEERS else backend
        for backend in anyrt.backends()
        if backend not in ("single-threaded", "work-stealing", "thread-per-core")
        and load_backend(backend)[0] is not None
    ]
    names += [
        peer
        for peer, modules in PEERS.items()
        if all(importlib.util.find_spec(m) is not None for m in modules)
    ]
    return names


def test_every_installed_backend_and_peer_is_a_runtime() -> None:
    table = runtimes.runtimes()
    assert list(table.runners) == expected_runtimes()
    assert set(table.runners).isdisjoint(table.not_installed)
    assert set(table.runners) | set(table.not_installed) >= set(BUNDLED) | set(PEERS)


def test_help_lists_every_workload_and_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    listed = capsys.readouterr().out.split("\nworkloads")[1]
    names = [line.split()[0] for line in listed.splitlines()[1:] if line.startswith("  ")]
    # What cannot run here (uvloop on a free-threaded build) is listed last, saying why.
    assert names == [*WORKLOADS, *expected_runtimes(), *runtimes.runtimes().not_installed]


@pytest.mark.parametrize("runtime", expected_runtimes())
def test_every_workload_runs_on(runtime: str) -> None:
    runner_ = runtimes.runtimes().runners[runtime]
    for workload in workloads.WORKLOADS.values():
        if runner_.skip_reason(workload) is not None:
            continue
        metrics = runner_.run(workload, max(1, workload.quick_size // 10))
        assert set(metrics) == {metric.key for metric in workload.metrics}, workload.name
        for key, value in metrics.items():
            if key.endswith("/s") or key == "bytes/task":
                assert value > 0, (workload.name, metrics)


def test_every_peer_has_every_workload_it_does_not_call_unsupported() -> None:
    for family in ("asyncio", "trio", "anyio"):
        module = importlib.import_module(f"anyrt._bench.peer_{family}")
        expected = {w.name for w in workloads.WORKLOADS.values() if family not in w.unsupported}
        assert set(module.WORKLOADS) == expected, family


def test_a_virtual_clock_backend_gets_a_real_clock_for_real_time_workloads() -> None:
    single = runtimes.AnyrtBackend("single-threaded")
    with single._create(workloads.WORKLOADS["timers"]) as rt:
        assert "virtual-time" not in getattr(rt, "capabilities", ())
    with single._create(workloads.WORKLOADS["spawn-join"]) as rt:
        assert "virtual-time" in getattr(rt, "capabilities", ())


# -- options and mistakes ------------------------------------------------------------------


def test_selected_cases_sizes_and_warmups(tmp_path: Path) -> None:
    report_path = tmp_path / "results.json"
    done = run_bench(
        "--quick",
        "--repeat",
        "2",
        "--warmup",
        "1",
        "--workload",
        "ping-pong",
        "--runtime",
        "single-threaded",
        "--size",
        "ping-pong=30",
        "--json",
        str(report_path),
    )
    assert done.returncode == 0, done.stderr
    assert set(sections(done.stdout)) == {"ping-pong"}
    assert "ping-pong: two tasks pass a token 30 round trips" in done.stdout
    (case,) = json.loads(report_path.read_text())["cases"]
    assert (case["runtime"], case["size"], len(case["runs"]), len(case["warmups"])) == (
        "single-threaded",
        30,
        2,
        1,
    )
    # Without the asyncio baseline there is nothing to compare with.
    assert sections(done.stdout)["ping-pong"][-1].endswith("-")


@pytest.mark.parametrize(("option", "valid"), [("--workload", WORKLOADS), ("--runtime", BUNDLED)])
def test_unknown_name_lists_the_valid_ones(
    option: str, valid: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", option, valid[0], "no-such-thing"]) == 2
    captured = capsys.readouterr()
    assert f"unknown {option[2:]} 'no-such-thing'; choose from: " in captured.err
    for name in valid:
        assert name in captured.err
    assert captured.out == ""


def test_a_peer_that_is_not_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = runtimes.runtimes()
    table.runners.pop("uvloop", None)
    table.not_installed["uvloop"] = "uvloop not installed (pip install uvloop)"
    monkeypatch.setattr(cli, "runtimes", lambda: table)
    assert main(["bench", "--runtime", "uvloop"]) == 2
    assert "runtime 'uvloop' is unavailable: uvloop not installed (pip install uvloop)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--repeat", "0"), "positive integer"),
        (("--warmup", "-1"), "a count (0 or more)"),
        (("--timeout", "0"), "positive number of seconds"),
        (("--timeout", "nan"), "positive number of seconds"),
        (("--size", "ping-pong"), "expected --size WORKLOAD=N"),
        (("--size", "nope=3"), "expected --size WORKLOAD=N"),
        (("--size", "ping-pong=0"), "--size ping-pong: expected a positive integer"),
        (("--json", "/no/such/dir/r.json"), "--json /no/such/dir/r.json: the directory"),
        pytest.param(
            ("--plot", "c.png", "--runtime", "trio"),
            "--plot draws ratios to asyncio",
            marks=needs_matplotlib,
        ),
    ],
)
def test_usage_errors_exit_2_before_anything_runs(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["bench", "--plot", "chart.png"]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib, which is not installed: pip install 'anyrt[plot]'" in err


def test_the_old_script_still_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: anyrt bench")


# -- failures, hangs and interruptions -------------------------------------------------------


def test_a_hung_run_reports_where_its_threads_were() -> None:
    # A billion cross-thread wake-ups cannot finish within the timeout; the child dumps
    # its threads' stacks at 90% of it (the last 10%, at most 10 s, is the margin).
    with pytest.raises(runner.CaseFailed) as caught:
        runner.run_case("cross-thread", "work-stealing-2", 10**9, timeout=4)
    message = str(caught.value)
    assert message.startswith("cross-thread on work-stealing-2 hung: no result after 3.6 s")
    assert "(most recent call first)" in message
    assert 'anyrt/_bench/common.py", line' in message.replace("\\", "/")  # the sender thread


def test_a_failed_case_is_reported_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_case(workload: str, runtime: str, size: int, *, timeout: float) -> dict[str, float]:
        if runtime == "work-stealing-1":
            raise runner.CaseFailed(f"{workload} on {runtime} failed (exit 1):\nTraceback ...")
        return {"hashes/s": 100.0 if runtime == "asyncio" else 150.0}

    monkeypatch.setattr(runner, "run_case", run_case)
    hash_ = workloads.WORKLOADS["hash"]
    table = runtimes.runtimes().runners
    runners = {name: table[name] for name in ("work-stealing-1", "work-stealing-2", "asyncio")}
    results = runner.plan([hash_], runners, {"hash": 20})
    runner.run_all(results, repeat=3, warmups=1, interactive=False)
    failed = results["hash", "work-stealing-1"]
    assert (failed.runs, failed.error) == (
        [],
        "hash on work-stealing-1 failed (exit 1):\nTraceback ...",
    )
    assert len(results["hash", "work-stealing-2"].runs) == 3
    assert len(results["hash", "work-stealing-2"].warmups) == 1
    assert capsys.readouterr().err.count("error: hash on work-stealing-1 failed") == 1
    table_lines = report.format_tables(results, [hash_], runners).splitlines()
    assert table_lines[-3].split()[:2] == ["work-stealing-1", "FAILED"]
    assert table_lines[-2].split()[-1] == "1.50x"


def test_a_backend_that_cannot_load_fails_its_cases_up_front() -> None:
    class Broken:
        summary = "a backend whose module does not import"

        def run(self, workload: workloads.Workload, size: int) -> common.Metrics:
            raise AssertionError("never run")

        def skip_reason(self, workload: workloads.Workload) -> str | None:
            raise anyrt.BackendNotFound("the anyrt backend 'broken' cannot be imported")

        def note(self, workload: workloads.Workload) -> str | None:
            return None

    results = runner.plan([workloads.WORKLOADS["hash"]], {"broken": Broken()}, {"hash": 1})
    (result,) = results.values()
    assert not result.runnable
    assert result.error == "hash on broken failed: the anyrt backend 'broken' cannot be imported"


def test_an_interrupted_run_still_reports_what_it_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls: list[str] = []

    def run_case(workload: str, runtime: str, size: int, *, timeout: float) -> dict[str, float]:
        calls.append(runtime)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {"hashes/s": 100.0}

    monkeypatch.setattr(runner, "run_case", run_case)
    report_path = tmp_path / "r.json"
    args = ["bench", "--workload", "hash", "--runtime", "asyncio", "work-stealing-1"]
    assert main([*args, "--warmup", "0", "--json", str(report_path)]) == 130
    out = capsys.readouterr().out
    assert rows(sections(out)["hash"], "asyncio")[0].split()[1:] == [
        "100.0",
        "100.0",
        "-",
        "100.0",
        "1.00x",
    ]
    saved = json.loads(report_path.read_text())
    assert saved["settings"]["interrupted"] is True
    assert [len(case["runs"]) for case in saved["cases"]] == [1, 1]


# -- the pieces ----------------------------------------------------------------------------


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = io.StringIO()
    shown = progress.Progress(4, stream, interactive=True)
    shown.update(0, "round 1/1: hash on asyncio", None)
    shown.update(2, "round 1/1: hash on trio", 75.0)
    shown.message("error: something")
    shown.finish("4 runs of 4 cases in 2m 30s")
    text = stream.getvalue()
    assert "\r\x1b[K[>" in text
    assert "  0% 1/4 ETA --  round 1/1: hash on asyncio" in text
    assert " 50% 3/4 ETA 1m 15s  round 1/1: hash on trio" in text
    # A message goes above the bar, which is drawn again under it.
    assert "\r\x1b[Kerror: something\n[============" in text
    assert text.endswith("\r\x1b[K4 runs of 4 cases in 2m 30s\n")


def test_the_estimate_uses_each_cases_own_durations() -> None:
    a, b, c, d = ("w1", "r1"), ("w1", "r2"), ("w2", "r1"), ("w2", "r2")
    estimate = progress.Estimate([a, b, c, d, a, b, c, d])
    assert estimate.remaining(0) is None
    estimate.record(a, 1.0)
    # Nothing known about w2 yet: like every run so far.
    assert estimate.remaining(1) == 7 * 1.0
    estimate.record(b, 3.0)
    # b: its own 3; w2's cases: unknown, the mean of every run (2).
    assert estimate.remaining(2) == 2.0 + 2.0 + 1.0 + 3.0 + 2.0 + 2.0
    estimate.record(c, 10.0)
    # d: not run yet, like its workload w2 on the runtimes that ran it (c).
    assert estimate.remaining(3) == 10.0 + 1.0 + 3.0 + 10.0 + 10.0
    estimate.drop(b)
    assert estimate.remaining(3) == 10.0 + 1.0 + 10.0 + 10.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (45, "45s"), (125, "2m 05s"), (3725, "1h 02m")]
)
def test_durations_read_like_a_person_wrote_them(seconds: float, text: str) -> None:
    assert progress.format_duration(seconds) == text


def test_ratios_are_above_one_when_better() -> None:
    rate = workloads.Metric("tasks/s", higher_is_better=True)
    time = workloads.Metric("overhead ms", higher_is_better=False)
    assert report.ratio(rate, 200.0, 100.0) == 2.0
    assert report.ratio(time, 50.0, 100.0) == 2.0
    assert report.ratio(time, 0.0, 100.0) is None
    assert report.ratio(time, -1.0, 100.0) is None


def test_timer_delays_are_seeded_and_in_range() -> None:
    delays = common.timer_delays(1000)
    assert delays == common.timer_delays(1000)
    assert all(0 <= delay <= common.TIMER_MAX_DELAY for delay in delays)
    assert delays != common.timer_delays(1000, seed=common.TIMER_SEED + 1)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert common.percentile(values, 0.5) == 50
    assert common.percentile(values, 0.99) == 99
    assert common.percentile(values, 1.0) == 100
    assert common.percentile([7.0], 0.5) == 7


def test_workload_table() -> None:
    assert tuple(workloads.WORKLOADS) == WORKLOADS
    for workload in workloads.WORKLOADS.values():
        assert workload.quick_size == workload.size // 20
        assert workload.metrics
        assert set(workload.unsupported).isdisjoint(workload.peers)
