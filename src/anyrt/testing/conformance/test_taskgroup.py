"""`TaskGroup`: waits for its children; the first failure cancels the rest."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals

T = TypeVar("T")


class Boom(Exception):
    pass


async def test_waits_for_every_child(runtime: anyrt.Runtime) -> None:
    finished: list[int] = []

    async def child(index: int) -> int:
        await runtime.sleep(0.001 * (index % 3))
        finished.append(index)
        return index * index

    async with anyrt.TaskGroup(runtime) as tg:
        tasks = [tg.spawn(child(index)) for index in range(20)]
    assert sorted(finished) == list(range(20))
    assert all(task.done() for task in tasks)
    assert [await task for task in tasks] == [index * index for index in range(20)]


async def test_spawn_names_the_child(runtime: anyrt.Runtime) -> None:
    async with anyrt.TaskGroup(runtime) as tg:
        task = tg.spawn(runtime.sleep(0), name="named-child")
    assert task.name == "named-child"


async def test_first_failure_cancels_the_siblings(runtime: anyrt.Runtime) -> None:
    siblings = Arrivals(runtime, 3)
    outcomes: list[str] = []

    async def sibling(index: int) -> None:
        try:
            await siblings.enter(index, runtime.sleep(FOREVER))
            outcomes.append("slept")
        except runtime.cancelled_exc:
            outcomes.append("cancelled")
            raise

    async def failing() -> None:
        await siblings.all_in.wait()
        raise Boom("first")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            for index in range(3):
                tg.spawn(sibling(index))
            tg.spawn(failing())

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [Boom]
    assert outcomes == ["cancelled"] * 3


async def test_body_exception_is_included_and_cancels_the_children(
    runtime: anyrt.Runtime,
) -> None:
    started = Arrivals(runtime, 1)
    outcomes: list[str] = []

    async def child() -> None:
        try:
            await started.enter("child", runtime.sleep(FOREVER))
        finally:
            outcomes.append("child done")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(child())
            await started.all_in.wait()
            raise KeyError("from the body")

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [KeyError]
    assert outcomes == ["child done"]


async def test_a_failure_during_cancellation_is_reported_too(runtime: anyrt.Runtime) -> None:
    started = Arrivals(runtime, 1)

    async def bad_cleanup() -> None:
        try:
            await started.enter("bad", runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            raise KeyError("cleanup failed") from None

    async def failing() -> None:
        await started.all_in.wait()
        raise Boom("first")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(bad_cleanup())
            tg.spawn(failing())

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert sorted(type(exc).__name__ for exc in info.value.exceptions) == ["Boom", "KeyError"]


async def test_spawn_after_exit_raises(runtime: anyrt.Runtime) -> None:
    async with anyrt.TaskGroup(runtime) as tg:
        pass
    coro = runtime.sleep(0)
    try:
        with pytest.raises(RuntimeError):
            tg.spawn(coro)
    finally:
        coro.close()


async def test_cancelling_the_task_running_the_group_cancels_the_children(
    runtime: anyrt.Runtime,
) -> None:
    children = Arrivals(runtime, 3)
    outcomes: list[str] = []

    async def child(index: int) -> None:
        try:
            await children.enter(index, runtime.sleep(FOREVER))
        except runtime.cancelled_exc:
            outcomes.append("cancelled")
            raise

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            for index in range(3):
                tg.spawn(child(index))

    task = runtime.spawn(run_group())
    await children.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert outcomes == ["cancelled"] * 3


async def test_body_failure_before_any_child_ran(runtime: anyrt.Runtime) -> None:
    child = runtime.sleep(FOREVER)

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(child)
            raise KeyError("before the child ever ran")

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [KeyError]


# -- scopes, cancel() and start() -----------------------------------------------------


async def test_cancel_ends_the_block_and_the_children_quietly(runtime: anyrt.Runtime) -> None:
    children = Arrivals(runtime, 2)
    reached: list[str] = []
    async with anyrt.TaskGroup(runtime) as tg:
        for index in range(2):
            tg.spawn(_await(children.enter(index, runtime.sleep(FOREVER))))
        await children.all_in.wait()
        tg.cancel()
        await runtime.sleep(FOREVER)
        reached.append("after cancel()")
    assert reached == []
    assert tg.cancel_scope.cancel_called
    assert tg.cancel_scope.cancelled_caught


async def test_the_group_deadline_cancels_the_children(runtime: anyrt.Runtime) -> None:
    outcomes: list[str] = []

    async def child() -> None:
        try:
            await runtime.sleep(FOREVER)
        except runtime.cancelled_exc:
            outcomes.append("cancelled")
            raise

    async with anyrt.TaskGroup(runtime) as tg:
        tg.cancel_scope.deadline = runtime.now() + 0.01
        tg.spawn(child())
        tg.spawn(child())
    assert outcomes == ["cancelled", "cancelled"]
    assert tg.cancel_scope.cancelled_caught


async def test_an_outer_cancellation_waits_for_the_children_then_propagates(
    runtime: anyrt.Runtime,
) -> None:
    cleaned: list[str] = []

    async def child() -> None:
        try:
            await runtime.sleep(FOREVER)
        finally:
            with runtime.cancel_scope(shield=True):
                await runtime.sleep(0.01)
                cleaned.append("child")

    with runtime.move_on_after(0.01) as outer:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(child())
        pytest.fail("the group swallowed the outer cancellation")
    assert cleaned == ["child"]
    assert outer.cancelled_caught
    assert not tg.cancel_scope.cancelled_caught


async def test_a_cancellation_arriving_as_the_last_child_ends_is_not_lost(
    runtime: anyrt.Runtime,
) -> None:
    host: list[anyrt.Task[str]] = []

    async def last_child() -> None:
        await runtime.sleep(0.001)
        host[0].cancel()  # cancel the group's task just as this child returns

    async def body() -> str:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(last_child())
        return "the group swallowed its task's cancellation"

    host.append(runtime.spawn(body()))
    with pytest.raises(anyrt.Cancelled):
        await host[0]
    assert host[0].cancelled()


async def test_no_spurious_timeout_error_beside_the_real_error(runtime: anyrt.Runtime) -> None:
    started = anyrt.Event(runtime)

    async def with_a_timeout() -> None:
        with runtime.fail_after(0.01):
            try:
                started.set()
                await runtime.sleep(FOREVER)
            finally:
                with runtime.cancel_scope(shield=True):
                    await runtime.sleep(0.03)  # its deadline passes during the cleanup

    async def failing() -> None:
        await started.wait()
        raise Boom("the real error")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(with_a_timeout())
            tg.spawn(failing())

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [Boom]


async def test_start_returns_the_started_value(runtime: anyrt.Runtime) -> None:
    events: list[str] = []

    async def server(port: int, *, task_status: anyrt.TaskStatus[int]) -> None:
        events.append("binding")
        await runtime.sleep(0.001)
        task_status.started(port + 1)
        events.append("serving")
        await runtime.sleep(0.001)
        events.append("done")

    async with anyrt.TaskGroup(runtime) as tg:
        value = await tg.start(server, 8000)
        events.append(f"started on {value}")
    assert value == 8001
    assert events[:2] == ["binding", "started on 8001"] or events[:3] == [
        "binding",
        "serving",
        "started on 8001",
    ]
    assert events[-1] == "done" or "done" in events


async def test_start_without_a_value_returns_none(runtime: anyrt.Runtime) -> None:
    async def ready(*, task_status: anyrt.TaskStatus[None]) -> None:
        task_status.started()

    async with anyrt.TaskGroup(runtime) as tg:
        assert await tg.start(ready) is None


async def test_a_child_failing_before_started_makes_start_raise(runtime: anyrt.Runtime) -> None:
    sibling_done: list[str] = []

    async def broken(*, task_status: anyrt.TaskStatus[None]) -> None:
        await runtime.sleep(0)
        raise Boom("could not start")

    async def sibling() -> None:
        await runtime.sleep(0.01)
        sibling_done.append("finished")

    async with anyrt.TaskGroup(runtime) as tg:
        tg.spawn(sibling())
        with pytest.raises(Boom):
            await tg.start(broken)
    assert sibling_done == ["finished"]  # the group was not cancelled


async def test_a_child_returning_before_started_makes_start_raise(runtime: anyrt.Runtime) -> None:
    async def forgetful(*, task_status: anyrt.TaskStatus[None]) -> None:
        await runtime.sleep(0)

    async with anyrt.TaskGroup(runtime) as tg:
        with pytest.raises(RuntimeError, match="started"):
            await tg.start(forgetful)


async def test_started_twice_raises(runtime: anyrt.Runtime) -> None:
    errors: list[BaseException] = []

    async def twice(*, task_status: anyrt.TaskStatus[int]) -> None:
        task_status.started(1)
        try:
            task_status.started(2)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyrt.TaskGroup(runtime) as tg:
        assert await tg.start(twice) == 1
    assert [type(exc) for exc in errors] == [RuntimeError]


async def test_a_failure_after_started_goes_to_the_group(runtime: anyrt.Runtime) -> None:
    async def fails_later(*, task_status: anyrt.TaskStatus[None]) -> None:
        task_status.started()
        await runtime.sleep(0)
        raise Boom("after started")

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            await tg.start(fails_later)
            await runtime.sleep(FOREVER)

    with pytest.raises(ExceptionGroup) as info:
        await run_group()
    assert [type(exc) for exc in info.value.exceptions] == [Boom]


async def test_cancelling_the_starter_cancels_the_starting_child(runtime: anyrt.Runtime) -> None:
    child_outcome: list[str] = []
    starting = anyrt.Event(runtime)

    async def slow_start(*, task_status: anyrt.TaskStatus[None]) -> None:
        try:
            starting.set()
            await runtime.sleep(FOREVER)
        except runtime.cancelled_exc:
            child_outcome.append("cancelled")
            raise
        task_status.started()

    async def starter() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            await tg.start(slow_start)

    task = runtime.spawn(starter())
    await starting.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert child_outcome == ["cancelled"]


async def test_start_needs_an_active_group(runtime: anyrt.Runtime) -> None:
    async def ready(*, task_status: anyrt.TaskStatus[None]) -> None:
        task_status.started()

    async with anyrt.TaskGroup(runtime) as tg:
        pass
    with pytest.raises(RuntimeError):
        await tg.start(ready)


async def test_a_group_never_leaves_a_child_running(runtime: anyrt.Runtime) -> None:
    children: list[anyrt.Task[None]] = []

    async def stubborn_cleanup() -> None:
        try:
            await runtime.sleep(FOREVER)
        finally:
            with runtime.cancel_scope(shield=True):
                await runtime.sleep(0.02)

    async def run_group() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            children.append(tg.spawn(stubborn_cleanup()))
            await runtime.sleep(0)
            raise Boom("the block fails")

    with pytest.raises(ExceptionGroup):
        await run_group()
    assert all(child.done() for child in children)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def test_a_group_failing_as_its_task_is_cancelled_raises_both(runtime: anyrt.Runtime) -> None:
    host: list[anyrt.Task[None]] = []

    async def cancel_the_host_then_fail() -> None:
        await runtime.sleep(0.001)
        host[0].cancel()
        raise Boom("while the host is cancelled")

    async def body() -> None:
        async with anyrt.TaskGroup(runtime) as tg:
            tg.spawn(cancel_the_host_then_fail())
            await runtime.sleep(FOREVER)

    host.append(runtime.spawn(body()))
    # The task ended with the real error; the cancellation beside it is taken out.
    with pytest.raises(ExceptionGroup) as info:
        await host[0]
    assert [type(exc) for exc in info.value.exceptions] == [Boom]
    assert not host[0].cancelled()


async def test_a_task_left_with_only_cancellations_in_a_group_ended_cancelled(
    runtime: anyrt.Runtime,
) -> None:
    host: list[anyrt.Task[str]] = []

    async def cancel_the_host_then_fail() -> None:
        await runtime.sleep(0.001)
        host[0].cancel()
        raise Boom("handled below")

    async def body() -> str:
        try:
            async with anyrt.TaskGroup(runtime) as tg:
                tg.spawn(cancel_the_host_then_fail())
                await runtime.sleep(FOREVER)
        except* Boom:
            pass  # what is left is the cancellation, in a group
        return "the cancellation was lost"

    host.append(runtime.spawn(body()))
    with pytest.raises(anyrt.Cancelled):
        await host[0]
    assert host[0].cancelled()
