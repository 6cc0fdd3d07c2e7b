"""Cancel scopes for the native tasks: `NativeCancelScope`, and `timeout()` on any scope.

A scope is entered by one task and joins that task's chain of scopes (see
`anyrt._task`). Cancelling it - `cancel`, or its deadline timer firing - marks it and
asks the task to recompute its culprit; the task then raises `Cancelled` at every
cancel point until the exception leaves the scope, whose exit swallows it unless an
enclosing scope is cancelled too (outer wins).

Deadlines cost no timer per scope. Each task has at most one live *alarm*, a timer
entry at the nearest deadline it has needed so far (``task._alarm_at``). Entering a
scope whose deadline is later than the alarm pushes nothing: the alarm fires first, and
then walks the task's scopes, expires those whose deadline has passed, and re-arms
itself for the nearest deadline still ahead. So a ``fail_after(10)`` around each of a
million round trips pushes one timer every ten seconds, not a million. An alarm is only
ever replaced by an earlier one (under the task's guard); a replaced alarm that fires
does nothing.

Why entering need not lock: it links the scope into the chain *before* it reads
``_alarm_at``, and a firing alarm resets ``_alarm_at`` *before* it walks the chain. If
the entering task read the old alarm's deadline, the reset came later, so the walk
sees the new scope.
"""

from __future__ import annotations

import math
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, final

from ._exceptions import Cancelled
from ._timers import TimerEntry
from ._validate import check_deadline

if TYPE_CHECKING:
    from ._protocols import CancelScope
    from ._task import NativeTask, Worker
    from ._timers import TimerQueue

__all__ = ["Alarm", "NativeCancelScope", "TimeoutContext", "expire_scopes", "post_alarm"]

_NEW: Final = 0
_ACTIVE: Final = 1
_EXITED: Final = 2


class ScopeHost(Protocol):
    """What a scope needs from its native runtime."""

    _now_fn: Any

    @property
    def name(self) -> str: ...

    def _current(self) -> tuple[NativeTask[Any], Worker] | None: ...

    def _post_alarm(self, alarm: Alarm) -> None: ...


class Alarm(TimerEntry):
    """The one live deadline timer of a task (see the module docstring)."""

    __slots__ = ("queue", "task")

    def __init__(self, deadline: float, task: NativeTask[Any]) -> None:
        super().__init__(deadline)
        self.task = task
        #: The queue it was pushed on, where it re-arms (set by whoever pushes it).
        self.queue: TimerQueue | None = None

    def fire(self) -> None:
        self.task._alarm_fired(self)


def expire_scopes(scope: NativeCancelScope | None, now: float) -> float:
    """Expire every scope of a chain whose deadline has passed; return the next one."""
    nearest = math.inf
    while scope is not None:
        deadline = scope._deadline
        if deadline <= now:
            if not scope._cancel_called:
                scope._expired = True
                scope.cancel()
        elif deadline < nearest and not scope._cancel_called:
            nearest = deadline
        scope = scope._parent
    return nearest


@final
class NativeCancelScope:
    """A cancel scope of a native runtime; implements `anyrt.CancelScope`.

    Made by ``runtime.cancel_scope()``, ``move_on_after``/``move_on_at`` and
    ``fail_after``/``fail_at``.
    """

    __slots__ = (
        "_cancel_called",
        "_cancelled_caught",
        "_deadline",
        "_expired",
        "_fail",
        "_parent",
        "_runtime",
        "_shield",
        "_state",
        "_task",
    )

    def __init__(
        self, runtime: ScopeHost, deadline: float, shield: bool, fail: bool = False
    ) -> None:
        self._runtime = runtime
        self._deadline = deadline
        self._shield = shield
        self._fail = fail
        self._cancel_called = False
        self._cancelled_caught = False
        self._expired = False
        self._state = _NEW
        self._task: NativeTask[Any] | None = None
        self._parent: NativeCancelScope | None = None

    def __repr__(self) -> str:
        state = ("new", "active", "exited")[self._state]
        extra = ", cancelled" if self._cancel_called else ""
        if self._deadline != math.inf and not self._cancel_called:
            extra += f", deadline {self._deadline - self._runtime._now_fn():+.3f} s from now"
        if self._shield:
            extra += ", shielded"
        return f"<anyrt CancelScope {state}{extra}>"

    # -- the public surface ---------------------------------------------------------

    @property
    def deadline(self) -> float:
        """When the scope cancels itself, on the runtime's clock (``math.inf``: never)."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = deadline = check_deadline(value, "CancelScope.deadline")
        task = self._task
        if self._state != _ACTIVE or task is None or self._cancel_called:
            return
        runtime = self._runtime
        if deadline <= runtime._now_fn():
            self._expired = True
            self.cancel()
        elif deadline < task._alarm_at:
            current = runtime._current()
            task._arm(deadline, current[1].timers if current is not None else None)

    @property
    def shield(self) -> bool:
        """While True, cancellations of enclosing scopes do not reach inside."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"CancelScope.shield takes a bool, not {type(value).__name__}")
        self._shield = value
        task = self._task
        if task is not None and self._state == _ACTIVE:
            task._scopes_changed()

    @property
    def cancel_called(self) -> bool:
        """True once `cancel` was called or the deadline passed."""
        return self._cancel_called

    @property
    def cancelled_caught(self) -> bool:
        """True if this scope's exit swallowed the cancellation it caused."""
        return self._cancelled_caught

    def cancel(self) -> None:
        """Cancel the scope; idempotent, safe from any thread."""
        if self._cancel_called:
            return
        self._cancel_called = True
        task = self._task
        if task is not None and self._state == _ACTIVE:
            task._scopes_changed()

    # -- entering and leaving ----------------------------------------------------------

    def __enter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeError("a cancel scope can be entered only once; make a new one")
        runtime = self._runtime
        current = runtime._current()
        if current is None:
            raise RuntimeError(
                f"a cancel scope of the {runtime.name!r} runtime must be entered inside "
                "one of its tasks"
            )
        task, worker = current
        self._task = task
        self._parent = task._scope
        self._state = _ACTIVE
        task._scope = self
        deadline = self._deadline
        if deadline != math.inf and not self._cancel_called:
            if deadline <= runtime._now_fn():
                self._expired = True
                self._cancel_called = True
            elif deadline < task._alarm_at:  # read after linking: see the docstring
                task._arm(deadline, worker.timers)
        if self._cancel_called or self._shield:
            task._scopes_changed()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task = self._task
        if self._state != _ACTIVE or task is None:
            raise RuntimeError("this cancel scope was never entered, or was already exited")
        if task._scope is not self:
            raise RuntimeError(
                "cancel scopes exited out of order: an inner scope is still active (each "
                "scope must be exited by the task that entered it, innermost first)"
            )
        self._state = _EXITED
        task._scope = self._parent
        if self._cancel_called or self._shield:
            task._scopes_changed()
        if exc is None or not self._cancel_called:
            return False
        if not self._shield and task._find_culprit(self._parent) is not None:
            return False  # an enclosing scope is cancelled too: it wins
        if not isinstance(exc, Cancelled):
            if not isinstance(exc, BaseExceptionGroup):
                return False
            matched, rest = exc.split(Cancelled)
            if matched is None:
                return False
            self._cancelled_caught = True
            if rest is not None:
                raise rest from None
        self._cancelled_caught = True
        if self._fail and self._expired:
            raise TimeoutError("the deadline of a fail_after()/fail_at() scope passed") from exc
        return True

    def _cancelled_exception(self) -> Cancelled:
        """What a cancel point raises while this scope is the task's culprit."""
        if self._expired:
            return Cancelled("the deadline of a cancel scope passed")
        return Cancelled("a cancel scope was cancelled")


def current_deadline(task: NativeTask[Any]) -> float:
    """The nearest deadline of ``task``'s scopes up to a shield; ``-inf`` if cancelled."""
    deadline = math.inf
    scope = task._scope
    while scope is not None:
        if scope._cancel_called:
            return -math.inf
        deadline = min(deadline, scope._deadline)
        if scope._shield:
            return deadline
        scope = scope._parent
    return -math.inf if task._cancel_requested else deadline


@final
class TimeoutContext(AbstractAsyncContextManager[None]):
    """``async with rt.timeout(s):``: exactly ``with rt.fail_after(s):``, on any runtime."""

    __slots__ = ("_scope",)

    def __init__(self, scope: CancelScope) -> None:
        self._scope = scope

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._scope.__exit__(exc_type, exc, tb)


def post_alarm(loop: Any, alarm: Alarm) -> None:
    """Push ``alarm`` on ``loop``'s timer queue from any thread, through its inbox."""
    loop.post(partial(_push_later, loop, alarm))


def _push_later(loop: Any, alarm: Alarm) -> None:
    queue = alarm.queue = loop.timers
    queue.push(alarm)
