"""The OS reactor: readiness waits on sockets and fds, over `selectors`.

Split-phase, like trio's IO managers, so that any worker loop can drive it:
`poll(timeout)` blocks in the selector and wakes the tasks whose fds became ready;
`wakeup()` interrupts a `poll` from any thread; `notify_closing(fd)` wakes the tasks
waiting on an fd that is about to be closed; `close()` releases everything.

Some facts about the OS that this code depends on:

* On Linux we drive epoll directly; elsewhere `selectors.DefaultSelector` (kqueue on
  BSD and macOS), level-triggered: an fd that stays readable is reported by every
  poll until someone reads. A wait on a raw fd drops its interest as soon as it
  fires (one wake per wait, like a oneshot); a task that did not consume the
  readiness simply finds it again on its next wait.
* Changing interest is a system call, twice per blocking read. For anyrt's own
  sockets the interest therefore stays registered after a wait fires, edge-triggered
  on epoll: an edge that arrives while nobody waits is remembered (``pending``) for
  the next wait, and a hang-up or error (``EPOLLRDHUP``/``HUP``/``ERR``, which bring
  no further edge however long the fd stays ready) makes every later wait fire at
  once (``final``). So a stream may wait *before* its recv when its last recv drained
  the buffer, saving a failing system call per read. This is safe because those
  sockets always call `notify_closing` before closing; one dropped without
  ``aclose()`` (its fd then closed by the garbage collector) is caught by its owner
  token: a wait from any other socket object on the same fd number resets the
  interest first.
* epoll and kqueue let one thread change interest (``epoll_ctl``/``kevent``) while
  another blocks in the wait, and the change applies to that wait. Our per-fd table
  of waiters and kernel interest is guarded by ``_lock``, and every call that changes
  interest is made under the same lock, so table and kernel never disagree. (With
  `selectors`, its fd-to-key mapping is a dict, whose single operations are atomic,
  also on free-threaded CPython.)
* Closing an fd removes it from an epoll set silently: a task blocked on it would
  sleep forever, and the fd number may be reused by the next ``socket()``. Hence
  `notify_closing`, which must be called *before* the fd is closed.
* The wake-up channel is a non-blocking socket pair. A byte written to it makes a
  blocked ``select`` return; many wake-ups before one ``select`` coalesce, since the
  loop drains the socket entirely. A full socket buffer means a wake-up is already
  pending, so `BlockingIOError` on write is ignored.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from ._exceptions import ClosedResourceError
from ._protocols import FileDescriptorLike

if TYPE_CHECKING:
    from ._task import NativeTask, Worker

READ: Final = selectors.EVENT_READ
WRITE: Final = selectors.EVENT_WRITE
#: Reported with READ/WRITE by an edge-triggered poller for a hang-up or an error: the
#: fd stays ready from now on, and no further edge will say so.
FINAL: Final = 4


class BusyResourceError(RuntimeError):
    """Two tasks waited for the same readiness of one fd at once."""


def fileno(obj: FileDescriptorLike) -> int:
    """Return the fd of a socket, file or int; raise `TypeError`/`ValueError` otherwise."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        fd = obj
    else:
        get = getattr(obj, "fileno", None)
        if get is None:
            raise TypeError(f"expected a socket, a file or an fd, not {type(obj).__name__}")
        fd = get()
    if fd < 0:
        raise ClosedResourceError("the socket or file is closed (fileno() is -1)")
    return int(fd)


class IOWait:
    """The trap of one ``wait_readable``/``wait_writable``."""

    __slots__ = ("error", "events", "fd", "keep", "reactor", "ready", "registered", "task")

    def __init__(self, reactor: OSReactor, fd: int, events: int, *, keep: int = 0) -> None:
        self.reactor = reactor
        self.fd = fd
        self.events = events
        # Non-zero: the owner token of an anyrt socket, whose interest the kernel keeps
        # after firing (see OSReactor).
        self.keep = keep
        self.ready = False
        self.registered = False
        self.error: BaseException | None = None
        self.task: NativeTask[Any] | None = None

    def __await__(self) -> Generator[Any, Any, None]:
        try:
            while not self.ready and self.error is None:
                yield self
        except BaseException:
            if self.registered or self.ready:
                self.reactor._forget(self)
            raise
        if self.error is not None:
            raise self.error

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if self.task is not None:
            return  # a spurious wake; still registered
        self.task = task
        owner = self.reactor.runtime
        if owner is not None and task._sink is not owner:
            from ._native import foreign_runtime_error  # noqa: PLC0415 - _native imports us

            self.error = foreign_runtime_error("a socket wait", owner, task)
            task.wake()
            return
        try:
            self.reactor._register(self)
        except BaseException as exc:
            self.error = exc
            task.wake()

    def fire(self, error: BaseException | None = None) -> None:
        self.error = error
        self.ready = True
        task = self.task
        if task is not None:
            task.wake()


class _SelectorsPoller:
    """The portable poller: `selectors.DefaultSelector` (kqueue, poll, ...)."""

    #: Level-triggered only.
    edge_triggered = False

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.name = type(self._selector).__name__.removesuffix("Selector").lower()

    def register(self, fd: int, mask: int, edge: bool = False) -> None:
        self._selector.register(fd, mask)

    def modify(self, fd: int, mask: int, edge: bool = False) -> None:
        self._selector.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(key.fd, mask) for key, mask in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


class _EpollPoller:
    """epoll, driven directly.

    `selectors` adds a key object and a mapping lookup per call, which cost more than
    the system call itself on the hot socket path.
    """

    name = "epoll"
    edge_triggered = True

    def __init__(self) -> None:
        self._epoll = select.epoll()

    @staticmethod
    def _to_epoll(mask: int, edge: bool) -> int:
        bits = (select.EPOLLIN if mask & READ else 0) | (select.EPOLLOUT if mask & WRITE else 0)
        if edge:
            # EPOLLRDHUP tells a peer's FIN apart from data that came with it.
            return bits | select.EPOLLET | (select.EPOLLRDHUP if mask & READ else 0)
        return bits

    def register(self, fd: int, mask: int, edge: bool = False) -> None:
        self._epoll.register(fd, self._to_epoll(mask, edge))

    def modify(self, fd: int, mask: int, edge: bool = False) -> None:
        self._epoll.modify(fd, self._to_epoll(mask, edge))

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # An error or hang-up wakes both directions: the next recv/send reports it.
        readable = _EPOLL_READABLE
        writable = _EPOLL_WRITABLE
        final = _EPOLL_FINAL
        return [
            (
                fd,
                (READ if bits & readable else 0)
                | (WRITE if bits & writable else 0)
                | (FINAL if bits & final else 0),
            )
            for fd, bits in self._epoll.poll(-1 if timeout is None else timeout)
        ]

    def close(self) -> None:
        self._epoll.close()


if hasattr(select, "epoll"):
    _EPOLL_READABLE: Final = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
    _EPOLL_WRITABLE: Final = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
    _EPOLL_FINAL: Final = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
    _Poller: type[_EpollPoller] | type[_SelectorsPoller] = _EpollPoller
else:  # pragma: no cover - BSD, macOS, Windows
    _Poller = _SelectorsPoller


class _FdRecord:
    """One fd's waiting tasks (reader, writer) and the interest the kernel has in it."""

    __slots__ = ("final", "interest", "owner", "pending", "waits")

    def __init__(self) -> None:
        self.waits: list[IOWait | None] = [None, None]
        self.interest = 0
        self.owner = 0  # the token of the socket whose interest is kept, or 0
        # Edges reported while nobody waited (edge-triggered, kept interest only).
        self.pending = 0
        # A hang-up or error was reported (edge-triggered, kept interest only): every
        # later wait is satisfied at once, as a level-triggered poll would report it.
        self.final = False

    def idle(self) -> bool:
        return self.interest == 0 and self.waits[0] is None and self.waits[1] is None


class OSReactor:
    """Readiness notifications for fds, driven by one thread at a time via `poll`."""

    def __init__(self, runtime: object = None) -> None:
        #: The runtime whose tasks may wait here (a wait from another one is refused).
        self.runtime = runtime
        self._selector = _Poller()
        self._edge = self._selector.edge_triggered
        self._lock = threading.Lock()
        self._waiters: dict[int, _FdRecord] = {}
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._wake_fd = self._wake_recv.fileno()
        self._selector.register(self._wake_fd, READ)
        self._closed = False

    @property
    def backend(self) -> str:
        """The selector in use: ``"epoll"``, ``"kqueue"``, ``"poll"``..."""
        return self._selector.name

    def _register(self, wait: IOWait) -> None:
        with self._lock:
            if self._closed:
                raise ClosedResourceError("the runtime's reactor is closed")
            fd = wait.fd
            record = self._waiters.get(fd)
            if record is None:
                record = self._waiters[fd] = _FdRecord()
            index = 0 if wait.events == READ else 1
            if record.waits[index] is not None:
                raise BusyResourceError(
                    f"another task is already waiting for fd {fd} to become "
                    f"{'readable' if index == 0 else 'writable'}"
                )
            if record.owner != wait.keep:
                # Interest kept for another socket object (one that was dropped without
                # aclose(), its fd number now reused) or for none: start afresh.
                if record.interest:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._selector.unregister(fd)
                    record.interest = 0
                record.owner = wait.keep
                record.pending = 0
                record.final = False
            if record.final:
                wait.fire()
                return
            if record.pending & wait.events:
                # The edge came between the task's failed recv/send and this wait.
                record.pending &= ~wait.events
                wait.fire()
                return
            waiting = (READ if record.waits[0] else 0) | (WRITE if record.waits[1] else 0)
            wanted = record.interest | waiting | wait.events
            if wanted != record.interest:
                try:
                    self._set_interest(fd, record, wanted)
                except (KeyError, ValueError, OSError) as exc:
                    if record.idle():
                        del self._waiters[fd]
                    raise ClosedResourceError(f"cannot wait on fd {fd}: {exc}") from exc
            record.waits[index] = wait
            wait.registered = True

    def _set_interest(self, fd: int, record: _FdRecord, mask: int) -> None:
        """Tell the kernel ``mask`` (under ``_lock``); may raise for a closed fd."""
        poller = self._selector
        edge = self._edge and record.owner != 0
        if record.interest == 0:
            poller.register(fd, mask, edge)
        elif mask == 0:
            poller.unregister(fd)
        else:
            poller.modify(fd, mask, edge)
        record.interest = mask

    def _drop_interest(self, fd: int, record: _FdRecord, bits: int) -> None:
        """Withdraw ``bits`` of interest (under ``_lock``); forget an idle fd."""
        mask = record.interest & ~bits
        if mask != record.interest:
            try:
                self._set_interest(fd, record, mask)
            except (KeyError, ValueError, OSError):
                record.interest = 0  # closed behind our back: the kernel dropped it
        if record.idle():
            del self._waiters[fd]

    def _forget(self, wait: IOWait) -> None:
        """Drop ``wait`` (its task was cancelled).

        If the wait had already fired, its edge is given back (``pending``): the task
        that consumed it never acted on it, and an edge is reported only once.
        """
        with self._lock:
            record = self._waiters.get(wait.fd)
            if record is not None:
                index = 0 if wait.events == READ else 1
                if record.waits[index] is wait:
                    record.waits[index] = None
                    if not wait.keep:
                        self._drop_interest(wait.fd, record, wait.events)
                elif wait.ready and wait.keep and record.owner == wait.keep:
                    record.pending |= wait.events
        wait.registered = False

    def poll(self, timeout: float | None) -> int:
        """Block up to ``timeout`` seconds (None: forever) and wake the ready tasks.

        Returns:
            How many waits were completed.
        """
        try:
            events = self._selector.poll(timeout)
        except (OSError, ValueError):
            if self._closed:
                return 0
            raise
        fired: list[IOWait] = []
        with self._lock:
            for fd, mask in events:
                if fd == self._wake_fd:
                    continue
                record = self._waiters.get(fd)
                if record is None:
                    continue
                if mask & FINAL and self._edge and record.owner:
                    record.final = True
                unwanted = 0
                for index, bit in ((0, READ), (1, WRITE)):
                    if not mask & bit:
                        continue
                    wait = record.waits[index]
                    if wait is None:
                        if self._edge and record.owner:
                            record.pending |= bit  # an edge is reported once: keep it
                        else:
                            unwanted |= bit  # level-triggered: drop, or it repeats
                        continue
                    fired.append(wait)
                    record.waits[index] = None
                    if not wait.keep:
                        unwanted |= bit
                if unwanted or record.idle():
                    self._drop_interest(fd, record, unwanted)
        if any(fd == self._wake_fd for fd, _ in events):
            self._drain_wakeups()
        for wait in fired:
            wait.registered = False
            wait.fire()
        return len(fired)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_recv.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass

    def wakeup(self) -> None:
        """Make a blocked (or the next) `poll` return at once; safe from any thread."""
        try:
            self._wake_send.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is already pending
        except OSError:
            if not self._closed:
                raise

    def notify_closing(self, obj: FileDescriptorLike) -> None:
        """Wake every task waiting on ``obj`` with `ClosedResourceError`; call before closing."""
        try:
            fd = fileno(obj)
        except ClosedResourceError:
            return
        with self._lock:
            record = self._waiters.pop(fd, None)
            if record is None:
                return
            if record.interest:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(fd)
        for wait in record.waits:
            if wait is not None:
                wait.registered = False
                wait.fire(ClosedResourceError("the socket was closed while a task waited on it"))

    def close(self) -> None:
        """Wake every waiting task with `ClosedResourceError` and release the fds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            records = list(self._waiters.values())
            self._waiters.clear()
        for record in records:
            for wait in record.waits:
                if wait is not None:
                    wait.fire(ClosedResourceError("the runtime was closed"))
        self._selector.close()
        self._wake_recv.close()
        self._wake_send.close()
