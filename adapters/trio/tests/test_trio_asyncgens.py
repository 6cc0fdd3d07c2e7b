"""Async generators on an owned trio run: the runtime's hooks, not trio's."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncGenerator

from anyrt_trio import TrioRuntime

import anyrt


def test_one_dropped_on_another_thread_is_finalised_on_the_trio_thread() -> None:
    finalised_on: list[str] = []
    finalised = threading.Event()

    with TrioRuntime() as rt:

        async def numbers() -> AsyncGenerator[int, None]:
            try:
                yield 1
                yield 2
            finally:
                await rt.sleep(0)  # cleanup that awaits: it needs the runtime
                finalised_on.append(threading.current_thread().name)
                finalised.set()

        async def first() -> AsyncGenerator[int, None]:
            gen = numbers()
            assert await gen.__anext__() == 1
            return gen

        gen = rt.block_on(first())
        del gen  # the last reference, dropped on this plain thread
        gc.collect()
        assert finalised.wait(5)
    assert finalised_on == ["anyrt-trio"]


def test_a_failing_cleanup_goes_to_the_error_handler() -> None:
    errors: list[anyrt.TaskError] = []
    with TrioRuntime(error_handler=errors.append) as rt:

        async def broken() -> AsyncGenerator[int, None]:
            try:
                yield 1
                yield 2
            finally:
                raise KeyError("cleanup failed")

        async def main() -> None:
            gen = broken()
            assert await gen.__anext__() == 1
            del gen
            gc.collect()
            with rt.fail_after(5):
                while not errors:  # the detached aclose() task runs soon
                    await rt.sleep(0.001)

        rt.block_on(main())
    assert [(type(error.exception), error.reason) for error in errors] == [(KeyError, "detached")]
    assert errors[0].task_name.startswith("aclose of ")
