"""`Executor.oneshot`: the one low-level wake primitive every other primitive uses."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import anyrt
from anyrt.testing.conformance import Arrivals


def _oneshot(rt: anyrt.Executor) -> tuple[anyrt.Sender[Any], anyrt.Receiver[Any]]:
    return rt.oneshot()


async def test_value_sent_before_the_receiver_waits(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    assert isinstance(sender, anyrt.Sender)
    assert isinstance(receiver, anyrt.Receiver)
    assert sender.send("early") is True
    assert await receiver == "early"


async def test_value_sent_while_the_receiver_waits(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    arrivals = Arrivals(runtime, 1)

    async def receive() -> object:
        return await arrivals.enter("receiver", receiver)

    task = runtime.spawn(receive())
    await arrivals.all_in.wait()
    assert sender.send("late") is True
    assert await task == "late"


async def test_send_from_another_task(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)

    async def send_later() -> bool:
        await runtime.sleep(0.001)
        return sender.send(7)

    task = runtime.spawn(send_later())
    assert await receiver == 7
    assert await task is True


async def test_fail_delivers_the_exception(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    error = LookupError("delivered")
    assert sender.fail(error) is True
    with pytest.raises(LookupError) as info:
        await receiver
    assert info.value is error


async def test_send_after_the_receiver_is_closed_returns_false(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    receiver.close()
    assert sender.send(1) is False
    other_sender, other_receiver = _oneshot(runtime)
    other_receiver.close()
    assert other_sender.fail(KeyError("nobody")) is False


async def test_send_after_the_receiving_task_was_cancelled_returns_false(
    runtime: anyrt.Runtime,
) -> None:
    sender, receiver = _oneshot(runtime)
    arrivals = Arrivals(runtime, 1)

    async def receive() -> object:
        return await arrivals.enter("receiver", receiver)

    task = runtime.spawn(receive())
    await arrivals.all_in.wait()
    task.cancel()
    with pytest.raises(anyrt.Cancelled):
        await task
    assert sender.send(1) is False


def test_a_sender_delivers_once(runtime: anyrt.Runtime) -> None:
    sender, _receiver = _oneshot(runtime)
    assert sender.send(1) is True
    with pytest.raises(RuntimeError):
        sender.send(2)
    with pytest.raises(RuntimeError):
        sender.fail(KeyError("too late"))


async def test_many_oneshots_in_a_chain(runtime: anyrt.Runtime) -> None:
    # Each task waits for its predecessor's value and passes on one more.
    pairs = [_oneshot(runtime) for _ in range(1000)]

    async def relay(index: int) -> None:
        value = await pairs[index][1]
        pairs[index + 1][0].send(value + 1)

    tasks = [runtime.spawn(relay(i)) for i in range(len(pairs) - 1)]
    pairs[0][0].send(0)
    assert await pairs[-1][1] == len(pairs) - 1
    for task in tasks:
        await task


@pytest.mark.anyrt_requires("threads")
async def test_send_from_a_foreign_thread(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(sender.send("from a thread")))
    thread.start()
    assert await receiver == "from a thread"
    thread.join()
    assert results == [True]


@pytest.mark.anyrt_requires("threads")
async def test_fail_from_a_foreign_thread(runtime: anyrt.Runtime) -> None:
    sender, receiver = _oneshot(runtime)
    thread = threading.Thread(target=sender.fail, args=(KeyError("from a thread"),))
    thread.start()
    with pytest.raises(KeyError):
        await receiver
    thread.join()
