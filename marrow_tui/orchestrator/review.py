"""Reviewing an issue's work: the `review_*` verbs and the +N/-M each issue shows.

The orchestrator's part of docs/protocol.md §6.6. Each verb checks what it can at once (who
asks, which issue, whether its workspace is a worktree marrow-tui made), then does the git
work in a thread (worktrees.py) and answers privately when it is done: the answer is a frame
to the sender's name, submitted after the events the action made, so it never arrives before
the change it reports is in the log.

While an accept or a discard runs the issue is not dispatched (no run may start in a worktree
being merged or removed). Requested changes reach a live ACP session as its next prompt (the
operator's `session_prompt` path), else they wait for the issue's next run, which gets them
after its rendered prompt.

The +N/-M (`review_stat`, a transient event): a task looks every STAT_EVERY seconds at each
shown issue's worktree with a few stat() calls (its HEAD, index and branch ref), and asks git
(in a thread) only when one changed, when a run or a turn of the issue ended, or when an
action touched it; the event goes out only when the numbers differ from what the issue shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..agent_session import MAX_PROMPT, live_sessions
from ..core.aio import within
from ..core.events import Event, Refusal
from ..protocol.frames import Call, Delivery, Outcome, encode, text_field
from .tracker import Issue, TrackerError, norm_state
from .workspaces import WorktreeRecord, check_removal, git_head, worktree_of
from .worktrees import (
    Conflict,
    GitError,
    accept,
    commit_leftovers,
    diff_of,
    mark_reviewed,
    stat_of,
    unmerged_work,
    watched_files,
)

#: the orchestrator that serves these verbs (dispatcher.py imports this module, so it is not
#: named here)
Orchestrator = Any

log = logging.getLogger("marrow.review")

#: how often the worktrees' HEAD, index and branch are looked at (a stat() each)
STAT_EVERY = 2.0
#: the most file:line references one request for changes carries
MAX_REFS = 200
#: the state requested changes move an issue back to, when the workflow has it
IN_PROGRESS = "in progress"


class Later:
    """The private answer to a verb whose work ends after the verb returned."""

    def __init__(self, orchestrator: Orchestrator, call: Call) -> None:
        self.runtime = orchestrator.runtime
        self.context = call.context
        self.sender = call.sender

    def reply(self, kind: str, payload: str, **fields: Any) -> None:
        text = encode(self.context.frame(kind, self.sender, payload, **fields))
        self.runtime.submit(Outcome(deliveries=[Delivery(text, frozenset({self.sender}))]))

    def deny(self, code: str, payload: str, **fields: Any) -> None:
        self.reply("error", payload, error_code=code, **fields)


@dataclass(slots=True)
class _Watched:
    tree: WorktreeRecord
    #: its HEAD, index and branch ref, found once (finding them reads files; a look only
    #: stat()s them, every STAT_EVERY seconds for every shown issue)
    files: tuple[Path, ...] = ()
    stamp: tuple[tuple[int, int], ...] | None = None


class Review:
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.o = orchestrator
        self.runtime = orchestrator.runtime
        #: identifiers with an accept or a discard under way: not dispatched meanwhile
        self.busy: set[str] = set()
        #: issue id -> the requested changes its next run gets after its prompt
        self.requested: dict[str, str] = {}
        self._watched: dict[str, _Watched] = {}
        #: identifiers whose numbers are measured again at the next look, changed or not
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._unsubscribe: Any = None

    def serve(self) -> None:
        decider = self.runtime.decider
        assert decider is not None
        for verb, handler in (("review_diff", self._verb_diff),
                              ("review_accept", self._verb_accept),
                              ("review_request_changes", self._verb_request_changes),
                              ("review_discard", self._verb_discard)):
            decider.register(verb, self.o._serving(handler))

    def start(self) -> None:
        """The +N/-M watch (and the turn ends it listens for)."""
        self._unsubscribe = self.runtime.subscribe(self._heard)
        self.o._spawn(self._watch(), "review-stats")

    def stop(self) -> None:
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None

    def touch(self, identifier: str) -> None:
        """Measure the issue's worktree again soon (a run or a turn ended, an action ran)."""
        self._dirty.add(identifier)
        self._wake.set()

    def take_request(self, issue_id: str) -> str:
        """The requested changes for the run about to start (once), as prompt text."""
        text = self.requested.pop(issue_id, "")
        return f"\n\n{text}" if text else ""

    # ---- what the verbs share -------------------------------------------------------------

    def _tree(self, call: Call, *, need_issue: bool) -> tuple[Issue | None, WorktreeRecord,
                                                              str] | None:
        """The issue and worktree a verb names (else the frame is refused, one sentence)."""
        identifier = text_field(call.frame, "identifier").strip()
        workflow = self.o.workflow
        issue = self.o._find(call) if identifier else None
        name = issue.identifier if issue is not None else identifier
        tree = worktree_of(workflow.workspace_root, name) if workflow and name else None
        if (issue is None and (need_issue or tree is None)):
            call.deny("error", Refusal("unknown_issue", f"No issue {identifier!r} in the "
                                                        "tracker."))
            return None
        if tree is None:
            call.deny("error", Refusal("no_worktree", f"{name} has no git worktree (its "
                                                      "workspace is not one marrow-tui made "
                                                      "with workspace.git, or it is gone)."))
            return None
        return issue, tree, name

    def _idle(self, call: Call, name: str) -> bool:
        """Refuse (and say why) while the issue runs or another action is at work on it."""
        if any(name in (e.issue.id, e.issue.identifier) for e in self.o.running.values()):
            call.deny("error", Refusal("already_running", f"{name} is running; stop it (x) or "
                                                          "let its run end first."))
            return False
        if name in self.busy or name in self.o.removing:
            call.deny("error", Refusal("review_busy", f"{name}'s worktree is busy with "
                                                      "another action; try again."))
            return False
        return True

    # ---- review_diff --------------------------------------------------------------------

    def _verb_diff(self, call: Call) -> None:
        against = call.frame.get("against") or "base"
        if against not in ("base", "review"):
            call.deny("error", Refusal("bad_against", "against is base or review."))
            return
        found = self._tree(call, need_issue=False)
        if found is None:
            return
        _issue, tree, name = found
        self.o._spawn(self._diff(Later(self.o, call), name, tree, str(against)), f"diff {name}")

    async def _diff(self, later: Later, name: str, tree: WorktreeRecord, against: str) -> None:
        try:
            diff = await asyncio.to_thread(diff_of, tree.path, tree.base, tree.branch, against)
        except GitError as exc:
            later.deny("git_failed", f"{name}: {exc.message}")
            return
        stat = diff.stat
        later.reply("review_diff", f"{name}: {stat['files']} file(s), +{stat['added']} "
                    f"-{stat['removed']} against {tree.base if diff.against == 'base' else 'the last review'}.",
                    identifier=name, base=tree.base, base_commit=diff.base_commit,
                    head_commit=diff.head_commit, against=diff.against, stat=stat,
                    diff=diff.text, truncated=diff.truncated, uncommitted=diff.uncommitted)

    # ---- review_accept ------------------------------------------------------------------

    def _verb_accept(self, call: Call) -> None:
        if not self.o._operator_only(call):
            return
        found = self._tree(call, need_issue=True)
        if found is None:
            return
        issue, tree, name = found
        assert issue is not None
        if not self._idle(call, name):
            return
        self.busy.add(name)  # claimed in the same turn as the checks: no dispatch between
        self.o._spawn(self._accept(Later(self.o, call), issue, tree), f"accept {name}")

    async def _accept(self, later: Later, issue: Issue, tree: WorktreeRecord) -> None:
        name = issue.identifier
        try:
            await self._accepting(later, issue, tree)
        finally:
            self.busy.discard(name)
            self.touch(name)
            self.o.poke()

    async def _accepting(self, later: Later, issue: Issue, tree: WorktreeRecord) -> None:
        name = issue.identifier
        workflow = self.o.workflow
        assert workflow is not None
        how = workflow.git.merge if workflow.git is not None else "merge"
        try:
            if how == "after_run":
                commit = await self._accept_by_hook(issue, tree)
            else:
                message = (f"{name}: {issue.title}\n\nAccepted in marrow-tui: "
                           f"{'squashed' if how == 'squash' else 'merged'} from {tree.branch}.")
                await asyncio.to_thread(commit_leftovers, tree.path,
                                        f"{name}: work left uncommitted at accept")
                accepted = await asyncio.to_thread(accept, tree.repo, tree.branch, tree.base,
                                                   how, message)
                commit = accepted.commit
        except Conflict as exc:
            shown = ", ".join(exc.files[:5]) + (f", +{len(exc.files) - 5} more"
                                                if len(exc.files) > 5 else "")
            count = (f"{len(exc.files)} files conflict" if len(exc.files) != 1
                     else "1 file conflicts")
            later.deny("conflict", f"{name} does not merge into {tree.base}: {count} "
                       f"({shown}); {tree.base} is untouched.", files=exc.files)
            return
        except GitError as exc:
            later.deny("not_accepted", f"{name} was not accepted: {exc.message}")
            return
        to_state = await self._move_done(issue)
        by = later.sender
        self.o._emit(Event("review_accepted", {
            "identifier": name, "how": how, "commit": commit, "base": tree.base,
            "branch": tree.branch, "by": by, "at": self.o.clock()}))
        if to_state is not None:
            self.o._emit(Event("issue_done", {
                "identifier": name, "title": issue.title,
                "summary": f"accepted by {by} ({how} into {tree.base}, {commit[:12]})",
                "to_state": to_state, "by": by, "at": self.o.clock(),
                "path": str(issue.path), "session": ""}))
            self.o._status(issue, "done", state=to_state)
        later.reply("review_accepted", f"Accepted {name} into {tree.base} ({how}, "
                    f"{commit[:12]}).", identifier=name, how=how, commit=commit)
        # Merged: nothing is lost with the worktree and its branch (else it is kept, said).
        # A squash leaves the branch's commits out of the base, but all they did is in it.
        await self.o._remove_workspace(name, hook=False, by=by, force=how == "squash")

    async def _accept_by_hook(self, issue: Issue, tree: WorktreeRecord) -> str:
        """`merge: after_run`: accepting runs the after_run hook once more (it pushes the
        branch or opens the pull request), with SYMPHONY_REVIEW=accept; it must succeed."""
        workflow = self.o.workflow
        assert workflow is not None
        if not workflow.hooks.after_run:
            raise GitError("workspace.git.merge is after_run but there is no after_run hook")
        await asyncio.to_thread(commit_leftovers, tree.path,
                                f"{issue.identifier}: work left uncommitted at accept")
        failed = await self.o._hook_in(issue, tree.path, "after_run",
                                       {"SYMPHONY_REVIEW": "accept"})
        if failed:
            raise GitError(failed)
        return git_head(tree.path) or ""

    async def _move_done(self, issue: Issue) -> str | None:
        """Move the issue to the terminal state `done` moves to (as mark_done does); None when
        it is already in a terminal state."""
        workflow = self.o.workflow
        assert workflow is not None
        if workflow.is_terminal(issue.state):
            return None
        target = workflow.done_state
        try:
            await asyncio.to_thread(self.o._move, issue, target)
        except (TrackerError, OSError) as exc:
            log.warning("%s: accepted, but its file was not moved to %s: %s",
                        issue.identifier, target, exc)
            return None
        self.o._dones += 1
        self.o._done_at[issue.id] = self.o._dones
        return target

    # ---- review_request_changes ---------------------------------------------------------

    def _verb_request_changes(self, call: Call) -> None:
        if not self.o._operator_only(call):
            return
        issue = self.o._find(call)
        if issue is None:
            call.deny("error", Refusal("unknown_issue", "No such issue in the tracker."))
            return
        prompt = self._changes(call, issue)
        if prompt is None:
            return
        entry = self.o.running.get(issue.id)
        session = entry.acp if entry is not None else None
        if session is not None:
            queued = live_sessions(self.runtime).prompt(session, prompt, call.sender, call.emit)
            how = "prompt"
            said = (f"Sent to {session.session} as its next prompt"
                    f"{' (after the turn under way)' if queued else ''}.")
        else:
            before = self.requested.get(issue.id)
            self.requested[issue.id] = f"{before}\n\n{prompt}" if before else prompt
            how = "next_run"
            said = ("It goes with its next run (a plain command takes no prompt while it runs)."
                    if entry is not None else "A new run starts with it.")
        moved = self._back_to_work(issue)
        call.emit(Event("review_requested", {
            "identifier": issue.identifier, "text": text_field(call.frame, "text").strip(),
            "refs": _refs(call.frame.get("refs")), "how": how,
            "session": session.session if session is not None else "", "by": call.sender,
            "at": self.o.clock()}))
        if entry is None:
            self._run_again(moved)
        tree = worktree_of(self.o.workflow.workspace_root, issue.identifier) \
            if self.o.workflow is not None else None
        if tree is not None:
            self.o._spawn(self._mark_reviewed(tree), f"review point {issue.identifier}")
        call.reply("review_requested", f"Changes requested for {issue.identifier}. {said}",
                   identifier=issue.identifier)

    def _changes(self, call: Call, issue: Issue) -> str | None:
        """The requested changes as the agent's prompt; None (and the frame refused) when
        the request is malformed or the worktree is busy."""
        text = text_field(call.frame, "text").strip()
        refs = _refs(call.frame.get("refs"))
        if not text:
            call.deny("error", Refusal("empty_prompt", "Say what to change: the text is empty."))
            return None
        if refs is None:
            call.deny("error", Refusal("bad_refs", f"refs is a list of at most {MAX_REFS} "
                                                   "{path, line} (a line from 1)."))
            return None
        prompt = _changes_prompt(text, refs)
        if len(prompt) > MAX_PROMPT:
            call.deny("error", Refusal("too_long", f"Requested changes are at most "
                                                   f"{MAX_PROMPT // 1024} KiB."))
            return None
        if issue.identifier in self.busy:
            call.deny("error", Refusal("review_busy", f"{issue.identifier}'s worktree is busy "
                                                      "with another action; try again."))
            return None
        return prompt

    def _run_again(self, issue: Issue) -> None:
        """No run is under way: one starts with the requested changes (when dispatching)."""
        self.o._unpark(issue)
        if self.o.dispatching:
            self.o.retries.pop(issue.id, None)
            self.o._launch(issue, None, "dispatch")
        self.o.poke()

    def _back_to_work(self, issue: Issue) -> Issue:
        """Move the issue back to In Progress (when the workflow has that active state; else
        a terminal issue goes to the first active state); the issue as it is now."""
        workflow = self.o.workflow
        assert workflow is not None
        active = workflow.tracker.active_states
        target = next((s for s in active if norm_state(s) == IN_PROGRESS), None)
        if target is None and workflow.is_terminal(issue.state) and active:
            target = active[0]
        if target is None or norm_state(target) == issue.norm_state:
            return issue
        try:
            path = self.o._move(issue, target)
        except (TrackerError, OSError) as exc:
            log.warning("%s: not moved to %s: %s", issue.identifier, target, exc)
            return issue
        self.o._done_at.pop(issue.id, None)
        return replace(issue, state=target, path=path)

    async def _mark_reviewed(self, tree: WorktreeRecord) -> None:
        with contextlib.suppress(GitError):
            await asyncio.to_thread(mark_reviewed, tree.path, tree.branch)

    # ---- review_discard -----------------------------------------------------------------

    def _verb_discard(self, call: Call) -> None:
        if not self.o._operator_only(call):
            return
        found = self._tree(call, need_issue=False)
        if found is None:
            return
        issue, tree, name = found
        if not self._idle(call, name):
            return
        workflow = self.o.workflow
        assert workflow is not None
        verdict = check_removal(workflow.workspace_root, name,
                                protected=self.o._protected(workflow))
        if verdict.path is None or verdict.reason:
            call.deny("error", Refusal("not_removed", f"{name}: not removed: "
                                                      f"{verdict.reason or 'it is gone'}."))
            return
        self.busy.add(name)
        self.o._spawn(self._discard(Later(self.o, call), issue, tree, name,
                                    call.frame.get("confirm") is True), f"discard {name}")

    async def _discard(self, later: Later, issue: Issue | None, tree: WorktreeRecord,
                       name: str, confirm: bool) -> None:
        try:
            await self._discarding(later, issue, tree, name, confirm)
        finally:
            self.busy.discard(name)
            self.o.poke()

    async def _discarding(self, later: Later, issue: Issue | None, tree: WorktreeRecord,
                          name: str, confirm: bool) -> None:
        try:
            work = await asyncio.to_thread(unmerged_work, tree.repo, tree.path, tree.branch,
                                           tree.base)
        except GitError as exc:
            later.deny("git_failed", f"{name}: not discarded: {exc.message}")
            return
        if work and not confirm:
            later.deny("unmerged_work", f"Discarding {name} would lose {work.sentence()}; "
                       "nothing was removed (confirm to discard it).",
                       commits=work.commits, files=work.files)
            return
        removal = await self.o._remove_workspace(name, hook=False, force=True,
                                                 by=later.sender)
        if removal is None or not removal.removed:
            why = (removal.reason if removal is not None else "") or "it could not be removed"
            later.deny("not_removed", f"{name}: not removed: {why}.")
            return
        self.o._emit(Event("review_discarded", {
            "identifier": name, "path": str(tree.path), "branch": tree.branch,
            "by": later.sender, "at": self.o.clock()}))
        workflow = self.o.workflow
        if issue is not None and workflow is not None and workflow.is_active(issue.state):
            self.o._park(issue, "its work was discarded; retry it to run it afresh",
                         operator=True)
        self.touch(name)
        later.reply("review_discarded", f"Discarded {name}: removed {tree.path} and its "
                    f"branch {tree.branch}.", identifier=name)

    # ---- +N/-M ----------------------------------------------------------------------------

    def _heard(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "session_turn" and event.data.get("phase") == "end":
                self.touch(str(event.data.get("agent", "")))

    async def _watch(self) -> None:
        while True:
            await within(self._wake.wait(), STAT_EVERY)
            self._wake.clear()
            try:
                await self.measure()
            except Exception:
                log.exception("measuring the worktrees failed this time")

    async def measure(self) -> None:
        """One look at every shown issue's worktree; a `review_stat` for each that changed."""
        workflow = self.o.workflow
        if workflow is None or workflow.git is None and not self._watched:
            return
        shown = {name: view.diff for name, view in self.runtime.state.issues.issues.items()}
        dirty, self._dirty = self._dirty, set()
        found = await asyncio.to_thread(self._look, workflow.workspace_root, list(shown), dirty)
        for name, counts in found:
            if counts != shown.get(name) and name in self.runtime.state.issues.issues:
                self.o._emit(Event("review_stat", {
                    "identifier": name, "at": self.o.clock(),
                    **(counts or {"files": None, "added": None, "removed": None})}))

    def _look(self, root: Path, names: Iterable[str],
              dirty: set[str]) -> list[tuple[str, dict[str, int] | None]]:
        """(identifier, counts or None when it has no worktree) for each that may have changed.
        Runs in a thread."""
        out: list[tuple[str, dict[str, int] | None]] = []
        for name in names:
            watched = self._watched.get(name)
            if watched is None or name in dirty or not watched.tree.path.is_dir():
                tree = worktree_of(root, name)
                if tree is None:
                    if self._watched.pop(name, None) is not None or name in dirty:
                        out.append((name, None))
                    continue
                watched = self._watched[name] = _Watched(tree)
            stamp = _stamp(watched.files)
            if not stamp or stamp[0] == GONE:
                # its HEAD moved away (the repository moved, the worktree was made again)
                watched.files = watched_files(watched.tree.path, watched.tree.branch)
                stamp = _stamp(watched.files)
            if stamp == watched.stamp and name not in dirty:
                continue
            try:
                counts = stat_of(watched.tree.path, watched.tree.base)
            except GitError as exc:
                log.info("%s: no +N/-M: %s", name, exc.message)
                continue
            watched.stamp = stamp
            out.append((name, counts))
        return out


#: the stamp of a file that is not there
GONE = (0, -1)


def _stamp(files: tuple[Path, ...]) -> tuple[tuple[int, int], ...]:
    marks = []
    for path in files:
        try:
            info = os.stat(path)
            marks.append((info.st_mtime_ns, info.st_size))
        except OSError:
            marks.append(GONE)
    return tuple(marks)


def _refs(value: Any) -> list[dict[str, Any]] | None:
    """The file:line references of a request for changes; None when malformed."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_REFS:
        return None
    refs = []
    for item in value:
        if not isinstance(item, dict):
            return None
        path, line = item.get("path"), item.get("line")
        if not isinstance(path, str) or not path.strip() or "\n" in path:
            return None
        if line is not None and (isinstance(line, bool) or not isinstance(line, int)
                                 or line < 1):
            return None
        refs.append({"path": path.strip(), "line": line})
    return refs


def _changes_prompt(text: str, refs: list[dict[str, Any]]) -> str:
    lines = ["The reviewer asks for changes:", "", text]
    if refs:
        lines += ["", "Places in the diff:"]
        lines += [f"- {r['path']}" + (f":{r['line']}" if r["line"] else "") for r in refs]
    return "\n".join(lines)
