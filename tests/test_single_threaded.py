"""What only the `single-threaded` backend promises: virtual time, determinism, no OS."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sniffio
import trio

import anyrt
from anyrt import SingleThreaded, VirtualClock


@pytest.fixture
def rt() -> Iterator[SingleThreaded]:
    with SingleThreaded() as runtime:
        yield runtime


# -- clocks ---------------------------------------------------------------------------


def test_virtual_clock_is_the_default(rt: SingleThreaded) -> None:
    assert isinstance(rt.clock, VirtualClock)


def test_sleeping_an_hour_is_instant_in_virtual_time(rt: SingleThreaded) -> None:
    async def main() -> float:
        start = rt.now()
        await rt.sleep(3600)
        return rt.now() - start

    wall_start = time.monotonic()
    assert rt.block_on(main()) == 3600
    assert time.monotonic() - wall_start < 60  # nowhere near an hour


def test_virtual_time_stands_still_without_timers(rt: SingleThreaded) -> None:
    async def main() -> float:
        start = rt.now()
        for _ in range(100):
            await rt.sleep(0)
        return rt.now() - start

    assert rt.block_on(main()) == 0


def test_virtual_clock_start_and_jump() -> None:
    clock = VirtualClock(start=100.0)
    with SingleThreaded(clock=clock) as rt:
        woke: list[float] = []

        async def sleeper() -> None:
            await rt.sleep(10)
            woke.append(rt.now())

        async def main() -> None:
            task = rt.spawn(sleeper())
            await rt.sleep(0)
            clock.jump(10)  # the sleeper is due now, without idling
            await task

        rt.block_on(main())
        assert woke == [110.0]
    with pytest.raises(ValueError):
        clock.jump(-1)


def test_virtual_clock_rate_runs_with_real_time() -> None:
    clock = VirtualClock(rate=1000.0)
    assert clock.rate == 1000.0
    outer_start = time.monotonic()
    virtual_start = clock.now()
    inner_start = time.monotonic()
    while time.monotonic() - inner_start < 0.002:
        pass
    inner_end = time.monotonic()
    virtual_elapsed = clock.now() - virtual_start
    outer_end = time.monotonic()
    # The virtual interval lies between the inner and the outer real intervals.
    assert virtual_elapsed >= (inner_end - inner_start) * 1000 - 1e-6
    assert virtual_elapsed <= (outer_end - outer_start) * 1000 + 1e-6


def test_virtual_clock_with_a_rate_still_jumps_when_idle() -> None:
    with SingleThreaded(clock=VirtualClock(rate=10.0)) as rt:

        async def main() -> float:
            start = rt.now()
            await rt.sleep(3600)
            return rt.now() - start

        assert rt.block_on(main()) >= 3600


def test_real_clock_option() -> None:
    with SingleThreaded(clock="real") as rt:
        assert isinstance(rt.clock, anyrt.MonotonicClock)

        async def main() -> float:
            wall_start = time.monotonic()
            await rt.sleep(0.01)
            return time.monotonic() - wall_start

        assert rt.block_on(main()) >= 0.01
        assert abs(rt.now() - time.monotonic()) < 1


def test_injected_now_and_idle() -> None:
    fake_now = [0.0]
    idled: list[float] = []

    def idle(seconds: float) -> None:
        idled.append(seconds)
        fake_now[0] += seconds

    with SingleThreaded(clock=lambda: fake_now[0], idle=idle) as rt:
        rt.block_on(rt.sleep(5))
    assert idled == [5.0]


def test_bad_clock_arguments() -> None:
    with pytest.raises(ValueError):
        SingleThreaded(clock="sundial")
    with pytest.raises(TypeError):
        SingleThreaded(clock=VirtualClock(), idle=time.sleep)


# -- deadlock detection -----------------------------------------------------------------


def test_deadlock_lists_parked_tasks_and_where(rt: SingleThreaded) -> None:
    never = anyrt.Event(rt)

    async def waits_forever() -> None:
        await never.wait()

    async def main() -> None:
        await rt.spawn(waits_forever(), name="stuck-worker")

    with pytest.raises(anyrt.Deadlock) as info:
        rt.block_on(main())
    parked = {entry.name: entry.where for entry in info.value.parked}
    assert set(parked) == {main.__qualname__, "stuck-worker"}
    assert "waits_forever" in parked["stuck-worker"]
    assert __file__ in parked["stuck-worker"]
    assert "stuck-worker" in str(info.value)
    assert "waits_forever" in str(info.value)


def test_no_deadlock_while_a_timer_is_pending(rt: SingleThreaded) -> None:
    event = anyrt.Event(rt)

    async def set_later() -> None:
        await rt.sleep(50)
        event.set()

    async def main() -> None:
        rt.spawn(set_later())
        await event.wait()

    rt.block_on(main())
    assert rt.now() == 50


# -- determinism ------------------------------------------------------------------------


def _interleaving(seed: int | None) -> list[tuple[int, int]]:
    trace: list[tuple[int, int]] = []
    with SingleThreaded(seed=seed) as rt:

        async def worker(index: int) -> None:
            for step in range(5):
                trace.append((index, step))
                await rt.sleep(0)

        async def main() -> None:
            tasks = [rt.spawn(worker(index)) for index in range(5)]
            for task in tasks:
                await task

        rt.block_on(main())
    return trace


def test_unseeded_runs_tasks_round_robin() -> None:
    assert _interleaving(None) == [(index, step) for step in range(5) for index in range(5)]


def test_same_seed_same_interleaving() -> None:
    assert _interleaving(7) == _interleaving(7)


def test_different_seeds_change_the_interleaving() -> None:
    traces = {tuple(_interleaving(seed)) for seed in range(5)}
    assert len(traces) > 1


def test_seed_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        SingleThreaded(seed="1")  # type: ignore[arg-type]


# -- no OS --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["wait_readable", "wait_writable"])
def test_waiting_on_a_socket_needs_an_os(rt: SingleThreaded, method: str) -> None:
    wait: Callable[[int], object] = getattr(rt, method)
    with pytest.raises(RuntimeError, match="no OS"):
        rt.block_on(wait(0))  # type: ignore[arg-type]


def test_spawn_blocking_runs_inline(rt: SingleThreaded) -> None:
    async def main() -> int:
        return await rt.spawn_blocking(threading.get_ident)

    assert rt.block_on(main()) == threading.get_ident()


# -- the in-memory network --------------------------------------------------------------


def test_connect_without_a_listener_is_refused(rt: SingleThreaded) -> None:
    with pytest.raises(ConnectionRefusedError):
        rt.block_on(rt.connect_tcp("127.0.0.1", 8080))


def test_half_close(rt: SingleThreaded) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client = await rt.connect_tcp(*listener.address)
            server = await listener.accept()
            await client.send(b"request")
            await client.send_eof()
            assert await server.receive() == b"request"
            assert await server.receive() == b""
            await server.send(b"response")
            assert await client.receive() == b"response"
            with pytest.raises(anyrt.ClosedResourceError):
                await client.send(b"after eof")
            await client.aclose()
            await server.aclose()

    rt.block_on(main())


def test_closing_with_unread_data_resets_the_peer(rt: SingleThreaded) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client = await rt.connect_tcp(*listener.address)
            server = await listener.accept()
            await client.send(b"never read")
            await server.aclose()  # unread data: like the kernel, answer with RST
            with pytest.raises(ConnectionResetError):
                await client.receive()
            await client.aclose()

    rt.block_on(main())


def test_send_to_a_closed_peer_is_a_broken_pipe(rt: SingleThreaded) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            client = await rt.connect_tcp(*listener.address)
            server = await listener.accept()
            await server.aclose()  # nothing unread: a clean close
            assert await client.receive() == b""
            with pytest.raises(BrokenPipeError):
                await client.send(b"anyone there?")
            await client.aclose()

    rt.block_on(main())


def test_backpressure_with_a_small_network_buffer() -> None:
    with SingleThreaded(network_buffer=16) as rt:

        async def main() -> None:
            async with await rt.listen_tcp("127.0.0.1", 0) as listener:
                client = await rt.connect_tcp(*listener.address)
                server = await listener.accept()
                sender = rt.spawn(client.send(b"x" * 100))
                await rt.sleep(0)
                await rt.sleep(0)
                assert not sender.done()  # 16 bytes buffered, the rest waits
                received = b""
                while len(received) < 100:
                    received += await server.receive()
                await sender
                assert received == b"x" * 100
                await client.aclose()
                await server.aclose()

        rt.block_on(main())


def test_address_in_use(rt: SingleThreaded) -> None:
    async def main() -> None:
        async with await rt.listen_tcp("127.0.0.1", 0) as listener:
            with pytest.raises(OSError, match="in use"):
                await rt.listen_tcp(*listener.address)

    rt.block_on(main())


# -- foreign code ------------------------------------------------------------------------


def test_awaiting_an_asyncio_future_names_the_asyncio_shim(rt: SingleThreaded) -> None:
    loop = asyncio.new_event_loop()
    try:

        async def uses_asyncio() -> None:
            await loop.create_future()

        with pytest.raises(TypeError, match=r"anyrt_asyncio\.compat\.run"):
            rt.block_on(uses_asyncio())
    finally:
        loop.close()


def test_awaiting_asyncio_sleep_names_the_asyncio_shim(rt: SingleThreaded) -> None:
    with pytest.raises(TypeError, match=r"anyrt_asyncio\.compat\.run"):
        rt.block_on(asyncio.sleep(0))


def test_a_trio_checkpoint_names_the_trio_shim(rt: SingleThreaded) -> None:
    with pytest.raises(TypeError, match=r"anyrt_trio\.compat\.run"):
        rt.block_on(trio.lowlevel.checkpoint())


def test_a_trio_checkpoint_is_recognised_as_trio(rt: SingleThreaded) -> None:
    with pytest.raises(TypeError) as info:
        rt.block_on(trio.lowlevel.checkpoint())
    assert "anyrt_asyncio" not in str(info.value)


def test_the_task_sees_the_foreign_yield_error_and_may_handle_it(rt: SingleThreaded) -> None:
    async def careful() -> str:
        try:
            await asyncio.sleep(0)
        except TypeError:
            return "handled"
        return "not reached"

    assert rt.block_on(careful()) == "handled"


def test_sniffio_answers_anyrt_inside_a_task(rt: SingleThreaded) -> None:
    async def main() -> str:
        return sniffio.current_async_library()

    assert rt.block_on(main()) == "anyrt"
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


# -- threads --------------------------------------------------------------------------------


def test_spawn_local_from_a_foreign_thread_raises(rt: SingleThreaded) -> None:
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            rt.spawn_local(rt.sleep(0))
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert "spawn_local" in str(errors[0])


def test_spawn_from_a_foreign_thread_runs_on_the_loop(rt: SingleThreaded) -> None:
    spawned: list[anyrt.Task[int]] = []

    async def answer() -> int:
        return threading.get_ident()

    thread = threading.Thread(target=lambda: spawned.append(rt.spawn(answer())))
    thread.start()
    thread.join()

    async def main() -> int:
        return await spawned[0]

    assert rt.block_on(main()) == threading.get_ident()


def test_from_future_waits_for_a_foreign_thread(rt: SingleThreaded) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        gate = threading.Event()
        future = pool.submit(lambda: gate.wait(10) and "done")

        async def main() -> object:
            waiter = rt.spawn(anyrt.from_future(rt, future))
            await rt.sleep(0)
            gate.set()
            return await waiter

        assert rt.block_on(main()) == "done"


def test_close_from_inside_a_task_raises(rt: SingleThreaded) -> None:
    async def main() -> None:
        rt.close()

    with pytest.raises(RuntimeError, match="close"):
        rt.block_on(main())
