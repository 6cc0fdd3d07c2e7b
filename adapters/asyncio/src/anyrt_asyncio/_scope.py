"""Level-triggered cancel scopes on asyncio, whose own cancellation is one-shot.

asyncio cancels a task once: ``Task.cancel()`` throws one `CancelledError` in at the
point where the task is suspended. anyrt's scopes stay cancelled (see
`anyrt.CancelScope`), so they are emulated as anyio does, in less code since a scope
here belongs to one task:

* Every task that entered a scope, or whose anyrt root scope was cancelled
  (`AsyncioTask.cancel`), has a `TaskCancels` record: its innermost scope (each scope
  links to its parent) and its root requests.
* The *culprit* is the innermost cancelled scope not hidden behind a shield, or the
  root. While a task has one, a callback runs once per loop iteration (`_deliver`):
  if the task is suspended and is not about to be woken with a result, it cancels the
  task the asyncio way, so a `CancelledError` is raised where the task waits - inside
  the scope - again and again until the exception has left it. Nothing runs for a
  task without a culprit.
* Deadlines share one timer per task, its *alarm*, set for the nearest deadline it
  has needed: a scope whose deadline is later arms nothing, so a ``fail_after`` around
  every round trip costs a few attribute writes. The alarm, when it rings, expires the
  scopes that are due and is set again for the next deadline of those still active.
  It holds its task weakly: a task that has finished is not kept for it.
* On exit a cancelled scope swallows the `CancelledError` unless an enclosing scope
  (or the root) is cancelled too, or a cancellation that is not ours arrived while it
  was active (asyncio's ``cancelling()`` count grew): outer wins.

A task anyrt did not spawn (the main task of ``asyncio.run``) has no root scope: its
``cancel()`` is asyncio's own. Each cancellation delivered to it counts in asyncio's
``cancelling()``, as any ``cancel()`` does, so the scope that swallows them withdraws
them again (``uncancel()``): `asyncio.timeout` and `asyncio.TaskGroup` around the
scope keep their arithmetic. An `AsyncioTask` keeps that count itself (see
`AsyncioTask.cancelling`): its root and asyncio-style requests, plus one while a
cancelled scope encloses it.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from asyncio import CancelledError
from contextlib import AbstractAsyncContextManager
from threading import get_ident
from types import TracebackType
from typing import Any, Final, Protocol, Self, final

from anyrt import Cancelled

from ._time import CallAt
from ._validate import check_deadline

__all__ = [
    "AsyncioCancelScope",
    "TaskCancels",
    "Timeout",
    "check_shield",
    "current_deadline",
    "is_level_cancelled",
    "scope_cancelling",
    "task_cancels",
]

_NEW: Final = 0
_ACTIVE: Final = 1
_EXITED: Final = 2
_STATE_NAMES: Final = ("new", "active", "exited")

#: What a cancelled scope swallows: asyncio's cancellation, and anyrt's (a cancelled
#: task joined inside it), as the native scopes swallow every `Cancelled`.
_CANCELLED: Final = (CancelledError, Cancelled)

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_task_cancel = asyncio.Task.cancel
_task_uncancel = asyncio.Task.uncancel


class ScopeHost(Protocol):
    """What a scope needs from its runtime: its loop, its thread, its clock."""

    _loop: asyncio.AbstractEventLoop
    # The thread that holds the loop, 0 if none, None if unknown (see _oneshot.Home).
    _thread: int | None
    _now: Any
    _call_at: CallAt

    @property
    def name(self) -> str: ...


def on_loop_thread(host: ScopeHost) -> bool:
    """True if the calling thread runs (or holds) ``host``'s loop."""
    return get_ident() == host._thread or _get_running_loop() is host._loop


@final
class TaskCancels:
    """The cancel scopes of one task, innermost first, and its root requests.

    Only ever touched on the loop's thread.
    """

    __slots__ = (
        "alarm",
        "alarm_at",
        "counted",
        "edge",
        "handle",
        "loop",
        "pending",
        "root",
        "scope",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, *, counted: bool) -> None:
        self.loop = loop
        self.scope: AsyncioCancelScope | None = None
        #: Outstanding root cancellations (`AsyncioTask.cancel` not withdrawn by uncancel).
        self.root = 0
        #: Outstanding asyncio-style ``AsyncioTask.cancel(msg)`` requests.
        self.edge = 0
        #: True if the deliveries count in asyncio's ``cancelling()`` (a plain task).
        self.counted = counted
        #: Deliveries that count and have not been withdrawn yet.
        self.pending = 0
        #: The scheduled `_deliver` callback, while the task has a culprit.
        self.handle: asyncio.Handle | None = None
        #: The timer of the task's nearest deadline (see the module's docstring), and when.
        self.alarm: Any = None
        self.alarm_at = math.inf

    def one_shot(self, task: asyncio.Task[Any]) -> int:
        """The requests of ``task``'s cancellation that are delivered once.

        Neither its scopes' nor its root's: asyncio's own, and ``cancel(msg)``.
        """
        if self.counted:
            return task.cancelling() - self.pending
        return self.edge

    def settle(self, task: asyncio.Task[Any]) -> None:
        """Withdraw the deliveries a swallowed cancellation left in ``cancelling()``."""
        while self.pending:
            self.pending -= 1
            _task_uncancel(task)

    def message(self, task: asyncio.Task[Any]) -> str:
        """The message of a delivery while the root is the culprit."""
        return f"task {task.get_name()!r} was cancelled"


# The records of tasks anyrt did not spawn; an `AsyncioTask` keeps its own.
_PLAIN_TASKS: weakref.WeakKeyDictionary[asyncio.Task[Any], TaskCancels] = (
    weakref.WeakKeyDictionary()
)


def task_cancels(task: asyncio.Task[Any], *, create: bool = True) -> TaskCancels | None:
    """``task``'s record (made on first use when ``create``)."""
    try:
        cancels: TaskCancels | None = task._anyrt_cancels  # type: ignore[attr-defined]
    except AttributeError:  # not an AsyncioTask
        cancels = _PLAIN_TASKS.get(task)
        if cancels is None and create:
            cancels = _PLAIN_TASKS[task] = TaskCancels(task.get_loop(), counted=True)
        return cancels
    if cancels is None and create:
        cancels = task._anyrt_cancels = TaskCancels(  # type: ignore[attr-defined]
            task.get_loop(), counted=False
        )
    return cancels


def _culprit(
    scope: AsyncioCancelScope | None, cancels: TaskCancels
) -> AsyncioCancelScope | TaskCancels | None:
    """The innermost cancelled scope from ``scope`` outwards up to a shield, or the root."""
    while scope is not None:
        if scope._cancel_called:
            return scope
        if scope._shield:
            return None
        scope = scope._parent
    return cancels if cancels.root else None


def refresh(task: asyncio.Task[Any], cancels: TaskCancels) -> None:
    """The chain changed: deliver to ``task`` if it has a culprit, else stop delivering."""
    culprit = _culprit(cancels.scope, cancels)
    if culprit is None:
        handle = cancels.handle
        if handle is not None:
            handle.cancel()
            cancels.handle = None
        return
    _deliver_now(task, cancels, culprit)
    if cancels.handle is None and not task.done():
        cancels.handle = cancels.loop.call_soon(_deliver, task, cancels)


def _deliver(task: asyncio.Task[Any], cancels: TaskCancels) -> None:
    """Once per loop iteration while ``task`` has a culprit: cancel it where it waits."""
    cancels.handle = None
    if task.done():
        return
    culprit = _culprit(cancels.scope, cancels)
    if culprit is None:
        return
    _deliver_now(task, cancels, culprit)
    cancels.handle = cancels.loop.call_soon(_deliver, task, cancels)


def _deliver_now(
    task: asyncio.Task[Any], cancels: TaskCancels, culprit: AsyncioCancelScope | TaskCancels
) -> None:
    if task.done() or _current_task(cancels.loop) is task:
        return  # running: the next `_deliver` finds it suspended
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    coming = task._must_cancel or (waiter is not None and waiter.cancelled())  # type: ignore[attr-defined]
    if waiter is not None and waiter.done() and not coming:
        return  # about to be woken with a result: deliver at its next suspension
    if coming and not cancels.counted:
        return  # a CancelledError is on its way: it serves the culprit too
    # On a plain task this also folds ours into a CancelledError already on its way,
    # so that asyncio's count shows it (an `asyncio.timeout` inside then lets us win).
    _task_cancel(task, culprit.message(task))
    if cancels.counted:
        cancels.pending += 1


def _set_alarm(task: asyncio.Task[Any], cancels: TaskCancels, host: ScopeHost, when: float) -> None:
    alarm = cancels.alarm
    if alarm is not None:
        alarm.cancel()
    cancels.alarm = host._call_at(when, _ring, (weakref.ref(task), host))
    cancels.alarm_at = when


def _ring(arg: tuple[weakref.ref[asyncio.Task[Any]], ScopeHost]) -> None:
    """A task's alarm: expire its scopes that are due, set it for the next deadline."""
    ref, host = arg
    task = ref()
    if task is None or task.done():
        return
    cancels = task_cancels(task, create=False)
    if cancels is None:
        return
    cancels.alarm = None
    cancels.alarm_at = math.inf
    now = host._now()
    nearest = math.inf
    expired = False
    scope = cancels.scope
    while scope is not None:
        deadline = scope._deadline
        if not scope._cancel_called and deadline != math.inf:
            if deadline <= now:  # else not yet: a timer may fire a little early
                scope._expired = scope._cancel_called = expired = True
            elif deadline < nearest:
                nearest = deadline
        scope = scope._parent
    if nearest != math.inf:
        _set_alarm(task, cancels, host, nearest)
    if expired:
        refresh(task, cancels)


def scope_cancelling(cancels: TaskCancels) -> int:
    """1 if a cancelled scope is the task's culprit, else 0: its share of ``cancelling()``."""
    return 0 if _culprit(cancels.scope, cancels) in (None, cancels) else 1


def is_level_cancelled(task: asyncio.Task[Any]) -> bool:
    """True if ``task`` has a culprit: its cancellation will be delivered again anyway."""
    cancels = task_cancels(task, create=False)
    return cancels is not None and _culprit(cancels.scope, cancels) is not None


def current_deadline(task: asyncio.Task[Any]) -> float:
    """The nearest deadline of ``task``'s scopes up to a shield; ``-inf`` if cancelled."""
    cancels = task_cancels(task, create=False)
    if cancels is None:
        return -math.inf if task.cancelling() else math.inf
    deadline = math.inf
    scope = cancels.scope
    while scope is not None:
        if scope._cancel_called:
            return -math.inf
        deadline = min(deadline, scope._deadline)
        if scope._shield:
            return deadline
        scope = scope._parent
    return -math.inf if cancels.root or cancels.one_shot(task) else deadline


def check_shield(shield: object) -> bool:
    """Return ``shield`` if it is a bool, else raise `TypeError`."""
    if not isinstance(shield, bool):
        raise TypeError(f"shield must be a bool, not {type(shield).__name__}")
    return shield


@final
class AsyncioCancelScope:
    """A cancel scope of an asyncio runtime; implements `anyrt.CancelScope`.

    Made by ``runtime.cancel_scope()``, ``move_on_after``/``move_on_at`` and
    ``fail_after``/``fail_at``; entered (``with``) in a task of that runtime's loop.
    """

    __slots__ = (
        "_at_enter",
        "_cancel_called",
        "_cancelled_caught",
        "_cancels",
        "_deadline",
        "_expired",
        "_fail",
        "_host",
        "_parent",
        "_shield",
        "_state",
        "_task",
    )

    def __init__(
        self, host: ScopeHost, deadline: float, shield: bool, *, fail: bool = False
    ) -> None:
        self._host = host
        self._deadline = deadline
        self._shield = shield
        self._fail = fail
        self._cancel_called = False
        self._cancelled_caught = False
        self._expired = False
        self._state = _NEW
        self._task: asyncio.Task[Any] | None = None
        self._cancels: TaskCancels | None = None
        self._parent: AsyncioCancelScope | None = None
        self._at_enter = 0  # the task's one-shot cancellations when it entered

    def __repr__(self) -> str:
        extra = ", cancelled" if self._cancel_called else ""
        if self._deadline != math.inf and not self._cancel_called:
            extra += f", deadline {self._deadline - self._host._now():+.3f} s from now"
        if self._shield:
            extra += ", shielded"
        return f"<anyrt_asyncio CancelScope {_STATE_NAMES[self._state]}{extra}>"

    # -- the public surface ---------------------------------------------------------

    @property
    def deadline(self) -> float:
        """When the scope cancels itself, on the runtime's clock (``math.inf``: never)."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = check_deadline(value, "CancelScope.deadline")
        if self._state == _ACTIVE:
            self._on_loop(self._arm)

    @property
    def shield(self) -> bool:
        """While True, cancellations of enclosing scopes do not reach inside."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._shield = check_shield(value)
        if self._state == _ACTIVE:
            self._on_loop(self._refresh_task)

    @property
    def cancel_called(self) -> bool:
        """True once `cancel` was called or the deadline passed."""
        return self._cancel_called

    @property
    def cancelled_caught(self) -> bool:
        """True if this scope's exit swallowed the cancellation it caused."""
        return self._cancelled_caught

    def cancel(self) -> None:
        """Cancel the scope; idempotent, safe from any thread, also before it is entered."""
        if self._cancel_called:
            return
        self._cancel_called = True
        # Set before the state is read: an `__enter__` racing on the loop's thread
        # either is seen here as active or sees the flag itself.
        if self._state == _ACTIVE:
            self._on_loop(self._refresh_task)

    def message(self, task: asyncio.Task[Any]) -> str:
        """The message of a `CancelledError` this scope delivers."""
        if self._expired:
            return "the deadline of an anyrt cancel scope passed"
        return "an anyrt cancel scope was cancelled"

    # -- on the loop's thread ----------------------------------------------------------

    def _on_loop(self, fn: Any) -> None:
        host = self._host
        if on_loop_thread(host):
            fn()
            return
        try:  # noqa: SIM105 - suppress() would hide which call may fail
            host._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed: no task can be inside any more
            pass

    def _refresh_task(self) -> None:
        task, cancels = self._task, self._cancels
        if self._state == _ACTIVE and task is not None and cancels is not None:
            refresh(task, cancels)

    def _arm(self) -> None:
        """The deadline is set (or moved): expire now if it has passed, else see the alarm."""
        task, cancels = self._task, self._cancels
        deadline = self._deadline
        if self._state != _ACTIVE or self._cancel_called or task is None or cancels is None:
            return
        if deadline == math.inf:
            return  # moved to never: an alarm set for it finds nothing due
        host = self._host
        if deadline <= host._now():
            self._expire_now()
        elif deadline < cancels.alarm_at:
            _set_alarm(task, cancels, host, deadline)

    def _expire_now(self) -> None:
        if self._state == _ACTIVE and not self._cancel_called:
            self._expired = True
            self._cancel_called = True
            self._refresh_task()

    # -- entering and leaving ----------------------------------------------------------

    def __enter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeError("a cancel scope can be entered only once; make a new one")
        host = self._host
        loop = host._loop
        on_loop = get_ident() == host._thread or _get_running_loop() is loop
        task = _current_task(loop) if on_loop else None
        if task is None:
            raise RuntimeError(
                f"a cancel scope of the {host.name!r} runtime must be entered inside one "
                "of its tasks (a task running on that runtime's event loop)"
            )
        cancels = task_cancels(task)
        assert cancels is not None
        self._task = task
        self._cancels = cancels
        self._parent = cancels.scope
        self._state = _ACTIVE
        cancels.scope = self
        self._at_enter = task.cancelling() - cancels.pending if cancels.counted else cancels.edge
        if self._cancel_called:
            refresh(task, cancels)
        elif self._deadline != math.inf:
            self._arm()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task, cancels = self._task, self._cancels
        if self._state != _ACTIVE or task is None or cancels is None:
            raise RuntimeError("this cancel scope was never entered, or was already exited")
        if cancels.scope is not self:
            raise RuntimeError(
                "cancel scopes exited out of order: an inner scope is still active (each "
                "scope must be exited by the task that entered it, innermost first)"
            )
        parent = self._parent
        self._state = _EXITED
        cancels.scope = parent
        # An exited scope keeps no task nor enclosing scopes alive.
        self._task = self._cancels = self._parent = None
        if not self._cancel_called:
            if self._shield:
                refresh(task, cancels)  # an enclosing cancellation can reach the task again
            return False
        refresh(task, cancels)
        if not self._shield and _culprit(parent, cancels) is not None:
            return False  # an enclosing scope is cancelled too: it wins
        foreign = cancels.one_shot(task) > self._at_enter
        cancels.settle(task)
        if exc is None or foreign:
            return False
        if not isinstance(exc, _CANCELLED):
            if not isinstance(exc, BaseExceptionGroup):
                return False
            matched, rest = exc.split(_CANCELLED)
            if matched is None:
                return False
            self._cancelled_caught = True
            if rest is not None:
                raise rest from None
        self._cancelled_caught = True
        if self._fail and self._expired:
            raise TimeoutError("the deadline of a fail_after()/fail_at() scope passed") from exc
        return True


@final
class Timeout(AbstractAsyncContextManager[None]):
    """``async with rt.timeout(s):``: exactly ``with rt.fail_after(s):``."""

    __slots__ = ("_scope",)

    def __init__(self, scope: AsyncioCancelScope) -> None:
        self._scope = scope

    def __repr__(self) -> str:
        return f"<anyrt_asyncio timeout {self._scope!r}>"

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._scope.__exit__(exc_type, exc, tb)

    def _expire(self) -> None:
        """Act as if the deadline passed now (tests line it up with a race)."""
        scope = self._scope
        scope._deadline = min(scope._deadline, scope._host._now())
        scope._expire_now()
