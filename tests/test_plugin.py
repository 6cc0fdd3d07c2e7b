"""The pytest plugin: backend selection, ids, async tests, capability skips."""

from __future__ import annotations

import glob

import pytest

import anyrt
from anyrt._registry import backend_factory
from anyrt.testing._params import load_backend
from anyrt.testing._plugin import backend_id, parse_backend_spec

pytest_plugins = ["pytester"]


def _default_ids() -> list[str]:
    """The ids the runtime fixture gets by default, of the backends that can be imported."""
    return [
        backend_id((name, dict(options)))
        for name in anyrt.backends()
        if load_backend(name)[0] is not None
        for options in getattr(backend_factory(name), "conformance_options", ({},))
    ]


#: The installed backends that cannot be imported (uvloop on free-threaded builds): the
#: plugin skips each, saying why.
UNLOADABLE = [name for name in anyrt.backends() if load_backend(name)[0] is None]


def _passed(test: str, backend: str) -> str:
    """The ``-v`` line of a passed test, as an fnmatch pattern."""
    return f"*::{glob.escape(f'{test}[{backend}]')} PASSED*"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Without hypothesis's plugin: it re-imports hypothesis (a second) in every inner run.
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


RECORD_BACKEND = """
def test_backend(anyrt_backend):
    name, options = anyrt_backend
    assert isinstance(name, str)
    assert isinstance(options, dict)
"""


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("single-threaded", ("single-threaded", {})),
        ("single-threaded:seed=1", ("single-threaded", {"seed": 1})),
        (
            "work-stealing: workers=4 , pin=True,ratio=0.5,tag=None",
            ("work-stealing", {"workers": 4, "pin": True, "ratio": 0.5, "tag": None}),
        ),
        ("single-threaded:clock=real", ("single-threaded", {"clock": "real"})),
        ("single-threaded:clock='real'", ("single-threaded", {"clock": "real"})),
        ("x:a=1,", ("x", {"a": 1})),
    ],
)
def test_parse_backend_spec(spec: str, expected: tuple[str, dict[str, object]]) -> None:
    assert parse_backend_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", ":seed=1", "single-threaded:seed", "x:1a=2"])
def test_parse_backend_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_backend_spec(spec)


def test_backend_id() -> None:
    assert backend_id(("single-threaded", {})) == "single-threaded"
    assert backend_id(("single-threaded", {"seed": 1})) == "single-threaded[seed=1]"
    assert backend_id(("x", {"clock": "real", "n": 2})) == "x[clock=real,n=2]"


# -- selecting backends -------------------------------------------------------------------


def test_default_is_every_installed_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECORD_BACKEND)
    result = _run(pytester, "-v")
    ids = _default_ids()
    result.assert_outcomes(passed=len(ids), skipped=len(UNLOADABLE))
    result.stdout.fnmatch_lines([_passed("test_backend", test_id) for test_id in ids])


def test_option_narrows_to_one_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECORD_BACKEND)
    result = _run(pytester, "-v", "--anyrt-backend", "single-threaded")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["anyrt backends: single-threaded", _passed("test_backend", "single-threaded")]
    )


def test_options_reach_the_runtime(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import anyrt

        def test_options(anyrt_backend, runtime):
            assert anyrt_backend == ("single-threaded", {"seed": 3, "clock": "real"})
            assert runtime.seed_rng is not None
            assert isinstance(runtime.clock, anyrt.MonotonicClock)
        """
    )
    result = _run(pytester, "-v", "--anyrt-backend", "single-threaded:seed=3,clock=real")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*test_options[[]single-threaded[[]seed=3,clock=real[]][]] PASSED*"]
    )


def test_option_is_repeatable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECORD_BACKEND)
    result = _run(
        pytester,
        "-v",
        "--anyrt-backend",
        "single-threaded:seed=1",
        "--anyrt-backend",
        "single-threaded:seed=2",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            _passed("test_backend", "single-threaded[seed=1]"),
            _passed("test_backend", "single-threaded[seed=2]"),
        ]
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-backend", "*no anyrt backend is named 'no-such-backend'*"),
        ("single-threaded:bogus=1", "*has no option 'bogus'*"),
        ("single-threaded:seed", "*expected key=value*"),
    ],
)
def test_bad_specs_are_usage_errors(pytester: pytest.Pytester, spec: str, message: str) -> None:
    pytester.makepyfile(RECORD_BACKEND)
    result = _run(pytester, "--anyrt-backend", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_tests_without_anyrt_fixtures_are_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plain():
            pass
        """
    )
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_plain PASSED*"])


def test_an_explicit_parametrisation_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("anyrt_backend", [("single-threaded", {"seed": 5})])
        def test_chosen(runtime):
            assert runtime.seed_rng is not None
        """
    )
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=1)


# -- running tests ---------------------------------------------------------------------------


def test_async_tests_run_on_the_runtime(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sniffio

        async def test_passes(runtime):
            await runtime.sleep(0)
            assert sniffio.current_async_library() == "anyrt"

        async def test_fails(runtime):
            await runtime.sleep(0)
            assert False, "the body really ran"

        async def test_with_another_fixture(runtime, tmp_path):
            await runtime.sleep(0)
            assert tmp_path.exists()
        """
    )
    result = _run(pytester, "--anyrt-backend", "single-threaded")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the body really ran*"])


def test_the_runtime_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        seen = []

        def test_first(runtime):
            seen.append(runtime)

        def test_second(runtime):
            assert runtime is not seen[0]
            coro = runtime.sleep(0)
            with pytest.raises(RuntimeError):
                seen[0].spawn(coro)
            coro.close()
        """
    )
    result = _run(pytester, "--anyrt-backend", "single-threaded")
    result.assert_outcomes(passed=2)


def test_anyrt_requires_skips_backends_lacking_a_capability(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.anyrt_requires("no-such-capability")
        def test_needs_more(runtime):
            raise AssertionError("must not run")

        @pytest.mark.anyrt_requires("virtual-time", "deterministic")
        def test_satisfied(runtime):
            pass
        """
    )
    result = _run(pytester, "-rs", "--strict-markers", "--anyrt-backend", "single-threaded")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*'single-threaded' backend lacks the capability 'no-such-capability'*"]
    )


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.anyrt_requires(*capabilities)*"])


def test_the_conformance_suite_runs_by_module_name(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "no:hypothesispytest",
        "--pyargs",
        "anyrt.testing.conformance.test_spawn",
        "--anyrt-backend",
        "single-threaded",
    )
    assert result.ret == pytest.ExitCode.OK
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 10
    assert set(outcomes) == {"passed"}


# -- virtual_runtime -----------------------------------------------------------------------


def _virtual_ids() -> list[str]:
    """The ids virtual_runtime gets by default: each installed backend with virtual time.

    Every conformance variant that does not ask for real time, with ``clock="virtual"``.
    """
    ids = ["single-threaded[clock=virtual]", "single-threaded[seed=1,clock=virtual]"]
    ids += [
        f"{name}[clock=virtual]"
        for name in ("asyncio", "trio", "uvloop")
        if name in anyrt.backends() and name not in UNLOADABLE
    ]
    return sorted(ids)


VIRTUAL_HOUR = """
import time

import anyrt


async def test_an_hour_passes_at_once(virtual_runtime):
    assert "virtual-time" in virtual_runtime.capabilities
    started = time.monotonic()
    start = virtual_runtime.now()
    async with anyrt.TaskGroup(virtual_runtime) as tg:
        tg.spawn(virtual_runtime.sleep(3600))
        tg.spawn(virtual_runtime.sleep(60))
    assert virtual_runtime.now() - start >= 3600
    assert time.monotonic() - started < 30
"""


def test_virtual_runtime_runs_on_every_backend_with_virtual_time(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(VIRTUAL_HOUR)
    result = _run(pytester, "-v")
    ids = _virtual_ids()
    # Not work-stealing, thread-per-core; a backend that cannot be imported is skipped.
    result.assert_outcomes(passed=len(ids), skipped=len(UNLOADABLE))
    result.stdout.fnmatch_lines(
        [_passed("test_an_hour_passes_at_once", test_id) for test_id in ids]
    )


def test_virtual_runtime_follows_the_chosen_backends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VIRTUAL_HOUR)
    result = _run(
        pytester,
        "-v",
        "--anyrt-backend",
        "single-threaded:seed=4",
        "--anyrt-backend",
        "work-stealing",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [_passed("test_an_hour_passes_at_once", "single-threaded[seed=4,clock=virtual]")]
    )


@pytest.mark.parametrize(
    "spec",
    [
        "work-stealing",
        pytest.param(
            "uvloop:clock=real",
            marks=pytest.mark.skipif("uvloop" in UNLOADABLE, reason="uvloop cannot be imported"),
        ),
        "single-threaded:clock=real",
        "asyncio:clock=real",
    ],
)
def test_virtual_runtime_skips_when_no_chosen_backend_has_virtual_time(
    pytester: pytest.Pytester, spec: str
) -> None:
    pytester.makepyfile(VIRTUAL_HOUR)
    result = _run(pytester, "-rs", "--anyrt-backend", spec)
    result.assert_outcomes(skipped=1)
    shown = glob.escape(backend_id(parse_backend_spec(spec)))
    result.stdout.fnmatch_lines([f"*none of the chosen anyrt backends ({shown}) runs on virtual*"])


def test_virtual_runtime_skips_a_runtime_without_virtual_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        import anyrt


        @pytest.mark.parametrize(
            "anyrt_virtual_backend", [("single-threaded", {"clock": anyrt.MonotonicClock()})]
        )
        def test_real(virtual_runtime):
            raise AssertionError("must not run")
        """
    )
    result = _run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*lacks the capability 'virtual-time'*"])


def test_virtual_runtime_and_runtime_together_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_both(runtime, virtual_runtime):
            pass
        """
    )
    result = _run(pytester, "--anyrt-backend", "single-threaded")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*takes both runtime (or anyrt_backend) and virtual_runtime*"])
