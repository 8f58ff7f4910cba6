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

The +N/-M of each shown issue (`review_stat`) is reviews.py's StatWatch: measured again when
its worktree's HEAD, index or branch changed, when a run or a turn of the issue ended, or when
an action touched it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from ..agent_session import MAX_PROMPT, live_sessions
from ..core.events import Event, Refusal
from ..protocol.frames import Call, operator_only, text_field
from ..reviews import (
    Counts,
    Later,
    Reviewer,
    StatWatch,
    against_of,
    deny_conflict,
    refs_of,
    requested_changes,
    reviews,
    send_diff,
)
from .tracker import Issue, TrackerError, norm_state
from .workspaces import WorktreeRecord, check_removal, git_head, worktree_of
from .worktrees import (
    Conflict,
    GitError,
    accept,
    commit_leftovers,
    mark_reviewed,
    unmerged_work,
)

#: the orchestrator that serves these verbs (dispatcher.py imports this module, so it is not
#: named here)
Orchestrator = Any

log = logging.getLogger("marrow.review")

#: the state requested changes move an issue back to, when the workflow has it
IN_PROGRESS = "in progress"


class Review:
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.o = orchestrator
        self.runtime = orchestrator.runtime
        #: identifiers with an accept or a discard under way: not dispatched meanwhile
        self.busy: set[str] = set()
        #: issue id -> the requested changes its next run gets after its prompt
        self.requested: dict[str, str] = {}
        self.stats = StatWatch(self._shown, self._locate, self._said)
        self._unsubscribe: Any = None
        self._reviewer: Reviewer | None = None

    def serve(self) -> None:
        self._reviewer = Reviewer.of(
            self.owns, self.o._serving, diff=self._verb_diff, accept=self._verb_accept,
            request_changes=self._verb_request_changes, discard=self._verb_discard)
        reviews(self.runtime).add(self._reviewer)

    def owns(self, name: str) -> bool:
        """An issue of the tracker, or a worktree left by one (its file may be gone)."""
        scan = self.o.last_scan
        if scan is not None and any(name in (i.identifier, i.id) for i in scan.issues):
            return True
        workflow = self.o.workflow
        return workflow is not None and worktree_of(workflow.workspace_root, name) is not None

    def start(self) -> None:
        """The +N/-M watch (and the turn ends it listens for)."""
        self._unsubscribe = self.runtime.subscribe(self._heard)
        self.o._spawn(self.stats.run(), "review-stats")

    def stop(self) -> None:
        if self._reviewer is not None:
            reviews(self.runtime).remove(self._reviewer)
            self._reviewer = None
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None

    def touch(self, identifier: str) -> None:
        """Measure the issue's worktree again soon (a run or a turn ended, an action ran)."""
        self.stats.touch(identifier)

    async def measure(self) -> None:
        await self.stats.measure()

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
        against = against_of(call)
        if against is None:
            return
        found = self._tree(call, need_issue=False)
        if found is None:
            return
        _issue, tree, name = found
        workflow = self.o.workflow
        merge = workflow.git.merge if workflow is not None and workflow.git else "merge"
        self.o._spawn(send_diff(Later(self.runtime, call), name, tree, against, merge=merge,
                                subject="issue"), f"diff {name}")

    # ---- review_accept ------------------------------------------------------------------

    def _verb_accept(self, call: Call) -> None:
        if not operator_only(call):
            return
        found = self._tree(call, need_issue=True)
        if found is None:
            return
        issue, tree, name = found
        assert issue is not None
        if not self._idle(call, name):
            return
        self.busy.add(name)  # claimed in the same turn as the checks: no dispatch between
        self.o._spawn(self._accept(Later(self.runtime, call), issue, tree), f"accept {name}")

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
            deny_conflict(later, name, tree.base, exc)
            return
        except GitError as exc:
            later.deny("not_accepted", f"{name} was not accepted: {exc.message}")
            return
        to_state = await self._move_done(issue)
        self.o._unpark(issue)  # accepted is done: a cancel before it no longer holds it
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
        moved = f"; it moved to {to_state}" if to_state is not None else ""
        later.reply("review_accepted", f"Accepted {name} into {tree.base} ({how}, "
                    f"{commit[:12]}){moved}.", identifier=name, how=how, commit=commit)
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
        if not operator_only(call):
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
            "refs": refs_of(call.frame.get("refs")), "how": how,
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
        prompt = requested_changes(call, MAX_PROMPT)
        if prompt is None:
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
        if not operator_only(call):
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
        self.o._spawn(self._discard(Later(self.runtime, call), issue, tree, name,
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

    def _shown(self) -> dict[str, Counts]:
        """Each issue with its +N/-M now; none to watch without worktrees."""
        workflow = self.o.workflow
        if workflow is None or workflow.git is None and not self.stats.watched:
            return {}
        return {name: view.diff for name, view in self.runtime.state.issues.issues.items()}

    def _locate(self, name: str) -> WorktreeRecord | None:
        workflow = self.o.workflow
        return worktree_of(workflow.workspace_root, name) if workflow is not None else None

    def _said(self, name: str, counts: Counts) -> None:
        self.o._emit(Event("review_stat", {
            "identifier": name, "at": self.o.clock(),
            **(counts or {"files": None, "added": None, "removed": None})}))
