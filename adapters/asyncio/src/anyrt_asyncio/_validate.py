"""Argument checks shared by the adapter's public methods, each naming the fix.

The messages match the native backends' word for word, so that a program moved between
backends sees the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from types import CoroutineType
from typing import Any

from anyrt import FileDescriptorLike


def check_coroutine(coro: object, method: str) -> None:
    """Raise a `TypeError` naming the fix unless ``coro`` is a coroutine object."""
    if type(coro) is CoroutineType or isinstance(coro, Coroutine):
        return
    if callable(coro):
        hint = f" Did you mean {method}({getattr(coro, '__name__', 'fn')}(...)) - call it first?"
    else:
        hint = ""
    raise TypeError(f"{method}() takes a coroutine object, not {type(coro).__name__}.{hint}")


def check_name(name: object, coro: Coroutine[Any, Any, Any], method: str) -> str:
    """Return the task name: ``name``, or the coroutine's qualified name when None."""
    if name is None:
        return str(getattr(coro, "__qualname__", None) or repr(coro))
    if not isinstance(name, str):
        coro.close()
        raise TypeError(f"{method}() name must be a str, not {type(name).__name__}")
    return name


def check_seconds(seconds: object, where: str) -> float:
    """Return ``seconds`` as a float, or raise if it is not a non-negative number.

    Raises:
        TypeError: not a real number.
        ValueError: negative or NaN.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{where} takes a number of seconds, not {type(seconds).__name__}")
    if math.isnan(seconds):
        raise ValueError(f"{where} takes a number of seconds, got NaN")
    if seconds < 0:
        raise ValueError(f"{where} takes a non-negative number of seconds, got {seconds!r}")
    return float(seconds)


def check_deadline(deadline: object, where: str) -> float:
    """Return ``deadline`` as a float, or raise if it is not a real, non-NaN number."""
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(f"{where} takes a deadline in seconds, not {type(deadline).__name__}")
    if math.isnan(deadline):
        raise ValueError(f"{where} takes a deadline in seconds, got NaN")
    return float(deadline)


def check_positive_int(value: object, where: str) -> int:
    """Return ``value`` if it is an int of at least 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{where} must be at least 1, got {value}")
    return value


def check_port(port: object) -> int:
    """Return ``port`` if it is an int in 0-65535, else raise `TypeError`/`OverflowError`."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, got {port}")
    return port


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
