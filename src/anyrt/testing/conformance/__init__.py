"""The anyrt conformance suite: the behaviour every backend must have.

Run it against a backend with::

    pytest --pyargs anyrt.testing.conformance --anyrt-backend NAME

The tests use only the public protocols, through the plugin's ``runtime`` fixture, so
they run unchanged on threaded backends and on adapters whose ``cancelled_exc`` is not
`anyrt.Cancelled`. Nothing assumes virtual time unless marked
``anyrt_requires("virtual-time")``; real-time sleeps are at most 50 ms. One behaviour
area per module.

This module holds the few helpers the tests share.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

import anyrt

T = TypeVar("T")

#: Long enough never to end during a test; only ever cut short by a cancellation.
FOREVER = 3600.0


class Arrivals:
    """Tells when tasks have reached a suspension point, and in which order.

    ``await arrivals.enter(key, awaitable)`` runs the awaitable's first step (up to the
    point where it registers itself and suspends) under a thread lock and records
    ``key``, so `order` is exactly the order in which the waiters registered, even on
    threaded backends. `all_in` is set once ``expected`` waiters have entered.

    Args:
        runtime: the runtime the waiting tasks run on.
        expected: how many waiters `all_in` waits for.
    """

    def __init__(self, runtime: anyrt.Executor, expected: int) -> None:
        self.order: list[object] = []
        self.all_in = anyrt.Event(runtime)
        self._expected = expected
        self._lock = threading.Lock()

    def enter(self, key: object, awaitable: Awaitable[T]) -> Awaitable[T]:
        """Wrap ``awaitable`` so that its first step is recorded under ``key``."""
        return _FirstStep(self, key, awaitable)

    def _record(self, key: object) -> None:
        self.order.append(key)
        if len(self.order) == self._expected:
            self.all_in.set()


class _FirstStep(Awaitable[T]):
    def __init__(self, arrivals: Arrivals, key: object, awaitable: Awaitable[T]) -> None:
        self._arrivals = arrivals
        self._key = key
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, T]:
        # `yield from` spelled out as PEP 380 does (it cannot resume an iterator whose
        # first step has already run): next() when None is sent, send() otherwise.
        steps: Any = self._awaitable.__await__()
        arrivals = self._arrivals
        with arrivals._lock:
            try:
                yielded = next(steps)
            except StopIteration as stop:
                arrivals._record(self._key)
                return stop.value  # type: ignore[no-any-return]
            arrivals._record(self._key)
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                close = getattr(steps, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as exc:
                throw = getattr(steps, "throw", None)
                if throw is None:
                    raise
                try:
                    yielded = throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = next(steps) if sent is None else steps.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


async def wait_done(timer: anyrt.Timer, task: anyrt.Task[Any]) -> None:
    """Poll until ``task`` is done without awaiting (and so observing) it."""
    while not task.done():
        await timer.sleep(0.001)


async def receive_exactly(stream: anyrt.ByteStream, size: int) -> bytes:
    """Receive exactly ``size`` bytes from ``stream``.

    Raises:
        EOFError: the stream ended first.
    """
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


async def receive_all(stream: anyrt.ByteStream) -> bytes:
    """Receive until EOF."""
    data = bytearray()
    while chunk := await stream.receive():
        data += chunk
    return bytes(data)
