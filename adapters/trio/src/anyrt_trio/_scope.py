"""Cancel scopes on trio: `TrioCancelScope`, a thin `anyrt.CancelScope` over `trio.CancelScope`.

trio's own scopes already have anyrt's semantics: cancellation is level-triggered, a
shield keeps enclosing cancellations out, and on exit a scope swallows its
`trio.Cancelled` only if no enclosing unshielded scope is cancelled too (outer wins).
The wrapper adds what the contract asks beyond that:

* a scope belongs to one runtime: entering it anywhere but in a task of that runtime's
  run raises `RuntimeError` (a bare trio scope joins whichever run enters it);
* `cancel` and the setters work from any thread: trio's touch the run's state, so from
  another thread they are posted to the trio thread with the run's token, and the
  wrapper answers for them at once (`cancel_called` is True when `cancel` returns);
* ``fail_after``/``fail_at`` scopes raise the builtin `TimeoutError`, and only for their
  own deadline: `trio.fail_after` raises `trio.TooSlowError` after a `cancel` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import suppress
from threading import get_ident
from types import TracebackType
from typing import Final, Self, final

import trio

from anyrt._validate import check_deadline

from ._home import Home, foreign_error

__all__ = ["TrioCancelScope"]

_NEVER: Final = math.inf
_NEW: Final = 0
_ACTIVE: Final = 1
_EXITED: Final = 2
_STATE_NAMES: Final = ("new", "active", "exited")


@final
class TrioCancelScope:
    """A cancel scope of a trio runtime; implements `anyrt.CancelScope`.

    Made by ``runtime.cancel_scope()``, ``move_on_after``/``move_on_at`` and
    ``fail_after``/``fail_at``. `trio_scope` is the `trio.CancelScope` it drives.
    """

    __slots__ = (
        "_by_hand",
        "_cancel_called",
        "_deadline",
        "_fail",
        "_home",
        "_scope",
        "_shield",
        "_state",
    )

    def __init__(self, home: Home, deadline: float, shield: bool, *, fail: bool = False) -> None:
        # Keyword arguments cost trio's constructor a third more: pass only those needed.
        if shield:
            self._scope = trio.CancelScope(deadline=deadline, shield=True)
        elif deadline == _NEVER:
            self._scope = trio.CancelScope()
        else:
            self._scope = trio.CancelScope(deadline=deadline)
        self._home = home
        self._fail = fail
        self._state = _NEW
        # What the last setter asked for: a setter called from another thread is
        # applied on the trio thread a little later, but reads back at once.
        self._deadline = deadline
        self._shield = shield
        # cancel() was called (set at once, on any thread).
        self._cancel_called = False
        # The trio scope was cancelled by cancel() before its deadline passed: its exit
        # is then no timeout.
        self._by_hand = False

    def __repr__(self) -> str:
        extra = ", cancelled" if self.cancel_called else ""
        if self._shield:
            extra += ", shielded"
        return f"<anyrt trio CancelScope {_STATE_NAMES[self._state]}{extra}>"

    @property
    def trio_scope(self) -> trio.CancelScope:
        """The `trio.CancelScope` underneath (cancel it through this object)."""
        return self._scope

    # -- the public surface ---------------------------------------------------------

    @property
    def deadline(self) -> float:
        """When the scope cancels itself, on the runtime's clock (``math.inf``: never)."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = check_deadline(value, "CancelScope.deadline")
        if get_ident() == self._home._ident:
            self._scope.deadline = self._deadline
        else:
            self._post(self._apply_deadline)

    def _apply_deadline(self) -> None:
        self._scope.deadline = self._deadline

    @property
    def shield(self) -> bool:
        """While True, cancellations of enclosing scopes do not reach inside."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"CancelScope.shield takes a bool, not {type(value).__name__}")
        self._shield = value
        if get_ident() == self._home._ident:
            self._scope.shield = value
        else:
            self._post(self._apply_shield)

    def _apply_shield(self) -> None:
        self._scope.shield = self._shield

    @property
    def cancel_called(self) -> bool:
        """True once `cancel` was called or the deadline passed."""
        if self._cancel_called:
            return True
        try:
            return self._scope.cancel_called  # also checks the deadline against the clock
        except RuntimeError:
            # Off the trio thread, trio cannot read its clock (and so its own flag is
            # False): check the deadline on the runtime's clock instead.
            return self._state != _EXITED and self._deadline <= self._home.now()

    @property
    def cancelled_caught(self) -> bool:
        """True if this scope's exit swallowed the cancellation it caused."""
        return self._scope.cancelled_caught

    def cancel(self) -> None:
        """Cancel the scope; idempotent, safe from any thread, also before it is entered."""
        if self._cancel_called:
            return
        self._cancel_called = True
        if get_ident() == self._home._ident:
            self._cancel_here()
        else:
            self._post(self._cancel_here)

    def _cancel_here(self) -> None:
        scope = self._scope
        if not scope.cancel_called:  # True already if the deadline has passed: it expired
            self._by_hand = True
            scope.cancel()

    def _post(self, fn: Callable[[], object]) -> None:
        # If the run is over, no task is inside the scope and none ever will be.
        with suppress(trio.RunFinishedError):
            self._home._token.run_sync_soon(fn)

    # -- entering and leaving ----------------------------------------------------------

    def __enter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeError("a cancel scope can be entered only once; make a new one")
        if get_ident() != self._home._ident:
            raise foreign_error("a cancel scope", self._home)
        self._scope.__enter__()  # RuntimeError outside a task (a run_sync_soon callback)
        self._state = _ACTIVE
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._state != _ACTIVE:
            raise RuntimeError("this cancel scope was never entered, or was already exited")
        self._state = _EXITED
        # trio raises RuntimeError for an out-of-order exit, and raises what is left
        # of an exception group once it has taken its own Cancelled out of it.
        swallowed = self._scope.__exit__(exc_type, exc, tb)
        if exc is None:
            return False
        if swallowed and self._fail and not self._by_hand:
            raise TimeoutError("the deadline of a fail_after()/fail_at() scope passed") from exc
        return swallowed
