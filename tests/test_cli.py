"""The ``anyrt`` command line, and the demo it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import anyrt
from anyrt import _registry
from anyrt._cli import main
from anyrt._demo import DemoResult, KeyValueServer, LineReader, demo


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_BACKEND", raising=False)


@pytest.fixture
def app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """Write an application module into a fresh current directory; return its name."""
    name = "anyrt_cli_app_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import anyrt

            runtimes = []

            async def main(rt):
                runtimes.append(rt)
                await rt.sleep(5)
                return f"hello from {rt.name} at t={rt.now()}"

            async def clock_and_seed(rt):
                return f"{type(rt.clock).__name__} seeded={rt.seed_rng is not None}"

            async def nothing(rt):
                await rt.sleep(0)

            async def fails(rt):
                await rt.sleep(1)
                raise ZeroDivisionError("boom from the app")

            def not_async(rt):
                return 1

            answer = 42
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


# -- anyrt backends -----------------------------------------------------------------


def test_backends_describes_each_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    headers = [block.splitlines()[0] for block in out.strip().split("\n\n")]
    assert headers == [
        f"{name} (default)" if name == "work-stealing" else name for name in anyrt.backends()
    ]
    assert "class: anyrt._single_threaded:SingleThreaded" in out
    assert "class: anyrt._work_stealing:WorkStealing" in out
    assert "workers: int | None = None" in out
    assert "seed: int | None = None" in out
    assert "network_buffer: int = 65536" in out
    assert "capabilities: deterministic, virtual-time, in-memory-network, deadlock-detection" in out


def test_backends_marks_the_default_from_the_env_var(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYRT_BACKEND", "single-threaded")
    assert main(["backends"]) == 0
    assert "single-threaded (default, from $ANYRT_BACKEND)" in capsys.readouterr().out

    monkeypatch.setenv("ANYRT_BACKEND", "no-such-backend")
    assert main(["backends"]) == 0
    captured = capsys.readouterr()
    assert "(default" not in captured.out
    assert "'no-such-backend' is not installed" in captured.err


def test_backends_shows_third_party_and_broken_backends(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [
        EntryPoint(name="broken", value="anyrt_no_such_module_xyz:Runtime", group=_registry.GROUP),
        EntryPoint(name="plain", value="anyrt:SingleThreaded", group=_registry.GROUP),
    ]
    monkeypatch.setattr(_registry, "entry_points", lambda *, group: entries)
    assert main(["backends"]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [
        "broken",
        "plain",
        "single-threaded",
        "thread-per-core",
        "work-stealing (default)",
    ]
    assert (
        "unavailable: the anyrt backend 'broken' is registered but cannot be imported" in blocks[0]
    )
    assert "class: anyrt._single_threaded:SingleThreaded" in blocks[1]


# -- anyrt run ----------------------------------------------------------------------


def test_run_prints_the_result(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:main", "--backend", "single-threaded"]) == 0
    assert capsys.readouterr().out == "hello from single-threaded at t=5.0\n"
    (rt,) = sys.modules[app].runtimes
    with pytest.raises(RuntimeError, match="closed"):
        rt.block_on(anyrt.Event(rt).wait())


def test_run_restores_sys_path(app: str) -> None:
    before = list(sys.path)
    assert main(["run", f"{app}:nothing"]) == 0
    assert sys.path == before


def test_run_prints_nothing_for_none(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:nothing", "--backend", "single-threaded"]) == 0
    assert capsys.readouterr() == ("", "")


def test_run_parses_options(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    # seed=1 is a literal (an int); clock=real is not, so it stays the string "real".
    st = ["--backend", "single-threaded"]
    argv = ["run", f"{app}:clock_and_seed", *st, "--opt", "seed=1", "--opt", "clock=real"]
    assert main(argv) == 0
    assert capsys.readouterr().out == "MonotonicClock seeded=True\n"
    assert main(["run", f"{app}:clock_and_seed", *st, "--opt", "clock='virtual'"]) == 0
    assert capsys.readouterr().out == "VirtualClock seeded=False\n"


def test_run_lets_the_function_s_exception_propagate(app: str) -> None:
    with pytest.raises(ZeroDivisionError, match="boom from the app"):
        main(["run", f"{app}:fails"])


@pytest.mark.parametrize("target", ["nocolon", "mod:", ":main", "mod:main-2", "a b:c"])
def test_run_bad_target_syntax(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", target]) == 2
    assert error_line(capsys) == (
        f"anyrt run: error: expected MODULE:FUNC (for example app:main), got {target!r}"
    )


def test_run_module_not_importable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "anyrt_no_such_module_xyz:main"]) == 2
    assert error_line(capsys) == (
        "anyrt run: error: cannot import module 'anyrt_no_such_module_xyz': "
        "No module named 'anyrt_no_such_module_xyz'"
    )


def test_run_missing_attribute(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:missing"]) == 2
    assert error_line(capsys) == f"anyrt run: error: module {app!r} has no attribute 'missing'"


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("answer", "is not callable"),
        ("not_async", "must be an async function taking the runtime; calling it returned int"),
    ],
)
def test_run_not_an_async_function(
    app: str, capsys: pytest.CaptureFixture[str], func: str, message: str
) -> None:
    assert main(["run", f"{app}:{func}"]) == 2
    assert message in error_line(capsys)


def test_run_unknown_backend(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:main", "--backend", "no-such-backend"]) == 2
    line = error_line(capsys)
    assert line.startswith("anyrt run: error: no anyrt backend is named 'no-such-backend'")
    assert f"Installed backends: {', '.join(anyrt.backends())}" in line


def test_run_uninstalled_backend_names_the_package(
    app: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registry, "entry_points", lambda *, group: [])
    assert main(["run", f"{app}:main", "--backend", "trio"]) == 2
    assert "anyrt[trio]" in error_line(capsys)


def test_run_unknown_option(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:main", "--opt", "bogus=1"]) == 2
    line = error_line(capsys)
    assert "has no option 'bogus'" in line
    assert "workers" in line


def test_run_bad_option_value(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{app}:main", "--backend", "single-threaded", "--opt", "seed='x'"]) == 2
    assert "seed must be an int" in error_line(capsys)
    assert main(["run", f"{app}:main", "--opt", "workers=0"]) == 2
    assert "workers must be at least 1" in error_line(capsys)


@pytest.mark.parametrize("opt", ["seed", "=1", "1x=2", "a-b=3"])
def test_run_bad_opt_syntax(app: str, capsys: pytest.CaptureFixture[str], opt: str) -> None:
    assert main(["run", f"{app}:main", f"--opt={opt}"]) == 2
    assert error_line(capsys) == (
        f"anyrt run: error: expected --opt KEY=VALUE (for example seed=1), got {opt!r}"
    )


# -- anyrt demo, and the top level ---------------------------------------------------------


def test_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "3", "--requests", "4"]) == 0
    out = capsys.readouterr().out
    assert "anyrt demo on the 'work-stealing' backend" in out
    assert "key-value server listening on 127.0.0.1:" in out
    assert "final counter: hits = 12 (= 3 clients x 4 requests, none lost)" in out
    assert "total: 12 requests, 42 commands" in out


def test_demo_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "no-such-backend"]) == 2
    assert error_line(capsys).startswith("anyrt demo: error: no anyrt backend is named")


@pytest.mark.parametrize("argv", [["demo", "--clients", "0"], ["demo", "--requests", "x"], []])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"anyrt {anyrt.__version__}\n"


def _subprocess_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "ANYRT_BACKEND"}


def test_python_m_anyrt_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anyrt", "demo"],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "final counter: hits = 100 (= 5 clients x 20 requests, none lost)" in done.stdout
    assert "client-4: 20 requests" in done.stdout


def test_python_m_anyrt_run_failure_exits_1(app: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anyrt", "run", f"{app}:fails"],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert done.stderr.rstrip().endswith("ZeroDivisionError: boom from the app")


# -- the demo itself ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_demo_counts_every_request(seed: int | None) -> None:
    lines: list[str] = []

    async def main_(rt: anyrt.Runtime) -> DemoResult:
        return await demo(rt, clients=4, requests=7, out=lines.append)

    result = anyrt.run(main_, backend="single-threaded", seed=seed)
    assert result.backend == "single-threaded"
    assert result.clients == 4
    assert result.requests == result.hits == 28
    # 3 commands per request and a QUIT per client, then the checker's GET, GET, QUIT.
    assert result.commands == 28 * 3 + 4 + 3
    assert [s.name for s in result.summaries] == [f"client-{i}" for i in range(4)]
    assert all(s.requests == 7 for s in result.summaries)
    assert max(s.last_hit for s in result.summaries) == 28
    # 21 commands at 1 ms of simulated work each, on the virtual clock.
    assert result.elapsed >= 0.021
    assert f"key-value server listening on {result.address[0]}:{result.address[1]}" in lines
    assert "  checker  > GET no-such-key  < NIL" in lines


def test_demo_rejects_empty_workloads() -> None:
    async def main_(rt: anyrt.Runtime) -> DemoResult:
        return await demo(rt, clients=0, out=lambda line: None)

    with pytest.raises(ValueError, match="at least one client"):
        anyrt.run(main_)


def test_key_value_commands() -> None:
    async def main_(rt: anyrt.Runtime) -> list[str]:
        server = KeyValueServer(rt)
        commands = [
            "GET k",
            "SET k hello world",
            "GET k",
            "INCR k",
            "INCR n",
            "incr n",
            "DEL k",
            "",
        ]
        return [await server.execute(command) for command in commands]

    assert anyrt.run(main_) == [
        "NIL",
        "OK",
        "hello world",
        "ERR value is not an integer",
        "1",
        "2",
        "ERR bad command 'DEL k'",
        "ERR bad command ''",
    ]


class ChunkedStream:
    """A `ByteStream` stand-in whose receive returns the given chunks, then EOF."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_line_reader_handles_partial_and_batched_lines() -> None:
    async def main_(rt: anyrt.Runtime) -> list[str | None]:
        stream = ChunkedStream(b"SE", b"T a 1\r\nGET a\nGE", b"T b\n", b"tail")
        reader = LineReader(stream)  # type: ignore[arg-type]
        return [await reader.readline() for _ in range(5)]

    assert anyrt.run(main_) == ["SET a 1", "GET a", "GET b", "tail", None]


def test_line_reader_rejects_overlong_lines() -> None:
    async def main_(rt: anyrt.Runtime) -> None:
        reader = LineReader(ChunkedStream(b"x" * 10, b"y" * 10), max_line=15)  # type: ignore[arg-type]
        await reader.readline()

    with pytest.raises(ValueError, match="longer than 15 bytes"):
        anyrt.run(main_)


def test_demo_request_timeout_fails_the_run_and_shuts_down() -> None:
    # Each command takes 1 ms of simulated server work; a request is 3 commands.
    async def main_(rt: anyrt.Runtime) -> DemoResult:
        return await demo(rt, clients=2, requests=3, timeout=0.002, out=lambda line: None)

    with pytest.raises(ExceptionGroup) as info:
        anyrt.run(main_)
    assert info.value.exceptions
    assert all(isinstance(exc, TimeoutError) for exc in info.value.exceptions)
