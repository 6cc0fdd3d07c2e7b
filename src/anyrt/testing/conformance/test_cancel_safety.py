"""Cancel safety: nothing is lost or duplicated when a cancellation lands at any instant.

Each test makes a hand-over and a cancellation happen at the same moment, many times
(on threaded backends either may win each time), and checks the rule that holds
whichever wins.
"""

from __future__ import annotations

from contextlib import suppress

import pytest

import anyrt
from anyrt.testing.conformance import FOREVER, Arrivals, receive_exactly

ROUNDS = 30


async def test_a_oneshot_value_sent_is_received_even_if_cancelled_at_once(
    runtime: anyrt.Runtime,
) -> None:
    for order in range(ROUNDS):
        pair: tuple[anyrt.Sender[int], anyrt.Receiver[int]] = runtime.oneshot()
        sender, receiver = pair
        got: list[int] = []
        arrivals = Arrivals(runtime, 1)

        async def receive() -> None:
            got.append(await arrivals.enter("receiver", receiver))  # noqa: B023
            await runtime.sleep(FOREVER)

        task = runtime.spawn(receive())
        await arrivals.all_in.wait()
        if order % 2:
            delivered = sender.send(order)
            task.cancel()
        else:
            task.cancel()
            delivered = sender.send(order)
        with pytest.raises(anyrt.Cancelled):
            await task
        assert got == ([order] if delivered else [])


async def test_a_lock_handed_over_as_its_waiter_is_cancelled_is_not_lost(
    runtime: anyrt.Runtime,
) -> None:
    lock = anyrt.Lock(runtime)
    for _ in range(ROUNDS):
        await lock.acquire()
        arrivals = Arrivals(runtime, 1)

        async def waiter() -> None:
            await arrivals.enter("waiter", lock.acquire())  # noqa: B023
            try:
                await runtime.sleep(FOREVER)
            finally:
                lock.release()

        task = runtime.spawn(waiter())
        await arrivals.all_in.wait()
        lock.release()
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task
        assert not lock.locked()
    with runtime.fail_after(5):
        await lock.acquire()
    lock.release()


async def test_a_semaphore_keeps_its_permits_through_cancellations(
    runtime: anyrt.Runtime,
) -> None:
    semaphore = anyrt.Semaphore(runtime, 1)
    for _ in range(ROUNDS):
        await semaphore.acquire()
        arrivals = Arrivals(runtime, 2)

        async def waiter() -> None:
            await arrivals.enter("waiter", semaphore.acquire())  # noqa: B023
            try:
                await runtime.sleep(FOREVER)
            finally:
                semaphore.release()

        tasks = [runtime.spawn(waiter()), runtime.spawn(waiter())]
        await arrivals.all_in.wait()
        semaphore.release()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(anyrt.Cancelled):
                await task
        assert semaphore.value == 1


async def test_a_timed_out_acquire_never_holds_the_lock(runtime: anyrt.Runtime) -> None:
    lock = anyrt.Lock(runtime)
    await lock.acquire()
    for _ in range(ROUNDS):
        with runtime.move_on_after(0):
            await lock.acquire()
            pytest.fail("acquired a held lock")
    lock.release()
    assert not lock.locked()
    with runtime.fail_after(5):
        async with lock:
            pass


async def test_a_channel_item_is_received_exactly_once_or_stays(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 0)
    received: list[int] = []
    sent: list[int] = []
    for item in range(ROUNDS):
        arrivals = Arrivals(runtime, 1)

        async def receive() -> None:
            received.append(await arrivals.enter("receiver", channel.receive()))  # noqa: B023
            await runtime.sleep(FOREVER)

        task = runtime.spawn(receive())
        await arrivals.all_in.wait()
        with runtime.move_on_after(0.01):
            if item % 2:
                task.cancel()
            await channel.send(item)
            sent.append(item)
        task.cancel()
        with pytest.raises(anyrt.Cancelled):
            await task
    assert received == sent  # each sent item reached exactly one receiver, in order
    assert len(channel) == 0


async def test_a_cancelled_channel_send_delivers_once_or_not_at_all(
    runtime: anyrt.Runtime,
) -> None:
    channel = anyrt.Channel[int](runtime, 0)
    delivered: list[int] = []
    got: list[int] = []
    for item in range(ROUNDS):
        arrivals = Arrivals(runtime, 1)

        async def send() -> None:
            await arrivals.enter("sender", channel.send(item))  # noqa: B023
            delivered.append(item)  # noqa: B023

        task = runtime.spawn(send())
        await arrivals.all_in.wait()
        if item % 2:
            task.cancel()
        with runtime.move_on_after(0.01):
            got.append(await channel.receive())
        task.cancel()
        with suppress(anyrt.Cancelled):
            await task
    assert got == delivered


async def test_a_timed_out_event_wait_leaves_no_waiter(runtime: anyrt.Runtime) -> None:
    event = anyrt.Event(runtime)
    for _ in range(ROUNDS):
        with runtime.move_on_after(0):
            await event.wait()
    assert "0 waiting" in repr(event)


async def test_timed_out_channel_waits_leave_no_waiter(runtime: anyrt.Runtime) -> None:
    channel = anyrt.Channel[int](runtime, 0)
    for _ in range(ROUNDS):
        with runtime.move_on_after(0):
            await channel.receive()
        with runtime.move_on_after(0):
            await channel.send(1)
    assert "0 senders and 0 receivers waiting" in repr(channel)


async def test_a_cancelled_stream_receive_loses_no_bytes(runtime: anyrt.Runtime) -> None:
    async with (
        await runtime.listen_tcp("127.0.0.1", 0) as listener,
        await runtime.connect_tcp(*listener.address) as client,
        await listener.accept() as server,
    ):
        for round_ in range(ROUNDS):
            payload = f"round {round_}".encode()
            arrivals = Arrivals(runtime, 1)
            got = bytearray()

            async def receive() -> None:
                got.extend(await arrivals.enter("receiver", client.receive()))  # noqa: B023

            task = runtime.spawn(receive())
            await arrivals.all_in.wait()
            await server.send(payload)
            task.cancel()
            with suppress(anyrt.Cancelled):
                await task
            rest = await receive_exactly(client, len(payload) - len(got))
            assert bytes(got) + rest == payload
