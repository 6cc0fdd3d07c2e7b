"""The private close hook that compat shims use to stop their side threads."""

from __future__ import annotations

import pytest

import anyrt
from anyrt._native import NativeRuntime


@pytest.mark.parametrize("backend", ["single-threaded", "work-stealing", "thread-per-core"])
def test_close_runs_hooks_once_after_tasks_ended(backend: str) -> None:
    rt = anyrt.runtime(backend)
    assert isinstance(rt, NativeRuntime)
    seen: list[str] = []

    started = anyrt.Event(rt)

    async def forever() -> None:
        try:
            started.set()
            await rt.sleep(3600)
        finally:
            seen.append("task finally")

    task = rt.spawn(forever())
    rt.block_on(started.wait())
    rt._add_close_hook(lambda: seen.append(f"hook sees task done={task.done()}"))
    rt.close()
    rt.close()
    assert seen == ["task finally", "hook sees task done=True"]
    with pytest.raises(RuntimeError, match="closed"):
        rt._add_close_hook(lambda: None)


def test_a_failing_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = anyrt.runtime("work-stealing", workers=1)
    assert isinstance(rt, NativeRuntime)
    seen: list[int] = []

    def boom() -> None:
        raise ValueError("hook failed")

    rt._add_close_hook(lambda: seen.append(1))
    rt._add_close_hook(boom)
    rt.close()
    assert seen == [1]
    assert "hook failed" in caplog.text
