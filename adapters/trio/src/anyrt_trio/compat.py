"""Run trio-only code from any anyrt runtime: ``await anyrt_trio.compat.run(rt, fn, *args)``.

On the ``trio`` backend the code runs in place; on the other runtimes it runs in a side
trio thread, one per runtime; on ``single-threaded`` (no OS, no threads) it raises
`RuntimeError`. See `run`.
"""

from ._compat import run

__all__ = ("run",)
