"""A conflict in the console: an ACP run's edit blocked by another agent's lease rings as any
request, reads as one in its answer dialog (its four choices as buttons, who holds which paths
since when on which task), is answered through the console's frames, and shows both agents'
transcripts side by side at the tool calls in question. The Claims pane says which tool call
grew a lease by which path.

The conflicts arise for real (tests/support/conflicts.py `Editors`: fake ACP agents as
subprocesses, run as AgentSessions on the console's own runtime), or, for the status line's
exact words, from the seeded state the snapshots use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Static, TextArea

from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.modals.detail import DetailModal
from marrow_tui.ui.screens.conflict import ConflictScreen
from marrow_tui.ui.screens.main import StatusLine
from marrow_tui.ui.transcript.widget import TranscriptLog

from tests.support.conflicts import PATIENCE, Editors, seed_conflict
from tests.support.console_app import ConsoleApp, filled, until

SMALL = (80, 24)
BIG = (200, 50)


class Console:
    """A console whose runtime runs fake editor agents; both ended when the test is."""

    def __init__(self, app: ConsoleApp, pilot: Any, editors: Editors) -> None:
        self.app, self.pilot, self.editors = app, pilot, editors

    async def until(self, test: Any) -> Any:
        return await until(self.pilot, test, timeout=PATIENCE)

    async def holder_and_blocked(self, *, history: int = 0) -> Any:
        """demo/alice's run (AUTH-3) edits src/a.py and keeps its lease; demo/bob's run then
        edits src/a.py too, and waits on the operator."""
        editors = self.editors
        editors.start("demo/alice", "src/a.py", task_id="AUTH-3", hold=True, history=history)
        await self.until(lambda: "src/a.py" in editors.lease("demo/alice"))
        editors.start("demo/bob", "src/a.py", history=history)
        return await self.until(editors.conflict)

    def status(self) -> str:
        assert self.app.main is not None
        return self.app.main.query_one(StatusLine).text.plain


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    app = ConsoleApp(seeded=False)
    async with app.run_test(size=BIG) as pilot:
        await filled(pilot, app)
        editors = Editors(app.runtime, tmp_path)
        try:
            yield Console(app, pilot, editors)
        finally:
            await editors.stop()


def activity(app: ConsoleApp) -> str:
    assert app.main is not None
    return "\n".join(entry.text for entry in app.main.activity.lines_kept)


def choice_buttons(modal: AnswerModal) -> list[str]:
    return [str(b.label) for b in modal.query(Button) if b.has_class("choice")]


async def test_the_claims_pane_says_which_tool_call_grew_a_lease(console: Console) -> None:
    editors, pilot = console.editors, console.pilot
    editors.start("demo/alice", "src/a.py", task_id="AUTH-3", hold=True)
    await console.until(lambda: "src/a.py" in editors.lease("demo/alice"))
    await pilot.press("2")
    table = console.app.main.tables["claims"]  # type: ignore[union-attr]
    await console.until(lambda: "AUTH-3" in table.keys)
    row = table.cells("AUTH-3") or ()
    assert str(row[-1]).endswith("/repo: src/a.py (Edit src/a.py)")  # the Scope column
    table.move_cursor(row=table.get_row_index("AUTH-3"))
    await pilot.press("enter")
    modal = await console.until(lambda: isinstance(console.app.screen, DetailModal)
                                and console.app.screen)
    body = modal.body.plain
    assert "src/a.py  by Edit src/a.py [call-1], 0s ago" in body
    assert "run  demo-alice-run" in body


async def test_a_conflict_rings_and_its_dialog_shows_its_four_choices_and_the_holder(
        console: Console) -> None:
    request = await console.holder_and_blocked()
    await console.until(lambda: "⚑ demo/bob's edit of src/a.py is blocked by demo/alice "
                                "(AUTH-3)" in console.status())
    await console.pilot.press("a")
    modal = await console.until(lambda: isinstance(console.app.screen, AnswerModal)
                                and console.app.screen)
    assert choice_buttons(modal) == ["Let it", "Wait", "Hand over", "Reject"]
    assert not modal.query(TextArea)  # no free text: only a choice answers it
    shown = " ".join(str(s.render()) for s in modal.query(".held"))
    assert "src/a.py  held by demo/alice on AUTH-3 for " in shown
    assert "(claimed by its Edit src/a.py)" in shown
    meanings = str(modal.query_one(".meanings").render())
    assert "Wait      demo/bob waits for the lease to end, then edits" in meanings
    assert request.asker == "demo/bob"


async def test_wait_from_the_dialog_keeps_the_edit_waiting_until_the_lease_ends(
        console: Console) -> None:
    request = await console.holder_and_blocked()
    book = console.app.runtime.state.steering
    await console.pilot.press("a")
    await console.until(lambda: isinstance(console.app.screen, AnswerModal))
    await console.pilot.click("#choice-1")  # Wait
    await console.until(lambda: book.get(request.id).waiting_by == "operator/test")
    assert book.get(request.id).open
    assert "src/a.py" not in console.editors.lease("demo/bob")
    steering = console.app.main.tables["steering"]  # type: ignore[union-attr]
    await console.until(lambda: "waits for the lease" in str(
        (steering.cells(steering.keys[0]) or ("",) * 5)[4]))
    waits = f"waits     {request.id} until the leases in its way end (chosen by operator/test)"
    said = await console.until(lambda: waits in (text := activity(console.app)) and text)
    assert "scope=" + str(console.editors.repo.resolve()) + ":(no paths yet: run demo-bob-run)" \
        in said
    assert (f"blocked   {request.id} demo/bob's edit of src/a.py: held by demo/alice (AUTH-3)"
            in said)
    console.editors.release()  # alice's run ends and releases its lease: bob's edit goes on
    assert await console.editors.answer_of("demo/bob") == "answer=allow-once"
    ended = book.get(request.id)
    assert (ended.state, ended.answer, ended.answered_by) == ("answered", "Wait",
                                                              "hub:lease-ended")


async def test_let_it_from_the_dialog_lets_the_edit_run(console: Console) -> None:
    request = await console.holder_and_blocked()
    await console.pilot.press("a")
    await console.until(lambda: isinstance(console.app.screen, AnswerModal))
    await console.pilot.click("#choice-0")  # Let it
    assert await console.editors.answer_of("demo/bob") == "answer=allow-once"
    ended = console.app.runtime.state.steering.get(request.id)
    assert (ended.state, ended.answer, ended.answered_by) == ("answered", "Let it",
                                                              "operator/test")
    assert console.editors.lease("demo/alice") == ("src/a.py",)  # the holder keeps it


async def test_both_transcripts_side_by_side_at_the_tool_calls_in_question(
        console: Console) -> None:
    await console.holder_and_blocked(history=300)  # an earlier turn: the calls are not last
    pilot = console.pilot
    await pilot.press("a")
    await console.until(lambda: isinstance(console.app.screen, AnswerModal))
    await pilot.press("t")
    screen = await console.until(lambda: isinstance(console.app.screen, ConflictScreen)
                                 and console.app.screen)
    waiting = screen.query_one("#waiting-transcript", TranscriptLog)
    holder = screen.query_one("#holder-transcript", TranscriptLog)
    await console.until(lambda: any("Edit src/a.py" in line
                                    for line in waiting.visible_text()))
    await console.until(lambda: any("Edit src/a.py" in line
                                    for line in holder.visible_text()))
    assert not waiting.following and waiting.match_line is not None
    assert "Edit src/a.py" in waiting.line_text(waiting.match_line)
    assert "Edit src/a.py" in holder.line_text(holder.match_line or 0)
    title = str(screen.query_one("#conflict-title").render())
    assert "demo/bob's edit of src/a.py is blocked by demo/alice (AUTH-3)" in title
    await pilot.press("a")  # back to the dialog below
    await console.until(lambda: isinstance(console.app.screen, AnswerModal))


async def test_the_steering_pane_opens_both_sides_and_a_holder_with_no_run_shows_its_lease(
        console: Console) -> None:
    app, editors, pilot = console.app, console.editors, console.pilot
    worktree = str(editors.repo.resolve())
    app.runtime.handle("demo/alice", {"type": "claim", "task_id": "AUTH-3",
                                      "worktree": worktree, "paths": ["src/a.py"],
                                      "ttl_seconds": 3600}, None)
    app.runtime.handle("demo/alice", {"type": "ledger_progress", "task_id": "AUTH-3",
                                      "text": "reworking the login check", "kind": "note"},
                       None)
    editors.start("demo/bob", "src/a.py")
    await console.until(editors.conflict)
    await pilot.press("0")
    await console.until(lambda: app.main.tables["steering"].keys)  # type: ignore[union-attr]
    await pilot.press("t")
    screen = await console.until(lambda: isinstance(app.screen, ConflictScreen) and app.screen)
    lease = str(screen.query_one("#holder-transcript Static").render())
    assert "Lease AUTH-3 of demo/alice" in lease and "paths     src/a.py" in lease
    assert "demo/alice (note): reworking the login check" in lease
    await pilot.press("a")  # closes the screen and opens the dialog
    await console.until(lambda: isinstance(app.screen, AnswerModal))


async def test_n_shows_each_lease_in_the_way_in_turn(console: Console) -> None:
    app, editors, pilot = console.app, console.editors, console.pilot
    editors.start("demo/alice", "src/a.py", task_id="AUTH-3", hold=True)
    await console.until(lambda: "src/a.py" in editors.lease("demo/alice"))
    app.runtime.handle("demo/carol", {"type": "claim", "task_id": "DOCS-1",
                                      "worktree": str(editors.repo.resolve()),
                                      "paths": ["src/b.py"], "ttl_seconds": 3600}, None)
    editors.start("demo/bob", "src")  # its edit of the folder meets both leases
    request = await console.until(editors.conflict)
    assert len(request.conflict["held"]) == 2
    await pilot.press("a")
    await console.until(lambda: isinstance(app.screen, AnswerModal))
    await pilot.press("t")
    screen = await console.until(lambda: isinstance(app.screen, ConflictScreen) and app.screen)

    def head() -> str:
        return str(screen.query_one("#side-holder .side-title", Static).render())

    def shows(owner: str) -> bool:
        body = screen.query_one("#holder-transcript")
        if owner == "demo/carol":  # a lease with no run: the lease itself
            return "Lease DOCS-1 of demo/carol" in str(body.query_one(Static).render())
        return isinstance(body, TranscriptLog)

    seen = []
    for turn in range(3):
        await console.until(lambda: head().startswith(("demo/alice", "demo/carol"))
                            and f"({turn % 2 + 1} of 2 leases · n: next)" in head())
        owner = head().split(" ")[0]
        assert shows(owner)
        seen.append(owner)
        await pilot.press("n")
    assert sorted(seen[:2]) == ["demo/alice", "demo/carol"] and seen[2] == seen[0]


async def test_at_80_columns_the_status_line_says_who_blocks_whom(tmp_path: Path) -> None:
    def seed(runtime: Any) -> None:
        seed_conflict(runtime, tmp_path / "logs")

    app = ConsoleApp(seeded=False, seed_with=seed)
    async with app.run_test(size=SMALL) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        line = await until(pilot, lambda: app.main.query_one(StatusLine).text.plain)
        # the counts go first, then the paths are cut: who blocks whom stays whole
        assert line == (" ⚑ demo/bob's edit of src/auth… is blocked by demo/alice (AUTH-3) "
                        "· a to answer ")
