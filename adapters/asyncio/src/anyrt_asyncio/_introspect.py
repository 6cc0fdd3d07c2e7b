"""``runtime.tasks()`` and ``dump_tasks()`` on an asyncio loop: what each task is doing.

The snapshot is read from asyncio's own bookkeeping (``asyncio.all_tasks``, the task
each loop is running, and the future a task waits on), so it costs nothing until it is
asked for, except the spawn time each task carries for its age.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import anyrt
from anyrt import TaskInfo

from ._task import AsyncioTask

if TYPE_CHECKING:
    from ._runtime import LoopRuntime

#: Frames in these directories are the runtime's, not the user's code.
_LIBRARY_DIRS: Final = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (anyrt.__file__, __file__)
)


def describe_suspension(coro: Any) -> str:
    """Follow a coroutine's await chain and say where it is suspended.

    Names the innermost frame of user code (outside anyrt and this adapter), then the
    library call it made, as the native runtimes do:
    ``"consumer (app.py:12), in Event.wait"``.
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
        if not code.co_filename.startswith(_LIBRARY_DIRS):
            user = inner
            called = None
        elif called is None:
            called = code.co_qualname  # the library call the user's code is in
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if inner is None:
        return "not started"
    parts = [user or inner]
    if user is not None and called is not None:
        parts.append(f"in {called}")
    if awaited is not None:
        parts.append(f"awaiting {awaited!r}")
    return ", ".join(parts)


def task_infos(runtime: LoopRuntime) -> list[TaskInfo]:
    """The live anyrt tasks of ``runtime``'s loop, oldest first (see `LoopRuntime.tasks`)."""
    loop = runtime.loop
    if loop.is_closed():
        return []
    running = asyncio.current_task(loop)
    now = runtime.now()
    infos = []
    for task in asyncio.all_tasks(loop):
        if not isinstance(task, AsyncioTask) or task._anyrt_owner is not runtime:
            continue
        born: float = getattr(task, "_anyrt_born", now)
        if task is running:
            infos.append(TaskInfo(task.get_name(), "running", "", now - born))
        elif task._fut_waiter is not None:  # type: ignore[attr-defined]
            where = describe_suspension(task.get_coro())
            infos.append(TaskInfo(task.get_name(), "parked", where, now - born))
        else:
            infos.append(TaskInfo(task.get_name(), "scheduled", "", now - born))
    infos.sort(key=lambda info: -info.age)
    return infos


def dump_tasks(runtime: LoopRuntime, file: TextIO | None) -> None:
    """Write ``runtime.tasks()`` as a table to ``file`` (default: standard error)."""
    out = sys.stderr if file is None else file
    infos = runtime.tasks()
    out.write(f"{runtime!r}: {len(infos)} live task(s)\n")
    for info in infos:
        where = f"  {info.where}" if info.where else ""
        out.write(f"  {info.age:9.3f}s  {info.state:<9}  {info.name}{where}\n")
    out.flush()
