"""Instrumentation hooks on every native backend: each event, once, in order per task."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import pytest

import anyrt

NATIVE = {
    "single-threaded": {},
    "work-stealing": {"workers": 2},
    "thread-per-core": {"cores": 2},
}


class Recorder(anyrt.Instrument):
    def __init__(self) -> None:
        self.events: dict[str, list[str]] = collections.defaultdict(list)
        self._lock = threading.Lock()

    def _record(self, task: Any, event: str) -> None:
        with self._lock:
            self.events[task.name].append(event)

    def task_spawned(self, task: Any) -> None:
        self._record(task, "spawned")

    def task_scheduled(self, task: Any) -> None:
        self._record(task, "scheduled")

    def task_suspended(self, task: Any) -> None:
        self._record(task, "suspended")

    def task_finished(self, task: Any) -> None:
        self._record(task, "finished")


@pytest.mark.parametrize("backend", sorted(NATIVE))
def test_each_task_reports_its_life(backend: str) -> None:
    recorder = Recorder()
    with anyrt.runtime(backend, **NATIVE[backend]) as rt:
        rt.instrument(recorder)  # type: ignore[attr-defined]
        event = anyrt.Event(rt)

        async def waiter() -> None:
            await event.wait()

        async def main() -> None:
            task = rt.spawn(waiter(), name="waiter")
            while not any(info.name == "waiter" and info.state == "parked" for info in rt.tasks()):  # type: ignore[attr-defined]
                await rt.sleep(0.001)
            event.set()
            await task

        rt.block_on(main())
        rt.uninstrument(recorder)  # type: ignore[attr-defined]

        async def unseen() -> None:
            pass

        async def spawn_unseen() -> None:
            await rt.spawn(unseen(), name="unseen")

        rt.block_on(spawn_unseen())
    assert recorder.events["waiter"] == ["spawned", "suspended", "scheduled", "finished"]
    assert "unseen" not in recorder.events


def test_a_failing_instrument_is_logged_and_harmless(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(anyrt.Instrument):
        def task_spawned(self, task: Any) -> None:
            raise RuntimeError("instrument bug")

    with caplog.at_level(logging.ERROR, logger="anyrt"), anyrt.SingleThreaded() as rt:
        rt.instrument(Broken())

        async def answer() -> int:
            return 42

        assert rt.block_on(answer()) == 42
    assert "instrument bug" in caplog.text
    with pytest.raises(TypeError, match=r"anyrt\.Instrument"):
        anyrt.SingleThreaded().instrument(print)  # type: ignore[arg-type]
