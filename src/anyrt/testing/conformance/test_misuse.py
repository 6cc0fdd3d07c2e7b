"""An object of one runtime awaited in a task of another: a precise error, never a hang."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import anyrt


def _two(make_runtime: Callable[..., anyrt.Runtime]) -> tuple[anyrt.Runtime, anyrt.Runtime]:
    return make_runtime(), make_runtime()


def test_a_sleep_of_another_runtime_raises(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    owner, other = _two(make_runtime)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="runtime"):
            await owner.sleep(0.001)

    other.block_on(main())


def test_an_event_of_another_runtime_raises(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    owner, other = _two(make_runtime)
    event = anyrt.Event(owner)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="runtime"), other.fail_after(5):
            await event.wait()

    other.block_on(main())


def test_a_cancel_scope_of_another_runtime_raises(
    make_runtime: Callable[..., anyrt.Runtime],
) -> None:
    owner, other = _two(make_runtime)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="runtime"), owner.move_on_after(1):
            pass

    other.block_on(main())


def test_a_stream_of_another_runtime_raises(make_runtime: Callable[..., anyrt.Runtime]) -> None:
    owner, other = _two(make_runtime)

    async def connect() -> tuple[anyrt.Listener, anyrt.ByteStream, anyrt.ByteStream]:
        listener = await owner.listen_tcp("127.0.0.1", 0)
        client = await owner.connect_tcp(*listener.address)
        server = await listener.accept()
        return listener, client, server

    listener, client, server = owner.block_on(connect())

    async def main() -> None:
        with pytest.raises(RuntimeError, match="runtime"), other.fail_after(5):
            await client.receive()

    try:
        other.block_on(main())
    finally:

        async def close() -> None:
            for resource in (client, server, listener):
                await resource.aclose()

        owner.block_on(close())
