"""The main screen's panes as an operator moves among them: where the cursor goes after an
action, clicks, keys that move and cycle, each pane's own filter, and the layouts for the
terminal's width (two panes, two and three columns, folded empty panes, zoom)."""

from __future__ import annotations

from typing import Any

from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Call, Outcome
from marrow_tui.runtime import Runtime
from marrow_tui.ui.actions import help_rows, palette_entries
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.panes.issues import IssuesTable
from marrow_tui.ui.panes.table import TEXT_FLOOR, fit_widths
from marrow_tui.ui.screens.layout import (DUO, SINGLE, THREE_COLUMNS, TWO_COLUMNS, mode_for,
                                          shown_panes)
from marrow_tui.ui.screens.main import MainScreen

from tests.support.console_app import ConsoleApp, filled, until

LONG_TITLE = "Rotate refresh tokens on every use"


def main_of(app: ConsoleApp) -> MainScreen:
    assert app.main is not None
    return app.main


def shown(app: ConsoleApp) -> set[str]:
    """The panes on the screen, by what Textual lays out (not by the screen's own notes)."""
    main = main_of(app)
    return {name for name in main.panes if main.query_one(f"#{name}-pane").region.area}


def emit(runtime: Runtime, kind: str, **data: Any) -> None:
    """An event as a producer (the orchestrator) emits it."""
    event = Event(kind, data)
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))


def long_task(runtime: Runtime) -> None:
    runtime.handle("demo/alice", {"type": "ledger_task", "task_id": "P4", "title": LONG_TITLE,
                                  "depends_on": ["P2"]}, None)


# ---- point 6: the cursor follows the row acted on; clicks; j/k; Tab ---------------------


async def test_after_cancelling_an_issue_the_cursor_stays_on_it_so_R_retries_it() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        cancelled: list[str] = []

        def cancel(call: Call) -> None:  # the orchestrator's verb: it parks the issue
            cancelled.append(call.frame["identifier"])
            call.reply("issue_cancelling", f"cancelling {call.frame['identifier']}")

        assert app.runtime.decider is not None
        app.runtime.decider.register("issue_cancel", cancel)
        table = main.tables["issues"]
        await pilot.press("6")
        index = next(i for i, key in enumerate(table.keys) if key.endswith("DEMO-10"))
        await pilot.press(*["j"] * index)  # j moves down, as down does
        assert IssuesTable.identifier(table.selected_key) == "DEMO-10"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await until(pilot, lambda: cancelled == ["DEMO-10"])
        emit(app.runtime, "issue_status", identifier="DEMO-10", title="Document the tracker",
             state="Todo", status="parked", priority=1, attempt=0, next_at=None,
             reason="cancelled by operator/test", session="",
             path="/srv/tracker/issues/Todo/DEMO-10.md")
        await until(pilot, lambda: any(k.startswith("3") and k.endswith("DEMO-10")
                                       for k in table.keys))
        await pilot.pause()
        # the row moved down among the parked ones: the cursor went with it
        assert IssuesTable.identifier(table.selected_key) == "DEMO-10"
        assert main.check_action("retry_issue", ()) is True
        assert "R retry" in str(main.query_one("#issues-pane").border_subtitle)


async def test_a_refill_keeps_the_chosen_row() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        table = main_of(app).tables["claims"]
        await pilot.press("2", "j")
        assert table.selected_key == "T2"
        # T1 (working) goes, T2 and T3 (claimed) stay: the cursor stays on T2, not on row 2
        await pilot.press("slash", *"claimed")
        await until(pilot, lambda: table.row_count == 2 and not table.filling)
        await pilot.pause()
        assert table.selected_key == "T2"


async def test_j_and_k_move_and_tab_cycles_the_panes() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        await pilot.press("2", "j")
        assert main.tables["claims"].selected_key == "T2"
        await pilot.press("k")
        assert main.tables["claims"].selected_key == "T1"
        await pilot.press("tab")
        assert main.pane == "board"
        await pilot.press("tab", "tab")
        assert main.pane == "agents"  # past Activity, round to the first pane of this setup
        await pilot.press("shift+tab")
        assert main.pane == "activity"


async def test_a_click_on_a_tab_shows_its_pane() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        assert main.pane == "claims"
        await pilot.click("#tab-board")
        await pilot.pause()
        assert main.pane == "board" and shown(app) == {"board"}


async def test_a_click_on_a_row_of_another_pane_chooses_the_pane_and_the_row() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        assert main.pane == "claims"
        # the table's first line is its header: the third row is two lines below it
        await pilot.click("#board-table", offset=(3, 3))
        await pilot.pause()
        assert main.pane == "board" and main.tables["board"].selected_key == "P3"
        assert main.query_one("#board-pane").has_class("-active")
        await pilot.press("s")  # the board's keys now act on the row clicked
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ChoiceModal"


# ---- point 7: each pane its own filter, shown in its border, cleared with Esc ------------


def border_title(app: ConsoleApp, pane: str) -> str:
    title = main_of(app).query_one(f"#{pane}-pane").border_title
    return str(title or "")


async def test_each_pane_has_its_own_filter_shown_in_its_border_until_esc() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        box = main.query_one("#filter")
        await pilot.press("4", "slash", *"review", "enter")
        await until(pilot, lambda: main.activity.filter_text == "review")
        assert not box.has_class("-shown")
        assert "review" in border_title(app, "activity")
        # Claims is not filtered: its box opens empty, and its border says nothing
        await pilot.press("2", "slash")
        await pilot.pause()
        assert box.has_class("-shown") and box.value == ""  # type: ignore[attr-defined]
        assert "review" not in border_title(app, "claims")
        await pilot.press(*"carol", "enter")
        claims = main.tables["claims"]
        await until(pilot, lambda: claims.row_count == 1 and not claims.filling)
        assert "carol" in border_title(app, "claims")
        # each keeps its own: back on Activity, the box holds Activity's filter
        await pilot.press("4", "slash")
        await pilot.pause()
        assert box.value == "review"  # type: ignore[attr-defined]
        await pilot.press("escape")  # Esc in the box clears Activity's filter
        await until(pilot, lambda: main.activity.filter_text == "")
        assert not box.has_class("-shown") and "review" not in border_title(app, "activity")
        assert claims.filter_text == "carol"
        await pilot.press("2", "escape")  # Esc on a filtered pane clears its filter
        await until(pilot, lambda: claims.row_count == 3)
        assert claims.filter_text == "" and "carol" not in border_title(app, "claims")


# ---- point 9: layouts for the width, folded empty panes, zoom, text columns -------------


def test_the_layout_for_each_width() -> None:
    assert [mode_for(w, 45) for w in (80, 99, 100, 149, 150, 199, 200, 300)] == [
        SINGLE, SINGLE, DUO, DUO, TWO_COLUMNS, TWO_COLUMNS, THREE_COLUMNS, THREE_COLUMNS]
    assert mode_for(200, 24) == DUO  # too low for every pane at once
    assert mode_for(200, 50, zoomed=True) == SINGLE
    assert shown_panes(DUO, "claims", "agents", ()) == {"claims", "activity"}
    assert shown_panes(DUO, "activity", "board", ()) == {"board", "activity"}


async def test_from_100_columns_two_panes_stand_side_by_side() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await filled(pilot, app)
        assert shown(app) == {"claims", "activity"}
        main = main_of(app)
        claims, activity = (main.query_one(f"#{n}-pane").region for n in ("claims", "activity"))
        assert claims.right <= activity.x and claims.width > activity.width
        assert main.query_one("#tabs").display


async def test_from_150_columns_every_pane_in_two_columns_and_from_200_in_three() -> None:
    app = ConsoleApp(sessions=True)
    async with app.run_test(size=(150, 45)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        assert shown(app) == {"agents", "claims", "board", "sessions", "activity"}
        left = {main.query_one(f"#{n}-pane").region.x for n in ("agents", "claims", "activity")}
        right = {main.query_one(f"#{n}-pane").region.x for n in ("board", "sessions")}
        assert len(left) == 1 and len(right) == 1 and left != right
        assert not main.query_one("#tabs").display
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        xs = {main.query_one(f"#{n}-pane").region.x for n in ("claims", "board", "activity")}
        assert len(xs) == 3


async def test_at_200x50_blackboard_titles_are_whole_and_no_table_scrolls_sideways() -> None:
    app = ConsoleApp(sessions=True, seed_with=long_task)
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        board = main.tables["board"]
        await until(pilot, lambda: "P4" in board.keys)
        await pilot.pause()
        title = [label for _, label in board.COLUMNS].index("Title")
        assert board.drawn[title] >= len(LONG_TITLE) > 20
        row = board.render_line(1 + board.keys.index("P4")).text
        assert LONG_TITLE in row
        for name in ("agents", "claims", "board", "sessions"):
            assert not main.tables[name].show_horizontal_scrollbar, name
        assert not main.activity.show_horizontal_scrollbar


async def test_an_empty_pane_folds_to_a_line_where_every_pane_is_shown() -> None:
    app = ConsoleApp(seeded=False, sessions=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        board = main.query_one("#board-pane")
        await until(pilot, lambda: board.has_class("-empty"))
        await pilot.pause()
        assert board.region.height == 3
        assert "(none)" in str(main.query_one("#board-title").render())
        # a task arrives: the pane opens up
        long_task(app.runtime)
        await until(pilot, lambda: not board.has_class("-empty"))
        await pilot.pause()
        assert board.region.height > 10

    # alone in its column, an empty pane keeps the column (nothing else would fill it)
    app = ConsoleApp(seeded=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        await pilot.pause()
        assert not main_of(app).query_one("#board-pane").has_class("-empty")


async def test_z_gives_the_pane_the_whole_screen_and_back() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        main = main_of(app)
        assert len(shown(app)) > 2
        await pilot.press("3", "z")
        await pilot.pause()
        assert shown(app) == {"board"}
        assert main.query_one("#board-pane").region.width == 200
        await pilot.press("z")
        await pilot.pause()
        assert len(shown(app)) > 2


def test_zoom_and_the_pane_keys_are_in_help_and_the_palette() -> None:
    rows = dict(help_rows({}, issues=False, services=False))
    assert rows["z"].startswith("Zoom") and rows["tab"] == "Next pane"
    assert rows["down/j"] == "Move down"
    assert rows["escape"] == "Clear the pane's filter (or close a dialog)"
    palette = {action.id for action, _ in palette_entries({})}
    assert {"view.zoom", "view.next_pane", "view.previous_pane"} <= palette


def test_text_columns_take_the_spare_width_and_give_it_up_first() -> None:
    # facts 10 and 5, text 30 (most important) and 20, gaps of 2
    natural, text = [10, 30, 5, 20], [1, 3]
    assert fit_widths(natural, text, 100, 2) == natural  # room for all
    assert fit_widths(natural, text, 60, 2) == [10, 30, 5, 9]  # the lesser text gives first
    assert fit_widths(natural, text, 40, 2) == [10, 11, 5, TEXT_FLOOR]  # then the title
    squeezed = fit_widths(natural, text, 20, 2)
    assert squeezed == [10, TEXT_FLOOR, 5, TEXT_FLOOR]  # then it overflows: facts stay whole
