"""An ACP run's agent view: its transcript, live, under a header saying what it does now.

Full-screen on every terminal size: beside the Sessions list would need the main screen's
keys (arrows move the table's cursor) to share with the transcript's scrolling.

The keys that act on the run (prompt it, cancel its turn, stop it) are the Sessions pane's
(`RunActions`): the view asks it whether each can run now and hands it the run, so the pane
and the view cannot disagree.
"""

from __future__ import annotations

import os
from typing import ClassVar, Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ...attach.files import Files, RuntimeFile
from ...core.sessions import Session, SessionBook
from ...core.steering import SteeringBook
from ...core.text import cost_text, plural, printable, tokens_text
from ..run_text import WAITING, doing_now
from ..transcript.widget import FOLLOW_EVERY, TranscriptLog


class RunActions(Protocol):
    """The Sessions pane, as the view sees it: what can be done to a run, and doing it."""

    def can(self, action: str, run: Session) -> bool: ...

    def act(self, action: str, run: Session) -> None: ...


class AgentScreen(Screen[None]):
    """Full-screen view of one ACP run's transcript."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="agent.close"),
        Binding("slash", "search", "Search", key_display="/", id="agent.search"),
        Binding("n", "search_next(True)", "Next", id="agent.search_next"),
        Binding("N", "search_next(False)", "Previous", id="agent.search_previous"),
        Binding("a", "run('answer_request')", "Answer", id="agent.answer"),
        Binding("i", "run('prompt_session')", "Prompt", id="agent.prompt"),
        Binding("c", "run('cancel_turn')", "Cancel turn", id="agent.cancel_turn"),
        Binding("x", "run('stop_run')", "Stop", id="agent.stop"),
    ]

    def __init__(self, session: Session, sessions: SessionBook, steering: SteeringBook,
                 actions: RunActions | None = None, *,
                 poll_every: float = FOLLOW_EVERY) -> None:
        super().__init__()
        self.session_id = session.id
        self._session = session
        self.sessions = sessions
        self.steering = steering
        self.actions = actions
        self.poll_every = poll_every
        self.needle = ""
        self._title = Text()
        self.transcript = RuntimeFile(session.transcript, run=session.id, stream="transcript")

    @property
    def session(self) -> Session:
        """The run as the state has it now (the state may have replaced the object)."""
        return self.sessions.by_id.get(self.session_id) or self._session

    @property
    def files(self) -> Files:
        """Where the transcript is read: where the runtime keeps it, or a copy."""
        return self.app.files  # type: ignore[attr-defined,no-any-return]

    def compose(self) -> ComposeResult:
        yield Static("", id="agent-title")
        yield TranscriptLog(self.files.open(self.transcript), poll_every=self.poll_every,
                            id="agent-transcript")
        yield Input(placeholder="search the transcript (Enter to find, Esc to close)",
                    id="agent-search", disabled=True)
        yield Footer(compact=True)

    @property
    def transcript_log(self) -> TranscriptLog:
        return self.query_one(TranscriptLog)

    def on_mount(self) -> None:
        self.transcript_log.focus()
        self._refresh_title()
        self.set_interval(self.poll_every, self._refresh_title)

    def on_unmount(self) -> None:
        self.files.close(self.transcript)

    # ---- the header -------------------------------------------------------------------------

    def title_text(self) -> Text:
        s = self.session
        doing = doing_now(s, self.steering)
        text = Text.assemble((f" {printable(s.id)} ", "bold"), ("· ", "dim"),
                             printable(s.agent), ("  ", ""),
                             (s.state, "bold cyan" if s.running else "bold"))
        for part in (plural(s.turns, "turn"), tokens_text(s.usage), cost_text(s.usage)):
            if part:
                text.append(f"  {part}")
        if doing:
            text.append("  ")
            text.append(printable(doing), style="bold magenta" if doing == WAITING else "cyan")
        if not self.transcript_log.following:
            text.append("  paused (End follows)", style="yellow")
        try:
            size = os.path.getsize(self.transcript_log.path)
        except OSError:
            problem = self.files.problem(self.transcript)
            text.append(f"  transcript not read: {printable(problem)}" if problem
                        else "  no transcript yet", style="yellow" if problem else "dim")
        else:
            text.append(f"  {size // 1024} kB", style="dim")
        return text

    def _refresh_title(self) -> None:
        text = self.title_text()
        if text != self._title:
            self._title = text
            self.query_one("#agent-title", Static).update(text)

    @on(TranscriptLog.Following)
    def _following(self) -> None:
        self._refresh_title()

    # ---- keys -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            name = str(parameters[0]) if parameters else ""
            return self.actions is not None and self.actions.can(name, self.session)
        if action == "search_next":
            return bool(self.needle)
        return True

    def action_run(self, name: str) -> None:
        if self.actions is not None and self.actions.can(name, self.session):
            self.actions.act(name, self.session)

    def action_close(self) -> None:
        box = self.query_one("#agent-search", Input)
        if box.has_class("-shown"):
            self._close_search()
        else:
            self.dismiss(None)

    def action_search(self) -> None:
        box = self.query_one("#agent-search", Input)
        box.disabled = False
        box.add_class("-shown")
        box.value = self.needle
        box.focus()

    def _close_search(self) -> None:
        box = self.query_one("#agent-search", Input)
        box.remove_class("-shown")
        box.disabled = True
        self.transcript_log.focus()

    @on(Input.Submitted, "#agent-search")
    def _search(self, event: Input.Submitted) -> None:
        self.needle = event.value
        self._close_search()
        self.refresh_bindings()
        self.action_search_next(True)

    def action_search_next(self, forward: bool) -> None:
        if self.needle and not self.transcript_log.search(self.needle, forward):
            self.app.notify(f"Not found: {printable(self.needle)}", timeout=3, markup=False)
