"""The pytest side of simulation: the anyrt_simulate marker, its fixtures, ANYRT_SEED."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_replay_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_SEED", raising=False)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


SEEDS_SEEN = """
import pytest

import anyrt
from anyrt.testing import Simulation, current_simulation

SEEN = []


@pytest.mark.anyrt_simulate(seeds=7)
async def test_each_seed(runtime: anyrt.Runtime, simulation: Simulation) -> None:
    assert isinstance(runtime, anyrt.SingleThreaded)
    assert simulation is current_simulation()
    assert simulation.runtime is runtime
    SEEN.append(simulation.seed)
    await runtime.sleep(1)


@pytest.mark.anyrt_simulate(range(10, 13), check_determinism=False)
async def test_seed_range(simulation: Simulation) -> None:
    SEEN.append(simulation.seed)


def test_seen() -> None:
    assert SEEN == [0, 0, 1, 2, 3, 4, 5, 6, 10, 11, 12]
"""


def test_a_marked_test_runs_once_per_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeds=SEEDS_SEEN)
    result = _run(pytester, "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    # One item each, not one per backend.
    result.stdout.fnmatch_lines(["*::test_each_seed PASSED*", "*::test_seed_range PASSED*"])


FAILING = """
import pytest

import anyrt


@pytest.mark.anyrt_simulate(seeds=30)
async def test_order(runtime: anyrt.Runtime) -> None:
    config = {}

    async def load() -> None:
        await runtime.sleep(0.1)
        config["debug"] = False

    async def serve() -> bool:
        await runtime.sleep(0.1)
        return config["debug"]

    loader = runtime.spawn(load())
    server = runtime.spawn(serve())
    await loader
    await server
"""


def test_a_failing_seed_is_reported_with_its_replay_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fails=FAILING)
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SimulationFailure: seed * failed: KeyError: 'debug'",
            "*replay it with:",
            "*  ANYRT_SEED=* pytest test_fails.py::test_order",
            "*  (or pin it in the test: @pytest.mark.anyrt_simulate(seed=*))",
            "*(replayed once: the same failure at the same step)",
            "*last steps (oldest first):",
        ]
    )
    seed = next(
        line.split("ANYRT_SEED=")[1].split()[0]
        for line in result.stdout.lines
        if "ANYRT_SEED=" in line
    )
    # The seed replays from the command line...
    pytester.makepyfile(test_fails=FAILING)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANYRT_SEED", seed)
        again = _run(pytester, "test_fails.py::test_order")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines([f"*SimulationFailure: seed {seed} failed: KeyError: 'debug'"])
    # ...and from the marker; the seeds before it pass.
    pinned = FAILING.replace("anyrt_simulate(seeds=30)", f"anyrt_simulate(seed={seed})")
    pytester.makepyfile(test_fails=pinned)
    _run(pytester).assert_outcomes(failed=1)
    before = FAILING.replace("anyrt_simulate(seeds=30)", f"anyrt_simulate(seeds={seed})")
    pytester.makepyfile(test_fails=before)
    _run(pytester).assert_outcomes(passed=1 if int(seed) else 0, failed=0 if int(seed) else 1)


def test_anyrt_seed_runs_only_that_seed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_one="""
        import pytest

        SEEN = []

        @pytest.mark.anyrt_simulate(seeds=50)
        async def test_x(simulation) -> None:
            SEEN.append(simulation.seed)

        def test_seen() -> None:
            assert SEEN == [17, 17]
        """
    )
    monkeypatch.setenv("ANYRT_SEED", "17")
    _run(pytester, "-p", "no:randomly").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("test", "message"),
    [
        (
            "@pytest.mark.anyrt_simulate(seeds=2)\ndef test_sync(runtime):\n    pass\n",
            "*TypeError: @anyrt_simulate runs async tests: make test_sync an async def",
        ),
        (
            "@pytest.mark.anyrt_simulate(seedz=2)\nasync def test_typo(runtime):\n    pass\n",
            "*TypeError: @anyrt_simulate has no option 'seedz'; its options are: *",
        ),
        (
            "@pytest.mark.anyrt_simulate(2, seeds=3)\nasync def test_twice(runtime):\n    pass\n",
            "*TypeError: @anyrt_simulate takes the seeds as its one positional argument",
        ),
        (
            "@pytest.mark.anyrt_simulate(link=1)\nasync def test_link(runtime):\n    pass\n",
            "*TypeError: @anyrt_simulate(link=...) takes an anyrt.testing.Link",
        ),
        (
            "async def test_no_mark(simulation):\n    pass\n",
            "*the simulation fixture belongs to simulated tests: mark test_no_mark with*",
        ),
        (
            "@pytest.fixture\ndef client(runtime):\n    return runtime.now()\n\n"
            "@pytest.mark.anyrt_simulate(seeds=2)\nasync def test_fixture(client):\n    pass\n",
            "*RuntimeError: an @anyrt_simulate test gets a new runtime for each seed*",
        ),
    ],
)
def test_misuse_is_explained(pytester: pytest.Pytester, test: str, message: str) -> None:
    pytester.makepyfile(test_misuse=f"import pytest\n\n{test}")
    result = _run(pytester)
    assert result.ret != 0
    result.stdout.fnmatch_lines([message])


def test_the_marker_takes_a_link(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_link="""
        import pytest

        from anyrt.testing import Link

        @pytest.mark.anyrt_simulate(seeds=2, link=Link(latency=0.25, jitter=0))
        async def test_slow(simulation) -> None:
            simulation.host("db")
            assert simulation.link("main", "db").latency == 0.25
        """
    )
    _run(pytester).assert_outcomes(passed=1)
