"""The one table of actions: bindings, hints, help and palette are made from it; keys remap by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from marrow_tui.ui.actions import (
    ACTIONS,
    BY_ID,
    GLOBAL,
    hint_text,
    keymap_problems,
    shown_key,
    textual_keymap,
)
from marrow_tui.ui.commands import MarrowCommands
from marrow_tui.ui.modals.confirm import ChoiceModal, ConfirmModal
from marrow_tui.ui.modals.detail import HelpModal
from marrow_tui.ui.screens.main import MainScreen

from tests.support.console_app import ConsoleApp, filled

SIZE = (110, 32)


def test_the_screens_bindings_are_the_table() -> None:
    made = [(b.id, b.key, b.action, b.show) for b in MainScreen.BINDINGS]  # type: ignore[union-attr]
    assert made == [(a.id, a.key, a.run, a.show) for a in ACTIONS]
    assert len(BY_ID) == len(ACTIONS)  # ids are unique


def test_the_default_keys_have_no_problems() -> None:
    assert keymap_problems({}) == []


def test_keymap_problems_name_unknown_ids_and_clashes_in_one_pane() -> None:
    assert keymap_problems({"claims.nothing": "z"}) == [
        ("claims.nothing", "'claims.nothing' is not an action of the console")]
    [(_, message)] = keymap_problems({"claims.handof": "z"})
    assert message.endswith("(did you mean claims.handoff?)")
    # r is the Claims pane's release already
    [(action_id, message)] = keymap_problems({"claims.handoff": "r"})
    assert action_id == "claims.handoff" and "claims.release" in message
    # q quits from every pane
    [(action_id, message)] = keymap_problems({"claims.handoff": "q"})
    assert action_id == "claims.handoff" and "app.quit" in message
    # an action that runs anywhere (answer) clashes with every pane's
    problems = keymap_problems({"steering.answer": "x"})
    assert [action_id for action_id, _ in problems] == ["steering.answer"] * 3
    # other panes may share a key, and two keys may swap
    assert keymap_problems({"claims.handoff": "x"}) == []
    assert keymap_problems({"claims.handoff": "r", "claims.release": "h"}) == []


def test_a_remapped_key_keeps_the_other_panes_on_the_old_one() -> None:
    keymap = textual_keymap({"sessions.stop": "X"})
    assert keymap["sessions.stop"] == "X"
    assert keymap["issues.cancel"] == "x" and keymap["services.stop"] == "x"
    assert "claims.handoff" not in keymap


async def test_hints_are_the_panes_table_keys() -> None:
    app = ConsoleApp(sessions=True, asks=True, issues=True, services=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        main = app.main
        assert main is not None
        for name in ("steering", "agents", "claims", "board", "activity", "sessions",
                     "issues", "services"):
            await pilot.press(shown_key(BY_ID[f"pane.{name}"], {}))
            await pilot.pause()
            pane = main.panes[name]
            hint = pane.hint()
            assert main.query_one(f"#{name}-pane").border_subtitle == hint_text(hint, {})
            assert hint, name
            for item in hint:
                action = BY_ID[item[0] if isinstance(item, tuple) else item]
                assert action.pane in (name, GLOBAL) or action.anywhere


async def test_help_is_the_table() -> None:
    app = ConsoleApp(issues=True, services=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, HelpModal)
        body = modal.body.plain  # type: ignore[union-attr]
        for action in ACTIONS:
            if action.help:
                assert f"{shown_key(action, {})}  {action.help}\n" in body


async def palette(app: ConsoleApp, allowed: bool = False) -> list[tuple[str, str]]:
    assert app.main is not None
    provider = MarrowCommands(app.main)
    if allowed:  # every action, whatever is selected
        app.main.check_action = lambda action, parameters: True  # type: ignore[method-assign]
    return [(str(hit.text), str(hit.help)) async for hit in provider.discover()]


async def test_the_palette_offers_every_action_with_a_description() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        entries = await palette(app, allowed=True)
        assert entries == [(a.description, f"key: {shown_key(a, {})}")
                           for a in ACTIONS if a.description]
        texts = [text for text, _ in entries]
        for once_missing in ("steering.answer", "steering.cancel", "steering.goto", "pane.steering"):
            assert BY_ID[once_missing].description in texts


async def test_the_palette_leaves_out_what_cannot_run_now() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        texts = [text for text, _ in await palette(app)]
        assert BY_ID["pane.steering"].description in texts
        assert BY_ID["steering.answer"].description not in texts  # nobody is waiting


async def test_remapped_keys_act_and_are_shown_in_hints_help_and_palette() -> None:
    keys = {"claims.handoff": "H", "sessions.stop": "X"}
    app = ConsoleApp(issues=True, keys=keys)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        main = app.main
        assert main is not None
        await pilot.press("2")
        await pilot.pause()
        assert main.query_one("#claims-pane").border_subtitle.startswith("H hand off · r ")
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceModal)
        await pilot.press("H")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceModal)
        await pilot.press("escape")
        await pilot.pause()
        assert ("Hand off the selected lease to an online agent", "key: H") in \
            await palette(app)
        # x still cancels an issue: moving the Sessions pane's stop left the others on x
        await pilot.press("6")
        await pilot.pause()
        issues = main.tables["issues"]
        issues.move_cursor(next(i for i, k in enumerate(issues.keys) if k.endswith("DEMO-1")))
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and app.screen.title_text == "Cancel DEMO-1?"
        await pilot.press("n")
        await pilot.press("question_mark")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, HelpModal)
        body = modal.body.plain  # type: ignore[union-attr]
        assert "H  Hand off\n" in body and "X  Stop the run (sessions)\n" in body


def test_a_clashing_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="claims.release"):
        ConsoleApp(keys={"claims.handoff": "r"})




def test_every_action_id_is_documented_with_its_key() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [a.id for a in ACTIONS
               if f"| `{a.id}` | `{a.key_display or a.key}` |" not in doc]
    assert missing == []
