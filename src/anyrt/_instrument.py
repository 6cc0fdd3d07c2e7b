"""Instrumentation hooks for the native runtimes: `Instrument` and ``runtime.instrument()``.

Zero cost until used: installing the first instrument swaps the runtime's task class
for a subclass that reports each event, so tasks spawned before it (and every task of
a runtime without instruments) run the plain hot paths.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from ._task import DONE, PARKED, NativeTask

if TYPE_CHECKING:
    from ._task import Worker

logger = logging.getLogger("anyrt")


class Instrument:
    """Receives task events from a native runtime; override the methods you need.

    Each method runs on the thread where the event happens (a worker, a core, or the
    thread that spawned or woke the task), so an instrument used on a threaded runtime
    must be thread-safe. An exception raised by a method is logged and the event
    otherwise ignored: an instrument cannot break the runtime.
    """

    def task_spawned(self, task: NativeTask[Any]) -> None:
        """``task`` was created by ``spawn`` (or ``block_on``, ``spawn_local``...)."""

    def task_scheduled(self, task: NativeTask[Any]) -> None:
        """``task`` was parked and has been woken: it is queued to run."""

    def task_suspended(self, task: NativeTask[Any]) -> None:
        """``task`` ran a step and parked (it waits for something)."""

    def task_finished(self, task: NativeTask[Any]) -> None:
        """``task`` ended: returned, raised, or was cancelled."""


def emit(task: NativeTask[Any], event: str) -> None:
    for instrument in task._sink._instruments:
        try:
            getattr(instrument, event)(task)
        except Exception:
            logger.exception("anyrt: instrument %r failed in %s", instrument, event)


@cache
def instrumented(task_class: type[NativeTask[Any]]) -> type[NativeTask[Any]]:
    """The subclass of ``task_class`` that reports its events to the instruments."""

    class Instrumented(task_class):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def wake(self) -> None:
            if self._state == PARKED:
                emit(self, "task_scheduled")
            super().wake()

        def step(self, worker: Worker) -> bool:
            ready: bool = super().step(worker)
            state = self._state
            if state == PARKED:
                emit(self, "task_suspended")
            elif state == DONE:
                emit(self, "task_finished")
            del self  # see NativeTask.step: a failed task's traceback keeps this frame
            return ready

    Instrumented.__name__ = Instrumented.__qualname__ = f"Instrumented{task_class.__name__}"
    return Instrumented
