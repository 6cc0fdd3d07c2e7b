"""Virtual time on uvloop: Python-level timers, and a probe that watches for idleness.

On the selector loop, virtual time fills two Python extension points (``time()`` and
the selector's wait; see `_virtual`). uvloop has neither: its timers are libuv timers
on libuv's millisecond clock, and its wait is ``epoll_wait`` inside ``uv_run``, with a
timeout libuv computes from those timers. `VirtualTimeUvloop` therefore keeps the
timers out of libuv altogether:

* ``time()`` reads a `anyrt.VirtualClock`, and ``call_at``/``call_later`` push an
  `asyncio.TimerHandle` onto the loop's own heap instead of starting a libuv timer.
  asyncio code reaches all three through Python attribute lookup - ``asyncio.sleep``,
  ``asyncio.timeout``, ``wait_for``, anyrt's sleeps and timeouts, and uvloop's own TLS
  timeouts (``sslproto.pyx`` calls ``self._loop.call_later``) - so every timer of the
  loop is virtual. (uvloop's ``call_at`` is ``call_later(when - self.time())``, and
  its ``call_later`` is the only caller of the C ``_call_later`` that starts libuv
  timers: ``loop.pyx``, ``Loop.call_later``/``call_at``.)
* While a virtual timer is pending, a *probe* callback keeps rescheduling itself with
  ``call_soon``. A pending callback keeps libuv's idle handle active, so each turn of
  ``uv_run`` polls the OS with a zero timeout instead of sleeping. Each probe fires the
  timers that are due, then looks at uvloop's ready queue (the ``_ready`` deque that
  ``Loop._on_idle`` drains, ``loop.pyx``; found once through `gc.get_referents`, since
  Cython keeps it private). When the probe finds that queue empty on `QUIET_PROBES`
  turns in a row - nothing was scheduled, and the zero-timeout polls in between
  delivered nothing - the loop is idle, and:

  - with no blocking work in flight (``run_in_executor``, which `spawn_blocking` uses,
    and name lookups, which uvloop runs in libuv's thread pool: ``getaddrinfo``, which
    ``sock_connect`` calls too, and ``create_connection``/``create_server``/
    ``create_datagram_endpoint`` given a host name), the clock jumps to the next
    deadline and the next probe fires that timer - the rule of the ``single-threaded``
    backend's `VirtualClock` and of the selector loop;
  - with blocking work in flight, the loop really waits: a real libuv timer is armed
    for the time to the next deadline and the probe stops, so libuv sleeps in
    ``epoll_wait``. Whatever the loop does next (the thread's result arriving, I/O, a
    new callback or timer) ends the wait, and virtual time advances by the real time
    that passed: a timeout around a thread's work is not cut short by a jump.

  With no virtual timer pending no probe runs, and the loop sleeps in libuv as usual.

Limits, the same as the selector loop's and the ``single-threaded`` backend's: the loop
cannot know in advance that a plain thread (not submitted through ``run_in_executor``)
or a peer in another process will wake a task; when only those remain, the clock jumps
to the next deadline anyway. The ready queue is uvloop's private state: should a
uvloop release keep it elsewhere, the loop refuses to start (`RuntimeError`, naming the
``asyncio`` backend) rather than jump blind.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple, cast, final

import uvloop

from anyrt import VirtualClock

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: How many probes in a row must find the ready queue empty before the loop is idle.
#: Each is one turn of ``uv_run`` with a zero-timeout poll of the OS; the selector
#: loop decides after one such poll, this loop after two (a write uvloop queued for
#: the check phase reaches a peer on the same loop only on the next turn's poll).
QUIET_PROBES = 3


def _noop() -> None:
    """Does nothing: the callback that checks where uvloop's ready queue is."""


def _ready_queue(loop: uvloop.Loop) -> deque[Any]:
    """Return uvloop's ready queue (``Loop._ready``), checked to be the one ``call_soon`` fills.

    Raises:
        RuntimeError: this uvloop keeps its ready callbacks some other way.
    """
    found = [ref for ref in gc.get_referents(loop) if type(ref) is deque]
    if len(found) == 1 and not found[0]:
        handle = uvloop.Loop.call_soon(loop, _noop)
        handle.cancel()  # uvloop skips a cancelled handle when it drains the queue
        if len(found[0]) == 1:
            return found[0]
    raise RuntimeError(
        "virtual time cannot watch the ready queue of this uvloop (its internals "
        "changed); use anyrt.runtime('asyncio', clock='virtual'), the same "
        "asyncio code on the selector loop"
    )


def _is_name(host: object) -> bool:
    """Whether connecting to ``host`` takes a name lookup (not an IP literal, not None)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if isinstance(host, str):
        try:
            ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return True
        return False
    if isinstance(host, (list, tuple)):  # create_server's list of hosts, or an address
        return any(_is_name(part) for part in host if not isinstance(part, int))
    return False


@final
class VirtualTimeUvloop(uvloop.Loop):
    """A uvloop event loop whose clock is a `anyrt.VirtualClock` that skips idle time.

    Args:
        clock: the virtual clock; ``loop.time()`` returns ``clock.now()``.

    Raises:
        RuntimeError: the installed uvloop keeps its ready queue where this class
            cannot see it (the message names the ``asyncio`` backend instead).
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.virtual_clock = clock
        #: How many ``run_in_executor`` calls and name lookups have not finished yet.
        self.blocking_in_flight = 0
        self._virtual_timers: list[asyncio.TimerHandle] = []  # a heap, by deadline
        self._cancelled_timers = 0  # cancelled handles still in the heap
        self._probe_scheduled = False
        self._quiet = 0  # probes in a row that found the ready queue empty
        # While the loop really waits: (real start, virtual seconds, the libuv timer).
        self._real_wait: tuple[float, float, asyncio.TimerHandle] | None = None
        try:
            self._uv_ready = _ready_queue(self)
        except RuntimeError:
            self.close()
            raise

    # -- the clock and the timers --------------------------------------------------------

    def time(self) -> float:
        """Return the virtual clock's time."""
        return self.virtual_clock.now()

    def call_later(
        self,
        delay: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Call ``callback(*args)`` after ``delay`` seconds of virtual time."""
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Call ``callback(*args)`` when virtual time reaches ``when``."""
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._virtual_timers, timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        self._activity()
        return timer

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Called by `asyncio.TimerHandle.cancel`: count it, to drop such handles in bulk."""
        if handle._scheduled:  # type: ignore[attr-defined]
            self._cancelled_timers += 1

    def _next_deadline(self) -> float | None:
        """The earliest live timer's deadline; None if there is none (or only at infinity)."""
        timers = self._virtual_timers
        if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(timers):
            live = [timer for timer in timers if not timer.cancelled()]
            for timer in timers:
                if timer.cancelled():
                    timer._scheduled = False  # type: ignore[attr-defined]
            heapq.heapify(live)
            self._virtual_timers = timers = live
            self._cancelled_timers = 0
        while timers and timers[0].cancelled():
            heapq.heappop(timers)._scheduled = False  # type: ignore[attr-defined]
            self._cancelled_timers -= 1
        if not timers or math.isinf(timers[0].when()):
            return None
        return timers[0].when()

    def _fire_due(self) -> bool:
        """Run every timer whose deadline has come; return whether any ran.

        Timers that these callbacks set for ``now`` or earlier wait for the next probe,
        as they wait for the next turn on the selector loop.
        """
        timers = self._virtual_timers
        now = self.time()
        due: list[asyncio.TimerHandle] = []
        while timers and timers[0].when() <= now:
            timer = heapq.heappop(timers)
            timer._scheduled = False  # type: ignore[attr-defined]
            if timer.cancelled():
                self._cancelled_timers -= 1
            else:
                due.append(timer)
        for index, timer in enumerate(due):
            if timer.cancelled():  # an earlier one of them cancelled it
                continue
            try:
                timer._run()  # reports an Exception like any handle
            except BaseException:  # KeyboardInterrupt: uvloop stops; keep the rest for later
                for rest in due[index + 1 :]:
                    heapq.heappush(self._virtual_timers, rest)
                    rest._scheduled = True  # type: ignore[attr-defined]
                raise
        return bool(due)

    # -- watching for idleness -------------------------------------------------------------

    def _activity(self) -> None:
        """Something was scheduled on the loop's thread: stop a real wait, probe again."""
        if self._real_wait is not None:
            self._end_real_wait()
        self._schedule_probe()

    def _schedule_probe(self) -> None:
        """Make sure one probe runs on the next turn of the loop (never two)."""
        if not self._probe_scheduled and not self.is_closed():
            self._probe_scheduled = True
            uvloop.Loop.call_soon(self, self._probe)

    def _probe(self) -> None:
        """One turn's look at the loop: fire due timers, and jump the clock when idle."""
        self._probe_scheduled = False
        try:
            fired = self._fire_due()
        except BaseException:  # KeyboardInterrupt in a timer: uvloop stops the loop
            self._activity()  # and the timers left are watched when it runs again
            raise
        if fired or self._uv_ready:
            self._quiet = 0
        else:
            self._quiet += 1
        deadline = self._next_deadline()
        if deadline is None:
            self._quiet = 0
            return  # no timer: libuv sleeps until the OS or another thread wakes it
        if self._quiet >= QUIET_PROBES:
            self._quiet = 0
            delta = deadline - self.time()
            if self.blocking_in_flight:
                self._start_real_wait(delta)
                return
            self.virtual_clock.idle(delta)  # the next probe fires the timers now due
        self._schedule_probe()

    def _start_real_wait(self, delta: float) -> None:
        """Sleep in libuv for up to ``delta`` real seconds; virtual time follows."""
        timer = uvloop.Loop.call_later(self, delta, self._real_wait_over)
        self._real_wait = (time.monotonic(), delta, timer)

    def _real_wait_over(self) -> None:
        """The libuv timer fired: the whole wait passed, the next deadline is due."""
        if self._real_wait is not None:
            _, delta, _ = self._real_wait
            self._real_wait = None
            self.virtual_clock.idle(delta)
            self._activity()

    def _end_real_wait(self) -> None:
        """The loop woke before the timer: advance by the real time that passed."""
        assert self._real_wait is not None
        started, delta, timer = self._real_wait
        self._real_wait = None
        timer.cancel()
        self.virtual_clock.idle(min(time.monotonic() - started, delta))

    def _wake(self) -> None:
        """Run on the loop's thread after a callback another thread scheduled."""
        self._activity()

    def call_soon(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        """As uvloop's; a callback scheduled during a real wait ends the wait."""
        if self._real_wait is not None:
            self._activity()
        return super().call_soon(callback, *args, context=context)

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        """As uvloop's; the loop's thread then checks whether a real wait must end."""
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        uvloop.Loop.call_soon_threadsafe(self, self._wake)
        return handle

    def close(self) -> None:
        """Close the loop and drop its timers."""
        super().close()
        for timer in self._virtual_timers:
            timer._scheduled = False  # type: ignore[attr-defined]
        self._virtual_timers.clear()
        self._cancelled_timers = 0
        self._real_wait = None

    # -- blocking work: while it runs, an idle loop waits instead of jumping -----------------

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """As uvloop's; while the call runs, an idle loop waits instead of jumping."""
        # (uvloop's stub declares an ``async def``; it returns a future, as asyncio's.)
        future = cast("asyncio.Future[T]", super().run_in_executor(executor, func, *args))
        self.blocking_in_flight += 1
        future.add_done_callback(self._blocking_done)
        return future

    def _blocking_done(self, _: object) -> None:
        self.blocking_in_flight -= 1

    async def _blocking(self, awaitable: Any) -> Any:
        """Await ``awaitable`` counted as blocking work (a lookup in libuv's threads)."""
        self.blocking_in_flight += 1
        try:
            return await awaitable
        finally:
            self.blocking_in_flight -= 1

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        """As uvloop's (a lookup in libuv's thread pool), counted as blocking work."""
        return await self._blocking(super().getaddrinfo(*args, **kwargs))

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        """As uvloop's (a lookup in libuv's thread pool), counted as blocking work."""
        return await self._blocking(super().getnameinfo(*args, **kwargs))

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        """As uvloop's; while it looks a host name up, counted as blocking work."""
        hosts = (args[1:2] or (kwargs.get("host"),), kwargs.get("local_addr"))
        call = super().create_connection(*args, **kwargs)
        return await (self._blocking(call) if _is_name(hosts) else call)

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        """As uvloop's; while it looks a host name up, counted as blocking work."""
        call = super().create_server(*args, **kwargs)
        return await (self._blocking(call) if _is_name(args[1:2] or kwargs.get("host")) else call)

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        """As uvloop's; while it looks a host name up, counted as blocking work."""
        hosts = (args[1:3], kwargs.get("local_addr"), kwargs.get("remote_addr"))
        call = super().create_datagram_endpoint(*args, **kwargs)
        return await (self._blocking(call) if _is_name(hosts) else call)
