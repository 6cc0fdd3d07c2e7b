"""The runtimes a benchmark compares: every installed anyrt backend, and the raw peers.

A runtime is a name and a `Runner`, which runs one workload in the current process and
says which workloads it cannot run (n/a) and why. `runtimes()` builds the table from
what is installed:

* every anyrt backend from `anyrt.backends()` - ``single-threaded`` (given
  ``clock="real"`` where a workload measures real time), ``work-stealing`` as
  ``work-stealing-1`` and ``-2`` (``workers=1``/``2``), ``thread-per-core`` as
  ``thread-per-core-1`` and ``-2`` (``cores=1``/``2``), and any other backend
  (the adapters, third-party ones) once with its default options, named ``anyrt-NAME``
  when a raw peer already has the name (``anyrt-asyncio`` is the adapter, ``asyncio``
  raw asyncio);
* the raw peers ``asyncio`` (the baseline), ``uvloop``, ``trio``, ``anyio-asyncio``
  and ``anyio-trio``, each running its own idiomatic version of the workloads, each
  present only if what it needs is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyrt
from anyrt._registry import backend_factory, backend_options, load_backend

from .common import Metrics
from .workloads import Workload

if TYPE_CHECKING:
    import asyncio

BASELINE = "asyncio"
"""The runtime every other one is compared with."""

PeerWorkload = Callable[[int], Coroutine[Any, Any, Metrics]]
"""A raw peer's version of a workload: an async function of the size."""

PeerStart = Callable[[PeerWorkload, int], Metrics]
"""Runs a raw peer's version at a size on a fresh event loop; returns its metrics."""


class Runner(Protocol):
    """Runs workloads in the current process on one runtime."""

    @property
    def summary(self) -> str:
        """What the runtime is, in a few words (for ``--help`` and the JSON report)."""
        ...

    def run(self, workload: Workload, size: int) -> Metrics:
        """Run ``workload`` at ``size`` on a fresh runtime and return its metrics."""
        ...

    def skip_reason(self, workload: Workload) -> str | None:
        """Why this runtime cannot run ``workload`` at all, or None if it can.

        Raises:
            anyrt.BackendNotFound: the backend is registered but cannot be loaded.
        """
        ...

    def note(self, workload: Workload) -> str | None:
        """What a reader must know before comparing this runtime's numbers, if anything."""
        ...


def backend_capabilities(backend: str) -> tuple[str, ...]:
    """The capabilities a backend's class declares (no runtime is created).

    Raises:
        anyrt.BackendNotFound: the backend is not installed or cannot be imported.
    """
    return tuple(getattr(backend_factory(backend), "capabilities", ()))


@dataclass(frozen=True)
class AnyrtBackend:
    """Runs the anyrt version of a workload on an anyrt backend, with fixed options."""

    backend: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The backend and its options, e.g. ``anyrt work-stealing (workers=2)``."""
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"anyrt backend {self.backend}" + (f" ({options})" if options else "")

    def run(self, workload: Workload, size: int) -> Metrics:
        """Run ``workload`` at ``size`` on a fresh runtime and return its metrics."""
        with self._create(workload) as rt:
            return rt.block_on(workload.on_anyrt(rt, size))

    def _create(self, workload: Workload) -> anyrt.Runtime:
        """A runtime with the options; on a real clock if the workload measures real time.

        A runtime whose clock is virtual (its capabilities include ``virtual-time``)
        would let sleeps return at once; such a backend is asked for ``clock="real"``,
        the option every clock-choosing backend shipped with anyrt understands.
        """
        rt = anyrt.runtime(self.backend, **self.options)
        if not workload.real_clock or "virtual-time" not in _capabilities(rt):
            return rt
        rt.close()
        if "clock" not in backend_options(self.backend):
            raise RuntimeError(
                f"the {self.backend!r} backend runs on virtual time and has no clock "
                f"option, so it cannot run {workload.name!r}, which measures real time"
            )
        rt = anyrt.runtime(self.backend, **{**self.options, "clock": "real"})
        if "virtual-time" in _capabilities(rt):
            rt.close()
            raise RuntimeError(
                f"the {self.backend!r} backend still runs on virtual time with "
                f'clock="real", so it cannot run {workload.name!r}'
            )
        return rt

    def skip_reason(self, workload: Workload) -> str | None:
        """The workload's needs that the backend's class does not declare, if any."""
        capabilities = backend_capabilities(self.backend)
        missing = [need for need in workload.needs if need not in capabilities]
        return f"needs {', '.join(missing)}" if missing else None

    def note(self, workload: Workload) -> str | None:
        """Socket workloads on an in-memory network are not comparable with real ones."""
        if workload.sockets and "in-memory-network" in backend_capabilities(self.backend):
            return "runs over its in-memory network, not real sockets: not comparable"
        return None


def _capabilities(rt: anyrt.Runtime) -> tuple[str, ...]:
    return tuple(getattr(rt, "capabilities", ()))


@dataclass(frozen=True)
class Peer:
    """Runs a raw peer's own version of a workload (from ``peer_<family>``)."""

    family: str
    """Which version of the workloads it runs: ``asyncio``, ``trio`` or ``anyio``."""
    start: PeerStart
    """Runs one version at a size on a fresh event loop, returns its metrics."""
    summary: str

    def run(self, workload: Workload, size: int) -> Metrics:
        """Run the peer's version of ``workload`` at ``size``; return its metrics."""
        module = importlib.import_module(f"{__package__}.peer_{self.family}")
        implementations: dict[str, PeerWorkload] = module.WORKLOADS
        return self.start(implementations[workload.name], size)

    def skip_reason(self, workload: Workload) -> str | None:
        """Why the peer has no fair version of ``workload``, if it has none."""
        return workload.unsupported.get(self.family)

    def note(self, workload: Workload) -> str | None:
        """Peers run real sockets and have threads: nothing to add."""
        return None


def _run_asyncio(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> PeerStart:
    def start(version: PeerWorkload, size: int) -> Metrics:
        import asyncio  # noqa: PLC0415 - only the process that runs it needs asyncio

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(version(size))

    return start


def _new_uvloop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = importlib.import_module("uvloop").new_event_loop()
    return loop


def _run_trio(version: PeerWorkload, size: int) -> Metrics:
    trio = importlib.import_module("trio")
    metrics: Metrics = trio.run(version, size)
    return metrics


def _run_anyio(backend: str) -> PeerStart:
    def start(version: PeerWorkload, size: int) -> Metrics:
        anyio = importlib.import_module("anyio")
        metrics: Metrics = anyio.run(version, size, backend=backend)
        return metrics

    return start


PEERS: dict[str, tuple[Peer, tuple[str, ...], str]] = {
    "asyncio": (
        Peer("asyncio", _run_asyncio(None), "raw asyncio, the default event loop (baseline)"),
        (),
        "",
    ),
    "uvloop": (
        Peer("asyncio", _run_asyncio(_new_uvloop), "raw asyncio on uvloop's event loop"),
        ("uvloop",),
        "pip install uvloop",
    ),
    "trio": (Peer("trio", _run_trio, "raw trio"), ("trio",), "pip install trio"),
    "anyio-asyncio": (
        Peer("anyio", _run_anyio("asyncio"), "raw anyio on its asyncio backend"),
        ("anyio",),
        "pip install anyio",
    ),
    "anyio-trio": (
        Peer("anyio", _run_anyio("trio"), "raw anyio on its trio backend"),
        ("anyio", "trio"),
        "pip install anyio trio",
    ),
}
"""Each raw peer: its runner, the modules it needs, and how to install them."""

_BUNDLED_VARIANTS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "single-threaded": (("single-threaded", {}),),
    "work-stealing": (("work-stealing-1", {"workers": 1}), ("work-stealing-2", {"workers": 2})),
    "thread-per-core": (("thread-per-core-1", {"cores": 1}), ("thread-per-core-2", {"cores": 2})),
}
"""How each bundled backend is run: under which names, with which options."""


@dataclass(frozen=True)
class RuntimeTable:
    """The runtimes that can run here, in table order, and the peers that cannot."""

    runners: dict[str, Runner]
    not_installed: dict[str, str]
    """A missing raw peer's name: what to install to get it."""


def runtimes(*, probe: bool = True) -> RuntimeTable:
    """Every installed anyrt backend (as variants), then every importable raw peer.

    With ``probe`` (the default) each backend is imported, and one that cannot be (uvloop
    on a free-threaded build) is listed as not installed. A benchmark child, which runs
    one named runtime, passes ``probe=False`` so that it imports only what it runs.
    """
    runners: dict[str, Runner] = {}
    installed = anyrt.backends()
    ordered = [name for name in _BUNDLED_VARIANTS if name in installed]
    ordered += [name for name in installed if name not in _BUNDLED_VARIANTS]
    not_installed: dict[str, str] = {}
    for backend in ordered:
        variants = _BUNDLED_VARIANTS.get(backend)
        if variants is None:
            label = f"anyrt-{backend}" if backend in PEERS else backend
            variants = ((label, {}),)
        cannot_import = load_backend(backend)[1] if probe else ""
        for label, options in variants:
            if cannot_import:  # registered, but its package is missing (uvloop, say)
                not_installed[label] = cannot_import
            else:
                runners[label] = AnyrtBackend(backend, options)
    for name, (peer, modules, install) in PEERS.items():
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            not_installed[name] = f"{', '.join(missing)} not installed ({install})"
        else:
            runners[name] = peer
    return RuntimeTable(runners, not_installed)
