"""Run asyncio-only code from any anyrt runtime: ``await compat.run(runtime, coro)``.

On the ``asyncio`` and ``uvloop`` backends the coroutine runs in place; on the
threaded backends (``work-stealing``, ``thread-per-core``, ``trio``) it runs on one side
asyncio loop thread per runtime, started on first use and stopped when the runtime
closes; on ``single-threaded``, which has no OS and no threads, it raises
`RuntimeError`. Results, exceptions and cancellation cross in both directions.
"""

from ._compat import run

__all__ = ("run",)
