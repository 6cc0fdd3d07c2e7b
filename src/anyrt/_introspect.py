"""What a runtime can tell about its tasks: snapshots, tables, and where each one waits.

Shared by the native runtimes and the adapters (``runtime.tasks()``,
``runtime.dump_tasks()``, `anyrt.Deadlock`'s listing).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Final, TextIO

__all__ = ["TaskInfo", "describe_suspension", "write_task_table"]


@dataclass(frozen=True)
class TaskInfo:
    """One live task in a `runtime.tasks()` snapshot."""

    name: str
    #: ``"scheduled"`` (ready to run), ``"running"`` or ``"parked"`` (waiting).
    state: str
    #: For a parked task, the line of user code where it waits (else ``""``).
    where: str
    #: Seconds on the runtime's clock since the task was spawned.
    age: float


def write_task_table(file: TextIO | None, runtime: object, infos: list[TaskInfo]) -> None:
    """Write ``runtime``'s `TaskInfo` snapshot as a table to ``file`` (default: stderr).

    The body of every backend's ``dump_tasks``.
    """
    out = sys.stderr if file is None else file
    out.write(f"{runtime!r}: {len(infos)} live task(s)\n")
    for info in infos:
        where = f"  {info.where}" if info.where else ""
        out.write(f"  {info.age:9.3f}s  {info.state:<9}  {info.name}{where}\n")
    out.flush()


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def describe_suspension(
    coro: Any,
    library_dirs: tuple[str, ...] = (_PACKAGE_DIR,),
    *,
    outermost_call: bool = False,
    show_awaited: bool = True,
) -> str:
    """Follow a coroutine's await chain and say where it is suspended.

    Names the innermost frame of user code (outside ``library_dirs``: anyrt's), then
    the library call it is in - the innermost frame, or with ``outermost_call`` the
    one the user's code called - and the object it awaits (unless not
    ``show_awaited``), e.g.
    ``"consumer (app.py:12), in Channel.receive, awaiting <anyrt oneshot waiting>"``.
    """
    user: str | None = None
    inner: str | None = None
    called: str | None = None
    awaited: object = None
    for _ in range(100):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            awaited = coro
            break
        code = frame.f_code
        inner = f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})"
        if not code.co_filename.startswith(library_dirs):
            user = inner
            called = None
        elif called is None:
            called = code.co_qualname  # the library call the user's code made
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if inner is None:
        return "not started"
    parts = [user or inner]
    if user is not None:
        if outermost_call:
            if called is not None:
                parts.append(f"in {called}")
        elif inner != user:
            parts.append(f"in {inner.split(' (')[0]}")
    if show_awaited and awaited is not None:
        parts.append(f"awaiting {awaited!r}")
    return ", ".join(parts)
