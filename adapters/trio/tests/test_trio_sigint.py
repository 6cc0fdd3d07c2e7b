"""Ctrl-C during block_on: the main task is cancelled, cleans up, then it propagates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import anyrt
    import trio

    async def main(rt):
        async def background():
            try:
                await trio.sleep_forever()
            finally:
                print("background cleanup", flush=True)

        rt.spawn(background())
        try:
            print("ready", flush=True)
            await rt.sleep(3600)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)  # cleanup that awaits
            print("main cleanup", flush=True)

    rt = anyrt.runtime("trio")
    try:
        rt.block_on(main(rt))
        print("not reached", flush=True)
    finally:
        print("block_on is over", flush=True)
        rt.close()
    """
)


@pytest.mark.skipif(os.name != "posix", reason="sends a POSIX signal")
def test_sigint_cancels_main_runs_cleanup_and_raises_keyboard_interrupt() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM],
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
    # The main task's cleanup ran inside block_on, before the interrupt propagated; the
    # other task's ran in close().
    assert out.splitlines() == ["main cleanup", "block_on is over", "background cleanup"]
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert process.returncode == -signal.SIGINT
