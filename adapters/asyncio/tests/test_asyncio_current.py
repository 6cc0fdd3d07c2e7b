"""`current()`: anyrt inside an existing asyncio application, on the loop it runs."""

from __future__ import annotations

import asyncio

import anyrt_asyncio
import pytest

import anyrt


class Client:
    """A library written against the protocol: it only ever sees `anyrt.Runtime`."""

    def __init__(self, runtime: anyrt.Runtime) -> None:
        self._runtime = runtime

    async def echo_twice(self, message: bytes) -> bytes:
        rt = self._runtime

        async def echo(stream: anyrt.ByteStream) -> None:
            while data := await stream.receive():
                await stream.send(data)

        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            server = rt.spawn(listener.serve(echo))
            async with await rt.connect_tcp(*listener.address) as stream:
                await stream.send(message)
                first = await stream.receive()
                await stream.send(message)
                second = await stream.receive()
            server.cancel()
        return first + second


def test_a_library_runs_inside_asyncio_run() -> None:
    async def app() -> tuple[bytes, str, int]:
        rt = anyrt_asyncio.current()
        assert isinstance(rt, anyrt.Runtime)
        reply = await Client(runtime=rt).echo_twice(b"hi")
        # Everything else works too: tasks, oneshots, timers, blocking calls, groups.
        sender, receiver = rt.oneshot()
        rt.spawn(_send_later(rt, sender))
        async with anyrt.TaskGroup(rt) as tg:
            doubled = tg.spawn(rt.spawn_blocking(lambda: 21 * 2))
        async with rt.timeout(10):
            value = await receiver
        assert value == "late"
        return reply, rt.name, await doubled

    assert asyncio.run(app()) == (b"hihi", "asyncio", 42)


async def _send_later(rt: anyrt.Runtime, sender: anyrt.Sender[str]) -> None:
    await rt.sleep(0.001)
    sender.send("late")


def test_on_uvloop_the_name_says_so() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    async def app() -> str:
        return anyrt_asyncio.current().name

    assert uvloop.run(app()) == "uvloop"


def test_block_on_close_and_with_name_the_fix() -> None:
    async def app() -> None:
        rt = anyrt_asyncio.current()
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="borrows an asyncio loop"):
            rt.block_on(coro)
        with pytest.raises(RuntimeError, match="belongs to the application"):
            rt.close()
        with pytest.raises(RuntimeError, match="belongs to the application"), rt:
            pass

    asyncio.run(app())


def test_outside_a_running_loop_names_the_fix() -> None:
    with pytest.raises(RuntimeError, match=r"anyrt\.runtime\('asyncio'\)"):
        anyrt_asyncio.current()


def test_tasks_left_running_are_cancelled_by_asyncio_run() -> None:
    cleaned: list[str] = []

    async def forever(rt: anyrt.Runtime) -> None:
        try:
            await rt.sleep(3600)
        finally:
            cleaned.append("cleaned")

    async def app() -> None:
        rt = anyrt_asyncio.current()
        rt.spawn(forever(rt))
        await rt.sleep(0)

    asyncio.run(app())
    assert cleaned == ["cleaned"]


def test_failures_go_to_the_given_error_handler() -> None:
    errors: list[anyrt.TaskError] = []

    async def fail() -> None:
        raise KeyError("lost")

    async def app() -> None:
        rt = anyrt_asyncio.current(error_handler=errors.append)
        rt.spawn(fail(), name="fire-and-forget").detach()
        await rt.sleep(0.001)

    asyncio.run(app())
    assert [(e.task_name, e.reason) for e in errors] == [("fire-and-forget", "detached")]


def test_spawn_after_the_loop_closed_names_the_fix() -> None:
    async def app() -> anyrt.Runtime:
        return anyrt_asyncio.current()

    rt = asyncio.run(app())
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        rt.spawn(coro)
