"""The diff view and the review actions, driven by keys over a real runtime.

The orchestrator's review verbs are served by `ReviewVerbs` (tests/support/review.py), which
answers as the issue-15 contract says, with the `git diff` of a real repository made in a
temporary folder; the console reads it with core/diff.parse like the CLI does. So these check
the console's side: the view shows what git printed, the keys move through it, and each action
sends exactly the contract's frame after saying what it will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Outcome
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal
from marrow_tui.ui.modals.review import RequestChangesModal
from marrow_tui.ui.panes.issues import IssuesTable
from marrow_tui.ui.screens.diff import DiffLines, DiffScreen, FileList

from tests.support.console_app import ConsoleApp, filled, until
from tests.support.review import ReviewVerbs, Workspace, git_workspace, review_stat

SIZE = (120, 40)
ID = "DEMO-1"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return git_workspace(tmp_path_factory.mktemp("review"))


async def opened(pilot: Any, app: ConsoleApp, workspace: Workspace, **kwargs: Any
                 ) -> ReviewVerbs:
    """The console on the Issues pane, DEMO-1 measured and selected, its review verbs served."""
    await filled(pilot, app)
    verbs = ReviewVerbs(app.runtime, {(ID, "base"): workspace.against_base,
                                      (ID, "review"): workspace.since_review}, **kwargs)
    review_stat(app.runtime, ID, 5, 4, 2)
    assert app.main is not None
    table = app.main.tables["issues"]
    await until(pilot, lambda: "+4" in str(table._shown.get(table.keys[0], ())))
    table.move_cursor([IssuesTable.identifier(k) for k in table.keys].index(ID))
    await pilot.pause()
    return verbs


def view(app: ConsoleApp) -> DiffScreen:
    assert isinstance(app.screen, DiffScreen)
    return app.screen


def shown_lines(app: ConsoleApp) -> list[str]:
    lines = view(app).query_one(DiffLines)
    return [lines.render_line(y).text.rstrip() for y in range(lines.size.height)]


async def diff_open(pilot: Any, app: ConsoleApp) -> DiffScreen:
    await pilot.press("v")
    await until(pilot, lambda: isinstance(app.screen, DiffScreen) and not app.screen.asking)
    return view(app)


async def test_the_view_shows_what_git_printed_file_by_file(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace)
        screen = await diff_open(pilot, app)
        assert verbs.sent() == [{"type": "review_diff", "identifier": ID, "against": "base"}]
        files = screen.query_one(FileList)
        listed = [files.render_line(y).text.split() for y in range(5)]
        assert [(row[0], row[1], row[-1]) for row in listed] == [
            ("D", "gone.txt", "−1"), ("A", "logo.png", "bin"), ("R", "new_name.md", "−0"),
            ("M", "src/app.py", "−1"), ("A", "src/new.py", "−0")]
        title = str(screen.title_text())
        assert "against main" in title and "5 files" in title and "+4 −2" in title
        # the first file: deleted, its one line removed and numbered on the old side only
        text = shown_lines(app)
        assert text[0].startswith("gone.txt  (deleted)")
        assert any(line.startswith("1   - this file goes") for line in text)
        await pilot.press("right_square_bracket")  # a binary file says so
        assert any("Binary file: its content is not shown." in line for line in shown_lines(app))
        await pilot.press("right_square_bracket")  # a rename names both paths
        text = shown_lines(app)
        assert text[0].startswith("old_name.md → new_name.md  (renamed)")
        assert any("No lines changed." in line for line in text)
        await pilot.press("right_square_bracket")
        text = shown_lines(app)
        assert text[0].startswith("src/app.py  (modified)")
        assert " 3    - line_3 = 3" in text and "    3 + line_3 = 'three'" in text
        assert "   31 + def greet(name):" in text


async def test_hunks_and_files_are_one_key_apart(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app, workspace)
        screen = await diff_open(pilot, app)
        lines = screen.query_one(DiffLines)

        def where() -> tuple[str, str]:
            row = lines.rows[lines.cursor]
            return screen.files[screen.chosen].path, row.text if row.kind == "hunk" else row.kind

        assert where() == ("gone.txt", "@@ -1 +0,0 @@")
        await pilot.press("n")  # no more hunks here: on into the next file with one
        assert where()[0] == "logo.png"  # (a binary has none: it stops there)
        await pilot.press("n", "n")
        assert where() == ("src/app.py", "@@ -1,6 +1,6 @@")
        await pilot.press("n")
        assert where() == ("src/app.py", "@@ -28,6 +28,8 @@ line_27 = 27")
        top = int(lines.scroll_offset.y)
        assert top <= lines.cursor < top + lines.size.height  # in sight
        await pilot.press("p")
        assert where() == ("src/app.py", "@@ -1,6 +1,6 @@")
        await pilot.press("left_square_bracket")
        assert screen.files[screen.chosen].path == "new_name.md"
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")
        assert screen.files[screen.chosen].path == "src/new.py"  # round the list
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DiffScreen))


async def test_the_toggle_asks_again_since_the_last_review(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace)
        screen = await diff_open(pilot, app)
        before = len(screen.files)
        await pilot.press("b")
        await until(pilot, lambda: not screen.asking)
        assert verbs.sent()[-1] == {"type": "review_diff", "identifier": ID,
                                    "against": "review"}
        assert "since the last review" in str(screen.title_text())
        assert [f.path for f in screen.files] == [
            "gone.txt", "logo.png", "new_name.md", "src/new.py"] and before == 5
        await pilot.press("b")
        await until(pilot, lambda: not screen.asking and len(screen.files) == 5)
        assert verbs.sent()[-1]["against"] == "base"


async def test_no_changes_and_a_truncated_diff_read_clearly(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace, truncated=True)
        verbs.diffs[(ID, "review")] = ""
        screen = await diff_open(pilot, app)
        assert "truncated" in str(screen.title_text())
        await pilot.press("left_square_bracket")  # the last file ends with where it was cut
        assert any("The diff was cut here" in line for line in shown_lines(app))
        await pilot.press("b")
        await until(pilot, lambda: not screen.asking)
        assert any("No changes since the last review." in line for line in shown_lines(app))


async def test_a_refused_diff_is_said_in_the_view() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        ReviewVerbs(app.runtime, {("OTHER-1", "base"): ""})
        review_stat(app.runtime, ID, 1, 1, 0)
        assert app.main is not None
        await until(pilot, lambda: app.main is not None and app.main.issues_pane._allows(
            "view_diff", app.runtime.state.issues.issues[ID]))
        app.main.review.open_diff(ID)
        await until(pilot, lambda: isinstance(app.screen, DiffScreen)
                    and not app.screen.asking)
        assert any(f"No issue {ID}." in line for line in shown_lines(app))


async def test_referenced_lines_go_with_the_request_for_changes(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace)
        screen = await diff_open(pilot, app)
        await pilot.press("n", "n", "n", "n")  # src/app.py's second hunk
        await pilot.press("down", "down", "down", "down", "r")  # + def greet(name):
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket",
                          "down", "r")  # gone.txt's removed line 1
        assert "2 refs" in str(screen.title_text())
        await pilot.press("C")
        dialog = await until(pilot, lambda: isinstance(app.screen, RequestChangesModal)
                             and app.screen)
        refs = str(dialog.query_one("#request-refs").render())
        assert "src/app.py:31" in refs and "gone.txt:1" in refs
        assert "next prompt" in dialog.what and "In Progress" in dialog.what
        await pilot.press(*"keep the old name")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: verbs.frames and verbs.frames[-1]["type"]
                    == "review_request_changes")
        assert verbs.sent()[-1] == {
            "type": "review_request_changes", "identifier": ID, "text": "keep the old name",
            "refs": [{"path": "src/app.py", "line": 31}, {"path": "gone.txt", "line": 1}]}
        await until(pilot, lambda: not screen.reviewer.refs(ID))  # sent: the refs are spent
        assert "ref" not in str(screen.title_text()) and not screen.lines.picked


async def test_accept_says_what_it_does_and_a_conflict_lists_the_files(
        workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace,
                             conflicts={ID: ["src/app.py", "src/new.py"]})
        await pilot.press("A")
        dialog = await until(pilot, lambda: isinstance(app.screen, ConfirmModal) and app.screen)
        assert "DEMO-1's work (5 files, +4 −2) is merged into main with a merge commit" \
            in dialog.body
        assert "DEMO-1 is then done (moved to Done unless it is there already)" in dialog.body
        await pilot.press("y")
        detail = await until(pilot, lambda: isinstance(app.screen, DetailModal) and app.screen)
        assert verbs.sent()[-1] == {"type": "review_accept", "identifier": ID}
        body = str(detail.body)
        assert "does not merge into main" in body
        assert "Conflicting files (2):\n  src/app.py\n  src/new.py" in body
        await pilot.press("escape")
        verbs.conflicts.clear()
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await until(pilot, lambda: any("merged into main" in str(n.message)
                                       for n in app._notifications))


async def test_accept_asks_for_the_diff_first_and_names_the_merge_mode(
        workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace, merge="squash", uncommitted=True)
        await pilot.press("A")  # from the Issues pane: no diff asked for yet
        dialog = await until(pilot, lambda: isinstance(app.screen, ConfirmModal) and app.screen)
        assert verbs.sent()[0] == {"type": "review_diff", "identifier": ID, "against": "base"}
        assert "is squashed into one commit on main" in dialog.body
        assert "left uncommitted are committed on marrow/DEMO-1 first" in dialog.body
        assert "Accept and squash" in str(dialog.query_one("#yes").label)
        await pilot.press("n")
        verbs.merge = "after_run"
        screen = await diff_open(pilot, app)
        await pilot.press("A")
        dialog = await until(pilot, lambda: isinstance(app.screen, ConfirmModal) and app.screen)
        assert "after_run hook runs" in dialog.body and "Nothing is merged" in dialog.body
        assert "its worktree is kept" in dialog.body
        assert screen.identifier == ID


async def test_discard_asks_again_listing_the_work_it_would_lose(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    commits = [{"sha": "0123456789abcdef", "subject": "second pass"}]
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace,
                             unmerged={ID: (commits, ["notes.txt"])})
        screen = await diff_open(pilot, app)
        await pilot.press("X")
        first = await until(pilot, lambda: isinstance(app.screen, ConfirmModal) and app.screen)
        assert "worktree and its branch are removed" in first.body
        await pilot.press("y")
        second = await until(pilot, lambda: isinstance(app.screen, ConfirmModal)
                             and app.screen is not first and app.screen)
        assert verbs.sent()[-1] == {"type": "review_discard", "identifier": ID,
                                    "confirm": False}
        assert "0123456789 second pass" in second.body and "  notes.txt" in second.body
        assert "for good" in second.body
        await pilot.press("y")
        await until(pilot, lambda: verbs.sent()[-1].get("confirm") is True)
        assert verbs.sent()[-1] == {"type": "review_discard", "identifier": ID,
                                    "confirm": True}
        await until(pilot, lambda: screen not in app.screen_stack)  # its diff is gone too


async def test_discard_kept_sends_nothing_more(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace,
                             unmerged={ID: ([{"sha": "abc", "subject": "s"}], [])})
        await pilot.press("X")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        second = await until(pilot, lambda: isinstance(app.screen, ConfirmModal)
                             and "lose" in app.screen.title_text and app.screen)
        await pilot.press("n")
        await until(pilot, lambda: app.screen is not second)
        assert [f.get("confirm") for f in verbs.sent()] == [False]


async def test_the_review_keys_wait_for_a_measured_workspace() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        pane = app.main.issues_pane
        view = app.runtime.state.issues.issues[ID]
        assert not any(pane._allows(a, view) for a in ("view_diff", "accept_issue",
                                                       "request_changes", "discard_work"))
        review_stat(app.runtime, ID, 2, 10, 1)
        await until(pilot, lambda: pane._allows("view_diff", view))


async def test_a_run_of_an_issue_opens_its_diff(workspace: Workspace) -> None:
    from marrow_tui.ui.panes.sessions import session_key

    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        verbs = await opened(pilot, app, workspace)
        assert app.main is not None
        run = app.runtime.state.sessions.of_agent(ID)[0]
        app.main.show_row("sessions", session_key(run.agent, run.started, run.id))
        await until(pilot, lambda: app.main is not None and app.main.pane == "sessions"
                    and app.main.tables["sessions"].selected_key is not None
                    and ID in app.main.tables["sessions"].selected_key)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen)
                    and not app.screen.asking)
        assert verbs.sent() == [{"type": "review_diff", "identifier": ID, "against": "base"}]


def test_the_workspace_is_real(workspace: Workspace) -> None:
    assert (Path(workspace.repo) / ".git").is_dir()
    assert workspace.against_base.startswith("diff --git a/gone.txt b/gone.txt")


def test_the_diff_views_keys_remap_by_id_and_clash_only_with_each_other() -> None:
    from marrow_tui.ui.actions import keymap_problems, textual_keymap

    assert keymap_problems({"diff.accept": "a"}) == []  # `a` answers only on the main screen
    [(action_id, message)] = keymap_problems({"diff.accept": "n"})
    assert action_id == "diff.accept" and "diff.next_hunk" in message
    assert "did you mean diff.accept?" in keymap_problems({"diff.acept": "Z"})[0][1]
    assert textual_keymap({"diff.accept": "Y"}) == {"diff.accept": "Y"}


async def test_the_panes_show_plus_minus_from_review_stat() -> None:
    from marrow_tui.ui.panes.sessions import SessionsTable

    app = ConsoleApp(issues=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        issues = app.main.tables["issues"]
        row = next(k for k in issues.keys if IssuesTable.identifier(k) == ID)
        assert str(issues.cells(row)[5]) == ""  # not measured yet: nothing said
        review_stat(app.runtime, ID, 3, 12, 3)
        await until(pilot, lambda: "+12 −3" in drawn(issues, row))
        cell = issues.cells(row)[5]
        assert [(cell.plain[s.start:s.end], str(s.style)) for s in cell.spans] == [
            ("+12", "green"), ("−3", "red")]
        review_stat(app.runtime, ID, 4, 20, 3)  # measured again: the row follows
        await until(pilot, lambda: "+20 −3" in drawn(issues, row))
        sessions = app.main.tables["sessions"]
        assert isinstance(sessions, SessionsTable)
        run = next(k for k in sessions.keys if SessionsTable.agent_of(k) == ID)
        await until(pilot, lambda: "+20 −3" in drawn(sessions, run))


def drawn(table: Any, key: str) -> str:
    return table.render_line(table.keys.index(key) + 1 - int(table.scroll_offset.y)).text


async def test_at_80x24_the_column_gives_way_and_the_detail_says_it() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        issues = app.main.tables["issues"]
        row = next(k for k in issues.keys if IssuesTable.identifier(k) == ID)
        before = drawn(issues, row)
        review_stat(app.runtime, ID, 3, 12, 3)
        await until(pilot, lambda: "+12 −3" in str(issues._shown[row][5]))
        assert drawn(issues, row) == before and "waiting on a" in drawn(
            issues, next(k for k in issues.keys if IssuesTable.identifier(k) == "OPS-9"))
        issues.move_cursor(issues.keys.index(row))
        await pilot.press("enter")
        detail = await until(pilot, lambda: isinstance(app.screen, DetailModal) and app.screen)
        assert "+12 −3 in 3 files (v shows the diff)" in str(detail.body)


async def test_an_accept_from_this_console_is_said_once() -> None:
    # Its reply says "Accepted ... it moved to Done"; the issue_done it caused is not said
    # again here. An issue done by someone else still rings.
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        me = app.main.session.name
        for who, ident in ((me, ID), ("demo/alice", "DEMO-2")):
            event = Event("issue_done", {"identifier": ident, "title": "t", "summary": "s",
                                         "to_state": "Done", "by": who, "at": 0.0,
                                         "path": "", "session": ""})
            app.runtime.state.apply(event)
            app.runtime.submit(Outcome(events=[event]))
        await until(pilot, lambda: any("DEMO-2 done" in str(n.message)
                                       for n in app._notifications))
        assert not any(f"{ID} done" in str(n.message) for n in app._notifications)


async def test_added_and_removed_lines_keep_their_code_colours(workspace: Workspace) -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app, workspace)
        await diff_open(pilot, app)
        for _ in range(3):
            await pilot.press("right_square_bracket")  # src/app.py
        lines = view(app).query_one(DiffLines)

        def colours(text: str) -> tuple[set[str], set[str]]:
            """The foreground and background colours of the drawn row holding `text`."""
            for y in range(lines.size.height):
                strip = lines.render_line(y)
                if text in strip.text:
                    segments = [s for s in strip if s.text.strip() and s.style is not None]
                    return ({str(s.style.color) for s in segments if s.style.color},
                            {str(s.style.bgcolor) for s in segments if s.style.bgcolor})
            raise AssertionError(f"{text!r} is not on screen")

        added_fg, added_bg = colours("+ def greet(name):")
        context_fg, context_bg = colours("  line_2 = 2")
        removed_fg, removed_bg = colours("- line_3 = 3")
        # the keyword, the name and the punctuation differ in colour on the +/- lines too
        assert len(added_fg) >= 3 and len(removed_fg) >= 2, (added_fg, removed_fg)
        assert added_bg != context_bg and removed_bg != context_bg != removed_bg
