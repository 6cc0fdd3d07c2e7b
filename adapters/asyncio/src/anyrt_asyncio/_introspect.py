"""``runtime.tasks()`` and ``dump_tasks()`` on an asyncio loop: what each task is doing.

The snapshot is read from asyncio's own bookkeeping (``asyncio.all_tasks``, the task
each loop is running, and the future a task waits on), so it costs nothing until it is
asked for, except the spawn time each task carries for its age.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Final, TextIO

import anyrt
from anyrt import TaskInfo
from anyrt._introspect import describe_suspension, write_task_table

from ._task import AsyncioTask

if TYPE_CHECKING:
    from ._runtime import LoopRuntime

#: Frames in these directories are the runtime's, not the user's code.
_LIBRARY_DIRS: Final = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (anyrt.__file__, __file__)
)


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
            where = describe_suspension(task.get_coro(), _LIBRARY_DIRS, outermost_call=True)
            infos.append(TaskInfo(task.get_name(), "parked", where, now - born))
        else:
            infos.append(TaskInfo(task.get_name(), "scheduled", "", now - born))
    infos.sort(key=lambda info: -info.age)
    return infos


def dump_tasks(runtime: LoopRuntime, file: TextIO | None) -> None:
    """Write ``runtime.tasks()`` as a table to ``file`` (default: standard error)."""
    write_task_table(file, runtime, runtime.tasks())
