"""Argument checks shared by the adapter's public methods, each naming the fix.

The messages match the native backends' word for word, so that a program moved between
backends sees the same errors: the checks they share are the native backends' own,
re-exported here.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from anyrt import FileDescriptorLike
from anyrt._validate import (
    check_coroutine,
    check_deadline,
    check_port,
    check_positive_int,
    check_seconds,
)

__all__ = [
    "check_coroutine",
    "check_deadline",
    "check_host",
    "check_name",
    "check_port",
    "check_positive_int",
    "check_seconds",
    "fileno",
]


def check_name(name: object, coro: Coroutine[Any, Any, Any], method: str) -> str:
    """Return the task name: ``name``, or the coroutine's qualified name when None."""
    if name is None:
        return str(getattr(coro, "__qualname__", None) or repr(coro))
    if not isinstance(name, str):
        coro.close()
        raise TypeError(f"{method}() name must be a str, not {type(name).__name__}")
    return name


def check_host(host: object) -> str:
    """Return ``host`` if it is a str, else raise `TypeError`."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return host


def fileno(sock: FileDescriptorLike) -> int:
    """Return the file descriptor of ``sock`` (an int, or anything with ``fileno()``)."""
    if isinstance(sock, int) and not isinstance(sock, bool):
        fd = sock
    else:
        get = getattr(sock, "fileno", None)
        if get is None:
            raise TypeError(
                f"expected a file descriptor or an object with fileno(), not {type(sock).__name__}"
            )
        fd = get()
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd} (the socket is closed?)")
    return int(fd)
