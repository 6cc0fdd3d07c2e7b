"""Async generators abandoned mid-iteration are finalised on the runtime, as on asyncio."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator, Callable

import anyrt


async def test_an_abandoned_async_generator_is_finalised(runtime: anyrt.Runtime) -> None:
    finalised = anyrt.Event(runtime)

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            await runtime.sleep(0)  # cleanup that awaits: it needs the runtime
            finalised.set()

    gen = numbers()
    assert await gen.__anext__() == 1
    del gen
    gc.collect()
    with runtime.fail_after(5):
        await finalised.wait()


def test_close_finalises_the_async_generators_still_alive(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    rt = make_runtime()
    finalised: list[str] = []
    kept: list[AsyncGenerator[int, None]] = []

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            await rt.sleep(0)
            finalised.append("finalised")

    async def main() -> None:
        gen = numbers()
        kept.append(gen)
        assert await gen.__anext__() == 1

    rt.block_on(main())
    assert finalised == []
    rt.close()
    assert finalised == ["finalised"]
