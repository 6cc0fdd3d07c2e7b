"""The `single-threaded` runtime: the worker loop with no OS and no threads.

The loop is the common one with steps dropped: count down timers, pop the ready queue,
run, or (when every task is parked) let the clock idle to the next deadline. There is
no OS poll and nothing to steal. With the default `VirtualClock` idle time is skipped,
so a test that sleeps an hour finishes at once, and with ``seed=`` the order in which
ready tasks run is shuffled deterministically.
"""

from __future__ import annotations

import math
import random
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import copy_context
from functools import partial
from threading import get_ident
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar, Final, ParamSpec, Protocol, TypeVar, final

from ._clock import Clock, MonotonicClock, VirtualClock
from ._exceptions import Cancelled, Deadlock, ParkedTask
from ._memnet import MemoryNetwork
from ._native import ErrorHandler, NativeRuntime, logger, sniffio_state, thread_state
from ._protocols import ByteStream, DatagramSocket, FileDescriptorLike, Listener
from ._scope import Alarm, post_alarm
from ._task import DONE, PARKED, LocalTask, NativeTask, Worker
from ._timers import MAX_WAIT, TimerQueue
from ._tls import secure_client, secure_listener

if TYPE_CHECKING:
    from ssl import SSLContext

    from ._sim import Simulation

T = TypeVar("T")
P = ParamSpec("P")

#: Steps `close` runs the tasks' cleanup for, at most, before it closes what is left.
_CLOSE_STEPS: Final = 200_000
#: Steps run between two looks at the timers and the inbox.
STEP_BUDGET: Final = 128


class _Network(Protocol):
    """The reactor of the runtime: the in-memory network, or a simulation's."""

    async def connect_tcp(self, host: str, port: int) -> ByteStream: ...

    async def listen_tcp(self, host: str, port: int, *, reuse_port: bool = False) -> Listener: ...

    async def open_udp(self, host: str, port: int) -> DatagramSocket: ...

    async def aclose(self) -> None: ...


class _Loop:
    """The one worker: its ready queue, its timers, and an inbox for other threads.

    Only the owning thread touches ``ready`` and the tasks' states; another thread
    posts a callable to the inbox (under ``cond``) and the loop runs it between steps.
    """

    __slots__ = ("cond", "current", "inbox", "now", "owner", "ready", "timers")

    def __init__(self, now: Callable[[], float]) -> None:
        self.ready: deque[NativeTask[Any]] = deque()
        self.timers = TimerQueue()
        self.inbox: list[Callable[[], object]] = []
        self.cond = threading.Condition(threading.Lock())
        self.owner = get_ident()
        self.current: NativeTask[Any] | None = None
        self.now = now

    def post(self, fn: Callable[[], object]) -> None:
        with self.cond:
            self.inbox.append(fn)
            self.cond.notify()

    def drain_inbox(self) -> None:
        with self.cond:
            inbox = self.inbox
            self.inbox = []
        for fn in inbox:
            fn()

    def wait_inbox(self, timeout: float | None) -> None:
        with self.cond:
            if not self.inbox:
                self.cond.wait(timeout)


@final
class SingleThreaded(NativeRuntime):
    """The deterministic runtime: no threads, no selector, an injected clock.

    Args:
        clock: a `Clock` (default: a new `VirtualClock`), ``"virtual"``, ``"real"`` (a
            `MonotonicClock`), or a ``now()`` callable used with ``idle``.
        idle: with a ``now()`` callable as ``clock``, called as ``idle(seconds)`` to
            let time pass while every task is parked (default `time.sleep`).
        seed: shuffle the order of ready tasks with this seed (same seed, same order).
        error_handler: receives failures nobody will observe (default: log them).
        network_buffer: bytes each in-memory connection buffers per direction.
    """

    name: ClassVar[str] = "single-threaded"
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"seed": 1},
        {"clock": "real"},
    )
    capabilities: tuple[str, ...] = (
        "deterministic",
        "virtual-time",
        "in-memory-network",
        "deadlock-detection",
    )

    def __init__(
        self,
        *,
        clock: Clock | Callable[[], float] | str | None = None,
        idle: Callable[[float], None] | None = None,
        seed: int | None = None,
        error_handler: ErrorHandler | None = None,
        network_buffer: int = 65536,
    ) -> None:
        super().__init__(error_handler=error_handler)
        self._clock = _make_clock(clock, idle)
        self._virtual = isinstance(self._clock, VirtualClock)
        clock = self._clock
        self._now_fn = clock._now if isinstance(clock, MonotonicClock) else clock.now
        if not self._virtual:
            self.capabilities = tuple(c for c in self.capabilities if c != "virtual-time")
        # A real monotonic clock idles by waiting on the inbox, so other threads can wake it.
        self._real_wait = isinstance(self._clock, MonotonicClock) and idle is None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        self._rng = random.Random(seed) if seed is not None else None
        self._loop = _Loop(self._clock.now)
        self._network: _Network = MemoryNetwork(self, buffer_size=network_buffer)
        self._external = 0
        self._external_lock = threading.Lock()
        self._running = False
        self._ran = False  # block_on (or close) has run at least once
        self._sniffio_saved: str | None = None
        self._asyncgen_hooks_saved: Any = None

    #: The simulation this runtime runs under, if any (see `_attach_simulation`).
    _sim: Simulation | None = None

    @property
    def clock(self) -> Clock:
        """The clock driving this runtime."""
        return self._clock

    @property
    def seed_rng(self) -> random.Random | None:
        """The seeded generator that orders ready tasks, if ``seed`` was given."""
        return self._rng

    # -- NativeRuntime hooks --------------------------------------------------------

    def now(self) -> float:
        """Return the current time on the injected clock."""
        return self._clock.now()

    _task_class = LocalTask

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> NativeTask[T]:
        """Schedule ``coro`` as a new task; callable from any thread. See `anyrt.Executor`."""
        loop = self._loop
        if (
            type(coro) is CoroutineType
            and name is None
            and not self._closed
            and not self._instruments
        ):
            task: NativeTask[T] = LocalTask(coro, coro.__qualname__, loop, self, copy_context())
        else:
            task = self._new_task(coro, name, loop, "spawn")
        if get_ident() == loop.owner:
            self._tasks[task] = None
            loop.ready.append(task)
        else:
            loop.post(partial(self._adopt, task))
        return task

    def _adopt(self, task: NativeTask[Any]) -> None:
        self._tasks[task] = None
        self._loop.ready.append(task)

    def _forget(self, task: NativeTask[Any]) -> None:
        # Only the loop thread finishes tasks, and only it touches the registry.
        self._tasks.pop(task, None)

    def _post_alarm(self, alarm: Alarm) -> None:
        post_alarm(self._loop, alarm)

    def _poke(self) -> None:
        # The loop looks at the deferred work on every turn and before it idles; a
        # finaliser on another thread must not take the inbox's lock (it may hold it).
        pass

    def _current(self) -> tuple[NativeTask[Any], Worker] | None:
        # Only the thread running the loop has this runtime in its thread state.
        loop = self._loop
        task = loop.current
        if task is None or thread_state.runtime is not self:
            return None
        return task, loop

    @contextmanager
    def _external_wait(self) -> Iterator[None]:
        """Mark that a thread outside the runtime will wake a task (see `from_future`)."""
        with self._external_lock:
            self._external += 1
        try:
            yield
        finally:
            with self._external_lock:
                self._external -= 1

    # -- Executor -------------------------------------------------------------------

    def spawn_local(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Spawn ``coro`` on this thread; every task here already is local.

        Raises:
            RuntimeError: called from a thread other than the one running the runtime.
        """
        if get_ident() != self._loop.owner:
            if type(coro) is CoroutineType:
                coro.close()
            raise RuntimeError(
                "spawn_local() must be called on the thread that runs this single-threaded "
                "runtime; use spawn() from other threads"
            )
        return self.spawn(coro, name=name)

    async def spawn_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` inline: this runtime has no threads to offload it to."""
        if not callable(fn):
            raise TypeError(f"spawn_blocking() takes a callable, not {type(fn).__name__}")
        self._check_open()
        return fn(*args, **kwargs)

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion, running every other task meanwhile.

        Raises:
            Deadlock: ``coro`` can never finish (nothing ready, no timer pending).
            RuntimeError: called from inside a task, or after `close`.
        """
        self._check_block_on(coro)
        main = self._new_task(coro, None, self._loop, "block_on")
        self._enter()
        try:
            self._adopt(main)
            try:
                self._run_until(main)
                fatal = self._take_fatal()
                if fatal is not None:
                    # A task raised KeyboardInterrupt or SystemExit: it stops block_on,
                    # once the main task's cleanup has run.
                    main.cancel()
                    self._run_until(main, _CLOSE_STEPS)
                    raise fatal
            except Deadlock:
                self._abandon(main)
                raise
        finally:
            self._exit()
        return main.result()

    def _abandon(self, main: NativeTask[Any]) -> None:
        """Cancel a deadlocked main task and run its cleanup.

        Its waits are withdrawn (a oneshot it awaited now refuses a late `send`), so a
        value a plain thread hands over later is not delivered to a task nobody runs.
        """
        main.cancel()
        try:
            self._run_until(main, _CLOSE_STEPS)
        except Deadlock:
            return  # it caught the cancellation and parked again; close() deals with it
        if main._exc is not None and not isinstance(main._exc, Cancelled):
            main.detach()  # its cleanup failed: report that rather than lose it

    def _enter(self) -> None:
        if self._running:
            raise RuntimeError("this single-threaded runtime is already running on another thread")
        self._running = self._ran = True
        thread_state.runtime = self
        loop = self._loop
        loop.owner = get_ident()
        if sniffio_state is not None:
            self._sniffio_saved = sniffio_state.name
            sniffio_state.name = "anyrt"
        self._asyncgen_hooks_saved = self._install_asyncgen_hooks()

    def _exit(self) -> None:
        thread_state.runtime = None
        self._running = False
        if sniffio_state is not None:
            sniffio_state.name = self._sniffio_saved
        saved = self._asyncgen_hooks_saved
        if saved is not None:
            sys.set_asyncgen_hooks(*saved)
            self._asyncgen_hooks_saved = None

    # -- the loop -------------------------------------------------------------------

    def _run_until(self, main: NativeTask[Any] | None, limit: int | None = None) -> bool:
        """Run tasks until ``main`` is done (``None``: until no task is left).

        Each turn takes what other threads posted, fires the due timers (the tasks they
        wake go to the front of the queue), then runs up to `STEP_BUDGET` steps in FIFO
        order (tasks woken meanwhile queue behind the others) before looking at timers
        and the inbox again. It also stops when a task raised KeyboardInterrupt or
        SystemExit (see `block_on`).

        Returns:
            False if ``limit`` steps ran first (``close`` bounds its cleanup so).
        """
        if self._sim is not None:
            return self._run_simulated(main, self._sim, limit)
        steps = 0
        loop = self._loop
        ready = loop.ready
        popleft = ready.popleft
        append = ready.append
        timers = loop.timers
        heap = timers._heap
        now = self._clock.now
        rng = self._rng
        tasks = self._tasks
        deferred = self._deferred
        while (main._state != DONE and self._fatal is None) if main is not None else tasks:
            if loop.inbox:
                loop.drain_inbox()
            if deferred:
                self._run_deferred()
            if heap and heap[0][0] <= now():
                if rng is None:  # lateness: STEP_BUDGET steps; a seeded run keeps its order
                    timers.fire_due_first(now(), ready)
                else:
                    timers.fire_due(now())
            if not ready:
                self._idle(main)
                continue
            if limit is not None:
                if steps > limit:
                    return False
                steps += min(len(ready), STEP_BUDGET)
            if rng is not None:
                self._run_shuffled(len(ready), rng)
                continue
            budget = STEP_BUDGET
            while ready and budget:
                budget -= 1
                task = popleft()
                loop.current = task
                if task.step(loop):
                    append(task)
                if main is not None and main._state == DONE:
                    break
            loop.current = None
        return True

    def _run_shuffled(self, count: int, rng: random.Random) -> None:
        loop = self._loop
        batch = [loop.ready.popleft() for _ in range(count)]
        rng.shuffle(batch)
        for task in batch:
            loop.current = task
            if task.step(loop):
                loop.ready.append(task)
        # A failed task's traceback keeps this frame (see NativeTask.step): it must
        # not keep the tasks alive.
        batch.clear()
        del task

    def _run_simulated(
        self, main: NativeTask[Any] | None, sim: Simulation, limit: int | None
    ) -> bool:
        """The loop under a simulation: one step at a time, each one picked and recorded.

        Every step fires the due timers, then runs a task chosen by the simulation's
        generator among all the ready ones (a task woken by the previous step may go
        first), and hands the step to the simulation's tracer.
        """
        loop = self._loop
        ready = loop.ready
        popleft = ready.popleft
        timers = loop.timers
        heap = timers._heap
        now = self._now_fn
        pick = sim._random.random
        record = sim._tracer.record
        tasks = self._tasks
        deferred = self._deferred
        try:
            while (main._state != DONE and self._fatal is None) if main is not None else tasks:
                if loop.inbox:
                    loop.drain_inbox()
                if deferred:
                    self._run_deferred()
                if heap and heap[0][0] <= now():
                    timers.fire_due(now())
                count = len(ready)
                if not count:
                    self._idle(main)
                    continue
                if limit is not None:
                    limit -= 1
                    if limit < 0:
                        return False
                if count > 1:
                    chosen = int(pick() * count)
                    if chosen:
                        ready.rotate(-chosen)
                task = popleft()
                loop.current = task
                requeued = task.step(loop)
                if requeued:
                    ready.append(task)
                record(task, requeued)
        finally:
            loop.current = None
        return True

    def _attach_simulation(self, sim: Simulation, timers: TimerQueue, network: _Network) -> None:
        """Run under ``sim`` from now on: its loop, its timer queue and its network."""
        if self._ran or self._tasks or self._closed:
            raise RuntimeError("a simulation takes a new runtime, before it runs anything")
        if not self._virtual:
            raise RuntimeError("a simulation needs a runtime on virtual time")
        self._sim = sim
        self._rng = sim._random
        self._loop.timers = timers
        self._network = network

    def _idle(self, main: NativeTask[Any] | None) -> None:
        """Nothing is ready and no timer is due: wait for the clock or another thread."""
        loop = self._loop
        if loop.inbox or self._deferred:
            return  # another thread posted work since the turn began
        deadline = loop.timers.next_deadline()
        external = self._external > 0
        if math.isinf(deadline):
            if external:
                loop.wait_inbox(None)
                return
            raise self._deadlock(main)
        delay = max(deadline - self._clock.now(), 0.0)
        if not self._virtual:
            delay = min(delay, MAX_WAIT)  # the OS refuses longer waits
        if self._real_wait or (external and not self._virtual):
            loop.wait_inbox(delay)
        else:
            self._clock.idle(delay)

    def _deadlock(self, main: NativeTask[Any] | None) -> Deadlock:
        parked = [
            ParkedTask(task.name, task.where()) for task in self._tasks if task._state == PARKED
        ]
        listing = "\n".join(f"  - {entry}" for entry in parked) or "  (none)"
        what = f"block_on({main.name})" if main is not None else "close()"
        return Deadlock(
            f"{what} can never finish: no task is ready and no timer is pending. "
            f"Parked tasks:\n{listing}",
            parked,
        )

    # -- Reactor: the in-memory network -------------------------------------------------

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Not available: this backend has no OS reactor."""
        raise self._no_os("wait_readable")

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Not available: this backend has no OS reactor."""
        raise self._no_os("wait_writable")

    def _no_os(self, method: str) -> RuntimeError:
        return RuntimeError(
            f"{method}() needs an OS reactor, and the single-threaded backend has no OS: its "
            "network is in memory (connect_tcp/listen_tcp). Use a backend with an OS reactor "
            "for real sockets (see `anyrt backends`)."
        )

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Connect to a listener in the in-memory network (with ``ssl``: over TLS)."""
        self._check_open()
        stream = await self._network.connect_tcp(host, port)
        return await secure_client(self, stream, ssl, server_hostname or host)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen on a virtual ``host:port`` of the in-memory network (with ``ssl``: TLS)."""
        self._check_open()
        listener = await self._network.listen_tcp(host, port, reuse_port=reuse_port)
        return secure_listener(self, listener, ssl)

    async def open_udp(self, local_host: str, local_port: int) -> DatagramSocket:
        """Bind a UDP socket (`anyrt.DatagramSocket`) in the in-memory network."""
        self._check_open()
        return await self._network.open_udp(local_host, local_port)

    # -- shutdown ---------------------------------------------------------------------

    def close(self) -> None:
        """Cancel every task, run their cleanup to completion, close the network.

        Raises:
            RuntimeError: called from inside one of this runtime's tasks.
        """
        if self._closed:
            return
        if thread_state.runtime is self:
            raise RuntimeError("close() cannot be called from inside a task of this runtime")
        self._enter()
        try:
            self._shutdown()
        finally:
            with self._tasks_lock:
                self._closed = True
            self._exit()
            self._run_close_hooks()

    def _shutdown(self) -> None:
        # Cancelled once, a task stays cancelled (level-triggered): what has not
        # finished when no task can run any more, or after `_CLOSE_STEPS` steps, waits
        # forever under a shield or catches every cancellation, and is closed.
        for task in list(self._tasks):
            task.cancel()
        self._adopt(self._new_task(self._network.aclose(), "close", self._loop, "close"))
        self._drain()
        if self._finalize_asyncgens():
            self._drain()
        self._run_deferred()
        self._report_unclaimed_fatal()
        self._loop.ready.clear()
        self._loop.timers.clear()

    def _drain(self) -> None:
        try:
            finished = self._run_until(None, _CLOSE_STEPS)
        except Deadlock:
            finished = False
        if finished:
            return
        for task in list(self._tasks):
            logger.warning(
                "anyrt: task %r did not finish during close() (it waits under a shield for "
                "something that cannot happen, or catches every cancellation); closing its "
                "coroutine at %s",
                task.name,
                task.where(),
            )
            task._coro.close()
            task._finish(None, Cancelled("the runtime was closed"))


def _make_clock(clock: object, idle: Callable[[float], None] | None) -> Clock:
    if clock is None or clock == "virtual":
        return VirtualClock()
    if clock in ("real", "monotonic"):
        return MonotonicClock()
    if isinstance(clock, str):
        raise ValueError(  # noqa: TRY004 - a str is the right type, just not a known name
            f"clock must be 'virtual', 'real', a Clock or a now() callable, not {clock!r}"
        )
    if isinstance(clock, Clock):
        if idle is not None:
            raise TypeError("idle= goes with a now() callable as clock, not with a Clock object")
        return clock
    if callable(clock):
        if idle is None:
            return MonotonicClock(now=clock)
        if not callable(idle):
            raise TypeError(f"idle must be callable, not {type(idle).__name__}")
        return MonotonicClock(now=clock, idle=idle)
    raise TypeError(f"clock must be a Clock or a now() callable, not {type(clock).__name__}")
