"""Pilot tests: every console action, checked by its effect on the runtime, not the screen."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from textual.widgets import Input

from marrow_tui.ui.modals.confirm import ChoiceModal, ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal, HelpModal
from marrow_tui.ui.modals.form import FormModal

from tests.support.console_app import ConsoleApp, filled

SIZE = (100, 30)


async def settle(pilot, app: ConsoleApp) -> None:  # type: ignore[no-untyped-def]
    """Wait until the fills are done and the screen has caught up (no fixed sleeps)."""
    await filled(pilot, app)
    await pilot.pause()


async def select_row(pilot, app: ConsoleApp, pane: str, key: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press({"agents": "1", "claims": "2", "board": "3"}[pane])
    await pilot.pause()
    table = app.main.tables[pane]  # type: ignore[union-attr]
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


async def test_the_operator_joins_the_hub_as_a_named_participant() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        agent = app.runtime.state.presence.online["operator/test"]
        assert agent.operator
        assert app.main.tables["claims"].row_count == 3  # type: ignore[union-attr]
    assert "operator/test" not in app.runtime.state.presence.online


async def test_handoff_moves_the_lease_to_the_chosen_agent() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select_row(pilot, app, "claims", "T1")
        await pilot.press("h")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ChoiceModal)
        assert [name for name, _ in modal.choices] == ["demo/bob", "demo/carol"]
        await pilot.press("enter")
        await pilot.pause()
        claim = app.runtime.state.claims.get("T1")
        assert claim is not None and claim.owner == "demo/bob"
        assert claim.epoch > 1 and claim.epoch == app.runtime.state.claims.epoch  # a new fence
        assert claim.checkpoint == "step=2 tests written"


async def test_release_keeps_the_checkpoint_and_force_release_drops_it() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select_row(pilot, app, "claims", "T1")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "kept for whoever claims the task next" in app.screen.body
        await pilot.press("n")
        await pilot.pause()
        assert app.runtime.state.claims.get("T1") is not None  # cancelled: nothing changed
        await pilot.press("r", "y")
        await pilot.pause()
        assert app.runtime.state.claims.get("T1") is None
        assert app.runtime.state.claims.retained_checkpoints["T1"] == "step=2 tests written"
        await select_row(pilot, app, "claims", "T2")
        await pilot.press("R")
        await pilot.pause()
        assert "Its checkpoint" not in app.screen.body  # T2 has none to lose
        await pilot.press("y")
        await pilot.pause()
        assert app.runtime.state.claims.get("T2") is None
        assert "T2" not in app.runtime.state.claims.retained_checkpoints


async def test_extend_moves_the_expiry_without_a_new_epoch() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        before = app.runtime.state.claims.get("T2")
        await select_row(pilot, app, "claims", "T2")
        await pilot.press("e")
        await pilot.pause()
        after = app.runtime.state.claims.get("T2")
        assert after is not None and before is not None
        assert after.epoch == before.epoch
        assert after.lease_expires_at == app.clock() + 3600


async def test_declare_and_change_status_on_the_board() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        for field, value in (("task_id", "P4"), ("title", "write docs"), ("depends_on", "P2"),
                             ("suggested_owner", "demo/carol")):
            app.screen.query_one(f"#{field}", Input).value = value
        app.screen.query_one("#description", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        task = app.runtime.state.board.tasks["P4"]
        assert (task["title"], task["depends_on"], task["created_by"]) == (
            "write docs", ["P2"], "operator/test")
        await select_row(pilot, app, "board", "P2")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceModal)
        app.screen.query_one("OptionList").highlighted = 1  # in_progress
        await pilot.press("enter")
        await pilot.pause()
        assert app.runtime.state.board.tasks["P2"]["status"] == "in_progress"


async def test_a_form_with_a_missing_field_is_not_sent() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        app.screen.query_one("#description", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert len(app.runtime.state.board.tasks) == 3


async def test_message_goes_to_the_selected_agent() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select_row(pilot, app, "agents", "demo/bob")
        await pilot.press("m")
        await pilot.pause()
        assert app.screen.query_one("#target", Input).value == "demo/bob"
        app.screen.query_one("#text", Input).value = "please pick up T2"
        app.screen.query_one("#text", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        last = app.runtime.state.chat.history[-1]
        assert (last["sender"], last["target"], last["payload"]) == (
            "operator/test", "demo/bob", "please pick up T2")


async def test_filter_narrows_the_pane_and_esc_closes_it() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("2", "slash")
        await pilot.press(*"carol")
        async with asyncio.timeout(5):
            while app.main.tables["claims"].row_count != 1:  # type: ignore[union-attr]
                await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query_one("#filter").has_class("-shown")


async def test_enter_opens_a_detail_view_with_the_dependency_chain() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select_row(pilot, app, "board", "P3")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailModal)
        text = str(app.screen.body)
        assert "P2  [open]" in text and "P1  [done]" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailModal)


async def test_help_lists_the_keys_and_quit_asks_first() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        assert "Hand off" in str(app.screen.body)
        await pilot.press("escape", "q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0


async def test_lease_keys_are_hidden_when_no_lease_is_selected() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("3")
        await pilot.pause()
        assert app.main.check_action("handoff", ()) is False  # type: ignore[union-attr]
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceModal)
        assert app.runtime.state.claims.get("T1").owner == "demo/alice"  # type: ignore[union-attr]


async def test_refusals_reach_the_operator_as_a_toast() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.session.send(type="handoff", task_id="T9", to_agent="demo/bob")  # type: ignore[union-attr]
        await pilot.pause()
        assert any("not currently claimed" in n.message for n in app._notifications)


async def test_expiry_and_readiness_are_notified_once() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.clock.advance(121)
        app.runtime.tick()
        app.session.send(type="ledger_task_update", task_id="P2", status="done")  # type: ignore[union-attr]
        async with asyncio.timeout(5):
            while len(app._notifications) < 2:
                await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert "Lease on T2 held by demo/bob expired" in messages
        assert "Task P3 is ready" in messages
        app.runtime.tick()
        await pilot.pause()
        assert len(app._notifications) == 2


def test_no_default_binding_on_keys_that_tmux_and_agents_use() -> None:
    code = (
        "from marrow_tui.ui.app import MarrowApp\n"
        "from marrow_tui.ui.screens.main import MainScreen\n"
        "from marrow_tui.ui.modals.confirm import ConfirmModal, ChoiceModal\n"
        "from marrow_tui.ui.modals.detail import DetailModal\n"
        "from marrow_tui.ui.modals.form import FormModal\n"
        "keys = set()\n"
        "for cls in (MarrowApp, MainScreen, ConfirmModal, ChoiceModal, FormModal, DetailModal):\n"
        "    for b in cls.BINDINGS:\n"
        "        keys.update(k.strip() for k in b.key.split(','))\n"
        "print(sorted(keys & {'ctrl+b', 'ctrl+s', 'ctrl+q', 'ctrl+z'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_leaving_with_work_is_notified_only_after_a_real_session() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        runtime, decider = app.runtime, app.runtime.decider
        runtime.submit(decider.joined("cli/once", ()))  # type: ignore[union-attr]
        runtime.handle("cli/once", {"type": "claim", "task_id": "T8", "paths": ["x"]}, None)
        runtime.submit(decider.left("cli/once"))  # type: ignore[union-attr]
        app.clock.advance(30)
        runtime.submit(decider.left("demo/alice"))  # type: ignore[union-attr]
        async with asyncio.timeout(5):
            while not app._notifications:
                await pilot.pause()
        await runtime.settled()
        await pilot.pause(0.2)
        assert [n.message for n in app._notifications] == ["demo/alice left holding 1 lease"]


async def test_a_big_table_fills_pages_and_keeps_the_selection_on_its_row() -> None:
    app = ConsoleApp(seeded=False)
    async with app.run_test(size=SIZE) as pilot:
        runtime = app.runtime
        runtime.state.claims.max_claims_per_agent = 0
        runtime.submit(runtime.decider.joined("load/a", ()))  # type: ignore[union-attr]
        for n in range(2000):
            runtime.handle("load/a", {"type": "claim", "task_id": f"K{n:05d}",
                                      "paths": [f"p/{n}"]}, None)
        await runtime.settled()
        table = app.main.tables["claims"]  # type: ignore[union-attr]
        async with asyncio.timeout(10):
            while table.row_count != 2000:
                await pilot.pause()
        await pilot.press("2", "pagedown", "pagedown")
        await pilot.pause()
        chosen = table.selected_key
        assert chosen is not None and chosen > "K00020"
        # rows appear and vanish above the selection: it stays on the same lease
        runtime.handle("load/a", {"type": "release", "task_id": "K00000"}, None)
        runtime.handle("load/a", {"type": "claim", "task_id": "A0", "paths": ["a0"]}, None)
        await runtime.settled()
        async with asyncio.timeout(5):
            while "A0" not in table.keys:
                await pilot.pause()
        assert table.selected_key == chosen
        assert "K00000" not in table.keys and table.row_count == 2000
        await pilot.press("end")
        await pilot.pause()
        assert table.selected_key == "K01999"
