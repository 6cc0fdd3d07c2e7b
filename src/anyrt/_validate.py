"""Argument checks shared by the public API, each naming the fix."""

from __future__ import annotations

import math
from collections.abc import Coroutine
from types import CoroutineType


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


def check_positive_int(value: object, where: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int of at least ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where} must be at least {minimum}, got {value}")
    return value


def check_port(port: object) -> int:
    """Return ``port`` if it is an int in 0-65535, else raise `TypeError`/`OverflowError`."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, got {port}")
    return port


def check_address(address: object) -> tuple[str, int]:
    """Return ``address`` if it is a ``(host, port)`` tuple of str and int, else raise."""
    if (
        not isinstance(address, tuple)
        or len(address) != 2
        or not isinstance(address[0], str)
        or isinstance(address[1], bool)
        or not isinstance(address[1], int)
    ):
        raise TypeError(f"address must be a (host, port) tuple of str and int, not {address!r}")
    return address[0], check_port(address[1])


def check_coroutine(coro: object, method: str) -> None:
    """Raise a `TypeError` naming the fix unless ``coro`` is a coroutine object."""
    if type(coro) is CoroutineType:
        return
    if isinstance(coro, Coroutine):
        return
    if callable(coro):
        hint = f" Did you mean {method}({getattr(coro, '__name__', 'fn')}(...)) - call it first?"
    else:
        hint = ""
    raise TypeError(f"{method}() takes a coroutine object, not {type(coro).__name__}.{hint}")
