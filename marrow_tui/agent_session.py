"""A coding agent's run over ACP inside the runtime: its turns, what they did (as summary events
in the log), its permission requests (as steering requests of kind `permission`, or answered
by the policy), its questions (the answer is the next turn's prompt), the operator's follow-up
prompts and cancels, and the stall and prompt timeouts. The agent itself is driven by
agents/acp.py; a producer (the orchestrator) starts one of these per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .agents.acp import AcpFailure, AcpRun, PermissionRequest, TurnEnd
from .core.acp import PROGRAM_ENV, PermissionPolicy, choose_option
from .core.claims import Overlap
from .core.edits import Touched, check_edit, checked_kind, relative_paths
from .core.events import Event, Refusal
from .core.steering import CONFLICT_CHOICES, HAND_OVER, LET_IT, REJECT, WAIT, Request
from .core.text import format_duration, one_line
from .own_command import after_profile
from .proc import leader_fields, simple_command, stop_tagged
from .protocol.frames import Call, text_field
from .runtime import Runtime

log = logging.getLogger("marrow.agents")

#: how often a turn's clocks (stall, prompt timeout) and the stop request are looked at
WATCH_EVERY = 0.5
#: how long an agent that marked its work done has to end its turn once its run is stopped
DONE_GRACE = 10.0
#: the most of a prompt the event log keeps (the transcript has it whole)
PROMPT_EXCERPT = 240
#: characters a shell expands in a command line (a variable, a home, a pattern)
SHELL_EXPANDS = "$`~*?["
#: the longest follow-up prompt an operator may send
MAX_PROMPT = 64 * 1024

#: a run's lease lasts this long unless renewed (a run that dies without releasing it frees
#: its paths within this), and is renewed this often while the run lives
LEASE_TTL = 600.0
RENEW_EVERY = 120.0

#: a tool call still running this long after it was first seen has its start logged; one that
#: ends sooner (most reads, searches and edits) is logged once, start and end in one line
TOOL_SETTLE = 1.0

CONTINUATION = (
    "Continue working on the same issue. Pick up where the last turn left off and take the "
    "next concrete step. If the work is complete and verified, summarise what changed and "
    "call the mark_done tool.")


def launch_argv(command: str, shell: str = "bash", own_command: Path | None = None) -> list[str]:
    """How to start an agent: one plain command directly (so a missing program is named
    with the PATH searched), anything a shell would change (syntax, `$VAR`, `~`, globs) under
    `shell -lc`, which puts `own_command`'s folder first on PATH again after the profile."""
    plain = simple_command(command) and not any(c in command for c in SHELL_EXPANDS)
    return shlex.split(command) if plain else [shell, "-lc", after_profile(command, own_command)]


def agent_environment(identity: Mapping[str, str], extra: Mapping[str, str],
                      argv: Sequence[str] = ()) -> dict[str, str]:
    """An ACP agent's environment: marrow-tui's own (its API keys and base URLs pass on),
    what its program needs as our run (PROGRAM_ENV), the configured extra variables, then
    the run's identity (MARROW_*)."""
    needs = PROGRAM_ENV.get(Path(argv[0]).name, {}) if argv else {}
    return {**os.environ, **needs, **extra, **identity}


def marrow_mcp_server(identity: Mapping[str, str]) -> dict[str, Any]:
    """Our MCP server (`marrow-tui mcp` over stdio) as an ACP `mcpServers` entry, carrying
    the run's identity; its ask_human ends the turn (the answer is the next prompt)."""
    env = {k: v for k, v in identity.items() if k.startswith("MARROW_")}
    env["MARROW_ASK_ENDS_TURN"] = "1"
    for name in ("PYTHONPATH", "HOME", "PATH"):  # where this Python finds marrow_tui
        if name in identity or name in os.environ:
            env[name] = identity.get(name, os.environ.get(name, ""))
    return {"name": "marrow", "command": sys.executable, "args": ["-m", "marrow_tui", "mcp"],
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())]}


def worktree_root(workspace: Path) -> Path:
    """The checkout a workspace is in: the nearest folder holding `.git` (a repository or a
    linked worktree), else the workspace itself; resolved, so every run of one checkout
    names it alike (the lease's worktree key)."""
    folder = workspace.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def answer_prompt(request: Request) -> str:
    """The next turn's prompt once a question of the agent's has ended."""
    parts = ["The operator has responded to your question.", "", "Your question was:",
             request.question]
    if request.context.strip():
        parts += ["", "The context you gave:", request.context.strip()]
    if request.state == "answered" or request.default_used:
        said = "The operator's answer:" if not request.default_used else (
            "Nobody answered in time; the default you set applies:")
        parts += ["", said, request.answer or ""]
    else:
        parts += ["", "The question ended without an answer "
                      f"({request.state.replace('_', ' ')}): decide yourself, or ask again."]
    parts += ["", "Continue the work with this in mind. If it is complete, call mark_done; "
                  "to ask something else, ask again."]
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Limits:
    #: seconds a turn may take, not counting time waiting on a person; 0: no limit
    prompt: float = 0.0
    #: seconds without an update from the agent, not counting time waiting on a person
    stall: float = 0.0
    #: autonomous turns in one run (answers and follow-ups do not count)
    max_turns: int = 20


@dataclass(frozen=True, slots=True)
class Ending:
    """How the run ended, as session_end says it."""

    state: str
    reason: str
    code: int | None = None
    last_line: str = ""
    #: it used all its autonomous turns without being done
    exhausted: bool = False


def plan_summary(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the log keeps of a plan (the transcript has it whole): how many steps, how many
    done, and the step under way."""
    now = next((str(e.get("content", "")) for e in entries
                if e.get("status") == "in_progress"), "")
    return {"steps": len(entries),
            "done": sum(1 for e in entries if e.get("status") == "completed"),
            "now": one_line(now, PROMPT_EXCERPT)}


class ToolLog:
    """The event log's summary of one run's tool calls, fed `AcpRun`'s tool changes (a call
    first seen, a call ended). A call that ends within `settle` seconds is one line with its
    end status; one still running then has its start logged (what the Sessions pane shows it
    doing) and later its end, by id and status only. The transcript keeps every update."""

    def __init__(self, log: Callable[[dict[str, Any]], None],
                 settle: float = TOOL_SETTLE,
                 latest: Callable[[str], dict[str, Any] | None] = lambda ident: None) -> None:
        self.log = log
        self.settle = settle
        #: the call's summary as merged by now (its title may have changed since its first
        #: sighting: claude's first says "Terminal"); None to log what it was first seen as
        self.latest = latest
        #: first seen, not yet logged: the summary and the timer that logs its start
        self._unlogged: dict[str, tuple[dict[str, Any], asyncio.TimerHandle]] = {}
        #: started calls whose start is in the log
        self._started: set[str] = set()

    def changed(self, summary: dict[str, Any]) -> None:
        ident = str(summary.get("tool_call_id", ""))
        ended = summary.get("status") in ("completed", "failed")
        if ident in self._started:
            if ended:
                self._started.discard(ident)
                self.log({"tool_call_id": ident, "status": summary.get("status", "")})
            return
        waiting = self._unlogged.pop(ident, None)
        if waiting is not None:
            waiting[1].cancel()
        if ended:
            self.log(summary)
        else:
            timer = asyncio.get_running_loop().call_later(self.settle, self.announce, ident)
            self._unlogged[ident] = (summary, timer)

    def announce(self, ident: str) -> None:
        """Log the start of `ident` now, if it is first seen and not logged yet."""
        waiting = self._unlogged.pop(ident, None)
        if waiting is not None:
            waiting[1].cancel()
            self._started.add(ident)
            self.log(self.latest(ident) or waiting[0])

    def flush(self) -> None:
        """Log every call first seen and not logged yet (the turn is over)."""
        for ident in list(self._unlogged):
            self.announce(ident)


class AgentSession:
    """One run of an ACP agent: `run(first_prompt)` until it is done, fails, is stopped or
    uses up its turns. `follow_up`, `cancel_turn` come from the operator (through verbs)."""

    def __init__(self, runtime: Runtime, emit: Callable[[Event], None], *, session: str,
                 agent: str, task_id: str, command: Sequence[str], workspace: Path,
                 env: Mapping[str, str], stderr_log: Path, transcript: Path,
                 mcp_servers: Sequence[Mapping[str, Any]], policy: PermissionPolicy,
                 limits: Limits, read_timeout: float, stop: asyncio.Event,
                 is_done: Callable[[], bool], continuation: str | None = CONTINUATION,
                 lease_paths: Sequence[str] = ()) -> None:
        self.runtime = runtime
        self.emit = emit
        self.session = session
        self.agent = agent
        self.task_id = task_id
        self.policy = policy
        self.limits = limits
        self.stop = stop
        self.is_done = is_done
        #: the prompt of a turn the agent takes on its own; None: the run ends when the agent
        #: ends a turn with nothing left to answer (a scheduled agent's one task)
        self.continuation = continuation
        self.workspace = workspace
        #: the run's lease: its task id (None when it holds none), its worktree key (the
        #: checkout's root), and the paths declared for it at the start
        self.lease: str | None = None
        self.root = ""
        self.lease_paths = tuple(lease_paths)
        self._conflict_asks = 0
        self.acp = AcpRun(command, workspace=workspace, env=env, stderr_log=stderr_log,
                          transcript=transcript, ask=self._permission,
                          mcp_servers=mcp_servers, name=agent, read_timeout=read_timeout,
                          on_change=self._changed)
        self.turn = 0
        self.autonomous = 0
        self.in_turn = False
        #: follow-up prompts from the operator, sent in order between turns
        self.queued: deque[str] = deque()
        self._wake = asyncio.Event()
        self._operator_cancel = False
        #: permission requests waiting on a person now, and the time spent so in this turn
        self._asking = 0
        self._asking_since = 0.0
        self._waited = 0.0
        #: when a person last answered a permission request (the agent's silence before that
        #: was the person's)
        self._answered_at = 0.0
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._permission_asks = 0
        self.tools = ToolLog(self._log_tool, latest=self._tool_summary)

    # ---- the operator's verbs ------------------------------------------------------------------

    def follow_up(self, text: str) -> None:
        """Send `text` as the next turn's prompt: now if the agent is idle, else after the turn."""
        self.queued.append(text)
        self._wake.set()

    async def cancel_turn(self) -> bool:
        """`session/cancel` the turn under way; the run then waits for the operator's prompt.
        False when no turn is under way."""
        if not self.in_turn:
            return False
        self._operator_cancel = True
        await self.acp.cancel()
        return True

    # ---- the run -------------------------------------------------------------------------------

    async def run(self, first: str) -> Ending:
        self._unsubscribe = self.runtime.subscribe(self._heard)
        await self._lease_start()
        renewing = asyncio.ensure_future(self._renew())
        try:
            return await self._run(first)
        finally:
            renewing.cancel()
            self._lease_end()
            self.tools.flush()
            self._unsubscribe()
            for waiter in self._waiters.values():
                waiter.cancel()
            # Its group ends with the agent; what left the group with the run's tag (a server
            # it started in a session of its own) is stopped within the same grace.
            await asyncio.gather(self.acp.close(),
                                 stop_tagged(self.session, self.acp.cancel_grace,
                                             outside=self.acp.pid))

    async def _run(self, first: str) -> Ending:
        try:
            await self.acp.start()
        except AcpFailure as exc:
            return Ending("failed", str(exc), last_line=str(exc))
        if self.acp.pid is not None:
            # its group and session ids, for the next start after a crash to end them
            self.emit(Event("session_pid", {"id": self.session, "agent": self.agent,
                                            "pid": self.acp.pid,
                                            **leader_fields(self.acp.pid)}))
        prompt: str | None = first
        why = "task"
        while True:
            assert prompt is not None
            ended = await self._turn(prompt, why)
            if isinstance(ended, Ending):
                return ended
            if self.is_done():
                return Ending("ok", "marked done", last_line=self._last_words())
            if ended.stop_reason == "cancelled" and ended.refused and not self._operator_cancel:
                ended = replace(ended, stop_reason="end_turn")  # codex ends a refused turn so
            if self._operator_cancel and ended.stop_reason == "cancelled":
                self._operator_cancel = False
                prompt, why = await self._idle("waiting for your prompt")
                if prompt is None:
                    return self._stopped()
                continue
            if ended.stop_reason != "end_turn":
                return Ending("failed", f"the agent's turn ended with {ended.stop_reason}",
                              last_line=self._last_words())
            if why == "task" or why == "continuation":
                self.autonomous += 1
            questions = self._questions()
            if questions:
                prompt, why = await self._answer(questions[0])
                if prompt is None:
                    return self._stopped()
                continue
            if self.queued:
                prompt, why = self.queued.popleft(), "follow-up"
                continue
            if self.continuation is None:
                return Ending("ok", "the agent ended its turn", last_line=self._last_words())
            if self.autonomous >= self.limits.max_turns:
                return Ending("ok", f"{self.autonomous} turns without mark_done "
                              "(agent.max_turns)", last_line=self._last_words(),
                              exhausted=True)
            if self.stop.is_set():
                return self._stopped()
            prompt, why = self.continuation, "continuation"

    def _stopped(self) -> Ending:
        return Ending("stopped", "stopped", last_line=self._last_words())

    def _last_words(self) -> str:
        """The last line the agent said this turn (its conclusion, not its opening)."""
        lines = [line for line in self.acp.view.message_tail.splitlines() if line.strip()]
        return one_line(lines[-1], 200) if lines else ""

    async def _turn(self, text: str, why: str) -> TurnEnd | Ending:
        """One prompt and its end, watched: the stop request, the stall and prompt clocks."""
        self.turn += 1
        self.in_turn, self._waited = True, 0.0
        self.emit(Event("session_turn", {
            "id": self.session, "agent": self.agent, "turn": self.turn, "phase": "start",
            "prompt": why, "text": one_line(text, PROMPT_EXCERPT)}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.ensure_future(self.acp.prompt(text))
        stopper = asyncio.ensure_future(self.stop.wait())
        verdict: Ending | None = None
        done_by: float | None = None
        try:
            while not task.done():
                watched = {task} if stopper.done() else {task, stopper}
                await asyncio.wait(watched, timeout=WATCH_EVERY,
                                   return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    break
                verdict = self._overdue(loop.time(), started)
                if self.stop.is_set() and self.is_done():
                    # Stopped because it marked its work done: it gets to end its turn (its
                    # last words and usage) before it is cancelled.
                    done_by = done_by or loop.time() + DONE_GRACE
                    verdict = self._stopped() if loop.time() >= done_by else None
                elif self.stop.is_set():
                    verdict = self._stopped()
                if verdict is not None:
                    await self.acp.cancel()
                    break
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        finally:
            stopper.cancel()
            self.in_turn = False
        try:
            end = task.result()
        except AcpFailure as exc:
            end = None
            verdict = verdict or Ending("failed", str(exc), last_line=self._last_words())
        self.tools.flush()  # what is still running when the turn ends is logged as it stands
        self.emit(Event("session_turn", {
            "id": self.session, "agent": self.agent, "turn": self.turn, "phase": "end",
            "stop_reason": end.stop_reason if end is not None else "failed",
            "usage": dict(end.usage) if end is not None else {},
            "seconds": round(loop.time() - started, 3)}))
        return verdict if verdict is not None else end  # type: ignore[return-value]

    def _overdue(self, now: float, started: float) -> Ending | None:
        """A timeout verdict, if a clock ran out (time waiting on a person never counts)."""
        if self._asking:
            return None
        waited = self._waited
        stall, limit = self.limits.stall, self.limits.prompt
        quiet = now - max(self.acp.last_update, self._answered_at, started)
        if stall > 0 and quiet > stall:
            return Ending("timeout", f"stalled: no update from the agent for "
                          f"{format_duration(quiet)} (acp.stall_timeout_ms)",
                          last_line=self._last_words())
        if limit > 0 and now - started - waited > limit:
            return Ending("timeout", f"the turn took longer than {format_duration(limit)} "
                          "(acp.prompt_timeout_ms; time waiting on a person not counted)",
                          last_line=self._last_words())
        return None

    # ---- questions, follow-ups and waiting -----------------------------------------------------

    def _questions(self) -> list[Request]:
        """The agent's questions this run has not had the answer of: open, or ended and not
        yet received (a turn-ending ask)."""
        book = self.runtime.state.steering
        mine = [r for r in (*book.open.values(), *book.ended.values())
                if r.session == self.session and r.kind == "question" and not r.delivered]
        return sorted(mine, key=lambda r: (r.created, r.id))

    async def _answer(self, request: Request) -> tuple[str | None, str]:
        """Wait for the question to end; the next prompt answers it. A follow-up from the
        operator is sent meanwhile (the question stays open)."""
        if request.open:
            waiter = self._waiter(request.id)
            self.emit(Event("session_turn", {
                "id": self.session, "agent": self.agent, "turn": self.turn,
                "phase": "waiting", "doing": "waiting for your answer",
                "request": request.id}))
            woken = await self._first(waiter)
            if woken == "stop":
                return None, ""
            if woken == "prompt":
                return self.queued.popleft(), "follow-up"
        ended = self.runtime.state.steering.get(request.id)
        assert ended is not None
        self._acknowledge(ended)
        return answer_prompt(ended), "answer"

    async def _idle(self, doing: str) -> tuple[str | None, str]:
        """Between turns with nothing to do: the operator's prompt, or None when stopped."""
        self.emit(Event("session_turn", {"id": self.session, "agent": self.agent,
                                         "turn": self.turn, "phase": "idle", "doing": doing}))
        if not self.queued and await self._first(None) == "stop":
            return None, ""
        return self.queued.popleft(), "follow-up"

    async def _first(self, waiter: asyncio.Future[None] | None) -> str:
        """"ended" (the waiter), "prompt" (a follow-up is queued) or "stop"."""
        while True:
            if self.stop.is_set():
                return "stop"
            if waiter is not None and waiter.done():
                return "ended"
            if self.queued:
                return "prompt"
            self._wake.clear()
            watched: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait()),
                                                 asyncio.ensure_future(self.stop.wait())}
            if waiter is not None:
                watched.add(waiter)
            try:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for future in watched:
                    if future is not waiter:
                        future.cancel()

    def _waiter(self, request_id: str) -> asyncio.Future[None]:
        waiter = self._waiters.get(request_id)
        if waiter is None:
            waiter = self._waiters[request_id] = asyncio.get_running_loop().create_future()
        request = self.runtime.state.steering.get(request_id)
        if (request is None or not request.open) and not waiter.done():
            waiter.set_result(None)
        return waiter

    def _heard(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "steer_end":
                waiter = self._waiters.get(event.data.get("id", ""))
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _acknowledge(self, request: Request) -> None:
        """The asker has the end now (it is in the prompt): it is delivered."""
        decided = self.runtime.state.steering.decide_ack(request.id, request.asker,
                                                         self.runtime.clock())
        if isinstance(decided, Event):
            self.emit(decided)

    # ---- what the agent does, for the log ------------------------------------------------------

    def _changed(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "tool":
            self.tools.changed(data)
        elif kind == "plan":
            self.emit(Event("session_plan", {"id": self.session,
                                             **plan_summary(data.get("entries") or [])}))

    def _tool_summary(self, ident: str) -> dict[str, Any] | None:
        call = self.acp.view.tool_calls.get(ident)
        return call.summary() if call is not None else None

    # The run's id says whose they are (its session_start names the agent): the agent's name
    # is left out of the two kinds a run logs most often.
    def _log_tool(self, data: dict[str, Any]) -> None:
        self.emit(Event("session_tool", {"id": self.session, **data}))

    # ---- the run's lease -----------------------------------------------------------------------

    async def _lease_start(self) -> None:
        """Claim the run's lease on its checkout: its declared paths if no other lease holds
        them, else none yet (its edits claim their paths on the way)."""
        root = await asyncio.to_thread(worktree_root, self.workspace)
        self.root = str(root)
        task = self.task_id or self.session
        declared = relative_paths(self.lease_paths, cwd=str(self.workspace.resolve()),
                                  root=self.root, realpath=os.path.realpath)
        if declared.refused:
            log.warning("%s: declared lease paths ignored: %s", self.session, declared.refused)
        claims = self.runtime.state.claims
        for paths in ((declared.paths,) if declared.paths else ()) + ((),):
            decided = claims.decide_claim(self.agent, task, worktree=self.root, paths=paths,
                                          ttl=LEASE_TTL, note=f"run {self.session}",
                                          session=self.session, now=self.runtime.clock())
            if isinstance(decided, Event):
                self.emit(decided)
                self.lease = task
                return
            log.warning("%s: lease on %s refused: %s", self.session, task, decided.text)

    async def _renew(self) -> None:
        """Keep the lease while the run lives (a lease handed over or released by the operator
        is not the run's to renew any more)."""
        while self.lease is not None:
            await asyncio.sleep(RENEW_EVERY)
            decided = self.runtime.state.claims.decide_extend(
                self.agent, self.lease, ttl=LEASE_TTL, now=self.runtime.clock())
            if isinstance(decided, Refusal):
                log.info("%s: lease %s not renewed: %s", self.session, self.lease, decided.text)
                return
            self.emit(decided)

    def _lease_end(self) -> None:
        """Release the lease, keeping its checkpoint for the issue's next run."""
        if self.lease is None:
            return
        decided = self.runtime.state.claims.decide_release(self.agent, self.lease,
                                                           keep_checkpoint=True)
        if isinstance(decided, Event):
            self.emit(decided)
        self.lease = None

    def claim_paths(self, raw: Sequence[str], emit: Callable[[Event], None],
                    title: str = "claim_paths") -> Refusal | list[str]:
        """Grow the lease by `raw` (relative to the workspace), unless another agent's lease
        holds any of them: the paths added (the event goes to `emit`), or why not."""
        if self.lease is None:
            return Refusal("NO_LEASE", f"{self.session} holds no lease to grow.")
        wanted = relative_paths(raw, cwd=str(self.workspace.resolve()), root=self.root,
                                realpath=os.path.realpath)
        if wanted.refused:
            return Refusal("OUTSIDE_WORKTREE", f"Not claimed: {wanted.refused}.")
        if not wanted.paths:
            return Refusal("NO_PATHS", "Name the paths to claim, relative to your folder.")
        overlaps = self.runtime.state.claims.overlaps(self.agent, self.root, wanted.paths,
                                                      self.runtime.clock(), whole=wanted.whole)
        if overlaps:
            return Refusal("SCOPE_CONFLICT", "Not claimed: " + "; ".join(
                self._held(o) for o in overlaps) + ". Pick other paths, or ask the operator.")
        return self._grow(wanted.paths, "", title, emit)

    def _grow(self, paths: tuple[str, ...], tool_call_id: str, title: str,
              emit: Callable[[Event], None] | None = None) -> list[str]:
        if self.lease is None:
            return []
        decided = self.runtime.state.claims.decide_grow(
            self.lease, paths, tool_call_id=tool_call_id, title=title, now=self.runtime.clock())
        if isinstance(decided, Event):
            (emit or self.emit)(decided)
            return list(decided.data["paths"])
        if isinstance(decided, Refusal):
            log.info("%s: lease %s not grown: %s", self.session, self.lease, decided.text)
        return []

    def _held(self, overlap: Overlap) -> str:
        """"src/a.py is held by demo/alice (AUTH-3) since 12:03:04"."""
        what = ", ".join(overlap.paths) or "the whole worktree"
        since = _clock_time(overlap.since)
        return f"{what} held by {overlap.owner} ({overlap.task_id}) since {since}"

    # ---- edits checked against other agents' leases --------------------------------------------

    async def _edit_check(self, request: PermissionRequest) -> tuple[bool, str | None]:
        """Before the policy: the paths an edit, delete, move or readable command changes,
        checked against every other agent's live lease in this checkout. (True, option) when
        this decided the request; (False, None) to let the policy decide as before."""
        call = request.tool_call
        if not self.root or not checked_kind(call.kind):  # (a run with no lease is checked too)
            return False, None
        found, overlaps = check_edit(
            self.runtime.state.claims, self.agent, self.root, call.kind, call.locations,
            call.content, call.raw_input, cwd=str(self.workspace.resolve()),
            realpath=os.path.realpath, now=self.runtime.clock())
        pairs = [(o.option_id, o.kind) for o in request.options]
        if found.refused:
            chosen = choose_option(pairs, allow=False)
            self._decided(request, chosen, f"refused: {found.refused}")
            return True, chosen
        if found.unreadable or not (found.paths or found.whole):
            return False, None  # nothing to check: the policy decides, as before
        while True:
            if not overlaps:
                self._grow(found.paths, call.id, call.title)
                return False, None
            ended = await self._conflict(request, found, overlaps)
            answer = ended.answer if ended is not None and ended.answer is not None else REJECT
            if ended is not None and ended.state == "cancelled":
                answer = REJECT
            if answer == WAIT:  # the leases ended: check again (another may have claimed)
                overlaps = self._overlaps(found)
                continue
            if answer == LET_IT:
                self._tell(overlaps, f"{self.agent} was let edit {', '.join(found.paths)} "
                                     f"({call.title or call.id}), which your lease holds.")
                return False, None
            if answer == HAND_OVER and ended is not None:
                refused = self._hand_over(overlaps, ended.answered_by or "operator")
                if refused is None:
                    overlaps = self._overlaps(found)
                    continue
                chosen = choose_option(pairs, allow=False)
                self._decided(request, chosen, f"rejected: the handover failed ({refused})")
                return True, chosen
            chosen = choose_option(pairs, allow=False)
            self._decided(request, chosen, "rejected: " + "; ".join(
                self._held(o) for o in overlaps))
            return True, chosen

    def _overlaps(self, found: Touched) -> list[Overlap]:
        return self.runtime.state.claims.overlaps(self.agent, self.root, found.paths,
                                                  self.runtime.clock(), whole=found.whole)

    async def _conflict(self, request: PermissionRequest, found: Touched,
                        overlaps: list[Overlap]) -> Request | None:
        """Ask the operator about an edit on paths other leases hold; the request once ended
        (None when it could not be asked)."""
        call = request.tool_call
        self._conflict_asks += 1
        first = overlaps[0]
        edited = ", ".join(found.paths) or "the whole worktree"
        question = one_line(f"{self.agent}'s {call.kind} of {edited} is blocked: "
                            f"{self._held(first)}" + (f" (and {len(overlaps) - 1} more)"
                                                      if len(overlaps) > 1 else ""), 400)
        lines = [self._held(o) + ("" if o.holds == o.paths or not o.holds else
                                  f"; its lease also holds {', '.join(o.holds)}")
                 for o in overlaps]
        context = "\n".join([*lines, "", "Hand over moves each of these whole leases to "
                              f"{self.agent}.", "", _detail(request)])
        facts = {"worktree": self.root, "owner": self.agent, "task_id": self.lease,
                 "session": self.session, "paths": list(found.paths), "whole": found.whole,
                 "tool_call_id": call.id, "title": call.title, "kind": call.kind,
                 "held": [o.to_dict() for o in overlaps]}
        default = LET_IT if self.policy.default == "allow" else REJECT
        decided = self.runtime.state.steering.decide_ask(
            self.agent, self.runtime.clock(), question=question, context=context[:16_000],
            choices=list(CONFLICT_CHOICES), default=default,
            timeout=self.policy.conflict_deadline, task_id=self.task_id,
            session=self.session, kind="conflict", conflict=facts,
            key=f"conflict:{self.session}:{call.id}:{self._conflict_asks}",
            waiting=self.policy.conflict == "wait")
        if isinstance(decided, Refusal):
            log.warning("%s: could not ask about a conflict: %s", self.session, decided.text)
            return None
        if isinstance(decided, Event):
            self.emit(decided)
            request_id = str(decided.data["id"])
        else:
            request_id = decided.id
        # A lease may have ended between the check and the ask: then it answers itself now.
        settled = self.runtime.state.settled_conflicts(self.runtime.clock())
        for event in settled:
            self.emit(event)
        return await self._ended(request_id)

    def _hand_over(self, overlaps: list[Overlap], by: str) -> str | None:
        """Move each lease in the way to this run's agent; why not, at the first refusal."""
        claims = self.runtime.state.claims
        for overlap in overlaps:
            decided = claims.decide_handoff(
                by, overlap.task_id, self.agent, online={self.agent},
                note=f"handed over for {self.session}'s edit", now=self.runtime.clock(),
                operator=True)
            if isinstance(decided, Refusal):
                return decided.text
            self.emit(decided)
        self._tell(overlaps, f"your lease was handed over to {self.agent} by {by}.")
        return None

    def _tell(self, overlaps: list[Overlap], text: str) -> None:
        """Tell each holder by chat (through the hub, as any agent's chat)."""
        for owner in dict.fromkeys(o.owner for o in overlaps):
            self.runtime.handle(self.agent, {"type": "chat", "target": owner,
                                             "payload": text}, None)

    # ---- permission requests -------------------------------------------------------------------

    async def _permission(self, request: PermissionRequest) -> str | None:
        call = request.tool_call
        self.tools.announce(call.id)  # the log says what is asked about before the answer
        decided, option = await self._edit_check(request)
        if decided:
            return option
        pairs = [(o.option_id, o.kind) for o in request.options]
        verdict = self.policy.verdict(call.kind)
        if verdict != "ask":
            chosen = choose_option(pairs, allow=verdict == "allow")
            done = "allowed" if verdict == "allow" else "denied"
            self._decided(request, chosen, f"{done} by the policy ({call.kind})")
            return chosen
        names = _choice_names(request)
        default_id = choose_option(pairs, allow=self.policy.default == "allow")
        by_name = dict(zip(names, (o.option_id for o in request.options), strict=True))
        default = next((n for n, i in by_name.items() if i == default_id), None)
        self._permission_asks += 1
        book = self.runtime.state.steering
        decided = book.decide_ask(
            self.agent, self.runtime.clock(), question=_question(request),
            context=_detail(request), choices=names, default=default,
            timeout=self.policy.timeout if default is not None else None,
            task_id=self.task_id, session=self.session,
            key=f"permission:{self.session}:{call.id}:{self._permission_asks}",
            kind="permission")
        if isinstance(decided, Refusal):
            chosen = choose_option(pairs, allow=False)
            self._decided(request, chosen, f"rejected: could not ask ({decided.reason})")
            return chosen
        if isinstance(decided, Event):
            self.emit(decided)
            request_id = str(decided.data["id"])
        else:
            request_id = decided.id
        return await self._permission_answer(request_id, by_name)

    async def _permission_answer(self, request_id: str, by_name: dict[str, str]) -> str | None:
        ended = await self._ended(request_id)
        return by_name.get(ended.answer or "") if ended is not None else None

    async def _ended(self, request_id: str) -> Request | None:
        """Wait for a request of the run's to end (no clock runs against the turn meanwhile);
        it is acknowledged (the run has it)."""
        loop = asyncio.get_running_loop()
        if not self._asking:
            self._asking_since = loop.time()
        self._asking += 1
        try:
            await self._waiter(request_id)
        except asyncio.CancelledError:  # the turn was cancelled: so is the question
            cancel = self.runtime.state.steering.decide_cancel(
                request_id, self.agent, self.runtime.clock())
            if isinstance(cancel, Event):
                self.emit(cancel)
            raise
        finally:
            self._asking -= 1
            self._answered_at = loop.time()
            if not self._asking:
                self._waited += loop.time() - self._asking_since
        ended = self.runtime.state.steering.get(request_id)
        if ended is None:
            return None
        self._acknowledge(ended)
        return ended

    def _decided(self, request: PermissionRequest, chosen: str | None, how: str) -> None:
        call = request.tool_call
        self.emit(Event("session_tool", {
            "id": self.session, "tool_call_id": call.id,
            "title": call.title, "kind": call.kind, "status": call.status,
            "permission": how, "option": chosen}))


def _clock_time(at: float) -> str:
    """A moment as the local time of day (when it is today's) or the date and time."""
    moment = time.localtime(at)
    today = time.localtime()
    shape = "%H:%M:%S" if moment[:3] == today[:3] else "%Y-%m-%d %H:%M"
    return time.strftime(shape, moment)


def _choice_names(request: PermissionRequest) -> list[str]:
    """The options' names as choices, made unique (the answer names one)."""
    names: list[str] = []
    for option in request.options:
        name = option.name.strip() or option.kind.replace("_", " ")
        while name in names:
            name += f" ({option.kind.replace('_', ' ')})" if option.kind not in name else "'"
        names.append(name)
    return names


def _question(request: PermissionRequest) -> str:
    call = request.tool_call
    return one_line(f"Allow {call.kind}: {call.title or call.id}?", 400)


def _detail(request: PermissionRequest) -> str:
    """What is asked, as plain lines: the tool call, its command, its paths, its diffs."""
    call = request.tool_call
    lines = [f"{call.kind}: {call.title or call.id}"]
    raw = call.raw_input
    if isinstance(raw, Mapping):
        command = raw.get("command") or raw.get("cmd")
        if command:
            text = " ".join(map(str, command)) if isinstance(command, list) else str(command)
            lines += ["", "$ " + text[:4000]]
    paths = [str(loc.get("path")) for loc in call.locations
             if isinstance(loc, Mapping) and loc.get("path")]
    for item in call.content:
        if isinstance(item, Mapping) and item.get("type") == "diff":
            paths.append(str(item.get("path", "")))
            old = str(item.get("oldText") or "").splitlines()
            new = str(item.get("newText") or "").splitlines()
            lines += ["", f"--- {item.get('path', '')}", *(f"-{line}" for line in old[:40]),
                      *(f"+{line}" for line in new[:40])]
    if paths:
        lines += ["", "Paths: " + ", ".join(dict.fromkeys(p for p in paths if p))]
    return "\n".join(lines)[:16_000]


class LiveSessions:
    """The ACP sessions running in one runtime, whoever started them (the orchestrator, the
    scheduler), and the operator's verbs that reach them: `session_prompt` (a follow-up,
    sent at once to an idle agent, else when its turn ends) and `session_cancel` (the turn
    under way). Get it with `live_sessions(runtime)`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.by_id: dict[str, AgentSession] = {}
        #: how to stop each running run whose producer does not serve `session_stop` itself
        #: (the orchestrator's issue runs, ACP or not): says what it did
        self.stoppers: dict[str, Callable[[], str]] = {}
        self._cancels: set[asyncio.Task[bool]] = set()
        decider = runtime.decider
        assert decider is not None, "start the runtime first"
        decider.register("session_prompt", self._verb_prompt)
        decider.register("session_cancel", self._verb_cancel)
        decider.register("claim_paths", self._verb_claim_paths)

    def add(self, session: AgentSession) -> None:
        self.by_id[session.session] = session

    def remove(self, session: AgentSession) -> None:
        if self.by_id.get(session.session) is session:
            del self.by_id[session.session]

    def stop(self, session_id: str) -> str | None:
        """Stop a run registered in `stoppers`; what was done, or None when it is not there."""
        stopper = self.stoppers.get(session_id)
        return stopper() if stopper is not None else None

    def _session(self, call: Call) -> AgentSession | None:
        """The running ACP session an operator verb names (else the frame is refused)."""
        if not call.operator:
            call.deny("error", Refusal("forbidden", "Only an operator prompts or cancels an "
                                                    "agent's session."))
            return None
        sid = text_field(call.frame, "id").strip()
        session = self.by_id.get(sid)
        if session is None:
            known = self.runtime.state.sessions.by_id.get(sid)
            why = ("no such session" if known is None else "it is not running"
                   if not known.running else
                   "it does not speak ACP (a plain command takes no prompts)")
            call.deny("error", Refusal("not_an_acp_run", f"Cannot reach session {sid!r}: "
                                                         f"{why}."), id=sid)
        return session

    def _verb_prompt(self, call: Call) -> None:
        session = self._session(call)
        if session is None:
            return
        text = text_field(call.frame, "text").strip()
        if not text:
            call.deny("error", Refusal("empty_prompt", "A prompt cannot be empty."))
            return
        if len(text) > MAX_PROMPT:
            call.deny("error", Refusal("too_long", f"A prompt is at most {MAX_PROMPT // 1024} "
                                                   "KiB."))
            return
        queued = self.prompt(session, text, call.sender, call.emit)
        said = (f"Queued for {session.session}: it is sent when the current turn ends."
                if queued else f"Sent to {session.session}.")
        call.reply("session_prompted", said, id=session.session, queued=queued)

    def prompt(self, session: AgentSession, text: str, by: str,
               emit: Callable[[Event], None]) -> bool:
        """`text` as the session's next prompt (the `session_prompt` event, then the follow-up);
        True when it waits for the turn under way. For the operator's verb and for the
        orchestrator's review (requested changes)."""
        queued = session.in_turn or bool(session.queued)
        emit(Event("session_prompt", {
            "id": session.session, "agent": session.agent, "text": text, "by": by,
            "at": self.runtime.clock(), "queued": queued}))
        session.follow_up(text)
        return queued

    def _verb_cancel(self, call: Call) -> None:
        """session/cancel, then the agent's processes after a grace; the run stays, waiting
        for the operator's next prompt."""
        session = self._session(call)
        if session is None:
            return
        if not session.in_turn:
            call.deny("error", Refusal("no_turn", f"{session.session} is between turns: there "
                                                  "is no turn to cancel."), id=session.session)
            return
        call.emit(Event("session_cancel", {"id": session.session, "agent": session.agent,
                                           "by": call.sender, "at": self.runtime.clock()}))
        task = asyncio.ensure_future(session.cancel_turn())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)
        call.reply("session_cancelling", f"Cancelling the turn of {session.session}.",
                   id=session.session)


    def _verb_claim_paths(self, call: Call) -> None:
        """An ACP run's agent (or its MCP server, `<agent>/mcp`) grows the run's lease on
        paths before it edits them: refused, with who holds them, if another lease does."""
        sid = text_field(call.frame, "session").strip()
        session = self.by_id.get(sid)
        if session is None:
            call.deny("claim_paths_denied", Refusal(
                "not_an_acp_run", f"No running ACP run {sid!r} to claim paths for (a plain "
                "command agent claims with `claim` and a task id)."), session=sid)
            return
        if call.sender != session.agent and not call.sender.startswith(session.agent + "/"):
            call.deny("claim_paths_denied", Refusal(
                "forbidden", f"{call.sender} is not {session.agent}, whose run {sid} is."),
                session=sid)
            return
        raw = call.frame.get("paths")
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            call.deny("claim_paths_denied", Refusal(
                "bad_paths", "claim_paths: 'paths' must be a list of paths relative to your "
                "folder."), session=sid)
            return
        added = session.claim_paths(raw, call.emit)
        if isinstance(added, Refusal):
            call.deny("claim_paths_denied", added, session=sid)
            return
        claim = self.runtime.state.claims.get(session.lease or "")
        held = list(claim.paths) if claim is not None else []
        call.reply("claim_paths_granted", f"{session.lease} now holds {', '.join(held)}.",
                   session=sid, task_id=session.lease, added=added, paths=held,
                   worktree=session.root)


_LIVE: weakref.WeakKeyDictionary[Runtime, LiveSessions] = weakref.WeakKeyDictionary()


def live_sessions(runtime: Runtime) -> LiveSessions:
    """The runtime's one registry of running ACP sessions (made, and its verbs served, on
    first use)."""
    live = _LIVE.get(runtime)
    if live is None:
        live = _LIVE[runtime] = LiveSessions(runtime)
    return live
