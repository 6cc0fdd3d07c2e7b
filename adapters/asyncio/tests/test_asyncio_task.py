"""`AsyncioTask`: an asyncio task that keeps the anyrt contract, from any thread."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest
from anyrt_asyncio import AsyncioRuntime, AsyncioTask

import anyrt


async def _value(value: int) -> int:
    return value


def test_a_spawned_task_is_an_asyncio_task(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        task = rt.spawn(_value(1), name="one")
        assert isinstance(task, asyncio.Task)
        assert isinstance(task, anyrt.Task)
        assert task.name == task.get_name() == "one"
        assert await task == 1
        assert asyncio.current_task() in asyncio.all_tasks()

    rt.block_on(main())


def test_tasks_cannot_be_constructed_directly(rt: AsyncioRuntime) -> None:
    coro = _value(1)
    with pytest.raises(TypeError, match=r"runtime\.spawn"):
        AsyncioTask(coro)
    coro.close()


def test_asyncio_code_can_await_and_gather_the_tasks(rt: AsyncioRuntime) -> None:
    async def main() -> list[int]:
        tasks = [rt.spawn(_value(i)) for i in range(3)]
        return list(await asyncio.gather(*tasks))

    assert rt.block_on(main()) == [0, 1, 2]


def test_cancel_from_a_foreign_thread(rt: AsyncioRuntime) -> None:
    async def main() -> str:
        started = anyrt.Event(rt)

        async def sleeper() -> None:
            started.set()
            await rt.sleep(3600)

        task = rt.spawn(sleeper())
        await started.wait()
        results: list[bool] = []
        thread = threading.Thread(target=lambda: results.append(task.cancel()))
        thread.start()
        try:
            await task
        except anyrt.Cancelled:
            outcome = "cancelled"
        await rt.spawn_blocking(thread.join)
        assert results == [True]
        return outcome

    assert rt.block_on(main()) == "cancelled"


def test_spawn_from_a_foreign_thread_while_block_on_runs(rt: AsyncioRuntime) -> None:
    async def main() -> list[int]:
        tasks: list[anyrt.Task[int]] = []
        thread = threading.Thread(
            target=lambda: tasks.extend(rt.spawn(_value(i)) for i in range(50))
        )
        thread.start()
        await rt.spawn_blocking(thread.join)
        assert all(task.name == "_value" for task in tasks)
        return [await task for task in tasks]

    assert rt.block_on(main()) == list(range(50))


def test_a_foreign_spawn_can_be_cancelled_and_detached_before_it_starts(
    rt: AsyncioRuntime,
) -> None:
    steps: list[str] = []

    async def never() -> None:
        steps.append("ran")

    task = rt.spawn(never(), name="never")  # the loop is not running: the task is pending
    assert task.name == "never"
    assert not task.done()
    assert task.cancel() is True
    task.detach()

    async def main() -> None:
        with pytest.raises(anyrt.Cancelled):
            await task

    rt.block_on(main())
    assert steps == []
    assert task.done()
    assert task.cancel() is False


def test_tasks_persist_between_block_on_calls(rt: AsyncioRuntime) -> None:
    gate = anyrt.Event(rt)
    seen: list[str] = []

    async def background() -> str:
        await gate.wait()
        seen.append("through")
        return "done"

    async def first() -> anyrt.Task[str]:
        task = rt.spawn(background())
        await rt.sleep(0)
        return task

    task = rt.block_on(first())
    assert not task.done()
    gate.set()

    async def second() -> str:
        return await task

    assert rt.block_on(second()) == "done"
    assert seen == ["through"]


def test_awaiting_a_task_from_another_loop_names_the_fix(rt: AsyncioRuntime) -> None:
    gate = anyrt.Event(rt)

    async def wait_for_gate() -> None:
        await gate.wait()

    async def start() -> anyrt.Task[None]:
        return rt.spawn(wait_for_gate())

    task = rt.block_on(start())

    async def elsewhere() -> None:
        await task

    with pytest.raises(RuntimeError, match="belongs to another event loop"):
        asyncio.run(elsewhere())
    gate.set()
    rt.block_on(_join(task))


async def _join(task: anyrt.Task[object]) -> object:
    return await task


class _Boom(Exception):
    pass


async def _fail() -> None:
    raise _Boom("unobserved")


def test_asyncio_never_logs_an_unretrieved_exception(
    make: object, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[anyrt.TaskError] = []
    rt = make(error_handler=errors.append)  # type: ignore[operator]

    async def main() -> None:
        task = rt.spawn(_fail(), name="dropped")
        while not task.done():
            await rt.sleep(0)
        del task
        gc.collect()
        rt.spawn(_fail(), name="detached").detach()
        await rt.sleep(0.001)

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        rt.block_on(main())
    assert sorted((e.task_name, e.reason) for e in errors) == [
        ("detached", "detached"),
        ("dropped", "never awaited"),
    ]
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_a_raising_error_handler_is_logged_with_both_exceptions(
    make: object, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(error: anyrt.TaskError) -> None:
        raise KeyError("the handler broke")

    rt = make(error_handler=handler)  # type: ignore[operator]

    async def main() -> None:
        rt.spawn(_fail(), name="failing").detach()
        await rt.sleep(0.001)

    rt.block_on(main())
    text = caplog.text
    assert "the anyrt error handler" in text
    assert "the handler broke" in text
    assert "unobserved" in text


def test_a_task_failing_in_its_cleanup_during_close_is_reported(make: object) -> None:
    errors: list[anyrt.TaskError] = []
    rt = make(error_handler=errors.append)  # type: ignore[operator]

    async def bad_cleanup() -> None:
        try:
            await rt.sleep(3600)
        finally:
            raise _Boom("in cleanup")

    async def main() -> None:
        rt.spawn(bad_cleanup(), name="bad").detach()
        await rt.sleep(0)

    rt.block_on(main())
    rt.close()
    assert [(e.task_name, str(e.exception)) for e in errors] == [("bad", "in cleanup")]
