"""Dialogs at the size the README shows (80x24) and smaller: they scroll and keep their buttons
in sight; focus goes where the typing belongs; warnings come before confirming; each dialog
says what will happen."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widget import Widget
from textual.widgets import Button, Input

from marrow_tui.ui.actions import ACTIONS, BY_ID, help_rows, shown_key
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal, HelpModal
from marrow_tui.ui.modals.form import FormModal

from tests.support.console_app import ConsoleApp, SessionsConsoleApp, filled, until

TMUX = (80, 24)
SMALLER = (80, 20)


def shown(app: Any) -> str:
    """What the terminal shows now, as text (what is scrolled or clipped away is not in it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def in_sight(app: Any, widget: Widget) -> bool:
    """The whole widget is on the screen and inside its dialog's box."""
    box = app.screen.query_one(".box")
    return (app.screen.region.contains_region(widget.region)
            and box.region.contains_region(widget.region))


async def select_row(pilot: Any, app: ConsoleApp, pane: str, key: str) -> None:
    await pilot.press(shown_key(BY_ID[f"pane.{pane}"], {}))
    await pilot.pause()
    assert app.main is not None
    table = app.main.tables[pane]
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


# ---- 80x24: help and dialogs scroll and keep their buttons -----------------------------------


@pytest.mark.parametrize("size", [TMUX, SMALLER])
async def test_help_scrolls_to_its_last_key(size: tuple[int, int]) -> None:
    app = ConsoleApp(issues=True, services=True)
    async with app.run_test(size=size) as pilot:
        await filled(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        rows = help_rows({}, issues=True, services=True)
        key, text = rows[-1]
        assert f"{key}  {text}" not in shown(app)  # more keys than lines: it has to scroll
        await pilot.press("end")
        await pilot.pause()
        assert f"{key}  {text}" in shown(app)
        assert "Esc closes" in shown(app)
        await pilot.press("home")
        await pilot.pause()
        first_key, first_text = rows[0]
        assert f"{first_key}  {first_text}" in shown(app)


@pytest.mark.parametrize("size", [TMUX, SMALLER])
async def test_the_answer_dialog_keeps_send_cancel_and_the_default_in_sight(
        size: tuple[int, int]) -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=size) as pilot:
        await filled(pilot, app)
        await pilot.press("a")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, AnswerModal)
        for button in ("#send", "#cancel"):
            assert in_sight(app, modal.query_one(button))
        text = shown(app)
        assert "Send (ctrl+s)" in text and "Answer later (esc)" in text
        assert "If nobody answers in time: mock" in text
        assert "The login tests need a real SMTP server" in text  # the question, too
        await pilot.press("tab", "tab")  # past the choices, to the text box
        await pilot.press(*"use staging")
        assert in_sight(app, modal.query_one("#send"))
        await pilot.press("ctrl+s")
        book = app.runtime.state.steering
        await until(pilot, lambda: not book.get("S1").open)  # type: ignore[union-attr]
        assert book.get("S1").answer == "use staging"  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [TMUX, SMALLER, (110, 32)])
async def test_a_form_keeps_its_buttons_in_sight(size: tuple[int, int]) -> None:
    app = ConsoleApp()
    async with app.run_test(size=size) as pilot:
        await filled(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, FormModal)
        for button in modal.query(Button):
            assert in_sight(app, button)
        assert "Task id" in shown(app)  # the focused field's label is not scrolled away
        modal.query_one("#description", Input).focus()  # the last field scrolls into view
        await until(pilot, lambda: in_sight(app, modal.query_one("#description", Input)))
        for button in modal.query(Button):
            assert in_sight(app, button)


async def test_the_tab_bar_fits_80_columns_with_every_pane() -> None:
    app = ConsoleApp(sessions=True, issues=True, services=True)
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        tabs = [tab for tab in app.main.query(".tab") if tab.display]
        assert len(tabs) == 8
        assert all(tab.region.right <= TMUX[0] for tab in tabs)
        bar = shown(app).split("\n")[1]
        for number in range(8):
            assert f" {number} " in bar
        await pilot.press("3")
        await pilot.pause()
        assert " 3 Blackboard " in shown(app).split("\n")[1]  # the shown pane keeps its name


async def test_a_wide_enough_tab_bar_names_every_pane() -> None:
    app = ConsoleApp(sessions=True, issues=True, services=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        bar = shown(app).split("\n")[1]
        for name in ("Steering", "Agents", "Claims", "Blackboard", "Activity", "Sessions",
                     "Issues", "Services"):
            assert name in bar


# ---- focus, refusals and warnings ------------------------------------------------------------


async def test_m_on_an_agent_focuses_the_message_not_the_recipient() -> None:
    app = ConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await select_row(pilot, app, "agents", "demo/bob")
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert app.screen.focused is app.screen.query_one("#text", Input)
        await pilot.press(*"pick up T2", "enter")
        chat = app.runtime.state.chat
        await until(pilot, lambda: chat.history[-1]["payload"] == "pick up T2")
        assert chat.history[-1]["target"] == "demo/bob"


async def test_a_missing_field_is_said_in_the_dialog_and_gets_the_focus() -> None:
    app = ConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await pilot.press("d", *"P9")  # and no title
        modal = app.screen
        assert isinstance(modal, FormModal)
        modal.query_one("#description", Input).focus()
        await pilot.press("enter")  # in the last field: submits
        await pilot.pause()
        assert app.screen is modal
        assert modal.focused is modal.query_one("#title", Input)
        assert "Needed: Title" in shown(app)


async def test_declare_warns_about_a_dependency_nobody_declared_before_declaring() -> None:
    app = ConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        board = app.runtime.state.board
        await pilot.press("d", *"P9", "tab", *"ship it", "tab", *"P1, P7")
        await pilot.click("#submit")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, FormModal)  # not declared yet: it says why first
        assert "P9" not in board.tasks
        assert "P7 is not on the board" in shown(app)
        assert modal.focused is modal.query_one("#depends_on", Input)
        submit = modal.query_one("#submit", Button)
        assert str(submit.label) == "Declare anyway"
        await until(pilot, lambda: not submit.has_class("-active"))  # a press is over
        await pilot.click("#submit")
        await until(pilot, lambda: "P9" in board.tasks)
        assert board.tasks["P9"]["depends_on"] == ["P1", "P7"]


async def test_declare_refuses_a_cycle_in_the_dialog() -> None:
    app = ConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await pilot.press("d", *"P1", "tab", *"design again", "tab", *"P3")
        await pilot.click("#submit")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, FormModal)
        assert "cycle" in shown(app)
        assert modal.focused is modal.query_one("#depends_on", Input)
        submit = modal.query_one("#submit", Button)
        await until(pilot, lambda: not submit.has_class("-active"))
        await pilot.click("#submit")  # a refusal is not a warning: still not sent
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert app.runtime.state.board.tasks["P1"]["title"] == "design the login flow"


async def test_a_task_without_notes_or_dependencies_says_so_plainly() -> None:
    app = ConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await pilot.press("d", *"P0", "tab", *"a lone task", "enter", "enter", "enter", "enter")
        board = app.runtime.state.board
        await until(pilot, lambda: "P0" in board.tasks)
        await select_row(pilot, app, "board", "P0")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailModal)
        body = str(app.screen.body)
        assert "no notes yet" in body and "nothing" in body
        assert "[]" not in body and "(none yet)" not in body and "not declared" not in body


# ---- every dialog says what will happen ----------------------------------------------------


def buttons(app: Any) -> list[str]:
    return [str(button.label) for button in app.screen.query(Button)]


async def test_the_cancel_requests_buttons_say_what_they_do() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert buttons(app) == ["Cancel request (y)", "Keep it (n)"]
        await pilot.press("n")
        await pilot.pause()
        assert app.runtime.state.steering.get("S1").open  # type: ignore[union-attr]


async def test_no_confirmation_offers_a_bare_cancel() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        issues = app.main.tables["issues"]
        issues.move_cursor(row=next(i for i, k in enumerate(issues.keys)
                                    if k.endswith("DEMO-1")))
        await pilot.pause()
        for key in ("x", "q"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal)
            labels = buttons(app)
            assert not any(label.startswith(("Cancel (", "Cancel it (")) for label in labels)
            await pilot.press("n")
            await pilot.pause()


async def test_quit_says_what_happens_to_the_runs() -> None:
    app = SessionsConsoleApp()
    async with app.run_test(size=TMUX) as pilot:
        await filled(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert "1 agent run ends: SIGTERM" in modal.body
        assert "lose their connection" in modal.body  # the agents that joined from elsewhere
        assert buttons(app) == ["Quit and stop the runtime (y)", "Stay (n)"]
        for button in modal.query(Button):
            assert in_sight(app, button)


# ---- help and palette list every key --------------------------------------------------------


def test_help_lists_every_key_and_the_palette_every_action() -> None:
    rows = help_rows({}, issues=True, services=True)
    listed = {key for key, _ in rows}
    assert [a.id for a in ACTIONS if shown_key(a, {}) not in listed] == []
    moving = {"view.close_filter", "view.up", "view.down", "view.page_up", "view.page_down",
              "view.first", "view.last"}
    assert [a.id for a in ACTIONS if not a.description and a.id not in moving] == []
