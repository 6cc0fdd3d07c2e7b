"""A due timer's task runs before the backlog of ready tasks, on every native backend.

Otherwise a timer's lateness grows with the length of the run queue: 10,000 ready
tasks at 3 µs a step make every timer due meanwhile 30 ms late. The native loops check
their timers every batch of steps and put what the timers woke at the front.
"""

from __future__ import annotations

import time

import pytest

import anyrt

BACKLOG = 1000
STEP_SECONDS = 0.0002  # each backlog task busies its thread this long: 200 ms in all


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("single-threaded", {"clock": "real"}),
        ("work-stealing", {"workers": 1}),
        ("thread-per-core", {"cores": 1}),
    ],
)
def test_a_due_timer_runs_before_the_queued_backlog(
    backend: str, options: dict[str, object]
) -> None:
    order: list[object] = []

    async def busy(index: int) -> None:
        end = time.perf_counter() + STEP_SECONDS
        while time.perf_counter() < end:
            pass
        order.append(index)

    async def main(rt: anyrt.Runtime) -> None:
        async def sleeper() -> None:
            await rt.sleep(0.005)  # due after about 25 backlog steps
            order.append("timer")

        timer = rt.spawn(sleeper())
        await rt.sleep(0)  # the sleeper registers its timer
        backlog = [rt.spawn(busy(index)) for index in range(BACKLOG)]
        await timer
        for task in backlog:
            await task

    anyrt.run(main, backend=backend, **options)
    position = order.index("timer")
    # Without the priority it would come after the whole backlog; with it, after at
    # most one batch of steps (128 on every native loop) past its deadline.
    assert position < 200, f"the timer ran after {position} of {BACKLOG} tasks"
