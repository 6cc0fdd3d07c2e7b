"""The ``uvloop`` backend: `AsyncioRuntime` on a uvloop event loop.

This module imports uvloop at import time, so that selecting the backend without uvloop
installed fails while the entry point loads - which `anyrt.runtime` reports as
`anyrt.BackendNotFound`, naming ``anyrt[uvloop]`` - rather than later.

uvloop has no virtual time. On the selector loop, virtual time works because the loop's
idle wait is a Python ``selector.select(timeout)`` call that can be replaced, and its
timers read a Python ``time()``. uvloop's loop is libuv's: the timers are libuv timers on
libuv's own millisecond clock, the wait is ``epoll_wait`` inside ``uv_run`` with a
timeout libuv computes from those timers, and the ready queue it runs is not visible
from Python. So "nothing is ready, only timers are pending" cannot be observed, and
jumping the clock without observing it would cut real work short. ``clock="virtual"``
raises `ValueError` naming the ``asyncio`` backend, which runs the same code on the
selector loop with virtual time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, final

import uvloop

from ._runtime import AsyncioRuntime, LoopRuntime
from ._task import ErrorHandler


@final
class UvloopRuntime(AsyncioRuntime):
    """`AsyncioRuntime` on a new uvloop event loop; the ``uvloop`` backend.

    Args:
        debug: run the loop in asyncio's debug mode.
        clock: ``"real"`` only (see the module's documentation for why).
        error_handler: receives failures nobody will observe (default: log them).

    Raises:
        ValueError: ``clock`` is not ``"real"``.
    """

    capabilities: tuple[str, ...] = LoopRuntime.capabilities
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def __init__(
        self,
        *,
        debug: bool = False,
        clock: str = "real",
        error_handler: ErrorHandler | None = None,
    ) -> None:
        if clock != "real":
            raise ValueError(
                f"the uvloop backend runs on real time only (clock={clock!r}): libuv's "
                "timers and its idle wait are in C and consult no Python clock, so idle time "
                "cannot be detected and skipped. For virtual time use "
                "anyrt.runtime('asyncio', clock='virtual'), the same asyncio code on the "
                "selector loop."
            )
        super().__init__(
            loop_factory=uvloop.new_event_loop, debug=debug, error_handler=error_handler
        )


if TYPE_CHECKING:
    from anyrt import Runtime

    def _is_a_runtime(runtime: UvloopRuntime) -> Runtime:
        """Never called: ``mypy --strict`` checks that UvloopRuntime is an anyrt.Runtime."""
        return runtime
