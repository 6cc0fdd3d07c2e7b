"""Diagnostics for foreign async code (asyncio, trio, anyio) run on a native runtime.

A coroutine written for another event loop either yields that loop's objects to the
task (a future, a trap) or fails before it yields anything, asking its library for
the running loop. Both end in an error that names the compat shim to use instead.
"""

from __future__ import annotations

from typing import Final

__all__ = ["explain_foreign_failure", "foreign_yield_error"]


def foreign_yield_error(obj: object, runtime_name: str) -> TypeError:
    """Build the error for a coroutine that yielded something anyrt does not understand."""
    # trio's traps yield classes as well as instances.
    module = (obj.__module__ if isinstance(obj, type) else type(obj).__module__) or ""
    if module.startswith("trio") or module.startswith("outcome"):
        shim = "await anyrt_trio.compat.run(runtime, async_fn, *args)"
        what = "a trio operation"
    elif obj is None or module.startswith(("asyncio", "uvloop", "_asyncio")):
        shim = "await anyrt_asyncio.compat.run(runtime, coro)"
        what = "an asyncio future or asyncio.sleep()"
    else:
        shim = (
            "await anyrt_asyncio.compat.run(runtime, coro) for asyncio code or "
            "await anyrt_trio.compat.run(runtime, async_fn) for trio code"
        )
        what = "an object of another async library"
    return TypeError(
        f"a coroutine on the {runtime_name!r} anyrt runtime awaited {what} ({obj!r}); "
        f"native anyrt runtimes cannot drive it. Run that code through {shim}."
    )


_ASYNCIO_HINT: Final = (
    "this is asyncio code running on the {runtime!r} anyrt runtime, which is not an "
    "asyncio loop: run it through `await anyrt_asyncio.compat.run(runtime, coro)`, or "
    "choose the asyncio backend"
)
_TRIO_HINT: Final = (
    "this is trio code running on the {runtime!r} anyrt runtime, which is not trio: "
    "run it through `await anyrt_trio.compat.run(runtime, async_fn, *args)`, or choose "
    "the trio backend"
)
_ANYIO_HINT: Final = (
    "this is anyio code running on the {runtime!r} anyrt runtime, and anyio has no "
    "backend for the native anyrt runtimes (sniffio reports 'anyrt'): run it through "
    "`await anyrt_asyncio.compat.run(runtime, coro)` or "
    "`await anyrt_trio.compat.run(runtime, async_fn, *args)`"
)


def explain_foreign_failure(exc: BaseException, runtime_name: str) -> None:
    """Add a note naming the compat shim to asyncio's, trio's or anyio's "no loop" error.

    Code that expected its own event loop usually fails before it yields anything to
    the task (``asyncio.sleep`` asks for the running loop first), so
    `foreign_yield_error` never sees it.
    """
    if isinstance(exc, ModuleNotFoundError):
        if (exc.name or "").startswith("anyio._backends."):
            hint = _ANYIO_HINT
        else:
            return
    elif type(exc) in (RuntimeError, AttributeError):  # not subclasses: those mean more
        tb = exc.__traceback__
        if tb is None:
            return
        while tb.tb_next is not None:
            tb = tb.tb_next
        module = tb.tb_frame.f_globals.get("__name__", "")
        if not isinstance(module, str):
            return
        if module.startswith("asyncio.") and isinstance(exc, RuntimeError):
            hint = _ASYNCIO_HINT
        elif module.startswith("trio."):
            hint = _TRIO_HINT
        else:
            return
    else:
        return
    note = hint.format(runtime=runtime_name)
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
