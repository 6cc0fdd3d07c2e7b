"""`runtime.tasks()`: a snapshot of the live tasks, on every native backend and adapter."""

from __future__ import annotations

import pytest

import anyrt
from anyrt.testing import backend_params

NATIVE = {
    "single-threaded": {},
    "work-stealing": {"workers": 2},
    "thread-per-core": {"cores": 2},
}


@pytest.mark.parametrize("backend", backend_params())
def test_tasks_lists_live_tasks_with_state_where_and_age(backend: str) -> None:
    with anyrt.runtime(backend, **NATIVE.get(backend, {})) as rt:
        gate = anyrt.Event(rt)
        started = anyrt.Semaphore(rt, 0)

        async def waiter() -> None:
            started.release()
            await gate.wait()

        async def main() -> list[anyrt.TaskInfo]:
            tasks = [rt.spawn(waiter(), name=f"waiter-{i}") for i in range(3)]
            for _ in tasks:
                await started.acquire()
            await rt.sleep(0.01)
            snapshot = rt.tasks()  # type: ignore[attr-defined]
            gate.set()
            for task in tasks:
                await task
            return snapshot  # type: ignore[no-any-return]

        snapshot = rt.block_on(main())
        by_name = {info.name.rpartition(".")[2]: info for info in snapshot}
        assert set(by_name) == {"waiter-0", "waiter-1", "waiter-2", "main"}
        for index in range(3):
            info = by_name[f"waiter-{index}"]
            assert info.state == "parked"
            line = waiter.__code__.co_firstlineno + 2  # its `await gate.wait()`
            assert f"test_observability.py:{line}), in Event.wait" in info.where
            assert 0.01 <= info.age < 60
        assert by_name["main"].state == "running"
        assert by_name["main"].where == ""
        assert snapshot[0].name.endswith(".main")  # oldest first
        assert rt.tasks() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", backend_params("threads"))
def test_every_thread_the_runtime_starts_is_named(backend: str) -> None:
    import threading

    before = set(threading.enumerate())
    with anyrt.runtime(backend) as rt:

        async def main() -> str:
            return await rt.spawn_blocking(lambda: threading.current_thread().name)

        blocking_thread = rt.block_on(main())
        assert blocking_thread.startswith(f"anyrt-{backend}-"), blocking_thread
        started = set(threading.enumerate()) - before
        if backend == "trio":
            # trio's worker threads are a process-wide cache that outlives the runtime;
            # each is named for the call it runs (checked above), and trio's own name
            # while idle. The runtime's own thread is "anyrt-trio".
            started = {thread for thread in started if not thread.name.startswith("Trio thread")}
            assert [thread.name for thread in started] == ["anyrt-trio"]
            return
        assert started  # workers or cores, or the loop's executor, and the blocking pool
        assert all(thread.name.startswith(f"anyrt-{backend}-") for thread in started), [
            thread.name for thread in started
        ]


def test_dump_tasks_writes_a_table() -> None:
    import io

    with anyrt.SingleThreaded() as rt:
        gate = anyrt.Event(rt)

        async def parked() -> None:
            await gate.wait()

        async def main() -> str:
            task = rt.spawn(parked(), name="stuck")
            await rt.sleep(1)
            out = io.StringIO()
            rt.dump_tasks(out)
            gate.set()
            await task
            return out.getvalue()

        text = rt.block_on(main())
    lines = text.splitlines()
    assert lines[0].endswith(": 2 live task(s)")
    assert "running" in lines[1]
    assert "1.000s  parked     stuck  " in lines[2]
    assert "in Event.wait" in lines[2]
