"""Scheduled agent runs: the heartbeat rules and the session history. Pure: no clock, no I/O.

`Schedule` holds the rules of one agent's heartbeat loop, decided on plain numbers so tests
drive them with any clock:

- the first run is due at once;
- the interval counts from the end of a run, never from its start;
- one run of an agent at a time; wakes during a run collapse into one follow-up run;
- after consecutive failures the wait grows (the interval, then 2x, 4x, up to 8x), and a
  manual wake still runs at once.

`SessionBook` is the history the console shows: every run is a session, begun and ended by
events in the log, so a restart shows past sessions, and a session that was running when the
process died is ended as `interrupted` on the next start. The log also records each run's
process group and session ids (`session_pid`), so that start can stop what the run left behind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .events import Event
from .text import plural

#: how many finished sessions per agent the state keeps (the log keeps them all)
HISTORY_PER_AGENT = 50
#: the longest failure backoff, as a multiple of the heartbeat interval
MAX_BACKOFF_FACTOR = 8

END_STATES = ("ok", "failed", "timeout", "stopped", "error", "interrupted")


@dataclass(slots=True)
class Schedule:
    """One agent's heartbeat: when it is due, whether it runs, what a wake does."""

    name: str
    interval: float
    enabled: bool = True
    #: the running session's id, or None
    running: str | None = None
    #: when the next run is due; None while running or disabled
    next_at: float | None = None
    #: a wake arrived during the run: run again as soon as it ends
    wake_pending: bool = False
    wake_reason: str = ""
    #: consecutive failed runs
    failures: int = 0
    last_end: float | None = None

    def start(self, now: float) -> None:
        """The loop begins: the first run is due at once."""
        self.next_at = now if self.enabled and self.running is None else None

    def due(self, now: float) -> bool:
        return (self.enabled and self.running is None and self.next_at is not None
                and now >= self.next_at)

    def wake(self, now: float, reason: str = "") -> bool:
        """A wake: run now, or once the current run ends. True if a run is now due at once."""
        self.wake_reason = reason
        if self.running is not None:
            self.wake_pending = True
            return False
        self.next_at = now
        return True

    def begin(self, session_id: str) -> str:
        """A run starts; returns why it started (the wake's reason, or the heartbeat)."""
        reason = self.wake_reason or "heartbeat"
        self.running = session_id
        self.next_at = None
        self.wake_pending = False
        self.wake_reason = ""
        return reason

    def finish(self, now: float, ok: bool) -> None:
        self.running = None
        self.last_end = now
        self.failures = 0 if ok else self.failures + 1
        if not self.enabled:
            self.wake_pending = False
            self.next_at = None
        elif self.wake_pending:
            self.wake_pending = False
            self.next_at = now
        else:
            self.next_at = now + self.delay()

    def delay(self) -> float:
        """The wait after the last run: the interval, doubled per failure after the first."""
        if self.failures <= 1:
            return self.interval
        return self.interval * min(2 ** (self.failures - 1), MAX_BACKOFF_FACTOR)

    def reconfigure(self, now: float, interval: float, enabled: bool) -> None:
        """A new config: a new interval counts from the last run's end; enabling runs now."""
        was_enabled = self.enabled
        self.interval = interval
        self.enabled = enabled
        if not enabled:
            self.wake_pending = False
        if self.running is not None:
            return
        if not enabled:
            self.next_at = None
        elif not was_enabled or self.last_end is None:
            self.next_at = now
        else:
            self.next_at = self.last_end + self.delay()

    def view(self) -> dict[str, Any]:
        return {
            "agent": self.name, "interval": self.interval, "enabled": self.enabled,
            "running": self.running, "next_at": self.next_at, "failures": self.failures,
            "wake_pending": self.wake_pending,
        }


@dataclass(slots=True)
class Session:
    id: str
    agent: str
    started: float
    trigger: str = "heartbeat"
    stdout: str = ""
    stderr: str = ""
    #: the task files handed to this run
    tasks: list[str] = field(default_factory=list)
    pid: int | None = None
    #: the leader's process group and (Unix) session ids: the same as `pid`, as the leader
    #: starts both; recorded so a restart after a crash can find a group that lost its tag
    pgid: int | None = None
    psid: int | None = None
    #: the leader's start time (clock ticks after boot, /proc/<pid>/stat) and the boot's id:
    #: a recorded group is only ours while its leader still matches (pids are reused)
    pid_start: int | None = None
    boot: str = ""
    ended: float | None = None
    #: "running" or one of END_STATES
    state: str = "running"
    code: int | None = None
    reason: str = ""
    last_line: str = ""
    #: an agent run over ACP: its transcript (JSONL of every session/update); "" otherwise
    transcript: str = ""
    #: ACP turns begun, and whether one is under way
    turns: int = 0
    in_turn: bool = False
    #: what it does now: a tool call's title, "thinking", or "" between turns
    doing: str = ""
    #: the session's usage so far (see `add_usage`): input, output, total tokens; the latest
    #: context occupancy (context_used, context_size) and cost (cost, currency) reported
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Cleanup:
    """What stopping the processes a run left behind achieved."""

    #: how many ended
    stopped: int = 0
    #: the pids still running after SIGKILL (another user's, or stuck in the kernel)
    survivors: tuple[int, ...] = ()

    def text(self, what: str = "it left behind") -> str:
        """"stopped the 2 processes it left behind", and which could not be stopped."""
        parts = []
        if self.stopped:
            parts.append(f"stopped the {plural(self.stopped, 'process', 'processes')} {what}")
        if self.survivors:
            pids = ", ".join(map(str, self.survivors))
            parts.append(f"{plural(len(self.survivors), 'process', 'processes')} {what} could not "
                         f"be stopped (pid{'s' if len(self.survivors) > 1 else ''} {pids})")
        return "; ".join(parts)


#: usage fields that add up over turns; the others are the latest reported
SUMMED_USAGE = ("input", "output", "total")
LATEST_USAGE = ("context_used", "context_size", "cost", "currency")


def add_usage(into: dict[str, Any], turn: Mapping[str, Any]) -> None:
    """Fold one turn's usage into a running total: tokens add up; context occupancy and
    cost are the agent's latest word (occupancy is not spend, and agents report cost as the
    session's total so far), never summed."""
    for key in SUMMED_USAGE:
        value = turn.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
    for key in LATEST_USAGE:
        if turn.get(key) is not None:
            into[key] = turn[key]


@dataclass(slots=True)
class AgentView:
    """The latest word from the scheduler about one configured agent (not persisted)."""

    agent: str
    interval: float = 0.0
    #: what the config says (`enabled = false` there keeps it from running)
    enabled: bool = True
    #: paused by an operator (kept in the log, never written to the config)
    paused: bool = False
    running: str | None = None
    next_at: float | None = None
    failures: int = 0
    wake_pending: bool = False
    queued: int = 0
    #: its worktree's +N/-M against the base ({files, added, removed}), with workspace_git
    diff: dict[str, int] | None = None


class SessionBook:
    def __init__(self, history: int = HISTORY_PER_AGENT) -> None:
        self.history = history
        self.by_id: dict[str, Session] = {}
        self._finished: dict[str, deque[str]] = {}
        #: the configured agents as the scheduler last described them
        self.agents: dict[str, AgentView] = {}
        #: the config file's status: path, ok, errors, warnings
        self.config: dict[str, Any] = {}
        #: agent name -> who paused it: no heartbeat runs until it is resumed. It lives in the
        #: log (and the snapshot), not in the config: the operator's file is theirs
        self.paused: dict[str, str] = {}

    # ---- applying events -----------------------------------------------------------------

    def apply(self, event: Event) -> None:
        d = event.data
        kind = event.kind
        if kind == "session_start":
            self.by_id[d["id"]] = Session(
                id=d["id"], agent=d["agent"], started=d["started"],
                trigger=d.get("trigger", "heartbeat"), stdout=d.get("stdout", ""),
                stderr=d.get("stderr", ""), tasks=list(d.get("tasks", ())),
                transcript=d.get("transcript", ""),
            )
        elif kind == "session_end":
            session = self.by_id.get(d["id"])
            if session is None:  # its start fell out of the snapshot's history: keep the end
                session = Session(id=d["id"], agent=d["agent"], started=d.get("started", 0.0))
                self.by_id[d["id"]] = session
            session.ended = d["ended"]
            session.state = d["state"]
            session.code = d.get("code")
            session.reason = d.get("reason", "")
            session.last_line = d.get("last_line", session.last_line)
            session.in_turn, session.doing = False, ""
            self._retire(session)
        elif kind == "session_turn":
            session = self.by_id.get(d["id"])
            if session is not None:
                phase = d.get("phase")
                if phase == "start":
                    session.turns = max(session.turns, int(d.get("turn", session.turns + 1)))
                    session.in_turn, session.doing = True, "thinking"
                elif phase == "end":
                    session.in_turn, session.doing = False, ""
                    add_usage(session.usage, d.get("usage") or {})
                else:  # between turns: waiting for an answer or for the operator's prompt
                    session.in_turn, session.doing = False, str(d.get("doing", ""))
        elif kind == "session_tool":
            session = self.by_id.get(d["id"])
            if session is not None and session.in_turn:
                ended = d.get("status") in ("completed", "failed")
                session.doing = "thinking" if ended else (d.get("title") or "a tool call")
        elif kind == "session_pid":
            session = self.by_id.get(d["id"])
            if session is not None and session.running:
                session.pid = d["pid"]
                session.pgid = d.get("pgid")
                session.psid = d.get("psid")
                session.pid_start = d.get("pid_start")
                session.boot = d.get("boot", "")
        elif kind == "session_progress":
            session = self.by_id.get(d["id"])
            if session is not None and session.running:
                if "pid" in d:
                    session.pid = d["pid"]
                if "last_line" in d:
                    session.last_line = d["last_line"]
        elif kind == "agent_schedule":
            view = self.agents.get(d["agent"]) or AgentView(d["agent"])
            for key in ("interval", "enabled", "paused", "running", "next_at", "failures",
                        "wake_pending", "queued"):
                if key in d:
                    setattr(view, key, d[key])
            self.agents[d["agent"]] = view
        elif kind == "agent_removed":
            self.agents.pop(d["agent"], None)
        elif kind == "agent_paused":
            if d["paused"]:
                self.paused[d["agent"]] = d.get("by", "")
            else:
                self.paused.pop(d["agent"], None)
        elif kind == "config_status":
            self.config = dict(d)

    def apply_review(self, event: Event) -> None:
        """A review event about an agent's worktree: its +N/-M (`review_stat`, null counts:
        it has none any more); accepts, requests and discards change nothing kept here."""
        d = event.data
        view = self.agents.get(d["agent"])
        if event.kind == "review_stat" and view is not None:
            view.diff = None if d.get("files") is None else {
                key: int(d[key]) for key in ("files", "added", "removed")}

    def _retire(self, session: Session) -> None:
        finished = self._finished.setdefault(session.agent, deque())
        finished.append(session.id)
        while len(finished) > self.history:
            self.by_id.pop(finished.popleft(), None)

    # ---- queries -------------------------------------------------------------------------

    def running(self) -> list[Session]:
        return [s for s in self.by_id.values() if s.running]

    def of_agent(self, agent: str) -> list[Session]:
        """The agent's sessions, newest first."""
        return sorted((s for s in self.by_id.values() if s.agent == agent),
                      key=lambda s: (s.started, s.id), reverse=True)

    def usage_by_agent(self) -> dict[str, dict[str, Any]]:
        """Each agent's usage over its kept sessions (an issue's runs are its agent's):
        tokens and cost add up (a session's cost is its own total); context occupancy is a
        session's moment, so it is not here."""
        totals: dict[str, dict[str, Any]] = {}
        for session in self.by_id.values():
            if not session.usage:
                continue
            total = totals.setdefault(session.agent, {})
            add_usage(total, {k: v for k, v in session.usage.items() if k in SUMMED_USAGE})
            cost = session.usage.get("cost")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                total["cost"] = round(total.get("cost", 0.0) + cost, 6)
                total["currency"] = session.usage.get("currency", total.get("currency"))
        return {agent: total for agent, total in totals.items() if total}

    def latest(self) -> list[Session]:
        """Every kept session, newest first."""
        return sorted(self.by_id.values(), key=lambda s: (s.started, s.id), reverse=True)

    def interrupt(self, now: float,
                  cleanups: Mapping[str, Cleanup] | None = None) -> list[Event]:
        """End, as interrupted, every session the last process left running.

        `cleanups` says, by session, what stopping its left-behind processes achieved (a
        session with none found is not in it); the reason repeats it, and claims no more.
        """
        cleanups = cleanups or {}
        ends = []
        for s in self.running():
            cleanup = cleanups.get(s.id)
            said = cleanup.text() if cleanup is not None else ""
            ends.append(Event("session_end", {
                "id": s.id, "agent": s.agent, "started": s.started, "ended": now,
                "state": "interrupted", "code": None,
                "reason": "marrow-tui stopped while it ran" + (f"; {said}" if said else ""),
                "last_line": s.last_line, "tasks": list(s.tasks),
            }))
        return ends

    # ---- snapshots -----------------------------------------------------------------------

    def to_snapshot(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in sorted(self.by_id.values(), key=lambda s: s.started)]

    def load_snapshot(self, rows: list[dict[str, Any]]) -> None:
        self.by_id.clear()
        self._finished.clear()
        for row in rows:
            session = Session(**row)
            self.by_id[session.id] = session
            if not session.running:
                self._retire(session)
