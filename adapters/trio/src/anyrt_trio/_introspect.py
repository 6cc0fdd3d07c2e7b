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
from typing import TYPE_CHECKING, Final, TextIO

import trio

import anyrt
from anyrt import TaskInfo
from anyrt._introspect import describe_suspension, write_task_table

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

#: Frames in these directories are machinery, not the user's code.
_LIBRARY_DIRS: Final = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (anyrt.__file__, trio.__file__, __file__)
)


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
            where = describe_suspension(
                coro, _LIBRARY_DIRS, outermost_call=True, show_awaited=False
            )
            infos.append(TaskInfo(task.name, "parked", where, now - spawned))
    infos.sort(key=lambda info: -info.age)
    return infos


def dump_tasks(runtime: TrioRuntime, file: TextIO | None) -> None:
    """Write ``runtime.tasks()`` as a table to ``file`` (default: standard error)."""
    write_task_table(file, runtime, runtime.tasks())
