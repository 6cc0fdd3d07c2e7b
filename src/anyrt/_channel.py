"""`Channel`: a bounded, multi-producer multi-consumer FIFO queue for tasks and threads."""

from __future__ import annotations

from collections import deque
from threading import Lock as _ThreadLock
from typing import Any, Generic, Self, TypeVar, final

from ._exceptions import ClosedResourceError
from ._protocols import Executor
from ._sync import _check_executor, _oneshot
from ._validate import check_positive_int, check_seconds
from ._waiters import ThreadWaiter, check_plain_thread, discard, fail_all, hand_off

__all__ = ["Channel", "EndOfChannel"]

T = TypeVar("T")


class EndOfChannel(Exception):
    """`Channel.receive` on a channel that is closed and drained."""


@final
class Channel(Generic[T]):
    """A bounded MPMC channel with backpressure.

    ``send`` waits while ``capacity`` items are buffered; ``capacity=0`` makes every
    send a rendezvous with a receiver. Senders and receivers are each served first in,
    first out. After `close`, ``send`` raises `ClosedResourceError` and receivers drain
    what is buffered, then get `EndOfChannel` (``async for`` simply ends).

    Plain threads use `send_blocking` and `receive_blocking`.

    Args:
        executor: the executor whose `oneshot` parks waiting tasks.
        capacity: how many items may wait in the buffer.
    """

    __slots__ = ("_buffer", "_capacity", "_closed", "_executor", "_lock", "_receivers", "_senders")

    def __init__(self, executor: Executor, capacity: int) -> None:
        self._executor = _check_executor(executor, "Channel()")
        self._capacity = check_positive_int(capacity, "Channel capacity", minimum=0)
        self._lock = _ThreadLock()
        self._buffer: deque[T] = deque()
        # Parked receivers: waiters that get an item.
        self._receivers: deque[Any] = deque()
        # Parked senders: (waiter that gets None once the item is taken, item).
        self._senders: deque[tuple[Any, T]] = deque()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<anyrt.Channel {state} {len(self._buffer)}/{self._capacity} buffered, "
            f"{len(self._senders)} senders and {len(self._receivers)} receivers waiting>"
        )

    @property
    def capacity(self) -> int:
        """The size of the buffer."""
        return self._capacity

    def __len__(self) -> int:
        """The number of buffered items."""
        return len(self._buffer)

    def closed(self) -> bool:
        """Return True once `close` has been called."""
        return self._closed

    # -- the two halves of every operation, under the lock ------------------------

    def _offer(self, item: T) -> bool:
        """Place ``item`` with a receiver or in the buffer; False if it must wait."""
        if self._closed:
            raise ClosedResourceError("send() on a closed anyrt.Channel")
        if hand_off(self._receivers, item):
            return True
        if len(self._buffer) < self._capacity and not self._senders:
            self._buffer.append(item)
            return True
        return False

    def _take(self) -> tuple[bool, T | None]:
        """Take the next item from the buffer or a waiting sender; (False, None) if none."""
        buffer = self._buffer
        senders = self._senders
        if buffer:
            item = buffer.popleft()
            while senders:  # a slot opened: admit the longest-waiting sender's item
                waiter, pending = senders.popleft()
                if waiter.send(None):
                    buffer.append(pending)
                    break
            return True, item
        while senders:  # rendezvous (capacity 0) or a sender racing a full buffer
            waiter, pending = senders.popleft()
            if waiter.send(None):
                return True, pending
        if self._closed:
            raise EndOfChannel("receive() on a closed and drained anyrt.Channel")
        return False, None

    # -- tasks ----------------------------------------------------------------------

    async def send(self, item: T) -> None:
        """Send ``item``, waiting while the buffer is full.

        Raises:
            ClosedResourceError: the channel is closed (also if it closes while waiting;
                the item was then not delivered).
        """
        with self._lock:
            if self._offer(item):
                return
            sender, receiver = _oneshot(self._executor)
            entry = (sender, item)
            self._senders.append(entry)
        try:
            await receiver  # returns once a receiver (or the buffer) took the item
        except BaseException:
            with self._lock:
                discard(self._senders, entry)  # not taken: the item was not sent
            raise

    async def receive(self) -> T:
        """Receive the next item, waiting while there is none.

        Raises:
            EndOfChannel: the channel is closed and drained.
        """
        with self._lock:
            ok, item = self._take()
            if ok:
                return item  # type: ignore[return-value]
            sender, receiver = _oneshot(self._executor)
            self._receivers.append(sender)
        try:
            result: T = await receiver
        except BaseException:
            with self._lock:
                discard(self._receivers, sender)  # no item was handed to it
            raise
        return result

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None

    # -- plain threads ------------------------------------------------------------------

    def send_blocking(self, item: T, *, timeout: float | None = None) -> None:
        """Send from a plain thread, blocking while the buffer is full.

        Raises:
            RuntimeError: called from a thread that runs an anyrt runtime.
            TimeoutError: ``timeout`` seconds passed (the item was not sent).
            ClosedResourceError: the channel is closed.
        """
        check_plain_thread("send_blocking", "await channel.send(item)")
        if timeout is not None:
            check_seconds(timeout, "send_blocking(timeout=...)")
        waiter: ThreadWaiter[None] = ThreadWaiter()
        with self._lock:
            if self._offer(item):
                return
            entry = (waiter, item)
            self._senders.append(entry)
        try:
            waiter.wait(timeout)
        except TimeoutError:
            with self._lock:
                discard(self._senders, entry)
            raise

    def receive_blocking(self, *, timeout: float | None = None) -> T:
        """Receive from a plain thread, blocking while the channel is empty.

        Raises:
            RuntimeError: called from a thread that runs an anyrt runtime.
            TimeoutError: ``timeout`` seconds passed.
            EndOfChannel: the channel is closed and drained.
        """
        check_plain_thread("receive_blocking", "await channel.receive()")
        if timeout is not None:
            check_seconds(timeout, "receive_blocking(timeout=...)")
        waiter: ThreadWaiter[T] = ThreadWaiter()
        with self._lock:
            ok, item = self._take()
            if ok:
                return item  # type: ignore[return-value]
            self._receivers.append(waiter)
        try:
            return waiter.wait(timeout)
        except TimeoutError:
            with self._lock:
                discard(self._receivers, waiter)
            raise

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; safe from any thread, idempotent.

        Waiting senders get `ClosedResourceError` (their items are not delivered);
        waiting receivers get `EndOfChannel` once nothing is buffered.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fail_all(
                deque(waiter for waiter, _ in self._senders),
                ClosedResourceError,
                "the anyrt.Channel was closed while send() waited; the item was not sent",
            )
            self._senders.clear()
            fail_all(self._receivers, EndOfChannel, "the anyrt.Channel was closed")
