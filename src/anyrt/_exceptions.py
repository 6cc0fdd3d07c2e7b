"""The exceptions anyrt raises, shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BackendNotFound",
    "Cancelled",
    "ClosedResourceError",
    "Deadlock",
    "ParkedTask",
    "TaskError",
]


class Cancelled(BaseException):
    """Thrown into a native task at its next suspension point when it is cancelled.

    It derives from `BaseException` so that `except Exception:` does not swallow it.
    Catch it only to clean up, then re-raise. Awaiting a cancelled task raises
    `Cancelled` on every backend, adapters included.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        # The timeout scope that caused this cancellation, if any; private.
        self._anyrt_scope: object | None = None


class Deadlock(RuntimeError):
    """`block_on` on `single-threaded` can never finish: nothing is ready, no timer is pending.

    Attributes:
        parked: every parked task and where it is suspended.
    """

    def __init__(self, message: str, parked: Sequence[ParkedTask]) -> None:
        super().__init__(message)
        self.parked: tuple[ParkedTask, ...] = tuple(parked)


@dataclass(frozen=True, slots=True)
class ParkedTask:
    """A task that is suspended, and where."""

    name: str
    where: str

    def __str__(self) -> str:
        return f"{self.name!r} suspended at {self.where}"


class BackendNotFound(LookupError):
    """The requested backend is not installed or does not exist."""


class ClosedResourceError(RuntimeError):
    """A stream, listener, channel or runtime was used after it was closed."""


@dataclass(frozen=True, slots=True)
class TaskError:
    """A task failure that nobody will observe, handed to the runtime's error handler.

    Attributes:
        task_name: the name of the failed task.
        exception: what it raised (its `__traceback__` is set).
        reason: ``"detached"`` if the task was detached, ``"never awaited"`` if its
            handle was dropped without being awaited.
    """

    task_name: str
    exception: BaseException
    reason: str
