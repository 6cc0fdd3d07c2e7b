"""Choosing a runtime by name: `anyrt.backends`, `anyrt.runtime`, `anyrt.run`."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import anyrt
from anyrt import _registry

GROUP = "anyrt.backends"


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYRT_BACKEND", raising=False)


def register(monkeypatch: pytest.MonkeyPatch, *entries: EntryPoint) -> None:
    """Make the registry see exactly ``entries`` as installed entry points."""

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        assert group == GROUP
        return list(entries)

    monkeypatch.setattr(_registry, "entry_points", fake_entry_points)


@pytest.fixture
def fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party backend: a module on sys.path, registered under the name "fake"."""
    module_name = "anyrt_fake_backend_for_tests"
    (tmp_path / f"{module_name}.py").write_text(
        textwrap.dedent(
            """
            import anyrt

            created = []

            def create(*, flavour="plain"):
                created.append(flavour)
                return anyrt.SingleThreaded()

            create.capabilities = ("fake",)
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    register(monkeypatch, EntryPoint(name="fake", value=f"{module_name}:create", group=GROUP))
    yield module_name
    sys.modules.pop(module_name, None)


def test_backends_lists_single_threaded() -> None:
    names = anyrt.backends()
    assert isinstance(names, tuple)
    assert "single-threaded" in names
    assert list(names) == sorted(names)


def test_bundled_backend_is_found_without_installed_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(monkeypatch)  # a source checkout that was never installed
    assert anyrt.backends() == ("single-threaded", "thread-per-core", "work-stealing")
    with anyrt.runtime() as rt:
        assert rt.name == "work-stealing"


def test_default_backend_is_work_stealing() -> None:
    rt = anyrt.runtime()
    try:
        assert type(rt).__name__ == "WorkStealing"
        assert rt.name == "work-stealing"
    finally:
        rt.close()


def test_empty_env_var_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYRT_BACKEND", "")
    with anyrt.runtime() as rt:
        assert rt.name == "work-stealing"


def test_env_var_chooses_the_default(monkeypatch: pytest.MonkeyPatch, fake_backend: str) -> None:
    monkeypatch.setenv("ANYRT_BACKEND", "fake")
    with anyrt.runtime(flavour="from-env"):
        pass
    assert sys.modules[fake_backend].created == ["from-env"]


def test_env_var_naming_an_unknown_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYRT_BACKEND", "no-such-backend")
    with pytest.raises(anyrt.BackendNotFound, match="no-such-backend"):
        anyrt.runtime()


def test_explicit_name_wins_over_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYRT_BACKEND", "no-such-backend")
    with anyrt.runtime("single-threaded") as rt:
        assert rt.name == "single-threaded"


def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(anyrt.BackendNotFound) as info:
        anyrt.runtime("no-such-backend")
    message = str(info.value)
    assert "'no-such-backend'" in message
    assert "single-threaded" in message
    assert GROUP in message
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize("name", ["asyncio", "uvloop", "trio"])
def test_known_but_uninstalled_backend_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    register(monkeypatch)  # only the bundled backends, whatever is installed here
    with pytest.raises(anyrt.BackendNotFound) as info:
        anyrt.runtime(name)
    assert f"anyrt[{name}]" in str(info.value)
    assert "single-threaded" in str(info.value)


def test_registered_but_unimportable_backend_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = EntryPoint(name="trio", value="anyrt_no_such_module_xyz:Runtime", group=GROUP)
    register(monkeypatch, broken)
    assert "trio" in anyrt.backends()
    with pytest.raises(anyrt.BackendNotFound, match=r"cannot be imported") as info:
        anyrt.runtime("trio")
    assert "anyrt[trio]" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_unknown_option_names_the_options() -> None:
    with pytest.raises(TypeError) as info:
        anyrt.runtime("single-threaded", seed=1, bogus=2)
    message = str(info.value)
    assert "'bogus'" in message
    for option in ("clock", "seed", "error_handler"):
        assert option in message


def test_backend_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="str"):
        anyrt.runtime(42)  # type: ignore[arg-type]


def test_backend_options_are_the_constructor_keywords() -> None:
    options = _registry.backend_options("single-threaded")
    assert {"clock", "idle", "seed", "error_handler", "network_buffer"} <= set(options)
    assert options["seed"].default is None


def test_run_returns_the_result_and_closes_the_runtime() -> None:
    seen: list[anyrt.Runtime] = []
    events: list[str] = []

    async def forever(rt: anyrt.Runtime) -> None:
        try:
            await rt.sleep(3600 * 24)
        finally:
            events.append("background task cleaned up")

    async def main(rt: anyrt.Runtime) -> int:
        seen.append(rt)
        rt.spawn(forever(rt)).detach()
        await rt.sleep(1)
        return 42

    assert anyrt.run(main, backend="single-threaded", seed=1) == 42
    assert events == ["background task cleaned up"]
    (rt,) = seen
    assert rt.name == "single-threaded"
    with pytest.raises(RuntimeError, match="closed"):
        rt.block_on(anyrt.Event(rt).wait())


def test_run_passes_the_options() -> None:
    async def main(rt: anyrt.Runtime) -> bool:
        assert isinstance(rt, anyrt.SingleThreaded)
        return rt.seed_rng is not None

    assert anyrt.run(main, backend="single-threaded", seed=7) is True
    assert anyrt.run(main, backend="single-threaded") is False


def test_run_closes_the_runtime_when_main_raises() -> None:
    seen: list[anyrt.Runtime] = []

    async def main(rt: anyrt.Runtime) -> None:
        seen.append(rt)
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        anyrt.run(main)
    with pytest.raises(RuntimeError, match="closed"):
        seen[0].block_on(anyrt.Event(seen[0]).wait())


def test_run_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="async function"):
        anyrt.run(42)  # type: ignore[arg-type]


def test_third_party_backend_is_found_and_created(fake_backend: str) -> None:
    assert anyrt.backends() == ("fake", "single-threaded", "thread-per-core", "work-stealing")
    assert set(_registry.backend_options("fake")) == {"flavour"}

    async def main(rt: anyrt.Runtime) -> str:
        await rt.sleep(1)
        return "ran on the fake backend"

    assert anyrt.run(main, backend="fake", flavour="spicy") == "ran on the fake backend"
    assert sys.modules[fake_backend].created == ["spicy"]
    with pytest.raises(TypeError, match="flavour"):
        anyrt.runtime("fake", seed=1)
