"""Bounded waits keep a cancellation that arrives as the wait ends (3.11's wait_for loses it)."""

from __future__ import annotations

import asyncio

import pytest

from marrow_tui.aio import bounded, within


async def test_a_cancel_that_meets_the_end_of_the_wait_is_kept() -> None:
    event = asyncio.Event()
    waiting = asyncio.ensure_future(within(event.wait(), 30))
    await asyncio.sleep(0)  # it waits now
    event.set()
    waiting.cancel()  # in the same loop step as the event
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


async def test_within_says_whether_the_bound_passed() -> None:
    event = asyncio.Event()
    assert await within(event.wait(), 0.01) is False
    event.set()
    assert await within(event.wait(), 0.01) is True
    assert await within(event.wait(), None) is True


async def test_bounded_returns_the_result_or_times_out() -> None:
    async def answer() -> int:
        return 42

    assert await bounded(answer(), 1) == 42
    with pytest.raises(TimeoutError):
        await bounded(asyncio.Event().wait(), 0.01)


def test_the_project_waits_with_these_helpers_not_wait_for() -> None:
    from pathlib import Path

    import marrow_tui

    root = Path(marrow_tui.__file__).parent
    users = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if "asyncio.wait_for(" in p.read_text(encoding="utf-8")]
    assert users == []
