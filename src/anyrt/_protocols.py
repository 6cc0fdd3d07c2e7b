"""The contract: the protocols that runtimes implement and libraries type against.

Every protocol is `runtime_checkable`, so ``isinstance(obj, anyrt.Executor)`` checks
that the methods exist (not their signatures). Library authors should accept the
narrowest protocol they need: a rate limiter takes a `Timer`, a client takes a
`Runtime`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    runtime_checkable,
)

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = [
    "BlockingExecutor",
    "ByteStream",
    "CancelScope",
    "Executor",
    "FileDescriptorLike",
    "FullExecutor",
    "HasFileno",
    "Listener",
    "LocalExecutor",
    "Reactor",
    "Receiver",
    "Runtime",
    "Sender",
    "Task",
    "TaskStatus",
    "Timer",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
P = ParamSpec("P")


@runtime_checkable
class HasFileno(Protocol):
    """Anything with a ``fileno()``: a socket, a pipe, a file."""

    def fileno(self) -> int:
        """Return the OS file descriptor."""
        ...


FileDescriptorLike = int | HasFileno


@runtime_checkable
class Task(Protocol[T_co]):
    """The join handle of a spawned coroutine.

    Awaiting it returns the coroutine's result or re-raises its exception; awaiting
    it again returns the same result. A cancelled task raises `anyrt.Cancelled` when
    awaited, on every backend. `cancel` may be called from any thread.

    A handle that is dropped without being awaited or detached hands its exception,
    if any, to the runtime's error handler: no failure is silently lost.
    """

    @property
    def name(self) -> str:
        """The task's name (``spawn(..., name=)``, else the coroutine's qualified name)."""
        ...

    def __await__(self) -> Generator[Any, Any, T_co]:
        """Wait for the task; return its result or re-raise its exception."""
        ...

    def cancel(self) -> bool:
        """Cancel the task's root cancel scope (see `CancelScope`); safe from any thread.

        Level-triggered: from then on every cancel point the task reaches raises the
        runtime's ``cancelled_exc``, except inside a shielded scope, until the task ends.

        Returns:
            False if the task had already finished, True otherwise.
        """
        ...

    def cancelled(self) -> bool:
        """Return True if the task has finished by being cancelled (without awaiting it)."""
        ...

    def detach(self) -> None:
        """Stop caring about the result: an exception goes to the error handler."""
        ...

    def done(self) -> bool:
        """Return True once the task has finished (returned, raised or was cancelled)."""
        ...


@runtime_checkable
class Sender(Protocol[T_contra]):
    """The sending half of a oneshot: delivers one value (or exception) to a `Receiver`.

    `send` and `fail` are safe to call from any thread and from any task, never block,
    and may be called once between them; a second call raises `RuntimeError`.
    """

    def send(self, value: T_contra) -> bool:
        """Deliver ``value`` and wake the receiving task.

        Returns:
            True if the receiver will get the value (even if its task is cancelled at
            the same moment: the cancellation then lands at its next suspension point);
            False if the receiver is gone (its awaiting task was cancelled or it was
            closed). A receiver that nobody awaits is not gone: a task that may be
            cancelled before it awaits should `close` its receiver in a ``finally``.
        """
        ...

    def fail(self, exc: BaseException) -> bool:
        """Deliver an exception that ``await receiver`` raises; returns as `send`."""
        ...


@runtime_checkable
class Receiver(Protocol[T_co]):
    """The receiving half of a oneshot. Await it (from one task) to get the value.

    If the awaiting task is cancelled before a value arrives, the receiver is closed
    and a later `Sender.send` returns False.
    """

    def __await__(self) -> Generator[Any, Any, T_co]:
        """Wait for the value; raise what `Sender.fail` delivered."""
        ...

    def close(self) -> None:
        """Give up on the value: a later `Sender.send` returns False."""
        ...


@runtime_checkable
class CancelScope(Protocol):
    """A region of code that can be cancelled as a whole, and stays cancelled.

    A synchronous context manager, entered inside a task of the runtime that made it
    (``with rt.move_on_after(1) as scope:``) and exited by the same task. Make one with
    `Executor.cancel_scope`, `Timer.move_on_after` or `Timer.fail_after`.

    Cancellation is *level-triggered*: once the scope is cancelled (`cancel`, or its
    `deadline` passes), every cancel point inside it - every operation that can
    suspend, ``sleep(0)`` included - raises the runtime's ``cancelled_exc``, again at
    each one, until that exception leaves the scope. A shielded scope inside is not
    affected unless it is cancelled itself. On exit the scope swallows the
    cancellation it caused (`cancelled_caught`); a cancellation of an enclosing scope
    (or of the task) always passes through, so it is never lost nor turned into
    another exception.

    `cancel` and the setters may be called from any thread.
    """

    @property
    def deadline(self) -> float:
        """When the scope cancels itself, on the runtime's clock; ``math.inf`` for never."""
        ...

    @deadline.setter
    def deadline(self, value: float) -> None:
        """Move the deadline (earlier or later); a past deadline cancels at once."""
        ...

    @property
    def shield(self) -> bool:
        """While True, cancellations of enclosing scopes do not reach inside."""
        ...

    @shield.setter
    def shield(self, value: bool) -> None:
        """Raise or lower the shield."""
        ...

    def cancel(self) -> None:
        """Cancel the scope; idempotent, safe from any thread, also before it is entered."""
        ...

    @property
    def cancel_called(self) -> bool:
        """True once `cancel` was called or the deadline passed."""
        ...

    @property
    def cancelled_caught(self) -> bool:
        """True if this scope's exit swallowed the cancellation it caused."""
        ...

    def __enter__(self) -> Self:
        """Enter the scope in the calling task.

        Raises:
            RuntimeError: not inside a task of the scope's runtime, or entered twice.
        """
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Leave the scope; swallow the cancellation it caused.

        Raises:
            TimeoutError: a ``fail_after``/``fail_at`` scope's deadline passed.
            RuntimeError: scopes were exited out of order.
        """
        ...


@runtime_checkable
class TaskStatus(Protocol[T_contra]):
    """Passed as ``task_status=`` to a function started with `anyrt.TaskGroup.start`."""

    def started(self, value: T_contra = ...) -> None:
        """Tell the starter that the task is ready; ``start`` returns ``value``.

        Raises:
            RuntimeError: called a second time.
        """
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs coroutines.

    `spawn` may be called from any thread (on backends that have threads) and never
    blocks waiting for the runtime. `block_on` is for plain threads only: calling it
    from inside a task of the same runtime raises `RuntimeError`.
    """

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]:
        """Schedule ``coro`` as a new task and return its handle.

        Raises:
            TypeError: ``coro`` is not a coroutine object.
            RuntimeError: the executor is closed.
        """
        ...

    def block_on(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on this executor, blocking the calling thread.

        Raises:
            RuntimeError: called from inside a task, or the executor is closed.
        """
        ...

    def oneshot(self) -> tuple[Sender[T], Receiver[T]]:
        """Return a connected (sender, receiver) pair: the one low-level wake primitive."""
        ...

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> CancelScope:
        """Return a new, not yet entered `CancelScope` of this runtime.

        Raises:
            ValueError: ``deadline`` is NaN.
        """
        ...


@runtime_checkable
class LocalExecutor(Executor, Protocol):
    """An executor that can pin a task to the calling thread."""

    def spawn_local(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]:
        """Spawn ``coro`` so that it only ever runs on the calling thread.

        Raises:
            RuntimeError: the calling thread does not run this executor's tasks.
        """
        ...


@runtime_checkable
class BlockingExecutor(Protocol):
    """Runs blocking functions without blocking the tasks."""

    async def spawn_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` off the task threads and return its result."""
        ...


@runtime_checkable
class FullExecutor(Executor, BlockingExecutor, Protocol):
    """An `Executor` that can also run blocking functions."""


@runtime_checkable
class Timer(Protocol):
    """A clock and the ways to wait on it.

    Durations are seconds; a negative or NaN duration raises `ValueError`. Times are
    on this runtime's own clock (see `now`), which need not be the wall clock and may
    be virtual.
    """

    def now(self) -> float:
        """Return the current time in seconds on this runtime's clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds``; ``sleep(0)`` yields to other ready tasks."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Suspend until `now()` reaches ``deadline`` (returns soon if it is past)."""
        ...

    def interval(self, period: float) -> AsyncIterator[float]:
        """Tick every ``period`` seconds, yielding each tick's deadline.

        Ticks keep to a fixed schedule (``start + n * period``); a consumer that falls
        more than a period behind skips the missed ticks rather than bursting.
        """
        ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``async with rt.timeout(s):`` means exactly ``with rt.fail_after(s):``."""
        ...

    def move_on_after(self, seconds: float, *, shield: bool = False) -> CancelScope:
        """A `CancelScope` whose deadline is ``seconds`` from now; exits quietly on expiry."""
        ...

    def move_on_at(self, deadline: float, *, shield: bool = False) -> CancelScope:
        """A `CancelScope` with this ``deadline``; exits quietly on expiry."""
        ...

    def fail_after(self, seconds: float, *, shield: bool = False) -> CancelScope:
        """As `move_on_after`, but its exit raises `TimeoutError` if the deadline passed.

        `TimeoutError` is raised only for this scope's own expiry: an enclosing
        cancellation passes through unchanged.
        """
        ...

    def fail_at(self, deadline: float, *, shield: bool = False) -> CancelScope:
        """As `move_on_at`, but its exit raises `TimeoutError` if the deadline passed."""
        ...

    def current_deadline(self) -> float:
        """The nearest deadline of the calling task's enclosing scopes, up to a shield.

        ``math.inf`` if there is none, ``-math.inf`` if one of them is already
        cancelled. Must be called from a task of this runtime.
        """
        ...


@runtime_checkable
class ByteStream(Protocol):
    """A reliable, ordered, bidirectional byte stream (a TCP connection, say)."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes as soon as some are available; ``b""`` at EOF.

        Raises:
            ClosedResourceError: this stream was closed (also wakes a waiting task).
            ConnectionResetError: the peer reset the connection.
        """
        ...

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer's buffer is full."""
        ...

    async def send_eof(self) -> None:
        """Close the sending direction; the peer's `receive` then returns ``b""``."""
        ...

    async def aclose(self) -> None:
        """Close the stream; idempotent."""
        ...

    async def __aenter__(self) -> Self:
        """Return the stream itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the stream."""
        ...


@runtime_checkable
class Listener(Protocol):
    """A bound, listening endpoint that accepts `ByteStream` connections."""

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound (port 0 resolved)."""
        ...

    async def accept(self) -> ByteStream:
        """Wait for and return the next connection."""
        ...

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until cancelled or closed, spawning ``handler(stream)`` per connection.

        Each stream is closed when its handler returns. A handler's exception goes to
        the runtime's error handler and does not stop the listener.
        """
        ...

    async def aclose(self) -> None:
        """Stop listening; idempotent. A task waiting in `accept` gets `ClosedResourceError`."""
        ...

    async def __aenter__(self) -> Self:
        """Return the listener itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the listener."""
        ...


@runtime_checkable
class DatagramSocket(Protocol):
    """A bound datagram (UDP) socket.

    ``runtime.open_udp(host, port)`` makes one on the backends that have UDP (the OS
    backends and the in-memory network).
    """

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 resolved)."""
        ...

    async def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram to ``address``."""
        ...

    async def receive_from(self, max_bytes: int = 65536) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return it and its sender's address."""
        ...

    async def aclose(self) -> None:
        """Close the socket; idempotent."""
        ...

    async def __aenter__(self) -> Self:
        """Return the socket itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the socket."""
        ...


@runtime_checkable
class Reactor(Protocol):
    """Waits for I/O readiness and opens network connections."""

    async def wait_readable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is readable.

        Raises:
            RuntimeError: the backend has no OS reactor (``single-threaded``).
        """
        ...

    async def wait_writable(self, sock: FileDescriptorLike) -> None:
        """Suspend until ``sock`` is writable; raises as `wait_readable`."""
        ...

    async def connect_tcp(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ByteStream:
        """Open a TCP connection; with ``ssl``, a TLS one (see `anyrt.TLSStream`).

        ``server_hostname`` is the name the certificate is checked against; it
        defaults to ``host``.

        Raises:
            ConnectionRefusedError: nothing listens there.
            OSError: any other failure, as the OS reports it.
            ssl.SSLError: the TLS handshake failed.
        """
        ...

    async def listen_tcp(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None
    ) -> Listener:
        """Listen for TCP connections; port 0 picks a free port (see `Listener.address`).

        With ``ssl``, every accepted connection completes a TLS handshake first.
        """
        ...

    async def open_udp(self, local_host: str, local_port: int) -> DatagramSocket:
        """Bind a UDP socket to ``local_host:local_port`` (port 0 picks a free one)."""
        ...


@runtime_checkable
class Runtime(FullExecutor, LocalExecutor, Timer, Reactor, Protocol):
    """Everything a library needs from an async runtime, bundled.

    A runtime is also a (synchronous) context manager that calls `close` on exit.
    """

    # Read-only properties, so that a class attribute (``name: ClassVar[str]``) and an
    # instance attribute both satisfy them.
    @property
    def name(self) -> str:
        """The backend's registered name, e.g. ``"work-stealing"``."""
        ...

    @property
    def cancelled_exc(self) -> type[BaseException]:
        """What a cancelled coroutine sees thrown in (`anyrt.Cancelled` on native backends)."""
        ...

    def close(self) -> None:
        """Cancel every task, let their ``finally`` blocks run, release every resource.

        Idempotent. Any other use afterwards raises `RuntimeError`.
        """
        ...

    def __enter__(self) -> Self:
        """Return the runtime itself."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the runtime."""
        ...
