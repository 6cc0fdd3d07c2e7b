"""Differential testing: generated programs give the same results on every native backend.

A program is a few tasks, each a list of steps from a small DSL: sleep, yield, spawn a
child, send on a oneshot, receive from one, cancel a victim. It runs on
`single-threaded` (virtual clock, optionally shuffled ready order), on `work-stealing`
with two workers and on `thread-per-core` with two cores, and the observable results
must be equal to each
other and to what a plain reading of the program predicts.

The DSL is built so that the results do not depend on the schedule:

* a task only receives from tasks with a lower index, and sends never block, so every
  receive is eventually matched and no program can deadlock;
* every value is received exactly once, by the one task that owns that oneshot;
* cancellation targets only *victims*, tasks that end up blocked forever on a oneshot
  nobody sends to; each victim is cancelled by exactly one step, so its outcome is
  "cancelled" whenever the cancel lands, and ``cancel()`` always returns True;
* sleeps (0-3 ms) only reorder tasks that are independent of each other;
* a task that fails raises at its very end, after all its receives.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import anyrt

# -- the DSL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sleep:
    ms: int


@dataclass(frozen=True)
class Yield:
    pass


@dataclass(frozen=True)
class Send:
    edge: int


@dataclass(frozen=True)
class Receive:
    edge: int


@dataclass(frozen=True)
class SpawnChild:
    steps: tuple[Sleep | Yield, ...]
    value: int
    fails: bool


@dataclass(frozen=True)
class Cancel:
    victim: int


Step = Sleep | Yield | Send | Receive | SpawnChild | Cancel


@dataclass(frozen=True)
class Program:
    tasks: tuple[tuple[Step, ...], ...]
    fails: tuple[bool, ...]  # per task: raise ValueError at its end
    edges: tuple[int, ...]  # the value each oneshot carries
    victims: tuple[tuple[Sleep | Yield, ...], ...]  # steps before blocking forever


Outcome = tuple[Any, ...]
Observed = tuple[list[Outcome], collections.Counter[int]]

simple_steps = st.one_of(st.builds(Sleep, st.integers(0, 3)), st.just(Yield()))
children = st.builds(
    SpawnChild,
    st.lists(simple_steps, max_size=2).map(tuple),
    st.integers(0, 9),
    st.booleans(),
)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    count = draw(st.integers(1, 5))
    tasks: list[list[Step]] = [
        draw(st.lists(st.one_of(simple_steps, children), max_size=4)) for _ in range(count)
    ]

    def insert(task: int, step: Step) -> None:
        tasks[task].insert(draw(st.integers(0, len(tasks[task]))), step)

    edges: list[int] = []
    if count >= 2:
        for edge in range(draw(st.integers(0, 6))):
            sender = draw(st.integers(0, count - 2))
            receiver = draw(st.integers(sender + 1, count - 1))
            insert(sender, Send(edge))
            insert(receiver, Receive(edge))
            edges.append(draw(st.integers(0, 4)))  # small: repeated values are likely
    victims = draw(st.lists(st.lists(simple_steps, max_size=2).map(tuple), max_size=3))
    for victim in range(len(victims)):
        insert(draw(st.integers(0, count - 1)), Cancel(victim))
    return Program(
        tasks=tuple(tuple(steps) for steps in tasks),
        fails=tuple(draw(st.booleans()) for _ in range(count)),
        edges=tuple(edges),
        victims=tuple(victims),
    )


# -- running a program ----------------------------------------------------------------------


async def execute(rt: anyrt.Runtime, program: Program) -> Observed:
    """Run ``program`` on ``rt``; return each task's outcome and the values received."""
    oneshots = [rt.oneshot() for _ in program.edges]
    received: list[int] = []
    received_lock = threading.Lock()

    async def simple(step: Sleep | Yield) -> None:
        await rt.sleep(step.ms / 1000 if isinstance(step, Sleep) else 0)

    async def victim(steps: tuple[Sleep | Yield, ...]) -> None:
        for step in steps:
            await simple(step)
        _, never = rt.oneshot()
        await never
        raise AssertionError("a victim's oneshot was sent to")

    async def child(spec: SpawnChild) -> int:
        for step in spec.steps:
            await simple(step)
        if spec.fails:
            raise ValueError(f"child {spec.value} failed")
        return spec.value

    victims = [rt.spawn(victim(steps)) for steps in program.victims]

    async def task(index: int, steps: tuple[Step, ...]) -> tuple[Any, ...]:
        got: list[int] = []
        spawned: list[anyrt.Task[int]] = []
        sends: list[bool] = []
        cancels: list[bool] = []
        for step in steps:
            if isinstance(step, Sleep | Yield):
                await simple(step)
            elif isinstance(step, Send):
                sends.append(oneshots[step.edge][0].send(program.edges[step.edge]))
            elif isinstance(step, Receive):
                value = await oneshots[step.edge][1]
                with received_lock:
                    received.append(value)
                got.append(value)
            elif isinstance(step, SpawnChild):
                spawned.append(rt.spawn(child(step)))
            else:
                cancels.append(victims[step.victim].cancel())
        results: list[Outcome] = [await outcome_of(handle) for handle in spawned]
        if program.fails[index]:
            raise ValueError(f"task {index} failed")
        return tuple(got), tuple(results), tuple(sends), tuple(cancels)

    handles = [rt.spawn(task(index, steps)) for index, steps in enumerate(program.tasks)]
    outcomes = [await outcome_of(handle) for handle in [*handles, *victims]]
    return outcomes, collections.Counter(received)


async def outcome_of(task: anyrt.Task[Any]) -> Outcome:
    try:
        return ("value", await task)
    except anyrt.Cancelled:
        return ("cancelled",)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


def predict(program: Program) -> Observed:
    """What the program must produce, read off the program itself."""
    outcomes: list[Outcome] = []
    for index, steps in enumerate(program.tasks):
        if program.fails[index]:
            outcomes.append(("error", "ValueError", f"task {index} failed"))
            continue
        got = tuple(program.edges[step.edge] for step in steps if isinstance(step, Receive))
        results = tuple(
            ("error", "ValueError", f"child {step.value} failed")
            if step.fails
            else ("value", step.value)
            for step in steps
            if isinstance(step, SpawnChild)
        )
        sends = tuple(True for step in steps if isinstance(step, Send))
        cancels = tuple(True for step in steps if isinstance(step, Cancel))
        outcomes.append(("value", (got, results, sends, cancels)))
    outcomes += [("cancelled",)] * len(program.victims)
    return outcomes, collections.Counter(program.edges)


def run_single_threaded(program: Program, seed: int | None) -> Observed:
    with anyrt.SingleThreaded(seed=seed) as rt:
        return rt.block_on(execute(rt, program))


def run_threaded(program: Program, backend: str, **options: int) -> Observed:
    with anyrt.runtime(backend, **options) as rt:

        async def bounded() -> Observed:
            async with rt.timeout(10):  # a lost wake-up fails the example, not the run
                return await execute(rt, program)

        return rt.block_on(bounded())


# -- the property ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(program=programs(), seed=st.none() | st.integers(0, 2**16))
def test_single_threaded_and_the_threaded_runtimes_agree(
    program: Program, seed: int | None
) -> None:
    expected = predict(program)
    assert run_single_threaded(program, seed) == expected
    assert run_threaded(program, "work-stealing", workers=2) == expected
    assert run_threaded(program, "thread-per-core", cores=2) == expected


def test_a_hand_written_program_covers_every_step_kind() -> None:
    """One fixed program using every step, so the DSL itself is known to be exercised."""
    program = Program(
        tasks=(
            (Send(0), SpawnChild((Sleep(1),), 7, fails=False), Yield(), Send(1), Cancel(0)),
            (Receive(0), SpawnChild((Yield(),), 3, fails=True), Sleep(2), Receive(1)),
            (Cancel(1), Sleep(0)),
        ),
        fails=(False, False, True),
        edges=(4, 4),
        victims=((Sleep(1),), ()),
    )
    expected = predict(program)
    assert expected == (
        [
            ("value", ((), (("value", 7),), (True, True), (True,))),
            ("value", ((4, 4), (("error", "ValueError", "child 3 failed"),), (), ())),
            ("error", "ValueError", "task 2 failed"),
            ("cancelled",),
            ("cancelled",),
        ],
        collections.Counter({4: 2}),
    )
    assert run_single_threaded(program, seed=None) == expected
    assert run_single_threaded(program, seed=1) == expected
    assert run_threaded(program, "work-stealing", workers=2) == expected
    assert run_threaded(program, "thread-per-core", cores=2) == expected
