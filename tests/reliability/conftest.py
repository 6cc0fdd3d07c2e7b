"""The reliability suite runs on every installed backend with an OS reactor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import anyrt
from anyrt.testing import backend_params


@pytest.fixture(params=backend_params("os-reactor"))
def os_runtime(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    """A runtime of each OS backend with its default options, closed after the test."""
    with anyrt.runtime(request.param) as rt:
        yield rt
