"""Choosing a runtime: `runtime()`, `run()`, `backends()` and the entry-point registry.

Backends register under the entry-point group ``anyrt.backends``; the bundled ones
are registered the same way in anyrt's own metadata. The table below only lets an
uninstalled-but-known name say what to install, and keeps the bundled backends usable
from a source checkout that was never installed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Coroutine
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, TypeVar, cast

from ._exceptions import BackendNotFound
from ._protocols import Runtime

__all__ = ["DEFAULT_BACKEND", "backend_factory", "backends", "run", "runtime"]

T = TypeVar("T")

GROUP: Final = "anyrt.backends"
DEFAULT_BACKEND: Final = "work-stealing"

_BUNDLED: Final = {
    "single-threaded": "anyrt._single_threaded:SingleThreaded",
    "work-stealing": "anyrt._work_stealing:WorkStealing",
    "thread-per-core": "anyrt._thread_per_core:ThreadPerCore",
}

# Backends that live in other distributions: what to install to get them.
_KNOWN_ELSEWHERE: Final = {
    "asyncio": "anyrt-asyncio (pip install 'anyrt[asyncio]')",
    "uvloop": "anyrt-asyncio with uvloop (pip install 'anyrt[uvloop]')",
    "trio": "anyrt-trio (pip install 'anyrt[trio]')",
}


def _entry_points() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    for name, value in _BUNDLED.items():
        found.setdefault(name, EntryPoint(name=name, value=value, group=GROUP))
    return found


def backends() -> tuple[str, ...]:
    """Return the names of the installed backends, sorted."""
    return tuple(sorted(_entry_points()))


def backend_factory(name: str) -> Callable[..., Runtime]:
    """Return the class (or factory) registered under ``name``.

    Raises:
        BackendNotFound: no backend of that name is installed.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, not {type(name).__name__}")
    found = _entry_points()
    entry = found.get(name)
    if entry is None:
        installed = ", ".join(sorted(found))
        if name in _KNOWN_ELSEWHERE:
            raise BackendNotFound(
                f"the anyrt backend {name!r} is not installed; install "
                f"{_KNOWN_ELSEWHERE[name]}. Installed backends: {installed}"
            )
        raise BackendNotFound(
            f"no anyrt backend is named {name!r}. Installed backends: {installed}. "
            f"Third-party backends register under the entry-point group {GROUP!r}."
        )
    try:
        factory = entry.load()
    except ImportError as exc:
        hint = _KNOWN_ELSEWHERE.get(name, f"the package that provides {entry.value}")
        raise BackendNotFound(
            f"the anyrt backend {name!r} is registered but cannot be imported ({exc}); "
            f"install {hint}"
        ) from exc
    return cast(Callable[..., Runtime], factory)


def load_backend(name: str) -> tuple[Callable[..., Runtime] | None, str]:
    """Return ``(factory, "")``, or ``(None, why)`` if the installed ``name`` cannot load.

    A backend can be registered (its adapter installed) but fail to import, as uvloop
    on a free-threaded build does; ``why`` then names what to install.
    """
    try:
        return backend_factory(name), ""
    except BackendNotFound as exc:
        return None, str(exc)


def backend_options(name: str) -> dict[str, inspect.Parameter]:
    """Return the keyword options the backend ``name`` accepts."""
    factory = backend_factory(name)
    return {
        param.name: param
        for param in inspect.signature(factory).parameters.values()
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
    }


def runtime(name: str | None = None, /, **options: Any) -> Runtime:
    """Create a runtime by backend name.

    Args:
        name: a registered backend name; default: ``$ANYRT_BACKEND``, else
            ``"work-stealing"``.
        **options: the backend's own options (for example ``seed=1``).

    Raises:
        BackendNotFound: the backend is not installed.
        TypeError: an option the backend does not have.
    """
    if name is None:
        name = os.environ.get("ANYRT_BACKEND") or DEFAULT_BACKEND
    factory = backend_factory(name)
    accepted = backend_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"the anyrt backend {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(accepted) or '(none)'}"
        )
    return factory(**options)


def run(
    main: Callable[[Runtime], Coroutine[Any, Any, T]],
    *,
    backend: str | None = None,
    **options: Any,
) -> T:
    """Create a runtime, run ``main(runtime)`` to completion, close the runtime.

    Args:
        main: an async function taking the runtime.
        backend: the backend name (see `runtime`).
        **options: the backend's options.
    """
    if not callable(main):
        raise TypeError(f"run() takes an async function main(runtime), not {type(main).__name__}")
    rt = runtime(backend, **options)
    with rt:
        return rt.block_on(main(rt))
