"""The issue orchestrator: Markdown issues become agent runs, inside the runtime.

Each tick (every `polling.interval_ms`, and at once when a file under the tracker or
WORKFLOW.md changes): scan the tracker, reconcile the running issues against their files (an
issue moved to a terminal state stops its run and its workspace goes; moved elsewhere, its run
stops), fire the retries that are due, and dispatch the eligible issues in priority order
within the concurrency limits. A dispatch makes (or reuses) the issue's workspace, runs the
hooks, renders the Liquid prompt, and launches `agent.command` as a session with the
scheduler's runner (its own process group, logs in files, the prompt on stdin).

After a run: `marrow-tui done` (the `issue_done` verb) during the run means success: the file
was moved to the terminal state, and the workspace is removed after the after_run hook (which
can bundle a patch). A normal exit without it is a continuation (again in 1 s) unless the
circuit breaker sees no progress for `max_idle_continuations` runs; a failure retries with
the spec's backoff. An agent waiting on a human (an open steering request) is never stalled.

An invalid WORKFLOW.md stops new dispatches but not reconciliation, and is shown to the
operator; the last good one stays in force for everything else.

Safety: only workspaces marrow-tui created are used or removed (see workspaces.py), one with
unsaved git work is kept until the operator confirms (`issue_remove_workspace`); the tracker
files the scan refused are reported when that set changes; and an issue whose run marked it
done is never dispatched from a scan that began before the move (the scan's view is stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agent_session import (
    AgentSession,
    Ending,
    Limits,
    agent_environment,
    launch_argv,
    live_sessions,
    marrow_mcp_server,
)
from ..config.model import AgentConfig
from ..aio import within
from ..core.events import Event, Refusal
from ..core.orchestration import asks_for
from ..core.steering import Request
from ..hub.secrets import agent_key
from ..own_command import after_profile, run_environment, write_own_command
from ..proc import KILL_WAIT, Capture, leader_fields, run_bounded, tail_line
from ..protocol.frames import Call, operator_only, text_field
from ..protocol.steering import push_end
from ..runtime import Producer
from ..scheduler.runner import (
    RunResult,
    StopRequest,
    prune_logs,
    run_session,
    session_id,
)
from . import rules
from .review import Review
from .tracker import Issue, ScanResult, TrackerError, create_issue, move_issue, scan
from .workflow import (
    LoadedWorkflow,
    PromptError,
    Workflow,
    load_workflow,
    render_prompt,
    validate_dispatch,
)
from .workspaces import (
    Removal,
    WorkspaceError,
    check_removal,
    ensure_workspace,
    git_head,
    hook_env,
    mark_ready,
    record_worktree,
    remove_workspace,
    workspace_key,
    write_mark_done,
)
from .worktrees import GitError, add_worktree

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("marrow.orchestrator")

#: how long the last output may be silent before a run counts as stalled is the workflow's;
#: this is how often that (and the output line) is looked at
WATCH_EVERY = 1.0
STOP_GRACE = 10.0
#: issue run logs kept: days, files (stdout and stderr count as two)
LOG_DAYS = 7
LOG_FILES = 1000
#: the most of a hook's output kept (its tail), for the log
HOOK_OUTPUT = 64 * 1024


@dataclass(slots=True)
class _Running:
    issue: Issue
    attempt: int | None
    workspace: Path
    session: str
    started: float
    #: the settings the run started with (a WORKFLOW.md edit applies to the next runs)
    workflow: Workflow
    stop: StopRequest = field(default_factory=StopRequest)
    task: asyncio.Task[None] | None = None
    #: set by `issue_done` during the run
    done: dict[str, Any] | None = None
    #: why the orchestrator stopped it: "reconcile", "reconcile_clean", "cancel", "stall"
    stopped_for: str = ""
    before: rules.Fingerprint | None = None
    last_output: float = 0.0
    output_size: int = -1
    last_line: str = ""
    #: seconds spent waiting on a human (not counted against prompt_timeout_ms)
    waited: float = 0.0
    #: the ACP session of a run that speaks ACP, while it runs
    acp: AgentSession | None = None
    #: an ACP run used all its turns without mark_done
    exhausted: bool = False


@dataclass(slots=True)
class _Retry:
    issue_id: str
    identifier: str
    attempt: int
    due: float
    kind: str
    error: str | None


class Orchestrator(Producer):
    def __init__(self, runtime: Runtime, workflow_path: Path, *, hub_uri: str = "",
                 token: str | None = None, clock: Callable[[], float] | None = None,
                 watch: bool = True) -> None:
        super().__init__(runtime)
        self.path = workflow_path.resolve()
        self.hub_uri = hub_uri
        self.token = token
        self.clock = clock or runtime.clock
        self.watch = watch
        self.workflow: Workflow | None = None
        self.loaded: LoadedWorkflow | None = None
        self.dispatching = False
        self.running: dict[str, _Running] = {}  # by issue id
        self.retries: dict[str, _Retry] = {}
        #: issue id -> why it is not dispatched; by the breaker (resumes when its file changes)
        #: or by the operator (durable: see _park)
        self.parked: dict[str, str] = {}
        self._parked_at: dict[str, tuple[str, float]] = {}
        #: continuations in a row without `done`, per issue (max_turns caps them)
        self.continuations: dict[str, int] = {}
        self._cleaned = False
        #: the issues (by identifier) whose workspace is being removed: not dispatched until
        #: that is over, so a run never starts in a folder about to go
        self.removing: set[str] = set()
        self.breaker = rules.ContinuationBreaker()
        self.last_scan: ScanResult | None = None
        self._shown: dict[str, dict[str, Any]] = {}
        self._poke = asyncio.Event()
        self._stopping = False
        #: counts `done` moves; issue id -> the count when its run marked it done. A scan
        #: started before that still shows the file where it was: its view of the issue is
        #: stale and never dispatched (dropped once a scan started after it completes)
        self._dones = 0
        self._done_at: dict[str, int] = {}
        self._last_scan_dones = 0
        #: set on stop: the file watches end (their threads would keep the loop from closing)
        self._watch_stop = asyncio.Event()
        #: the `marrow-tui` the runs call (see own_command.py); written at start
        self.own_command: Path | None = None
        #: the review verbs and the +N/-M of the issues' worktrees (review.py)
        self.review = Review(self)

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self, *, loop: bool = True) -> None:
        """Serve the verbs, read WORKFLOW.md, and (with `loop`) poll, dispatch and watch.
        Without it a caller drives `tick()` itself (tests with a fake clock)."""
        decider = self.runtime.decider
        assert decider is not None, "start the runtime first"
        for verb, handler in (("issue_done", self._verb_done), ("issue_list", self._verb_list),
                              ("issue_dispatch", self._verb_dispatch),
                              ("issue_cancel", self._verb_cancel),
                              ("issue_retry", self._verb_retry),
                              ("issue_create", self._verb_create),
                              ("issue_remove_workspace", self._verb_remove_workspace)):
            decider.register(verb, self._serving(handler))
        self.review.serve()
        live_sessions(self.runtime)  # the operator's prompt and cancel verbs, served
        self.own_command = write_own_command(self.runtime.options.state_dir)
        # What the operator cancelled stays cancelled across a restart.
        self.parked.update(self.runtime.state.issues.parked)
        self.reload()
        if not loop:
            return
        self._spawn(self._loop(), "orchestrator")
        self._spawn(self._watch_runs(), "issue-runs")
        self.review.start()
        if self.watch:
            self._spawn(self._watch_files(), "tracker-watch")

    async def stop(self) -> None:
        self._stopping = True
        self._watch_stop.set()
        self.review.stop()
        await self._stop_tasks()
        runs = [r.task for r in self.running.values() if r.task is not None]
        for entry in self.running.values():
            entry.stopped_for = entry.stopped_for or "shutdown"
            entry.stop.shutdown()  # also ends what left the run's group with its tag
        if runs:
            _, late = await asyncio.wait(runs, timeout=STOP_GRACE + KILL_WAIT)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=KILL_WAIT)

    def poke(self) -> None:
        self._poke.set()

    # ---- the workflow --------------------------------------------------------------------

    def reload(self) -> None:
        """Read WORKFLOW.md; a valid one applies to future dispatches, an invalid one stops
        them (the last good one stays for reconciliation) and is shown to the operator."""
        loaded = load_workflow(self.path)
        self.loaded = loaded
        problems = list(loaded.errors)
        if loaded.workflow is not None:
            self.workflow = loaded.workflow
            problems += [d for d in validate_dispatch(loaded.workflow) if d.severity == "error"]
            self.breaker.limit = loaded.workflow.agent.max_idle_continuations
        self.dispatching = loaded.workflow is not None and not problems
        for problem in problems:
            log.warning("workflow: %s", problem)
        root = str(self.workflow.tracker.root) if self.workflow is not None else ""
        self._emit(Event("workflow_status", {
            "path": str(self.path), "ok": not problems, "at": self.clock(), "root": root,
            "errors": [str(d) for d in problems],
            "warnings": [str(d) for d in loaded.warnings], "dispatching": self.dispatching,
        }))
        self.poke()

    async def _watch_files(self) -> None:
        from watchfiles import awatch

        while self.workflow is None and not self._stopping:
            await asyncio.sleep(1.0)
        assert self.workflow is not None
        # Two watches: WORKFLOW.md's folder (not recursive: workspaces and their clones often
        # live below it) and the tracker root (recursive). Rebuilt when either moves.
        while not self._watch_stop.is_set():
            workflow = self.workflow
            root = workflow.tracker.root.resolve()
            watches = [awatch(self.path.parent, debounce=200, step=50, recursive=False,
                              watch_filter=lambda _c, p: Path(p).name == self.path.name,
                              stop_event=self._watch_stop, rust_timeout=1000)]
            if root.is_dir():
                watches.append(awatch(root, debounce=200, step=50, recursive=True,
                                      watch_filter=self._relevant,
                                      stop_event=self._watch_stop, rust_timeout=1000))
            try:
                await self._follow(watches, root)
            except Exception as exc:
                log.warning("cannot watch the tracker (%s); trying again in 5 s", exc)
                await asyncio.sleep(5.0)

    async def _follow(self, watches: list[Any], root: Path) -> None:
        """Until the tracker root changes (a reload) or goes: poke the loop on each change."""
        async def pump(watch: Any, is_workflow: bool) -> None:
            async for _changes in watch:
                if is_workflow:
                    self.reload()
                self.poke()
                workflow = self.workflow
                if workflow is not None and workflow.tracker.root.resolve() != root:
                    return

        tasks = [asyncio.ensure_future(pump(w, i == 0)) for i, w in enumerate(watches)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if len(watches) == 1:
                await asyncio.sleep(5.0)  # no tracker root yet: look again later
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5.0)

    def _relevant(self, _change: object, changed: str) -> bool:
        path = Path(changed)
        if path == self.path:
            return True
        workflow = self.workflow
        if workflow is None:
            return False
        if not path.is_relative_to(workflow.tracker.root.resolve()):
            return False
        return path.suffix == ".md" or path.is_dir()

    # ---- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._poke.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("an orchestrator tick failed")
            workflow = self.workflow
            interval = (workflow.polling_interval_ms / 1000) if workflow else 30.0
            due = [r.due for r in self.retries.values()]
            wait = min([interval, *(max(0.0, d - self.clock()) for d in due)])
            await within(self._poke.wait(), wait)

    async def tick(self) -> None:
        """Scan, reconcile, fire due retries, dispatch (when the workflow allows)."""
        workflow = self.workflow
        if workflow is None or self._stopping:
            return
        if not workflow.tracker.root.is_dir():
            # A tracker that is briefly gone (a checkout, a rename) stops nothing.
            log.warning("tracker root %s is not there; nothing reconciled or dispatched",
                        workflow.tracker.root)
            return
        dones = self._dones
        result = await asyncio.to_thread(scan, workflow.tracker.root)
        self.last_scan, self._last_scan_dones = result, dones
        self._report_refused(result)
        policy = rules.Policy.from_workflow(workflow)
        by_id = result.by_id()
        unreadable = {p.ref for p in result.problems if p.ref and p.severity == "error"}
        # Marked done after this scan began: the scan may still show it in Todo.
        stale = self._done_since(dones)
        counts: dict[str, int] = {}
        for item in result.issues:
            counts[item.id] = counts.get(item.id, 0) + 1
        duplicated = {i for i, n in counts.items() if n > 1}
        if not self._cleaned:
            self._cleaned = True
            await self._clean_terminal(result, workflow)
        self._resume_parked(result)
        for issue_id, entry in list(self.running.items()):
            if issue_id in unreadable or issue_id in duplicated:
                fresh = self._same_file(entry, result)
                if fresh is None:
                    continue  # cannot tell right now: keep the run
            else:
                fresh = by_id.get(issue_id)
            action = rules.reconcile_action(fresh, policy)
            if action == rules.KEEP and fresh is not None:
                entry.issue = fresh
            elif entry.done is not None:
                continue  # it finished itself: let it end in peace
            elif not entry.stopped_for:
                entry.stopped_for = "reconcile_clean" if action == rules.STOP_AND_CLEAN \
                    else "reconcile"
                entry.stop.set()
        now = self.clock()
        running_states = {i: e.issue.state for i, e in self.running.items()}
        for retry in sorted((r for r in self.retries.values() if r.due <= now),
                            key=lambda r: r.due):
            if self.retries.get(retry.issue_id) is not retry or retry.issue_id in self.running:
                continue  # changed while this tick waited
            if retry.issue_id in unreadable or retry.issue_id in duplicated or \
                    retry.issue_id in stale or retry.identifier in self.removing:
                continue  # (a removal ends with a poke: the retry fires then)
            fresh = by_id.get(retry.issue_id)
            action, reason = rules.retry_action(fresh, policy, running=running_states,
                                                issues_by_id=by_id, parked=self.parked)
            if action == rules.DISPATCH and self.dispatching and fresh is not None:
                self.retries.pop(retry.issue_id, None)
                self._launch(fresh, retry.attempt, retry.kind)
                running_states[fresh.id] = fresh.state
            elif action == rules.REQUEUE or (action == rules.DISPATCH and not self.dispatching):
                again = rules.requeue(retry.attempt, cap=workflow.agent.max_retry_backoff_ms,
                                      error=str(reason or "dispatch paused"))
                retry.attempt, retry.due = again.attempt, now + again.delay_ms / 1000
            else:
                self.retries.pop(retry.issue_id, None)
                if action == rules.RELEASE_AND_CLEAN:
                    await self._remove_workspace(retry.identifier)
        if self.dispatching:
            candidates = [i for i in result.in_states(workflow.tracker.active_states)
                          if i.id not in self.retries and i.id not in duplicated
                          and i.id not in stale and not self._being_removed(i)]
            plan = rules.plan_dispatch(candidates, policy, running=running_states,
                                       claimed=set(self.retries), issues_by_id=by_id,
                                       parked=self.parked)
            for issue in plan.dispatch:
                self._launch(issue, None, "dispatch")
        self._publish(result, duplicated, stale)

    def _done_since(self, dones: int) -> set[str]:
        """The issues marked done after a scan that began at `dones` started (that scan's
        view of them is stale); older marks are forgotten, since this scan saw their move."""
        stale = {i for i, at in self._done_at.items() if at > dones}
        self._done_at = {i: at for i, at in self._done_at.items() if i in stale}
        return stale

    def _report_refused(self, result: ScanResult) -> None:
        """Say which tracker files were not read as issues, and why: an event (so the log,
        the console and `marrow-tui issues` show it) only when that set changes."""
        files = [{"path": str(p.path), "reason": p.message} for p in result.errors]
        before = self.runtime.state.issues.refused
        if files == before:
            return
        old = {f["path"] for f in before}
        now = {f["path"] for f in files}
        changed = {f["path"] for f in files if f not in before}
        for item in files:
            if item["path"] in changed:
                log.warning("tracker file refused: %s: %s", item["path"], item["reason"])
        self._emit(Event("tracker_refused", {
            "root": str(result.root), "files": files, "new": sorted(changed),
            "gone": sorted(old - now), "at": self.clock()}))

    def _same_file(self, entry: _Running, result: ScanResult) -> Issue | None:
        """The issue as read from the very file that was dispatched, if it is readable."""
        for item in result.issues:
            if item.id == entry.issue.id and item.path == entry.issue.path:
                return item
        return None

    async def _clean_terminal(self, result: ScanResult, workflow: Workflow) -> None:
        """At start: the workspaces of issues already in a terminal state go (spec §8.6)."""
        for item in result.issues:
            if workflow.is_terminal(item.state) and item.id not in self.running:
                await self._remove_workspace(item.identifier, hook=False)

    def _resume_parked(self, result: ScanResult) -> None:
        """An issue the breaker parked runs again once someone edits or moves its file."""
        for item in result.issues:
            seen = self._parked_at.get(item.id)
            if seen is not None and seen != (item.state, item.updated):
                self.parked.pop(item.id, None)
                self._parked_at.pop(item.id, None)
                self.continuations.pop(item.id, None)
                self.breaker.reset(item.id)

    # ---- one run -------------------------------------------------------------------------

    def _launch(self, issue: Issue, attempt: int | None, kind: str) -> None:
        workflow = self.workflow
        assert workflow is not None
        if issue.id in self.running or self._being_removed(issue):
            return
        now = self.clock()
        sid = session_id(issue.identifier, datetime.fromtimestamp(now))
        known = self.runtime.state.sessions.by_id
        n = 2
        base = sid
        while sid in known:
            sid, n = f"{base}-{n}", n + 1
        try:
            from .workspaces import workspace_path

            ws = workspace_path(workflow.workspace_root, issue.identifier)
        except WorkspaceError as exc:
            self.parked[issue.id] = f"no workspace: {exc}"
            return
        entry = _Running(issue, attempt, ws, sid, now, workflow, last_output=now)
        self.running[issue.id] = entry
        live_sessions(self.runtime).stoppers[sid] = lambda: self._cancel_run(entry)
        entry.task = asyncio.create_task(self._run(entry, workflow, kind), name=f"issue {sid}")

    async def _run(self, entry: _Running, workflow: Workflow, kind: str) -> None:
        issue = entry.issue
        result: RunResult | None = None
        state, code, reason, last = "error", None, "", ""
        trigger = {"dispatch": "dispatch", "continuation": "continuation"}.get(
            kind, f"retry {entry.attempt}")
        acp = workflow.agent.protocol == "acp"
        logs = self._logs(workflow)
        self._emit(Event("session_start", {
            "id": entry.session, "agent": issue.identifier, "started": entry.started,
            "trigger": f"issue {issue.identifier}: {trigger}",
            # an ACP agent's stdout is the protocol: what it says is in its transcript
            "stdout": "" if acp else str(logs / f"{entry.session}.stdout.log"),
            "stderr": str(logs / f"{entry.session}.stderr.log"),
            "tasks": [str(issue.path)],
            **({"transcript": str(logs / f"{entry.session}.transcript.jsonl")} if acp else {}),
        }))
        self._status(issue, "running", session=entry.session, attempt=entry.attempt or 0)
        try:
            made = await asyncio.to_thread(ensure_workspace, workflow.workspace_root,
                                           issue.identifier)
            entry.workspace = made.path
            env = self._env(entry, workflow)
            if made.created_now:
                try:
                    if workflow.git is not None:
                        await self._make_worktree(workflow, entry)
                    await self._hook(workflow, "after_create", entry, env, fatal=True)
                except _HookFailed:
                    # A half-made workspace would be reused as if it were whole: it goes
                    # (ours, made this minute: nothing in it is anyone's work yet).
                    with contextlib.suppress(OSError, WorkspaceError):
                        await asyncio.to_thread(remove_workspace, workflow.workspace_root,
                                                issue.identifier,
                                                protected=self._protected(workflow),
                                                force=True)
                    raise
                # Whole now: what is in it is where it started (the base of "would be lost").
                await asyncio.to_thread(mark_ready, entry.workspace)
            await self._hook(workflow, "before_run", entry, env, fatal=True)
            if entry.stop.is_set():
                raise _HookFailed("stopped before the agent started")
            head = git_head(entry.workspace)
            entry.before = rules.Fingerprint.of(issue, head)
            extra = {"retry_kind": kind if kind != "dispatch" else None}
            prompt = render_prompt(workflow, issue, entry.attempt, extra) + \
                self.review.take_request(issue.id)
            if acp:
                prompt = self._fresh_session_note(entry) + prompt
                ending = await self._run_acp(entry, workflow, prompt, env)
                state, code, reason, last = (ending.state, ending.code, ending.reason,
                                             ending.last_line)
                entry.exhausted = ending.exhausted
                return
            agent = self._agent(workflow, entry, env)
            # No wall-clock limit here: prompt_timeout_ms is enforced in _watch_runs, without
            # the time spent waiting on a human.
            # The group and session ids go in the log, for the next start after a crash.
            result = await run_session(
                agent, prompt, entry.session, env_extra=env, stop=entry.stop, clock=self.clock,
                timeout=0, on_start=lambda pid: self._emit(Event("session_pid", {
                    "id": entry.session, "agent": issue.identifier, "pid": pid,
                    **leader_fields(pid)})))
            state, code, reason, last = result.state, result.code, result.reason, \
                result.last_line
        except asyncio.CancelledError:
            state, reason = "stopped", "stopped at shutdown"
            raise
        except _HookFailed as exc:
            reason = str(exc)
        except PromptError as exc:
            reason = f"the prompt template failed: {exc}"
        except (WorkspaceError, OSError) as exc:
            reason = f"no workspace: {exc}"
        except Exception as exc:
            log.exception("issue run %s failed", entry.session)
            reason = f"could not run: {exc}"
        finally:
            await self._finish(entry, workflow, state, code, reason, last)

    async def _finish(self, entry: _Running, workflow: Workflow, state: str,
                      code: int | None, reason: str, last: str) -> None:
        """After a run: the after_run hook, the session's end, then what comes next. The
        entry leaves `running` whatever happens here."""
        issue = entry.issue
        try:
            # On shutdown the hook gets what is left of the grace, not its full timeout.
            limit = STOP_GRACE if entry.stopped_for == "shutdown" else None
            with contextlib.suppress(Exception):
                await self._hook(workflow, "after_run", entry, self._env(entry, workflow),
                                 fatal=False, limit=limit)
            state, reason = self._outcome(entry, state, reason)
            self._emit(Event("session_end", {
                "id": entry.session, "agent": issue.identifier, "started": entry.started,
                "ended": self.clock(), "state": state, "code": code, "reason": reason,
                "last_line": last, "tasks": [str(issue.path)],
            }))
        finally:
            live_sessions(self.runtime).stoppers.pop(entry.session, None)
            if self.running.get(issue.id) is entry:
                del self.running[issue.id]
            self.review.touch(issue.identifier)
        await self._next(entry, workflow, state, reason)
        self.poke()

    def _outcome(self, entry: _Running, state: str, reason: str) -> tuple[str, str]:
        if entry.done is not None:
            return "ok", f"marked done: {entry.done['title']}"
        why = {
            "stall": ("timeout", "stalled: no output for the stall timeout"),
            "timeout": ("timeout", "ran longer than prompt_timeout_ms (time spent waiting on "
                                   "a human not counted)"),
            "reconcile": ("stopped", "stopped: the issue left the active states"),
            "reconcile_clean": ("stopped", "stopped: the issue reached a terminal state"),
            "cancel": ("stopped", "cancelled by the operator"),
            "shutdown": ("stopped", "stopped at shutdown"),
        }.get(entry.stopped_for)
        if why is not None and state in ("stopped", "timeout", "error", "failed"):
            return why
        return state, reason

    async def _next(self, entry: _Running, workflow: Workflow, state: str, reason: str) -> None:
        issue = entry.issue
        now = self.clock()
        cap = workflow.agent.max_retry_backoff_ms
        if entry.done is not None or entry.stopped_for in ("reconcile", "reconcile_clean",
                                                           "cancel"):
            self._end_questions(issue)  # nobody will read their answers any more
        if entry.done is not None or entry.stopped_for == "reconcile_clean":
            await self._remove_workspace(issue.identifier, entry)
            self.breaker.reset(issue.id)
            self.continuations.pop(issue.id, None)
            self._status(issue, "done" if entry.done else "inactive",
                         state=entry.done["to_state"] if entry.done else issue.state,
                         reason=self._kept_reason(issue.identifier))
        elif entry.stopped_for == "reconcile":
            self._status(issue, "inactive")
        elif entry.stopped_for == "cancel":
            self._park(issue, "cancelled by the operator", operator=True)
        elif entry.stopped_for == "shutdown":
            pass
        elif state == "ok":
            after = rules.Fingerprint.of(issue, git_head(entry.workspace))
            parked = self.breaker.observe(issue.id, entry.before or after, after)
            turns = self.continuations[issue.id] = self.continuations.get(issue.id, 0) + 1
            if parked is None and entry.exhausted:  # an ACP run takes its turns in one go
                parked = rules.Parked(issue.id, after, turns,
                                      f"{workflow.agent.max_turns} turns ended without `done` "
                                      "(agent.max_turns); edit or move the issue, or retry it")
            elif parked is None and turns >= workflow.agent.max_turns:
                parked = rules.Parked(issue.id, after, turns,
                                      f"{turns} runs in a row ended without `done` "
                                      "(agent.max_turns); edit or move the issue, or retry it")
            if parked is not None:
                self._park(issue, parked.reason, operator=False)
            else:
                retry = rules.next_retry(entry.attempt, normal_exit=True, cap=cap)
                self.retries[issue.id] = _Retry(issue.id, issue.identifier, retry.attempt,
                                                now + retry.delay_ms / 1000, retry.kind, None)
                self._status(issue, "retrying", attempt=retry.attempt,
                             next_at=now + retry.delay_ms / 1000, reason="continuation")
        else:
            retry = rules.next_retry(entry.attempt, normal_exit=False, cap=cap, error=reason)
            self.retries[issue.id] = _Retry(issue.id, issue.identifier, retry.attempt,
                                            now + retry.delay_ms / 1000, retry.kind, reason)
            self._status(issue, "retrying", attempt=retry.attempt,
                         next_at=now + retry.delay_ms / 1000, reason=reason)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(prune_logs, self._logs(workflow), LOG_DAYS, LOG_FILES,
                                    time.time())

    def _park(self, issue: Issue, reason: str, *, operator: bool) -> None:
        """Not dispatched again: by the breaker until its file changes, by the operator
        until the operator says so (that one is an event: it survives a restart)."""
        self.parked[issue.id] = reason
        if operator:
            self._emit(Event("issue_park", {"id": issue.id, "identifier": issue.identifier,
                                            "reason": reason}))
        else:
            self._parked_at[issue.id] = (issue.state, issue.updated)
        self._status(issue, "parked", reason=reason)

    def _unpark(self, issue: Issue) -> None:
        if self.parked.pop(issue.id, None) is not None and \
                issue.id in self.runtime.state.issues.parked:
            self._emit(Event("issue_park", {"id": issue.id, "identifier": issue.identifier,
                                            "reason": None}))
        self._parked_at.pop(issue.id, None)
        self.continuations.pop(issue.id, None)
        self.breaker.reset(issue.id)

    def _end_questions(self, issue: Issue) -> None:
        """Cancel the questions an issue's runs left open (answers would reach no one)."""
        for request in list(self.runtime.state.steering.open.values()):
            if asks_for(request, issue.identifier):
                self.runtime.handle("orchestrator", {"type": "steer_cancel",
                                                     "id": request.id}, None, operator=True)

    def _agent(self, workflow: Workflow, entry: _Running, env: dict[str, str]) -> AgentConfig:
        command = workflow.agent.command or ""
        return AgentConfig(
            name=entry.issue.identifier,
            agent_command=shlex.join([workflow.agent.shell, "-lc",
                                      after_profile(command, self.own_command)]),
            workspace=entry.workspace,
            heartbeat_timeout=max(0, workflow.agent.prompt_timeout_ms // 1000),
            prompt=workflow.agent.prompt if workflow.agent.prompt in ("stdin", "argv", "file")
            else "stdin",
            env=tuple(env.items()),
            stop_grace=STOP_GRACE,
            log_retention_days=0, log_max_count=0, logs=self._logs(workflow),
        )

    def _fresh_session_note(self, entry: _Running) -> str:
        """For a run after another of the issue's: the agent starts a new ACP session (the
        last one's conversation is gone; its workspace is not), and says so."""
        before = [s for s in self.runtime.state.sessions.of_agent(entry.issue.identifier)
                  if s.id != entry.session and not s.running]
        if not before:
            return ""
        last = before[0]
        return (f"Note: this is a new session. Your previous one ({last.id}) ended: "
                f"{last.reason or last.state}. Its conversation is gone; the workspace keeps "
                "what it did.\n\n")

    async def _run_acp(self, entry: _Running, workflow: Workflow, prompt: str,
                       env: dict[str, str]) -> Ending:
        """The run as an ACP session: the agent gets marrow-tui's environment (its API keys
        and base URLs pass through), acp.env, and the run's identity; our MCP server (as the
        issue's `<issue>/mcp`) is in its session, so it can ask, claim and mark_done."""
        agent = workflow.agent
        logs = self._logs(workflow)
        argv = launch_argv(agent.command or "", agent.shell, self.own_command)
        session = AgentSession(
            self.runtime, self._emit, session=entry.session, agent=entry.issue.identifier,
            task_id=entry.issue.identifier, command=argv, workspace=entry.workspace,
            env=agent_environment(env, agent.env, argv),
            stderr_log=logs / f"{entry.session}.stderr.log",
            transcript=logs / f"{entry.session}.transcript.jsonl",
            mcp_servers=[marrow_mcp_server(env)],
            policy=agent.permissions,
            limits=Limits(prompt=agent.prompt_timeout_ms / 1000,
                          stall=agent.stall_timeout_ms / 1000, max_turns=agent.max_turns),
            read_timeout=agent.read_timeout_ms / 1000, stop=entry.stop,
            is_done=lambda: entry.done is not None, lease_paths=agent.lease_paths)
        entry.acp = session
        live = live_sessions(self.runtime)
        live.add(session)
        try:
            return await session.run(prompt)
        finally:
            live.remove(session)
            entry.acp = None

    def _logs(self, workflow: Workflow) -> Path:
        """Run logs live beside the workspaces, not in them (a workspace is committed into
        the patch bundle and removed once its issue is done)."""
        return workflow.workspace_root / ".logs"

    def _env(self, entry: _Running, workflow: Workflow, hook: str | None = None) -> dict[str, str]:
        env = hook_env(issue=entry.issue, attempt=entry.attempt, workflow_path=self.path,
                       workspace=entry.workspace, tracker_root=workflow.tracker.root,
                       done_state=workflow.done_state, hook=hook)
        env.update({"MARROW_AGENT": entry.issue.identifier, "MARROW_ISSUE": entry.issue.id,
                    "MARROW_ASK_SCOPE": f"issue/{entry.issue.identifier}",
                    "MARROW_ISSUE_TITLE": entry.issue.title,
                    "MARROW_SESSION": entry.session, "MARROW_WORKSPACE": str(entry.workspace)})
        if self.hub_uri:
            env["MARROW_HUB_URI"] = self.hub_uri
        if self.token:
            env["MARROW_TOKEN"] = self.token
        # Proof that the run is the issue's agent, and never the operator's token.
        env["MARROW_AGENT_KEY"] = agent_key(self.runtime.options.state_dir,
                                            entry.issue.identifier)
        env["MARROW_OPERATOR_TOKEN"] = ""
        # The Python and the marrow-tui that run this orchestrator, whatever PATH holds (the
        # agent's shell also puts the folder back after its profile: see _agent).
        env["PYTHON"] = sys.executable
        if self.own_command is not None:
            env.update(run_environment(self.own_command, workflow.agent.env.get(
                "PATH", os.environ.get("PATH", ""))))
        return env

    async def _hook(self, workflow: Workflow, name: str, entry: _Running,
                    env: dict[str, str], *, fatal: bool, limit: float | None = None) -> None:
        """Run one hook in the workspace (its own process group, ended on every way out).
        A fatal hook (after_create, before_run) also ends when the run is stopped."""
        script = workflow.hooks.script(name)
        if not script:
            return
        timeout = workflow.hooks.timeout_ms / 1000
        if limit is not None:
            timeout = min(timeout, limit)
        output = Capture(HOOK_OUTPUT, tail=True)
        # Each of SIGTERM and SIGKILL gets half of KILL_WAIT to end the hook and its output.
        run = await run_bounded(
            ["sh", "-lc", after_profile(script, self.own_command)], out=output,
            cwd=entry.workspace,
            env={**os.environ, **env, "SYMPHONY_HOOK": name}, timeout=timeout,
            stop=entry.stop if fatal else None, until_output_ends=True,
            grace=KILL_WAIT / 2, kill_wait=KILL_WAIT / 2, end_leftovers=False)
        problem = {None: "", "stopped": f"stopped while hook {name} ran",
                   "timeout": f"hook {name} timed out after {timeout:g}s"}[run.ended_by]
        text = output.text()
        log.info("%s: hook %s exited %s%s", entry.issue.identifier, name, run.code,
                 f": {text[-500:]}" if text else "")
        if problem:
            log.warning("%s: %s", entry.issue.identifier, problem)
            if fatal:
                raise _HookFailed(problem)
            return
        if run.code != 0 and fatal:
            raise _HookFailed(f"hook {name} failed (exit {run.code}): "
                              f"{text.splitlines()[-1] if text else ''}")

    def _protected(self, workflow: Workflow) -> tuple[Path, ...]:
        """What no workspace removal may take with it (nor any folder holding them)."""
        return (workflow.tracker.root.resolve(), self.path.parent)

    def _kept_reason(self, identifier: str) -> str:
        kept = self.runtime.state.issues.kept.get(identifier)
        return f"workspace kept: {kept['lost']}" if kept else ""

    async def _remove_workspace(self, identifier: str, entry: _Running | None = None, *,
                                hook: bool = True, force: bool = False,
                                by: str = "orchestrator",
                                claimed: bool = False) -> Removal | None:
        """The issue is over: its workspace goes, if it is ours and nothing would be lost
        (else it stays, and a kept one with unsaved git work is reported to the operator).
        While this runs the issue is in `removing` (not dispatched); `claimed` says the caller
        put it there already."""
        if not claimed and identifier in self.removing:
            return None  # another removal of it is under way
        self.removing.add(identifier)
        try:
            return await self._removing(identifier, entry, hook=hook, force=force, by=by)
        finally:
            self.removing.discard(identifier)
            self.poke()

    async def _removing(self, identifier: str, entry: _Running | None, *, hook: bool,
                        force: bool, by: str) -> Removal | None:
        workflow = entry.workflow if entry is not None else self.workflow
        if workflow is None:
            return None
        root, protected = workflow.workspace_root, self._protected(workflow)
        verdict = await asyncio.to_thread(check_removal, root, identifier, protected=protected)
        if verdict.path is None or verdict.reason:
            if verdict.reason:
                log.info("%s: workspace left alone: %s", identifier, verdict.reason)
            return verdict
        if entry is not None and hook:
            with contextlib.suppress(Exception):
                await self._hook(workflow, "before_remove", entry,
                                 self._env(entry, workflow), fatal=False)
        try:
            outcome = await asyncio.to_thread(remove_workspace, root, identifier,
                                              protected=protected, force=force)
        except (OSError, WorkspaceError) as exc:
            log.warning("%s: could not remove workspace %s: %s", identifier, verdict.path, exc)
            return None
        if outcome.removed and identifier in self.runtime.state.issues.kept:
            self._emit(Event("workspace_removed", {
                "identifier": identifier, "path": str(outcome.path), "by": by,
                "at": self.clock()}))
        elif outcome.lost:
            self._emit(Event("workspace_kept", {
                "identifier": identifier, "path": str(outcome.path), "lost": outcome.lost,
                "at": self.clock()}))
        return outcome

    async def _watch_runs(self) -> None:
        """Each second: the runs' latest output line, the stall check and the run time limit
        (a run waiting on a human is neither stalled nor using up its time)."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await self._look_at_runs()
            except Exception:
                log.exception("watching the issue runs failed this time")

    async def _look_at_runs(self) -> None:
        now = self.clock()
        open_requests = list(self.runtime.state.steering.open.values())
        for entry in list(self.running.values()):
            workflow = entry.workflow
            if workflow.agent.protocol == "acp":  # its session keeps its own clocks
                waiting = any(asks_for(r, entry.issue.identifier) for r in open_requests)
                self._status(entry.issue, "waiting" if waiting else "running",
                             session=entry.session, attempt=entry.attempt or 0)
                continue
            out = self._logs(workflow) / f"{entry.session}.stdout.log"
            err = out.with_name(f"{entry.session}.stderr.log")
            size = await asyncio.to_thread(_size, out, err)
            if size != entry.output_size:
                entry.output_size, entry.last_output = size, now
                line = await asyncio.to_thread(tail_line, out)
                if line and line != entry.last_line:
                    entry.last_line = line
                    self._emit(Event("session_progress", {
                        "id": entry.session, "agent": entry.issue.identifier,
                        "last_line": line}))
            shown = {"session": entry.session, "attempt": entry.attempt or 0}
            limit = workflow.agent.prompt_timeout_ms / 1000
            if any(asks_for(r, entry.issue.identifier) for r in open_requests):
                entry.last_output = now
                entry.waited += WATCH_EVERY
                self._status(entry.issue, "waiting", **shown)
            elif entry.stopped_for or entry.done is not None:
                continue
            elif rules.is_stalled(now * 1000, entry.started * 1000, entry.last_output * 1000,
                                  workflow.agent.stall_timeout_ms):
                log.warning("%s stalled; stopping it", entry.session)
                entry.stopped_for = "stall"
                entry.stop.set()
            elif limit > 0 and now - entry.started - entry.waited > limit:
                log.warning("%s ran past prompt_timeout_ms; stopping it", entry.session)
                entry.stopped_for = "timeout"
                entry.stop.set()
            else:
                self._status(entry.issue, "running", **shown)

    # ---- what the console sees -----------------------------------------------------------

    def _status(self, issue: Issue, status: str, **extra: Any) -> None:
        data = {"identifier": issue.identifier, "title": issue.title,
                "state": extra.pop("state", issue.state), "status": status,
                "priority": issue.priority, "path": str(issue.path), "attempt": 0,
                "next_at": None, "reason": "", "session": ""}
        data.update(extra)
        if self._shown.get(issue.identifier) == data:
            return
        self._shown[issue.identifier] = data
        self._emit(Event("issue_status", data))

    def _publish(self, result: ScanResult, duplicated: frozenset[str] | set[str] = frozenset(),
                 stale: frozenset[str] | set[str] = frozenset()) -> None:
        workflow = self.workflow
        if workflow is None:
            return
        seen = set()
        by_id = result.by_id()
        for issue in result.issues:
            seen.add(issue.identifier)
            if issue.id in self.running or issue.id in stale:
                continue  # a stale view of a done issue would undo its "done" row
            if issue.id in duplicated:
                self._status(issue, "blocked", reason="the same id is in two states; "
                                                      "not dispatched until one goes")
                continue
            retry = self.retries.get(issue.id)
            if retry is not None:
                self._status(issue, "retrying", attempt=retry.attempt, next_at=retry.due,
                             reason=retry.error or retry.kind)
            elif issue.id in self.parked:
                self._status(issue, "parked", reason=self.parked[issue.id])
            elif workflow.is_terminal(issue.state):
                self._status(issue, "done", reason=self._kept_reason(issue.identifier))
            elif not workflow.is_active(issue.state):
                self._status(issue, "inactive")
            elif rules.eligibility(issue, rules.Policy.from_workflow(workflow), running={},
                                   issues_by_id=by_id) is not None and \
                    issue.state.lower() == "todo" and \
                    any(True for _ in _open_blockers(issue, by_id, workflow)):
                self._status(issue, "blocked",
                             reason="blocked by " + ", ".join(
                                 b for b in _open_blockers(issue, by_id, workflow)))
            else:
                self._status(issue, "idle")
        for gone in set(self._shown) - seen:
            if not any(e.issue.identifier == gone for e in self.running.values()):
                del self._shown[gone]
                self._emit(Event("issue_removed", {"identifier": gone}))

    # ---- the command path ----------------------------------------------------------------

    def _entry_for(self, call: Call) -> _Running | None:
        """The running issue a call is about: one of the caller's own (its run's name, or a
        name under it, on a connection that proved it with the run's agent key) unless the
        caller is an operator, whatever issue or session it names. The name alone proves
        nothing: a keyless connection may take it before the run ever connects."""
        wanted = text_field(call.frame, "issue").strip()
        session = text_field(call.frame, "session").strip()
        for entry in self.running.values():
            if not call.operator and not (call.proven
                                          and _own(call.sender, entry.issue.identifier)):
                continue
            if session and entry.session == session:
                return entry
            if wanted and wanted in (entry.issue.id, entry.issue.identifier):
                return entry
            if not wanted and not session and _own(call.sender, entry.issue.identifier):
                return entry
        return None

    def _verb_done(self, call: Call) -> None:
        """mark_done: move the issue file to the terminal state, record the summary."""
        title = text_field(call.frame, "title").strip()
        summary = text_field(call.frame, "summary").strip()
        if not title or len(title.splitlines()) > 1:
            call.deny("error", Refusal("bad_title", "mark_done needs a one-line title."))
            return
        if not summary:
            call.deny("error", Refusal("bad_summary", "mark_done needs a summary."))
            return
        entry = self._entry_for(call)
        workflow = entry.workflow if entry is not None else None
        if entry is None or workflow is None:
            call.deny("error", Refusal("not_running", "No running issue matches this call "
                                                      "(pass issue, or call from its run)."))
            return
        if entry.done is not None:
            call.reply("issue_done_ok", f"{entry.issue.identifier} is already done.",
                       identifier=entry.issue.identifier, state=entry.done["to_state"],
                       path=entry.done["path"])
            return
        target = workflow.done_state
        try:
            path = _move_fast(entry.issue, workflow.tracker.root, target) or move_issue(
                workflow.tracker.root, entry.issue.id, entry.issue.state, target)
        except TrackerError as exc:
            call.deny("error", Refusal(exc.code, str(exc)))
            return
        try:
            write_mark_done(entry.workspace, title, summary)
        except (OSError, ValueError) as exc:
            log.warning("%s: could not write mark_done.md: %s", entry.issue.identifier, exc)
        entry.done = {"title": title, "summary": summary, "to_state": target, "path": str(path)}
        self._dones += 1
        self._done_at[entry.issue.id] = self._dones
        self._emit(Event("issue_done", {
            "identifier": entry.issue.identifier, "title": title, "summary": summary,
            "to_state": target, "by": call.sender, "at": self.clock(), "path": str(path),
            "session": entry.session}))
        call.reply("issue_done_ok", f"Marked {entry.issue.identifier} as done (moved to "
                   f"{target}). Stop now; no further turns will be dispatched.",
                   identifier=entry.issue.identifier, state=target, path=str(path))

    def _verb_list(self, call: Call) -> None:
        book = self.runtime.state.issues
        issues = [vars_of(v) for v in book.issues.values()]
        call.reply("issues", f"{len(issues)} issue(s)", issues=issues,
                   workflow=book.workflow, refused=list(book.refused),
                   kept=list(book.kept.values()))

    def _find(self, call: Call) -> Issue | None:
        identifier = text_field(call.frame, "identifier").strip()
        result = self.last_scan
        if result is None:
            return None
        for issue in result.issues:
            if identifier in (issue.identifier, issue.id):
                return issue
        return None

    def _operator_issue(self, call: Call) -> Issue | None:
        """The issue an operator verb names; None (and the frame refused) if the caller is
        not the operator or the tracker has no such issue."""
        if not operator_only(call):
            return None
        issue = self._find(call)
        if issue is None:
            call.deny("error", Refusal("unknown_issue", "No such issue in the tracker."))
        return issue

    def _verb_dispatch(self, call: Call) -> None:
        issue = self._operator_issue(call)
        if issue is None:
            return
        if issue.id in self.running:
            call.deny("error", Refusal("already_running", f"{issue.identifier} is running."))
            return
        if self._being_removed(issue):
            call.deny("error", Refusal("workspace_removing", f"{issue.identifier}'s workspace "
                                                             "is being removed; try again "
                                                             "once it is gone."))
            return
        if self.workflow is None or not self.workflow.is_active(issue.state):
            call.deny("error", Refusal("not_active", f"{issue.identifier} is in "
                                                     f"{issue.state}, not an active state."))
            return
        if not self.dispatching:
            call.deny("error", Refusal("dispatch_paused", "WORKFLOW.md is not valid; fix it "
                                                          "first."))
            return
        if issue.id in self._done_since(self._last_scan_dones):
            call.deny("error", Refusal("already_done", f"{issue.identifier} was just marked "
                                                       "done."))
            return
        self._unpark(issue)
        self.retries.pop(issue.id, None)
        self._launch(issue, None, "dispatch")
        call.reply("issue_dispatching", f"Dispatching {issue.identifier}.",
                   identifier=issue.identifier)

    def _verb_cancel(self, call: Call) -> None:
        """Stop an issue's run and park the issue until it is retried. The issue is named by
        `identifier`, or by `request`: an open question of one of its runs, cancelled with it
        (the work stops, instead of the agent failing on the cancel and being run again only
        to ask again)."""
        if text_field(call.frame, "request").strip():
            self._cancel_asking(call)
            return
        issue = self._operator_issue(call)
        if issue is None:
            return
        self._cancel_issue(issue)
        call.reply("issue_cancelling", f"Cancelling {issue.identifier}.",
                   identifier=issue.identifier)

    def _cancel_issue(self, issue: Issue) -> None:
        entry = self.running.get(issue.id)
        self.retries.pop(issue.id, None)
        if entry is not None:
            self._cancel_run(entry)
        else:
            self._park(issue, "cancelled by the operator", operator=True)

    def _cancel_asking(self, call: Call) -> None:
        """`issue_cancel` by request: park the issue whose run asked it, then cancel it."""
        if not operator_only(call):
            return
        request_id = text_field(call.frame, "request").strip()
        request = self.runtime.state.steering.get(request_id)
        if request is None:
            call.deny("error", Refusal("unknown_request", f"No steering request "
                                                          f"'{request_id}'."), id=request_id)
            return
        if not request.open:
            call.deny("error", Refusal("not_open", f"Request {request_id} is already "
                                                   f"{request.state}; nothing was cancelled."),
                      id=request_id)
            return
        issue = self._issue_asking(request)
        if issue is None:
            call.deny("error", Refusal("not_an_issue", f"{request_id} was not asked by an "
                                                       "issue's run; cancel it without "
                                                       "parking."), id=request_id)
            return
        self._cancel_issue(issue)  # parked first: the run ending on the cancel is no failure
        decided = self.runtime.state.steering.decide_cancel(request_id, call.sender,
                                                            self.clock(), operator=True)
        if isinstance(decided, Event):
            call.emit(decided)
            push_end(call, request_id)
        call.reply("issue_cancelling", f"Cancelled {request_id}; {issue.identifier} is "
                   "parked until you retry it.", identifier=issue.identifier, id=request_id)

    def _issue_asking(self, request: Request) -> Issue | None:
        """The issue whose run asked `request`: a running one first, else any in the tracker."""
        for entry in self.running.values():
            if asks_for(request, entry.issue.identifier):
                return entry.issue
        scanned = self.last_scan.issues if self.last_scan is not None else []
        return next((i for i in scanned if asks_for(request, i.identifier)), None)

    def _cancel_run(self, entry: _Running) -> str:
        """Stop an issue's run for the operator: its issue is parked until retried."""
        self.retries.pop(entry.issue.id, None)
        self.parked[entry.issue.id] = "cancelled by the operator"
        entry.stopped_for = "cancel"
        entry.stop.set()
        return (f"Stopping {entry.session}: issue {entry.issue.identifier} is parked until "
                "you retry it.")

    def _verb_retry(self, call: Call) -> None:
        issue = self._operator_issue(call)
        if issue is None:
            return
        self._unpark(issue)
        retry = self.retries.get(issue.id)
        if retry is not None:
            retry.due = self.clock()
        self.poke()
        call.reply("issue_retrying", f"{issue.identifier} may run again.",
                   identifier=issue.identifier)

    def _verb_create(self, call: Call) -> None:
        if not operator_only(call):
            return
        workflow = self.workflow
        if workflow is None:
            call.deny("error", Refusal("no_workflow", "No workflow is loaded."))
            return
        title = text_field(call.frame, "title").strip()
        body = text_field(call.frame, "body")
        state = text_field(call.frame, "state").strip() or workflow.tracker.active_states[0]
        priority = call.frame.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            call.deny("error", Refusal("bad_priority", "priority must be a whole number."))
            return
        if not title or len(title.splitlines()) > 1:
            call.deny("error", Refusal("bad_title", "An issue needs a one-line title."))
            return
        try:
            issue = create_issue(workflow.tracker.root, state, title, body, priority)
        except (TrackerError, OSError, ValueError) as exc:
            call.deny("error", Refusal("not_created", f"Could not create the issue: {exc}."))
            return
        self.poke()
        call.reply("issue_created", f"Created {issue.identifier}.",
                   identifier=issue.identifier, path=str(issue.path))


    def _verb_remove_workspace(self, call: Call) -> None:
        """The operator confirms: a kept workspace goes, unsaved git work and all. Only the
        operator (like dispatch, cancel and retry: an agent cannot throw away anyone's work),
        only a workspace marrow-tui made (the same checks as always), never an issue's while
        it runs; and no run of the issue starts until the removal is over."""
        if not operator_only(call):
            return
        identifier = text_field(call.frame, "identifier").strip()
        workflow = self.workflow
        if workflow is None or not identifier:
            call.deny("error", Refusal("unknown_issue", "Name the issue whose workspace goes."))
            return
        if any(identifier in (e.issue.id, e.issue.identifier) for e in self.running.values()):
            call.deny("error", Refusal("already_running", f"{identifier} is running; its "
                                                          "workspace is in use."))
            return
        if identifier in self.removing:
            call.deny("error", Refusal("workspace_removing", f"{identifier}'s workspace is "
                                                             "already being removed."))
            return
        verdict = check_removal(workflow.workspace_root, identifier,
                                protected=self._protected(workflow))
        if verdict.path is None or verdict.reason:
            why = verdict.reason or "there is no workspace"
            call.deny("error", Refusal("not_removed", f"{identifier}: not removed: {why}."))
            return
        # Claimed now, in the same turn of the loop as the checks: no dispatch can come between.
        self.removing.add(identifier)
        self._spawn(self._remove_workspace(identifier, hook=False, force=True,
                                           by=call.sender, claimed=True),
                    f"remove {identifier}")
        call.reply("workspace_removing", f"Removing {verdict.path}.", identifier=identifier,
                   path=str(verdict.path))

    def _being_removed(self, issue: Issue) -> bool:
        """Its workspace is being removed, merged or discarded: no run may start in it."""
        return bool({issue.identifier, issue.id} & (self.removing | self.review.busy))

    async def _hook_in(self, issue: Issue, workspace: Path, name: str,
                       extra: dict[str, str]) -> str:
        """Run hook `name` for `issue` in `workspace` outside any run (accept's after_run);
        why it failed, or ""."""
        workflow = self.workflow
        assert workflow is not None
        entry = _Running(issue, None, workspace, "", self.clock(), workflow)
        try:
            await self._hook(workflow, name, entry, {**self._env(entry, workflow), **extra},
                             fatal=True)
        except _HookFailed as exc:
            return str(exc)
        return ""

    def _move(self, issue: Issue, target: str) -> Path:
        """Move the issue's file to `target` (the dispatched file when it is still there,
        else by a scan); TrackerError or OSError when it cannot be."""
        workflow = self.workflow
        assert workflow is not None
        return _move_fast(issue, workflow.tracker.root, target) or move_issue(
            workflow.tracker.root, issue.id, issue.state, target)

    async def _make_worktree(self, workflow: Workflow, entry: _Running) -> None:
        """The new (empty) workspace becomes a worktree of workspace.git.repo on the issue's
        branch, before after_create runs in it. A failure fails the attempt like a hook."""
        git = workflow.git
        assert git is not None
        branch = git.branch(workspace_key(entry.issue.identifier))
        try:
            await asyncio.to_thread(add_worktree, git.repo, entry.workspace, branch, git.base)
            await asyncio.to_thread(record_worktree, entry.workspace, git.repo, branch,
                                    git.base)
        except GitError as exc:
            raise _HookFailed(f"no worktree: {exc.message}") from None


class _HookFailed(Exception):
    pass


def _open_blockers(issue: Issue, by_id: dict[str, Issue], workflow: Workflow) -> list[str]:
    from .tracker import open_blockers

    return [b.identifier or b.ref for b in open_blockers(issue, by_id,
                                                          workflow.tracker.terminal_states)]


def _move_fast(issue: Issue, root: Path, target: str) -> Path | None:
    """Move the very file that was dispatched, when it is still where it was and nothing is
    in the way (no scan of the whole tracker on the event loop); None to take the long way."""
    source = issue.path
    folder = root / target
    destination = folder / source.name
    try:
        if source.is_symlink() or not source.is_file() or destination.exists():
            return None
        if source.parent.resolve() == folder.resolve():
            return source
        folder.mkdir(exist_ok=True)
        os.rename(source, destination)
    except OSError:
        return None
    return destination


def _own(sender: str, identifier: str) -> bool:
    return sender == identifier or sender.startswith(identifier + "/")


def _size(*paths: Path) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def vars_of(view: Any) -> dict[str, Any]:
    return {name: getattr(view, name) for name in view.__dataclass_fields__}


__all__ = ["Orchestrator", "time"]
