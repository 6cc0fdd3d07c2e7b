"""A cancellation storm: generated programs use every primitive under random cancellation.

Each program is a few workers, each a list of operations on shared primitives (a
`Lock`, a `Semaphore`, a `Channel`, `Event`s, oneshots, `TaskGroup`s, sleeps). An
operation may run inside a ``move_on_after`` or ``fail_after`` of a few milliseconds,
and a controller cancels some workers at random moments. Whatever the schedule, these
must hold afterwards, on every backend:

* the lock is free, at most one task ever held it at a time, and the semaphore has all
  its permits and never had more holders than permits;
* every item whose ``send`` returned was received exactly once (counting what is left
  in the channel), and no other item was;
* every oneshot ``send`` that returned True was seen by its receiver, and no other;
* no primitive has a waiter left;
* a ``TimeoutError`` is only ever raised by a ``fail_after`` whose own deadline passed
  while no enclosing scope was cancelled, and a task group raises only its children's
  real errors;
* a worker whose ``cancel()`` returned True ends cancelled (every worker ends in a wait
  that only a cancellation can end; the others end when their time budget runs out).

`test_native_runtimes_agree` runs each program on every native runtime and requires the
same observable results everywhere.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyrt
from anyrt.testing import each_backend

KINDS = ("lock", "semaphore", "send", "receive", "wait", "set", "oneshot", "group", "sleep")
PERMITS = 2
EVENTS = 3


@dataclass(frozen=True)
class Op:
    kind: str
    arg: int
    #: None, or ("move_on" | "fail", milliseconds): the scope the operation runs in.
    scope: tuple[str, int] | None


@dataclass(frozen=True)
class Program:
    workers: tuple[tuple[Op, ...], ...]
    #: (worker, milliseconds): the controller cancels that worker after that long.
    cancels: tuple[tuple[int, int], ...]
    capacity: int


scopes = st.none() | st.tuples(st.sampled_from(["move_on", "fail"]), st.integers(0, 3))
ops = st.builds(Op, st.sampled_from(KINDS), st.integers(0, 9), scopes)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    workers = draw(
        st.lists(st.lists(ops, min_size=1, max_size=6).map(tuple), min_size=2, max_size=5)
    )
    cancels = draw(
        st.lists(st.tuples(st.integers(0, len(workers) - 1), st.integers(0, 4)), max_size=3)
    )
    return Program(tuple(workers), tuple(cancels), draw(st.sampled_from([0, 1, 4])))


@dataclass
class World:
    """The shared primitives and what the workers observed of them."""

    rt: anyrt.Runtime
    capacity: int
    lock: anyrt.Lock = field(init=False)
    semaphore: anyrt.Semaphore = field(init=False)
    channel: anyrt.Channel[int] = field(init=False)
    events: list[anyrt.Event] = field(init=False)
    guard: threading.Lock = field(default_factory=threading.Lock)
    holder: object = None
    inside: int = 0
    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    oneshots: list[tuple[bool, bool]] = field(default_factory=list)  # (send said, seen)
    violations: list[str] = field(default_factory=list)
    serial: int = 0

    def __post_init__(self) -> None:
        rt = self.rt
        self.lock = anyrt.Lock(rt)
        self.semaphore = anyrt.Semaphore(rt, PERMITS)
        self.channel = anyrt.Channel(rt, self.capacity)
        self.events = [anyrt.Event(rt) for _ in range(EVENTS)]

    def violation(self, message: str) -> None:
        with self.guard:
            self.violations.append(message)

    def next_item(self) -> int:
        with self.guard:
            self.serial += 1
            return self.serial


class Boom(Exception):
    pass


async def run_op(world: World, op: Op, me: object) -> None:
    """Run one operation inside its scope; check that a TimeoutError is legitimate."""
    rt = world.rt
    if op.scope is None:
        await body(world, op, me)
        return
    kind, ms = op.scope
    if kind == "move_on":
        with rt.move_on_after(ms / 1000):
            await body(world, op, me)
        return
    scope = rt.fail_after(ms / 1000)
    try:
        with scope:
            await body(world, op, me)
    except TimeoutError:
        if rt.current_deadline() == float("-inf"):
            world.violation(f"{op}: TimeoutError while an enclosing scope was cancelled")
        if not scope.cancelled_caught:
            world.violation(f"{op}: TimeoutError from a scope that caught nothing")


async def body(world: World, op: Op, me: object) -> None:
    rt = world.rt
    kind = op.kind
    if kind == "lock":
        async with world.lock:
            if world.holder is not None:
                world.violation("two tasks held the lock at once")
            world.holder = me
            try:
                await rt.sleep(0)
            finally:
                world.holder = None
    elif kind == "semaphore":
        async with world.semaphore:
            with world.guard:
                world.inside += 1
                if world.inside > PERMITS:
                    world.violations.append("more semaphore holders than permits")
            try:
                await rt.sleep((op.arg % 3) / 1000)
            finally:
                with world.guard:
                    world.inside -= 1
    elif kind == "send":
        item = world.next_item()
        await world.channel.send(item)
        with world.guard:
            world.sent.append(item)
    elif kind == "receive":
        item = await world.channel.receive()
        with world.guard:
            world.received.append(item)
    elif kind == "wait":
        await world.events[op.arg % EVENTS].wait()
    elif kind == "set":
        world.events[op.arg % EVENTS].set()
    elif kind == "oneshot":
        await oneshot(world, op)
    elif kind == "group":
        await group(world, op, me)
    else:
        await rt.sleep((op.arg % 3) / 1000)


async def oneshot(world: World, op: Op) -> None:
    rt = world.rt
    pair: tuple[anyrt.Sender[int], anyrt.Receiver[int]] = rt.oneshot()
    sender, receiver = pair
    seen: list[int] = []

    async def receive() -> None:
        with rt.move_on_after((op.arg % 3) / 1000):
            seen.append(await receiver)

    task = rt.spawn(receive())
    try:
        await rt.sleep((op.arg % 2) / 1000)
    finally:
        said = sender.send(op.arg)
        with rt.cancel_scope(shield=True):
            await task
        world.oneshots.append((said, seen == [op.arg]))


async def group(world: World, op: Op, me: object) -> None:
    children = [
        Op("lock", op.arg, ("fail", op.arg % 3)),
        Op("send" if op.arg % 2 else "receive", op.arg, ("move_on", 1)),
    ]
    failing = op.arg % 4 == 0

    async def child(child_op: Op) -> None:
        await run_op(world, child_op, object())

    async def fail() -> None:
        await world.rt.sleep(0)
        raise Boom

    try:
        async with anyrt.TaskGroup(world.rt) as tg:
            for child_op in children:
                tg.spawn(child(child_op))
            if failing:
                tg.spawn(fail())
    except* Boom:
        pass  # the expected failure; a cancellation beside it propagates
    except* Exception as errors:
        world.violation(f"a task group raised {errors.exceptions!r}, not only Boom")


async def execute(rt: anyrt.Runtime, program: Program) -> tuple[Any, ...]:
    """Run ``program``; return its observable results (the same on every backend)."""
    world = World(rt, program.capacity)
    forever = anyrt.Event(rt)

    async def worker(steps: tuple[Op, ...]) -> str:
        me = object()
        with rt.move_on_after(0.02):
            for step in steps:
                await run_op(world, step, me)
            await forever.wait()  # only a cancellation ends this
        return "ran out of time"

    tasks = [rt.spawn(worker(steps)) for steps in program.workers]
    cancelled: list[bool] = [False] * len(tasks)

    async def controller() -> None:
        for index, ms in sorted(program.cancels, key=lambda cancel: cancel[1]):
            await rt.sleep(ms / 1000)
            cancelled[index] |= tasks[index].cancel()

    await rt.spawn(controller())
    for index, task in enumerate(tasks):
        try:
            await task
        except anyrt.Cancelled:
            continue
        except BaseException as exc:
            world.violation(f"worker {index} raised {exc!r}")
            continue
        if cancelled[index]:
            world.violation(f"worker {index}: cancel() returned True, yet it returned")
    with rt.move_on_after(0):  # what is still buffered counts as received
        while True:
            world.received.append(await world.channel.receive())
    observed = observe(world)
    for event in world.events:
        event.set()
    return observed


def observe(world: World) -> tuple[Any, ...]:
    primitives: list[tuple[str, object]] = [("lock", world.lock), ("semaphore", world.semaphore)]
    primitives += [(f"event {index}", event) for index, event in enumerate(world.events)]
    left = [name for name, primitive in primitives if " 0 waiting" not in repr(primitive)]
    if "0 senders and 0 receivers waiting" not in repr(world.channel):
        left.append("channel")
    return (
        tuple(world.violations),
        world.lock.locked(),
        world.semaphore.value,
        collections.Counter(world.sent) == collections.Counter(world.received),
        all(said == seen for said, seen in world.oneshots),
        tuple(left),
    )


EXPECTED = ((), False, PERMITS, True, True, ())

storm_settings = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("anyrt_backend", each_backend())
@storm_settings
@given(program=programs())
def test_the_storm_keeps_every_promise(runtime: anyrt.Runtime, program: Program) -> None:
    async def bounded() -> tuple[Any, ...]:
        with runtime.fail_after(30):  # a lost wake-up fails the example, not the run
            return await execute(runtime, program)

    assert runtime.block_on(bounded()) == EXPECTED


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("single-threaded", {"seed": 1}),
        ("work-stealing", {"workers": 2}),
        ("thread-per-core", {"cores": 2}),
    ],
)
@settings(max_examples=10, deadline=None)
@given(program=programs())
def test_native_runtimes_agree(backend: str, options: dict[str, Any], program: Program) -> None:
    with anyrt.runtime(backend, **options) as rt:
        observed = rt.block_on(execute(rt, program))
    with anyrt.SingleThreaded() as reference:
        expected = reference.block_on(execute(reference, program))
    assert observed == expected == EXPECTED
