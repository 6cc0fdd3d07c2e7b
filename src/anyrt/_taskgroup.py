"""`TaskGroup`: structured concurrency on any executor."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager, suppress
from threading import Lock as _ThreadLock
from types import TracebackType
from typing import Any, Self, TypeVar, final

from ._exceptions import Cancelled
from ._protocols import Executor, Task
from ._sync import _check_executor
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
        "_cancelled_types",
        "_children",
        "_coros",
        "_errors",
        "_executor",
        "_lock",
        "_state",
    )

    def __init__(self, executor: Executor) -> None:
        self._executor = _check_executor(executor, "TaskGroup()")
        cancelled_exc = getattr(executor, "cancelled_exc", Cancelled)
        self._cancelled_types: tuple[type[BaseException], ...] = (Cancelled, cancelled_exc)
        self._lock = _ThreadLock()
        self._children: list[Task[Any]] = []
        # The children's own coroutines: one cancelled before it started is closed
        # here, so that it is not reported as "never awaited".
        self._coros: list[Coroutine[Any, Any, Any]] = []
        self._errors: list[BaseException] = []
        self._state = "new"

    def __repr__(self) -> str:
        running = sum(not child.done() for child in self._children)
        return f"<anyrt.TaskGroup {self._state}, {running} running>"

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
        if name is None:
            name = getattr(coro, "__qualname__", None)
        try:
            task = self._executor.spawn(self._supervise(coro), name=name)
        except BaseException:
            coro.close()
            raise
        with self._lock:
            self._children.append(task)
            self._coros.append(coro)
            cancel_now = bool(self._errors)
        if cancel_now:  # a sibling already failed: this one must not run on
            task.cancel()
        return task

    async def _supervise(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        except self._cancelled_types:
            raise
        except BaseException as exc:
            self._fail(exc)
            raise

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
        # Wait on the handles themselves: a child cancelled before its first step
        # never runs any code of ours, but its handle still completes. Once our own
        # task is cancelled, a runtime whose cancellation is level-triggered (trio)
        # would raise at every further wait: its ``_shield()`` lets us wait in peace.
        shield: Callable[[], AbstractContextManager[object]] | None = getattr(
            self._executor, "_shield", None
        )
        while True:
            with self._lock:
                pending = next((child for child in self._children if not child.done()), None)
            if pending is None:
                break
            try:
                if cancelled is not None and shield is not None:
                    with shield():  # see the note on ``shield`` above
                        await pending
                else:
                    await pending
            except self._cancelled_types as outer:
                if pending.done():
                    continue  # the child's own cancellation, seen through its handle
                # Our own task was cancelled: cancel the children, keep waiting for them.
                cancelled = outer
                self._cancel_children()
            except BaseException:  # a child's failure: _supervise recorded it
                continue
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
        # Their failures are reported through the group: mark every handle as seen
        # (all are done, so no await here suspends), so that the runtime's error
        # handler does not report them a second time.
        for child in self._children:
            with suppress(BaseException):
                await child
        for coro in self._coros:
            coro.close()  # a no-op unless the child was cancelled before it started
        self._coros.clear()
