"""KeyboardInterrupt and SystemExit in a trio task while no ``block_on`` is running."""

from __future__ import annotations

import threading
import time

import pytest
from anyrt_trio import TrioRuntime

import anyrt


async def _raise(exc: BaseException) -> None:
    raise exc


def _wait_done(task: anyrt.Task[object]) -> None:
    """Poll from this plain thread until ``task`` has ended (without observing it)."""
    while not task.done():
        time.sleep(0.001)


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_the_next_block_on_raises_it_without_running_its_coroutine(
    fatal: type[BaseException],
) -> None:
    ran: list[str] = []

    async def main() -> None:
        ran.append("main ran")

    with TrioRuntime() as rt:
        _wait_done(rt.spawn(_raise(fatal("between two block_on calls"))))
        with pytest.raises(fatal, match="between two block_on calls"):
            rt.block_on(main())
        assert ran == []
        rt.block_on(main())  # raised once: the runtime goes on
    assert ran == ["main ran"]


def test_one_no_block_on_raised_goes_to_the_error_handler_at_close() -> None:
    errors: list[anyrt.TaskError] = []
    rt = TrioRuntime(error_handler=errors.append)
    task = rt.spawn(_raise(SystemExit(3)), name="exits")
    _wait_done(task)
    assert errors == []  # not a failure to report: a block_on may still raise it
    rt.close()
    assert [(error.task_name, type(error.exception), error.reason) for error in errors] == [
        ("exits", SystemExit, "raised while no block_on ran")
    ]


def test_it_stops_one_block_on_of_several_the_oldest() -> None:
    with TrioRuntime() as rt:
        first_running = threading.Event()
        raised_in_first: list[BaseException] = []

        async def first() -> None:
            first_running.set()
            await rt.sleep(3600)

        def run_first() -> None:
            try:
                rt.block_on(first())
            except BaseException as exc:
                raised_in_first.append(exc)

        thread = threading.Thread(target=run_first)
        thread.start()
        assert first_running.wait(5)

        async def second() -> str:
            background = rt.spawn(_raise(KeyboardInterrupt("from the background")))
            while not background.done():
                await rt.sleep(0.001)
            return "the second block_on carried on"

        assert rt.block_on(second()) == "the second block_on carried on"
        thread.join(5)
    assert [type(exc) for exc in raised_in_first] == [KeyboardInterrupt]
