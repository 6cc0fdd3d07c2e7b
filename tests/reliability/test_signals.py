"""Ctrl-C: SIGINT cancels the main task, cleanup runs, then KeyboardInterrupt is raised.

Each test runs a real program in a subprocess and sends it a real signal once the
program says it is inside its main task, on every backend with an OS reactor (the
native threaded runtimes and the asyncio, uvloop and trio adapters).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from anyrt.testing import backend_params

PROGRAM = textwrap.dedent(
    """
    import sys
    import anyrt

    async def main(rt):
        async def background():
            try:
                await rt.sleep(3600)
            finally:
                print("background cleanup", flush=True)

        rt.spawn(background())
        try:
            print("ready", flush=True)
            await rt.sleep(3600)
        finally:
            print("main cleanup", flush=True)

    rt = anyrt.runtime(sys.argv[1])
    try:
        rt.block_on(main(rt))
        print("not reached", flush=True)
    finally:
        print("block_on is over", flush=True)
        rt.close()
    """
)


@pytest.mark.skipif(os.name != "posix", reason="sends a POSIX signal")
@pytest.mark.parametrize("backend", backend_params("os-reactor"))
def test_sigint_cancels_main_runs_cleanup_and_raises_keyboard_interrupt(backend: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()  # reap it and close its pipes, even after a timeout
    # The main task's cleanup ran inside block_on, before the interrupt propagated;
    # the other task's ran in close().
    assert out.splitlines() == ["main cleanup", "block_on is over", "background cleanup"]
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert process.returncode == -signal.SIGINT  # Python re-raises SIGINT on the way out


RECEIVER = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import anyrt

    async def main(rt):
        got = []
        async with rt.signals(signal.SIGTERM, signal.SIGUSR1) as received:
            print("ready", flush=True)
            async for signum in received:
                got.append(signum.name)
                print(signum.name, flush=True)
                if signum == signal.SIGTERM:
                    break
        return got

    print(anyrt.run(main, backend=sys.argv[1]), flush=True)
    # The previous handler is back: SIGUSR1's default action ends the process.
    print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")
@pytest.mark.parametrize("backend", backend_params("os-reactor"))
def test_signals_arrive_as_an_async_iterator(backend: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        # One at a time: signals sent together may be handled by different threads, in
        # any order, and the OS merges repeats of one signal.
        for signum in (signal.SIGUSR1, signal.SIGUSR1):
            process.send_signal(signum)
            assert process.stdout.readline() == "SIGUSR1\n"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()  # reap it and close its pipes, even after a timeout
    assert process.returncode == 0, err
    assert out.splitlines() == ["SIGTERM", "['SIGUSR1', 'SIGUSR1', 'SIGTERM']", "True"]


@pytest.mark.parametrize("backend", backend_params("os-reactor"))
def test_signals_needs_block_on_on_the_main_thread(backend: str) -> None:
    import threading

    import anyrt

    with anyrt.runtime(backend) as rt:

        async def main() -> None:
            with pytest.raises(RuntimeError, match="main thread"):
                async with rt.signals(signal.SIGTERM):  # type: ignore[attr-defined]
                    pass
            with pytest.raises(ValueError, match="cannot be caught"):
                rt.signals(signal.SIGKILL)  # type: ignore[attr-defined]
            with pytest.raises(TypeError, match="signal numbers"):
                rt.signals("SIGTERM")  # type: ignore[attr-defined]

        outcome: list[object] = []

        def on_a_plain_thread() -> None:
            try:
                outcome.append(rt.block_on(main()))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=on_a_plain_thread)
        thread.start()
        thread.join(timeout=30)
        assert outcome == [None]


ONE_BLOCK = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import anyrt

    def say(line):  # one write: these two lines may come from two threads at once
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    async def main(rt):
        async with rt.signals(signal.SIGUSR1) as received:
            try:
                async with rt.signals(signal.SIGUSR2):
                    pass
            except RuntimeError as exc:
                print("nested:", exc, flush=True)
            os.kill(os.getpid(), signal.SIGUSR1)  # before anyone iterates: queued
            print((await anext(received)).name, flush=True)
        print("restored:", signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, flush=True)

        async def left_inside(entered):
            async with rt.signals(signal.SIGUSR2) as received:
                entered.set()
                try:
                    async for _ in received:
                        pass
                except anyrt.ClosedResourceError:
                    say("woken: ClosedResourceError")

        entered = anyrt.Event(rt)
        rt.spawn(left_inside(entered))
        await entered.wait()
        print("installed:", signal.getsignal(signal.SIGUSR2) != signal.SIG_DFL, flush=True)

    with anyrt.runtime(sys.argv[1]) as rt:
        rt.block_on(main(rt))
        # block_on put the handler back although a task is still inside its block.
        say(f"after block_on: {signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL}")
    """
)


@pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")
@pytest.mark.parametrize("backend", backend_params("os-reactor"))
def test_one_signals_block_at_a_time_and_block_on_restores_the_handlers(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ONE_BLOCK, backend],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "nested: another signals() block of this runtime is active; receive every signal "
        "you need in one: runtime.signals(SIGTERM, SIGHUP, ...)",
        "SIGUSR1",
        "restored: True",
        "installed: True",
    ]
    # The task still inside its block is woken with ClosedResourceError when block_on
    # returns; on a threaded runtime close() may cancel it before it gets to run.
    assert "after block_on: True" in lines[4:]
    assert set(lines[4:]) <= {"after block_on: True", "woken: ClosedResourceError"}
