"""The lease example: the simulator finds its planted race, replays it, and passes the fix."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from anyrt.testing import SimulationFailure, simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"anyrt_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def leases() -> ModuleType:
    return _load("leases")


@pytest.fixture(autouse=True)
def _no_replay_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_SEED", raising=False)


def test_the_planted_race_is_found_within_200_seeds_and_replays(leases: ModuleType) -> None:
    with pytest.raises(SimulationFailure) as caught:
        simulate(leases.test_naive_leases, seeds=range(200))
    failure = caught.value
    assert "split brain" in str(failure)
    assert failure.reproduction == f"simulate(test_naive_leases, seed={failure.seed})"
    assert "(replayed once: the same failure at the same step)" in str(failure)
    # The trace shows the partition that set it up.
    assert any(entry.task is None and "partition" in entry.text for entry in failure.trace)
    with pytest.raises(SimulationFailure) as again:
        simulate(leases.test_naive_leases, seed=failure.seed)
    assert str(again.value.__cause__) == str(failure.__cause__)
    assert again.value.trace == failure.trace


def test_the_fixed_nodes_pass_2000_seeds(leases: ModuleType) -> None:
    stats = simulate(leases.test_fixed_leases, seeds=range(2000))
    assert stats.seeds == 2000


def test_the_examples_run_as_scripts() -> None:
    for script, expected in [
        ("leases.py", "the fixed nodes pass 20 seeds"),
        ("bench_simulation.py", "leases (naive): fails at seed"),
    ]:
        args = [sys.executable, str(EXAMPLES / script), "20"]
        result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def _definitions(source: str) -> dict[str, str]:
    """The source of each top-level class and function of ``source``, by name."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            found[node.name] = "\n".join(lines[first - 1 : node.end_lineno])
    return found


def test_the_tutorial_shows_the_examples_code() -> None:
    example = _definitions((EXAMPLES / "leases.py").read_text(encoding="utf-8"))
    page = (EXAMPLES.parent / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", page, re.MULTILINE | re.DOTALL)
    shown = {}
    for block in blocks:
        shown.update(_definitions(block))
    names = ["Lines", "LeaseServer", "Ledger", "Node", "FixedNode", "nemesis", "cluster"]
    for name in [*names, "test_naive_leases", "test_fixed_leases"]:
        assert shown.get(name) == example[name], f"docs/testing.md shows another {name}"
