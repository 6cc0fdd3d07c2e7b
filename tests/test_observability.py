"""`runtime.tasks()`: a snapshot of the live tasks, on every native backend."""

from __future__ import annotations

import pytest

import anyrt

NATIVE = {
    "single-threaded": {},
    "work-stealing": {"workers": 2},
    "thread-per-core": {"cores": 2},
}


@pytest.mark.parametrize("backend", sorted(NATIVE))
def test_tasks_lists_live_tasks_with_state_where_and_age(backend: str) -> None:
    with anyrt.runtime(backend, **NATIVE[backend]) as rt:
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
            assert "test_observability.py:24), in Event.wait" in info.where
            assert 0.01 <= info.age < 60
        assert by_name["main"].state == "running"
        assert by_name["main"].where == ""
        assert snapshot[0].name.endswith(".main")  # oldest first
        assert rt.tasks() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["work-stealing", "thread-per-core"])
def test_every_thread_the_runtime_starts_is_named(backend: str) -> None:
    import threading

    before = set(threading.enumerate())
    with anyrt.runtime(backend) as rt:

        async def main() -> None:
            await rt.spawn_blocking(lambda: None)

        rt.block_on(main())
        started = set(threading.enumerate()) - before
        assert started  # workers or cores, and the blocking pool
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
