"""Which installed backends a test can run on, and why the others are skipped."""

from __future__ import annotations

from functools import cache
from typing import Any

from .._registry import backends
from .._registry import load_backend as _load_backend

__all__ = ["backend_params", "each_backend", "load_backend"]


#: `anyrt`'s own check, remembered: a test module asks it of each backend many times.
#: A backend that is registered but cannot be imported (uvloop on a free-threaded build)
#: is skipped with the reason rather than failing the collection of every test.
load_backend = cache(_load_backend)


def backend_params(*capabilities: str) -> list[Any]:
    """Every installed backend with all of ``capabilities``, as `pytest.param` values.

    For ``@pytest.mark.parametrize("backend", anyrt.testing.backend_params("os-reactor"))``
    in a test that makes its runtimes itself. A backend that cannot be imported is a
    skipped param that says why.
    """
    import pytest  # noqa: PLC0415 - the rest of anyrt.testing runs without pytest

    params = []
    for name in backends():
        factory, why = load_backend(name)
        if factory is None:
            params.append(pytest.param(name, id=name, marks=pytest.mark.skip(reason=why)))
        elif all(c in getattr(factory, "capabilities", ()) for c in capabilities):
            params.append(pytest.param(name, id=name))
    return params


def each_backend() -> list[Any]:
    """Every installed backend once, with its default options, for ``anyrt_backend``.

    ``@pytest.mark.parametrize("anyrt_backend", each_backend())`` runs a costly test
    (a long stress run, say) once per backend instead of once per conformance variant;
    the ``runtime`` fixture then makes each one.
    """
    import pytest  # noqa: PLC0415 - the rest of anyrt.testing runs without pytest

    return [
        pytest.param((param.values[0], {}), id=param.id, marks=param.marks)
        for param in backend_params()
    ]
