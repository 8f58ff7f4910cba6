"""Agent text in the console: shown as it was sent, never read as markup, never a crash.

Real agents join the hub the console embeds (over WebSockets on 127.0.0.1) and send what a
confused or hostile agent might: Rich markup (`[/x]` alone is a MarkupError, `[link=...` is a
bad tag), styles that would recolour the screen, and escape sequences. Every place that shows
the text (tables, the status line, toasts, dialog titles, buttons, bodies) must show it
literally, with control characters written as visible escapes (`core.text.printable`).
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, Label, Static

from marrow_tui.core.events import Event
from marrow_tui.core.text import printable
from marrow_tui.protocol.frames import Outcome
from marrow_tui.runtime import Runtime
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.detail import DetailModal
from marrow_tui.ui.screens.main import StatusLine

from tests.support.hub import Agent
from tests.support.console_app import ConsoleApp, T0, filled, until

SIZE = (200, 50)
ESC = "\x1b"
#: a name with markup in it (names may hold brackets: only controls, `@` and a few
#: reserved names are refused)
NAME = "demo/[/x]eve"
QUESTION = f"Ship [bold red]now[/x]? see [link=http://x]y {ESC}[2J{ESC}]0;pwned\x07 ok"
CHOICES = ["[/x]", "[link=http://x]y", f"[bold red]red{ESC}[31m!"]
CONTEXT = f"ctx [bold red]x[/x]\nsecond {ESC}[2J line"
ABOUT = "[/x]T9"


def screen_text(app: ConsoleApp) -> str:
    """Everything the active screen draws now (toasts included), as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def plain(widget: Any) -> str:
    rendered = widget.render()
    return str(getattr(rendered, "plain", rendered))


def table_text(app: ConsoleApp, pane: str) -> str:
    table = app.main.tables[pane]  # type: ignore[union-attr]
    return "\n".join(table.render_line(y).text for y in range(table.size.height))


async def test_a_question_full_of_markup_and_escapes_is_shown_literally_and_answered() -> None:
    app = ConsoleApp(hub=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        eve = await Agent.join(app.server.uri, NAME)
        await eve.send(type="steer_ask", question=QUESTION, choices=CHOICES, context=CONTEXT,
                       task_id=ABOUT)
        await eve.until("steer_opened")
        main = app.main
        await until(pilot, lambda: "asks" in main.latest_alert)
        # the status line and the toast: the literal text, the ESC written out
        status = main.query_one(StatusLine).text.plain
        assert f"{NAME} asks: Ship [bold red]now[/x]? see [link=http://x]y \\x1b[2J" in status
        await pilot.pause()
        shown = screen_text(app)
        assert f"{NAME} asks: Ship [bold red]now[/x]?" in shown
        # the Steering pane: asker, about and question as sent
        await pilot.press("0", "z")  # zoomed: the row has the whole width
        await until(pilot, lambda: main.tables["steering"].row_count == 1)
        await pilot.pause()
        row = table_text(app, "steering")
        assert NAME in row and ABOUT in row
        assert "Ship [bold red]now[/x]? see [link=http://x]y \\x1b[2J\\x1b]0;pwned\\x07 ok" in row
        assert "[[/x] / [link=http://x]y / [bold red]red\\x1b[31m!]" in row
        # the answer dialog: title, question, context and choices, literally
        await pilot.press("a")
        modal = await until(pilot, lambda: isinstance(app.screen, AnswerModal) and app.screen)
        await pilot.pause()
        title = plain(modal.query_one(".title", Label))
        assert title.startswith(f"{NAME} asks about {ABOUT} (waiting ")
        assert plain(modal.query_one(".question", Static)) == printable(QUESTION)
        context = plain(modal.query_one(".context Static", Static))
        assert context == "ctx [bold red]x[/x]\nsecond \\x1b[2J line"
        labels = [str(b.label) for b in modal.query(".choice").results(Button)]
        assert labels == ["[/x]", "[link=http://x]y", "[bold red]red\\x1b[31m!"]
        shown = screen_text(app)
        assert f"{NAME} asks about {ABOUT}" in shown
        assert "Ship [bold red]now[/x]? see [link=http://x]y \\x1b[2J" in shown
        assert ESC not in shown
        # the first choice answers with exactly what the agent offered
        await pilot.press("enter")
        reply = await eve.until("steer_reply")
        assert reply["answer"] == "[/x]"
        await until(pilot, lambda: any(n.message == f"{NAME} told." for n in app._notifications))
        await pilot.pause()
        assert f"{NAME} told." in screen_text(app)
        assert not isinstance(app.screen, AnswerModal)
        await eve.ws.close()


async def test_a_bracketed_task_id_is_shown_literally_in_the_claims_pane_and_its_dialogs() -> None:
    app = ConsoleApp(hub=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        main = app.main
        bob = await Agent.join(app.server.uri, "demo/[b]bob")
        await bob.send(type="claim", task_id="[/x]T9", worktree="[link=http://x]wt",
                       paths=["src/[bold red]a.py"], note="[/x] note", ttl_seconds=3600)
        await bob.until("claim_granted")
        await bob.send(type="checkpoint", task_id="[/x]T9",
                       checkpoint=f"step [/x] 2\n{ESC}[2Jcleared?")
        await bob.until("checkpoint_saved")
        await pilot.press("2", "z")  # zoomed: the row has the whole width
        claims = main.tables["claims"]
        await until(pilot, lambda: "[/x]T9" in claims.keys)
        await pilot.pause()
        claims.move_cursor(claims.get_row_index("[/x]T9"))
        await pilot.pause()
        row = table_text(app, "claims")
        assert "[/x]T9" in row and "demo/[b]bob" in row
        assert "[link=http://x]wt: src/[bold red]a.py" in row
        # e: a toast that names the task
        await pilot.press("e")
        await until(pilot, lambda: any("Extending [/x]T9" in n.message
                                       for n in app._notifications))
        await pilot.pause()
        assert "Extending [/x]T9" in screen_text(app)
        # Enter: the lease's details, its title and checkpoint as sent
        await pilot.press("enter")
        modal = await until(pilot, lambda: isinstance(app.screen, DetailModal) and app.screen)
        await pilot.pause()
        assert plain(modal.query_one(".title", Label)) == "Lease [/x]T9"
        shown = screen_text(app)
        assert "step [/x] 2" in shown and "\\x1b[2Jcleared?" in shown
        assert ESC not in shown
        await pilot.press("escape")
        # r: the confirmation names the task and its owner literally
        await until(pilot, lambda: not isinstance(app.screen, DetailModal))
        await pilot.press("r")
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmModal) and app.screen)
        await pilot.pause()
        assert plain(modal.query_one(".title", Label)) == "Release [/x]T9?"
        assert "demo/[b]bob loses the lease on [/x]T9" in plain(modal.query_one(".body", Static))
        await pilot.press("y")
        await until(pilot, lambda: app.runtime.state.claims.get("[/x]T9") is None)
        await bob.ws.close()


async def test_chat_and_refusals_with_markup_reach_the_operator_literally() -> None:
    app = ConsoleApp(hub=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        main = app.main
        eve = await Agent.join(app.server.uri, NAME)
        await eve.send(type="chat", target="all", payload="hi [/x] [link=http://x]y [bold red]z")
        await pilot.press("4", "z")  # zoomed: the line has the whole width
        log = main.activity
        await until(pilot, lambda: any("[link=http://x]y" in e.text for e in log.lines_kept))
        await pilot.pause()
        shown = screen_text(app)
        assert f"{NAME}" in shown and "hi [/x] [link=http://x]y [bold red]z" in shown
        # a refusal quoting agent text (a task id) is a toast with that text, not markup
        assert app.session is not None
        app.session.send(type="handoff", task_id="[/x]T9", to_agent=NAME)
        await until(pilot, lambda: any("[/x]T9" in n.message for n in app._notifications))
        await pilot.pause()
        assert "'[/x]T9'" in screen_text(app)
        await eve.ws.close()


def seed_hostile_runs(runtime: Runtime) -> None:
    """A config error, a run, a service and an issue whose text holds markup and escapes, as
    the scheduler, the supervisor and the orchestrator would report them."""
    sid = "[/x]agent-20270115-075800-000"
    events = [
        Event("config_status", {"path": "/srv/marrow.toml", "ok": False, "at": T0,
                                "agents": ["[/x]agent"],
                                "errors": ["[agents.x] [/x] bad key [link=http://x]"],
                                "warnings": []}),
        Event("session_start", {"id": sid, "agent": "[/x]agent", "started": T0 - 5,
                                "trigger": "heartbeat", "stdout": "", "stderr": "",
                                "tasks": []}),
        Event("session_progress", {"id": sid, "agent": "[/x]agent",
                                   "last_line": f"[bold red]built {ESC}[2J[/x]"}),
        Event("service_state", {"name": "[/x]db", "state": "unhealthy", "pid": 1,
                                "port": 5, "health": f"HTTP 500 [/x] {ESC}]0;t\x07",
                                "restarts": 0, "reason": "[link=http://x]y", "since": T0,
                                "url": "", "at": T0}),
        Event("workflow_status", {"path": "/w.md", "ok": False,
                                  "errors": ["[/x] front matter [link=http://x]"],
                                  "warnings": [], "root": "/w", "dispatching": False}),
        Event("issue_status", {"identifier": "[/x]I-1", "title": f"T [b]{ESC}[31mred",
                               "state": "Todo", "status": "parked", "priority": 1,
                               "attempt": 1, "next_at": None, "reason": "[/x] why",
                               "session": "", "path": "/w/[/x]I-1.md"}),
    ]
    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=events))


async def test_runs_services_and_issues_show_file_and_output_text_literally() -> None:
    app = ConsoleApp(seeded=False, seed_with=seed_hostile_runs)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await filled(pilot, app)
        assert app.main is not None
        await pilot.press("5", "z")  # zoomed: the row has the whole width
        await pilot.pause()
        assert "[bold red]built \\x1b[2J[/x]" in table_text(app, "sessions")
        assert "[agents.x] [/x] bad key [link=http://x]" in screen_text(app)
        await pilot.press("7")
        await pilot.pause()
        services = table_text(app, "services")
        assert "[/x]db" in services and "HTTP 500 [/x] \\x1b]0;t\\x07" in services
        await pilot.press("6")
        await pilot.pause()
        issues = table_text(app, "issues")
        assert "T [b]\\x1b[31mred" in issues and "[/x] why" in issues
        shown = screen_text(app)
        assert "[/x] front matter [link=http://x]" in shown
        assert ESC not in shown
