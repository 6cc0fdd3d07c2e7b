"""`compat.run`: await asyncio-only code from a task of any anyrt runtime.

On the asyncio backends the coroutine is simply awaited: the anyrt task already is an
asyncio task. Elsewhere it runs on a *side loop*: one asyncio event loop per runtime, on
its own thread, started on the first `run` and stopped when the runtime closes. The
anyrt task waits for it through the runtime's own `oneshot()`, so this module needs
nothing but the public `anyrt.Runtime` protocol - plus, to be told about `close()`, the
private ``runtime._add_close_hook(fn)`` that the native runtimes and the trio adapter
offer. A runtime without it gets a daemon thread stopped by `weakref.finalize` when the
runtime is collected (a daemon thread never keeps the interpreter from exiting).

What crosses, in both directions: the result; the exception (the same object); the
`contextvars` context (the asyncio task runs in a copy of the caller's); and
cancellation. Cancelling the anyrt task cancels the asyncio task and waits until it has
finished - its ``finally`` blocks have run - before the cancellation goes on in the
anyrt task. An asyncio task that is cancelled on its own (not because the anyrt task
was) raises `asyncio.CancelledError` in the anyrt task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, Final, Generic, TypeVar, final

from anyrt import Receiver, Runtime, Sender, SingleThreaded

from ._runtime import LoopRuntime
from ._validate import check_coroutine

T = TypeVar("T")

_get_running_loop = asyncio._get_running_loop


async def run(runtime: Runtime, coro: Coroutine[Any, Any, T]) -> T:
    """Run asyncio-only ``coro`` from a task of ``runtime`` and return its result.

    Args:
        runtime: the runtime whose task awaits this call.
        coro: a coroutine that uses asyncio (``asyncio.*``, or asyncio-based libraries).

    Raises:
        RuntimeError: ``runtime`` has no OS and no threads (``single-threaded``), is
            closed, or is an asyncio runtime other than the one running this task.
        BaseException: whatever ``coro`` raised; `asyncio.CancelledError` if the asyncio
            side was cancelled on its own.
    """
    check_coroutine(coro, "compat.run")
    if isinstance(runtime, LoopRuntime):
        if _get_running_loop() is not runtime.loop:
            coro.close()
            raise RuntimeError(
                f"compat.run(runtime, coro) with an asyncio runtime must be awaited from one "
                f"of its tasks; this task does not run on that {runtime.name!r} runtime's loop"
            )
        return await coro  # an asyncio task already: run in place
    if isinstance(runtime, SingleThreaded) or "in-memory-network" in _capabilities(runtime):
        coro.close()
        raise RuntimeError(
            f"compat.run() cannot run asyncio code on the {runtime.name!r} runtime: it has no "
            "OS and no threads, and asyncio needs an event loop on a thread that polls the "
            "OS. Use a backend with threads (work-stealing, thread-per-core, trio) or the "
            "asyncio backend itself."
        )
    try:
        side = _side_loop(runtime)
    except BaseException:
        coro.close()
        raise
    call: _Call[T] = _Call()
    side.submit(call, coro, contextvars.copy_context())
    try:
        await call.wait(runtime)
    except GeneratorExit:
        call.cancel(side.loop)  # the coroutine is being closed: it cannot wait any more
        raise
    except BaseException:
        # Our task was cancelled: cancel the asyncio side and wait until it has finished.
        call.cancel(side.loop)
        await call.wait_out(runtime)
        failure = call.failure()
        if failure is not None:
            raise failure from None  # its cleanup failed: that replaces the cancellation
        raise
    return call.outcome()


def _capabilities(runtime: object) -> tuple[str, ...]:
    return tuple(getattr(runtime, "capabilities", ()))


@final
class _Call(Generic[T]):
    """One coroutine on the side loop, as the anyrt task that awaits it sees it.

    The asyncio task is created on the side loop's thread; the anyrt task parks on a
    oneshot whose sender the task's done-callback fires. Both sides meet under ``lock``.
    """

    __slots__ = ("_cancelled", "_finished", "_lock", "_sender", "_task")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._task: asyncio.Task[T] | None = None
        self._finished = False
        self._cancelled = False
        self._sender: Sender[None] | None = None

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, T],
        context: contextvars.Context,
    ) -> None:
        """Create the asyncio task (on the side loop's thread)."""
        task = loop.create_task(coro, context=context)
        task.add_done_callback(self._done)
        with self._lock:
            self._task = task
            cancel = self._cancelled
        if cancel:
            task.cancel()

    def _done(self, _: object) -> None:
        with self._lock:
            self._finished = True
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.send(None)

    def cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the asyncio task (from the anyrt task's thread)."""
        with self._lock:
            self._cancelled = True
            task = self._task
        if task is not None:
            # A closed side loop has no task left to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    async def wait(self, runtime: Runtime) -> None:
        """Wait (in the anyrt task) until the asyncio task has finished."""
        sender: Sender[None]
        receiver: Receiver[None]
        sender, receiver = runtime.oneshot()
        with self._lock:
            if self._finished:
                return
            self._sender = sender
        await receiver

    async def wait_out(self, runtime: Runtime) -> None:
        """Wait until the asyncio task has finished, through any further cancellation."""
        while True:
            try:
                await self.wait(runtime)
            except GeneratorExit:
                raise
            except BaseException:  # cancelled again: the asyncio side still runs
                continue
            return

    def failure(self) -> BaseException | None:
        """The asyncio task's exception, unless it ended cancelled."""
        task = self._task
        if task is None or task.cancelled():
            return None
        return task.exception()

    def outcome(self) -> T:
        """The asyncio task's result, or raise its exception."""
        task = self._task
        assert task is not None
        if task.cancelled():
            raise asyncio.CancelledError(
                "the asyncio coroutine run by compat.run() was cancelled on the asyncio side"
            )
        return task.result()


@final
class _SideLoop:
    """An asyncio event loop on its own daemon thread, for one runtime's `compat.run` calls."""

    def __init__(self, runtime_name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._stopping = False
        self.thread = threading.Thread(
            target=self._run, name=f"anyrt-asyncio-compat ({runtime_name})", daemon=True
        )

    def start(self) -> None:
        """Start the loop's thread."""
        self.thread.start()

    @property
    def stopping(self) -> bool:
        """True once `stop` has been called."""
        return self._stopping

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(_cancel_the_rest())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def submit(
        self, call: _Call[T], coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> None:
        """Start ``coro`` on the loop, as ``call``.

        Raises:
            RuntimeError: the loop is stopping (its runtime is closing).
        """
        with self._lock:
            if not self._stopping:
                self.loop.call_soon_threadsafe(call.start, self.loop, coro, context)
                return
        coro.close()
        raise RuntimeError("compat.run(): the runtime is closing, and its asyncio loop with it")

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it, and join its thread; idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            if self.thread.ident is None:  # never started
                self.loop.close()
                return
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join()


async def _cancel_the_rest() -> None:
    await asyncio.sleep(0)  # start what was submitted just before the loop stopped
    me = asyncio.current_task()
    while tasks := [task for task in asyncio.all_tasks() if task is not me]:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


_REGISTRY_LOCK: Final = threading.Lock()
# Runtimes that will tell us when they close: held until then.
_hooked: dict[int, tuple[Runtime, _SideLoop]] = {}
# Runtimes that will not: their side loop stops when they are collected.
_weak: weakref.WeakKeyDictionary[Runtime, _SideLoop] = weakref.WeakKeyDictionary()


def _side_loop(runtime: Runtime) -> _SideLoop:
    """Return ``runtime``'s side loop, starting it (and its thread) on first use."""
    with _REGISTRY_LOCK:
        entry = _hooked.get(id(runtime))
        if entry is not None and entry[0] is runtime:
            return entry[1]
        side = _weak.get(runtime) if _weakrefable(runtime) else None
        if side is not None and not side.stopping:
            return side
        side = _SideLoop(runtime.name)
        add_close_hook = getattr(runtime, "_add_close_hook", None)
        if add_close_hook is not None:
            key = id(runtime)

            def stop() -> None:
                with _REGISTRY_LOCK:
                    _hooked.pop(key, None)
                side.stop()

            try:
                add_close_hook(stop)  # raises RuntimeError if the runtime is closed
            except BaseException:
                side.stop()
                raise
            _hooked[key] = (runtime, side)
        elif _weakrefable(runtime):
            weakref.finalize(runtime, side.stop)
            _weak[runtime] = side
        else:
            side.stop()
            raise TypeError(
                f"compat.run() cannot tell when this {type(runtime).__name__} runtime closes: "
                "it offers no _add_close_hook() and cannot be weakly referenced, so the "
                "asyncio loop thread it needs could never be stopped"
            )
        side.start()
        return side


def _weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True
