"""Where a trio runtime's objects may be used, and the error for using them elsewhere.

Each `TrioRuntime` has a trio run of its own, on one thread. Its sleeps, oneshots,
cancel scopes and streams only work in that run: awaited in another run (another trio
runtime's thread) they would register with the wrong scheduler and reactor, which
wakes nobody, so each checks the calling thread against its runtime's and raises a
`RuntimeError` that names both sides instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio
from trio.lowlevel import RunVar

from anyrt._native import running_native_runtime

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

__all__ = ["CURRENT", "Home", "foreign_error"]

#: The runtime bound to a run: the owning runtime inside its own thread, or the one
#: `anyrt_trio.current` made for a run it borrows.
CURRENT: RunVar[TrioRuntime] = RunVar("anyrt_trio.current")


class Home(Protocol):
    """The trio run a runtime's objects belong to: its thread, its token, its clock."""

    _ident: int
    _token: trio.lowlevel.TrioToken

    @property
    def name(self) -> str:
        """The backend's name."""
        ...

    def now(self) -> float:
        """The run's clock; any thread."""
        ...


def foreign_error(what: str, owner: Home) -> RuntimeError:
    """The error for ``what`` of runtime ``owner`` used outside the tasks of its run."""
    return RuntimeError(
        f"{what} of the {owner.name!r} runtime {owner!r} was used in {_here()}; use it in "
        "a task of its own runtime, and pass values between runtimes with a oneshot() "
        "Sender (safe from anywhere)"
    )


def _here() -> str:
    if trio.lowlevel.in_trio_run():
        try:
            return f"a task of another runtime, {CURRENT.get()!r}"
        except LookupError:
            return "a task of another trio run"
    native = running_native_runtime()
    if native is not None:
        return f"a task of another runtime, {native!r}"
    return "a thread that runs none of its tasks"
