"""The whole coordination state, the one place events are applied, and its snapshot form.

Presence lives here too, but as transient events: who is online is rebuilt from live
connections after a restart, and every holder of a restored claim counts as offline from the
moment the hub started.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field
from typing import Any

from .board import Board
from .chat import MAX_HISTORY_BYTES, ChatLog
from .claims import ClaimBook
from .events import Event
from .kinds import ISSUE_KINDS, SERVICE_KINDS, SESSION_KINDS, STEERING_KINDS
from .orchestration import IssueBook, IssueView
from .services import ServiceBook, ServiceView
from .sessions import AgentView, SessionBook
from .steering import SteeringBook

SNAPSHOT_FORMAT = 1
#: the layout of `live_part` (the change feed's snapshot carries it beside the log's)
LIVE_FORMAT = 1
#: How long a disconnected agent keeps its leases before the hub releases them.
OFFLINE_TTL = 3600.0
MAX_IDEMPOTENCY_KEYS = 100_000


@dataclass(slots=True)
class Agent:
    name: str
    roles: tuple[str, ...] = ()
    since: float = 0.0
    last_seen: float = 0.0
    operator: bool = False


@dataclass(slots=True)
class Presence:
    online: dict[str, Agent] = field(default_factory=dict)
    #: name -> when it went offline (or when the hub started, for restored holders)
    offline_since: dict[str, float] = field(default_factory=dict)
    #: names that once proved themselves with an agent key (runs marrow-tui started): from then
    #: on only that proof or an operator binds them
    keyed: set[str] = field(default_factory=set)

    def roles_of(self, name: str) -> tuple[str, ...]:
        """`name`'s roles that are not another agent's name: a role never stands in for a
        known agent, so declaring one cannot read what is addressed to that agent."""
        agent = self.online.get(name)
        if agent is None:
            return ()
        return tuple(r for r in agent.roles
                     if not self.taken(r) or r == name or r.startswith(name + "/"))

    def taken(self, role: str) -> bool:
        """Whether `role` may not be a role: it is a known agent's name or a name under one
        (`carol/x`: a target `carol` reaches the roles under it as it reaches the names)."""
        parts = role.split("/")
        return any(self.known("/".join(parts[:n])) for n in range(len(parts), 0, -1))

    def keyed_over(self, name: str) -> bool:
        """Whether `name` is a keyed name or under one (`A-1/x` when `A-1` is keyed)."""
        if not self.keyed:
            return False
        parts = name.split("/")
        return any("/".join(parts[:n]) in self.keyed for n in range(len(parts), 0, -1))

    def known(self, name: str) -> bool:
        """Whether `name` is an agent the hub knows: online, or gone but remembered."""
        return name in self.online or name in self.offline_since or name in self.keyed


class IdempotencyCache:
    """Replies to keyed mutations, so a retry gets the same bytes and changes nothing.

    Keys are `sender NUL type NUL idem_key`. The newest `limit` keys are kept (they survive
    restarts through the log and snapshots); a retry older than that is treated as new.
    """

    def __init__(self, limit: int = MAX_IDEMPOTENCY_KEYS) -> None:
        self.limit = limit
        self.entries: dict[str, tuple[str, str]] = {}

    def get(self, key: str) -> tuple[str, str] | None:
        return self.entries.get(key)

    def apply(self, data: dict[str, Any]) -> None:
        self.entries.pop(data["key"], None)
        self.entries[data["key"]] = (data["digest"], data["response"])
        while len(self.entries) > self.limit:
            del self.entries[next(iter(self.entries))]


class State:
    def __init__(self, *, started_at: float = 0.0, offline_ttl: float = OFFLINE_TTL,
                 chat_history_bytes: int = MAX_HISTORY_BYTES) -> None:
        self.claims = ClaimBook()
        self.board = Board()
        self.chat = ChatLog(max_bytes=chat_history_bytes)
        self.idem = IdempotencyCache()
        self.presence = Presence()
        self.sessions = SessionBook()
        self.steering = SteeringBook()
        self.issues = IssueBook()
        self.services = ServiceBook()
        self.offline_ttl = offline_ttl
        self.started_at = started_at
        #: (deadline, name): when an offline holder's leases are due for release
        self._offline_heap: list[tuple[float, str]] = []

    # ---- applying ------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        data = event.data
        kind = event.kind
        if kind == "claim":
            self.claims.apply_claim(data)
        elif kind == "release":
            self.claims.apply_release(data)
        elif kind == "expire":
            self.claims.apply_expire(data)
        elif kind == "task_update":
            self.claims.apply_update(data)
        elif kind == "checkpoint":
            self.claims.apply_checkpoint(data)
        elif kind == "extend":
            self.claims.apply_extend(data)
        elif kind == "handoff":
            self.claims.apply_handoff(data)
            self._watch_holder(data["owner"])
        elif kind == "claim_grow":
            self.claims.apply_grow(data)
        elif kind == "board_task":
            self.board.apply_task(data)
        elif kind == "progress":
            self.board.apply_progress(data)
        elif kind == "chat":
            self.chat.apply(data, len(event.encoded) if event.encoded is not None else None)
        elif kind == "idem":
            self.idem.apply(data)
        elif kind == "wait":
            self.claims.apply_wait(data)
        elif kind == "presence":
            self._apply_presence(data)
        elif kind == "name_keyed":
            self.presence.keyed.add(data["name"])
        elif kind in SESSION_KINDS:
            self.sessions.apply(event)
        elif kind in STEERING_KINDS:
            self.steering.apply(event)
        elif kind in ISSUE_KINDS:
            if data.get("agent"):  # a review of an agent's worktree (workspace_git)
                self.sessions.apply_review(event)
            else:
                self.issues.apply(event)
        elif kind in SERVICE_KINDS:
            self.services.apply(event)
        else:
            raise ValueError(f"unknown event kind {kind!r}")

    def _apply_presence(self, data: dict[str, Any]) -> None:
        name = data["agent"]
        at = data["at"]
        if data["event"] == "joined":
            self.presence.offline_since.pop(name, None)
            self.presence.online[name] = Agent(
                name, tuple(data.get("roles", ())), at, at, bool(data.get("operator"))
            )
        else:
            self.presence.online.pop(name, None)
            self.claims.forget_waiter(name)
            # Remember when an agent left only while it holds leases (for the offline release
            # and the console); a hub that runs for days must not keep every name it ever saw.
            if name in self.claims.by_owner:
                self.presence.offline_since[name] = at
                heapq.heappush(self._offline_heap, (at + self.offline_ttl, name))
            else:
                self.presence.offline_since.pop(name, None)

    def _watch_holder(self, name: str) -> None:
        if name not in self.presence.online:
            since = self.presence.offline_since.setdefault(name, self.started_at)
            heapq.heappush(self._offline_heap, (since + self.offline_ttl, name))

    def touch(self, name: str, now: float) -> None:
        agent = self.presence.online.get(name)
        if agent is not None:
            agent.last_seen = now

    # ---- time ----------------------------------------------------------------------------

    def _offline_due(self) -> float | None:
        while self._offline_heap:
            deadline, name = self._offline_heap[0]
            since = self.presence.offline_since.get(name)
            if (
                name in self.presence.online
                or name not in self.claims.by_owner
                or since is None
                or since + self.offline_ttl != deadline
            ):
                heapq.heappop(self._offline_heap)
                continue
            return deadline
        return None

    def next_deadline(self) -> float | None:
        times = [t for t in (self.claims.next_deadline(), self._offline_due(),
                             self.steering.next_deadline()) if t is not None]
        return min(times) if times else None

    def sweep(self, now: float) -> list[Event]:
        """Events for leases that ran out and for holders offline for too long."""
        # Each lease ends once, by whichever came first: its expiry or its holder's offline
        # deadline (on a tie the release wins, as synapse releases offline holders before it
        # sweeps leases). A holder may be queued twice (a replayed handoff, then
        # `after_restore`), so released tasks are noted.
        released: list[Event] = []
        ended: set[str] = set()
        while (due := self._offline_due()) is not None and due <= now:
            _, name = heapq.heappop(self._offline_heap)
            gone = now - self.presence.offline_since[name]
            for claim in self.claims.owned_by(name):
                # A run's lease lives by its run's renewals (its agent is never on the wire):
                # when the run is gone, the lease expires on its own.
                if claim.task_id in ended or claim.lease_expires_at < due or claim.session:
                    continue
                ended.add(claim.task_id)
                released.append(
                    Event(
                        "release",
                        {
                            "task_id": claim.task_id,
                            "owner": name,
                            "epoch": claim.epoch,
                            "by": "hub:holder-offline",
                            "holder_offline_seconds": round(gone, 3),
                        },
                    )
                )
        events = [e for e in self.claims.sweep(now) if e.data["task_id"] not in ended]
        return events + released + self.steering.sweep(now)

    def settled_conflicts(self, now: float) -> list[Event]:
        """The open conflicts no other agent's live lease stands in the way of any more (its
        leases were released, expired or handed over): each answers itself."""
        events = []
        for request in self.steering.conflicts():
            facts = request.conflict or {}
            paths = tuple(facts.get("paths", ()))
            if not self.claims.overlaps(facts.get("owner", ""), facts.get("worktree", ""),
                                        paths, now, whole=bool(facts.get("whole"))):
                event = self.steering.decide_settle(request.id, now)
                if event is not None:
                    events.append(event)
        return events

    # ---- snapshots -----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """The state as plain data, safe to serialise in another thread while we go on.

        Every container is a copy; the dicts inside are never mutated once applied (a change
        replaces a claim's or a task's dict), so the snapshot is exactly the state at this point.
        """
        return {
            "format": SNAPSHOT_FORMAT,
            "epoch": self.claims.epoch,
            "claims": [claim.to_dict() for claim in self.claims],
            "retained_checkpoints": dict(self.claims.retained_checkpoints),
            "tasks": list(self.board.tasks.values()),
            "progress": list(self.board.progress),
            "msg_id": self.chat.msg_id,
            "chat": list(self.chat.history),
            "idem": [[key, digest, reply] for key, (digest, reply) in self.idem.entries.items()],
            "sessions": self.sessions.to_snapshot(),
            "steering": self.steering.to_snapshot(),
            "issue_parks": dict(self.issues.parked),
            "paused_agents": dict(self.sessions.paused),
            "keyed_names": sorted(self.presence.keyed),
            "kept_workspaces": dict(self.issues.kept),
            "services": self.services.to_snapshot(),
        }

    def load_snapshot(self, snap: dict[str, Any]) -> None:
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {snap.get('format')!r}")
        for claim in snap["claims"]:
            self.claims.apply_claim(claim)
        self.claims.epoch = max(self.claims.epoch, int(snap["epoch"]))
        self.claims.retained_checkpoints.update(snap["retained_checkpoints"])
        for task in snap["tasks"]:
            self.board.tasks[task["task_id"]] = task
        for note in snap["progress"]:
            self.board.progress.add(note)
        for frame in snap["chat"]:
            self.chat.apply(frame)
        self.chat.msg_id = max(self.chat.msg_id, int(snap["msg_id"]))
        for key, digest, reply in snap["idem"]:
            self.idem.entries[key] = (digest, reply)
        self.sessions.load_snapshot(snap.get("sessions", []))
        self.steering.load_snapshot(snap.get("steering", {}))
        self.issues.parked.update(snap.get("issue_parks", {}))
        self.sessions.paused.update(snap.get("paused_agents", {}))
        self.presence.keyed.update(snap.get("keyed_names", []))
        self.issues.kept.update(snap.get("kept_workspaces", {}))
        self.services.load_snapshot(snap.get("services", {}))

    def live_part(self) -> dict[str, Any]:
        """What the log's snapshot leaves out, as plain data: the books that transient events
        fill (who is online, waits, the scheduler's and the orchestrator's views, the
        services' health) and the recent issue history. A process that mirrors the state over
        the wire (an attached console) needs it; a restart rebuilds it from the producers."""
        return {
            "format": LIVE_FORMAT,
            "started_at": self.started_at,
            "offline_ttl": self.offline_ttl,
            "chat_history_bytes": self.chat.max_bytes,
            "online": [asdict(agent) for agent in self.presence.online.values()],
            "offline_since": dict(self.presence.offline_since),
            "waits": {waiter: sorted(tasks) for waiter, tasks in self.claims.waits.items()},
            "agents": [asdict(view) for view in self.sessions.agents.values()],
            "config": dict(self.sessions.config),
            "issues": [asdict(view) for view in self.issues.issues.values()],
            "workflow": dict(self.issues.workflow),
            "done": list(self.issues.done),
            "refused": list(self.issues.refused),
            "services": [asdict(view) for view in self.services.services.values()],
        }

    def load_live_part(self, live: dict[str, Any]) -> None:
        """Replace the books `live_part` describes with what it says."""
        if live.get("format") != LIVE_FORMAT:
            raise ValueError(f"unsupported live state format {live.get('format')!r}")
        self.started_at = float(live["started_at"])
        self.offline_ttl = float(live["offline_ttl"])
        self.chat.max_bytes = int(live["chat_history_bytes"])
        self.presence.online = {
            row["name"]: Agent(**{**row, "roles": tuple(row.get("roles", ()))})
            for row in live["online"]}
        self.presence.offline_since = dict(live["offline_since"])
        self.claims.waits = {waiter: set(tasks) for waiter, tasks in live["waits"].items()}
        self.sessions.agents = {row["agent"]: AgentView(**row) for row in live["agents"]}
        self.sessions.config = dict(live["config"])
        self.issues.issues = {row["identifier"]: IssueView(**row) for row in live["issues"]}
        self.issues.workflow = dict(live["workflow"])
        self.issues.done.clear()
        self.issues.done.extend(live["done"])
        self.issues.refused = list(live["refused"])
        self.services.services = {row["name"]: ServiceView(**row) for row in live["services"]}

    def reset(self) -> None:
        """Empty every book and keep the settings: a mirror loads a fresh snapshot into the
        same object its readers hold."""
        limit = self.claims.max_claims_per_agent
        self.__init__(started_at=self.started_at,  # type: ignore[misc]
                      offline_ttl=self.offline_ttl, chat_history_bytes=self.chat.max_bytes)
        self.claims.max_claims_per_agent = limit

    def after_restore(self) -> None:
        """Every holder of a restored claim is offline until it reconnects."""
        for name in list(self.claims.by_owner):
            self._watch_holder(name)
