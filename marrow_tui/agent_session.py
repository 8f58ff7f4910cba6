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
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .agents.acp import AcpFailure, AcpRun, PermissionRequest, TurnEnd
from .core.acp import PROGRAM_ENV, PermissionPolicy, choose_option
from .core.events import Event, Refusal
from .core.steering import Request
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
                 is_done: Callable[[], bool], continuation: str | None = CONTINUATION) -> None:
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
        try:
            return await self._run(first)
        finally:
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

    # ---- permission requests -------------------------------------------------------------------

    async def _permission(self, request: PermissionRequest) -> str | None:
        call = request.tool_call
        self.tools.announce(call.id)  # the log says what is asked about before the answer
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
        return by_name.get(ended.answer or "")

    def _decided(self, request: PermissionRequest, chosen: str | None, how: str) -> None:
        call = request.tool_call
        self.emit(Event("session_tool", {
            "id": self.session, "tool_call_id": call.id,
            "title": call.title, "kind": call.kind, "status": call.status,
            "permission": how, "option": chosen}))


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


_LIVE: weakref.WeakKeyDictionary[Runtime, LiveSessions] = weakref.WeakKeyDictionary()


def live_sessions(runtime: Runtime) -> LiveSessions:
    """The runtime's one registry of running ACP sessions (made, and its verbs served, on
    first use)."""
    live = _LIVE.get(runtime)
    if live is None:
        live = _LIVE[runtime] = LiveSessions(runtime)
    return live
