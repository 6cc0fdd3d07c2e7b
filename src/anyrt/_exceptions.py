"""The exceptions anyrt raises, shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BackendNotFound",
    "BrokenResourceError",
    "BusyResourceError",
    "Cancelled",
    "ClosedResourceError",
    "Deadlock",
    "ParkedTask",
    "TaskError",
]


class Cancelled(BaseException):
    """Raised at every cancel point of a native task inside a cancelled scope.

    It derives from `BaseException` so that `except Exception:` does not swallow it.
    Catch it only to clean up, then re-raise: the cancel scope that caused it swallows
    it on exit (see `anyrt.CancelScope`). Awaiting a cancelled task raises `Cancelled`
    on every backend, adapters included.
    """


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


class BusyResourceError(RuntimeError):
    """Two tasks tried to use a resource that serves one at a time.

    For example a second concurrent ``receive()`` on one `anyrt.ByteStream`.
    """


class BrokenResourceError(RuntimeError):
    """A resource can no longer be used because an earlier operation on it failed.

    For example a `anyrt.ByteStream` after a ``send()`` was cancelled half-way: the
    peer may have received part of the data, so the stream's framing is lost.
    """


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
