"""The ``uvloop`` backend: `AsyncioRuntime` on a uvloop event loop.

This module imports uvloop at import time, so that selecting the backend without uvloop
installed fails while the entry point loads - which `anyrt.runtime` reports as
`anyrt.BackendNotFound`, naming ``anyrt[uvloop]`` - rather than later.

With ``clock="virtual"`` the loop is a `VirtualTimeUvloop` (see `_uvloop_virtual`):
uvloop's timers and idle wait are in C, so its timers are kept in Python instead and a
probe callback watches uvloop's ready queue to tell when the loop is idle.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, final

import uvloop

from anyrt import VirtualClock

from ._runtime import AsyncioRuntime
from ._task import ErrorHandler
from ._uvloop_virtual import VirtualTimeUvloop


@final
class UvloopRuntime(AsyncioRuntime):
    """`AsyncioRuntime` on a new uvloop event loop; the ``uvloop`` backend.

    Args:
        debug: run the loop in asyncio's debug mode.
        clock: ``"real"`` (default), ``"virtual"`` or a `anyrt.VirtualClock`: with
            virtual time, idle time jumps to the next deadline (see
            ``anyrt_asyncio._uvloop_virtual``), as on the ``asyncio`` backend.
        error_handler: receives failures nobody will observe (default: log them).
    """

    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"clock": "virtual"})

    def __init__(
        self,
        *,
        debug: bool = False,
        clock: VirtualClock | str = "real",
        error_handler: ErrorHandler | None = None,
    ) -> None:
        real = clock in ("real", "monotonic", None)
        super().__init__(
            loop_factory=uvloop.new_event_loop if real else None,
            debug=debug,
            clock=clock,
            error_handler=error_handler,
        )

    def _virtual_loop(self, clock: VirtualClock) -> asyncio.AbstractEventLoop:
        """Make the loop for a virtual ``clock``: uvloop with Python-level timers."""
        return VirtualTimeUvloop(clock)


if TYPE_CHECKING:
    from anyrt import Runtime

    def _is_a_runtime(runtime: UvloopRuntime) -> Runtime:
        """Never called: ``mypy --strict`` checks that UvloopRuntime is an anyrt.Runtime."""
        return runtime
