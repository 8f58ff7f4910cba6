"""The one bridge from the runtime's change feed to the console.

The runtime calls `Bridge.feed` with each committed batch of events, on the same event loop as
the app. The bridge only notes *what* changed (task ids, agent names, activity lines, alerts)
and posts one `Changed` message per frame interval, however many events arrived: 1,000 events in
a burst cause a handful of repaints, not 1,000. Widgets then read the rows they need from the
state, by key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message

from ..core.events import Event, describe
from ..core.kinds import (
    BOARD_KINDS,
    CLAIM_KINDS,
    ISSUE_KINDS,
    SERVICE_STATE_KINDS,
    SESSION_KINDS,
    STEERING_KINDS,
)
from ..core.orchestration import refused_id
from ..core.text import one_line, plural
from .source import ConsoleRuntime

#: at most this many `Changed` messages a second
FLUSH_HZ = 15
#: an alert with the same key is not repeated within this many seconds
ALERT_QUIET = 60.0
#: "left holding work" is said only of an agent that had been online at least this long
LEFT_AFTER = 10.0
#: a connection that leaves within this many seconds of joining (a CLI command, a script's
#: one request) shows as what it did, or as one "connected briefly" line, never as a joined
#: and a left line
FOLD_WITHIN = 3.0


@dataclass(frozen=True, slots=True)
class Activity:
    """One line of the activity pane: when, what kind, the text."""

    at: float
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    text: str
    severity: str = "warning"
    #: who did what it tells of, when a person did (the console that did it has said so)
    by: str = ""


@dataclass(slots=True)
class _Pending:
    claims: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    #: scheduled agents whose sessions or schedule changed
    runs: set[str] = field(default_factory=set)
    #: steering requests that opened or ended
    asks: set[str] = field(default_factory=set)
    #: the orchestrator's issues whose status changed (identifiers)
    issues: set[str] = field(default_factory=set)
    #: helper services whose state changed (names)
    services: set[str] = field(default_factory=set)
    activity: list[Activity] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.claims or self.tasks or self.agents or self.runs or self.asks
                    or self.issues or self.services or self.activity or self.alerts)


@dataclass(slots=True)
class _Visit:
    """A connection that joined less than FOLD_WITHIN ago: its join line, and the lines of
    what it did since, held until it leaves (folded) or stays (shown as they were)."""

    joined: Activity
    lines: list[Activity] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Changed(Message):
    """What changed since the last message (ids to refresh, lines to append, alerts to show)."""

    def __init__(self, claims: frozenset[str], tasks: frozenset[str], agents: frozenset[str],
                 activity: tuple[Activity, ...], alerts: tuple[Alert, ...],
                 runs: frozenset[str] = frozenset(),
                 asks: frozenset[str] = frozenset(),
                 issues: frozenset[str] = frozenset(),
                 services: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.asks = asks
        self.issues = issues
        self.services = services
        self.claims = claims
        self.tasks = tasks
        self.agents = agents
        self.runs = runs
        self.activity = activity
        self.alerts = alerts


class Bridge:
    def __init__(self, runtime: ConsoleRuntime, post: Callable[[Message], object],
                 clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.post = post
        self.clock = clock
        self._pending = _Pending()
        self._scheduled = False
        self._ready = set(runtime.state.board.ready())
        self._alerted: dict[str, float] = {}
        #: the workflow error last alerted (None while the workflow is fine)
        self._workflow_error: str | None = None
        self.flushes = 0
        self.events_seen = 0
        #: how long the screen took to apply the last `Changed` (it tells us, see `handled`)
        self.cost = 0.0
        #: connections that joined less than FOLD_WITHIN ago, by name
        self._visits: dict[str, _Visit] = {}
        self._unsubscribe = runtime.subscribe(self.feed)

    def close(self) -> None:
        self._unsubscribe()
        for visit in self._visits.values():
            if visit.timer is not None:
                visit.timer.cancel()
        self._visits.clear()

    def feed(self, events: list[Event]) -> None:
        pending = self._pending
        now = self.clock()
        self.events_seen += len(events)
        for event in events:
            kind, data = event.kind, event.data
            if kind in CLAIM_KINDS:
                pending.claims.add(data["task_id"])
                pending.agents.update(n for n in (data.get("owner"), data.get("previous_owner"))
                                      if n)
                if kind == "expire":
                    pending.alerts.append(Alert(
                        f"expire:{data['task_id']}:{data['epoch']}",
                        f"Lease on {data['task_id']} held by {data['owner']} expired"
                        + (" (checkpoint kept)" if data.get("checkpoint_retained") else "")))
            elif kind in BOARD_KINDS:
                pending.tasks.add(data["task"]["task_id"] if kind == "board_task"
                                  else data["task_id"])
            elif kind == "presence":
                pending.agents.add(data["agent"])
                held = len(self.runtime.state.claims.by_owner.get(data["agent"], ()))
                stayed = data["at"] - data.get("since", data["at"])
                # A script that connects, claims and disconnects is normal; an agent that was
                # working and went away with work in hand is worth a look.
                if data["event"] == "left" and held and stayed >= LEFT_AFTER:
                    pending.alerts.append(Alert(
                        f"left:{data['agent']}",
                        f"{data['agent']} left holding {plural(held, 'lease')}"))
            elif kind in SESSION_KINDS and kind != "session_pid":  # nothing shown changes
                self._run_event(kind, data, pending)
            elif kind in SERVICE_STATE_KINDS:
                pending.services.add(data["name"])
                # (blocked is how every dependent starts out: not worth a bell)
                if data.get("state") in ("failed", "unhealthy"):
                    pending.alerts.append(Alert(
                        f"service:{data['name']}:{data.get('state')}",
                        f"service {data['name']} {data.get('state')}"
                        + (f": {data['reason']}" if data.get("reason") else "")))
            elif kind in STEERING_KINDS:
                pending.asks.add(data["id"])
                self._asker_run(data["id"], pending)
                if kind == "steer_ask":
                    pending.alerts.append(Alert(
                        f"ask:{data['id']}",
                        f"{data['asker']} asks: {' '.join(data['question'].split())[:120]}"
                        " (a to answer)", "warning"))
                elif kind == "steer_end":
                    self._ended_alone(data, pending)
            elif kind in ISSUE_KINDS:
                self._issue_event(kind, data, pending)
            text = describe(event)
            if text is not None:
                self._activity(Activity(now, kind, text), data, pending)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._pending.empty():
            self._scheduled = True
            # Under load, fewer and larger batches: never spend more than a third of the loop
            # applying changes, so keys are still answered at once.
            asyncio.get_running_loop().call_later(max(1 / FLUSH_HZ, 3 * self.cost), self.flush)

    # ---- brief connections ---------------------------------------------------------------

    def _activity(self, line: Activity, data: dict, pending: _Pending) -> None:
        """An activity line, unless it belongs to a connection that may yet prove brief."""
        if line.kind == "presence":
            name = data["agent"]
            if data["event"] == "joined":
                self._visit(name, line)
                return
            visit = self._visits.pop(name, None)
            if visit is not None:  # it came and went: what it did, or one line saying so
                if visit.timer is not None:
                    visit.timer.cancel()
                pending.activity.extend(visit.lines or [
                    Activity(line.at, "presence", f"{'connected':<9} {name} briefly")])
                return
        elif self._visits:
            for value in data.values():
                visit = self._visits.get(value) if isinstance(value, str) else None
                if visit is not None:
                    visit.lines.append(line)
                    return
        pending.activity.append(line)

    def _visit(self, name: str, joined: Activity) -> None:
        earlier = self._visits.get(name)
        if earlier is not None:  # joined again without a word of leaving: the first stayed
            self._stayed(name, earlier)
        visit = _Visit(joined)
        self._visits[name] = visit
        visit.timer = asyncio.get_running_loop().call_later(
            FOLD_WITHIN, self._stayed, name, visit)

    def _stayed(self, name: str, visit: _Visit) -> None:
        """Still here after FOLD_WITHIN: its join line and what it did, as they were."""
        if self._visits.get(name) is not visit:
            return
        del self._visits[name]
        if visit.timer is not None:
            visit.timer.cancel()
        self._pending.activity += [visit.joined, *visit.lines]
        self._schedule()

    def _ended_alone(self, data: dict, pending: _Pending) -> None:
        """A question that ended without an operator's answer (its deadline passed, or its
        asker took it back) leaves the status line: a toast says how it ended."""
        request = self.runtime.state.steering.get(data["id"])
        if request is None:
            return
        about = f"{data['id']} from {request.asker} ({one_line(request.question, 60)})"
        if data["state"] == "timed_out":
            pending.alerts.append(Alert(
                f"ended:{data['id']}",
                f"{about} timed out; the default was used: {one_line(str(data['answer']), 80)}"
                if data.get("default_used") else f"{about} timed out with no answer"))
        elif data["state"] == "cancelled" and data.get("by") == request.asker:
            pending.alerts.append(Alert(f"ended:{data['id']}",
                                        f"{about} was cancelled by the asker", "information"))

    def _asker_run(self, request_id: str, pending: _Pending) -> None:
        """A run that asks or is answered shows "waiting for you" or stops saying it."""
        state = self.runtime.state
        request = state.steering.get(request_id)
        run = state.sessions.by_id.get(request.session) if request and request.session else None
        if run is not None:
            pending.runs.add(run.agent)

    def _run_event(self, kind: str, data: dict, pending: _Pending) -> None:
        if kind == "config_status":
            pending.runs.update(data.get("agents", ()))
            if not data.get("ok"):
                first = (data.get("errors") or ["invalid"])[0]
                pending.alerts.append(Alert(
                    f"config:{data.get('at')}",
                    f"Config not applied, the last good one is kept: {first}", "error"))
            return
        agent = data.get("agent")
        if agent is None:  # a run's tool calls and plans name only the run
            run = self.runtime.state.sessions.by_id.get(data.get("id", ""))
            agent = run.agent if run is not None else None
        if agent is not None:
            pending.runs.add(agent)
        if kind == "session_end" and data["state"] in ("failed", "timeout", "error"):
            pending.alerts.append(Alert(
                f"run:{data['agent']}",
                f"{data['agent']}: run {data['state']} ({data.get('reason', '')})"))

    def _issue_event(self, kind: str, data: dict, pending: _Pending) -> None:
        if kind == "tracker_refused":  # rows for the refused files, and for the gone ones
            pending.issues.update(refused_id(f["path"]) for f in data.get("files", ()))
            pending.issues.update(refused_id(path) for path in data.get("gone", ()))
            return
        if kind == "review_stat":  # its runs' rows show it too (named after the issue)
            pending.runs.add(data["identifier"])
        if kind != "workflow_status":
            pending.issues.add(data["identifier"])
            if kind == "issue_done":
                pending.alerts.append(Alert(
                    f"done:{data['identifier']}",
                    f"{data['identifier']} done (moved to {data.get('to_state', '?')})",
                    "information", by=str(data.get("by") or "")))
            return
        # The workflow's status colours every row (and the Issues pane's border).
        pending.issues.update(self.runtime.state.issues.issues)
        # Said once per new error: the orchestrator may repeat its status on every poll.
        first = None if data.get("ok", True) else workflow_error(data)
        if first is not None and first != self._workflow_error:
            pending.alerts.append(Alert(
                f"workflow:{first}", f"Workflow has errors, no new dispatches: {first}",
                "error"))
        self._workflow_error = first

    def handled(self, seconds: float) -> None:
        """The screen applied a `Changed` in `seconds`; the next flush waits accordingly."""
        self.cost = seconds

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, _Pending()
        if pending.tasks:
            ready = set(self.runtime.state.board.ready())
            for task_id in sorted(ready - self._ready):
                pending.alerts.append(Alert(f"ready:{task_id}", f"Task {task_id} is ready",
                                            "information"))
            self._ready = ready
        now = self.clock()
        alerts = []
        for alert in pending.alerts:
            if now - self._alerted.get(alert.key, -ALERT_QUIET) >= ALERT_QUIET:
                self._alerted[alert.key] = now
                alerts.append(alert)
        if len(self._alerted) > 10_000:
            self._alerted = {k: t for k, t in self._alerted.items() if now - t < ALERT_QUIET}
        if pending.empty() and not alerts:
            return
        self.flushes += 1
        self.post(Changed(frozenset(pending.claims), frozenset(pending.tasks),
                          frozenset(pending.agents), tuple(pending.activity), tuple(alerts),
                          frozenset(pending.runs), frozenset(pending.asks),
                          frozenset(pending.issues), frozenset(pending.services)))


def workflow_error(status: dict) -> str:
    """The first error of a `workflow_status`, as one line (errors are strings or dicts)."""
    errors = status.get("errors") or ["invalid"]
    first = errors[0]
    if isinstance(first, dict):
        first = first.get("message") or first.get("text") or str(first)
    return " ".join(str(first).split())
