"""TLS over any `ByteStream`, with `ssl.MemoryBIO`: one implementation for every backend.

The `ssl` module's `SSLObject` does the protocol; this module only moves bytes between
its two memory BIOs and the transport stream. Because nothing here touches a socket,
the same code runs over real TCP, Unix sockets, the in-memory network and adapter
streams.

One task may receive while another sends, as on any stream, and sends of several tasks
are serialised (`StreamGuard`). The `SSLObject` is not thread-safe, so every call into
it is made under a thread lock (never held across an await); bytes leave through one
async lock, so records reach the transport in the order the `SSLObject` produced them;
and bytes arrive through another, so only one task reads the transport at a time.

Records that the `SSLObject` produced and that did not all reach the transport (the
send was cancelled, or failed) cannot be produced again: the stream is then broken, and
`BrokenResourceError` says so - except when the connection itself broke, where receive
reports the end of the stream, as every stream does after a broken send.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, final

from ._exceptions import BrokenResourceError, ClosedResourceError
from ._listener import AsyncResource, serve_listener
from ._protocols import ByteStream, Executor, Listener
from ._streamguard import StreamGuard
from ._sync import Lock
from ._validate import check_positive_int

#: How much one read from the transport asks for.
_TRANSPORT_READ: Final = 65536


@final
class TLSStream(AsyncResource):
    """A TLS connection over another `ByteStream`; implements `anyrt.ByteStream`.

    The handshake runs on the first `send` or `receive`, or explicitly with
    `do_handshake`; `wrap` does both in one step.

    Args:
        executor: the runtime the stream is used on (its tasks park on it).
        transport: the stream that carries the encrypted bytes; closed with this one.
        context: the `ssl.SSLContext` (``ssl.create_default_context()`` for a client).
        server_side: act as the server of the handshake.
        server_hostname: the name to check the server's certificate against (and to
            send as SNI); required by a client context with ``check_hostname``.

    Raises:
        TypeError: ``context`` is not an `ssl.SSLContext`.
    """

    __slots__ = (
        "_broken",
        "_closed",
        "_guard",
        "_handshake_lock",
        "_handshaken",
        "_incoming",
        "_object",
        "_object_lock",
        "_outgoing",
        "_receive_lock",
        "_send_lock",
        "_sent_eof",
        "transport",
    )

    def __init__(
        self,
        executor: Executor,
        transport: ByteStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
        self.transport = transport
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._object_lock = threading.Lock()
        self._send_lock = Lock(executor)
        self._receive_lock = Lock(executor)
        self._handshake_lock = Lock(executor)
        self._guard = StreamGuard(executor)
        self._handshaken = False
        self._sent_eof = False
        self._closed = False
        # Why records were lost on the way out: None, "connection" (the transport broke:
        # the end of the stream) or "cut" (a send cancelled or failed part-way).
        self._broken: str | None = None

    @classmethod
    async def wrap(
        cls,
        executor: Executor,
        transport: ByteStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> TLSStream:
        """Wrap ``transport`` and complete the handshake; close it if the handshake fails."""
        stream = cls(
            executor,
            transport,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await transport.aclose()
            raise
        return stream

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self.version() or "handshaking")
        return f"<anyrt TLSStream {state} over {self.transport!r}>"

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The `ssl.SSLObject`: ``getpeercert()``, ``cipher()``, ``selected_alpn_protocol()``."""
        return self._object

    def version(self) -> str | None:
        """The negotiated protocol, e.g. ``"TLSv1.3"``; None before the handshake."""
        return self._object.version()

    # -- moving bytes ---------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        with self._object_lock:
            return method(*args)

    async def _flush(self) -> None:
        """Send what the `SSLObject` has written, in order."""
        with self._object_lock:
            pending = self._outgoing.pending
        if not pending:
            # Nothing to send: do not queue behind a task whose send is blocked on a
            # full transport, or a receive would wait for a send that waits for the
            # peer, which waits for us to read.
            return
        async with self._send_lock:
            with self._object_lock:
                data = self._outgoing.read()
            if data:
                try:
                    await self.transport.send(data)
                except ConnectionError:
                    self._broken = "connection"
                    raise
                except BaseException:
                    self._broken = "cut"
                    raise

    async def _feed(self) -> None:
        """Read one chunk from the transport into the `SSLObject`; EOF closes its input."""
        async with self._receive_lock:
            data = await self.transport.receive(_TRANSPORT_READ)
            with self._object_lock:
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()

    async def _retry(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call ``method`` until it completes, feeding and flushing as it asks."""
        while True:
            try:
                result = self._call(method, *args)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
            else:
                await self._flush()
                return result

    # -- ByteStream -------------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the TLS handshake (once; later calls return at once).

        Raises:
            ssl.SSLError: the handshake failed (a certificate that does not verify, say).
        """
        if self._handshaken:
            return
        self._check_open("do_handshake")
        async with self._handshake_lock:
            if not self._handshaken:
                await self._retry(self._object.do_handshake)
                self._handshaken = True

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` decrypted bytes; ``b""`` once the peer closed TLS.

        Raises:
            ssl.SSLEOFError: the transport ended without the peer's TLS close (a
                truncation attack, or a peer that just dropped the connection).
        """
        check_positive_int(max_bytes, "receive(max_bytes)")
        self._check_open("receive")
        guard = self._guard
        guard.begin_receive()
        try:
            if self._broken == "connection":
                return b""  # a send found the connection broken: the end of the stream
            await self.do_handshake()
            try:
                # SSLObject.read allocates the whole buffer first: ask for at most 1 MiB.
                data: bytes = await self._retry(self._object.read, min(max_bytes, 1 << 20))
            except ssl.SSLZeroReturnError:
                return b""  # the peer's close_notify: a clean end of stream
            return data
        finally:
            guard.end_receive()

    async def send(self, data: bytes) -> None:
        """Encrypt and send all of ``data``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes bytes, not {type(data).__name__}")
        self._check_open("send")
        if self._sent_eof:
            raise ClosedResourceError("send() after send_eof() on a TLS stream")
        guard = self._guard
        await guard.begin_send()
        try:
            await self.do_handshake()
            view = memoryview(data).cast("B")
            while view:
                self._check_open("send")
                written: int = await self._retry(self._object.write, view)
                view = view[written:]
        finally:
            guard.end_send()

    async def send_eof(self) -> None:
        """Send TLS's close_notify: the peer's `receive` returns ``b""``; receiving goes on.

        TLS 1.3 peers keep sending after it; a TLS 1.2 peer usually answers with its own.
        """
        self._check_open("send_eof")
        if self._sent_eof:
            return
        await self.do_handshake()
        self._sent_eof = True
        # SSLWantReadError: our close_notify is written; the peer's comes separately.
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            self._call(self._object.unwrap)
        await self._flush()

    async def aclose(self) -> None:
        """Send close_notify if possible, then close the transport; idempotent."""
        if self._closed:
            return
        try:
            if self._handshaken and not self._sent_eof and self._broken is None:
                self._sent_eof = True
                with contextlib.suppress(ssl.SSLError):
                    self._call(self._object.unwrap)
                # If the transport is already gone there is nobody to tell.
                with contextlib.suppress(OSError, ClosedResourceError):
                    await self._flush()
        finally:
            self._closed = True
            await self.transport.aclose()

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{method}() on a closed TLS stream")
        if self._broken == "cut":
            raise BrokenResourceError(
                f"{method}() on a TLS stream whose earlier send was cancelled or failed "
                "part-way: the TLS records it had produced were lost; close the stream"
            )


@final
class TLSListener(AsyncResource):
    """A listener whose connections are TLS streams; implements `anyrt.Listener`.

    `accept` completes each handshake before it returns; `serve` runs each handshake in
    the connection's own task, so a slow or failing client never holds up the others.

    Args:
        executor: the runtime the listener is used on.
        transport: the listener that accepts the underlying connections.
        context: the server-side `ssl.SSLContext` (with its certificate chain loaded).
    """

    __slots__ = ("_context", "_executor", "transport")

    def __init__(self, executor: Executor, transport: Listener, context: ssl.SSLContext) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
        self._executor = executor
        self.transport = transport
        self._context = context

    def __repr__(self) -> str:
        return f"<anyrt TLSListener over {self.transport!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` of the underlying listener."""
        return self.transport.address

    async def accept(self) -> TLSStream:
        """Accept the next connection and complete its TLS handshake.

        Raises:
            ssl.SSLError: that client's handshake failed (the listener goes on).
        """
        stream = await self.transport.accept()
        return await TLSStream.wrap(self._executor, stream, self._context, server_side=True)

    async def serve(self, handler: Callable[[ByteStream], Awaitable[object]]) -> None:
        """Accept until closed or cancelled; each connection's handshake runs in its task.

        A failed handshake goes to the runtime's error handler, like a failing handler.
        """
        if not callable(handler):
            raise TypeError(f"serve() takes an async handler(stream), not {type(handler).__name__}")

        async def secured(stream: ByteStream) -> None:
            tls = await TLSStream.wrap(self._executor, stream, self._context, server_side=True)
            async with tls:
                await handler(tls)

        await serve_listener(self.transport, self._executor.spawn, secured)

    async def aclose(self) -> None:
        """Close the underlying listener."""
        await self.transport.aclose()


async def secure_client(
    executor: Executor,
    stream: ByteStream,
    context: ssl.SSLContext | None,
    server_hostname: str,
) -> ByteStream:
    """The last step of ``connect_tcp(..., ssl=context)`` on every backend.

    Wrap ``stream`` in TLS and complete the handshake; with no context, return it as it is.
    """
    if context is None:
        return stream
    return await TLSStream.wrap(executor, stream, context, server_hostname=server_hostname)


def secure_listener(
    executor: Executor, listener: Listener, context: ssl.SSLContext | None
) -> Listener:
    """The last step of ``listen_tcp(..., ssl=context)`` on every backend.

    Every accepted stream completes a TLS handshake first; with no context, the
    listener as it is.
    """
    return listener if context is None else TLSListener(executor, listener, context)
