"""anyrt on trio: the ``trio`` backend (`TrioRuntime`), `current`, and the trio compat shim.

* `TrioRuntime` - the whole `anyrt.Runtime` protocol on a trio run that the runtime
  owns, in a thread of its own (``anyrt.runtime("trio")``);
* `current` - a runtime bound to an already running ``trio.run``, for anyrt-based
  libraries inside a trio application;
* `anyrt_trio.compat.run` - await trio-only code from any anyrt runtime.

This module only re-exports.
"""

try:
    import trio as _trio
except ImportError as _exc:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "anyrt-trio needs the trio package, which is not installed: "
        "pip install 'anyrt[trio]' (or pip install trio)"
    ) from _exc

from . import compat
from ._runtime import TrioRuntime, current
from ._task import TrioTask

del _trio

__all__ = ("TrioRuntime", "TrioTask", "compat", "current")
