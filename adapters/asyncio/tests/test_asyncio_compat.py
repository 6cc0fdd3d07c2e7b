"""`compat.run`: asyncio code from any runtime - in place, or on a side loop thread."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
from collections.abc import Iterator
from typing import Any

import anyrt_asyncio
import pytest
import sniffio
from anyrt_asyncio import AsyncioRuntime, compat

import anyrt

HOSTS = [name for name in ("work-stealing", "thread-per-core", "trio") if name in anyrt.backends()]
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


def _side_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("anyrt-asyncio-compat")]


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> Iterator[anyrt.Runtime]:
    """A runtime with threads but not an asyncio loop of its own."""
    with anyrt.runtime(request.param) as rt:
        yield rt


async def _where() -> tuple[str, str, str]:
    await asyncio.sleep(0.001)
    return threading.current_thread().name, sniffio.current_async_library(), REQUEST_ID.get()


class Boom(Exception):
    pass


async def _boom(error: BaseException) -> None:
    await asyncio.sleep(0)
    raise error


def test_result_exception_and_context_cross(host: anyrt.Runtime) -> None:
    error = Boom("from asyncio")

    async def main() -> tuple[str, str, str]:
        REQUEST_ID.set("request-7")
        with pytest.raises(Boom) as info:
            await compat.run(host, _boom(error))
        assert info.value is error
        return await compat.run(host, _where())

    assert _side_threads() == []  # started lazily
    thread, library, request_id = host.block_on(main())
    assert thread == f"anyrt-asyncio-compat ({host.name})"
    assert library == "asyncio"
    assert request_id == "request-7"
    host.close()
    assert _side_threads() == []  # stopped by close()


def test_cancelling_the_anyrt_task_cancels_and_waits_for_the_asyncio_side(
    host: anyrt.Runtime,
) -> None:
    events: list[str] = []
    started = threading.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("asyncio side cancelled")
            await asyncio.sleep(0.02)  # slow cleanup: the anyrt side must wait for it
            events.append("asyncio cleanup done")
            raise

    async def caller() -> None:
        try:
            await compat.run(host, stubborn())
        except host.cancelled_exc:
            events.append("anyrt side sees its cancellation")
            raise

    async def main() -> None:
        task = host.spawn(caller())
        await host.spawn_blocking(started.wait)
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task

    host.block_on(main())
    assert events == [
        "asyncio side cancelled",
        "asyncio cleanup done",
        "anyrt side sees its cancellation",
    ]


def test_an_asyncio_side_cancellation_surfaces_as_an_exception(host: anyrt.Runtime) -> None:
    async def cancels_itself() -> None:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()
        await asyncio.sleep(1)

    async def main() -> str:
        try:
            await compat.run(host, cancels_itself())
        except asyncio.CancelledError as exc:
            return str(exc)
        return "no exception"

    assert "cancelled on the asyncio side" in host.block_on(main())


def test_a_failing_cleanup_replaces_the_cancellation(host: anyrt.Runtime) -> None:
    started = threading.Event()

    async def bad_cleanup() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            raise Boom("cleanup failed")

    async def main() -> None:
        task = host.spawn(compat.run(host, bad_cleanup()))
        await host.spawn_blocking(started.wait)
        task.cancel()
        with pytest.raises(Boom, match="cleanup failed"):
            await task

    host.block_on(main())


def test_in_place_on_the_asyncio_backends(make: Any) -> None:
    rt: AsyncioRuntime = make()

    async def inner() -> asyncio.Task[Any] | None:
        return asyncio.current_task()

    async def main() -> bool:
        return await compat.run(rt, inner()) is asyncio.current_task()

    assert rt.block_on(main())
    assert _side_threads() == []


def test_in_place_inside_an_existing_asyncio_app() -> None:
    async def app() -> bool:
        rt = anyrt_asyncio.current()
        return await compat.run(rt, _task_identity()) is asyncio.current_task()

    assert asyncio.run(app())


async def _task_identity() -> asyncio.Task[Any] | None:
    return asyncio.current_task()


def test_an_asyncio_runtime_from_another_loop_names_the_fix() -> None:
    with AsyncioRuntime() as rt:

        async def app() -> None:
            with pytest.raises(RuntimeError, match="must be awaited from one of its tasks"):
                await compat.run(rt, asyncio.sleep(0))

        asyncio.run(app())


def test_single_threaded_says_it_has_no_os_and_no_threads() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        await compat.run(rt, asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="no OS and no threads"):
        anyrt.run(main, backend="single-threaded")


def test_a_non_coroutine_is_refused() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        await compat.run(rt, asyncio.sleep)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="coroutine"):
        anyrt.run(main, backend="work-stealing", workers=1)


class _NoHook:
    """A runtime without ``_add_close_hook`` (a third-party backend, say)."""

    def __init__(self, inner: anyrt.Runtime) -> None:
        self._inner = inner
        self.name = "no-hook"

    def oneshot(self) -> tuple[anyrt.Sender[Any], anyrt.Receiver[Any]]:
        return self._inner.oneshot()


def test_without_a_close_hook_the_side_loop_stops_when_the_runtime_is_collected() -> None:
    with anyrt.runtime("work-stealing", workers=1) as inner:
        proxy = _NoHook(inner)

        async def main(runtime: Any) -> str:
            thread, _, _ = await compat.run(runtime, _where())
            return thread

        assert inner.block_on(main(proxy)) == "anyrt-asyncio-compat (no-hook)"
        assert _side_threads() == ["anyrt-asyncio-compat (no-hook)"]
        del proxy
        gc.collect()
        assert _side_threads() == []
