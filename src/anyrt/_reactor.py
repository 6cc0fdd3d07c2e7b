"""The OS reactor: readiness waits on sockets and fds, over `selectors`.

Split-phase, like trio's IO managers, so that any worker loop can drive it:
`poll(timeout)` blocks in the selector and wakes the tasks whose fds became ready;
`wakeup()` interrupts a `poll` from any thread; `notify_closing(fd)` wakes the tasks
waiting on an fd that is about to be closed; `close()` releases everything.

Some facts about the OS that this code depends on:

* `selectors.DefaultSelector` is epoll on Linux and kqueue on BSD and macOS. Both are
  level-triggered here: an fd that stays readable is reported by every ``select``
  until someone reads. We therefore drop an fd's interest as soon as it fires
  (one wake per wait, like a oneshot) and re-register on the next wait: a task that
  did not consume the readiness simply finds it again.
* epoll and kqueue let one thread change interest (``epoll_ctl``/``kevent``) while
  another blocks in the wait, and the change applies to that wait. The Python-level
  mapping from fd to key inside `selectors` is a dict, whose single operations are
  atomic (also on free-threaded CPython). Our own per-fd waiter table is guarded by
  ``_lock``; a selector call that changes interest is made under the same lock, so
  table and kernel interest never disagree.
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

    __slots__ = ("error", "events", "fd", "reactor", "ready", "registered", "task")

    def __init__(self, reactor: OSReactor, fd: int, events: int) -> None:
        self.reactor = reactor
        self.fd = fd
        self.events = events
        self.ready = False
        self.registered = False
        self.error: BaseException | None = None
        self.task: NativeTask[Any] | None = None

    def __await__(self) -> Generator[Any, Any, None]:
        try:
            while not self.ready and self.error is None:
                yield self
        except BaseException:
            if self.registered:
                self.reactor._forget(self)
            raise
        if self.error is not None:
            raise self.error

    def _anyrt_park(self, task: NativeTask[Any], worker: Worker) -> None:
        if self.task is not None:
            return  # a spurious wake; still registered
        self.task = task
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


class OSReactor:
    """Readiness notifications for fds, driven by one thread at a time via `poll`."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        # fd -> [reader, writer]
        self._waiters: dict[int, list[IOWait | None]] = {}
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._wake_fd = self._wake_recv.fileno()
        self._selector.register(self._wake_fd, READ)
        self._closed = False

    @property
    def backend(self) -> str:
        """The selector in use: ``"epoll"``, ``"kqueue"``, ``"poll"``..."""
        return type(self._selector).__name__.removesuffix("Selector").lower()

    def _register(self, wait: IOWait) -> None:
        with self._lock:
            if self._closed:
                raise ClosedResourceError("the runtime's reactor is closed")
            slots = self._waiters.get(wait.fd)
            if slots is None:
                slots = self._waiters[wait.fd] = [None, None]
                old_mask = 0
            else:
                old_mask = (READ if slots[0] else 0) | (WRITE if slots[1] else 0)
            index = 0 if wait.events == READ else 1
            if slots[index] is not None:
                raise BusyResourceError(
                    f"another task is already waiting for fd {wait.fd} to become "
                    f"{'readable' if index == 0 else 'writable'}"
                )
            new_mask = old_mask | wait.events
            try:
                if old_mask:
                    self._selector.modify(wait.fd, new_mask)
                else:
                    self._selector.register(wait.fd, new_mask)
            except (KeyError, ValueError, OSError) as exc:
                if not old_mask:
                    del self._waiters[wait.fd]
                raise ClosedResourceError(f"cannot wait on fd {wait.fd}: {exc}") from exc
            slots[index] = wait
            wait.registered = True

    def _forget(self, wait: IOWait) -> None:
        """Drop ``wait`` (its task was cancelled) and its interest."""
        with self._lock:
            slots = self._waiters.get(wait.fd)
            if slots is None:
                return
            index = 0 if wait.events == READ else 1
            if slots[index] is wait:
                slots[index] = None
                self._update_interest(wait.fd, slots)
        wait.registered = False

    def _update_interest(self, fd: int, slots: list[IOWait | None]) -> None:
        mask = (READ if slots[0] else 0) | (WRITE if slots[1] else 0)
        try:
            if mask:
                self._selector.modify(fd, mask)
            else:
                del self._waiters[fd]
                self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            # The fd was closed behind our back; the kernel already dropped it.
            self._waiters.pop(fd, None)

    def poll(self, timeout: float | None) -> int:
        """Block up to ``timeout`` seconds (None: forever) and wake the ready tasks.

        Returns:
            How many waits were completed.
        """
        try:
            events = self._selector.select(timeout)
        except (OSError, ValueError):
            if self._closed:
                return 0
            raise
        fired: list[IOWait] = []
        with self._lock:
            for key, mask in events:
                fd = key.fd
                if fd == self._wake_fd:
                    continue
                slots = self._waiters.get(fd)
                if slots is None:
                    continue
                reader, writer = slots
                if reader is not None and mask & READ:
                    fired.append(reader)
                    slots[0] = None
                if writer is not None and mask & WRITE:
                    fired.append(writer)
                    slots[1] = None
                self._update_interest(fd, slots)
        if any(key.fd == self._wake_fd for key, _ in events):
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
            slots = self._waiters.pop(fd, None)
            if slots is None:
                return
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
        for wait in slots:
            if wait is not None:
                wait.registered = False
                wait.fire(ClosedResourceError("the socket was closed while a task waited on it"))

    def close(self) -> None:
        """Wake every waiting task with `ClosedResourceError` and release the fds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for slots in waiters:
            for wait in slots:
                if wait is not None:
                    wait.fire(ClosedResourceError("the runtime was closed"))
        self._selector.close()
        self._wake_recv.close()
        self._wake_send.close()
