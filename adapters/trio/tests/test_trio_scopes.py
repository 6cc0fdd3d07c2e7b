"""Cancel scopes on trio: what the wrapper adds to `trio.CancelScope`.

Several tests keep the trio thread busy in a synchronous wait while another thread
uses the scope: what that thread posts to the run cannot be applied meanwhile, so what
it reads is the wrapper's own answer, deterministically.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import trio
from anyrt_trio import TrioRuntime

import anyrt


@pytest.fixture
def rt() -> Iterator[TrioRuntime]:
    with TrioRuntime() as runtime:
        yield runtime


def _on_another_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` on a new thread while this (trio) thread blocks; return its result."""
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(fn()))
    thread.start()
    thread.join(5)
    return results[0]


def test_cancel_called_reads_true_as_soon_as_cancel_returns_on_another_thread(
    rt: TrioRuntime,
) -> None:
    async def main() -> tuple[object, bool]:
        with rt.cancel_scope() as scope:

            def cancel() -> bool:
                scope.cancel()
                return scope.cancel_called

            seen = _on_another_thread(cancel)  # the trio thread is blocked meanwhile
            await rt.sleep(3600)  # then the posted cancellation lands
        return seen, scope.cancelled_caught

    assert rt.block_on(main()) == (True, True)


def test_setters_on_another_thread_read_back_at_once_and_take_effect(rt: TrioRuntime) -> None:
    async def main() -> tuple[object, bool]:
        with rt.cancel_scope() as scope:

            def move() -> tuple[float, bool]:
                scope.shield = True
                scope.deadline = rt.now() - 1
                return scope.deadline, scope.shield

            deadline, shield = _on_another_thread(move)  # type: ignore[misc]
            assert shield is True
            assert deadline < rt.now()
            await rt.sleep(3600)
        return scope.shield, scope.cancelled_caught

    assert rt.block_on(main()) == (True, True)


def test_a_passed_deadline_reads_as_cancel_called_on_another_thread(rt: TrioRuntime) -> None:
    """Before trio's loop has seen the deadline pass (its own flag is still False)."""

    async def main() -> object:
        with rt.move_on_after(0.01) as scope:
            time.sleep(0.03)  # busy past the deadline: trio has not checked it yet
            seen = _on_another_thread(lambda: scope.cancel_called)
            await rt.sleep(0)
        return seen

    assert rt.block_on(main()) is True


def test_a_fail_after_cancelled_after_its_deadline_passed_raises_timeout_error(
    rt: TrioRuntime,
) -> None:
    """The deadline came first: cancel() then does not make it a cancellation by hand."""

    async def main() -> None:
        with rt.fail_after(0.01) as scope:
            time.sleep(0.03)  # the deadline passes without a checkpoint
            scope.cancel()
            await rt.sleep(0)

    with pytest.raises(TimeoutError):
        rt.block_on(main())


def test_it_raises_the_builtin_timeout_error_around_trio_code(rt: TrioRuntime) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError) as info, rt.fail_after(0.01):
            await trio.sleep_forever()
        assert not isinstance(info.value, trio.TooSlowError)

    rt.block_on(main())


def test_current_deadline_sees_trio_scopes_too(rt: TrioRuntime) -> None:
    async def main() -> tuple[float, float]:
        with trio.move_on_at(rt.now() + 100) as trio_scope:
            with rt.move_on_at(rt.now() + 200):
                return rt.current_deadline(), trio_scope.deadline

    nearest, trio_deadline = rt.block_on(main())
    assert nearest == trio_deadline


def test_current_deadline_outside_a_task_is_refused(rt: TrioRuntime) -> None:
    with pytest.raises(RuntimeError, match="from a task of this 'trio' runtime"):
        rt.current_deadline()


def test_the_trio_scope_underneath_is_the_one_entered(rt: TrioRuntime) -> None:
    async def main() -> tuple[float, bool]:
        with rt.move_on_after(3600) as scope:
            trio_scope = scope.trio_scope  # type: ignore[attr-defined]
            assert isinstance(trio_scope, trio.CancelScope)
            return trio.current_effective_deadline(), math.isclose(
                trio_scope.deadline, scope.deadline
            )

    deadline, same = rt.block_on(main())
    assert same
    assert deadline != math.inf


def test_a_scope_is_an_anyrt_cancel_scope(rt: TrioRuntime) -> None:
    for scope in (rt.cancel_scope(), rt.move_on_after(1), rt.fail_at(rt.now() + 1)):
        assert isinstance(scope, anyrt.CancelScope)
