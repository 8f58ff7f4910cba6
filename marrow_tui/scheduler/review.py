"""Reviewing what an agent of marrow.toml changed in its worktree (`workspace_git`): the
`review_*` verbs for an agent's name (docs/protocol.md §6.6; reviews.py routes them here).

The worktree is the agent's for as long as it is configured, so reviewing it never ends it:
- **accept** merges its branch into the base (`--no-ff`, or one squashed commit after which
  the branch starts again from the new base: all it did is there) and the agent goes on;
- **request changes** becomes the live ACP run's next prompt, else a task in the agent's
  queue, and the agent is woken to take it;
- **discard** removes the worktree and its branch (refused while unmerged work would be
  lost, unless confirmed); the next run makes a fresh one from the base.
Neither accept nor discard runs while the agent runs, and no run starts while they do.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..agent_session import MAX_PROMPT, live_sessions
from ..config.model import CHECKOUT, AgentConfig
from ..core.events import Event, Refusal
from ..orchestrator.workspaces import (
    WorkspaceError,
    WorktreeRecord,
    remove_workspace,
    worktree_of,
)
from ..orchestrator.worktrees import (
    Conflict,
    GitError,
    accept,
    commit_leftovers,
    mark_reviewed,
    restart_from_base,
    unmerged_work,
)
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

#: the scheduler that serves these verbs (heartbeat.py imports this module, so it is not
#: named here)
Scheduler = Any


class AgentReview:
    def __init__(self, scheduler: Scheduler) -> None:
        self.s = scheduler
        self.runtime = scheduler.runtime
        #: agents with an accept or a discard under way: not run meanwhile
        self.busy: set[str] = set()
        self._reviewer: Reviewer | None = None
        #: each agent's worktree's +N/-M, shown in the Sessions pane
        self.stats = StatWatch(self._shown, self._locate, self._said)
        self._unsubscribe: Any = None

    def serve(self) -> None:
        self._reviewer = Reviewer.of(
            self.owns, self.s._serving, diff=self._verb_diff, accept=self._verb_accept,
            request_changes=self._verb_request_changes, discard=self._verb_discard)
        reviews(self.runtime).add(self._reviewer)

    def start(self) -> None:
        """The +N/-M watch, and the run and turn ends after which it looks again."""
        self._unsubscribe = self.runtime.subscribe(self._heard)
        self.s._spawn(self.stats.run(), "agent-review-stats")

    def stop(self) -> None:
        if self._reviewer is not None:
            reviews(self.runtime).remove(self._reviewer)
            self._reviewer = None
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None

    def _heard(self, events: list[Event]) -> None:
        for event in events:
            ended = event.kind == "session_end" or (
                event.kind == "session_turn" and event.data.get("phase") == "end")
            if ended and self._agent(str(event.data.get("agent", ""))) is not None:
                self.stats.touch(str(event.data["agent"]))

    def _shown(self) -> dict[str, Counts]:
        config, views = self.s.config, self.runtime.state.sessions.agents
        if config is None:
            return {}
        return {agent.name: views[agent.name].diff for agent in config.agents
                if agent.git is not None and agent.name in views}

    def _locate(self, name: str) -> WorktreeRecord | None:
        agent = self._agent(name)
        return worktree_of(agent.workspace, CHECKOUT) if agent is not None else None

    def _said(self, name: str, counts: Counts) -> None:
        self.s._emit(Event("review_stat", {
            "identifier": name, "agent": name, "at": self.s.clock(),
            **(counts or {"files": None, "added": None, "removed": None})}))

    def owns(self, name: str) -> bool:
        return self._agent(name) is not None

    def _agent(self, name: str) -> AgentConfig | None:
        config = self.s.config
        agent = config.agent(name) if config is not None else None
        return agent if agent is not None and agent.git is not None else None

    def _tree(self, call: Call) -> tuple[AgentConfig, WorktreeRecord] | None:
        name = text_field(call.frame, "identifier").strip()
        agent = self._agent(name)
        tree = worktree_of(agent.workspace, CHECKOUT) if agent is not None else None
        if agent is None or tree is None:
            call.deny("error", Refusal("no_worktree", f"{name} has no worktree yet (its first "
                                                      "run makes it)."))
            return None
        return agent, tree

    def _idle(self, call: Call, name: str) -> bool:
        if name in self.s.runs:
            call.deny("error", Refusal("already_running", f"{name} is running; stop its run "
                                                          "or let it end first."))
            return False
        if name in self.busy:
            call.deny("error", Refusal("review_busy", f"{name}'s worktree is busy with another "
                                                      "action; try again."))
            return False
        return True

    # ---- the verbs --------------------------------------------------------------------------

    def _verb_diff(self, call: Call) -> None:
        against = against_of(call)
        found = self._tree(call) if against is not None else None
        if against is None or found is None:
            return
        agent, tree = found
        merge = agent.git.merge if agent.git is not None else "merge"
        self.s._spawn(send_diff(Later(self.runtime, call), agent.name, tree, against,
                                merge=merge, subject="agent"), f"diff {agent.name}")

    def _verb_accept(self, call: Call) -> None:
        found = self._tree(call) if operator_only(call) else None
        if found is None or not self._idle(call, found[0].name):
            return
        agent, tree = found
        self.busy.add(agent.name)  # in the same turn as the checks: no run starts between
        self.s._spawn(self._accept(Later(self.runtime, call), agent, tree),
                      f"accept {agent.name}")

    async def _accept(self, later: Later, agent: AgentConfig, tree: WorktreeRecord) -> None:
        name, how = agent.name, agent.git.merge if agent.git is not None else "merge"
        try:
            message = (f"{name}: accepted in marrow-tui\n\n"
                       f"{'Squashed' if how == 'squash' else 'Merged'} from {tree.branch}.")
            await asyncio.to_thread(commit_leftovers, tree.path,
                                    f"{name}: work left uncommitted at accept")
            done = await asyncio.to_thread(accept, tree.repo, tree.branch, tree.base, how,
                                           message)
            if how == "squash":
                await asyncio.to_thread(restart_from_base, tree.path, tree.base)
        except Conflict as exc:
            deny_conflict(later, name, tree.base, exc)
            return
        except GitError as exc:
            later.deny("not_accepted", f"{name} was not accepted: {exc.message}")
            return
        finally:
            self.busy.discard(name)
            self.stats.touch(name)
            self.s.poke()
        self.s._emit(Event("review_accepted", {
            "identifier": name, "agent": name, "how": how, "commit": done.commit,
            "base": tree.base, "branch": tree.branch, "by": later.sender,
            "at": self.s.clock()}))
        later.reply("review_accepted", f"Accepted {name} into {tree.base} ({how}, "
                    f"{done.commit[:12]}); {name} goes on in its worktree.",
                    identifier=name, how=how, commit=done.commit)

    def _verb_request_changes(self, call: Call) -> None:
        found = self._tree(call) if operator_only(call) else None
        prompt = requested_changes(call, MAX_PROMPT) if found is not None else None
        if found is None or prompt is None:
            return
        agent, tree = found
        run = self.s.runs.get(agent.name)
        session = live_sessions(self.runtime).by_id.get(run.session) if run else None
        if session is not None:
            queued = live_sessions(self.runtime).prompt(session, prompt, call.sender,
                                                        call.emit)
            how, said = "prompt", (f"Sent to {session.session} as its next prompt"
                                   f"{' (after the turn under way)' if queued else ''}.")
        else:
            added = self.s.add_task(agent.name, "Changes requested by the reviewer", prompt,
                                    by=call.sender)
            if isinstance(added, Refusal):
                call.deny("error", added)
                return
            woken = self.s.wake(agent.name, "changes requested", by=call.sender)
            how = "task"
            said = ("A task in its queue; it runs now." if woken is True else
                    "A task in its queue, for its next run"
                    + (f" ({woken.text})" if isinstance(woken, Refusal) else "") + ".")
        call.emit(Event("review_requested", {
            "identifier": agent.name, "agent": agent.name,
            "text": text_field(call.frame, "text").strip(),
            "refs": refs_of(call.frame.get("refs")), "how": how,
            "session": session.session if session is not None else "", "by": call.sender,
            "at": self.s.clock()}))
        self.s._spawn(self._mark_reviewed(tree), f"review point {agent.name}")
        call.reply("review_requested", f"Changes requested of {agent.name}. {said}",
                   identifier=agent.name)

    async def _mark_reviewed(self, tree: WorktreeRecord) -> None:
        try:
            await asyncio.to_thread(mark_reviewed, tree.path, tree.branch)
        except GitError:
            pass  # the next diff against the last review shows it all: nothing is lost

    def _verb_discard(self, call: Call) -> None:
        found = self._tree(call) if operator_only(call) else None
        if found is None or not self._idle(call, found[0].name):
            return
        agent, tree = found
        self.busy.add(agent.name)
        self.s._spawn(self._discard(Later(self.runtime, call), agent, tree,
                                    call.frame.get("confirm") is True), f"discard {agent.name}")

    async def _discard(self, later: Later, agent: AgentConfig, tree: WorktreeRecord,
                       confirm: bool) -> None:
        name = agent.name
        try:
            work = await asyncio.to_thread(unmerged_work, tree.repo, tree.path, tree.branch,
                                           tree.base)
            if work and not confirm:
                later.deny("unmerged_work", f"Discarding {name} would lose {work.sentence()}; "
                           "nothing was removed (confirm to discard it).",
                           commits=work.commits, files=work.files)
                return
            removal = await asyncio.to_thread(remove_workspace, agent.workspace, CHECKOUT,
                                              force=True)
        except GitError as exc:
            later.deny("git_failed", f"{name}: not discarded: {exc.message}")
            return
        except WorkspaceError as exc:
            later.deny("not_removed", f"{name}: not removed: {exc.message}.")
            return
        finally:
            self.busy.discard(name)
            self.stats.touch(name)
            self.s.poke()
        if not removal.removed:
            later.deny("not_removed", f"{name}: not removed: "
                       f"{removal.reason or 'it could not be removed'}.")
            return
        self.s._emit(Event("review_discarded", {
            "identifier": name, "agent": name, "path": str(tree.path), "branch": tree.branch,
            "by": later.sender, "at": self.s.clock()}))
        later.reply("review_discarded", f"Discarded {name}'s work: removed {tree.path} and "
                    f"its branch {tree.branch}; its next run starts afresh from {tree.base}.",
                    identifier=name)
