"""`anyrt_trio.current()`: an anyrt runtime borrowing a trio.run someone else started."""

from __future__ import annotations

import logging
import threading

import pytest
import trio
from anyrt_trio import TrioRuntime, current

import anyrt


class Client:
    """A library type written against anyrt only: it takes the runtime it runs on."""

    def __init__(self, runtime: anyrt.Runtime) -> None:
        self._runtime = runtime
        self._ready: anyrt.Channel[str] = anyrt.Channel(runtime, 10)

    async def fetch(self, key: str) -> str:
        async def worker() -> None:
            await self._runtime.sleep(0.001)
            await self._ready.send(key.upper())

        self._runtime.spawn(worker()).detach()
        async with self._runtime.timeout(5):
            return await self._ready.receive()


def test_a_library_client_runs_inside_a_plain_trio_app() -> None:
    async def main() -> tuple[str, bool, bool]:
        rt = current()
        client = Client(rt)
        value = await client.fetch("key")
        return value, current() is rt, isinstance(rt, anyrt.Runtime)

    assert trio.run(main) == ("KEY", True, True)


def test_everything_but_block_on_and_close_works() -> None:
    async def main() -> None:
        rt = current()
        assert rt.name == "trio"
        assert abs(rt.now() - trio.current_time()) < 1  # the run's own clock
        assert await rt.spawn(_double(4)) == 8
        sender, receiver = rt.oneshot()
        threading.Thread(target=sender.send, args=("from a thread",)).start()
        assert await receiver == "from a thread"
        assert await rt.spawn_blocking(sum, [1, 2]) == 3
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            stream = await rt.connect_tcp(*listener.address)
            async with stream, await listener.accept() as server:
                await stream.send(b"ping")
                assert await server.receive() == b"ping"
        coro = _double(1)
        with pytest.raises(RuntimeError, match=r"current\(\).*await the coroutine"):
            rt.block_on(coro)
        assert coro.cr_frame is None
        with pytest.raises(RuntimeError, match=r"ends when its main function returns"):
            rt.close()

    trio.run(main)


async def _double(value: int) -> int:
    await trio.sleep(0)
    return 2 * value


def test_tasks_left_running_are_cancelled_when_the_run_ends() -> None:
    trail: list[str] = []

    async def background() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.001)
            trail.append("background finally")

    async def main() -> None:
        rt = current()
        rt.spawn(background())
        rt._add_close_hook(lambda: trail.append("close hook"))
        await trio.sleep(0.001)
        trail.append("main returns")

    trio.run(main)
    assert trail == ["main returns", "background finally", "close hook"]


def test_spawn_from_a_plain_thread_then_after_the_run_ended() -> None:
    results: list[int] = []
    borrowed: list[TrioRuntime] = []

    async def main() -> None:
        rt = current()
        borrowed.append(rt)
        done = trio.Event()

        def from_a_thread() -> None:
            task = rt.spawn(_double(21))
            trio.from_thread.run_sync(done.set, trio_token=rt._token)
            del task

        async def collect() -> None:
            await done.wait()

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        await collect()
        await trio.to_thread.run_sync(thread.join)
        results.append(await rt.spawn(_double(1)))

    trio.run(main)
    assert results == [2]
    coro = _double(1)
    with pytest.raises(RuntimeError, match="has ended"):
        borrowed[0].spawn(coro)
    assert coro.cr_frame is None
    with pytest.raises(RuntimeError, match="has ended"):
        borrowed[0]._add_close_hook(lambda: None)


def test_a_detached_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise KeyError("nobody is looking")

    async def main() -> None:
        rt = current()
        rt.spawn(fail(), name="lost").detach()
        await trio.sleep(0.001)

    with caplog.at_level(logging.ERROR, logger="anyrt"):
        trio.run(main)
    assert "unhandled exception in detached task 'lost'" in caplog.text


def test_outside_a_trio_run_it_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"inside trio.run.*anyrt.runtime\('trio'\)"):
        current()


def test_inside_an_owned_runtime_it_is_that_runtime() -> None:
    with TrioRuntime() as rt:

        async def main() -> bool:
            return current() is rt

        assert rt.block_on(main())


def test_virtual_time_follows_the_runs_clock() -> None:
    async def main() -> tuple[float, bool]:
        rt = current()
        start = rt.now()
        await rt.sleep(3600)
        return rt.now() - start, "virtual-time" in rt.capabilities

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(main, clock=clock) == (3600, True)
    assert "virtual-time" not in trio.run(_capabilities)


async def _capabilities() -> tuple[str, ...]:
    return current().capabilities
