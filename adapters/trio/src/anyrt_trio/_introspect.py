"""``runtime.tasks()`` and ``dump_tasks()`` on trio: what each task is doing.

The runtime keeps each live task's spawn time (`TrioRuntime._born`, written on the trio
thread); the snapshot reads a copy of it, and each coroutine's own state: a coroutine
that is executing is ``running``, one that never ran is ``scheduled``, and one that is
suspended is ``parked`` (trio does not say, without reaching into its run queue, whether
a suspended task is already due to resume: a task at a bare checkpoint shows as parked
there).
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import trio

import anyrt
from anyrt import TaskInfo

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

#: Frames in these directories are machinery, not the user's code.
_LIBRARY_DIRS: Final = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (anyrt.__file__, trio.__file__, __file__)
)


def describe_suspension(coro: Any) -> str:
    """Follow a coroutine's await chain and say where it is suspended.

    Names the innermost frame of user code (outside anyrt, trio and this adapter), then
    the library call it made, as the native runtimes do:
    ``"consumer (app.py:12), in Event.wait"``.
    """
    user: str | None = None
    inner: str | None = None
    called: str | None = None
    for _ in range(100):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        inner = f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})"
        if not code.co_filename.startswith(_LIBRARY_DIRS):
            user = inner
            called = None
        elif called is None:
            called = code.co_qualname  # the library call the user's code is in
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if inner is None:
        return "not started"
    if user is not None and called is not None:
        return f"{user}, in {called}"
    return user or inner


def task_infos(runtime: TrioRuntime) -> list[TaskInfo]:
    """The live tasks of ``runtime``, oldest first (see `TrioRuntime.tasks`)."""
    born = runtime._born.copy()  # one C call: safe while the trio thread edits it
    now = runtime.now()
    infos = []
    for task, spawned in born.items():
        coro = task._coro
        if coro is None:  # ended while we looked
            continue
        state = inspect.getcoroutinestate(coro) if inspect.iscoroutine(coro) else "?"
        if state == inspect.CORO_RUNNING:
            infos.append(TaskInfo(task.name, "running", "", now - spawned))
        elif state == inspect.CORO_CREATED:
            infos.append(TaskInfo(task.name, "scheduled", "", now - spawned))
        else:
            infos.append(TaskInfo(task.name, "parked", describe_suspension(coro), now - spawned))
    infos.sort(key=lambda info: -info.age)
    return infos


def dump_tasks(runtime: TrioRuntime, file: TextIO | None) -> None:
    """Write ``runtime.tasks()`` as a table to ``file`` (default: standard error)."""
    out = sys.stderr if file is None else file
    infos = runtime.tasks()
    out.write(f"{runtime!r}: {len(infos)} live task(s)\n")
    for info in infos:
        where = f"  {info.where}" if info.where else ""
        out.write(f"  {info.age:9.3f}s  {info.state:<9}  {info.name}{where}\n")
    out.flush()
