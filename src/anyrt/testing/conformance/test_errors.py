"""Exception propagation and the error handler (unobserved failures are never lost)."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, wait_done


class Boom(Exception):
    pass


async def _fail(exc: BaseException) -> None:
    raise exc


async def test_awaiting_a_failed_task_reraises_the_same_exception(runtime: anyrt.Runtime) -> None:
    error = Boom("the original")
    task = runtime.spawn(_fail(error))
    with pytest.raises(Boom) as info:
        await task
    assert info.value is error
    with pytest.raises(Boom) as again:
        await task
    assert again.value is error


async def test_failure_after_a_suspension_propagates(runtime: anyrt.Runtime) -> None:
    async def fail_later() -> None:
        await runtime.sleep(0.001)
        raise Boom("later")

    with pytest.raises(Boom, match="later"):
        await runtime.spawn(fail_later())


async def test_exception_from_a_nested_await_chain(runtime: anyrt.Runtime) -> None:
    async def inner() -> None:
        await runtime.sleep(0)
        raise KeyError("deep")

    async def outer() -> None:
        await runtime.spawn(inner())

    with pytest.raises(KeyError):
        await runtime.spawn(outer())


class _Collector:
    """An error handler that records reports and signals each one."""

    def __init__(self) -> None:
        self.errors: list[anyrt.TaskError] = []
        self.reported: anyrt.Event | None = None

    def __call__(self, error: anyrt.TaskError) -> None:
        self.errors.append(error)
        if self.reported is not None:
            self.reported.set()

    def bind(self, rt: anyrt.Runtime) -> anyrt.Runtime:
        self.reported = anyrt.Event(rt)
        return rt

    async def wait(self, rt: anyrt.Runtime) -> None:
        assert self.reported is not None
        async with rt.timeout(10):
            await self.reported.wait()


def test_detached_failure_goes_to_the_error_handler(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    handler = _Collector()
    rt = handler.bind(make_runtime(error_handler=handler))
    error = Boom("detached")

    async def main() -> None:
        rt.spawn(_fail(error), name="doomed").detach()
        await handler.wait(rt)

    rt.block_on(main())
    assert len(handler.errors) == 1
    report = handler.errors[0]
    assert report.exception is error
    assert report.task_name == "doomed"
    assert report.reason == "detached"


def test_detaching_an_already_failed_task_reports_it(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    handler = _Collector()
    rt = handler.bind(make_runtime(error_handler=handler))
    error = Boom("failed first")

    async def main() -> None:
        task = rt.spawn(_fail(error))
        await wait_done(rt, task)
        task.detach()
        await handler.wait(rt)

    rt.block_on(main())
    assert [report.exception for report in handler.errors] == [error]


def test_failed_task_dropped_unawaited_goes_to_the_error_handler(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    handler = _Collector()
    rt = handler.bind(make_runtime(error_handler=handler))
    error = Boom("dropped")

    async def main() -> None:
        task = rt.spawn(_fail(error), name="dropped")
        await wait_done(rt, task)
        del task
        gc.collect()
        await handler.wait(rt)

    rt.block_on(main())
    assert len(handler.errors) == 1
    assert handler.errors[0].exception is error
    assert handler.errors[0].task_name == "dropped"


def test_awaited_failure_is_not_reported(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    handler = _Collector()
    rt = handler.bind(make_runtime(error_handler=handler))

    async def main() -> None:
        task = rt.spawn(_fail(Boom("seen")))
        with pytest.raises(Boom):
            await task
        del task
        gc.collect()
        # A detached failure afterwards proves the handler runs, and that it is alone.
        rt.spawn(_fail(KeyError("marker"))).detach()
        await handler.wait(rt)

    rt.block_on(main())
    assert [type(report.exception) for report in handler.errors] == [KeyError]


def test_cancelled_detached_task_is_not_reported(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    handler = _Collector()
    rt = handler.bind(make_runtime(error_handler=handler))

    async def main() -> None:
        sleeper = rt.spawn(rt.sleep(FOREVER), name="sleeper")
        sleeper.detach()
        await rt.sleep(0)
        assert sleeper.cancel()
        await wait_done(rt, sleeper)
        del sleeper
        gc.collect()
        rt.spawn(_fail(KeyError("marker")), name="marker").detach()
        await handler.wait(rt)

    rt.block_on(main())
    assert [report.task_name for report in handler.errors] == ["marker"]


def test_block_on_reraises_the_main_coroutines_exception(runtime: anyrt.Runtime) -> None:
    error = Boom("from main")
    with pytest.raises(Boom) as info:
        runtime.block_on(_fail(error))
    assert info.value is error
