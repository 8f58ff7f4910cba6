"""Claims: scoped, expiring leases on work, with epochs for fencing.

The rules are synapse-channel's (see docs/protocol.md): one hub-global epoch counter, a TTL that
defaults to an hour and is clamped to [30 s, 30 d], renewal that rebuilds the claim, a checkpoint
that outlives an expired lease and passes to the next claimant, handoff only to an online agent,
the status lifecycle, and wait-for deadlock refusal. Two things differ on purpose: expiry also
happens on a timer and is announced (the runtime asks `next_deadline()`), and the scope check
uses an index instead of scanning every claim.

Decisions (`decide_*`) read the book and return events or a `Refusal`; they never change it.
`apply_*` change it, and are the only code that does.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Container, Iterator
from dataclasses import dataclass, replace
from typing import Any

from .events import Event, Refusal
from .scope import MAX_PATHS_PER_CLAIM, ScopeIndex, normalise_paths, paths_overlap

DEFAULT_TTL = 3600.0
MIN_TTL = 30.0
MAX_TTL = 30 * 86400.0
MAX_CLAIMS_PER_AGENT = 128
#: expired leases whose checkpoint we keep for the next claimant (oldest dropped beyond this)
MAX_RETAINED_CHECKPOINTS = 10_000

STATUSES = ("claimed", "working", "input_required", "done", "failed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "claimed": frozenset({"working", "done", "failed"}),
    "working": frozenset({"input_required", "done", "failed"}),
    "input_required": frozenset({"working", "done", "failed"}),
    "done": frozenset(),
    "failed": frozenset(),
}


@dataclass(slots=True, frozen=True)
class Claim:
    task_id: str
    owner: str
    worktree: str
    paths: tuple[str, ...]
    epoch: int
    version: int
    status: str
    note: str
    data_ref: str
    checkpoint: str
    git: Any
    claimed_at: float
    lease_expires_at: float
    #: the ACP run that holds it ("" for an agent's own claim): a run's lease with no paths
    #: holds nothing yet (not the whole worktree), and grows as the run's edits are allowed
    session: str = ""
    #: what the lease grew by, in order: {path, tool_call_id, title, at} per path added
    grown: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.session:
            extra["session"] = self.session
        if self.grown:
            extra["grown"] = [dict(g) for g in self.grown]
        return {**extra,
            "task_id": self.task_id,
            "owner": self.owner,
            "worktree": self.worktree,
            "paths": list(self.paths),
            "epoch": self.epoch,
            "version": self.version,
            "status": self.status,
            "note": self.note,
            "data_ref": self.data_ref,
            "checkpoint": self.checkpoint,
            "git": self.git,
            "claimed_at": self.claimed_at,
            "lease_expires_at": self.lease_expires_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        return cls(
            task_id=data["task_id"],
            owner=data["owner"],
            worktree=data.get("worktree", ""),
            paths=tuple(data.get("paths", ())),
            epoch=int(data["epoch"]),
            version=int(data.get("version", 0)),
            status=data.get("status", "claimed"),
            note=data.get("note", ""),
            data_ref=data.get("data_ref", ""),
            checkpoint=data.get("checkpoint", ""),
            git=data.get("git"),
            claimed_at=float(data.get("claimed_at", 0.0)),
            lease_expires_at=float(data["lease_expires_at"]),
            session=data.get("session", ""),
            grown=tuple(dict(g) for g in data.get("grown", ())),
        )

    @property
    def indexed_paths(self) -> tuple[str, ...] | None:
        """The paths the scope index holds it by: None when it holds nothing (a run's lease
        that has not grown yet), () for the whole worktree."""
        if self.session and not self.paths:
            return None
        return self.paths


@dataclass(frozen=True, slots=True)
class Overlap:
    """Another agent's live lease that covers some of the paths asked about."""

    task_id: str
    owner: str
    #: the lease's own paths that overlap (all of its paths when it holds the whole worktree)
    paths: tuple[str, ...]
    #: everything the lease holds (() for the whole worktree)
    holds: tuple[str, ...]
    since: float
    session: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "owner": self.owner, "paths": list(self.paths),
                "holds": list(self.holds), "since": self.since, "session": self.session}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Overlap:
        """As `to_dict` wrote it (a conflict request keeps its leases so); what is missing
        reads as unknown, never an error."""
        return cls(str(data.get("task_id", "?")), str(data.get("owner", "?")),
                   tuple(data.get("paths", ())), tuple(data.get("holds", ())),
                   float(data.get("since", 0.0)), str(data.get("session", "")))


def clamp_ttl(raw: object) -> float:
    """The lease length for a requested TTL: default when missing or unusable, else clamped."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        if isinstance(raw, str):
            try:
                raw = float(raw)
            except ValueError:
                return DEFAULT_TTL
        else:
            return DEFAULT_TTL
    try:
        value = float(raw)
    except OverflowError:  # an int too large for a float is finite: clamp it, do not crash
        return MAX_TTL if raw > 0 else MIN_TTL  # type: ignore[operator]
    if not math.isfinite(value):
        return DEFAULT_TTL
    return min(max(value, MIN_TTL), MAX_TTL)


def _stale(claim: Claim, epoch: object) -> Refusal | None:
    if epoch is None:
        return None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch != claim.epoch:
        return Refusal(
            "STALE_EPOCH", f"Task '{claim.task_id}' epoch is stale (current {claim.epoch})."
        )
    return None


def _not_claimed(task_id: str) -> Refusal:
    return Refusal("NOT_CLAIMED", f"Task '{task_id}' is not currently claimed.")


def _not_owner(claim: Claim, who: str) -> Refusal:
    return Refusal("NOT_OWNER", f"Task '{claim.task_id}' is owned by {claim.owner}, not {who}.")


class ClaimBook:
    """Every live claim, the index over their scopes, and the timers that end them."""

    def __init__(self, max_claims_per_agent: int = MAX_CLAIMS_PER_AGENT) -> None:
        self.claims: dict[str, Claim] = {}
        self.by_owner: dict[str, set[str]] = {}
        self.index = ScopeIndex()
        self.retained_checkpoints: dict[str, str] = {}
        self.epoch = 0
        self.max_claims_per_agent = max_claims_per_agent
        #: waiter -> task ids it waits for (advisory; not persisted)
        self.waits: dict[str, set[str]] = {}
        self._heap: list[tuple[float, int, str]] = []

    # ---- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.claims)

    def __iter__(self) -> Iterator[Claim]:
        return iter(self.claims.values())

    def get(self, task_id: str) -> Claim | None:
        return self.claims.get(task_id)

    def owned_by(self, owner: str) -> list[Claim]:
        return [self.claims[t] for t in sorted(self.by_owner.get(owner, ()))]

    def next_deadline(self) -> float | None:
        """When the earliest live lease ends (stale heap entries are dropped on the way)."""
        while self._heap:
            expires, epoch, task_id = self._heap[0]
            claim = self.claims.get(task_id)
            if claim is not None and claim.epoch == epoch and claim.lease_expires_at == expires:
                return expires
            heapq.heappop(self._heap)
        return None

    # ---- decisions -----------------------------------------------------------------------

    def decide_claim(
        self,
        owner: str,
        task_id: str,
        *,
        worktree: str = "",
        paths: tuple[str, ...] | list[str] = (),
        ttl: object = None,
        note: str = "",
        git: Any = None,
        session: str = "",
        now: float,
    ) -> Event | Refusal:
        task_id = task_id.strip()
        if not task_id:
            return Refusal("TASK_ID_REQUIRED", "A claim needs a task_id.")
        scope = normalise_paths(paths)
        current = self.claims.get(task_id)
        if current is not None and current.owner != owner and current.lease_expires_at > now:
            return Refusal("LEASE_LIVE", f"Task '{task_id}' is already claimed by {current.owner}.")
        holds_nothing = bool(session) and not scope
        conflict = None if holds_nothing else self.index.conflict(owner, worktree, scope,
                                                                  ignore=task_id)
        if conflict is not None:
            other_task, other_owner = conflict
            return Refusal(
                "SCOPE_CONFLICT",
                f"Task '{task_id}' file scope conflicts with '{other_task}' held by {other_owner}.",
            )
        renewing = current is not None and current.owner == owner
        held = self.by_owner.get(owner, ())
        if not renewing and self.max_claims_per_agent and len(held) >= self.max_claims_per_agent:
            return Refusal(
                "QUOTA_EXCEEDED",
                f"{owner} already holds {len(held)} live claims "
                f"(the limit is {self.max_claims_per_agent}).",
            )
        if current is not None:
            # renewal, or takeover of a lease that ended but has not been swept yet: the
            # checkpoint passes on exactly as it would through the retained map after expiry
            checkpoint = current.checkpoint
        else:
            checkpoint = self.retained_checkpoints.get(task_id, "")
        claim = Claim(
            task_id=task_id,
            owner=owner,
            worktree=worktree,
            paths=scope,
            epoch=self.epoch + 1,
            version=0,
            status="claimed",
            note=note,
            data_ref="",
            checkpoint=checkpoint,
            git=git,
            claimed_at=now,
            lease_expires_at=now + clamp_ttl(ttl),
            session=session,
        )
        return Event("claim", claim.to_dict())

    def overlaps(self, owner: str, worktree: str, paths: tuple[str, ...], now: float,
                 whole: bool = False) -> list[Overlap]:
        """Every other owner's live lease in `worktree` that overlaps `paths` (the whole
        worktree when `whole`). The index answers "none" without looking at any lease; only
        a conflict is looked at lease by lease."""
        scope = () if whole else paths
        if not whole and not paths:
            return []
        if self.index.conflict(owner, worktree, scope) is None:
            return []
        found = []
        for task_id in sorted(self.index.conflicts(owner, worktree, scope)):
            claim = self.claims.get(task_id)
            if claim is None or claim.owner == owner or claim.lease_expires_at <= now:
                continue
            held = claim.indexed_paths
            if held is None:
                continue
            if not held or whole:
                hit = held
            else:
                hit = tuple(h for h in held if any(paths_overlap(h, p) for p in paths))
            if hit or not held:
                found.append(Overlap(task_id, claim.owner, hit, held, claim.claimed_at,
                                     claim.session))
        return found

    def decide_grow(self, task_id: str, paths: tuple[str, ...], *, tool_call_id: str = "",
                    title: str = "", now: float) -> Event | Refusal | None:
        """Add `paths` to a run's lease (None when it holds them all already). The caller has
        checked them against the other leases."""
        claim = self.claims.get(task_id)
        if claim is None:
            return _not_claimed(task_id)
        held = set(claim.paths)
        new = [p for p in paths if p not in held]
        if not new:
            return None
        if len(held) + len(new) > MAX_PATHS_PER_CLAIM:
            return Refusal("TOO_MANY_PATHS", f"Task '{task_id}' would hold more than "
                                             f"{MAX_PATHS_PER_CLAIM} paths.")
        return Event("claim_grow", {"task_id": task_id, "owner": claim.owner,
                                    "epoch": claim.epoch, "paths": sorted(new),
                                    "tool_call_id": tool_call_id, "title": title, "at": now})

    def _owned(
        self, who: str, task_id: str, epoch: object, operator: bool = False
    ) -> Claim | Refusal:
        """The claim `who` may act on: its own, or any claim for the operator."""
        claim = self.claims.get(task_id)
        if claim is None:
            return _not_claimed(task_id)
        if claim.owner != who and not operator:
            return _not_owner(claim, who)
        return _stale(claim, epoch) or claim

    def decide_release(
        self,
        who: str,
        task_id: str,
        *,
        epoch: object = None,
        operator: bool = False,
        keep_checkpoint: bool = False,
    ) -> Event | Refusal:
        """End a lease. The operator may end anyone's, keeping its checkpoint for the next
        claimant (as expiry does) or dropping it (a force-release)."""
        claim = self._owned(who, task_id, epoch, operator)
        if isinstance(claim, Refusal):
            return claim
        data: dict[str, Any] = {
            "task_id": task_id, "owner": claim.owner, "epoch": claim.epoch, "by": who,
        }
        if keep_checkpoint and claim.checkpoint:
            data["keep_checkpoint"] = True
        return Event("release", data)

    def decide_extend(
        self, who: str, task_id: str, *, ttl: object, now: float, operator: bool = False
    ) -> Event | Refusal:
        """Move a lease's expiry out without a new epoch, so the holder's fence stays valid."""
        claim = self._owned(who, task_id, None, operator)
        if isinstance(claim, Refusal):
            return claim
        return Event(
            "extend",
            {"task_id": task_id, "owner": claim.owner, "epoch": claim.epoch, "by": who,
             "lease_expires_at": max(claim.lease_expires_at, now + clamp_ttl(ttl))},
        )

    def decide_update(
        self,
        who: str,
        task_id: str,
        *,
        status: str | None = None,
        note: str | None = None,
        data_ref: str | None = None,
        epoch: object = None,
        expected_version: object = None,
    ) -> Event | Refusal:
        claim = self._owned(who, task_id, epoch)
        if isinstance(claim, Refusal):
            return claim
        if expected_version is not None and expected_version != claim.version:
            return Refusal(
                "VERSION_CONFLICT",
                f"Task '{task_id}' version conflict (current {claim.version}).",
            )
        new_status = claim.status if status is None else status
        if new_status not in TRANSITIONS:
            return Refusal("BAD_STATUS", f"Unknown task status '{new_status}'.")
        if new_status != claim.status and new_status not in TRANSITIONS[claim.status]:
            return Refusal(
                "BAD_TRANSITION",
                f"Task '{task_id}' cannot transition {claim.status} -> {new_status}.",
            )
        return Event(
            "task_update",
            {
                "task_id": task_id,
                "status": new_status,
                "note": claim.note if note is None else note,
                "data_ref": claim.data_ref if data_ref is None else data_ref,
                "version": claim.version + 1,
            },
        )

    def decide_checkpoint(
        self, who: str, task_id: str, checkpoint: str, *, epoch: object = None
    ) -> Event | Refusal:
        claim = self._owned(who, task_id, epoch)
        if isinstance(claim, Refusal):
            return claim
        return Event(
            "checkpoint",
            {"task_id": task_id, "checkpoint": checkpoint, "version": claim.version + 1},
        )

    def decide_handoff(
        self,
        who: str,
        task_id: str,
        to_agent: str,
        *,
        online: Container[str],
        note: str = "",
        epoch: object = None,
        now: float,
        operator: bool = False,
    ) -> Event | Refusal:
        claim = self._owned(who, task_id, epoch, operator)
        if isinstance(claim, Refusal):
            return claim
        if not to_agent:
            return Refusal("TARGET_REQUIRED", "A handoff needs to_agent.")
        if to_agent == claim.owner:
            return Refusal(
                "SELF_HANDOFF", f"Task '{task_id}' is already held by {claim.owner}.")
        if to_agent not in online:
            return Refusal("TARGET_OFFLINE", f"Handoff target '{to_agent}' is not online.")
        held = self.by_owner.get(to_agent, ())
        if self.max_claims_per_agent and len(held) >= self.max_claims_per_agent:
            return Refusal(
                "QUOTA_EXCEEDED", f"{to_agent} already holds {len(held)} live claims."
            )
        conflict = self.index.conflict(to_agent, claim.worktree, claim.paths, ignore=task_id)
        if conflict is not None:
            other_task, other_owner = conflict
            return Refusal(
                "SCOPE_CONFLICT",
                f"Task '{task_id}' file scope conflicts with '{other_task}' held by "
                f"{other_owner}, so {to_agent} cannot take it.",
            )
        return Event(
            "handoff",
            {
                "task_id": task_id,
                "owner": to_agent,
                "previous_owner": claim.owner,
                "note": note,
                "epoch": self.epoch + 1,
                "version": 0,
                "lease_expires_at": now + DEFAULT_TTL,
            },
        )

    def decide_wait(self, waiter: str, task_id: str) -> tuple[Event | Refusal, str]:
        """Record that `waiter` waits for `task_id`, unless that would close a wait-for cycle.

        Returns the outcome and the current holder ("" when unclaimed).
        """
        claim = self.claims.get(task_id)
        if claim is None:
            return _not_claimed(task_id), ""
        holder = claim.owner
        if holder == waiter:
            return Refusal("SELF_WAIT", f"Task '{task_id}' is held by {waiter} itself."), holder
        seen = {holder}
        stack = [holder]
        while stack:
            agent = stack.pop()
            for waited in self.waits.get(agent, ()):
                other = self.claims.get(waited)
                if other is None:
                    continue
                if other.owner == waiter:
                    return (
                        Refusal(
                            "DEADLOCK",
                            f"Waiting for '{task_id}' held by {holder} would deadlock.",
                        ),
                        holder,
                    )
                if other.owner not in seen:
                    seen.add(other.owner)
                    stack.append(other.owner)
        return Event("wait", {"waiter": waiter, "task_id": task_id, "holder": holder}), holder

    def sweep(self, now: float) -> list[Event]:
        """Events for every lease that has ended by `now`."""
        ended: list[Event] = []
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return ended
            _, epoch, task_id = heapq.heappop(self._heap)
            claim = self.claims[task_id]
            ended.append(
                Event(
                    "expire",
                    {
                        "task_id": task_id,
                        "owner": claim.owner,
                        "epoch": epoch,
                        "checkpoint_retained": bool(claim.checkpoint),
                    },
                )
            )

    # ---- applying events -----------------------------------------------------------------

    def apply_claim(self, data: dict[str, Any]) -> Claim:
        claim = Claim.from_dict(data)
        self._drop(claim.task_id)
        self.retained_checkpoints.pop(claim.task_id, None)
        self._put(claim)
        waiting = self.waits.get(claim.owner)
        if waiting:
            waiting.discard(claim.task_id)
        return claim

    def apply_release(self, data: dict[str, Any]) -> Claim | None:
        self.retained_checkpoints.pop(data["task_id"], None)
        claim = self._end(data["task_id"])
        if claim is not None and data.get("keep_checkpoint") and claim.checkpoint:
            self._retain(claim)
        return claim

    def apply_extend(self, data: dict[str, Any]) -> Claim:
        claim = replace(self.claims[data["task_id"]], lease_expires_at=data["lease_expires_at"])
        self.claims[claim.task_id] = claim
        heapq.heappush(self._heap, (claim.lease_expires_at, claim.epoch, claim.task_id))
        return claim

    def apply_expire(self, data: dict[str, Any]) -> Claim | None:
        claim = self._end(data["task_id"])
        if claim is not None and claim.checkpoint:
            self._retain(claim)
        return claim

    def _retain(self, claim: Claim) -> None:
        self.retained_checkpoints[claim.task_id] = claim.checkpoint
        while len(self.retained_checkpoints) > MAX_RETAINED_CHECKPOINTS:
            del self.retained_checkpoints[next(iter(self.retained_checkpoints))]

    def apply_update(self, data: dict[str, Any]) -> Claim:
        claim = replace(
            self.claims[data["task_id"]],
            status=data["status"],
            note=data["note"],
            data_ref=data["data_ref"],
            version=data["version"],
        )
        self.claims[claim.task_id] = claim
        return claim

    def apply_checkpoint(self, data: dict[str, Any]) -> Claim:
        claim = replace(
            self.claims[data["task_id"]], checkpoint=data["checkpoint"], version=data["version"]
        )
        self.claims[claim.task_id] = claim
        return claim

    def apply_handoff(self, data: dict[str, Any]) -> Claim:
        old = self._drop(data["task_id"])
        assert old is not None, f"handoff of unclaimed task {data['task_id']!r}"
        claim = replace(
            old,
            owner=data["owner"],
            epoch=data["epoch"],
            version=data["version"],
            lease_expires_at=data["lease_expires_at"],
        )
        self._put(claim)
        waiting = self.waits.get(claim.owner)
        if waiting:
            waiting.discard(claim.task_id)
        return claim

    def apply_grow(self, data: dict[str, Any]) -> Claim | None:
        old = self.claims.get(data["task_id"])
        if old is None or old.epoch != data["epoch"]:
            return None
        added = [p for p in data["paths"] if p not in old.paths]
        claim = replace(old, paths=tuple(sorted((*old.paths, *added))), grown=(*old.grown, *(
            {"path": p, "tool_call_id": data.get("tool_call_id", ""),
             "title": data.get("title", ""), "at": data.get("at", 0.0)} for p in added)))
        if old.indexed_paths is not None:
            self.index.remove(old.task_id, old.owner, old.worktree, old.paths)
        self.index.add(claim.task_id, claim.owner, claim.worktree, claim.paths)
        self.claims[claim.task_id] = claim
        return claim

    def apply_wait(self, data: dict[str, Any]) -> None:
        self.waits.setdefault(data["waiter"], set()).add(data["task_id"])

    def forget_waiter(self, waiter: str) -> None:
        self.waits.pop(waiter, None)

    # ---- internals -----------------------------------------------------------------------

    def _put(self, claim: Claim) -> None:
        self.claims[claim.task_id] = claim
        self.by_owner.setdefault(claim.owner, set()).add(claim.task_id)
        if claim.indexed_paths is not None:
            self.index.add(claim.task_id, claim.owner, claim.worktree, claim.paths)
        self.epoch = max(self.epoch, claim.epoch)
        heapq.heappush(self._heap, (claim.lease_expires_at, claim.epoch, claim.task_id))

    def _drop(self, task_id: str) -> Claim | None:
        claim = self.claims.pop(task_id, None)
        if claim is None:
            return None
        owned = self.by_owner.get(claim.owner)
        if owned is not None:
            owned.discard(task_id)
            if not owned:
                del self.by_owner[claim.owner]
        if claim.indexed_paths is not None:
            self.index.remove(task_id, claim.owner, claim.worktree, claim.paths)
        return claim

    def _end(self, task_id: str) -> Claim | None:
        claim = self._drop(task_id)
        for waited in self.waits.values():
            waited.discard(task_id)
        return claim
