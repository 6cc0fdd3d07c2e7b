"""The owned trio runtime: its thread, spawning from anywhere, block_on, close, misuse."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import trio
from anyrt_trio import TrioRuntime

import anyrt


@pytest.fixture
def rt() -> Iterator[TrioRuntime]:
    with TrioRuntime() as runtime:
        yield runtime


def _trio_threads() -> int:
    return sum(thread.name == "anyrt-trio" for thread in threading.enumerate())


async def _double(value: int) -> int:
    await trio.sleep(0)
    return 2 * value


def test_registered_as_the_trio_backend() -> None:
    assert "trio" in anyrt.backends()
    with anyrt.runtime("trio", clock="virtual") as rt:
        assert isinstance(rt, TrioRuntime)
        assert isinstance(rt, anyrt.Runtime)
        assert rt.name == "trio"
        assert rt.cancelled_exc is trio.Cancelled


def test_the_thread_starts_with_the_runtime_and_is_joined_by_close() -> None:
    before = _trio_threads()
    rt = TrioRuntime()
    assert _trio_threads() == before + 1
    rt.close()
    assert _trio_threads() == before
    assert rt.closed
    assert "closed" in repr(rt)


def test_spawn_before_between_and_after_block_on_calls(rt: TrioRuntime) -> None:
    early = rt.spawn(_double(1))  # before any block_on: the trio thread runs it anyway

    async def first() -> anyrt.Task[int]:
        return rt.spawn(_double(2))

    between = rt.block_on(first())  # spawned in one block_on, awaited in another
    late = rt.spawn(_double(3))

    async def second() -> list[int]:
        return [await early, await between, await late]

    assert rt.block_on(second()) == [2, 4, 6]


def test_spawn_and_cancel_from_plain_threads(rt: TrioRuntime) -> None:
    gate = anyrt.Event(rt)
    tasks: list[anyrt.Task[object]] = []

    async def wait_for_gate() -> str:
        await gate.wait()
        return "through"

    def from_a_thread() -> None:
        tasks.append(rt.spawn(wait_for_gate()))
        tasks.append(rt.spawn(trio.sleep_forever()))
        gate.set()
        assert tasks[1].cancel() is True

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    thread.join()

    async def main() -> str:
        with pytest.raises(anyrt.Cancelled):
            await tasks[1]
        result = await tasks[0]
        assert isinstance(result, str)
        return result

    assert rt.block_on(main()) == "through"


def test_block_on_from_several_threads_at_once(rt: TrioRuntime) -> None:
    results: dict[int, int] = {}

    def call(index: int) -> None:
        async def main() -> int:
            await trio.sleep(0.01)
            return await rt.spawn(_double(index))

        results[index] = rt.block_on(main())

    threads = [threading.Thread(target=call, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {index: 2 * index for index in range(4)}


def test_tasks_run_trio_code_directly(rt: TrioRuntime) -> None:
    import sniffio

    async def main() -> tuple[str, str, list[int]]:
        done: list[int] = []

        async def child(index: int) -> None:
            await trio.sleep(0.001)
            done.append(index)

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(child, index)
        return sniffio.current_async_library(), threading.current_thread().name, sorted(done)

    assert rt.block_on(main()) == ("trio", "anyrt-trio", [0, 1, 2])


def test_block_on_inside_a_task_names_the_fix(rt: TrioRuntime) -> None:
    async def main() -> None:
        coro = _double(1)
        with pytest.raises(RuntimeError, match=r"inside a task of this trio runtime.*await"):
            rt.block_on(coro)
        assert coro.cr_frame is None  # closed, so no "never awaited" warning

    rt.block_on(main())


def test_block_on_inside_a_plain_trio_run_is_refused(rt: TrioRuntime) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"inside a trio run.*anyrt_trio.current\(\)"):
            rt.block_on(_double(1))

    trio.run(main)


def test_block_on_inside_a_native_task_is_refused(rt: TrioRuntime) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"'work-stealing' anyrt runtime"):
            rt.block_on(_double(1))

    anyrt.run(lambda _: main(), backend="work-stealing", workers=1)


def test_use_after_close_names_the_fix() -> None:
    rt = TrioRuntime()
    rt.close()
    for use in (rt.spawn, rt.block_on):
        coro = _double(1)
        with pytest.raises(RuntimeError, match=r"closed; create a new one with anyrt.runtime"):
            use(coro)
        assert coro.cr_frame is None
    with pytest.raises(RuntimeError, match="closed"):
        rt._add_close_hook(lambda: None)
    with pytest.raises(RuntimeError, match="closed"), rt:
        pass


def test_close_from_inside_a_task_is_refused(rt: TrioRuntime) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="from inside a task"):
            rt.close()

    rt.block_on(main())


def test_spawn_local_only_from_the_trio_thread(rt: TrioRuntime) -> None:
    coro = _double(1)
    with pytest.raises(RuntimeError, match=r"spawn_local\(\) must be called from a task"):
        rt.spawn_local(coro)
    assert coro.cr_frame is None

    async def main() -> int:
        return await rt.spawn_local(_double(5))

    assert rt.block_on(main()) == 10


def test_close_waits_for_shielded_cleanup_then_runs_the_hooks() -> None:
    rt = TrioRuntime()
    trail: list[str] = []
    started = anyrt.Event(rt)

    async def slow_cleanup() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.02)
            trail.append("cleaned up")

    rt.spawn(slow_cleanup())
    rt.block_on(started.wait())
    rt._add_close_hook(lambda: trail.append("hook"))
    rt.close()
    rt.close()  # idempotent
    assert trail == ["cleaned up", "hook"]


def test_a_failing_close_hook_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = TrioRuntime()
    seen: list[int] = []

    def boom() -> None:
        raise ValueError("hook failed")

    rt._add_close_hook(lambda: seen.append(1))
    rt._add_close_hook(boom)
    with caplog.at_level(logging.ERROR, logger="anyrt"):
        rt.close()
    assert seen == [1]
    assert "hook failed" in caplog.text


def test_error_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="error_handler must be callable"):
        TrioRuntime(error_handler=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("clock", "error"),
    [("wall", ValueError), (3.0, TypeError), (object(), TypeError)],
)
def test_bad_clocks_name_the_choices(clock: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"'real', 'virtual' or a trio.abc.Clock"):
        TrioRuntime(clock=clock)  # type: ignore[arg-type]


def test_a_failing_task_is_reported_with_its_own_frame_first() -> None:
    errors: list[anyrt.TaskError] = []
    with TrioRuntime(error_handler=errors.append) as rt:

        async def fail() -> None:
            await trio.sleep(0)
            raise KeyError("lost")

        async def main() -> None:
            task = rt.spawn(fail(), name="doomed")
            task.detach()
            while not errors:
                await rt.sleep(0.001)

        rt.block_on(main())
    (report,) = errors
    assert report.task_name == "doomed"
    assert report.reason == "detached"
    tb = report.exception.__traceback__
    assert tb is not None
    assert tb.tb_frame.f_code.co_name == "fail"


def test_close_names_a_task_that_does_not_finish_and_keeps_waiting(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyrt_trio._runtime

    monkeypatch.setattr(anyrt_trio._runtime, "_STUCK_REPORT_SECONDS", 0.05)
    rt = TrioRuntime()
    trail: list[str] = []
    started = anyrt.Event(rt)

    async def stubborn_cleanup() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.3)
            trail.append("finally done")

    rt.spawn(stubborn_cleanup(), name="stubborn")
    rt.block_on(started.wait())
    with caplog.at_level(logging.WARNING, logger="anyrt"):
        rt.close()
    assert trail == ["finally done"]
    assert "the cancelled trio task 'stubborn', still running at" in caplog.text
    assert "<locals>.stubborn_cleanup (" in caplog.text  # the user's frame, not trio's
