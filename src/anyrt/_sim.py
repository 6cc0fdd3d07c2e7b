"""Deterministic simulation: one seeded run of a `single-threaded` runtime.

A `Simulation` owns a `SingleThreaded` runtime on virtual time and puts it in
simulation mode (see ``SingleThreaded._run_simulated``): every step the loop picks the
next task at random among the ready ones, timers with the same deadline fire in a
random order, the network (``_simnet``) adds latency, jitter and faults, and
`buggify` fault points fire at random. All of it draws from the one `random.Random`
seeded with the simulation's seed, so a seed fully determines the run: replaying it
replays every step.

Each step is recorded by the `_Tracer`: a digest of the whole sequence of steps (the
determinism check compares two runs' digests) and a bounded ring of the last steps,
each with the task, the virtual time, where the task was waiting when it resumed and
where it waits now, for the report of a failure.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import sys
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import CodeType, CoroutineType, GeneratorType, TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, cast, final

if TYPE_CHECKING:
    from ssl import SSLContext

from ._exceptions import Cancelled, TaskError
from ._native import log_task_error, thread_state
from ._protocols import (
    ByteStream,
    CancelScope,
    DatagramSocket,
    FileDescriptorLike,
    Listener,
    Receiver,
    Runtime,
    Sender,
)
from ._simnet import DEFAULT_HOST, Link, SimListener, SimNetwork, changed_link
from ._single_threaded import SingleThreaded
from ._task import DONE, NativeTask
from ._timers import TimerEntry, TimerQueue
from ._tls import secure_client, secure_listener
from ._validate import check_positive_int

__all__ = [
    "SimHost",
    "Simulation",
    "StepLimitExceeded",
    "TraceEntry",
    "buggify",
    "current_simulation",
]

T = TypeVar("T")
P = ParamSpec("P")

_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))
_MASK: Final = (1 << 64) - 1

# What a step ended with (the `kind` of a step record).
_PARKED: Final = 0
_YIELDED: Final = 1
_RETURNED: Final = 2
_RAISED: Final = 3


class StepLimitExceeded(Exception):
    """A simulated run took more steps than its ``max_steps`` (a livelock, or too small)."""


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One recorded scheduling step, or one event of the simulated world.

    Attributes:
        step: the number of the step (events carry the number of the last step).
        time: the virtual time.
        task: the name of the task that ran, or ``None`` for an event (a partition,
            an injected fault, a `buggify` that fired, a task failure).
        text: for a step, where the task resumed and what it did then; for an
            event, what happened.
    """

    step: int
    time: float
    task: str | None
    text: str

    def __str__(self) -> str:
        who = self.task if self.task is not None else "*"
        return f"#{self.step:<6} t={self.time:<11.6f} {who}  {self.text}"


# A suspension point: (innermost user code, its line, the anyrt call it is in, and the
# numbers of the two functions).
_Where = tuple[CodeType | None, int, CodeType | None, int, int]
# A raw ring record: (step, time, task name or None, resumed-from, kind, detail).
_Record = tuple[int, float, str | None, object, int, object]


def _code_info(code: CodeType) -> int:
    """Number a function the same way in every process: > 0 for user code, < 0 for anyrt's."""
    filename = code.co_filename
    name = f"{os.path.basename(filename)}:{code.co_firstlineno}:{code.co_qualname}"
    number = 1 + zlib.crc32(name.encode())  # the same on every machine, too
    return -number if filename.startswith(_PACKAGE_DIR) else number


# Every function a trace has met, with its number (shared by the runs of a process).
_CODES: Final[dict[CodeType, int]] = {}


class _Tracer:
    """Counts, digests and records the steps of one run."""

    __slots__ = (
        "codes",
        "digest",
        "expected",
        "history",
        "limit",
        "ring",
        "serials",
        "steps",
        "stop_at",
        "time",
        "waits",
        "watch",
    )

    def __init__(self, size: int, limit: int, time: Callable[[], float]) -> None:
        self.ring: deque[_Record] = deque(maxlen=size)
        self.steps = 0
        self.limit = limit
        self.watch = limit  # the next step to look at: the limit, or a stop
        self.digest = 0
        self.time = time
        self.serials: dict[NativeTask[Any], int] = {}
        self.waits: dict[NativeTask[Any], _Where] = {}
        self.codes = _CODES
        # For the determinism check: the digest after every step of a first run, and
        # the step a replay stops at to show the steps before a divergence.
        self.history: list[int] | None = None
        self.expected: list[int] | None = None
        self.stop_at: int | None = None

    def record(self, task: NativeTask[Any], requeued: bool) -> None:
        """Account for one step of ``task`` (called by the loop after the step)."""
        step = self.steps = self.steps + 1
        now = self.time()
        serials = self.serials
        serial = serials.get(task)
        if serial is None:
            serial = serials[task] = len(serials)
        waits = self.waits
        resumed = waits.get(task)
        detail: object
        # The digest sees each step as (which task, where it stopped, when), all as
        # numbers that do not depend on the process (no str hash, no id()).
        if task._state != DONE:
            detail = waits[task] = where = self._where(task._coro)
            kind = _YIELDED if requeued else _PARKED
            stop = (where[3], where[1], where[4], kind)
        else:
            del serials[task]
            waits.pop(task, None)
            detail = exc = task._exc
            kind = _RETURNED if exc is None else _RAISED
            stop = (kind, zlib.crc32(type(exc).__name__.encode()), 0, 0)
        digest = self.digest = hash((self.digest, serial, *stop, now))
        self.ring.append((step, now, task.name, resumed, kind, detail))
        if self.history is not None:
            self._compare(step, digest)
        if step >= self.watch:
            self._limit(step, now)

    def _compare(self, step: int, digest: int) -> None:
        history = self.history
        assert history is not None
        history.append(digest)
        expected = self.expected
        if expected is not None and (len(expected) < step or expected[step - 1] != digest):
            self.expected = None
            raise _Diverged(step)

    def _limit(self, step: int, now: float) -> None:
        if step == self.stop_at:
            self.stop_at = None
            self.watch = self.limit
            raise _Stopped(step)
        if step >= self.limit:
            raise StepLimitExceeded(
                f"the run did not finish within {step:,} steps (virtual time {now:.6f}): "
                "a livelock, or raise max_steps"
            )

    def stop(self, step: int) -> None:
        """Stop the run with `_Stopped` when it reaches ``step``."""
        self.stop_at = step
        self.watch = min(step, self.limit)

    def allow(self, steps: int) -> None:
        """Allow ``steps`` more steps (for the cleanup after the test), no stop."""
        self.stop_at = None
        self.limit = self.watch = self.steps + steps

    def note(self, text: str) -> None:
        """Record an event of the simulated world between steps."""
        self.ring.append((self.steps, self.time(), None, None, -1, text))

    def _where(self, coro: object) -> _Where:
        """Find the innermost user frame of a suspended task and the anyrt call below it.

        Returns ``(user code, its line, anyrt code, user code id, anyrt code id)``.
        """
        user: CodeType | None = None
        line = user_id = 0
        api: CodeType | None = None
        api_id = 0
        codes = self.codes
        for _ in range(64):
            kind = type(coro)
            if kind is CoroutineType:
                frame = coro.cr_frame  # type: ignore[attr-defined]
                following = coro.cr_await  # type: ignore[attr-defined]
            elif kind is GeneratorType:
                frame = coro.gi_frame  # type: ignore[attr-defined]
                following = coro.gi_yieldfrom  # type: ignore[attr-defined]
            else:
                break
            if frame is None:
                break
            code = frame.f_code
            known = codes.get(code)
            if known is None:
                known = codes[code] = _code_info(code)
            if known > 0:  # user code
                user, line, user_id, api, api_id = code, frame.f_lineno, known, None, 0
            elif api is None:
                api, api_id = code, -known
            if following is None:
                break
            coro = following
        return user, line, api, user_id, api_id

    def entries(self, records: tuple[_Record, ...] | None = None) -> tuple[TraceEntry, ...]:
        """Format ``records`` (default: the ring) as trace entries."""
        shown = tuple(self.ring) if records is None else records
        return tuple(_format(record) for record in shown)


class _Stopped(Exception):
    """A replay reached the step it was asked to stop at."""


class _Diverged(Exception):
    """A second run of a seed took a different step than the first at this step."""


# How anyrt's own calls are shown in a trace: the class prefix of the call is dropped
# for the runtime's methods (``sleep()``) and named for the objects users hold.
_CALL_PREFIXES: Final = {
    "NativeRuntime.": "",
    "SingleThreaded.": "",
    "SimHost.": "",
    "SimNetwork.": "",
    "MemoryNetwork.": "",
    "SimStream.": "stream.",
    "MemoryStream.": "stream.",
    "SimListener.": "listener.",
    "MemoryListener.": "listener.",
}


def _call_name(code: CodeType) -> str:
    name = code.co_qualname
    if name.endswith(".__await__"):
        return "await task" if name == "NativeTask.__await__" else f"await {name[:-10]}"
    for prefix, shown in _CALL_PREFIXES.items():
        if name.startswith(prefix):
            return f"{shown}{name[len(prefix) :]}()"
    return f"{name}()"


def _describe(where: object) -> str:
    """Say where a task is suspended: ``sleep() at app.py:12 in worker``."""
    if not isinstance(where, tuple):
        return "its start"
    user, line, api = where[:3]
    call = _call_name(api) if api is not None else ""
    if user is None:
        return call or "anyrt internals"
    function = user.co_qualname.rpartition("<locals>.")[2]
    place = f"{os.path.basename(user.co_filename)}:{line} in {function}"
    return f"{call} at {place}" if call else place


def _format(record: _Record) -> TraceEntry:
    step, time, task, resumed, kind, detail = record
    if task is None:
        return TraceEntry(step, time, None, str(detail))
    if kind == _RETURNED:
        outcome = "returned"
    elif kind == _RAISED:
        assert isinstance(detail, BaseException)
        text = str(detail)
        outcome = f"raised {type(detail).__name__}" + (f": {text}" if text else "")
    elif kind == _YIELDED:
        outcome = f"yields in {_describe(detail)}"
    else:
        outcome = f"waits on {_describe(detail)}"
    start = "started" if resumed is None else f"after {_describe(resumed)}"
    return TraceEntry(step, time, task, f"{start}: {outcome}")


class SimTimerQueue(TimerQueue):
    """A timer queue whose timers with equal deadlines fire in a seeded random order."""

    __slots__ = ("_bits",)

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._bits = rng.getrandbits

    def push(self, entry: TimerEntry) -> None:
        """Add ``entry``; ties are broken by a random key (unique by the counter)."""
        heap = self._heap
        key = (self._bits(32) << 32) | next(self._counter)
        heapq.heappush(heap, (entry.deadline, key, entry))
        if len(heap) > self._compact_at:
            self._compact()


@final
class Simulation:
    """One seeded, deterministic run of a test on a simulated world.

    The simulation owns a `SingleThreaded` runtime on a `VirtualClock`, whose network
    is a simulated one of hosts and links. The runtime itself is the host ``"main"``;
    `host` gives a view of the same runtime bound to another host. Everything random
    (the order of ready tasks and of timers due at the same time, the network's jitter
    and faults, `buggify`) comes from `random`, seeded with ``seed``.

    Use `anyrt.testing.simulate` to run a test over many seeds; use a `Simulation`
    directly to run one seed and look at it (`trace`, `steps`, `now`).

    Args:
        seed: the seed of this run.
        link: how every link behaves unless `set_link` says otherwise.
        trace: how many of the last steps to keep for `trace` (0: none).
        max_steps: fail the run with `StepLimitExceeded` after this many steps.
        fail_on_task_errors: make `run` fail when a task failed and nobody awaited it
            (otherwise such failures are only logged).
        network_buffer: bytes each connection buffers per direction (its window).
    """

    def __init__(
        self,
        seed: int,
        *,
        link: Link | None = None,
        trace: int = 32,
        max_steps: int = 1_000_000,
        fail_on_task_errors: bool = True,
        network_buffer: int = 65536,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"a simulation seed is an int, not {type(seed).__name__}")
        check_positive_int(trace, "Simulation(trace=...)", minimum=0)
        check_positive_int(max_steps, "Simulation(max_steps=...)")
        if link is not None and not isinstance(link, Link):
            raise TypeError(f"link= takes an anyrt.testing.Link, not {type(link).__name__}")
        self._seed = seed
        self._random = random.Random(seed)
        self.task_errors: list[TaskError] = []
        self._fail_on_task_errors = fail_on_task_errors
        self._failure_records: tuple[_Record, ...] | None = None
        self._failure_point: tuple[int, float] | None = None
        runtime = SingleThreaded(error_handler=self._on_task_error)
        self._runtime = runtime
        self._tracer = _Tracer(trace, max_steps, runtime._now_fn)
        self._network = SimNetwork(runtime, self, buffer_size=network_buffer)
        if link is not None:
            self._network.default_link = link
        self._hosts: dict[str, SimHost] = {}
        self._used = False
        runtime._attach_simulation(self, SimTimerQueue(self._random), self._network)

    def __repr__(self) -> str:
        return f"<anyrt Simulation seed={self._seed} steps={self._tracer.steps}>"

    # -- what the run is ----------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed of this run."""
        return self._seed

    @property
    def random(self) -> random.Random:
        """The run's seeded generator; draw test decisions from it to keep replays exact."""
        return self._random

    @property
    def runtime(self) -> SingleThreaded:
        """The simulated runtime, on host ``"main"``."""
        return self._runtime

    @property
    def steps(self) -> int:
        """How many task steps have run."""
        return self._tracer.steps

    def now(self) -> float:
        """The virtual time."""
        return self._runtime.now()

    @property
    def trace(self) -> tuple[TraceEntry, ...]:
        """The last recorded steps and events, oldest first."""
        return self._tracer.entries()

    @property
    def trace_digest(self) -> str:
        """A digest of every step so far: the same seed gives the same digest."""
        return f"{self._tracer.digest & _MASK:016x}"

    # -- hosts and the network ----------------------------------------------------------

    def host(self, name: str) -> SimHost:
        """Return the runtime view of host ``name``, creating the host on first use.

        Its ``listen_tcp`` binds on that host and its ``connect_tcp`` connects from it;
        other hosts reach it by its name (``connect_tcp("db", 5432)``).
        """
        view = self._hosts.get(name)
        if view is None:
            if name != DEFAULT_HOST:
                self._network.add_host(name)
            view = self._hosts[name] = SimHost(self, name)
        return view

    @property
    def hosts(self) -> tuple[str, ...]:
        """The names of the hosts, ``"main"`` first."""
        return self._network.hosts()

    def link(self, a: str, b: str) -> Link:
        """Return how the link between hosts ``a`` and ``b`` behaves."""
        self._network.check_pair(a, b, "link()")
        return self._network.link(a, b)

    def set_link(self, a: str, b: str, **changes: Any) -> Link:
        """Change how the link between hosts ``a`` and ``b`` behaves; return the result.

        Takes the fields of `Link` (``latency``, ``jitter``, ``bandwidth``,
        ``reset_rate``, ``refuse_rate``, ``split_rate``).
        """
        link = changed_link(self.link(a, b), changes)
        self._network.set_link(a, b, link)
        return link

    def set_default_link(self, **changes: Any) -> Link:
        """Change how every link not configured with `set_link` behaves; return it."""
        link = self._network.default_link = changed_link(self._network.default_link, changes)
        return link

    @property
    def connect_timeout(self) -> float:
        """Seconds a ``connect_tcp`` across a partition waits before `TimeoutError`."""
        return self._network.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"connect_timeout takes seconds > 0, got {seconds!r}")
        self._network.connect_timeout = float(seconds)

    def partition(self, a: str, b: str) -> None:
        """Cut hosts ``a`` and ``b`` apart until `heal`.

        Segments between them wait on the wire (TCP retransmits) and arrive after the
        heal; a connect between them fails with `TimeoutError` after `connect_timeout`.
        """
        self._network.partition(a, b)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """End the partition between ``a`` and ``b`` (no arguments: every partition)."""
        self._network.heal(a, b)

    def hold(self, a: str, b: str) -> None:
        """Hold every segment and connect between ``a`` and ``b`` until `release`."""
        self._network.hold(a, b)

    def release(self, a: str | None = None, b: str | None = None) -> None:
        """Deliver what a `hold` kept between ``a`` and ``b`` (no arguments: every hold)."""
        self._network.release(a, b)

    def blocked(self, a: str, b: str) -> bool:
        """Return True while a partition or a hold stops traffic between ``a`` and ``b``."""
        self._network.check_pair(a, b, "blocked()")
        return self._network.blocked(a, b)

    # -- running --------------------------------------------------------------------------

    def run(self, test_fn: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
        """Run ``test_fn(runtime)`` to completion, then close the runtime.

        A simulation runs once. The test's exception propagates as it is; `trace` then
        holds the steps before it.

        Raises:
            BaseExceptionGroup: with ``fail_on_task_errors``, tasks failed and nobody awaited
                them (each exception carries a note naming its task).
            StepLimitExceeded: the run took more than ``max_steps`` steps.
            anyrt.Deadlock: every task waits and no timer is pending.
        """
        if self._used:
            raise RuntimeError("a Simulation runs once; create a new one for another run")
        self._used = True
        runtime = self._runtime
        tracer = self._tracer
        try:
            result = runtime.block_on(_start(test_fn, runtime))
        except BaseException:
            tracer.expected = None  # the cleanup after a failure is not compared
            if self._failure_records is None:
                self._failure_records = tuple(tracer.ring)
                self._failure_point = (tracer.steps, runtime.now())
            raise
        finally:
            # Let the cleanup run however long the test ran, but not forever.
            tracer.allow(max(100_000, tracer.limit // 10))
            runtime.close()
        if self.task_errors and self._fail_on_task_errors:
            raise BaseExceptionGroup(
                f"{len(self.task_errors)} task(s) failed and nobody awaited them",
                [error.exception for error in self.task_errors],
            )
        return result

    def _on_task_error(self, error: TaskError) -> None:
        exc = error.exception
        self._tracer.note(f"task {error.task_name!r} failed ({error.reason}): {exc!r}")
        if not self._fail_on_task_errors:
            log_task_error(error)
            return
        if self._failure_records is None:
            self._failure_records = tuple(self._tracer.ring)
            self._failure_point = (self._tracer.steps, self._runtime.now())
        exc.add_note(f"in task {error.task_name!r} ({error.reason}) of the simulation")
        self.task_errors.append(error)

    def failure_trace(self) -> tuple[TraceEntry, ...]:
        """The steps up to the failure of `run` (or the first task failure), else `trace`."""
        records = self._failure_records
        return self._tracer.entries(records)

    # -- what other modules use -----------------------------------------------------------

    def _note(self, text: str) -> None:
        self._tracer.note(text)

    def _buggify(self, probability: float, depth: int) -> bool:
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise TypeError(f"buggify() takes a probability, not {type(probability).__name__}")
        if not 0 <= probability <= 1:
            raise ValueError(f"buggify() takes a probability in [0, 1], got {probability!r}")
        if self._random.random() >= probability:
            return False
        frame = sys._getframe(depth + 1)
        where = f"{frame.f_code.co_qualname} ({os.path.basename(frame.f_code.co_filename)}"
        self._tracer.note(f"buggify({probability}) fired in {where}:{frame.f_lineno})")
        return True


def _start(
    test_fn: Callable[[Runtime], Coroutine[Any, Any, T]], runtime: SingleThreaded
) -> Coroutine[Any, Any, T]:
    # A cast: `NativeRuntime` declares `name` and `cancelled_exc` as class variables,
    # which mypy does not accept for the protocol's instance variables.
    coro = test_fn(cast("Runtime", runtime))
    if not isinstance(coro, Coroutine):
        raise TypeError(
            "a simulated test is an async function taking the runtime, test_fn(runtime); "
            f"{test_fn!r} returned {type(coro).__name__}"
        )
    return coro


def current_simulation() -> Simulation:
    """Return the simulation running on this thread.

    Raises:
        RuntimeError: not called from a task of a simulated run.
    """
    runtime = thread_state.runtime
    simulation = getattr(runtime, "_sim", None)
    if simulation is None:
        raise RuntimeError(
            "current_simulation() is only available inside a simulated run: call it from "
            "a task of the runtime that anyrt.testing.simulate() (or a Simulation) runs"
        )
    assert isinstance(simulation, Simulation)
    return simulation


def buggify(probability: float = 0.05) -> bool:
    """A fault point: True with ``probability`` (seeded) under simulation, else False.

    Plant it in production code where a rare event can happen (a slow disk, a
    dropped cache, an early timeout) and handle the True branch; on every runtime that
    is not simulated it returns False at the cost of one thread-local lookup. Under
    simulation every fault point that fires is recorded in the trace.

    Raises:
        ValueError: under simulation, ``probability`` is not in [0, 1].
    """
    runtime = thread_state.runtime
    if runtime is None:
        return False
    simulation = getattr(runtime, "_sim", None)
    if simulation is None:
        return False
    assert isinstance(simulation, Simulation)
    return simulation._buggify(probability, 1)


@final
class SimHost:
    """The simulated runtime seen from one host; implements `anyrt.Runtime`.

    Everything but the network is the simulation's runtime: tasks, time, primitives.
    ``listen_tcp`` binds on this host (``"0.0.0.0"`` for every address, ``"127.0.0.1"``
    for loopback only, or the host's own name) and ``connect_tcp`` connects from it,
    over the link to the target host. Hand it to the code that runs on the host.
    """

    name: str = "single-threaded"
    cancelled_exc: type[BaseException] = Cancelled

    def __init__(self, simulation: Simulation, host: str) -> None:
        self._simulation = simulation
        self._runtime = simulation.runtime
        self._network = simulation._network
        self._host = host
        self.capabilities = self._runtime.capabilities

    def __repr__(self) -> str:
        return f"<anyrt SimHost {self._host!r} of {self._simulation!r}>"

    @property
    def host(self) -> str:
        """The name of this host."""
        return self._host

    @property
    def simulation(self) -> Simulation:
        """The simulation this host belongs to."""
        return self._simulation

    # -- the network, from this host -------------------------------------------------------

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Connect from this host to ``host:port`` (a host name, or 127.0.0.1 for itself).

        With ``ssl``, complete a TLS handshake over the simulated connection.
        """
        self._runtime._check_open()
        stream = await self._network.connect_from(self._host, host, port)
        return await secure_client(self._runtime, stream, ssl, server_hostname or host)

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen on ``host:port`` of this host (port 0 picks a free one; ``ssl``: TLS)."""
        self._runtime._check_open()
        listener = await self._network.listen_on(self._host, host, port, reuse_port=reuse_port)
        return secure_listener(self._runtime, listener, ssl)

    async def open_udp(self, local_host: str, local_port: int) -> DatagramSocket:
        """Bind a UDP socket on this host; datagrams cross the simulated links."""
        self._runtime._check_open()
        return await self._network.open_udp_on(self._host, local_host, local_port)

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Not available: the simulated runtime has no OS reactor."""
        await self._runtime.wait_readable(sock)

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Not available: the simulated runtime has no OS reactor."""
        await self._runtime.wait_writable(sock)

    # -- everything else is the simulation's runtime ---------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> NativeTask[T]:
        """Spawn ``coro`` on the simulated runtime; see `anyrt.Executor.spawn`."""
        return self._runtime.spawn(coro, name=name)

    def spawn_local(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> NativeTask[T]:
        """Spawn ``coro`` on the simulated runtime; see `anyrt.LocalExecutor.spawn_local`."""
        return self._runtime.spawn_local(coro, name=name)

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the simulated runtime; see `anyrt.Executor.block_on`."""
        return self._runtime.block_on(coro)

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]:
        """Return a oneshot of the simulated runtime; see `anyrt.Executor.oneshot`."""
        return self._runtime.oneshot()

    def spawn_blocking(
        self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn`` inline, as the simulated runtime does."""
        return self._runtime.spawn_blocking(fn, *args, **kwargs)

    def now(self) -> float:
        """Return the virtual time."""
        return self._runtime.now()

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        """Suspend for ``seconds`` of virtual time."""
        return self._runtime.sleep(seconds)

    def sleep_until(self, deadline: float) -> Coroutine[Any, Any, None]:
        """Suspend until the virtual time reaches ``deadline``."""
        return self._runtime.sleep_until(deadline)

    def interval(self, period: float) -> AsyncIterator[float]:
        """Tick every ``period`` seconds; see `anyrt.Timer.interval`."""
        return self._runtime.interval(period)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``async with host.timeout(s):`` means ``with host.fail_after(s):``."""
        return self._runtime.timeout(seconds)

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> CancelScope:
        """A cancel scope of the simulated runtime; see `anyrt.Executor.cancel_scope`."""
        return self._runtime.cancel_scope(deadline=deadline, shield=shield)

    def move_on_after(self, seconds: float, *, shield: bool = False) -> CancelScope:
        """See `anyrt.Timer.move_on_after` (virtual time)."""
        return self._runtime.move_on_after(seconds, shield=shield)

    def move_on_at(self, deadline: float, *, shield: bool = False) -> CancelScope:
        """See `anyrt.Timer.move_on_at` (virtual time)."""
        return self._runtime.move_on_at(deadline, shield=shield)

    def fail_after(self, seconds: float, *, shield: bool = False) -> CancelScope:
        """See `anyrt.Timer.fail_after` (virtual time)."""
        return self._runtime.fail_after(seconds, shield=shield)

    def fail_at(self, deadline: float, *, shield: bool = False) -> CancelScope:
        """See `anyrt.Timer.fail_at` (virtual time)."""
        return self._runtime.fail_at(deadline, shield=shield)

    def current_deadline(self) -> float:
        """See `anyrt.Timer.current_deadline`."""
        return self._runtime.current_deadline()

    def close(self) -> None:
        """Do nothing: the simulation closes its runtime when the run ends."""

    @property
    def closed(self) -> bool:
        """True once the simulation's runtime is closed."""
        return self._runtime.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if TYPE_CHECKING:  # the host view keeps the protocols (checked by mypy)

    def _host_is_a_runtime(host: SimHost) -> Runtime:
        return host

    def _listener_is_a_listener(listener: SimListener) -> Listener:
        return listener
