"""The runtime that owns its loop: block_on, close, options, and misuse that fails loudly."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

import pytest
import sniffio
from anyrt_asyncio import AsyncioRuntime

import anyrt

Make = Callable[..., AsyncioRuntime]


async def _nothing() -> None:
    pass


def test_block_on_inside_asyncio_run_names_the_fix() -> None:
    rt = AsyncioRuntime()

    async def app() -> None:
        with pytest.raises(RuntimeError, match="inside a running event loop"):
            rt.block_on(_nothing())

    asyncio.run(app())
    rt.close()


def test_block_on_from_a_task_of_the_runtime_names_the_fix(rt: AsyncioRuntime) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="inside a task of this runtime"):
            rt.block_on(_nothing())
        with pytest.raises(RuntimeError, match="inside a task of this runtime"):
            rt.close()

    rt.block_on(main())


def test_block_on_while_another_thread_runs_it(rt: AsyncioRuntime) -> None:
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            rt.block_on(_nothing())
        except RuntimeError as exc:
            errors.append(exc)

    async def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        await rt.spawn_blocking(thread.join)

    rt.block_on(main())
    assert len(errors) == 1
    assert "already running block_on() on another thread" in str(errors[0])


def test_close_from_another_thread_cancels_block_on(rt: AsyncioRuntime) -> None:
    started = threading.Event()
    cleaned: list[str] = []

    async def main() -> None:
        try:
            started.set()
            await anyrt.Event(rt).wait()  # never set (a sleep would end at once in virtual time)
        finally:
            cleaned.append("main")

    closer = threading.Thread(target=lambda: (started.wait(), rt.close()))
    closer.start()
    with pytest.raises(anyrt.Cancelled):
        rt.block_on(main())
    closer.join()
    assert cleaned == ["main"]
    assert rt.closed
    assert rt.loop.is_closed()


def test_close_reaps_plain_asyncio_tasks_and_the_executor(rt: AsyncioRuntime) -> None:
    cleaned: list[str] = []

    async def plain() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("plain asyncio task")

    async def main() -> None:
        asyncio.get_running_loop().create_task(plain())
        await rt.spawn_blocking(lambda: None)  # starts the default executor's thread
        await asyncio.sleep(0)

    rt.block_on(main())
    rt.close()
    assert cleaned == ["plain asyncio task"]
    assert rt.loop.is_closed()
    assert not [t for t in threading.enumerate() if t.name.startswith("asyncio_")]


def test_close_hooks_run_after_every_task_ended(rt: AsyncioRuntime) -> None:
    seen: list[str] = []

    async def forever() -> None:
        try:
            await rt.sleep(3600)
        finally:
            seen.append("task finally")

    async def main() -> anyrt.Task[None]:
        task = rt.spawn(forever())
        await rt.sleep(0)
        return task

    task = rt.block_on(main())
    rt._add_close_hook(lambda: seen.append(f"hook, task done={task.done()}"))
    rt._add_close_hook(lambda: 1 / 0)  # logged, and the others still run
    rt.close()
    rt.close()
    assert seen == ["task finally", "hook, task done=True"]
    with pytest.raises(RuntimeError, match="closed"):
        rt._add_close_hook(lambda: None)


def test_spawn_local_off_the_loop_names_the_fix(rt: AsyncioRuntime) -> None:
    with pytest.raises(RuntimeError, match="spawn_local"):
        rt.spawn_local(_nothing())


def test_sniffio_and_anyio_see_asyncio(rt: AsyncioRuntime) -> None:
    import anyio

    async def main() -> str:
        await anyio.sleep(0)  # asyncio code runs in place: these tasks are asyncio's
        return sniffio.current_async_library()

    assert rt.block_on(main()) == "asyncio"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="clock must be"):
        AsyncioRuntime(clock="sundial")
    with pytest.raises(ValueError, match="loop_factory"):
        AsyncioRuntime(clock="virtual", loop_factory=asyncio.new_event_loop)
    with pytest.raises(TypeError, match="debug"):
        AsyncioRuntime(debug="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="error_handler"):
        AsyncioRuntime(error_handler=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event loop"):
        AsyncioRuntime(loop_factory=object)  # type: ignore[arg-type]


def test_capabilities_follow_the_clock() -> None:
    with AsyncioRuntime() as real, AsyncioRuntime(clock="virtual") as virtual:
        assert "virtual-time" not in real.capabilities
        assert "virtual-time" in virtual.capabilities
        assert "virtual-time" in AsyncioRuntime.capabilities  # so the plugin collects those tests
        assert real.virtual_clock is None
        assert isinstance(virtual.virtual_clock, anyrt.VirtualClock)


def test_a_custom_loop_factory_and_debug_mode() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    with AsyncioRuntime(loop_factory=uvloop.new_event_loop, debug=True) as rt:
        assert rt.name == "uvloop"
        assert rt.loop.get_debug()
        assert rt.block_on(_answer()) == 42


async def _answer() -> int:
    return 42


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_cancels_the_main_coroutine_and_raises_keyboard_interrupt(
    rt: AsyncioRuntime,
) -> None:
    cleaned: list[str] = []

    async def main() -> None:
        try:
            rt.loop.call_later(0.01, os.kill, os.getpid(), signal.SIGINT)
            await asyncio.sleep(3600)  # the loop's own timer: real time even when virtual
        finally:
            cleaned.append("main")

    with pytest.raises(KeyboardInterrupt):
        rt.block_on(main())
    assert cleaned == ["main"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
