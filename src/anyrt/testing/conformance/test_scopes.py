"""Cancel scopes: level-triggered, shielded, outer wins, movable deadlines."""

from __future__ import annotations

import math
import threading
import time

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals


async def test_move_on_after_ends_the_block_quietly(runtime: anyrt.Runtime) -> None:
    reached: list[str] = []
    with runtime.move_on_after(0.01) as scope:
        await runtime.sleep(FOREVER)
        reached.append("after the sleep")
    assert reached == []
    assert scope.cancel_called
    assert scope.cancelled_caught


async def test_fail_after_raises_timeout_error(runtime: anyrt.Runtime) -> None:
    with pytest.raises(TimeoutError), runtime.fail_after(0.01) as scope:
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_a_scope_that_is_not_cancelled_changes_nothing(runtime: anyrt.Runtime) -> None:
    with runtime.fail_after(FOREVER) as scope:
        await runtime.sleep(0)
        value = "done"
    assert value == "done"
    assert not scope.cancel_called
    assert not scope.cancelled_caught


async def test_every_cancel_point_raises_again_until_the_scope_is_left(
    runtime: anyrt.Runtime,
) -> None:
    raised: list[str] = []
    with runtime.cancel_scope() as scope:
        scope.cancel()
        for what in ("sleep(0)", "sleep", "event", "sleep(0) again"):
            try:
                if what == "sleep":
                    await runtime.sleep(FOREVER)
                elif what == "event":
                    await anyrt.Event(runtime).wait()
                else:
                    await runtime.sleep(0)
            except runtime.cancelled_exc:
                raised.append(what)
    assert raised == ["sleep(0)", "sleep", "event", "sleep(0) again"]
    assert not scope.cancelled_caught  # every cancellation was caught inside
    await runtime.sleep(0)  # outside the scope nothing is cancelled


async def test_cancel_before_enter_cancels_at_the_first_cancel_point(
    runtime: anyrt.Runtime,
) -> None:
    scope = runtime.cancel_scope()
    scope.cancel()
    assert scope.cancel_called
    with scope:
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_a_past_deadline_cancels_at_once(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_at(runtime.now() - 1) as scope:
        await runtime.sleep(0)
    assert scope.cancelled_caught


async def test_a_shield_keeps_an_outer_cancellation_out(runtime: anyrt.Runtime) -> None:
    progress: list[str] = []
    with runtime.cancel_scope() as outer:
        outer.cancel()
        with runtime.cancel_scope(shield=True) as inner:
            await runtime.sleep(0.01)
            progress.append("slept under the shield")
        assert not inner.cancelled_caught
        await runtime.sleep(0)
        progress.append("past the shield")  # never: the outer scope is still cancelled
    assert progress == ["slept under the shield"]
    assert outer.cancelled_caught


async def test_a_shielded_scope_is_cancelled_by_its_own_deadline(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_after(0.01, shield=True) as scope:
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_lowering_the_shield_lets_the_cancellation_in(runtime: anyrt.Runtime) -> None:
    with runtime.cancel_scope() as outer:
        outer.cancel()
        with runtime.cancel_scope(shield=True) as inner:
            await runtime.sleep(0)
            inner.shield = False
            await runtime.sleep(FOREVER)
        pytest.fail("the outer cancellation did not get in")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught


async def test_outer_cancellation_passes_through_an_inner_scope(runtime: anyrt.Runtime) -> None:
    inner_saw: list[BaseException] = []
    with runtime.move_on_after(0.01) as outer:
        try:
            with runtime.fail_after(FOREVER) as inner:
                await runtime.sleep(FOREVER)
        except BaseException as exc:
            inner_saw.append(exc)
            raise
    assert outer.cancelled_caught
    assert not inner.cancelled_caught
    assert [type(exc) for exc in inner_saw] == [runtime.cancelled_exc]


async def test_equal_deadlines_the_outer_scope_wins(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_after(0.01) as outer:
        with runtime.fail_at(outer.deadline) as inner:
            await runtime.sleep(FOREVER)
        pytest.fail("the inner scope swallowed the outer deadline")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught  # and so no TimeoutError either


async def test_both_deadlines_passed_the_outer_scope_wins(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_after(FOREVER) as outer:
        with runtime.fail_after(FOREVER) as inner:
            inner.deadline = runtime.now() - 1
            outer.deadline = runtime.now() - 1
            await runtime.sleep(0)
        pytest.fail("the inner scope swallowed the outer deadline")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught


async def test_a_task_busy_past_both_deadlines_is_stopped_by_the_outer(
    runtime: anyrt.Runtime,
) -> None:
    start = runtime.now()
    time.sleep(0.03)
    if runtime.now() - start < 0.02:
        pytest.skip("the runtime's clock is virtual: a busy task does not move it")
    with runtime.move_on_after(0.005) as outer:
        with runtime.fail_after(0.01):
            time.sleep(0.03)  # busy past both deadlines, no cancel point
            # The runtime looks at its timers between batches of steps: one of the next
            # cancel points raises.
            for _ in range(10_000):
                await runtime.sleep(0)
            pytest.fail("no cancel point after both deadlines raised")
        pytest.fail("the inner scope swallowed the outer deadline")
    assert outer.cancelled_caught


async def test_task_cancel_passes_through_a_timeout_whose_cleanup_awaits(
    runtime: anyrt.Runtime,
) -> None:
    arrivals = Arrivals(runtime, 1)

    async def victim() -> str:
        try:
            with runtime.fail_after(0.01):
                try:
                    await arrivals.enter("victim", runtime.sleep(FOREVER))
                finally:
                    with runtime.cancel_scope(shield=True):
                        await runtime.sleep(0.03)  # the deadline passes meanwhile
        except TimeoutError:
            return "caught a TimeoutError and carried on"
        return "carried on"

    task = runtime.spawn(victim())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert task.cancelled()


async def test_an_inner_timeout_never_turns_an_outer_cancellation_into_a_timeout(
    runtime: anyrt.Runtime,
) -> None:
    raised: list[type[BaseException]] = []
    with runtime.move_on_after(0.01) as outer:
        try:
            async with runtime.timeout(0.02):
                try:
                    await runtime.sleep(FOREVER)
                finally:
                    with runtime.cancel_scope(shield=True):
                        await runtime.sleep(0.03)  # the inner deadline passes too
        except BaseException as exc:
            raised.append(type(exc))
            raise
    assert raised == [runtime.cancelled_exc]
    assert outer.cancelled_caught


async def test_fail_after_cancelled_by_hand_ends_quietly(runtime: anyrt.Runtime) -> None:
    with runtime.fail_after(FOREVER) as scope:
        scope.cancel()
        await runtime.sleep(0)
    assert scope.cancelled_caught


async def test_the_deadline_can_be_moved_later_and_earlier(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_after(0.01) as scope:
        scope.deadline = runtime.now() + FOREVER
        await runtime.sleep(0.03)  # past the first deadline
        assert not scope.cancel_called
        scope.deadline = runtime.now() + 0.01
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_moving_the_deadline_into_the_past_cancels_at_once(runtime: anyrt.Runtime) -> None:
    with runtime.cancel_scope() as scope:
        assert scope.deadline == math.inf
        scope.deadline = runtime.now() - 1
        assert scope.cancel_called
        await runtime.sleep(0)
    assert scope.cancelled_caught


async def test_the_deadline_can_be_moved_from_another_thread(runtime: anyrt.Runtime) -> None:
    with runtime.move_on_after(FOREVER) as scope:
        mover = threading.Thread(target=setattr, args=(scope, "deadline", runtime.now() + 0.01))
        mover.start()
        mover.join()
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_many_scopes_share_one_timer_and_still_fire(runtime: anyrt.Runtime) -> None:
    for _ in range(50):  # each later than the last: no timer of their own
        with runtime.fail_after(FOREVER):
            await runtime.sleep(0)
    with runtime.move_on_after(FOREVER):
        with runtime.move_on_after(0.01) as inner:  # earlier than every one before
            await runtime.sleep(FOREVER)
        assert inner.cancelled_caught
        with runtime.move_on_after(0.02) as later:  # later than the one that fired
            await runtime.sleep(FOREVER)
        assert later.cancelled_caught


async def test_cancel_from_another_thread(runtime: anyrt.Runtime) -> None:
    with runtime.cancel_scope() as scope:
        threading.Thread(target=scope.cancel).start()
        await runtime.sleep(FOREVER)
    assert scope.cancelled_caught


async def test_current_deadline(runtime: anyrt.Runtime) -> None:
    assert runtime.current_deadline() == math.inf
    with runtime.move_on_at(runtime.now() + 100) as outer:
        assert runtime.current_deadline() == outer.deadline
        with runtime.move_on_at(runtime.now() + 200):
            assert runtime.current_deadline() == outer.deadline
            with runtime.move_on_at(runtime.now() + 300, shield=True) as shielded:
                assert runtime.current_deadline() == shielded.deadline
        with runtime.move_on_at(runtime.now() + 50) as nearer:
            assert runtime.current_deadline() == nearer.deadline
            nearer.cancel()
            assert runtime.current_deadline() == -math.inf
            with runtime.cancel_scope(shield=True):
                assert runtime.current_deadline() == math.inf
    assert runtime.current_deadline() == math.inf


async def test_timeout_means_fail_after(runtime: anyrt.Runtime) -> None:
    with pytest.raises(TimeoutError):
        async with runtime.timeout(0.01):
            await runtime.sleep(FOREVER)
    with runtime.move_on_after(0.01) as outer:
        async with runtime.timeout(FOREVER):
            await runtime.sleep(FOREVER)
    assert outer.cancelled_caught


async def test_a_scope_can_be_entered_only_once(runtime: anyrt.Runtime) -> None:
    scope = runtime.cancel_scope()
    with scope:
        pass
    with pytest.raises(RuntimeError):
        scope.__enter__()


async def test_scopes_exited_out_of_order_raise(runtime: anyrt.Runtime) -> None:
    outer = runtime.cancel_scope()
    inner = runtime.cancel_scope()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError):
        outer.__exit__(None, None, None)
    # Leave them in order so that the task is left as it was.
    try:
        inner.__exit__(None, None, None)
        outer.__exit__(None, None, None)
    except RuntimeError:
        pass


def test_a_scope_needs_a_task(make_runtime: object) -> None:
    rt: anyrt.Runtime = make_runtime()  # type: ignore[operator]
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            rt.cancel_scope().__enter__()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert [type(exc) for exc in errors] == [RuntimeError]


@pytest.mark.parametrize("bad", [float("nan")])
async def test_a_nan_deadline_is_refused(runtime: anyrt.Runtime, bad: float) -> None:
    with pytest.raises(ValueError):
        runtime.cancel_scope(deadline=bad)
    with pytest.raises(ValueError):
        runtime.move_on_at(bad)
    with pytest.raises(ValueError):
        runtime.fail_after(bad)
    scope = runtime.cancel_scope()
    with pytest.raises(ValueError):
        scope.deadline = bad


async def test_a_negative_duration_is_refused(runtime: anyrt.Runtime) -> None:
    with pytest.raises(ValueError):
        runtime.move_on_after(-1)
    with pytest.raises(ValueError):
        runtime.fail_after(-1)


async def test_cleanup_in_finally_awaits_under_a_shield(runtime: anyrt.Runtime) -> None:
    arrivals = Arrivals(runtime, 1)
    cleaned: list[str] = []

    async def worker() -> None:
        try:
            await arrivals.enter("worker", runtime.sleep(FOREVER))
        finally:
            with runtime.cancel_scope(shield=True):
                await runtime.sleep(0.01)
                await anyrt.Lock(runtime).acquire()
                cleaned.append("cleanup finished")

    task = runtime.spawn(worker())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert cleaned == ["cleanup finished"]


async def test_cleanup_that_awaits_without_a_shield_is_cancelled(runtime: anyrt.Runtime) -> None:
    arrivals = Arrivals(runtime, 1)
    reached: list[str] = []

    async def worker() -> None:
        try:
            await arrivals.enter("worker", runtime.sleep(FOREVER))
        finally:
            await runtime.sleep(FOREVER)  # a cancel point: raises at once
            reached.append("unshielded cleanup finished")

    task = runtime.spawn(worker())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert reached == []
