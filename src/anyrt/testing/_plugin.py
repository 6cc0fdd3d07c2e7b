"""The anyrt pytest plugin, registered as the ``pytest11`` entry point ``anyrt``.

* ``--anyrt-backend SPEC`` (repeatable) chooses the backends to test against. ``SPEC``
  is ``NAME`` or ``NAME:key=value,key=value``; each value is read as a Python literal
  (``seed=1``, ``workers=4``) or else kept as a string (``clock=real``). By default every
  installed backend is used, once per entry of its factory's ``conformance_options``
  (a sequence of option dicts; default ``({},)``).
* ``anyrt_backend`` is the ``(name, options)`` pair a test runs with. Every test that
  uses it, directly or through ``runtime``, is parametrised over the chosen backends,
  with ids such as ``single-threaded`` or ``single-threaded[seed=1]``.
* ``runtime`` is a new runtime of that backend, closed after the test.
* ``virtual_runtime`` is the same on virtual time: a test that takes it runs once per
  chosen backend whose class declares the ``virtual-time`` capability, with
  ``clock="virtual"`` added where the backend has a ``clock`` option and the spec names
  none (ids such as ``asyncio[clock=virtual]``). Its ``(name, options)`` pair is
  ``anyrt_virtual_backend``.
* An ``async def`` test that takes ``runtime`` (or ``virtual_runtime``) is run with
  ``block_on`` on it.
* ``@pytest.mark.anyrt_requires("threads", ...)`` skips the test on backends whose
  ``capabilities`` lack any of the named capabilities.
* ``@pytest.mark.anyrt_simulate(seeds=200)`` runs an ``async def`` test once per seed
  under `anyrt.testing.simulate` instead of once per backend: its ``runtime`` argument
  is each run's simulated runtime and its ``simulation`` argument each run's
  `anyrt.testing.Simulation`. ``ANYRT_SEED=N`` runs only seed N.
"""

from __future__ import annotations

import ast
import inspect
import shlex
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import pytest

from .._protocols import Executor, Runtime
from .._registry import backend_options, backends
from .._registry import runtime as create_runtime
from .._sim import Simulation, current_simulation
from .._simnet import Link
from .._simulate import SEED_VARIABLE, run_seeds, seeds_to_run
from ._params import load_backend

__all__ = ["BackendConfig", "backend_id", "parse_backend_spec"]

BackendConfig = tuple[str, dict[str, Any]]

_FIXTURE = "anyrt_backend"
_VIRTUAL_FIXTURE = "anyrt_virtual_backend"
_VIRTUAL_TIME = "virtual-time"
_CONFIGS = pytest.StashKey[list[BackendConfig]]()
_SIMULATE = "anyrt_simulate"
_SIMULATED_BACKEND: BackendConfig = ("single-threaded", {})
_SIMULATE_OPTIONS = frozenset(
    {"seeds", "seed", "link", "trace", "max_steps", "check_determinism", "fail_on_task_errors"}
)


def parse_backend_spec(spec: str) -> BackendConfig:
    """Parse ``NAME`` or ``NAME:key=value,key=value`` into ``(name, options)``.

    Values are Python literals where they parse as one (``seed=1``, ``flag=True``) and
    strings otherwise (``clock=real``). Values cannot contain commas.

    Raises:
        ValueError: the name is missing, or an option is not ``key=value``.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"--anyrt-backend {spec!r}: the backend name is missing")
    options: dict[str, Any] = {}
    for item in (part.strip() for part in rest.split(",")):
        if not item:
            continue
        key, equals, raw = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(f"--anyrt-backend {spec!r}: expected key=value, got {item!r}")
        options[key] = _literal(raw.strip())
    return name, options


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, TypeError, SyntaxError):
        return raw


def backend_id(config: BackendConfig) -> str:
    """Return the test id of a backend config: ``name`` or ``name[key=value,...]``."""
    name, options = config
    if not options:
        return name
    shown = (
        f"{key}={value if isinstance(value, str) else repr(value)}"
        for key, value in options.items()
    )
    return f"{name}[{','.join(shown)}]"


# -- configuration ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--anyrt-backend``."""
    group = parser.getgroup("anyrt")
    group.addoption(
        "--anyrt-backend",
        action="append",
        dest="anyrt_backend",
        default=None,
        metavar="SPEC",
        help=(
            "run anyrt tests on this backend: NAME or NAME:key=value,key=value (values are "
            "Python literals or strings). Repeatable. Default: every installed backend."
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and check the ``--anyrt-backend`` specs."""
    config.addinivalue_line(
        "markers",
        "anyrt_requires(*capabilities): skip the test on anyrt backends whose "
        "capabilities lack any of these (for example 'threads', 'os-reactor', "
        "'virtual-time')",
    )
    config.addinivalue_line(
        "markers",
        f"{_SIMULATE}(seeds=100, *, seed=None, link=None, trace=32, max_steps=1000000, "
        "check_determinism=True, fail_on_task_errors=True): run the async test once per "
        "seed on a simulated world (see anyrt.testing.simulate); its runtime and "
        f"simulation arguments are each run's; {SEED_VARIABLE}=N runs only seed N",
    )
    specs: list[str] | None = config.getoption(_FIXTURE)
    if specs:
        config.stash[_CONFIGS] = [_checked_config(spec) for spec in specs]


def _checked_config(spec: str) -> BackendConfig:
    try:
        name, options = parse_backend_spec(spec)
        accepted = backend_options(name)
    except (ValueError, LookupError) as exc:
        raise pytest.UsageError(str(exc)) from exc
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise pytest.UsageError(
            f"--anyrt-backend {spec!r}: the backend {name!r} has no option "
            f"{', '.join(map(repr, unknown))}; its options are: {', '.join(accepted) or '(none)'}"
        )
    return name, options


def _configs(config: pytest.Config) -> list[BackendConfig]:
    """Return the chosen backend configs (computed on first use when not given)."""
    configs = config.stash.get(_CONFIGS, None)
    if configs is None:
        configs = []
        for name in backends():
            factory, _ = load_backend(name)  # one that cannot be imported is skipped
            variants: Sequence[dict[str, Any]] = getattr(factory, "conformance_options", ({},))
            configs.extend((name, dict(options)) for options in variants)
        config.stash[_CONFIGS] = configs
    return configs


def _virtual_configs(config: pytest.Config) -> list[BackendConfig]:
    """Return the virtual-time variant of every chosen backend that has virtual time.

    A backend qualifies when its class declares the ``virtual-time`` capability; a
    ``clock="virtual"`` option is added when the backend takes a ``clock`` and the
    config names none. A config that names a clock by another name (``clock="real"``)
    asks for real time and is left out. Configs that end up the same are kept once. A
    backend that cannot be imported is kept as it is, and its tests skipped, saying why.
    """
    chosen: dict[str, BackendConfig] = {}
    for name, given in _configs(config):
        factory, _ = load_backend(name)
        if factory is None:  # cannot be imported: kept, to be skipped with the reason
            chosen.setdefault(backend_id((name, given)), (name, given))
            continue
        if _VIRTUAL_TIME not in getattr(factory, "capabilities", ()):
            continue
        clock = given.get("clock")
        if isinstance(clock, str) and clock != "virtual":
            continue
        options = dict(given)
        if "clock" not in options and "clock" in backend_options(name):
            options["clock"] = "virtual"
        chosen.setdefault(backend_id((name, options)), (name, options))
    return list(chosen.values())


def pytest_report_header(config: pytest.Config) -> str:
    """Say which anyrt backends the tests run on."""
    specs: list[str] | None = config.getoption(_FIXTURE)
    chosen = ", ".join(specs) if specs else f"every installed backend ({', '.join(backends())})"
    return f"anyrt backends: {chosen}"


# -- parametrisation ------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``anyrt_backend`` (and ``anyrt_virtual_backend``) over the backends."""
    if _VIRTUAL_FIXTURE in metafunc.fixturenames:
        _parametrize_virtual(metafunc)
        return
    if _FIXTURE not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    if definition.get_closest_marker(_SIMULATE) is not None:
        return  # one item, running every seed on the simulated single-threaded runtime
    if any(_FIXTURE in _argnames(mark) for mark in definition.iter_markers("parametrize")):
        return  # the test chose its own backends
    required = _required(definition)
    params = [
        pytest.param(config, id=backend_id(config), marks=_skips(config[0], required))
        for config in _configs(metafunc.config)
    ]
    metafunc.parametrize(_FIXTURE, params)


def _parametrize_virtual(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``anyrt_virtual_backend`` over the chosen backends with virtual time."""
    definition = metafunc.definition
    if _FIXTURE in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{definition.nodeid} takes both runtime (or anyrt_backend) and "
            "virtual_runtime: take one of them (virtual_runtime is the runtime fixture "
            "narrowed to virtual-time backends)"
        )
    if definition.get_closest_marker(_SIMULATE) is not None:
        raise pytest.UsageError(
            f"{definition.nodeid} is an @{_SIMULATE} test, whose runtime already runs on "
            "virtual time: take runtime instead of virtual_runtime"
        )
    if any(_VIRTUAL_FIXTURE in _argnames(mark) for mark in definition.iter_markers("parametrize")):
        return  # the test chose its own backends
    required = _required(definition)
    configs = _virtual_configs(metafunc.config)
    if not configs:
        chosen = ", ".join(backend_id(config) for config in _configs(metafunc.config))
        reason = (
            f"none of the chosen anyrt backends ({chosen or 'none'}) runs on virtual "
            "time; choose one with --anyrt-backend, such as single-threaded, "
            "asyncio:clock=virtual or trio:clock=virtual"
        )
        metafunc.parametrize(
            _VIRTUAL_FIXTURE,
            [pytest.param(None, id="no-virtual-time", marks=pytest.mark.skip(reason=reason))],
        )
        return
    params = [
        pytest.param(config, id=backend_id(config), marks=_skips(config[0], required))
        for config in configs
    ]
    metafunc.parametrize(_VIRTUAL_FIXTURE, params)


def _required(node: pytest.Item) -> list[str]:
    required: list[str] = []
    for mark in node.iter_markers("anyrt_requires"):
        for capability in mark.args:
            if not isinstance(capability, str):
                raise TypeError(
                    f"anyrt_requires() takes capability names, not {type(capability).__name__}"
                )
            required.append(capability)
    return required


def _argnames(mark: pytest.Mark) -> Sequence[str]:
    names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
    if isinstance(names, str):
        return [name.strip() for name in names.split(",")]
    return list(names)


def _skips(name: str, required: list[str]) -> list[pytest.MarkDecorator]:
    factory, cannot_import = load_backend(name)
    if factory is None:
        return [pytest.mark.skip(reason=cannot_import)]
    reason = _missing(name, getattr(factory, "capabilities", ()), required)
    return [pytest.mark.skip(reason=reason)] if reason else []


def _missing(name: str, capabilities: Sequence[str], required: list[str]) -> str | None:
    """Return why a backend with ``capabilities`` cannot run the test, or None."""
    missing = [capability for capability in required if capability not in capabilities]
    if not missing:
        return None
    return (
        f"the {name!r} backend lacks the capability {', '.join(map(repr, missing))} "
        f"(it has: {', '.join(capabilities) or 'none'})"
    )


# -- fixtures and running async tests ---------------------------------------------------


@pytest.fixture
def anyrt_backend(request: pytest.FixtureRequest) -> BackendConfig:
    """The ``(backend name, options)`` the test runs with; parametrised by the plugin."""
    param: BackendConfig | None = getattr(request, "param", None)
    if param is None and request.node.get_closest_marker(_SIMULATE) is not None:
        return _SIMULATED_BACKEND
    if param is None:
        raise pytest.UsageError(
            "anyrt_backend is parametrised when tests are collected: take it (or "
            "runtime) as an argument instead of requesting it with getfixturevalue()"
        )
    return param


@pytest.fixture
def runtime(anyrt_backend: BackendConfig, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A new runtime of the backend under test; closed after the test.

    The test is skipped if the runtime's own ``capabilities`` (which may depend on its
    options, unlike the class's) lack one that ``anyrt_requires`` names.
    """
    if request.node.get_closest_marker(_SIMULATE) is not None:
        yield _PerSeed("runtime")  # replaced for each seed
        return
    name, options = anyrt_backend
    with create_runtime(name, **options) as rt:
        capabilities = getattr(rt, "capabilities", ())
        reason = _missing(backend_id(anyrt_backend), capabilities, _required(request.node))
        if reason is not None:
            pytest.skip(reason)
        yield rt


@pytest.fixture
def anyrt_virtual_backend(request: pytest.FixtureRequest) -> BackendConfig:
    """The ``(backend name, options)`` a ``virtual_runtime`` test runs with."""
    param: BackendConfig | None = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError(
            "anyrt_virtual_backend is parametrised when tests are collected: take it (or "
            "virtual_runtime) as an argument instead of requesting it with getfixturevalue()"
        )
    return param


@pytest.fixture
def virtual_runtime(
    anyrt_virtual_backend: BackendConfig, request: pytest.FixtureRequest
) -> Iterator[Runtime]:
    """A new runtime on virtual time, of each chosen backend that has it; closed after.

    Parametrised over every chosen backend whose class declares ``virtual-time``, with
    ``clock="virtual"`` where the backend takes a ``clock``. Idle time jumps to the next
    deadline, so ``await virtual_runtime.sleep(3600)`` returns at once. The test is
    skipped if the runtime itself lacks ``virtual-time`` or a capability that
    ``anyrt_requires`` names.
    """
    name, options = anyrt_virtual_backend
    with create_runtime(name, **options) as rt:
        capabilities = getattr(rt, "capabilities", ())
        required = [_VIRTUAL_TIME, *_required(request.node)]
        reason = _missing(backend_id(anyrt_virtual_backend), capabilities, required)
        if reason is not None:
            pytest.skip(reason)
        yield rt


@pytest.fixture
def simulation(request: pytest.FixtureRequest) -> Simulation:
    """The `anyrt.testing.Simulation` of each run of an ``anyrt_simulate`` test."""
    if request.node.get_closest_marker(_SIMULATE) is None:
        raise pytest.UsageError(
            f"the simulation fixture belongs to simulated tests: mark {request.node.name} "
            f"with @pytest.mark.{_SIMULATE}(seeds=...)"
        )
    return _PerSeed("simulation")  # type: ignore[return-value]  # replaced for each seed


class _PerSeed:
    """What a fixture of a simulated test is outside the test function: nothing yet."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __repr__(self) -> str:
        return f"<the {self._what} of each seed of an {_SIMULATE} test>"

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(
            f"an @{_SIMULATE} test gets a new {self._what} for each seed, as the argument "
            "of the test function only; a fixture cannot use it. Create what needs it "
            "inside the test."
        )


def _run_simulated(item: pytest.Function) -> None:
    """Run a test marked ``anyrt_simulate`` once per seed."""
    mark = item.get_closest_marker(_SIMULATE)
    assert mark is not None
    if not inspect.iscoroutinefunction(item.obj):
        raise TypeError(f"@{_SIMULATE} runs async tests: make {item.name} an async def")
    options = dict(mark.kwargs)
    if mark.args:
        if len(mark.args) > 1 or "seeds" in options:
            raise TypeError(f"@{_SIMULATE} takes the seeds as its one positional argument")
        options["seeds"] = mark.args[0]
    unknown = sorted(set(options) - _SIMULATE_OPTIONS)
    if unknown:
        raise TypeError(
            f"@{_SIMULATE} has no option {', '.join(map(repr, unknown))}; its options are: "
            f"{', '.join(sorted(_SIMULATE_OPTIONS))}"
        )
    link = options.get("link")
    if link is not None and not isinstance(link, Link):
        raise TypeError(f"@{_SIMULATE}(link=...) takes an anyrt.testing.Link")
    funcargs = item.funcargs
    testargs = {arg: funcargs[arg] for arg in item._fixtureinfo.argnames}

    async def test_fn(rt: Runtime) -> None:
        args = dict(testargs)
        if "runtime" in args:
            args["runtime"] = rt
        if "simulation" in args:
            args["simulation"] = current_simulation()
        await item.obj(**args)

    test_fn.__qualname__ = item.obj.__qualname__  # the name of the main task in traces

    node = shlex.quote(item.nodeid)
    run_seeds(
        test_fn,
        seeds_to_run(options.get("seeds", 100), options.get("seed")),
        reproduce=lambda seed: (
            f"{SEED_VARIABLE}={seed} pytest {node}\n"
            f"(or pin it in the test: @pytest.mark.{_SIMULATE}(seed={seed}))"
        ),
        link=link,
        trace=options.get("trace", 32),
        max_steps=options.get("max_steps", 1_000_000),
        check_determinism=options.get("check_determinism", True),
        fail_on_task_errors=options.get("fail_on_task_errors", True),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that takes ``runtime`` (or ``virtual_runtime``) on it.

    A test marked ``anyrt_simulate`` runs once per seed on a simulated runtime.
    """
    if pyfuncitem.get_closest_marker(_SIMULATE) is not None:
        _run_simulated(pyfuncitem)
        return True
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    rt = pyfuncitem.funcargs.get("runtime")
    if not isinstance(rt, Executor):
        rt = pyfuncitem.funcargs.get("virtual_runtime")
    if not isinstance(rt, Executor):
        return None
    funcargs = pyfuncitem.funcargs
    testargs = {arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    rt.block_on(pyfuncitem.obj(**testargs))
    return True
