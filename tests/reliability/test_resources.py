"""Resources: a million tasks in batches leave memory flat, on every native backend.

The million runs untraced (tracemalloc would make it five times slower), watched
through the process's resident memory; then a traced stretch of 30,000 more tasks
(which may grow high-water marks, such as a dict's table sized for a batch) and one of
60,000, which must leave almost nothing more allocated. A leak of one small
object per task shows up as megabytes in either measurement.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import anyrt

NATIVE = {"single-threaded": {}, "work-stealing": {}, "thread-per-core": {}}
BATCH = 10_000
TASKS = 1_000_000


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="Linux")
@pytest.mark.parametrize("backend", sorted(NATIVE))
def test_a_million_tasks_in_batches_leave_memory_flat(
    backend: str, record_property: pytest.RecordProperty
) -> None:
    with anyrt.runtime(backend, **NATIVE[backend]) as rt:

        async def job(index: int) -> int:
            return index

        async def batches(count: int) -> int:
            total = 0
            for _ in range(count):
                tasks = [rt.spawn(job(index)) for index in range(BATCH)]
                for task in tasks:
                    total += await task
            return total

        expected = sum(range(BATCH))
        assert rt.block_on(batches(10)) == 10 * expected  # warm-up: pools, free lists
        gc.collect()
        before = resident_bytes()
        assert rt.block_on(batches(TASKS // BATCH)) == TASKS // BATCH * expected
        gc.collect()
        grown = resident_bytes() - before

        tracemalloc.start()
        try:
            assert rt.block_on(batches(3)) == 3 * expected
            gc.collect()
            first, _ = tracemalloc.get_traced_memory()
            assert rt.block_on(batches(6)) == 6 * expected
            gc.collect()
            second, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    record_property("rss growth bytes", grown)
    record_property("traced growth bytes", second - first)
    assert grown < 8 * 1024 * 1024, f"resident memory grew by {grown:,} bytes over 1M tasks"
    # Under 10 bytes a task: high-water marks move a little between runs; a leak of
    # even one object per task would be well over.
    assert second - first < 600_000, f"{second - first:,} more bytes after 60,000 tasks"
