"""asyncio, trio and anyio code run by mistake on a native runtime: the error names the fix.

Such code usually fails inside its own library before it yields anything to the task
(``asyncio.sleep`` first asks for the running loop), so the runtime adds a note to
that failure naming the compat shim. Code that yields a foreign object gets a
`TypeError` instead (tested in the conformance suite's errors tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
import trio

import anyrt

NATIVE = ["single-threaded", "work-stealing", "thread-per-core"]


async def _asyncio_sleep(rt: anyrt.Runtime) -> None:
    await asyncio.sleep(0.01)


async def _trio_sleep(rt: anyrt.Runtime) -> None:
    await trio.sleep(0.01)


async def _trio_nursery(rt: anyrt.Runtime) -> None:
    async with trio.open_nursery():
        pass


async def _anyio_sleep(rt: anyrt.Runtime) -> None:
    await anyio.sleep(0.01)


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize(
    ("code", "error", "shim"),
    [
        (_asyncio_sleep, RuntimeError, "anyrt_asyncio.compat.run"),
        (_trio_sleep, RuntimeError, "anyrt_trio.compat.run"),
        (_trio_nursery, AttributeError, "anyrt_trio.compat.run"),
        (_anyio_sleep, ModuleNotFoundError, "anyrt_asyncio.compat.run"),
    ],
)
def test_the_failure_keeps_its_type_and_names_the_shim(
    backend: str,
    code: Callable[[anyrt.Runtime], Coroutine[Any, Any, None]],
    error: type[BaseException],
    shim: str,
) -> None:
    with pytest.raises(error) as caught:
        anyrt.run(code, backend=backend)
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1
    assert shim in notes[0]
    assert repr(backend) in notes[0]


def test_a_runtime_error_of_the_users_own_gets_no_note() -> None:
    async def main(rt: anyrt.Runtime) -> None:
        raise RuntimeError("no running event loop")  # same words, but not asyncio's

    with pytest.raises(RuntimeError) as caught:
        anyrt.run(main, backend="single-threaded")
    assert not hasattr(caught.value, "__notes__")
