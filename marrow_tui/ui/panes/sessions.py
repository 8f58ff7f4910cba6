"""The Sessions pane: the scheduler's runs per agent; waking, pausing, stopping, their output."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from rich.text import Text

from ...core.sessions import Session
from ...core.steering import Request
from ...core.text import ago
from ..actions import BY_ID, Hint
from ..modals.confirm import ConfirmModal
from ..modals.form import Field, FormModal
from ..review import stat_cell, worktree_diff
from ..run_text import run_summary
from ..screens.agent import AgentScreen
from ..screens.log import LogScreen
from .base import Console, TablePane
from .table import KeyedTable

#: finished sessions per agent the Sessions pane lists (the state keeps more)
SESSIONS_SHOWN = 10
_STATE_STYLES = {"running": "bold cyan", "ok": "green", "failed": "bold red",
                 "timeout": "bold red", "error": "bold red", "stopped": "yellow",
                 "interrupted": "yellow"}


#: the keys that act on a run, in hint order (the agent view runs the same ones)
RUN_KEYS = tuple(BY_ID[i] for i in ("sessions.prompt", "sessions.cancel_turn", "sessions.stop"))
RUN_ACTIONS = tuple(action.name for action in RUN_KEYS)

#: end states whose reason says more than the exit code
_SAY_WHY = frozenset({"timeout", "error", "stopped", "interrupted"})


@runtime_checkable
class Answers(Protocol):
    """The Steering pane, as the agent view reaches it (it imports this module)."""

    def answer_request(self, request: Request) -> None: ...


def session_key(agent: str, started: float, sid: str) -> str:
    """Rows group by agent, newest first (so a running session heads its agent's rows)."""
    return f"{agent}\x1f{1e11 - started:015.3f}\x1f{sid}"


def placeholder_key(agent: str) -> str:
    return f"{agent}\x1f~"


class SessionsTable(KeyedTable):
    """Runs per agent: the running one and the recent ones, newest first.

    The first row of each agent also says what the scheduler will do next (next run in 4m,
    disabled, a wake waiting). Keys sort by agent, then newest first; the session id is the
    key's last part.
    """

    # What the operator reads first, first; the session id (also in the output view's
    # title) last, where a narrow terminal may scroll it off.
    COLUMNS = (("agent", "Agent"), ("started", "Started"), ("took", "Took"),
               ("state", "State"), ("exit", "Exit"), ("diff", "Diff"), ("line", "Last output"),
               ("session", "Session"))
    TEXT = ("line", "agent", "session")
    #: an issue run's +N/-M waits for a wide pane
    OPTIONAL = ("diff",)
    MAX_WIDTH = 60

    def agent_names(self) -> list[str]:
        book = self.state.sessions
        names = set(book.agents)
        names.update(s.agent for s in book.by_id.values())
        return sorted(names)

    def keys_of(self, agent: str) -> list[str]:
        """The rows the agent should have now, plus the ones it shows (to drop old ones)."""
        shown = [k for k in self._shown if k.split("\x1f", 1)[0] == agent]
        return sorted(set(shown) | set(self._wanted(agent)))

    def _wanted(self, agent: str) -> list[str]:
        sessions = self.state.sessions.of_agent(agent)
        running = [s for s in sessions if s.running]
        recent = running + [s for s in sessions if not s.running][:SESSIONS_SHOWN]
        if not recent:
            return [placeholder_key(agent)] if agent in self.state.sessions.agents else []
        return [session_key(s.agent, s.started, s.id) for s in recent]

    def all_keys(self) -> Iterable[str]:
        for agent in self.agent_names():
            yield from self._wanted(agent)

    def session_id(self, key: str | None) -> str | None:
        if key is None:
            return None
        sid = key.rsplit("\x1f", 1)[-1]
        return None if sid == "~" else sid

    @staticmethod
    def agent_of(key: str | None) -> str | None:
        return None if key is None else key.split("\x1f", 1)[0]

    def cells(self, key: str) -> tuple[Any, ...] | None:
        agent = self.agent_of(key) or ""
        wanted = self._wanted(agent)
        if key not in wanted:
            return None
        book = self.state.sessions
        sid = self.session_id(key)
        head = wanted[0] == key
        label = self._agent_label(agent) if head else Text("")
        if sid is None:
            return (label, "", "", Text("never run", style="dim"), "", "", "", "")
        session = book.by_id[sid]
        now = self.clock()
        started = time.strftime("%H:%M:%S", time.localtime(session.started))
        if time.localtime(session.started)[:3] != time.localtime(now)[:3]:
            started = time.strftime("%m-%d %H:%M", time.localtime(session.started))
        took = ago((session.ended or now) - session.started)
        state = Text(session.state, style=_STATE_STYLES.get(session.state, ""))
        code = "" if session.code is None else str(session.code)
        short = sid[len(agent) + 1:] if sid.startswith(agent + "-") else sid
        diff = stat_cell(worktree_diff(self.state, agent)) if head else Text("")
        line = session.last_line
        if session.state in _SAY_WHY and session.reason:
            line = f"{session.reason} · {line}" if line else session.reason
        if session.transcript:  # an ACP run: what it does now, its turns, tokens and cost
            return (label, started, took, state, code, diff, self._acp_line(session, line),
                    short)
        return (label, started, took, state, code, diff, line[:200], short)


    def _acp_line(self, session: Session, line: str) -> Text:
        summary = run_summary(session, self.state.steering)
        if line and not session.running:
            summary = Text(line[:120]).append(" · " if summary.plain else "").append_text(
                summary)
        return summary[:200]

    def _agent_label(self, agent: str) -> Text:
        view = self.state.sessions.agents.get(agent)
        label = Text(agent, style="bold")
        if view is None:
            issue = self.state.issues.issues.get(agent)
            if issue is not None:  # an issue's runs (the orchestrator's, not the config's)
                return label.append(f"  issue · {issue.status}", style="dim")
            return label.append("  (not in config)", style="dim")
        if view.paused:
            note, style = "paused", "yellow"
        elif not view.enabled:
            note, style = "disabled in config", "dim"
        elif view.running:
            note, style = ("wake queued" if view.wake_pending else ""), "cyan"
        elif view.next_at is not None:
            note, style = f"next {ago(view.next_at - self.clock())}", "dim"
        else:
            note, style = "", ""
        if view.failures:
            note = f"{note}, {view.failures} failed" if note else f"{view.failures} failed"
            style = "red"
        if view.queued:
            note = f"{note}, {view.queued} queued" if note else f"{view.queued} queued"
        return label.append(f"  {note}", style=style) if note else label


class SessionsPane(TablePane):
    name = "sessions"
    title = "Sessions"
    table: SessionsTable

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = SessionsTable(self.state, console.runtime.clock, id="sessions-table")

    def _run(self, key: str | None) -> Session | None:
        sid = self.table.session_id(key)
        return self.state.sessions.by_id.get(sid) if sid else None

    def _agent(self) -> str | None:
        return SessionsTable.agent_of(self.selected())

    def allows(self, action: str) -> bool:
        if action in ("wake", "add_task", "toggle_agent"):
            agent = self._agent()
            return agent is not None and agent in self.state.sessions.agents
        run = self._run(self.selected())
        if run is None:
            return False
        if action in RUN_ACTIONS:
            return self.can(action, run)
        if action == "view_run_diff":
            return self._reviewable(run) is not None
        return True  # open_log

    def can(self, action: str, run: Session) -> bool:
        """Whether a run action can run now on `run` (the agent view asks this too)."""
        if action == "stop_run":
            return run.running
        acp = run.running and bool(run.transcript)  # only an ACP agent takes prompts
        if action == "answer_request":
            return self._asked(run) is not None
        if action == "prompt_session":
            return acp
        if action == "cancel_turn":
            return acp and run.in_turn
        return False

    def act(self, action: str, run: Session) -> None:
        """Run a run action on `run`, from the list or from the agent view."""
        if action == "stop_run":
            self._confirm_stop(run)
        elif action == "prompt_session":
            self._prompt(run)
        elif action == "cancel_turn":
            self.send(type="session_cancel", id=run.id)
        elif action == "answer_request":
            request, steering = self._asked(run), self.console.panes["steering"]
            if request is not None and isinstance(steering, Answers):
                steering.answer_request(request)

    def _asked(self, run: Session) -> Request | None:
        """What the run waits on the operator for: its longest-waiting open request."""
        return next((r for r in self.state.steering.waiting() if r.session == run.id), None)

    def _prompt(self, run: Session) -> None:
        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.send(type="session_prompt", id=run.id, text=values["text"])

        when = "after its current turn" if run.in_turn else "now"
        self.console.app.push_screen(FormModal(f"Prompt {run.agent} ({run.id})", [
            Field("text", f"Sent {when}", "what the agent should do next")], "Send",
            required=("text",)), submitted)

    def hint(self) -> Hint:
        agent = SessionsTable.agent_of(self.table.selected_key)
        if agent is None:
            return ()
        run = self._run(self.table.selected_key)
        keys: list[str | tuple[str, str]] = []
        view = self.state.sessions.agents.get(agent)
        if view is not None:
            keys += ["sessions.wake", "sessions.task"]
            if view.paused or view.enabled:  # one off in the config is the file's to change
                keys.append(("sessions.pause", "resume" if view.paused else "pause"))
        if run is not None:
            keys += [action.id for action in RUN_KEYS if self.can(action.name, run)]
            keys.append(("view.open", "transcript" if run.transcript else "output"))
            if self._reviewable(run) is not None:
                keys.append("sessions.diff")
        return keys

    def wake(self) -> None:
        agent = self._agent()
        if agent:
            self.send(type="wake", agent=agent, reason="woken from the console")

    def toggle_agent(self) -> None:
        """Pause or resume: kept in the runtime's log, never written to the config."""
        view = self.state.sessions.agents.get(self._agent() or "")
        if view is None:
            return
        if not view.enabled and not view.paused:
            path = self.state.sessions.config.get("path") or "the config"
            self.console.toast(f"{view.agent} is off in the config (enabled = false in "
                               f"{path}); set it to true there to run it.", timeout=6)
            return
        self.send(type="agent_pause", agent=view.agent, paused=not view.paused)

    def stop_run(self) -> None:
        run = self._run(self.selected())
        if run is not None and self.can("stop_run", run):
            self.act("stop_run", run)

    def prompt_session(self) -> None:
        run = self._run(self.selected())
        if run is not None and self.can("prompt_session", run):
            self.act("prompt_session", run)

    def cancel_turn(self) -> None:
        run = self._run(self.selected())
        if run is not None and self.can("cancel_turn", run):
            self.act("cancel_turn", run)

    def _confirm_stop(self, run: Session) -> None:
        if run.trigger.startswith("issue "):  # the orchestrator's: stopping it parks its issue
            self._confirm_cancel_issue(run)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type="session_stop", id=run.id)

        self.console.app.push_screen(ConfirmModal(
            f"Stop {run.id}?",
            f"{run.agent}'s run gets SIGTERM (its whole process group), then SIGKILL if it "
            "has not ended within the agent's stop_grace. Tasks handed to it go back to the "
            "queue.", "Stop the run", "Keep it running"), confirmed)

    def _confirm_cancel_issue(self, run: Session) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type="issue_cancel", identifier=run.agent)

        self.console.app.push_screen(ConfirmModal(
            f"Stop {run.id}?",
            f"It is issue {run.agent}'s run: the issue is parked (not dispatched again until "
            "you retry it from the Issues pane), and the run's process group is ended.",
            "Stop and park", "Keep it running"), confirmed)

    def add_task(self) -> None:
        agent = self._agent()
        if not agent:
            return

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.send(type="task_add", agent=agent, title=values["title"],
                          body=values["body"])

        self.console.app.push_screen(FormModal(f"Add a task for {agent}", [
            Field("title", "Title", "one line"),
            Field("body", "Details", "optional")], "Queue it", required=("title",)), submitted)

    def open_log(self) -> None:
        key = self.selected()
        if key is not None:
            self.open(key)

    def open(self, key: str) -> None:
        run = self._run(key)
        if run is not None:
            self.open_run(run)

    def open_run(self, run: Session) -> None:
        """Its transcript (an ACP run, live) or its output."""
        if run.transcript:  # an ACP run: its transcript, live
            self.console.app.push_screen(AgentScreen(run, self.state.sessions,
                                                     self.state.steering, self))
        else:
            self.console.app.push_screen(LogScreen(run))

    def _reviewable(self, run: Session) -> str | None:
        """The issue (or the agent) whose worktree this run works in, once it is measured."""
        return run.agent if worktree_diff(self.state, run.agent) is not None else None

    def view_run_diff(self) -> None:
        run = self._run(self.selected())
        identifier = self._reviewable(run) if run is not None else None
        if identifier is not None:
            self.console.review.open_diff(identifier)
