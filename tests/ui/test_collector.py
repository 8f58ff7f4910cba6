"""Full garbage collections wait for the operator's pause (ui/collector.py)."""

from __future__ import annotations

import gc

from marrow_tui.ui.collector import IDLE_FOR, RARER, IdleCollector

from tests.support.console_app import ConsoleApp, filled


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def due(default: tuple[int, int, int]) -> None:
    """As many middle collections as make a full one due by the default rule."""
    for _ in range(default[2] + 1):
        gc.collect(1)


def test_a_due_full_collection_waits_for_a_pause_in_the_input() -> None:
    clock = Clock()
    collector = IdleCollector(clock)
    default = gc.get_threshold()
    collector.start()
    try:
        assert gc.get_threshold() == (default[0], default[1], default[2] * RARER)
        gc.collect()
        assert not collector.check()  # nothing due
        due(default)
        collector.saw_input()
        clock.now += IDLE_FOR / 2
        assert not collector.check()  # due, but the operator is typing
        clock.now += IDLE_FOR
        assert collector.check() and collector.collections == 1
        assert gc.get_count()[2] == 0 and not collector.check()  # done: nothing due
    finally:
        collector.stop()
    assert gc.get_threshold() == default


async def test_the_console_hears_input_and_puts_collections_off() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        before = app.collector.last_input
        await pilot.press("2")
        assert app.collector.last_input > before
        assert gc.get_threshold()[2] == app.collector._default[2] * RARER  # type: ignore[index]
