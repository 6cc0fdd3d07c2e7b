"""Ctrl-C: SIGINT cancels the main task, cleanup runs, then KeyboardInterrupt is raised.

Each test runs a real program in a subprocess and sends it a real SIGINT once the
program says it is inside its main task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

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
@pytest.mark.parametrize("backend", ["work-stealing", "thread-per-core"])
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
    # The main task's cleanup ran inside block_on, before the interrupt propagated;
    # the other task's ran in close().
    assert out.splitlines() == ["main cleanup", "block_on is over", "background cleanup"]
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert process.returncode == -signal.SIGINT  # Python re-raises SIGINT on the way out
