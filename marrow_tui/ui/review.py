"""Reviewing an issue's work from the console: its diff, and accept, request changes, discard.

The orchestrator does the git work behind four operator verbs (`review_diff`, `review_accept`,
`review_request_changes`, `review_discard`); this side asks for them over the operator's
session and reads their private replies, which reach `MainScreen.operator_reply` and come
here first (`reply`). Each action is confirmed with what it will do; a refusal that needs the
operator (a merge conflict, work that discarding would lose) is shown in full, and discarding
such work is sent again, with `confirm: true`, only after a second confirmation that lists it.
Nothing here runs git or reads the workspace: the +N/-M the panes show comes from the state.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.text import Text
from textual.app import App
from textual.notifications import SeverityLevel

from ..core.state import State
from ..core.text import plural, printable
from .source import ConsoleRuntime, OperatorSession
from .modals.confirm import ConfirmModal
from .modals.detail import DetailModal
from .modals.review import RequestChangesModal
from .screens.diff import Against, DiffScreen, Ref, stat_text

#: the replies that end an action, and the errors that need the operator
DONE_REPLIES = frozenset({"review_accepted", "review_requested", "review_discarded"})
CONFLICT, UNMERGED = "conflict", "unmerged_work"
#: the most commits and files a dialog lists by name (the rest are counted)
LISTED = 40


class Host(Protocol):
    """The main screen, as the review actions use it."""

    runtime: ConsoleRuntime
    session: OperatorSession
    keys: dict[str, str]

    @property
    def app(self) -> App[Any]: ...

    def toast(self, text: str, *, severity: SeverityLevel = "information",
              timeout: float | None = None) -> None: ...


def worktree_diff(state: State, name: str) -> dict[str, int] | None:
    """The +N/-M of the worktree an issue's runs (named after it) or a configured agent's runs
    (workspace_git) work in, now; None until it is measured."""
    issue = state.issues.issues.get(name)
    if issue is not None:
        return issue.diff
    view = state.sessions.agents.get(name)
    return view.diff if view is not None else None


def accept_text(name: str, frame: dict[str, Any]) -> str:
    """What accepting does, from the diff's answer (the runtime's settings, not ours)."""
    base = printable(str(frame.get("base") or "its base branch"))
    branch = printable(str(frame.get("branch") or "its branch"))
    how, agent = frame.get("merge", "merge"), frame.get("subject") == "agent"
    stat = frame.get("stat") or {}
    work = f"{name}'s work"
    if stat.get("files"):
        counts = stat_text(1, int(stat.get("added", 0)), int(stat.get("removed", 0))).plain
        work += f" ({plural(int(stat['files']), 'file')}, {counts})"
    if how == "after_run":
        lines = [f"The workflow's after_run hook runs for {work}: it pushes {branch} or opens "
                 f"a pull request. Nothing is merged into {base} here."]
    elif how == "squash":
        lines = [f"{work} is squashed into one commit on {base}."]
    else:
        lines = [f"{work} is merged into {base} with a merge commit (--no-ff)."]
    if frame.get("uncommitted"):
        lines.append(f"The files it left uncommitted are committed on {branch} first.")
    if agent:
        lines.append(f"{name} goes on in its worktree" + (
            f"; its branch then starts again from {base}." if how == "squash" else "."))
    elif how == "after_run":
        lines.append(f"{name} is then done (moved to Done unless it is there already); its "
                     f"worktree is kept (its branch is not merged into {base}).")
    else:
        lines.append(f"{name} is then done (moved to Done unless it is there already), and its "
                     f"worktree and branch are removed (all they hold is in {base}).")
    if how != "after_run":
        lines.append(f"A conflict stops the merge, leaves {base} untouched and lists the "
                     "conflicting files.")
    return "\n".join(lines)


def stat_cell(diff: dict[str, int] | None) -> Text:
    """A pane's +N/-M cell: empty until the orchestrator has measured the workspace."""
    if diff is None:
        return Text("")
    return stat_text(int(diff.get("files", 0)), int(diff.get("added", 0)),
                     int(diff.get("removed", 0)))


def _listed(items: list[str]) -> str:
    shown = [f"  {printable(item)}" for item in items[:LISTED]]
    if len(items) > LISTED:
        shown.append(f"  … and {len(items) - LISTED} more")
    return "\n".join(shown)


class Reviews:
    """The review actions, for the panes and the diff view alike."""

    def __init__(self, host: Host) -> None:
        self.host = host
        #: lines picked in the diff view, by issue, sent with the next request for changes
        self._refs: dict[str, list[Ref]] = {}
        #: the last diff reply per issue (its base branch and stat, for the dialogs)
        self._diffs: dict[str, dict[str, Any]] = {}
        #: the issue whose accept / discard is waiting for its reply (errors name no issue)
        self._accepting = ""
        self._discarding = ""
        #: accepts asked for before their diff was known: the dialog opens when it comes
        self._accept_after_diff: set[str] = set()

    def send(self, **frame: Any) -> None:
        self.host.session.send(**frame)

    # ---- the diff view -------------------------------------------------------------------

    def open_diff(self, identifier: str) -> None:
        self.host.app.push_screen(DiffScreen(identifier, self, keys=self.host.keys))

    def ask_diff(self, identifier: str, against: Against) -> None:
        self.send(type="review_diff", identifier=identifier, against=against)

    def refs(self, identifier: str) -> list[Ref]:
        return list(self._refs.get(identifier, ()))

    def toggle_ref(self, identifier: str, ref: Ref) -> bool:
        """Add a reference, or drop it when it is there; True when added."""
        refs = self._refs.setdefault(identifier, [])
        if ref in refs:
            refs.remove(ref)
            return False
        refs.append(ref)
        return True

    def _views(self, identifier: str | None = None) -> list[DiffScreen]:
        return [screen for screen in self.host.app.screen_stack
                if isinstance(screen, DiffScreen)
                and (identifier is None or screen.identifier == identifier)]

    # ---- the three actions -----------------------------------------------------------------

    def _base(self, identifier: str) -> str:
        base = self._diffs.get(identifier, {}).get("base")
        return printable(str(base)) if base else "its base branch"

    def accept(self, identifier: str) -> None:
        """Confirm, saying what accepting does here (the diff's answer says how the runtime
        merges; asked for first when it is not known yet), then accept."""
        known = self._diffs.get(identifier)
        if known is None or "merge" not in known:
            self._accept_after_diff.add(identifier)
            self.ask_diff(identifier, "base")
            return
        how = known.get("merge")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._accepting = identifier
                self.send(type="review_accept", identifier=identifier)

        button = {"squash": "Accept and squash", "after_run": "Accept (run after_run)"}.get(
            str(how), "Accept and merge")
        self.host.app.push_screen(ConfirmModal(f"Accept {identifier}?",
                                               accept_text(identifier, known), button,
                                               "Not yet"), confirmed)

    def request_changes(self, identifier: str) -> None:
        refs = self.refs(identifier)

        def submitted(text: str | None) -> None:
            if text:
                self.send(type="review_request_changes", identifier=identifier, text=text,
                          refs=[{"path": ref.path, "line": ref.line} for ref in refs])

        self.host.app.push_screen(RequestChangesModal(
            identifier,
            f"Your text becomes the next prompt of {identifier}'s agent session (a "
            "plain-command agent gets a new run with it appended), and the issue goes back "
            "to In Progress.", [ref.text() for ref in refs]), submitted)

    def discard(self, identifier: str) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self._discarding = identifier
                self.send(type="review_discard", identifier=identifier, confirm=False)

        self.host.app.push_screen(ConfirmModal(
            f"Discard {identifier}'s work?",
            f"Its git worktree and its branch are removed; the issue's file is not touched. "
            f"If they hold commits not merged into {self._base(identifier)} or uncommitted "
            "files, nothing is removed yet: you are shown them and asked again.",
            "Discard", "Keep it"), confirmed)

    def _discard_anyway(self, identifier: str, frame: dict[str, Any]) -> None:
        commits = [f"{str(c.get('sha', ''))[:10]} {c.get('subject', '')}"
                   for c in frame.get("commits") or [] if isinstance(c, dict)]
        files = [str(f) for f in frame.get("files") or []]
        parts = [printable(str(frame.get("payload", "")))]
        if commits:
            parts.append(f"{plural(len(commits), 'commit')} not merged into "
                         f"{self._base(identifier)}:\n{_listed(commits)}")
        if files:
            parts.append(f"{plural(len(files), 'file')} with uncommitted changes:\n"
                         f"{_listed(files)}")
        parts.append("Discarding now removes them for good.")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._discarding = identifier
                self.send(type="review_discard", identifier=identifier, confirm=True)

        self.host.app.push_screen(ConfirmModal(
            f"Discard {identifier} and lose this work?", "\n\n".join(parts),
            "Discard it all", "Keep it"), confirmed)

    def _conflict(self, identifier: str, frame: dict[str, Any]) -> None:
        files = [str(f) for f in frame.get("files") or []]
        body = Text(printable(str(frame.get("payload", ""))) + "\n\n")
        body.append(f"Conflicting files ({len(files)}):\n", style="bold")
        body.append(_listed(files) + "\n")
        body.append("\nResolve them in the worktree (or request changes), then accept "
                    "again.", style="dim")
        self.host.app.push_screen(DetailModal(f"{identifier} does not merge", body))

    # ---- replies -------------------------------------------------------------------------

    def reply(self, frame: dict[str, Any]) -> bool:
        """Handle a review reply or refusal; False for a frame that is not one (or that the
        screen should also toast)."""
        kind = frame.get("type", "")
        identifier = str(frame.get("identifier") or "")
        if kind == "review_diff":
            self._diffs[identifier] = frame
            for view in self._views(identifier):
                view.show(frame)
            if identifier in self._accept_after_diff:
                self._accept_after_diff.discard(identifier)
                self.accept(identifier)
            return True
        if kind in DONE_REPLIES:
            if kind == "review_requested":  # the references went with it
                self._refs.pop(identifier, None)
                for view in self._views(identifier):
                    view.refs_changed()
            if kind == "review_discarded":
                for view in self._views(identifier):
                    view.dismiss(None)
            if kind == "review_accepted" and \
                    self._diffs.get(identifier, {}).get("subject") == "agent":
                for view in self._views(identifier):  # the agent's worktree stays: show it now
                    view.ask()
            self.host.toast(str(frame.get("payload") or f"{kind}: {identifier}"), timeout=6)
            return True
        if kind != "error":
            return False
        code = frame.get("error_code")
        if code == CONFLICT:
            self._conflict(identifier or self._accepting, frame)
            return True
        if code == UNMERGED:
            self._discard_anyway(identifier or self._discarding, frame)
            return True
        for view in self._views(identifier or None):  # a diff asked for and refused
            if view.asking:
                view.failed(str(frame.get("payload", "")))
        self._accept_after_diff.clear()  # its diff was refused: the toast says why
        return False
