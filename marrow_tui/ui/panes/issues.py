"""The Issues pane: the orchestrator's tracker; dispatching, cancelling, retrying, creating."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from ...core.orchestration import REFUSED, IssueView, refused_id
from ...core.sessions import Session
from ...core.text import ago, masked, plural
from ..actions import Hint
from ..bridge import workflow_error
from ..modals.confirm import ConfirmModal
from ..modals.detail import DetailModal
from ..modals.form import Field, FormModal, Problem
from ..review import stat_cell
from .base import Console, TablePane, fields
from .sessions import SessionsPane, session_key
from .table import KeyedTable

#: what the issue keys act on (the orchestrator decides; these only gate the keys)
DISPATCHABLE = frozenset({"idle", "retrying", "blocked"})
CANCELLABLE = frozenset({"running", "waiting", "retrying", "idle", "blocked"})

#: the Issues pane's groups, top to bottom: what runs (or waits on a human), what retries soon,
#: what is up next (by priority), then what needs a hand or is out of play
ISSUE_RANKS = {"running": 0, "waiting": 0, "retrying": 1, "idle": 2, "parked": 3, "blocked": 4,
               "inactive": 5, "done": 6, "refused": 7}
_ISSUE_STYLES = {"running": "bold cyan", "waiting": "bold magenta", "retrying": "yellow",
                 "parked": "bold red", "blocked": "dim", "done": "green", "inactive": "dim",
                 "refused": "red"}
#: the review keys: they act on an issue whose git workspace the orchestrator has measured
REVIEW_ACTIONS = frozenset({"view_diff", "accept_issue", "request_changes", "discard_work"})
#: what the pane says while no workflow is loaded (it is reachable with its key all the same)
NO_WORKFLOW = ("No workflow is loaded, so there are no issues here.\n\n"
               "To run the issues of a Markdown tracker as agent runs, start marrow-tui with "
               "--workflow PATH/WORKFLOW.md (or in a folder that has a WORKFLOW.md); "
               "marrow-tui demo shows one at work. See docs/orchestrator.md.")
#: what `n` says while no workflow is loaded
NO_TRACKER = ("No workflow is loaded, so there is no tracker to add an issue to: start "
              "marrow-tui with --workflow PATH/WORKFLOW.md.")
#: an issue without a priority sorts after every one with one (as in smol-symphony)
_NO_PRIORITY = 2 * 10**6


def _natural(identifier: str) -> str:
    """DEMO-2 before DEMO-10: every run of digits padded for a plain string sort."""
    return "".join(part.zfill(12) if part.isdigit() else part
                   for part in re.split(r"(\d+)", identifier))


def issue_key(identifier: str, status: str, priority: int | None,
              sort_as: str | None = None) -> str:
    """An issue's row key: its group, then its priority, then its id (naturally sorted).

    The key changes with the status, so a row moves when its issue starts, retries or parks;
    the identifier is the key's last part. A refused file's row sorts by its path (`sort_as`).
    """
    rank = ISSUE_RANKS.get(status, len(ISSUE_RANKS))
    prio = _NO_PRIORITY if priority is None else min(max(priority + 10**6, 0), _NO_PRIORITY - 1)
    order = _natural(sort_as if sort_as is not None else identifier).replace("\x1f", "?")
    return f"{rank}\x1f{prio:07d}\x1f{order}\x1f{identifier}"


def priority_problem(values: dict[str, str]) -> Problem | None:
    """A new issue's priority is a whole number, or nothing."""
    text = values["priority"]
    try:
        int(text or "0")
    except ValueError:
        return Problem("priority", f"Priority must be a whole number, not {text!r}.")
    return None


def _changes(diff: dict[str, int] | None) -> str:
    """What an issue's workspace changed, for its detail view."""
    if diff is None:
        return "-"
    files = int(diff.get("files", 0))
    if not files:
        return "none (v shows the diff)"
    return (f"{stat_cell(diff).plain} in {plural(files, 'file')} (v shows the diff)")


class IssuesTable(KeyedTable):
    """The orchestrator's issues: running and waiting first, then retries, then what is next
    by priority, then parked, blocked, inactive and done ones."""

    COLUMNS = (("id", "Id"), ("state", "State"), ("status", "Status"), ("attempt", "Attempt"),
               ("priority", "Priority"), ("diff", "Diff"), ("title", "Title"))
    TEXT = ("title", "status")
    #: +N/-M waits for a wide pane (the issue's detail and the diff view say it too)
    OPTIONAL = ("diff",)
    MAX_WIDTH = 30
    _refused_of: list[dict[str, str]] | None = None
    _refused_rows: dict[str, dict[str, str]]

    @staticmethod
    def identifier(key: str | None) -> str | None:
        return None if key is None else key.rsplit("\x1f", 1)[-1]

    def identity(self, key: str) -> str:
        return key.rsplit("\x1f", 1)[-1]

    def _wanted(self, identifier: str) -> str | None:
        if identifier.startswith(REFUSED):
            found = self._refused().get(identifier)
            return None if found is None else issue_key(
                identifier, "refused", None, masked(found["path"]))
        view = self.state.issues.issues.get(identifier)
        return None if view is None else issue_key(identifier, view.status, view.priority)

    def _refused(self) -> dict[str, dict[str, str]]:
        """The tracker files the orchestrator refused, by row id (rebuilt when they change:
        each `tracker_refused` event brings a new list)."""
        files = self.state.issues.refused
        if getattr(self, "_refused_of", None) is not files:
            self._refused_of = files
            self._refused_rows = {refused_id(f["path"]): f for f in files}
        return self._refused_rows

    def keys_of(self, identifier: str) -> list[str]:
        """The row the issue should have now, plus the one it shows (to move or drop it)."""
        keys = {k for k in self._shown if self.identifier(k) == identifier}
        wanted = self._wanted(identifier)
        if wanted is not None:
            keys.add(wanted)
        return sorted(keys)

    def all_keys(self) -> Iterable[str]:
        for view in self.state.issues.issues.values():
            yield issue_key(view.identifier, view.status, view.priority)
        for identifier, found in self._refused().items():
            yield issue_key(identifier, "refused", None, masked(found["path"]))

    def cells(self, key: str) -> tuple[Any, ...] | None:
        identifier = self.identifier(key) or ""
        if key != self._wanted(identifier):
            return None
        if identifier.startswith(REFUSED):
            found = self._refused()[identifier]
            path = masked(found["path"])
            folder, _, name = path.rpartition("/")
            return (name, folder.rpartition("/")[2], Text("refused", style="red"), "-", "-",
                    "", masked(found["reason"]))
        view = self.state.issues.issues[identifier]
        status = Text(view.status, style=_ISSUE_STYLES.get(view.status, ""))
        if view.status == "retrying" and view.next_at is not None:
            status.append(f" in {ago(view.next_at - self.clock())}")
        elif view.status == "waiting":
            status.append(" on a human", style="magenta")
        reason = " ".join(view.reason.split())
        if view.status in ("parked", "blocked") and reason:
            if reason.startswith(view.status):  # "blocked by DEMO-1" says it all
                status = Text(reason, style=status.style)
            else:
                status.append(f": {reason}")
        elif view.status == "done" and reason:  # e.g. its workspace was kept, and why
            status.append(f": {reason}", style="yellow")
        return (identifier, view.state, status, str(view.attempt) if view.attempt else "-",
                "-" if view.priority is None else str(view.priority), stat_cell(view.diff),
                view.title)


class IssuesPane(TablePane):
    name = "issues"
    title = "Issues"
    table: IssuesTable

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = IssuesTable(self.state, console.runtime.clock, id="issues-table")
        # Without a workflow the table gives way to a word on how to get one (main.tcss).
        self.box = Vertical(Static(NO_WORKFLOW, id="issues-none", markup=False), self.table,
                            id="issues-box")

    @property
    def widget(self) -> Widget:
        return self.box

    def _issue(self, key: str | None) -> IssueView | None:
        identifier = IssuesTable.identifier(key)
        return self.state.issues.issues.get(identifier) if identifier else None

    def _run(self, view: IssueView) -> Session | None:
        """The issue's current run, else its latest (runs are sessions named after the issue)."""
        sessions = self.state.sessions
        run = sessions.by_id.get(view.session) if view.session else None
        if run is None:
            runs = sessions.of_agent(view.identifier)
            run = runs[0] if runs else None
        return run

    def allows(self, action: str) -> bool:
        if action == "new_issue":
            return True  # without a workflow, it says why it cannot
        return self._allows(action, self._issue(self.selected()))

    def _allows(self, action: str, view: IssueView | None) -> bool:
        if view is None:
            return False
        if action == "dispatch_issue":
            return view.status in DISPATCHABLE
        if action == "cancel_issue":
            return view.status in CANCELLABLE
        if action == "retry_issue":
            return view.status == "parked"
        if action in REVIEW_ACTIONS:  # a git workspace the orchestrator has measured
            return view.diff is not None
        run = self._run(view)
        if action == "issue_transcript":
            return run is not None and bool(run.transcript)
        return run is not None  # go_to_issue_run

    def hint(self) -> Hint:
        view = self._issue(self.table.selected_key)
        keys: list[str | tuple[str, str]] = [
            action_id for action, action_id in (
                ("dispatch_issue", "issues.dispatch"), ("cancel_issue", "issues.cancel"),
                ("retry_issue", "issues.retry"), ("go_to_issue_run", "issues.goto"),
                ("issue_transcript", "issues.transcript"), ("view_diff", "issues.diff"),
                ("accept_issue", "issues.accept"), ("request_changes", "issues.request_changes"),
                ("discard_work", "issues.discard"))
            if self._allows(action, view)]
        if self.state.issues.workflow:
            keys.append("issues.new")
        if view is not None:
            keys.append("view.open")
        return keys

    def status(self, text: Text) -> None:
        """The orchestrator's part of the status line, and its workflow error on this pane."""
        book = self.state.issues
        workflow = book.workflow
        if not workflow:
            return
        running = sum(1 for v in book.issues.values() if v.status in ("running", "waiting"))
        text.append(f" │ {running} of {plural(len(book.issues), 'issue')} running")
        if not workflow.get("ok", True):  # (the status line's failure part says so)
            title = f"workflow error, no new dispatches: {workflow_error(workflow)}"
        elif workflow.get("dispatching") is False:
            title = "not dispatching new issues"
        else:
            title = ""
        self.console.set_border_title("issues", title)

    def open(self, key: str) -> None:
        view = self._issue(key)
        if view is None:
            return
        now = self.console.runtime.clock()
        run = self._run(view)
        body = fields((
            ("title", view.title), ("state", view.state), ("status", view.status),
            ("reason", view.reason or "-"),
            ("priority", "-" if view.priority is None else view.priority),
            ("attempt", view.attempt or "-"),
            ("next try", f"in {ago(view.next_at - now)}" if view.next_at is not None else "-"),
            ("run", f"{run.id} ({run.state})" if run is not None else "-"),
            ("changes", _changes(view.diff)),
            ("file", view.path or "-"),
        ))
        done = [d for d in self.state.issues.done if d.get("identifier") == view.identifier]
        if done:
            last = done[-1]
            body.append(f"\nMarked done by {last.get('by', '?')} "
                        f"(moved to {last.get('to_state', '?')}):\n", style="bold")
            body.append(f"  {last.get('title', '')}\n  {last.get('summary', '')}\n")
        self.console.app.push_screen(DetailModal(f"Issue {view.identifier}", body))

    def dispatch_issue(self) -> None:
        view = self._issue(self.selected())
        if view is not None:
            self.send(type="issue_dispatch", identifier=view.identifier)

    def cancel_issue(self) -> None:
        view = self._issue(self.selected())
        if view is None:
            return
        identifier = view.identifier

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type="issue_cancel", identifier=identifier)

        running = view.status in ("running", "waiting")
        self.console.app.push_screen(ConfirmModal(
            f"Cancel {identifier}?",
            ("Its run is stopped (SIGTERM, then SIGKILL after the grace) and the issue is "
             if running else "The issue is ")
            + f"parked: it stays in {view.state or 'its state'} and is not dispatched again "
            "until you retry it (R).", "Cancel and park", "Keep it"), confirmed)

    def retry_issue(self) -> None:
        view = self._issue(self.selected())
        if view is not None and view.status == "parked":
            self.send(type="issue_retry", identifier=view.identifier)

    def new_issue(self) -> None:
        if not self.state.issues.workflow:
            self.console.toast(NO_TRACKER, severity="warning", timeout=8)
            return

        def submitted(got: dict[str, str] | None) -> None:
            if got:
                self.send(type="issue_create", title=got["title"], body=got["description"],
                          priority=int(got["priority"]) if got["priority"] else None)

        self.console.app.push_screen(FormModal("New issue", [
            Field("title", "Title", "one line"),
            Field("description", "Description", "what to do (optional)"),
            Field("priority", "Priority", "a whole number, lower first; empty for none")],
            "Create", required=("title",), check=priority_problem), submitted)

    def issue_transcript(self) -> None:
        view = self._issue(self.selected())
        run = self._run(view) if view is not None else None
        sessions = self.console.panes["sessions"]
        if run is not None and run.transcript and isinstance(sessions, SessionsPane):
            sessions.open_run(run)

    def go_to_issue_run(self) -> None:
        view = self._issue(self.selected())
        run = self._run(view) if view is not None else None
        if run is not None:
            self.console.show_row("sessions", session_key(run.agent, run.started, run.id))

    # ---- review (ui/review.py) -------------------------------------------------------------

    def _reviewable(self) -> str | None:
        view = self._issue(self.selected())
        return view.identifier if view is not None and view.diff is not None else None

    def view_diff(self) -> None:
        identifier = self._reviewable()
        if identifier is not None:
            self.console.review.open_diff(identifier)

    def accept_issue(self) -> None:
        identifier = self._reviewable()
        if identifier is not None:
            self.console.review.accept(identifier)

    def request_changes(self) -> None:
        identifier = self._reviewable()
        if identifier is not None:
            self.console.review.request_changes(identifier)

    def discard_work(self) -> None:
        identifier = self._reviewable()
        if identifier is not None:
            self.console.review.discard(identifier)
