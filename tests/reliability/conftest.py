"""The reliability suite runs on every installed backend with an OS reactor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import anyrt
from anyrt._registry import backend_factory


def os_backends() -> list[str]:
    """Every installed backend that runs on real sockets, with its default options."""
    return [
        name
        for name in anyrt.backends()
        if "os-reactor" in getattr(backend_factory(name), "capabilities", ())
    ]


@pytest.fixture(params=os_backends())
def os_runtime(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    """A runtime of each OS backend with its default options, closed after the test."""
    with anyrt.runtime(request.param) as rt:
        yield rt
