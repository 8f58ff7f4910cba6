"""The Issues pane, driven by keys: what reaches the orchestrator's verbs, and what it shows.

No orchestrator runs here: its status is seeded as events (`seed_issues`), and its operator
verbs are served by stand-ins registered on the runtime's decider that record each frame and
answer as the orchestrator does. So these tests check the console's side of the contract: the
right verb, with the right fields, from the right key, on the right pane, and only then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Call, Outcome
from marrow_tui.runtime import Runtime
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal
from marrow_tui.ui.modals.form import FormModal
from marrow_tui.ui.panes.issues import IssuesTable
from marrow_tui.ui.panes.sessions import session_key
from marrow_tui.ui.screens.agent import AgentScreen
from marrow_tui.ui.transcript.widget import TranscriptLog

from tests.support.console_app import ConsoleApp, filled, seed_issues, until
from tests.support.transcripts import acp_run_events, seed_acp_run, text, write_transcript

VERBS = {"issue_dispatch": "issue_dispatching", "issue_cancel": "issue_cancelling",
         "issue_retry": "issue_retrying", "issue_create": "issue_created"}


class Verbs:
    """The orchestrator's operator verbs: each frame is kept, and answered."""

    def __init__(self, runtime: Runtime) -> None:
        self.frames: list[tuple[str, dict[str, Any], bool]] = []
        decider = runtime.decider
        assert decider is not None
        for verb, reply in VERBS.items():
            decider.register(verb, lambda call, reply=reply: self._serve(call, reply))

    def _serve(self, call: Call, reply: str) -> None:
        self.frames.append((call.sender, dict(call.frame), call.operator))
        identifier = call.frame.get("identifier") or "DEMO-11"
        call.reply(reply, f"{reply.replace('_', ' ')} {identifier}", identifier=identifier,
                   path=f"/srv/tracker/issues/Todo/{identifier}.md")

    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        """(type, the fields the console chose) of every frame, in order."""
        return [(f["type"], {k: v for k, v in f.items()
                             if k not in ("type", "sender", "timestamp")})
                for _, f, _ in self.frames]


async def started(pilot: Any, app: ConsoleApp) -> Verbs:
    await filled(pilot, app)
    return Verbs(app.runtime)


def rows(app: ConsoleApp) -> list[str]:
    assert app.main is not None
    return [IssuesTable.identifier(k) or "" for k in app.main.tables["issues"].keys]


async def select(pilot: Any, app: ConsoleApp, identifier: str) -> None:
    assert app.main is not None
    table = app.main.tables["issues"]
    table.move_cursor(rows(app).index(identifier))
    await pilot.pause()


def emit(runtime: Runtime, kind: str, **data: Any) -> None:
    """An event as the orchestrator emits it."""
    event = Event(kind, data)
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))


async def test_the_console_opens_on_the_issues_running_first() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and app.main.pane == "issues"
        assert app.main.has_class("-orchestrating")
        assert rows(app) == ["DEMO-1", "OPS-9", "OPS-3", "DEMO-10", "DEMO-4", "OPS-7",
                             "DEMO-2", "OPS-1"]
        hint = app.main.query_one("#issues-pane").border_subtitle
        assert hint == "x cancel · g go to run · n new · enter open"


async def test_without_an_orchestrator_nothing_of_it_shows() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and not app.main.has_class("-orchestrating")
        assert not app.main.query_one("#tab-issues").display
        await pilot.press("6", "n", "D")  # the pane is empty and its keys do nothing
        assert app.main.pane == "issues" and isinstance(app.screen, type(app.main))


async def test_dispatch_sends_the_selected_issue() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        await select(pilot, app, "DEMO-1")
        await pilot.press("D")  # running: nothing to dispatch
        await select(pilot, app, "DEMO-10")
        await pilot.press("D")
        assert verbs.sent() == [("issue_dispatch", {"identifier": "DEMO-10"})]
        sender, _, operator = verbs.frames[0]
        assert (sender, operator) == ("operator/test", True)


async def test_cancel_asks_first_and_is_not_the_sessions_stop() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        await select(pilot, app, "DEMO-1")
        await pilot.press("x")
        modal = app.screen
        assert isinstance(modal, ConfirmModal) and modal.title_text == "Cancel DEMO-1?"
        await pilot.press("n")
        assert verbs.frames == []
        await pilot.press("x", "y")
        assert verbs.sent() == [("issue_cancel", {"identifier": "DEMO-1"})]
        run = app.runtime.state.sessions.by_id["DEMO-1-20270115-075800-000"]
        assert run.running  # the console did not stop the session itself


async def test_retry_only_a_parked_issue() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        await select(pilot, app, "DEMO-10")
        await pilot.press("R")
        assert verbs.frames == []
        await select(pilot, app, "OPS-7")
        assert app.main is not None
        assert app.main.query_one("#issues-pane").border_subtitle.startswith("R retry")
        await pilot.press("R")
        assert verbs.sent() == [("issue_retry", {"identifier": "OPS-7"})]
        assert not isinstance(app.screen, ConfirmModal)  # not the leases' force-release


async def test_new_issue_sends_title_body_and_priority() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        await pilot.press("n")
        assert isinstance(app.screen, FormModal)
        await pilot.press(*"Add a README", "tab", *"Explain the demo.", "tab", *"soon", "enter")
        # Not a number: nothing sent; the dialog says why and keeps the priority in focus, with
        # everything typed kept, so the fix goes into the priority, not the title.
        await until(pilot, lambda: isinstance(app.screen, FormModal))
        assert verbs.frames == []
        modal = app.screen
        assert modal.query_one("#title").value == "Add a README"  # type: ignore[attr-defined]
        assert modal.focused is modal.query_one("#priority")
        assert "Priority must be a whole number, not 'soon'." in str(
            modal.query_one("#form-error").content)  # type: ignore[attr-defined]
        await pilot.press(*["backspace"] * 4, "2", "enter")
        await until(pilot, lambda: verbs.frames)
        assert verbs.sent() == [("issue_create", {"title": "Add a README",
                                                  "body": "Explain the demo.", "priority": 2})]


async def test_new_issue_without_a_priority_sends_none() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        await pilot.press("n", *"Quick fix", "enter", "enter", "enter")
        await until(pilot, lambda: verbs.frames)
        assert verbs.sent() == [("issue_create", {"title": "Quick fix", "body": "",
                                                  "priority": None})]


async def test_enter_shows_the_issue_and_g_goes_to_its_run() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await started(pilot, app)
        await select(pilot, app, "OPS-7")
        await pilot.press("enter")
        modal = app.screen
        assert isinstance(modal, DetailModal)
        assert "cancelled by operator/test" in modal.body.plain  # type: ignore[union-attr]
        await pilot.press("escape")
        await select(pilot, app, "OPS-7")
        await pilot.press("g")  # no run yet: stays
        assert app.main is not None and app.main.pane == "issues"
        await select(pilot, app, "DEMO-1")
        await pilot.press("g")
        await until(pilot, lambda: app.main.pane == "sessions")  # type: ignore[union-attr]
        sessions = app.main.tables["sessions"]
        await until(pilot, lambda: (sessions.session_id(sessions.selected_key)  # type: ignore
                                    == "DEMO-1-20270115-075800-000"))


async def test_a_status_change_moves_the_row_and_a_workflow_error_shows() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await started(pilot, app)
        emit(app.runtime, "issue_status", identifier="DEMO-4", title="Tidy the README",
             state="In Progress", status="running", attempt=1)
        await until(pilot, lambda: rows(app)[:3] == ["DEMO-1", "OPS-9", "DEMO-4"])
        emit(app.runtime, "issue_removed", identifier="OPS-1")
        await until(pilot, lambda: "OPS-1" not in rows(app))
        assert app.main is not None
        pane = app.main.query_one("#issues-pane")
        assert pane.border_title == ""
        emit(app.runtime, "workflow_status", path="/srv/tracker/WORKFLOW.md", ok=False,
             errors=["WORKFLOW.md:3: tracker.kind: error: must be 'local'"], warnings=[],
             root="", dispatching=False)
        await until(pilot, lambda: pane.border_title)
        assert pane.border_title == ("workflow error, no new dispatches: "
                                     "WORKFLOW.md:3: tracker.kind: error: must be 'local'")
        assert "workflow error" in app.main.query_one("#status").text.plain  # type: ignore


async def test_the_pane_appears_when_an_orchestrator_starts_later() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(170, 46)) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        assert not app.main.query_one("#issues-pane").display
        seed_issues(app.runtime)
        await until(pilot, lambda: app.main.has_class("-orchestrating"))  # type: ignore
        await until(pilot, lambda: len(rows(app)) == 8)
        await pilot.pause()
        assert app.main.query_one("#issues-pane").display
        assert app.main.query_one("#sessions-pane").display


def cells_of(app: ConsoleApp, name: str) -> list[str]:
    """The row whose first cell is `name`, as text."""
    assert app.main is not None
    table = app.main.tables["issues"]
    for key in table.keys:
        cells = table.cells(key)
        if cells is not None and str(cells[0]) == name:
            return [str(c) for c in cells]
    raise AssertionError(f"no row {name!r}")


async def test_refused_files_and_a_kept_workspace_show_in_the_pane() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(150, 32)) as pilot:
        await started(pilot, app)
        files = [{"path": "/srv/tracker/issues/Todo/BOMB.md",
                  "reason": "invalid front matter (line 3): aliases expand (skipped)"},
                 {"path": "/srv/tracker/issues/Todo/ctl\x1f\x07.md",
                  "reason": "unsafe file name (skipped)"}]
        emit(app.runtime, "tracker_refused", root="/srv/tracker/issues", files=files,
             new=[f["path"] for f in files], gone=[], at=0.0)
        await until(pilot, lambda: len(rows(app)) == 10)
        bomb = cells_of(app, "BOMB.md")
        assert bomb[1:3] == ["Todo", "refused"] and "aliases expand" in bomb[-1]
        assert cells_of(app, "ctl??.md")[2] == "refused"
        emit(app.runtime, "tracker_refused", root="/srv/tracker/issues", files=files[:1],
             new=[], gone=[files[1]["path"]], at=1.0)
        await until(pilot, lambda: len(rows(app)) == 9)
        emit(app.runtime, "workspace_kept", identifier="OPS-1", path="/srv/ws/OPS-1",
             lost="1 uncommitted file (draft.txt)", at=2.0)
        emit(app.runtime, "issue_status", identifier="OPS-1", title="Pin the toolchain",
             state="Done", status="done", reason="workspace kept: 1 uncommitted file "
                                                  "(draft.txt)")
        await until(pilot, lambda: "workspace kept" in cells_of(app, "OPS-1")[2])


async def test_t_opens_the_transcript_of_the_issues_agent_run(tmp_path: Path) -> None:
    sid = "OPS-9-20270115-075800-000"
    path = write_transcript(tmp_path / "t.jsonl", extra=[text("agent_message_chunk", "hi")])
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await started(pilot, app)
        await select(pilot, app, "OPS-9")
        assert app.main is not None and not app.main.check_action("issue_transcript", ())
        seed_acp_run(app.runtime, acp_run_events(sid, "OPS-9", path))
        emit(app.runtime, "issue_status", identifier="OPS-9", title="Rotate the keys",
             state="In Progress", status="running", attempt=0, session=sid)
        await until(pilot, lambda: app.main.check_action("issue_transcript", ()))
        await pilot.press("t")
        screen = await until(pilot, lambda: isinstance(app.screen, AgentScreen) and app.screen)
        log = screen.query_one(TranscriptLog)
        await until(pilot, lambda: "hi" in log.lines_text())


async def test_stopping_an_issue_run_from_the_sessions_pane_cancels_its_issue(
        tmp_path: Path) -> None:
    sid = "OPS-9-20270115-075800-000"
    path = write_transcript(tmp_path / "t.jsonl", extra=[text("agent_message_chunk", "hi")])
    app = ConsoleApp(issues=True)
    async with app.run_test(size=(110, 32)) as pilot:
        verbs = await started(pilot, app)
        events = acp_run_events(sid, "OPS-9", path)
        events[0].data["trigger"] = "issue OPS-9: dispatch"
        seed_acp_run(app.runtime, events)
        assert app.main is not None
        key = session_key("OPS-9", events[0].data["started"], sid)
        table = app.main.tables["sessions"]
        app.main.pane = "sessions"  # a hidden table catches up once shown
        await until(pilot, lambda: key in table.keys)
        app.main.show_row("sessions", key)
        await until(pilot, lambda: table.selected_key == key)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmModal)
        assert "the issue is parked" in app.screen.body
        await pilot.press("y")
        await until(pilot, lambda: verbs.sent())
        assert verbs.sent() == [("issue_cancel", {"identifier": "OPS-9"})]


def one_scheduled_agent(runtime: Runtime) -> None:
    """A configured agent, `reporter`, not running, beside the issue run of seed_issues."""
    event = Event("agent_schedule", {"agent": "reporter", "interval": 60, "enabled": True,
                                     "running": False, "next_at": None, "failures": 0,
                                     "wake_pending": False, "queued": 0})
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))


async def test_the_status_line_counts_the_agents_runs_not_the_issues() -> None:
    """An issue's run is a session of no configured agent: "N of M agents running" counts
    only the configured agents' runs (the demo has both)."""
    app = ConsoleApp(issues=True, seed_with=one_scheduled_agent)
    async with app.run_test(size=(200, 50)) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        status = app.main.query_one("#status").text.plain  # type: ignore[attr-defined]
        assert "0 of 1 agent running" in status, status
