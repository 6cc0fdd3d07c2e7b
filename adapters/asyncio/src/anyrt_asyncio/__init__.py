"""anyrt on asyncio: the `asyncio` and `uvloop` backends, and the asyncio compat shim.

Layers, from the loop outwards:

* ``_task`` (`AsyncioTask`, an `asyncio.Task` that keeps the `anyrt.Task` contract),
  ``_scope`` (level-triggered cancel scopes on asyncio's one-shot cancellation),
  ``_oneshot``, ``_time`` and ``_streams`` - the protocol pieces, on one event loop;
* ``_virtual`` - the virtual-time selector loop behind ``clock="virtual"``, and
  ``_uvloop_virtual``, its uvloop counterpart (imported with ``_uvloop``);
* ``_runtime`` (`AsyncioRuntime`, which owns its loop), ``_borrowed`` (`current`, which
  borrows a running one) and ``_uvloop`` (the ``uvloop`` backend, imported only when
  selected);
* ``compat`` - `compat.run`, which awaits asyncio code from any anyrt runtime.

This module only re-exports.
"""

from . import compat
from ._borrowed import BorrowedRuntime, current
from ._oneshot import AsyncioReceiver, AsyncioSender
from ._runtime import AsyncioRuntime
from ._streams import AsyncioListener, AsyncioStream
from ._task import AsyncioTask

__version__ = "0.1.0"

__all__ = (
    "AsyncioListener",
    "AsyncioReceiver",
    "AsyncioRuntime",
    "AsyncioSender",
    "AsyncioStream",
    "AsyncioTask",
    "BorrowedRuntime",
    "__version__",
    "compat",
    "current",
)
