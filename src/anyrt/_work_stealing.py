"""The `work-stealing` runtime: N worker threads, local queues, a global injector, stealing.

Each worker runs the loop every runtime runs, one named step at a time::

    fire due timers -> (every 61 ticks: poll the OS, take from the global queue)
    -> run pinned (spawn_local) tasks -> pop the LIFO slot -> pop the local queue
    -> take a batch from the global injector -> steal half of a random victim's queue
    -> park

Queues are `collections.deque`s, whose appends and pops are documented as thread-safe
(on free-threaded CPython too); stealing pops from the same end as the owner, one
item at a time. A task woken by the task running on a worker goes to that worker's
LIFO slot, which is never stolen: a ping-pong pair stays on one thread, where it is
fastest.

Parking: a worker with nothing to do registers itself as a sleeper under the idle
lock, then checks every queue once more before it sleeps; whoever queues work takes
the same lock to find a sleeper to wake. Either the sleeper sees the work or the
waker sees the sleeper, so no wake-up is lost, and exactly one sleeper is woken per
notification (no thundering herd). One parked worker at a time is the *driver*: it
sleeps inside the OS reactor's ``select``, and is woken through the reactor's
wake-up fd; the others sleep on their own `threading.Event`.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from types import CoroutineType
from typing import Any, ClassVar, Final, ParamSpec, TypeVar, final

from ._native import ErrorHandler, sniffio_state, thread_state
from ._protocols import FileDescriptorLike
from ._reactor import READ, WRITE, IOWait, OSReactor, fileno
from ._scope import Alarm, post_alarm
from ._task import NativeTask, SharedTask, Worker
from ._threaded import Inbox, ThreadedRuntime
from ._timers import TimerQueue, wait_time
from ._validate import check_positive_int

T = TypeVar("T")
P = ParamSpec("P")

#: Every this many ticks a busy worker polls the OS and the global queue first.
GLOBAL_QUEUE_INTERVAL: Final = 61
#: How many pinned tasks a worker runs in a row before it looks at anything else.
PINNED_BATCH: Final = 64
#: A local queue longer than this spills half of itself into the global injector.
LOCAL_QUEUE_CAPACITY: Final = 256
#: Runs of the LIFO slot in a row before its task goes to the back of the queue.
LIFO_RUN_LIMIT: Final = 3
#: How many tasks one batch from the global injector takes at most.
GLOBAL_BATCH: Final = 32

_SLEEPING: Final = 0
_DRIVING: Final = 1


class _ThreadWorker(threading.local):
    worker: _Worker | None = None


_this = _ThreadWorker()


class _Worker(Inbox):
    """One worker thread's queues, timers and parking state."""

    __slots__ = (
        "current",
        "index",
        "lifo",
        "lifo_runs",
        "local",
        "mode",
        "owner",
        "ready",
        "rng",
        "runtime",
        "thread",
        "tick",
        "timer_woken",
        "timers",
        "unpark",
    )

    def __init__(self, runtime: WorkStealing, index: int) -> None:
        super().__init__()
        self.runtime = runtime
        self.index = index
        self.local: deque[NativeTask[Any]] = deque()
        self.lifo: NativeTask[Any] | None = None
        self.lifo_runs = 0
        # Tasks pinned by spawn_local (never stolen), and what other threads post to them.
        self.ready: deque[NativeTask[Any]] = deque()
        self.timers = TimerQueue()
        self.current: NativeTask[Any] | None = None
        self.tick = 0
        # While the timers fire: the tasks they wake, to queue at the front (`fire_due`).
        self.timer_woken: list[NativeTask[Any]] | None = None
        self.rng = random.Random(index)
        self.unpark = threading.Event()
        self.mode = _SLEEPING
        self.owner = 0
        self.thread = threading.Thread(
            target=self.run, name=f"anyrt-work-stealing-{index}", daemon=True
        )

    def now(self) -> float:
        return time.monotonic()

    # -- LocalLoop, for pinned tasks --------------------------------------------------

    def post(self, fn: Callable[[], object]) -> None:
        with self.inbox_lock:
            self.inbox.append(fn)
        self.runtime._unpark(self)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        runtime = self.runtime
        self.owner = threading.get_ident()
        _this.worker = self
        thread_state.runtime = runtime
        if sniffio_state is not None:
            sniffio_state.name = "anyrt"
        runtime._install_asyncgen_hooks()
        try:
            ready = self.ready
            while not runtime._stopping:
                task = self.next_task()
                if task is not None:
                    self.run_task(task)
                elif not self.fire_timers():
                    self.park()
                if len(ready) > 1:
                    # Pinned tasks (with one worker, every task) run a batch at a time,
                    # as a core's loop runs its queue: next_task's checks once per
                    # batch, not once per step. Timers and the OS wait one batch.
                    batch = min(len(ready), PINNED_BATCH)
                    for _ in range(batch):
                        self.run_task(ready.popleft())
                    self.tick += batch
        finally:
            _this.worker = None
            thread_state.runtime = None

    def run_task(self, task: NativeTask[Any]) -> None:
        self.current = task
        if task.step(self):
            if task._sched is self:
                self.ready.append(task)
            else:
                self.local.append(task)
        self.current = None
        del task  # see NativeTask.step: a failed task's traceback keeps this frame

    def next_task(self) -> NativeTask[Any] | None:
        """The seed's steps, in order; None when there is nothing anywhere."""
        self.tick += 1
        heap = self.timers._heap
        if heap and heap[0][0] <= time.monotonic():
            self.fire_due()
        if self.tick >= GLOBAL_QUEUE_INTERVAL:
            self.tick = 0
            # Fairness: even a busy worker looks at the OS and the global queue.
            self.poll_os()
            task = self.take_global()
            if task is not None:
                return task
        if self.inbox:
            self._drain_inbox()
        if self.runtime._deferred:
            self.runtime._run_deferred()
        if self.ready:
            return self.ready.popleft()
        if self.lifo is not None:
            return self.pop_lifo()
        self.lifo_runs = 0  # the streak of LIFO runs is over
        local = self.local
        if local:
            try:
                return local.popleft()
            except IndexError:  # stolen meanwhile
                pass
        task = self.take_global()
        if task is not None:
            return task
        return self.steal()

    def fire_timers(self) -> bool:
        heap = self.timers._heap
        if heap and heap[0][0] <= time.monotonic():
            return self.fire_due() > 0
        return False

    def fire_due(self) -> int:
        """Fire the due timers; the tasks they wake go to the front of their queue.

        So a timer's lateness is bounded by the steps before the next timer check, not
        by the length of the queue. (Thieves take from the front too: a woken task
        they take runs even sooner.)
        """
        woken: list[NativeTask[Any]] = []
        self.timer_woken = woken
        try:  # shared tasks go through timer_woken, pinned ones to the front of ready
            fired = self.timers.fire_due_first(time.monotonic(), self.ready)
        finally:
            self.timer_woken = None
        if woken:
            self.local.extendleft(reversed(woken))
            self.runtime._notify_one()
        return fired

    def poll_os(self) -> None:
        driver = self.runtime._driver
        if driver.acquire(blocking=False):
            try:
                self.runtime._reactor.poll(0)
            finally:
                driver.release()

    def pop_lifo(self) -> NativeTask[Any]:
        task = self.lifo
        assert task is not None
        self.lifo = None
        self.lifo_runs += 1
        if self.lifo_runs > LIFO_RUN_LIMIT:
            # Two tasks waking each other must not starve the queue: run the oldest
            # queued task instead, and queue this one behind the rest. (Another worker
            # may steal from the queue at any moment, so it may be empty by now.)
            self.lifo_runs = 0
            try:
                oldest = self.local.popleft()
            except IndexError:
                return task
            self.local.append(task)
            return oldest
        return task

    def take_global(self) -> NativeTask[Any] | None:
        injector = self.runtime._injector
        if not injector:
            return None
        batch = min(len(injector) // len(self.runtime._workers) + 1, GLOBAL_BATCH)
        first: NativeTask[Any] | None = None
        for _ in range(batch):
            try:
                task = injector.popleft()
            except IndexError:
                break
            if first is None:
                first = task
            else:
                self.local.append(task)
        return first

    def steal(self) -> NativeTask[Any] | None:
        """Steal half of a victim's local queue, starting from a random victim."""
        workers = self.runtime._workers
        count = len(workers)
        if count == 1:
            return None
        start = self.rng.randrange(count)
        for offset in range(count):
            victim = workers[(start + offset) % count]
            if victim is self or not victim.local:
                continue
            amount = (len(victim.local) + 1) // 2
            first: NativeTask[Any] | None = None
            for _ in range(amount):
                try:
                    task = victim.local.popleft()
                except IndexError:
                    break
                if first is None:
                    first = task
                else:
                    self.local.append(task)
            if first is not None:
                return first
        return None

    def has_work(self) -> bool:
        if self.inbox or self.ready or self.local or self.lifo is not None:
            return True
        runtime = self.runtime
        if runtime._injector or runtime._deferred:
            return True
        return any(worker.local for worker in runtime._workers)

    def park(self) -> None:
        """Sleep until woken or until the next timer; drive the reactor if nobody does."""
        runtime = self.runtime
        deadline = self.timers.next_deadline()
        timeout = wait_time(deadline, time.monotonic())
        driving = runtime._driver.acquire(blocking=False)
        try:
            with runtime._idle_lock:
                if runtime._stopping:
                    return
                self.mode = _DRIVING if driving else _SLEEPING
                self.unpark.clear()
                runtime._sleepers.append(self)
            if self.has_work():
                runtime._forget_sleeper(self)
                return
            if driving:
                runtime._reactor.poll(timeout)
            else:
                self.unpark.wait(timeout)
            runtime._forget_sleeper(self)
        finally:
            if driving:
                runtime._driver.release()

    # -- scheduling from this worker ------------------------------------------------------

    def push(self, task: NativeTask[Any]) -> None:
        if self.timer_woken is not None:
            self.timer_woken.append(task)
            return
        if self.current is not None:
            # Woken by the task running here: run it next, on this thread.
            previous = self.lifo
            self.lifo = task
            if previous is None:
                return
            task = previous
        local = self.local
        local.append(task)
        if len(local) > LOCAL_QUEUE_CAPACITY:
            injector = self.runtime._injector
            for _ in range(len(local) // 2):
                try:
                    injector.append(local.popleft())
                except IndexError:
                    break
        self.runtime._notify_one()


@final
class WorkStealing(ThreadedRuntime):
    """The multi-threaded runtime: work-stealing workers, an OS reactor, a blocking pool.

    Args:
        workers: worker threads (default: the CPU count).
        max_blocking_threads: the most threads `spawn_blocking` runs at once.
        error_handler: receives failures nobody will observe (default: log them).
    """

    name: ClassVar[str] = "work-stealing"
    capabilities: tuple[str, ...] = (
        "threads",
        "os-reactor",
        "work-stealing",
        "blocking-pool",
        "unix-sockets",
    )
    conformance_options: ClassVar[tuple[dict[str, Any], ...]] = ({"workers": 1}, {"workers": 4})
    _task_class = SharedTask

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_blocking_threads: int = 64,
        error_handler: ErrorHandler | None = None,
    ) -> None:
        super().__init__(max_blocking_threads=max_blocking_threads, error_handler=error_handler)
        if workers is None:
            workers = os.cpu_count() or 1
        check_positive_int(workers, "workers")
        self._reactor = OSReactor(self)
        self._injector: deque[NativeTask[Any]] = deque()
        self._idle_lock = threading.Lock()
        self._sleepers: list[_Worker] = []
        self._driver = threading.Lock()
        self._workers = [_Worker(self, index) for index in range(workers)]
        # With one worker nobody can steal, so every task is confined to it, as on one
        # core of thread-per-core: a `LocalTask`, whose steps take no lock and whose
        # wake-ups from other threads are posted to the worker.
        self._solo = self._workers[0] if workers == 1 else None
        for worker in self._workers:
            worker.thread.start()

    @property
    def workers(self) -> int:
        """How many worker threads run tasks."""
        return len(self._workers)

    # -- NativeRuntime hooks --------------------------------------------------------------

    def _current(self) -> tuple[NativeTask[Any], Worker] | None:
        worker = _this.worker
        if worker is None or worker.runtime is not self or worker.current is None:
            return None
        return worker.current, worker

    def _post_alarm(self, alarm: Alarm) -> None:
        post_alarm(self._workers[0], alarm)

    def _poke(self) -> None:
        # The driving worker sleeps in the reactor; the wake-up is a lock-free write.
        self._reactor.wakeup()

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, task: NativeTask[Any]) -> None:
        """Queue a ready task: on this worker if called from one, else globally."""
        worker = _this.worker
        if worker is not None and worker.runtime is self:
            worker.push(task)
        else:
            self._injector.append(task)
            self._notify_one()

    def _notify_one(self) -> None:
        with self._idle_lock:
            sleepers = self._sleepers
            if not sleepers:
                return
            # Prefer a plain sleeper: waking it costs no syscall, and the driver keeps
            # watching the OS.
            for index in range(len(sleepers) - 1, -1, -1):
                if sleepers[index].mode == _SLEEPING:
                    worker = sleepers.pop(index)
                    break
            else:
                worker = sleepers.pop()
        self._wake_worker(worker)

    def _unpark(self, worker: _Worker) -> None:
        with self._idle_lock:
            if worker not in self._sleepers:
                return
            self._sleepers.remove(worker)
        self._wake_worker(worker)

    def _wake_worker(self, worker: _Worker) -> None:
        if worker.mode == _DRIVING:
            self._reactor.wakeup()
        else:
            worker.unpark.set()

    def _forget_sleeper(self, worker: _Worker) -> None:
        with self._idle_lock:
            if worker in self._sleepers:
                self._sleepers.remove(worker)

    # -- Executor ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> NativeTask[T]:
        """Schedule ``coro`` as a new task; callable from any thread."""
        task = self._place(coro, name, "spawn")
        self._register(task, coro)
        self._launch(task)
        return task

    def spawn_local(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Spawn ``coro`` pinned to the calling worker thread: it is never stolen.

        Raises:
            RuntimeError: the calling thread is not one of this runtime's workers.
        """
        worker = _this.worker
        if worker is None or worker.runtime is not self:
            if type(coro) is CoroutineType:
                coro.close()
            raise RuntimeError(
                "spawn_local() must be called from a task running on this work-stealing "
                "runtime (it pins the task to the calling worker); use spawn() elsewhere"
            )
        task = self._new_task(coro, name, worker, "spawn_local", local=True)
        self._register(task, coro)
        worker.ready.append(task)
        return task

    # -- ThreadedRuntime hooks ------------------------------------------------------------

    def _place(self, coro: Coroutine[Any, Any, T], name: str | None, method: str) -> NativeTask[T]:
        solo = self._solo
        if solo is not None:
            return self._new_task(coro, name, solo, method, local=True)
        return self._new_task(coro, name, self, method)

    def _launch(self, task: NativeTask[Any]) -> None:
        solo = self._solo
        if solo is None:
            self.schedule(task)
        elif threading.get_ident() == solo.owner:
            solo.ready.append(task)
        else:
            solo.post(partial(solo.ready.append, task))

    def _stop_threads(self) -> None:
        with self._idle_lock:
            self._stopping = True
            self._sleepers.clear()
        self._reactor.wakeup()
        for worker in self._workers:
            worker.unpark.set()
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join()

    def _release(self) -> None:
        self._reactor.close()
        self._injector.clear()

    # -- Reactor --------------------------------------------------------------------------------

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable."""
        await IOWait(self._reactor, fileno(sock), READ)

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable."""
        await IOWait(self._reactor, fileno(sock), WRITE)

    def _wait_socket(self, sock: socket.socket, events: int, owner: int) -> Awaitable[None]:
        return IOWait(self._reactor, sock.fileno(), events, keep=owner)

    def _notify_closing(self, sock: FileDescriptorLike) -> None:
        self._reactor.notify_closing(sock)
