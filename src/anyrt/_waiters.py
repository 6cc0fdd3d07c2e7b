"""FIFO queues of parked waiters, the building block of every generic primitive.

A waiter is anything with ``send(value) -> bool``: the `Sender` of a oneshot whose
`Receiver` a task awaits, or a `ThreadWaiter` for a plain thread blocked in
``send_blocking``/``receive_blocking``. ``send`` returning False means the waiter gave
up (its task was cancelled, its thread timed out); the queue then tries the next one,
so a hand-off is never lost.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

from ._native import running_native_runtime

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Waiter(Protocol[T_contra]):
    """Something parked that a value can be handed to."""

    def send(self, value: T_contra) -> bool:
        """Hand over ``value``; False if the waiter is gone."""
        ...

    def fail(self, exc: BaseException) -> bool:
        """Wake the waiter with an exception; False if it is gone."""
        ...


class ThreadWaiter(Generic[T]):
    """A waiter for a plain (non-runtime) thread; blocks in `wait`."""

    __slots__ = ("_done", "_exc", "_gone", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._gone = False
        self._value: T | None = None
        self._exc: BaseException | None = None

    def send(self, value: T) -> bool:
        with self._lock:
            if self._gone or self._done.is_set():
                return False
            self._value = value
            self._done.set()
        return True

    def fail(self, exc: BaseException) -> bool:
        with self._lock:
            if self._gone or self._done.is_set():
                return False
            self._exc = exc
            self._done.set()
        return True

    def wait(self, timeout: float | None) -> T:
        """Block until a value arrives; raise `TimeoutError` after ``timeout`` seconds."""
        if not self._done.wait(timeout):
            with self._lock:
                if not self._done.is_set():
                    self._gone = True
                    raise TimeoutError(f"no hand-off within {timeout} s")
        if self._exc is not None:
            raise self._exc
        return self._value  # type: ignore[return-value]


def hand_off(waiters: deque[Any], value: object) -> bool:
    """Give ``value`` to the first waiter still waiting; False if none is."""
    while waiters:
        if waiters.popleft().send(value):
            return True
    return False


def discard(waiters: deque[Any], waiter: object) -> None:
    """Remove ``waiter`` (a cancelled or timed-out wait) from ``waiters`` if still there.

    So that a wait that gives up leaves nothing behind: a loop of timed-out waits on an
    object that is never set must not grow its queue. Compares by identity first, so a
    ``(waiter, item)`` entry never calls the item's ``__eq__``.
    """
    with suppress(ValueError):  # already taken by a hand-off (which found it gone)
        waiters.remove(waiter)


def fail_all(waiters: deque[Any], exc_factory: type[BaseException], message: str) -> None:
    """Wake every waiter with a fresh ``exc_factory(message)``."""
    while waiters:
        waiters.popleft().fail(exc_factory(message))


def check_plain_thread(method: str, instead: str) -> None:
    """Refuse a blocking call from a thread that runs an event loop (it would stall it).

    Native runtimes mark their threads; an asyncio loop (the asyncio and uvloop
    backends, or any asyncio application) and a trio run are recognised through their
    own libraries, if they are imported at all.
    """
    runtime = running_native_runtime()
    loop = f"the {runtime.name!r} anyrt runtime" if runtime is not None else _foreign_loop()
    if loop is not None:
        raise RuntimeError(
            f"{method}() blocks the thread, and this thread runs {loop}; from a task "
            f"use {instead} instead"
        )


def _foreign_loop() -> str | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio.events._get_running_loop() is not None:
        return "an asyncio event loop"
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return "a trio run"
    return None
