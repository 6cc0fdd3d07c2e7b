"""Which installed backends a test can run on, and why the others are skipped."""

from __future__ import annotations

from functools import cache
from typing import Any

from .._exceptions import BackendNotFound
from .._registry import backend_factory, backends

__all__ = ["backend_params", "each_backend", "load_backend"]


@cache
def load_backend(name: str) -> tuple[Any, str]:
    """Return ``(factory, "")``, or ``(None, why)`` if ``name`` cannot be imported.

    A backend that is registered but whose package cannot be imported (uvloop on a
    free-threaded build, say) is skipped with that reason rather than failing the
    collection of every test.
    """
    try:
        return backend_factory(name), ""
    except BackendNotFound as exc:
        return None, str(exc)


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
