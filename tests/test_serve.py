"""`Listener.serve` never leaves an accepted connection open.

A handler task cancelled before its first step (as every task is when the runtime
closes) never runs the code that would close its stream; the serve loop closes such
streams when it ends.
"""

from __future__ import annotations

from typing import Any

import anyrt
from anyrt._listener import serve_listener


def test_a_stream_whose_handler_never_started_is_closed_when_serve_ends() -> None:
    handled: list[anyrt.ByteStream] = []

    async def handler(stream: anyrt.ByteStream) -> None:
        handled.append(stream)

    async def main(rt: anyrt.Runtime) -> bytes:
        def spawn_cancelled(coro: Any, *, name: str) -> anyrt.Task[Any]:
            task = rt.spawn(coro, name=name)
            task.cancel()  # before its first step: the handler never runs
            return task

        listener = await rt.listen_tcp("127.0.0.1", 0)
        server = rt.spawn(serve_listener(listener, spawn_cancelled, handler))
        client = await rt.connect_tcp(*listener.address)
        await rt.sleep(0.1)  # accepted, and its handler's task cancelled
        await listener.aclose()  # serve ends...
        await server
        data = await client.receive()  # ...and closed the stream: EOF, not a hang
        await client.aclose()
        return data

    assert anyrt.run(main, backend="single-threaded") == b""
    assert handled == []
