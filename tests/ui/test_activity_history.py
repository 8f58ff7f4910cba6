"""After a restart the Activity pane shows the recent past from the event log, the events of
the start itself included, and a line saying what the start restored."""

from __future__ import annotations

import tempfile
from pathlib import Path

from marrow_tui.runtime import Runtime, RuntimeOptions

from tests.support.console_app import ConsoleApp, T0, filled, seed, until, utc
from tests.support.hub import FakeClock


async def earlier_run(state_dir: Path) -> None:
    """A runtime that ran the seeded team and stopped cleanly (writing its snapshot)."""
    runtime = Runtime(RuntimeOptions(state_dir=state_dir), clock=FakeClock(T0))
    await runtime.start()
    seed(runtime)
    await runtime.settled()
    await runtime.stop()


def lines(app: ConsoleApp) -> list[str]:
    assert app.main is not None
    return [entry.text for entry in app.main.activity.lines_kept]


async def test_activity_shows_the_past_and_the_starts_own_events_after_a_restart() -> None:
    utc()
    state_dir = Path(tempfile.mkdtemp(prefix="marrow-restart-")) / "state"
    await earlier_run(state_dir)
    # Back 1000 s later: bob's 120 s lease ran out while nobody watched.
    app = ConsoleApp(seeded=False, state_dir=state_dir, clock=FakeClock(T0 + 1000))
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        await pilot.press("4")
        shown = await until(pilot, lambda: any(t.startswith("start ") for t in lines(app))
                            and lines(app))
        assert any(t.startswith("claim     T1 by demo/alice") for t in shown)
        assert any("demo/alice -> all: login flow is in review" in t for t in shown)
        assert any(t.startswith("expire    T2 held by demo/bob") for t in shown)  # the start's
        start = next(t for t in shown if t.startswith("start "))
        assert start.startswith("start     marrow-tui started (restored the snapshot at event ")
        assert start.endswith(" + 0 events replayed)")
        # in order: the earlier run, the restart, what the start itself did
        position = {kind: next(i for i, t in enumerate(shown) if t.startswith(kind))
                    for kind in ("claim ", "start ", "expire ")}
        assert position["claim "] < position["start "] < position["expire "]
        rendered = "\n".join(line.text for line in app.main.activity.lines)  # type: ignore[union-attr]
        assert "claim     T1 by demo/alice" in rendered and "start     marrow-tui started" in rendered
