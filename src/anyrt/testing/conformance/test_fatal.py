"""KeyboardInterrupt and SystemExit raised in a task stop `block_on`, as on asyncio."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_a_background_task_raising_it_stops_block_on(
    make_runtime: Callable[..., anyrt.Runtime], fatal: type[BaseException]
) -> None:
    rt = make_runtime()
    cleaned: list[str] = []

    async def background() -> None:
        await rt.sleep(0.001)
        raise fatal("from a background task")

    async def main() -> None:
        rt.spawn(background())
        try:
            await rt.sleep(FOREVER)
        finally:
            cleaned.append("main's finally ran")

    with pytest.raises(fatal):
        rt.block_on(main())
    assert cleaned == ["main's finally ran"]

    async def after() -> str:
        await rt.sleep(0)
        return "the runtime still works"

    assert rt.block_on(after()) == "the runtime still works"


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_the_main_task_raising_it_stops_block_on(
    make_runtime: Callable[..., anyrt.Runtime], fatal: type[BaseException]
) -> None:
    rt = make_runtime()

    async def main() -> None:
        await rt.sleep(0)
        raise fatal

    with pytest.raises(fatal):
        rt.block_on(main())
