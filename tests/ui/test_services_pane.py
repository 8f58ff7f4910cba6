"""The Services pane: what it shows, and that its keys send the right frames (the verbs are
stand-ins here; tests/services/test_hosting.py runs the real supervisor)."""

from __future__ import annotations

from typing import Any

from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal

from tests.support.console_app import ConsoleApp, filled, until


def stand_ins(app: ConsoleApp) -> list[dict[str, Any]]:
    """Serve the services verbs with stand-ins that record what the console sent."""
    sent: list[dict[str, Any]] = []
    decider = app.runtime.decider
    assert decider is not None

    def record(reply: str) -> Any:
        def serve(call: Any) -> None:
            sent.append(dict(call.frame))
            call.reply(reply, "ok", name=call.frame.get("name"),
                       graph="wave 1\n  db\n  cache\nwave 2\n  api  <- db, cache")
        return serve

    for verb, reply in (("service_start", "service_starting"),
                        ("service_stop", "service_stopping"),
                        ("service_restart", "service_restarting"),
                        ("services_list", "services")):
        decider.register(verb, record(reply))
    return sent


async def test_the_pane_shows_each_service_and_its_keys_act() -> None:
    app = ConsoleApp(seeded=False, services=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and app.main.pane == "services"
        sent = stand_ins(app)
        table = app.main.tables["services"]
        # as the config lists them, up for as long as `marrow-tui services` says
        rows = [table.cells(key) for key in table.keys]
        assert [(row[0], row[5]) for row in rows if row] == [
            ("db", "2m"), ("cache", ""), ("api", "1h00m")]
        await pilot.press("down")  # cache
        await pilot.press("u")
        await until(pilot, lambda: sent)
        assert sent[-1]["type"] == "service_start" and sent[-1]["name"] == "cache"
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await until(pilot, lambda: sent[-1]["type"] == "service_stop")
        await pilot.press("R", "y")
        await until(pilot, lambda: sent[-1]["type"] == "service_restart")
        await pilot.press("G")
        await until(pilot, lambda: isinstance(app.screen, DetailModal))


async def test_services_keys_do_not_leak_into_other_panes() -> None:
    app = ConsoleApp(services=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        sent = stand_ins(app)
        await pilot.press("2", "u", "x")  # on Claims: u is nothing, x is not a service stop
        await pilot.pause()
        assert not sent
