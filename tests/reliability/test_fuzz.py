"""Fuzzing the public API: every call works or raises a documented exception.

Hypothesis generates programs of calls with hostile arguments - durations that are
negative, NaN, infinite, huge or not numbers; sizes of every sign and type; objects
used after they were closed; blocking calls made from the wrong place. Each program
runs under a deadline, so a call that hangs fails the example, and every item sent on
a channel must be received or refused, never lost.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyrt

#: What a documented misuse may raise. Anything else fails the example.
DOCUMENTED = (
    TypeError,
    ValueError,
    OverflowError,
    anyrt.ClosedResourceError,
    anyrt.EndOfChannel,
    RuntimeError,
    TimeoutError,
)

hostile_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([True, None, "1", b"1", 1j, [], 0, 0.0, -0.0, 1e-9]),
)
small_delays = st.floats(min_value=0, max_value=0.05) | hostile_numbers


@dataclass(frozen=True)
class Call:
    kind: str
    arg: Any


calls = st.one_of(
    st.builds(Call, st.just("sleep"), small_delays),
    st.builds(Call, st.just("timeout"), small_delays),
    st.builds(Call, st.just("interval"), small_delays),
    st.builds(Call, st.just("sleep_until"), hostile_numbers),
    st.builds(Call, st.just("channel"), hostile_numbers),
    st.builds(Call, st.just("semaphore"), hostile_numbers),
    st.builds(Call, st.just("send_after_close"), st.integers(0, 3)),
    st.builds(Call, st.just("oneshot_twice"), st.none()),
    st.builds(Call, st.just("spawn"), st.sampled_from([None, 1, "coro", print, "named"])),
    st.builds(Call, st.just("receive"), hostile_numbers),
    st.builds(Call, st.just("stream_send"), st.sampled_from([b"x", "text", 3, bytearray(b"y")])),
    st.builds(Call, st.just("blocking_in_task"), st.none()),
    st.builds(Call, st.just("lock_misuse"), st.none()),
)


async def perform(rt: anyrt.Runtime, call: Call, sent: list[int], got: list[int]) -> None:
    kind, arg = call.kind, call.arg
    if kind == "sleep":
        await rt.sleep(arg)
    elif kind == "timeout":
        async with rt.timeout(arg):
            await rt.sleep(0.01)
    elif kind == "interval":
        ticks = rt.interval(arg)
        await anext(aiter(ticks))
    elif kind == "sleep_until":
        if isinstance(arg, (int, float)) and not isinstance(arg, bool) and math.isfinite(arg):
            arg = rt.now() + max(-1.0, min(float(arg), 0.01))  # bounded: never hang
        await rt.sleep_until(arg)
    elif kind == "channel":
        channel: anyrt.Channel[int] = anyrt.Channel(rt, arg)
        if isinstance(arg, int) and arg > 1_000:
            return
        consumer = rt.spawn(_drain(channel, got))
        for item in range(3):
            await channel.send(item)
            sent.append(item)  # send returned: the item is delivered, or will be
        channel.close()
        await consumer
    elif kind == "semaphore":
        semaphore = anyrt.Semaphore(rt, arg)
        async with semaphore:
            pass
    elif kind == "send_after_close":
        channel = anyrt.Channel(rt, arg)
        channel.close()
        await channel.send(1)
    elif kind == "oneshot_twice":
        sender, _receiver = rt.oneshot()
        assert sender.send(1)
        sender.send(2)
    elif kind == "spawn":
        if arg == "named":
            await rt.spawn(rt.sleep(0), name=123)  # type: ignore[arg-type]
        else:
            rt.spawn(arg)
    elif kind == "receive":
        listener = await rt.listen_tcp("127.0.0.1", 0)
        async with listener:
            client = await rt.connect_tcp(*listener.address)
            async with client:
                await client.receive(arg)
    elif kind == "stream_send":
        listener = await rt.listen_tcp("127.0.0.1", 0)
        async with listener:
            client = await rt.connect_tcp(*listener.address)
            await client.aclose()
            await client.send(arg)
    elif kind == "blocking_in_task":
        channel = anyrt.Channel(rt, 1)
        channel.receive_blocking()  # a plain-thread call, made from a task
    elif kind == "lock_misuse":
        anyrt.Lock(rt).release()


async def _drain(channel: anyrt.Channel[int], got: list[int]) -> None:
    async for item in channel:
        got.append(item)  # noqa: PERF401 - one at a time, so a cancellation loses none


def run_program(rt: anyrt.Runtime, program: list[Call], per_call: float) -> None:
    sent: list[int] = []
    got: list[int] = []

    async def main() -> None:
        for call in program:
            try:
                # A hostile duration (infinity, 1e300) may park a task for ever, as asked:
                # bound each call, which also proves the wait can be cancelled.
                async with rt.timeout(per_call):
                    await perform(rt, call, sent, got)
            except DOCUMENTED:
                pass

    async def bounded() -> None:
        async with rt.timeout(60):
            await main()

    rt.block_on(bounded())
    assert sorted(got) == sorted(sent)  # every item sent on a channel arrived, in order


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(calls, max_size=8))
def test_single_threaded_survives_hostile_programs(program: list[Call]) -> None:
    with anyrt.SingleThreaded() as rt:
        run_program(rt, program, per_call=5.0)  # virtual time: costs nothing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(calls, max_size=6))
@pytest.mark.parametrize("backend", ["work-stealing", "thread-per-core"])
def test_threaded_runtimes_survive_hostile_programs(backend: str, program: list[Call]) -> None:
    with anyrt.runtime(backend) as rt:
        run_program(rt, program, per_call=0.1)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(0, 3),
    items=st.lists(st.integers(), max_size=20),
    close_early=st.booleans(),
)
def test_plain_threads_and_tasks_share_a_channel_without_loss(
    capacity: int, items: list[int], close_early: bool
) -> None:
    """send_blocking from a plain thread while tasks receive; then closing racing both."""
    with anyrt.runtime("work-stealing", workers=2) as rt:
        channel: anyrt.Channel[int] = anyrt.Channel(rt, capacity)
        delivered: list[int] = []
        refused: list[int] = []

        def producer() -> None:
            for item in items:
                try:
                    channel.send_blocking(item)
                    delivered.append(item)
                except anyrt.ClosedResourceError:
                    refused.append(item)
            channel.close()

        async def main() -> list[int]:
            thread = threading.Thread(target=producer)
            thread.start()
            got: list[int] = []
            try:
                async for item in channel:
                    got.append(item)
                    if close_early and len(got) == len(items) // 2:
                        channel.close()  # items already handed over still arrive
            finally:
                await rt.spawn_blocking(thread.join)
            return got

        got = rt.block_on(main())
        assert got == delivered
        assert delivered + refused == items
