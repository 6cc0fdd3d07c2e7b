"""Fixtures of the conformance suite (the ``runtime`` fixture comes from the plugin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import anyrt
from anyrt.testing._plugin import BackendConfig


@pytest.fixture
def make_runtime(anyrt_backend: BackendConfig) -> Iterator[Callable[..., anyrt.Runtime]]:
    """Create runtimes of the backend under test, with extra options (``error_handler=``).

    Every runtime it made is closed after the test.
    """
    name, options = anyrt_backend
    made: list[anyrt.Runtime] = []

    def make(**extra: Any) -> anyrt.Runtime:
        rt = anyrt.runtime(name, **{**options, **extra})
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
