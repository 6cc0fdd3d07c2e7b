"""`anyrt_trio.compat.run`: trio code from any runtime - in place, or on a side trio thread."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest
import sniffio
import trio
from anyrt_trio import compat
from anyrt_trio._compat import _Call, _side_for

import anyrt

# The native runtimes with threads and no asyncio loop: where the side trio thread runs.
HOSTS = [name for name in ("work-stealing", "thread-per-core") if name in anyrt.backends()]
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


def _side_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "anyrt-trio-compat"]


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    with anyrt.runtime(request.param) as rt:
        yield rt


class Boom(Exception):
    pass


async def _where(children: int) -> tuple[str, str, str, list[int]]:
    """Real trio code: a sleep and a nursery; says where it ran and what it saw."""
    done: list[int] = []

    async def child(index: int) -> None:
        await trio.sleep(0.001 * index)
        done.append(index)

    async with trio.open_nursery() as nursery:
        for index in range(children):
            nursery.start_soon(child, index)
    return threading.current_thread().name, sniffio.current_async_library(), REQUEST_ID.get(), done


def test_trio_code_runs_on_the_side_thread_with_the_callers_context(host: anyrt.Runtime) -> None:
    async def main() -> tuple[str, str, str, list[int]]:
        REQUEST_ID.set("request-7")
        return await compat.run(host, _where, 3)

    thread, library, request_id, done = host.block_on(main())
    assert thread == "anyrt-trio-compat"
    assert library == "trio"
    assert request_id == "request-7"
    assert done == [0, 1, 2]


def test_exceptions_cross_unchanged(host: anyrt.Runtime) -> None:
    error = Boom("from trio")

    async def fail() -> None:
        await trio.sleep(0)
        raise error

    async def fail_in_a_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)

    async def main() -> None:
        with pytest.raises(Boom) as info:
            await compat.run(host, fail)
        assert info.value is error
        with pytest.raises(ExceptionGroup) as group:
            await compat.run(host, fail_in_a_nursery)
        assert group.value.exceptions == (error,)

    host.block_on(main())


def test_trio_client_talks_to_an_anyrt_listener(host: anyrt.Runtime) -> None:
    async def echo(stream: anyrt.ByteStream) -> None:
        while data := await stream.receive():
            await stream.send(data.upper())

    async def trio_client(port: int) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"hello from trio")
            received = b""
            while len(received) < 15:
                received += await stream.receive_some(100)
            return received

    async def main() -> bytes:
        async with await host.listen_tcp("127.0.0.1", 0) as listener:
            server = host.spawn(listener.serve(echo))
            try:
                return await compat.run(host, trio_client, listener.address[1])
            finally:
                server.cancel()

    assert host.block_on(main()) == b"HELLO FROM TRIO"


def test_cancelling_the_caller_cancels_trio_and_waits_for_it(host: anyrt.Runtime) -> None:
    trail: list[str] = []
    started = anyrt.Event(host)

    async def trio_side() -> None:
        try:
            started.set()  # from the side thread: Event.set is thread-safe
            await trio.sleep_forever()
        except trio.Cancelled:
            trail.append("trio cancelled")
            raise
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)  # cleanup that takes a while
            trail.append("trio finally")

    async def caller() -> None:
        try:
            await compat.run(host, trio_side)
        except host.cancelled_exc:
            trail.append("anyrt cancelled")
            raise

    async def main() -> None:
        task = host.spawn(caller())
        await started.wait()
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task

    host.block_on(main())
    assert trail == ["trio cancelled", "trio finally", "anyrt cancelled"]


def test_a_cancelled_caller_waits_for_the_trio_cleanup_without_spinning(
    host: anyrt.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancellation is level-triggered: an unshielded wait would raise again at once."""
    waits = 0
    original = _Call.wait

    def counting(self: _Call, runtime: anyrt.Runtime) -> anyrt.Receiver[None] | None:
        nonlocal waits
        waits += 1
        return original(self, runtime)

    monkeypatch.setattr(_Call, "wait", counting)
    started = anyrt.Event(host)

    async def slow_cleanup() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.1)  # a cleanup that takes a while

    async def main() -> None:
        task = host.spawn(compat.run(host, slow_cleanup))
        await started.wait()
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task

    host.block_on(main())
    # Once for the call, once for the cleanup; a spinning caller waited thousands of
    # times in 0.1 s.
    assert waits == 2


def test_a_failing_cleanup_replaces_the_cancellation(host: anyrt.Runtime) -> None:
    started = threading.Event()

    class Boom(Exception):
        pass

    async def bad_cleanup() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            raise Boom("cleanup failed")

    async def main() -> None:
        task = host.spawn(compat.run(host, bad_cleanup))
        await host.spawn_blocking(started.wait)
        task.cancel()
        with pytest.raises(Boom, match="cleanup failed"):
            await task

    host.block_on(main())


def test_trio_side_cancelled_by_its_run_ending_cancels_the_caller(host: anyrt.Runtime) -> None:
    started = threading.Event()

    async def trio_side() -> None:
        started.set()
        await trio.sleep_forever()

    async def main() -> str:
        task = host.spawn(compat.run(host, trio_side))
        await host.spawn_blocking(started.wait, 10)
        # Shut the side trio run down under the call (close() would do it last).
        await host.spawn_blocking(_side_for(host).close)
        with pytest.raises(anyrt.Cancelled):
            await task
        return "the caller saw its own runtime's cancellation"

    assert host.block_on(main()).startswith("the caller")


def test_calls_share_one_trio_run(host: anyrt.Runtime) -> None:
    async def make_event() -> trio.Event:
        return trio.Event()

    async def wait_for(event: trio.Event) -> str:
        await event.wait()
        return "woken by another call"

    async def set_it(event: trio.Event) -> None:
        event.set()

    async def main() -> str:
        event = await compat.run(host, make_event)
        waiter = host.spawn(compat.run(host, wait_for, event))
        await compat.run(host, set_it, event)
        return await waiter

    assert host.block_on(main()) == "woken by another call"


def test_many_concurrent_calls(host: anyrt.Runtime) -> None:
    async def double(value: int) -> int:
        await trio.sleep(0.001)
        return 2 * value

    async def main() -> list[int]:
        async with anyrt.TaskGroup(host) as tg:
            tasks = [tg.spawn(compat.run(host, double, index)) for index in range(50)]
        return [await task for task in tasks]

    assert host.block_on(main()) == [2 * index for index in range(50)]


@pytest.mark.parametrize("backend", HOSTS)
def test_one_side_thread_per_runtime_started_lazily_and_stopped_at_close(backend: str) -> None:
    async def nap() -> None:
        await trio.sleep(0)

    before = len(_side_threads())
    first, second = anyrt.runtime(backend), anyrt.runtime(backend)
    try:
        assert len(_side_threads()) == before
        first.block_on(compat.run(first, nap))
        first.block_on(compat.run(first, nap))
        assert len(_side_threads()) == before + 1
        second.block_on(compat.run(second, nap))
        assert len(_side_threads()) == before + 2
    finally:
        first.close()
        second.close()
    assert len(_side_threads()) == before


def test_single_threaded_refuses_with_a_reason() -> None:
    async def nap() -> None:
        await trio.sleep(0)

    with (
        anyrt.runtime("single-threaded") as rt,
        pytest.raises(RuntimeError, match=r"single-threaded.*no OS and no threads"),
    ):
        rt.block_on(compat.run(rt, nap))


def test_runs_in_place_on_the_trio_backend() -> None:
    async def main(rt: anyrt.Runtime) -> tuple[str, str, str, list[int]]:
        return await compat.run(rt, _where, 2)

    thread, library, _, done = anyrt.run(main, backend="trio")
    assert thread == "anyrt-trio"
    assert library == "trio"
    assert done == [0, 1]


def test_on_a_trio_runtime_the_caller_must_be_one_of_its_tasks(host: anyrt.Runtime) -> None:
    async def nap() -> None:
        await trio.sleep(0)

    with anyrt.runtime("trio") as trio_rt, pytest.raises(RuntimeError, match="one of its tasks"):
        host.block_on(compat.run(trio_rt, nap))


def test_a_coroutine_object_is_refused_and_closed(host: anyrt.Runtime) -> None:
    coro = trio.sleep(0)
    with pytest.raises(TypeError, match=r"compat.run\(runtime, fn, \*args\)"):
        host.block_on(compat.run(host, coro))  # type: ignore[arg-type]
    assert coro.cr_frame is None  # closed: no "never awaited" warning


def test_a_closed_runtime_refuses() -> None:
    async def nap() -> None:
        await trio.sleep(0)

    rt = anyrt.runtime(HOSTS[0])
    rt.close()
    coro = compat.run(rt, nap)
    with pytest.raises(RuntimeError, match="closed"):
        coro.send(None)
