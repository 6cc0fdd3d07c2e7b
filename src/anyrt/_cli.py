"""The ``anyrt`` command: list the backends, run an async function, run the demo, bench.

``main`` returns the exit status instead of exiting, so tests call it in-process:
0 on success, 1 when the user's function raised (the traceback propagates), 2 for a
usage error, reported on one line of standard error.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._bench.cli import BenchUsageError
from ._bench.cli import add_arguments as add_bench_arguments
from ._bench.cli import run as run_bench
from ._demo import demo
from ._exceptions import BackendNotFound
from ._registry import DEFAULT_BACKEND, backend_factory, backend_options, backends, runtime

__all__ = ["main"]

_USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake on the command line; reported on one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``anyrt`` command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else _USAGE_ERROR
    try:
        if args.command == "backends":
            return _cmd_backends()
        if args.command == "run":
            return _cmd_run(args.target, args.backend, args.opt)
        if args.command == "bench":
            return _cmd_bench(args)
        return _cmd_demo(args.backend, args.clients, args.requests)
    except UsageError as exc:
        print(f"anyrt {args.command}: error: {exc}", file=sys.stderr)
        return _USAGE_ERROR


def _parser() -> argparse.ArgumentParser:
    from . import __version__  # noqa: PLC0415 - the package imports this module's siblings

    parser = argparse.ArgumentParser(
        prog="anyrt", description="Typed async runtime protocols and the runtimes behind them."
    )
    parser.add_argument("--version", action="version", version=f"anyrt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "backends", help="list the installed backends, their options and capabilities"
    )

    run = commands.add_parser(
        "run",
        help="run an async function main(runtime) on a backend",
        description="Import MODULE (the current directory is on sys.path), call "
        "FUNC(runtime) on a new runtime, print its result unless it is None.",
    )
    run.add_argument("target", metavar="MODULE:FUNC", help="for example app:main")
    run.add_argument("--backend", metavar="NAME", help="backend name (see 'anyrt backends')")
    run.add_argument(
        "--opt",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a backend option, repeatable; VALUE is a Python literal or else a string",
    )

    demo_parser = commands.add_parser(
        "demo", help="run a key-value server and concurrent clients on a backend"
    )
    demo_parser.add_argument("--backend", metavar="NAME", help="backend name")
    demo_parser.add_argument("--clients", type=_positive_int, default=5, metavar="N")
    demo_parser.add_argument("--requests", type=_positive_int, default=20, metavar="N")

    bench = commands.add_parser(
        "bench",
        help="benchmark the installed backends against asyncio, uvloop, trio and anyio",
        description="Run the benchmark workloads on every installed anyrt backend and on "
        "the raw peers, each run in a fresh process, the cases interleaved round after "
        "round, and print a table per workload: median, min-max and the ratio to raw "
        "asyncio (> 1 is better). Progress and the time left go to standard error.",
    )
    add_bench_arguments(bench)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# -- anyrt backends -----------------------------------------------------------------


def _cmd_backends() -> int:
    from_env = os.environ.get("ANYRT_BACKEND")
    default = from_env or DEFAULT_BACKEND
    installed = backends()
    for index, name in enumerate(installed):
        if index:
            print()
        marker = ""
        if name == default:
            marker = " (default, from $ANYRT_BACKEND)" if from_env else " (default)"
        print(f"{name}{marker}")
        for line in _describe(name):
            print(f"  {line}")
    if default not in installed:
        print(f"\nnote: the default backend {default!r} is not installed", file=sys.stderr)
    return 0


def _describe(name: str) -> list[str]:
    try:
        factory = backend_factory(name)
        options = backend_options(name)
    except BackendNotFound as exc:
        return [f"unavailable: {exc}"]
    qualname = getattr(factory, "__qualname__", type(factory).__qualname__)
    lines = [f"class: {getattr(factory, '__module__', '?')}:{qualname}"]
    if options:
        lines.append("options:")
        lines.extend(f"  {_format_option(param)}" for param in options.values())
    else:
        lines.append("options: (none)")
    capabilities = getattr(factory, "capabilities", ())
    lines.append(f"capabilities: {', '.join(capabilities) or '(none declared)'}")
    return lines


def _format_option(param: inspect.Parameter) -> str:
    text = param.name
    if param.annotation is not param.empty:
        annotation = param.annotation
        if not isinstance(annotation, str):
            annotation = inspect.formatannotation(annotation)
        text += f": {annotation}"
    if param.default is param.empty:
        return f"{text} (required)"
    return f"{text} = {param.default!r}"


# -- anyrt run ----------------------------------------------------------------------


def _cmd_run(target: str, backend: str | None, raw_options: Sequence[str]) -> int:
    module_name, func_path = _split_target(target)
    options = _parse_options(raw_options)
    with _cwd_on_path():
        func = _load(module_name, func_path)
        try:
            rt = runtime(backend, **options)
        except BackendNotFound as exc:
            raise UsageError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad backend option: {exc}") from None
        with rt:
            coro = func(rt)
            if not inspect.iscoroutine(coro):
                raise UsageError(
                    f"{target} must be an async function taking the runtime; "
                    f"calling it returned {type(coro).__name__}"
                )
            result = rt.block_on(coro)
    if result is not None:
        print(result)
    return 0


def _split_target(target: str) -> tuple[str, str]:
    module_name, sep, func_path = target.partition(":")
    names = [*module_name.split("."), *func_path.split(".")]
    if not sep or not all(name.isidentifier() for name in names):
        raise UsageError(f"expected MODULE:FUNC (for example app:main), got {target!r}")
    return module_name, func_path


def _parse_options(raw_options: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for raw in raw_options:
        key, sep, text = raw.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"expected --opt KEY=VALUE (for example seed=1), got {raw!r}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            options[key] = text
    return options


@contextmanager
def _cwd_on_path() -> Iterator[None]:
    """Put the current directory first on ``sys.path``, as ``python -m`` does."""
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


def _load(module_name: str, func_path: str) -> Any:
    try:
        obj: Any = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
    for attribute in func_path.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {func_path!r}") from None
    if not callable(obj):
        raise UsageError(f"{module_name}:{func_path} is not callable")
    return obj


# -- anyrt bench --------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        return run_bench(args)
    except BenchUsageError as exc:
        raise UsageError(str(exc)) from None


# -- anyrt demo ---------------------------------------------------------------------


def _cmd_demo(backend: str | None, clients: int, requests: int) -> int:
    try:
        rt = runtime(backend)
    except BackendNotFound as exc:
        raise UsageError(str(exc)) from None
    with rt:
        rt.block_on(demo(rt, clients=clients, requests=requests))
    return 0
