"""anyrt: typed async runtime protocols, the runtimes that implement them, and shims.

Layers, from the contract outwards:

* ``_protocols`` - the contract: `Executor`, `Timer`, `Reactor`, `Runtime`, ...
* ``_task``, ``_oneshot``, ``_timers``, ``_native`` - the native task machinery
  shared by every bundled backend;
* ``_sync``, ``_channel``, ``_taskgroup``, ``_future`` - primitives written once on
  `Executor.oneshot`, working on every backend;
* ``_single_threaded`` (+ ``_clock``, ``_memnet``), and ``_work_stealing`` and
  ``_thread_per_core`` (+ ``_threaded``, ``_reactor``, ``_sockets``, ``_blocking``) -
  the bundled backends;
* ``_registry`` - choosing a backend by name; ``testing`` - the pytest plugin and the
  conformance suite.

This module only re-exports.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._channel import Channel, EndOfChannel
from ._clock import Clock, MonotonicClock, VirtualClock
from ._exceptions import (
    BackendNotFound,
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    ClosedResourceError,
    Deadlock,
    ParkedTask,
    TaskError,
)
from ._future import from_future
from ._instrument import Instrument
from ._introspect import TaskInfo
from ._protocols import (
    BlockingExecutor,
    ByteStream,
    CancelScope,
    DatagramSocket,
    Executor,
    FileDescriptorLike,
    FullExecutor,
    HasFileno,
    Listener,
    LocalExecutor,
    Reactor,
    Receiver,
    Runtime,
    Sender,
    Task,
    TaskStatus,
    Timer,
)
from ._registry import backends, run, runtime
from ._single_threaded import SingleThreaded
from ._sync import Event, Lock, Semaphore
from ._taskgroup import TaskGroup
from ._thread_per_core import ThreadPerCore
from ._tls import TLSListener, TLSStream
from ._udp import UDPSocket
from ._work_stealing import WorkStealing

__version__ = "0.1.0"

__all__ = (
    "BackendNotFound",
    "BlockingExecutor",
    "BrokenResourceError",
    "BusyResourceError",
    "ByteStream",
    "CancelScope",
    "Cancelled",
    "Channel",
    "Clock",
    "ClosedResourceError",
    "DatagramSocket",
    "Deadlock",
    "EndOfChannel",
    "Event",
    "Executor",
    "FileDescriptorLike",
    "FullExecutor",
    "HasFileno",
    "Instrument",
    "Listener",
    "LocalExecutor",
    "Lock",
    "MonotonicClock",
    "ParkedTask",
    "Reactor",
    "Receiver",
    "Runtime",
    "Semaphore",
    "Sender",
    "SingleThreaded",
    "TLSListener",
    "TLSStream",
    "Task",
    "TaskError",
    "TaskGroup",
    "TaskInfo",
    "TaskStatus",
    "ThreadPerCore",
    "Timer",
    "UDPSocket",
    "VirtualClock",
    "WorkStealing",
    "__version__",
    "backends",
    "from_future",
    "run",
    "runtime",
)

if _TYPE_CHECKING:  # mypy checks that each bundled runtime is a `Runtime`, as DESIGN.md says

    def _bundled_runtimes_are_runtimes() -> tuple[Runtime, Runtime, Runtime]:
        return SingleThreaded(), WorkStealing(), ThreadPerCore()
