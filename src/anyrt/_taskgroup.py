"""`TaskGroup`: structured concurrency on any executor."""

from __future__ import annotations

from collections.abc import Coroutine
from contextlib import suppress
from threading import Lock as _ThreadLock
from types import TracebackType
from typing import Any, Self, TypeVar, final

from ._exceptions import Cancelled
from ._protocols import Executor, Sender, Task
from ._sync import _check_executor, _oneshot
from ._task import check_coroutine

__all__ = ["TaskGroup"]

T = TypeVar("T")


@final
class TaskGroup:
    """Spawn tasks that must all finish before the ``async with`` block exits.

    ``async with anyrt.TaskGroup(rt) as tg: tg.spawn(coro)``. On leaving the block the
    group waits for every child. The first child failure cancels the other children;
    when all have finished, the failures (and the block's own exception, if it raised)
    are raised together as an `ExceptionGroup`. Cancelling the task that runs the block
    cancels the children too, and the cancellation propagates once they are done.

    Args:
        executor: where the children are spawned.
    """

    __slots__ = (
        "_all_done",
        "_cancelled_types",
        "_children",
        "_errors",
        "_executor",
        "_failed",
        "_lock",
        "_pending",
        "_state",
    )

    def __init__(self, executor: Executor) -> None:
        self._executor = _check_executor(executor, "TaskGroup()")
        cancelled_exc = getattr(executor, "cancelled_exc", Cancelled)
        self._cancelled_types: tuple[type[BaseException], ...] = (Cancelled, cancelled_exc)
        self._lock = _ThreadLock()
        self._children: list[Task[Any]] = []
        self._errors: list[BaseException] = []
        self._failed: list[Task[Any]] = []
        self._pending = 0
        self._all_done: Sender[None] | None = None
        self._state = "new"

    def __repr__(self) -> str:
        return f"<anyrt.TaskGroup {self._state}, {self._pending} running>"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a TaskGroup can be entered only once; create a new one")
        self._state = "open"
        return self

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]:
        """Spawn ``coro`` as a child of this group and return its handle.

        Raises:
            RuntimeError: the group is not inside its ``async with`` block.
        """
        check_coroutine(coro, "TaskGroup.spawn")
        if self._state not in {"open", "exiting"}:
            coro.close()
            raise RuntimeError(
                f"TaskGroup.spawn() needs an active group (this one is {self._state}); "
                "spawn inside 'async with anyrt.TaskGroup(rt) as tg:'"
            )
        with self._lock:
            self._pending += 1
        if name is None:
            name = getattr(coro, "__qualname__", None)
        try:
            task = self._executor.spawn(self._supervise(coro), name=name)
        except BaseException:
            coro.close()
            self._child_done()
            raise
        with self._lock:
            self._children.append(task)
        return task

    async def _supervise(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        except self._cancelled_types:
            raise
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self._child_done()

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
            first = len(self._errors) == 1
        if first:
            self._cancel_children()

    def _cancel_children(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.cancel()

    def _child_done(self) -> None:
        with self._lock:
            self._pending -= 1
            notify = self._all_done if self._pending == 0 else None
            if notify is not None:
                self._all_done = None
        if notify is not None:
            notify.send(None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "exiting"
        cancelled: BaseException | None = None
        if exc is not None:
            if isinstance(exc, self._cancelled_types):
                cancelled = exc
            else:
                with self._lock:
                    self._errors.append(exc)
            self._cancel_children()
        while True:
            sender, receiver = _oneshot(self._executor)
            with self._lock:
                if self._pending == 0:
                    break
                self._all_done = sender
            try:
                await receiver
            except self._cancelled_types as outer:
                # Our own task was cancelled: cancel the children, keep waiting for them.
                cancelled = outer
                self._cancel_children()
        self._state = "closed"
        await self._observe_children()
        if self._errors:
            errors = list(self._errors)
            plain = [error for error in errors if isinstance(error, Exception)]
            if len(plain) == len(errors):
                raise ExceptionGroup("unhandled errors in an anyrt.TaskGroup", plain) from None
            raise BaseExceptionGroup("unhandled errors in an anyrt.TaskGroup", errors) from None
        if cancelled is not None and cancelled is not exc:
            raise cancelled

    async def _observe_children(self) -> None:
        # Their failures are reported through the group; mark each handle as seen so
        # the runtime's error handler does not report them a second time.
        for child in self._children:
            with suppress(BaseException):
                await child
        self._children.clear()
