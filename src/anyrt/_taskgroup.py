"""`TaskGroup`: structured concurrency on any executor, built on its cancel scopes."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from threading import Lock as _ThreadLock
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, final

from ._exceptions import Cancelled
from ._protocols import CancelScope, Executor, Sender, Task
from ._sync import _check_executor
from ._validate import check_coroutine

__all__ = ["TaskGroup", "TaskStatusHandle"]

T = TypeVar("T")


@final
class TaskGroup:
    """Spawn tasks that must all finish before the ``async with`` block exits.

    ``async with anyrt.TaskGroup(rt) as tg: tg.spawn(coro)``. On leaving the block the
    group waits for every child, however the block is left: it never leaves a child
    running. The first child failure cancels the group (`cancel_scope`: the block and
    every child); when all children have finished, the failures (and the block's own
    exception, if it raised) are raised together as an `ExceptionGroup`.

    A cancellation from outside (an enclosing scope, or ``Task.cancel`` of the task
    running the block) cancels the children too, waits for them, and propagates. A
    cancellation of the group's own scope (`cancel`, or its deadline) ends the group
    quietly.

    Args:
        executor: where the children are spawned, and whose cancel scopes the group uses.
    """

    __slots__ = (
        "_cancelled_types",
        "_children",
        "_coros",
        "_errors",
        "_executor",
        "_lock",
        "_public_scope",
        "_scope",
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
        self._scope: CancelScope = executor.cancel_scope()
        self._public_scope = _GroupScope(self)

    def __repr__(self) -> str:
        running = sum(not child.done() for child in self._children)
        return f"<anyrt.TaskGroup {self._state}, {running} running>"

    @property
    def cancel_scope(self) -> CancelScope:
        """The scope that covers the block and every child: cancel it, move its deadline.

        It is entered and exited by the group itself.
        """
        return self._public_scope

    def cancel(self) -> None:
        """Cancel the block and every child (``tg.cancel_scope.cancel()``); idempotent."""
        self._scope.cancel()
        self._cancel_children()

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a TaskGroup can be entered only once; create a new one")
        self._scope.__enter__()
        self._state = "open"
        return self

    # -- children ------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]:
        """Spawn ``coro`` as a child of this group and return its handle.

        Raises:
            RuntimeError: the group is not inside its ``async with`` block.
        """
        check_coroutine(coro, "TaskGroup.spawn")
        if name is None:
            name = getattr(coro, "__qualname__", None)
        return self._spawn(self._supervise(coro), coro, name)

    async def start(
        self, fn: Callable[..., Awaitable[Any]], *args: object, name: str | None = None
    ) -> Any:
        """Run ``fn(*args, task_status=status)`` as a child; return once it is ready.

        The child says it is ready with ``status.started(value)``, and `start` returns
        ``value``; from then on it runs in the group like a spawned child. If it fails
        or returns before calling ``started()``, `start` raises (its exception, or
        `RuntimeError`) and the group is not affected. If the task calling `start` is
        cancelled first, the child is cancelled and waited for.

        Raises:
            RuntimeError: the group is not inside its ``async with`` block, or the child
                returned without calling ``started()``.
        """
        if not callable(fn):
            raise TypeError(f"TaskGroup.start() takes an async function, not {type(fn).__name__}")
        sender: Sender[Any]
        sender, receiver = self._executor.oneshot()
        status: TaskStatusHandle[Any] = TaskStatusHandle(sender)
        if name is None:
            name = getattr(fn, "__qualname__", None)
        coro = self._supervise_start(fn, args, status)
        task = self._spawn(coro, coro, name)
        try:
            return await receiver
        except BaseException:
            if not task.done():  # our task was cancelled while the child was starting
                task.cancel()
                with self._executor.cancel_scope(shield=True), suppress(BaseException):
                    await task
            raise

    def _spawn(
        self, supervised: Coroutine[Any, Any, T], coro: Coroutine[Any, Any, Any], name: str | None
    ) -> Task[T]:
        if self._state not in {"open", "exiting"}:
            supervised.close()
            coro.close()
            raise RuntimeError(
                f"TaskGroup needs an active group to spawn in (this one is {self._state}); "
                "spawn inside 'async with anyrt.TaskGroup(rt) as tg:'"
            )
        try:
            task = self._executor.spawn(supervised, name=name)
        except BaseException:
            supervised.close()
            coro.close()
            raise
        with self._lock:
            self._children.append(task)
            self._coros.append(coro)
        if self._scope.cancel_called:  # the group is cancelled: this one must not run on
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

    async def _supervise_start(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[object, ...],
        status: TaskStatusHandle[Any],
    ) -> Any:
        try:
            result = await fn(*args, task_status=status)
        except BaseException as exc:
            if not status._started:
                status._sender.fail(exc)  # start() raises it; the group is not affected
            elif not isinstance(exc, self._cancelled_types):
                self._fail(exc)
            raise
        if not status._started:
            status._sender.fail(
                RuntimeError(
                    f"the task started with TaskGroup.start({getattr(fn, '__qualname__', fn)}) "
                    "returned without calling task_status.started()"
                )
            )
        return result

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
            first = len(self._errors) == 1
        if first:
            self.cancel()

    def _cancel_children(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.cancel()

    # -- leaving ---------------------------------------------------------------------------

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._state = "exiting"
        cancelled: BaseException | None = None
        if exc is not None:
            if isinstance(exc, self._cancelled_types):
                cancelled = exc
            else:
                with self._lock:
                    self._errors.append(exc)
            self.cancel()
        cancelled = await self._wait_for_children(cancelled)
        self._state = "closed"
        await self._observe_children()
        errors = list(self._errors)
        if errors:
            if cancelled is not None:
                errors.append(cancelled)
            group = BaseExceptionGroup("unhandled errors in an anyrt.TaskGroup", errors)
            if self._scope.__exit__(type(group), group, group.__traceback__):
                return exc is not None  # pragma: no cover - a scope swallows no errors
            raise group from None
        if cancelled is None:
            self._scope.__exit__(None, None, None)
            return False
        if self._scope.__exit__(type(cancelled), cancelled, cancelled.__traceback__):
            return exc is not None  # our own scope's cancellation: the block ends quietly
        if cancelled is exc:
            return False
        raise cancelled

    async def _wait_for_children(self, cancelled: BaseException | None) -> BaseException | None:
        """Wait until every child is done; return the cancellation seen meanwhile.

        Until a cancellation reaches us the waits are cancel points; from then on the
        children are cancelled and waited for under a shield.
        """
        executor = self._executor
        # A cancellation seen only through the handle of a child that ended cancelled
        # may be the child's (awaiting a cancelled task raises) or ours.
        unsure: BaseException | None = None
        # Children are only appended and a done child stays done, so the scan resumes
        # where it stopped: waiting for n children costs O(n), not O(n^2).
        children = self._children
        first_pending = 0
        while True:
            with self._lock:
                while first_pending < len(children) and children[first_pending].done():
                    first_pending += 1
                pending = children[first_pending] if first_pending < len(children) else None
            if pending is None:
                break
            try:
                if cancelled is not None:
                    with executor.cancel_scope(shield=True):
                        await pending
                else:
                    await pending
            except self._cancelled_types as seen:
                if cancelled is not None:
                    continue  # the shielded wait saw a child's own cancellation
                if pending.done() and pending.cancelled():
                    unsure = seen
                    continue
                cancelled = seen  # ours: cancel the children, keep waiting for them
                self._cancel_children()
            except BaseException:  # a child's failure: _supervise recorded it
                continue
        if cancelled is None and unsure is not None and self._effectively_cancelled():
            cancelled = unsure
        return cancelled

    def _effectively_cancelled(self) -> bool:
        current_deadline: Callable[[], float] | None = getattr(
            self._executor, "current_deadline", None
        )
        return current_deadline is not None and current_deadline() == -math.inf

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


@final
class TaskStatusHandle(Generic[T]):
    """The ``task_status`` of a task started with `TaskGroup.start`; an `anyrt.TaskStatus`."""

    __slots__ = ("_sender", "_started")

    def __init__(self, sender: Sender[T]) -> None:
        self._sender = sender
        self._started = False

    def __repr__(self) -> str:
        return f"<anyrt TaskStatus {'started' if self._started else 'starting'}>"

    def started(self, value: T = None) -> None:  # type: ignore[assignment]
        """Tell `TaskGroup.start` that the task is ready; it returns ``value``.

        Raises:
            RuntimeError: called a second time.
        """
        if self._started:
            raise RuntimeError("task_status.started() can be called only once")
        self._started = True
        self._sender.send(value)


@final
class _GroupScope:
    """`TaskGroup.cancel_scope`: the group's scope, whose cancel reaches the children too."""

    __slots__ = ("_group",)

    def __init__(self, group: TaskGroup) -> None:
        self._group = group

    def __repr__(self) -> str:
        return f"<anyrt TaskGroup scope {self._group._scope!r}>"

    @property
    def deadline(self) -> float:
        """When the group cancels itself (and its children)."""
        return self._group._scope.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._group._scope.deadline = value

    @property
    def shield(self) -> bool:
        """Whether the block is shielded from enclosing cancellations."""
        return self._group._scope.shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._group._scope.shield = value

    @property
    def cancel_called(self) -> bool:
        """True once the group was cancelled or its deadline passed."""
        return self._group._scope.cancel_called

    @property
    def cancelled_caught(self) -> bool:
        """True if the group's exit swallowed its own cancellation."""
        return self._group._scope.cancelled_caught

    def cancel(self) -> None:
        """Cancel the block and every child."""
        self._group.cancel()

    def __enter__(self) -> Self:
        raise RuntimeError("a TaskGroup's cancel scope is entered by the group itself")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        raise RuntimeError("a TaskGroup's cancel scope is exited by the group itself")
