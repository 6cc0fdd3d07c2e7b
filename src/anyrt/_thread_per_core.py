"""The `thread-per-core` runtime: one thread per core, each with its own loop and reactor.

Each core runs the loop every runtime runs with the stealing steps dropped::

    apply what other threads posted -> fire due timers -> run a batch of ready tasks
    (every 61 steps: poll the OS) -> park in the core's own reactor until the next
    timer, an fd event, or a post from another thread

A task is a `LocalTask` bound to the core it was placed on, and never leaves it:
every step, every timer and every fd wait of that task happens on that core's thread.
Another thread that wakes, cancels or joins it posts the operation to the core's inbox,
and the post writes the core's wake-up fd only if the core is parked, so a busy core
pays no syscall for it.

Placement: `spawn` from a core thread stays on that core; from any other thread it goes
to the least-loaded core (live tasks), ties broken round-robin; `spawn_on` names the
core. `listen_tcp(reuse_port=True)` opens one ``SO_REUSEPORT`` socket per core, so
the kernel spreads connections over the cores and each is served where it was
accepted; without it one socket accepts and `Listener.serve` hands the connections to
the cores in turn.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from threading import get_ident
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, final

from ._exceptions import Cancelled, ClosedResourceError
from ._listener import AsyncResource
from ._native import ErrorHandler, sniffio_state, thread_state
from ._protocols import ByteStream, FileDescriptorLike, Listener, Task
from ._reactor import READ, WRITE, IOWait, OSReactor, fileno
from ._scope import Alarm, post_alarm
from ._sockets import SocketListener, SocketStream, bind_tcp, resolve_listen_address
from ._task import LocalTask, NativeTask, Worker
from ._threaded import Inbox, ThreadedRuntime
from ._timers import TimerQueue, wait_time
from ._tls import secure_listener
from ._validate import check_coroutine, check_positive_int

if TYPE_CHECKING:
    from ssl import SSLContext

T = TypeVar("T")

#: Task steps between two looks at the OS while a core has ready tasks.
POLL_INTERVAL: Final = 61
#: The most tasks one pass of a core's loop runs before it looks at its inbox again.
BATCH: Final = 128


class _ThreadCore(threading.local):
    core: _Core | None = None


_this = _ThreadCore()


class _Core(Inbox):
    """One core: its thread, run queue, inbox, timers and reactor."""

    __slots__ = (
        "current",
        "index",
        "load",
        "owner",
        "reactor",
        "ready",
        "runtime",
        "sleeping",
        "thread",
        "timers",
    )

    def __init__(self, runtime: ThreadPerCore, index: int) -> None:
        super().__init__()
        self.runtime = runtime
        self.index = index
        self.ready: deque[NativeTask[Any]] = deque()
        # True while the thread is (about to be) blocked in the reactor; guarded by
        # inbox_lock, so a post writes the wake-up fd exactly when it is needed.
        self.sleeping = False
        self.timers = TimerQueue()
        self.reactor = OSReactor(runtime)
        self.current: NativeTask[Any] | None = None
        #: Live tasks placed here; guarded by the runtime's tasks lock.
        self.load = 0
        self.owner = 0
        self.thread = threading.Thread(
            target=self.run, name=f"anyrt-thread-per-core-{index}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<anyrt core {self.index} of {self.runtime!r}>"

    def now(self) -> float:
        return time.monotonic()

    # -- LocalLoop: what other threads do to this core ---------------------------------

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on this core's thread soon; safe from any thread."""
        with self.inbox_lock:
            self.inbox.append(fn)
            wake = self.sleeping
            self.sleeping = False
        if wake:
            self.reactor.wakeup()

    def enqueue(self, task: NativeTask[Any]) -> None:
        """Queue a new task of this core; safe from any thread."""
        if get_ident() == self.owner:
            self.ready.append(task)
        else:
            self.post(partial(self.ready.append, task))

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        runtime = self.runtime
        _this.core = self
        thread_state.runtime = runtime
        if sniffio_state is not None:
            sniffio_state.name = "anyrt"
        runtime._install_asyncgen_hooks()
        deferred = runtime._deferred if self.index == 0 else None
        ready = self.ready
        timers = self.timers
        reactor = self.reactor
        monotonic = time.monotonic
        steps = 0
        try:
            while not runtime._stopping:
                if self.inbox:
                    self._drain_inbox()
                if deferred:
                    runtime._run_deferred()
                heap = timers._heap
                if heap and heap[0][0] <= monotonic():
                    timers.fire_due_first(monotonic(), ready)  # lateness: one batch
                if not ready:
                    self.park()
                    continue
                batch = min(len(ready), BATCH)
                for _ in range(batch):
                    task = ready.popleft()
                    self.current = task
                    if task.step(self):
                        ready.append(task)
                self.current = None
                steps += batch
                if steps >= POLL_INTERVAL:
                    # Fairness: a core that always has ready tasks still serves its fds.
                    steps = 0
                    reactor.poll(0)
        finally:
            _this.core = None
            thread_state.runtime = None

    def park(self) -> None:
        """Block in the reactor until an fd event, the next timer, or a post."""
        deadline = self.timers.next_deadline()
        with self.inbox_lock:
            if self.inbox or self.runtime._stopping or (self.index == 0 and self.runtime._deferred):
                return
            self.sleeping = True
        timeout = wait_time(deadline, time.monotonic())
        try:
            self.reactor.poll(timeout)
        finally:
            with self.inbox_lock:
                self.sleeping = False


@final
class ThreadPerCore(ThreadedRuntime):
    """The sharded runtime: one thread per core, each with its own queue and reactor.

    Tasks never migrate between cores, so a task may hold thread-affine objects (a
    `sqlite3` connection, say) across its awaits. Cross-core wake-ups (a `oneshot`,
    `anyrt.Channel` or `anyrt.Event` shared between cores) cost a post to the other
    core's inbox and, if it sleeps, a write to its wake-up fd.

    Args:
        cores: core threads (default: the CPUs this process may run on).
        pin: pin core ``i`` to the ``i``-th allowed CPU with `os.sched_setaffinity`.
        max_blocking_threads: the most threads `spawn_blocking` runs at once.
        error_handler: receives failures nobody will observe (default: log them).

    Raises:
        RuntimeError: ``pin=True`` on a platform without `os.sched_setaffinity`.
    """

    name: ClassVar[str] = "thread-per-core"
    capabilities: tuple[str, ...] = (
        "threads",
        "os-reactor",
        "blocking-pool",
        "unix-sockets",
        "thread-per-core",
    )
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({"cores": 1}, {"cores": 4})
    _task_class = LocalTask

    def __init__(
        self,
        *,
        cores: int | None = None,
        pin: bool = False,
        max_blocking_threads: int = 64,
        error_handler: ErrorHandler | None = None,
    ) -> None:
        if cores is None:
            cores = len(_allowed_cpus())
        check_positive_int(cores, "cores")
        if not isinstance(pin, bool):
            raise TypeError(f"pin must be a bool, not {type(pin).__name__}")
        setaffinity = getattr(os, "sched_setaffinity", None)
        if pin and setaffinity is None:
            raise RuntimeError(
                f"pin=True needs os.sched_setaffinity, which this platform ({sys.platform}) "
                "does not have; create the runtime with pin=False"
            )
        super().__init__(max_blocking_threads=max_blocking_threads, error_handler=error_handler)
        self._cores = [_Core(self, index) for index in range(cores)]
        self._next_core = 0
        self._pinned: dict[int, int] = {}
        cpus = _allowed_cpus()
        for core in self._cores:
            core.thread.start()
            core.owner = core.thread.ident or 0
        if pin:
            assert setaffinity is not None
            try:
                for core in self._cores:
                    cpu = cpus[core.index % len(cpus)]
                    setaffinity(core.thread.native_id or 0, {cpu})
                    self._pinned[core.index] = cpu
            except BaseException:
                self.close()
                raise

    @property
    def cores(self) -> int:
        """How many core threads run tasks."""
        return len(self._cores)

    @property
    def pinned(self) -> dict[int, int]:
        """Core index -> the CPU it is pinned to (empty unless ``pin=True``)."""
        return dict(self._pinned)

    def current_core(self) -> int:
        """Return the index of the core the calling task runs on.

        Raises:
            RuntimeError: the caller is not running on one of this runtime's cores.
        """
        core = _this.core
        if core is None or core.runtime is not self:
            raise RuntimeError(
                "current_core() must be called from a task of this thread-per-core runtime"
            )
        return core.index

    # -- placement ----------------------------------------------------------------------

    def _least_loaded(self) -> _Core:
        cores = self._cores
        count = len(cores)
        start = self._next_core
        self._next_core = (start + 1) % count
        best = cores[start % count]
        for offset in range(1, count):
            core = cores[(start + offset) % count]
            if core.load < best.load:
                best = core
        return best

    def _home(self) -> _Core:
        core = _this.core
        if core is None or core.runtime is not self:
            return self._least_loaded()
        return core

    def _register(self, task: NativeTask[Any], coro: Coroutine[Any, Any, Any]) -> None:
        with self._tasks_lock:
            if self._admits():
                self._tasks[task] = None
                task._sched.load += 1
                return
        self._check_open(coro)

    def _forget(self, task: NativeTask[Any]) -> None:
        with self._tasks_lock:
            if self._tasks.pop(task, False) is None:
                task._sched.load -= 1
            if not self._tasks and self._closed:
                self._tasks_done.notify_all()

    def _current(self) -> tuple[NativeTask[Any], Worker] | None:
        core = _this.core
        if core is None or core.runtime is not self or core.current is None:
            return None
        return core.current, core

    def _post_alarm(self, alarm: Alarm) -> None:
        post_alarm(self._cores[0], alarm)

    def _poke(self) -> None:
        # Core 0 runs the deferred work; the wake-up is a lock-free write.
        self._cores[0].reactor.wakeup()

    # -- Executor -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> NativeTask[T]:
        """Start ``coro`` on the calling core, or on the least-loaded core from elsewhere."""
        core = self._home()
        task = self._new_task(coro, name, core, "spawn")
        self._register(task, coro)
        core.enqueue(task)
        return task

    def spawn_on(
        self, core: int, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Start ``coro`` on core number ``core``; callable from any thread.

        Raises:
            TypeError: ``core`` is not an int.
            ValueError: there is no core of that number.
        """
        if type(core) is not int:
            if type(coro) is CoroutineType:
                coro.close()
            raise TypeError(f"spawn_on() takes a core number (int), not {type(core).__name__}")
        if not 0 <= core < len(self._cores):
            if type(coro) is CoroutineType:
                coro.close()
            raise ValueError(f"spawn_on() core must be in range(0, {len(self._cores)}), got {core}")
        target = self._cores[core]
        task = self._new_task(coro, name, target, "spawn_on")
        self._register(task, coro)
        target.enqueue(task)
        return task

    def spawn_local(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Start ``coro`` on the calling core (as every task, it never leaves it).

        Raises:
            RuntimeError: the caller is not running on one of this runtime's cores.
        """
        core = _this.core
        if core is None or core.runtime is not self:
            if type(coro) is CoroutineType:
                coro.close()
            else:
                check_coroutine(coro, "spawn_local")
            raise RuntimeError(
                "spawn_local() must be called from a task running on this thread-per-core "
                "runtime (it keeps the task on the calling core); use spawn() or "
                "spawn_on(core, coro) elsewhere"
            )
        task = self._new_task(coro, name, core, "spawn_local")
        self._register(task, coro)
        core.ready.append(task)
        return task

    def _spawn_connection(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Hand an accepted connection's handler to the cores in turn."""
        index = self._next_core
        self._next_core = (index + 1) % len(self._cores)
        return self.spawn_on(index % len(self._cores), coro, name=name)

    # -- ThreadedRuntime hooks ------------------------------------------------------------

    def _place(self, coro: Coroutine[Any, Any, T], name: str | None, method: str) -> NativeTask[T]:
        return self._new_task(coro, name, self._home(), method)

    def _launch(self, task: NativeTask[Any]) -> None:
        task._sched.enqueue(task)

    def _stop_threads(self) -> None:
        self._stopping = True
        for core in self._cores:
            core.reactor.wakeup()
        for core in self._cores:
            if core.thread.is_alive():
                core.thread.join()

    def _release(self) -> None:
        for core in self._cores:
            core.reactor.close()
            core.ready.clear()
            core.inbox.clear()

    # -- Reactor ------------------------------------------------------------------------

    def _reactor_here(self) -> OSReactor:
        core = _this.core
        if core is None or core.runtime is not self:
            raise RuntimeError(
                "waiting on an fd needs a task of this thread-per-core runtime; each core "
                "has its own reactor"
            )
        return core.reactor

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable (watched by the calling core's reactor)."""
        await IOWait(self._reactor_here(), fileno(sock), READ)

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable (watched by the calling core's reactor)."""
        await IOWait(self._reactor_here(), fileno(sock), WRITE)

    def _wait_socket(self, sock: socket.socket, events: int, owner: int) -> Awaitable[None]:
        return IOWait(self._reactor_here(), sock.fileno(), events, keep=owner)

    def _notify_closing(self, sock: FileDescriptorLike) -> None:
        # A socket may have been waited on from more than one core (a stream handed
        # from the accepting core to another): tell every reactor.
        for core in self._cores:
            core.reactor.notify_closing(sock)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen for TCP connections on ``host:port``.

        With ``reuse_port=True`` every core gets its own ``SO_REUSEPORT`` socket on the
        address: the kernel shards incoming connections across the cores, and
        `ShardedListener.serve` runs one accept loop per core, each connection served
        on the core that accepted it. Without it, one socket accepts and ``serve``
        hands the connections to the cores in turn. With ``ssl``, every connection is
        a `anyrt.TLSStream` whose handshake runs in its handler's task.

        Raises:
            OSError: ``reuse_port`` where the platform has no ``SO_REUSEPORT``, or the
                bind failed.
        """
        self._check_open()
        listener = await self._listen_tcp(host, port, reuse_port)
        return secure_listener(self, listener, ssl)

    async def _listen_tcp(self, host: str, port: int, reuse_port: bool) -> Listener:
        address = await resolve_listen_address(self, host, port)
        first = bind_tcp(address, reuse_port=reuse_port)
        if not reuse_port or len(self._cores) == 1:
            return SocketListener(self, first, spawn=self._spawn_connection)
        socks = [first]
        try:
            family, kind, proto, sockaddr = address
            bound = (sockaddr[0], first.getsockname()[1], *sockaddr[2:])
            socks.extend(
                bind_tcp((family, kind, proto, bound), reuse_port=True)
                for _ in range(1, len(self._cores))
            )
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return ShardedListener(self, [SocketListener(self, sock) for sock in socks])


@final
class ShardedListener(AsyncResource):
    """One ``SO_REUSEPORT`` socket per core on one address; implements `anyrt.Listener`.

    `serve` runs an accept loop on every core, so each connection is handled on the
    core whose socket the kernel gave it to. `accept` takes the next connection from
    whichever socket has one.
    """

    __slots__ = ("_closed", "_next", "_runtime", "_selector", "_shards")

    def __init__(self, runtime: ThreadPerCore, shards: list[SocketListener]) -> None:
        self._runtime = runtime
        self._shards = shards
        self._next = 0
        self._closed = False
        # `accept` waits on all the sockets at once through a selector of their own,
        # whose fd is readable when any of them is.
        self._selector = selectors.DefaultSelector()
        try:
            for shard in shards:
                self._selector.register(shard.socket, selectors.EVENT_READ)
        except BaseException:
            self._selector.close()
            raise

    def __repr__(self) -> str:
        if self._closed:
            return "<anyrt ShardedListener (closed)>"
        return f"<anyrt ShardedListener {self.address!r} x{len(self._shards)}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``, shared by every shard."""
        return self._shards[0].address

    @property
    def shards(self) -> int:
        """How many sockets (one per core) share the address."""
        return len(self._shards)

    async def accept(self) -> SocketStream:
        """Wait for the next connection on any shard."""
        shards = self._shards
        while True:
            if self._closed:
                raise ClosedResourceError("accept() on a closed listener")
            for offset in range(len(shards)):
                shard = shards[(self._next + offset) % len(shards)]
                stream = shard._accept_now()
                if stream is not None:
                    self._next = (self._next + offset + 1) % len(shards)
                    return stream
            await self._runtime.wait_readable(self._selector.fileno())

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept on every core until closed or cancelled; handlers run where accepted."""
        if not callable(handler):
            raise TypeError(f"serve() takes an async handler(stream), not {type(handler).__name__}")
        runtime = self._runtime
        loops: list[Task[None]] = [
            runtime.spawn_on(index, shard.serve(handler), name=f"serve:core-{index}")
            for index, shard in enumerate(self._shards)
        ]
        try:
            for loop in loops:
                await loop
        finally:
            for loop in loops:
                loop.cancel()
            for loop in loops:
                try:
                    await loop
                except Cancelled:
                    if not loop.done():
                        raise  # this task itself was cancelled again

    async def aclose(self) -> None:
        """Close every shard; tasks waiting in `accept` get `ClosedResourceError`."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            self._runtime._notify_closing(self._selector.fileno())
        self._selector.close()
        for shard in self._shards:
            await shard.aclose()


def _allowed_cpus() -> list[int]:
    """The CPUs this process may run on, in order."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return sorted(getaffinity(0))
    return list(range(os.cpu_count() or 1))
