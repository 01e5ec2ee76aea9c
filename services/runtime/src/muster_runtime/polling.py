"""Deadline-bounded polling for eventually consistent state (never sleep and hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(TimeoutError):
    """The awaited condition did not hold before the deadline."""


def _timeout_message(
    what: str, timeout: float, last: object, last_error: BaseException | None
) -> str:
    message = f"timed out after {timeout:.1f}s waiting for {what}"
    if last_error is not None:
        message += f" (last error: {type(last_error).__name__}: {last_error})"
    elif last is not None and last is not False:
        message += f" (last value: {last!r})"
    return message


def wait_until(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check`` until it returns a truthy value, and return that value.

    Exceptions listed in ``ignore`` count as "not yet"; anything else propagates.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            last, last_error = value, None
            if value:
                return value
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise PollTimeout(_timeout_message(what, timeout, last, last_error))
        time.sleep(interval)


async def async_wait_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Async twin of :func:`wait_until`: await ``check`` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last: object = None
    last_error: BaseException | None = None
    while True:
        try:
            value = await check()
            last, last_error = value, None
            if value:
                return value
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise PollTimeout(_timeout_message(what, timeout, last, last_error))
        await asyncio.sleep(interval)
