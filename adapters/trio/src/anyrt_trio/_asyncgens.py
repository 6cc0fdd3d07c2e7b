"""Async generators on an owned trio run: finalised on the runtime, as on asyncio.

``trio.run`` installs hooks of its own (``sys.set_asyncgen_hooks``, per thread), made
for a run that ends with its main function: an abandoned generator gets a
`ResourceWarning`, and those still alive when the run ends are closed inside a
cancelled scope, so a cleanup that awaits is cancelled. A `TrioRuntime` has the native
runtimes' hooks instead, installed on its own trio thread when its run starts:

* an abandoned generator (the garbage collector, on any thread, calls the finalizer)
  is handed to the trio thread, where its ``aclose()`` runs as a detached task of the
  runtime: a failure in its ``finally`` goes to the runtime's error handler;
* `close` closes the generators still alive once every task has ended, uncancelled,
  so their cleanup may await.

A runtime borrowed with `anyrt_trio.current` leaves the hooks to the run's owner.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import TYPE_CHECKING, Any, final

import trio

from anyrt import TaskError

if TYPE_CHECKING:
    from ._runtime import TrioRuntime

__all__ = ["AsyncGenFinalizer"]

_AsyncGen = AsyncGenerator[Any, Any]


@final
class AsyncGenFinalizer:
    """The async-generator hooks of one owned trio run.

    Args:
        runtime: the runtime whose run the hooks are installed in.
    """

    __slots__ = ("_abandoned", "_alive", "_runtime")

    def __init__(self, runtime: TrioRuntime) -> None:
        self._runtime = runtime
        # First iterated in the run and not finished: `close` finalises these.
        self._alive: weakref.WeakSet[_AsyncGen] = weakref.WeakSet()
        # Abandoned once no task could be spawned any more: kept alive for `close`
        # (a finalizer hook runs once per generator).
        self._abandoned: list[_AsyncGen] = []

    def install(self) -> None:
        """Replace trio's hooks on the calling (trio) thread, in the run."""
        sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)

    def _firstiter(self, agen: _AsyncGen) -> None:
        self._alive.add(agen)

    def _finalizer(self, agen: _AsyncGen) -> None:
        # Called by the garbage collector, anywhere: hand the generator to the run.
        with suppress(trio.RunFinishedError):
            self._runtime._token.run_sync_soon(self._finalize, agen)

    def _finalize(self, agen: _AsyncGen) -> None:
        """Close an abandoned generator in a detached task (on the trio thread)."""
        self._alive.discard(agen)
        if getattr(agen, "ag_frame", None) is None:  # finished already
            return
        try:
            task = self._runtime.spawn(agen.aclose(), name=_aclose_name(agen))
        except RuntimeError:  # the runtime is closing: `close_alive` will do it
            self._abandoned.append(agen)
            return
        task.detach()

    async def close_alive(self) -> None:
        """Close every generator still alive, concurrently and uncancelled.

        For the end of the run, once every task has ended; failures go to the error
        handler.
        """
        while self._alive or self._abandoned:
            agens = [*self._alive, *self._abandoned]
            self._alive = weakref.WeakSet()
            self._abandoned = []
            async with trio.open_nursery() as nursery:
                for agen in agens:
                    if getattr(agen, "ag_frame", None) is not None:
                        nursery.start_soon(self._aclose, agen, name=_aclose_name(agen))

    async def _aclose(self, agen: _AsyncGen) -> None:
        try:
            await agen.aclose()
        except BaseException as exc:
            self._runtime._report(TaskError(_aclose_name(agen), exc, "detached"))


def _aclose_name(agen: _AsyncGen) -> str:
    return f"aclose of {getattr(agen, '__qualname__', agen)}"
