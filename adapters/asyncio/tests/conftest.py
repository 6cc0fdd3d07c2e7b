"""Fixtures for the asyncio adapter's own tests (the conformance suite covers the rest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from anyrt_asyncio import AsyncioRuntime

# (name, factory) of every flavour of the adapter: real and virtual time, and uvloop.
FLAVOURS: dict[str, Callable[..., AsyncioRuntime]] = {
    "asyncio": AsyncioRuntime,
    "asyncio-virtual": lambda **kw: AsyncioRuntime(clock="virtual", **kw),
}
PARAMS = ["asyncio", "asyncio-virtual"]
try:
    from anyrt_asyncio._uvloop import UvloopRuntime
except ImportError as missing:  # uvloop has no free-threaded build: skipped, saying so
    PARAMS.append(
        pytest.param(
            "uvloop", marks=pytest.mark.skip(reason=f"uvloop cannot be imported: {missing}")
        )
    )
else:
    FLAVOURS["uvloop"] = UvloopRuntime
    PARAMS.append("uvloop")


@pytest.fixture(params=PARAMS)
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., AsyncioRuntime]]:
    """Create runtimes of one flavour; every one is closed after the test."""
    factory = FLAVOURS[request.param]
    made: list[AsyncioRuntime] = []

    def create(**options: Any) -> AsyncioRuntime:
        rt = factory(**options)
        made.append(rt)
        return rt

    yield create
    for rt in made:
        rt.close()


@pytest.fixture
def rt(make: Callable[..., AsyncioRuntime]) -> AsyncioRuntime:
    """One runtime of each flavour."""
    return make()
