"""A real asyncio library through the shim: httpx, from a work-stealing task.

The server is HTTP/1.1 written on anyrt streams (``listen_tcp`` + ``serve``) and runs on
the work-stealing workers; the client is ``httpx.AsyncClient``, which only knows asyncio
(through anyio), awaited with ``anyrt_asyncio.compat.run`` from a work-stealing task.
"""

from __future__ import annotations

import json

import httpx
from anyrt_asyncio import compat

import anyrt


async def http_server(stream: anyrt.ByteStream) -> None:
    """Serve HTTP/1.1 requests on one connection (keep-alive), echoing what it got."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive()
            if not chunk:
                return  # the client closed the connection between requests
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            buffer += await stream.receive()
        body, buffer = buffer[:length], buffer[length:]
        reply = json.dumps({"method": method, "path": target, "body": body.decode()}).encode()
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(reply)}\r\n\r\n".encode()
            + reply
        )
        if headers.get("connection", "").lower() == "close":
            return


async def fetch_all(base_url: str) -> list[dict[str, str]]:
    """asyncio-only code: three requests on one pooled connection."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        first = await client.get("/hello")
        second = await client.post("/echo", content=b"ping")
        third = await client.get("/bye", headers={"connection": "close"})
    return [response.raise_for_status().json() for response in (first, second, third)]


async def main(rt: anyrt.Runtime) -> list[dict[str, str]]:
    async with await rt.listen_tcp("127.0.0.1", 0) as listener:
        server = rt.spawn(listener.serve(http_server))
        host, port = listener.address
        replies = await compat.run(rt, fetch_all(f"http://{host}:{port}"))
        server.cancel()
    return replies


def test_httpx_from_a_work_stealing_task() -> None:
    replies = anyrt.run(main, backend="work-stealing", workers=2)
    assert replies == [
        {"method": "GET", "path": "/hello", "body": ""},
        {"method": "POST", "path": "/echo", "body": "ping"},
        {"method": "GET", "path": "/bye", "body": ""},
    ]


def test_httpx_in_place_on_the_asyncio_backend() -> None:
    replies = anyrt.run(main, backend="asyncio")
    assert [reply["path"] for reply in replies] == ["/hello", "/echo", "/bye"]
