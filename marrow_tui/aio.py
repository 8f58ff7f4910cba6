"""Waiting with a bound, without losing a cancellation.

On Python 3.11, `asyncio.wait_for` returns the result when the awaited thing finishes in the
same loop step as the task is cancelled: the cancellation is swallowed, and a loop that is
being stopped goes on for ever. `asyncio.timeout` keeps both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[object], seconds: float | None) -> bool:
    """Await `awaitable` for at most `seconds` (None: no bound); False when the bound passed."""
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        return False
    return True


async def bounded(awaitable: Awaitable[T], seconds: float | None) -> T:
    """The result of `awaitable`, or TimeoutError after `seconds` (None: no bound)."""
    async with asyncio.timeout(seconds):
        return await awaitable
