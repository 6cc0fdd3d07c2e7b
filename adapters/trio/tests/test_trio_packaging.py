"""The package around the backend: its entry point, its surface, and bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyrt_trio
import pytest
import trio

import anyrt


def test_public_surface() -> None:
    assert anyrt_trio.__all__ == ("TrioRuntime", "TrioTask", "compat", "current")
    assert anyrt_trio.compat.__all__ == ("run",)
    for name in anyrt_trio.__all__:
        assert getattr(anyrt_trio, name).__doc__


def test_the_options_are_the_constructor_keywords() -> None:
    assert sorted(anyrt._registry.backend_options("trio")) == ["clock", "error_handler"]
    with pytest.raises(TypeError, match="has no option 'workers'"):
        anyrt.runtime("trio", workers=2)


def test_without_trio_installed_the_backend_says_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["trio"] = None  # as if trio were not installed
        import anyrt
        try:
            anyrt.runtime("trio")
        except anyrt.BackendNotFound as exc:
            print(exc)
        else:
            raise SystemExit("no BackendNotFound")
        with anyrt.runtime("work-stealing", workers=1) as rt:  # the core does not need it
            print(rt.block_on(rt.spawn_blocking(sum, [1, 2])))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    message, core_works = result.stdout.strip().splitlines()
    assert "the anyrt backend 'trio' is registered but cannot be imported" in message
    assert "needs the trio package" in message
    assert "pip install 'anyrt[trio]'" in message
    assert core_works == "3"


def test_the_core_imports_neither_trio_nor_asyncio() -> None:
    script = "import sys, anyrt; print(sorted({'trio', 'asyncio'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["work-stealing", "single-threaded"])
def test_trio_code_on_a_native_backend_names_the_compat_shim(backend: str) -> None:
    # Trio code whose first suspension is one of trio's traps reaches the native task
    # loop, which names the shim. (Most trio APIs look up the current trio task first
    # and fail earlier with trio's own "must be called from async context".)
    async def trio_only() -> None:
        for _ in range(3):
            await trio.lowlevel.checkpoint()

    with anyrt.runtime(backend) as rt, pytest.raises(TypeError) as info:
        rt.block_on(trio_only())
    assert "awaited a trio operation" in str(info.value)
    assert "anyrt_trio.compat.run(runtime, async_fn, *args)" in str(info.value)
