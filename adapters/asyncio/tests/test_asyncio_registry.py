"""Selecting the backends by name, and what happens when uvloop is not installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import anyrt_asyncio
from anyrt_asyncio import AsyncioRuntime

import anyrt


def test_both_backends_are_registered() -> None:
    assert {"asyncio", "uvloop"} <= set(anyrt.backends())
    # uvloop has no free-threaded build: there, only the registration is checked.
    usable = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    for name in usable:
        with anyrt.runtime(name) as rt:
            assert isinstance(rt, AsyncioRuntime)
            assert rt.name == name


def test_uvloop_missing_raises_backend_not_found_naming_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["uvloop"] = None  # as if uvloop were not installed
        import anyrt
        try:
            anyrt.runtime("uvloop")
        except anyrt.BackendNotFound as exc:
            print(type(exc.__cause__).__name__)
            print(exc)
        with anyrt.runtime("asyncio") as rt:  # the asyncio backend does not need it
            print(rt.name)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    cause, message, asyncio_name = result.stdout.splitlines()
    assert cause == "ModuleNotFoundError"
    assert "'uvloop' is registered but cannot be imported" in message
    assert "pip install 'anyrt[uvloop]'" in message
    assert asyncio_name == "asyncio"


def test_the_core_imports_neither_asyncio_nor_the_adapter() -> None:
    script = (
        "import sys, anyrt\n"
        "print(sorted(m for m in ('asyncio', 'anyrt_asyncio', 'trio') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_public_surface() -> None:
    assert anyrt_asyncio.__all__ == (
        "AsyncioListener",
        "AsyncioReceiver",
        "AsyncioRuntime",
        "AsyncioSender",
        "AsyncioStream",
        "AsyncioTask",
        "BorrowedRuntime",
        "__version__",
        "compat",
        "current",
    )
    assert anyrt_asyncio.compat.__all__ == ("run",)
    for name in anyrt_asyncio.__all__:
        assert getattr(anyrt_asyncio, name) is not None
        if name not in ("__version__", "compat"):
            assert getattr(anyrt_asyncio, name).__doc__
