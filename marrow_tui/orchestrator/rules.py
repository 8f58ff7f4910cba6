"""The orchestrator's numbers and decisions, as pure functions (Symphony spec §7-§8, smol §4.5).

Keeping them free of I/O and clocks makes the state machine testable line by line and lets the
async dispatcher stay a thin loop: it holds `running` (issue id -> tracked state), `claimed`
and the retry timers, and asks this module what to do.

* Retries: a normal worker exit schedules a continuation after CONTINUATION_DELAY_MS with
  attempt 1; an abnormal one attempt n = previous + 1 after `failure_backoff_ms(n, cap)` =
  min(10000 * 2^(n-1), cap), the exponent capped at 10 (Elixir), so huge attempt numbers are
  cheap. `requeue` is the "retry refresh failed" / "no available orchestrator slots" path.
* Eligibility (`eligibility`): the first failing rule, as a code and a sentence, in this order:
  fields, terminal, not active, required labels, running, claimed, parked, blocked (smol's Todo
  rule), global slot, per-state slot. Slots come last, so only an otherwise dispatchable issue
  is "waiting for a slot" (SLOT_CODES: the retry path requeues those and releases the rest).
* Ordering (`sort_candidates`): priority 1..4 first (ascending), every other value and None
  after them as equals; then created_at oldest first (None last); then identifier.
* Concurrency: a global cap and per-state caps (normalised state -> cap, else the global cap),
  running issues counted by their tracked state; `plan_dispatch` does the accounting for a tick.
* Continuation circuit breaker (ours; smol loops forever): `ContinuationBreaker` counts
  continuation cycles (normal exits with the issue still active) that made no progress.
  Progress = the issue's state or file mtime changed, or the workspace's git HEAD moved
  (`Fingerprint`). After `agent.max_idle_continuations` (default 5; 0 = off) idle cycles in a
  row, the issue is *parked*: not dispatched again until its fingerprint changes (someone
  edits or moves the file, or commits in the workspace) or the operator resumes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .tracker import Issue, is_blocked, norm_state, open_blockers

CONTINUATION_DELAY_MS = 1000
FAILURE_BASE_MS = 10_000
MAX_BACKOFF_EXPONENT = 10
DEFAULT_MAX_RETRY_BACKOFF_MS = 300_000
DEFAULT_MAX_IDLE_CONTINUATIONS = 5

#: retry error texts (spec §8.4 / §16.6)
NO_SLOTS_ERROR = "no available orchestrator slots"
RETRY_REFRESH_FAILED = "retry refresh failed"


# --------------------------------------------------------------------------------------------
# Retries


def failure_backoff_ms(attempt: int, cap: int = DEFAULT_MAX_RETRY_BACKOFF_MS) -> int:
    """min(10000 * 2^(attempt-1), cap); attempt < 1 counts as 1; the exponent stops at 10."""
    exponent = min(max(int(attempt), 1) - 1, MAX_BACKOFF_EXPONENT)
    return max(0, min(FAILURE_BASE_MS << exponent, cap))


@dataclass(slots=True, frozen=True)
class Retry:
    attempt: int
    delay_ms: int
    #: "continuation" or "failure"
    kind: str
    error: str | None = None


def next_retry(
    previous_attempt: int | None,
    *,
    normal_exit: bool,
    cap: int = DEFAULT_MAX_RETRY_BACKOFF_MS,
    error: str | None = None,
) -> Retry:
    """The retry after a worker exit. `previous_attempt` is the attempt the run was
    dispatched with (None for a first run)."""
    if normal_exit:
        return Retry(1, CONTINUATION_DELAY_MS, "continuation", None)
    attempt = (previous_attempt or 0) + 1
    return Retry(attempt, failure_backoff_ms(attempt, cap), "failure", error)


def requeue(attempt: int, *, cap: int = DEFAULT_MAX_RETRY_BACKOFF_MS, error: str) -> Retry:
    """A retry entry that could not run (refresh failed, no slot): attempt + 1, backed off."""
    return Retry(attempt + 1, failure_backoff_ms(attempt + 1, cap), "failure", error)


def is_stalled(now_ms: float, started_ms: float, last_event_ms: float | None,
               stall_timeout_ms: int) -> bool:
    """Spec §8.5 A: no event (or start) for longer than the timeout; <= 0 disables."""
    if stall_timeout_ms <= 0:
        return False
    since = last_event_ms if last_event_ms is not None else started_ms
    return now_ms - since > stall_timeout_ms


# --------------------------------------------------------------------------------------------
# Ordering


def priority_rank(priority: Any) -> int:
    """1..4 as themselves; everything else (0, 7, -1, None) ranks 5, after them."""
    if isinstance(priority, int) and not isinstance(priority, bool) and 1 <= priority <= 4:
        return priority
    return 5


def sort_key(issue: Issue) -> tuple[Any, ...]:
    created = issue.created_at.timestamp() if issue.created_at else 0.0
    return (priority_rank(issue.priority), issue.created_at is None, created, issue.identifier)


def sort_candidates(issues: Iterable[Issue]) -> list[Issue]:
    return sorted(issues, key=sort_key)


# --------------------------------------------------------------------------------------------
# Policy and eligibility


@dataclass(slots=True, frozen=True)
class Policy:
    """What eligibility needs from the workflow (so tests and callers need no file)."""

    active_states: tuple[str, ...] = ("Todo", "In Progress")
    terminal_states: tuple[str, ...] = ("Closed", "Cancelled", "Canceled", "Duplicate", "Done")
    required_labels: tuple[str, ...] = ()
    max_concurrent_agents: int = 10
    #: normalised state -> cap
    max_by_state: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_workflow(cls, workflow: Any) -> Policy:
        return cls(
            active_states=tuple(workflow.tracker.active_states),
            terminal_states=tuple(workflow.tracker.terminal_states),
            required_labels=tuple(workflow.tracker.required_labels),
            max_concurrent_agents=workflow.agent.max_concurrent_agents,
            max_by_state=dict(workflow.agent.max_concurrent_agents_by_state),
        )

    def is_terminal(self, state: str | None) -> bool:
        key = norm_state(state)
        return bool(key) and key in {norm_state(s) for s in self.terminal_states}

    def is_active(self, state: str | None) -> bool:
        key = norm_state(state)
        return bool(key) and key in {norm_state(s) for s in self.active_states} and (
            not self.is_terminal(state)
        )

    def state_limit(self, state: str | None) -> int:
        return self.max_by_state.get(norm_state(state), self.max_concurrent_agents)


def missing_labels(issue: Issue, required: Iterable[str]) -> list[str]:
    """Required labels the issue lacks (case and blanks ignored; a blank one never matches)."""
    have = {label.strip().lower() for label in issue.labels}
    return [label for label in required
            if not label.strip() or label.strip().lower() not in have]


def routable(issue: Issue, policy: Policy) -> bool:
    """Spec `issue_routable`: carries every required label (our issues are all dispatchable
    apart from the Todo blocker rule, which only gates starting work)."""
    return not missing_labels(issue, policy.required_labels)


MISSING_FIELDS = "missing_fields"
TERMINAL = "terminal"
NOT_ACTIVE = "not_active"
MISSING_LABELS = "missing_required_labels"
RUNNING = "already_running"
CLAIMED = "already_claimed"
PARKED = "parked"
BLOCKED = "blocked"
NO_GLOBAL_SLOT = "no_global_slot"
NO_STATE_SLOT = "no_state_slot"
SLOT_CODES = frozenset({NO_GLOBAL_SLOT, NO_STATE_SLOT})


@dataclass(slots=True, frozen=True)
class Ineligible:
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


def available_slots(max_concurrent_agents: int, running_count: int) -> int:
    """Spec §8.3: max(max_concurrent_agents - running_count, 0)."""
    return max(max_concurrent_agents - running_count, 0)


def running_in_state(running: Mapping[str, str], state: str | None) -> int:
    key = norm_state(state)
    return sum(1 for tracked in running.values() if norm_state(tracked) == key)


def state_slots(policy: Policy, running: Mapping[str, str], state: str | None) -> int:
    return max(policy.state_limit(state) - running_in_state(running, state), 0)


def eligibility(
    issue: Issue,
    policy: Policy,
    *,
    running: Mapping[str, str],
    claimed: Collection[str] = (),
    issues_by_id: Mapping[str, Issue] | None = None,
    parked: Collection[str] = (),
    ignore_claim: bool = False,
) -> Ineligible | None:
    """None when `issue` may be dispatched now, else the first rule it fails.

    `running` maps running issue ids to their tracked state; `claimed` holds running and
    retry-queued ids (`ignore_claim` for the retry path, where the issue's own claim is held);
    `issues_by_id` (ScanResult.by_id()) resolves blockers; without it they are not checked.
    """
    if not (issue.id and issue.identifier and issue.title and issue.state):
        return Ineligible(MISSING_FIELDS, "missing id, identifier, title or state")
    if policy.is_terminal(issue.state):
        return Ineligible(TERMINAL, f"state {issue.state!r} is terminal")
    if not policy.is_active(issue.state):
        return Ineligible(NOT_ACTIVE, f"state {issue.state!r} is not active")
    lacking = missing_labels(issue, policy.required_labels)
    if lacking:
        return Ineligible(MISSING_LABELS, f"missing required labels: {', '.join(lacking)}")
    if issue.id in running:
        return Ineligible(RUNNING, "already running")
    if not ignore_claim and issue.id in claimed:
        return Ineligible(CLAIMED, "already claimed (running or waiting to retry)")
    if issue.id in parked:
        return Ineligible(PARKED, "parked by the continuation circuit breaker")
    if issues_by_id is not None and is_blocked(issue, issues_by_id, policy.terminal_states):
        waiting = open_blockers(issue, issues_by_id, policy.terminal_states)
        names = ", ".join(
            f"{b.ref} ({b.state})" if b.state else f"{b.ref} (not found)" for b in waiting
        )
        return Ineligible(BLOCKED, f"blocked by {names}")
    if available_slots(policy.max_concurrent_agents, len(running)) <= 0:
        return Ineligible(NO_GLOBAL_SLOT, f"all {policy.max_concurrent_agents} agent slots busy")
    if state_slots(policy, running, issue.state) <= 0:
        return Ineligible(NO_STATE_SLOT, f"all {policy.state_limit(issue.state)} slots for "
                                         f"{issue.state!r} busy")
    return None


def eligible(issue: Issue, policy: Policy, **kwargs: Any) -> bool:
    return eligibility(issue, policy, **kwargs) is None


@dataclass(slots=True)
class DispatchPlan:
    dispatch: list[Issue] = field(default_factory=list)
    skipped: list[tuple[Issue, Ineligible]] = field(default_factory=list)


def plan_dispatch(
    candidates: Iterable[Issue],
    policy: Policy,
    *,
    running: Mapping[str, str],
    claimed: Collection[str] = (),
    issues_by_id: Mapping[str, Issue] | None = None,
    parked: Collection[str] = (),
) -> DispatchPlan:
    """One tick's dispatch decisions: candidates in order, slots taken as they are chosen."""
    plan = DispatchPlan()
    busy = dict(running)
    taken = set(claimed)
    for issue in sort_candidates(candidates):
        reason = eligibility(issue, policy, running=busy, claimed=taken,
                             issues_by_id=issues_by_id, parked=parked)
        if reason is None:
            plan.dispatch.append(issue)
            busy[issue.id] = issue.state
            taken.add(issue.id)
        else:
            plan.skipped.append((issue, reason))
    return plan


# --------------------------------------------------------------------------------------------
# Reconciliation and retry decisions

KEEP = "keep"  # active and routable: refresh the running entry's issue snapshot
STOP = "stop"  # terminate the run, keep the workspace
STOP_AND_CLEAN = "stop_and_clean"  # terminate and remove the workspace
RELEASE = "release"
RELEASE_AND_CLEAN = "release_and_clean"
REQUEUE = "requeue"
DISPATCH = "dispatch"


def reconcile_action(fresh: Issue | None, policy: Policy) -> str:
    """Spec §8.5 B for one running issue, given its refreshed snapshot (None: missing).

    Terminal: stop and clean; active and routable: keep; anything else (missing, not active,
    not routable): stop without cleanup. (A refresh *failure* keeps every worker: not here.)
    """
    if fresh is None:
        return STOP
    if policy.is_terminal(fresh.state):
        return STOP_AND_CLEAN
    if policy.is_active(fresh.state) and routable(fresh, policy):
        return KEEP
    return STOP


def retry_action(
    fresh: Issue | None,
    policy: Policy,
    *,
    running: Mapping[str, str],
    issues_by_id: Mapping[str, Issue] | None = None,
    parked: Collection[str] = (),
) -> tuple[str, Ineligible | None]:
    """Spec §8.4 when a retry timer fires, given the issue re-fetched by id (None: missing).

    missing: release; terminal: release and clean its workspace; no slot: requeue (with
    NO_SLOTS_ERROR); any other reason (not active, labels, blocked, parked): release;
    otherwise dispatch with the entry's attempt.
    """
    if fresh is None:
        return RELEASE, None
    if policy.is_terminal(fresh.state):
        return RELEASE_AND_CLEAN, Ineligible(TERMINAL, f"state {fresh.state!r} is terminal")
    reason = eligibility(fresh, policy, running=running, issues_by_id=issues_by_id,
                         parked=parked, ignore_claim=True)
    if reason is None:
        return DISPATCH, None
    if reason.code in SLOT_CODES:
        return REQUEUE, reason
    return RELEASE, reason


# --------------------------------------------------------------------------------------------
# Continuation circuit breaker


@dataclass(slots=True, frozen=True)
class Fingerprint:
    """What "progress" is judged on: the issue's state and file mtime, the workspace HEAD."""

    state: str
    mtime: float | None
    head: str | None

    @classmethod
    def of(cls, issue: Issue | None, head: str | None = None) -> Fingerprint:
        if issue is None:
            return cls("", None, head)
        return cls(norm_state(issue.state), issue.updated, head)


def made_progress(before: Fingerprint, after: Fingerprint) -> bool:
    """The state or the file's mtime changed, or HEAD moved (judged only when both are known,
    so a fingerprint taken without reading the workspace never looks like progress)."""
    if before.state != after.state or before.mtime != after.mtime:
        return True
    return before.head is not None and after.head is not None and before.head != after.head


@dataclass(slots=True, frozen=True)
class Parked:
    issue_id: str
    fingerprint: Fingerprint
    idle_cycles: int
    reason: str


class ContinuationBreaker:
    """Parks an issue after `limit` continuation cycles in a row without progress.

    Call `observe` when a worker exits normally and a continuation would follow, with the
    fingerprints taken at dispatch and at exit; it returns a Parked when the issue must not be
    re-dispatched. `is_parked` unparks by itself once the fingerprint moves. Failure exits do
    not count (they back off on their own); call `reset` when the claim is released.
    """

    def __init__(self, limit: int = DEFAULT_MAX_IDLE_CONTINUATIONS) -> None:
        #: idle cycles before parking; 0 or less turns the breaker off (settable on reload)
        self.limit = limit
        self.streaks: dict[str, int] = {}
        self.parked: dict[str, Parked] = {}

    def observe(self, issue_id: str, before: Fingerprint, after: Fingerprint) -> Parked | None:
        if made_progress(before, after):
            self.streaks.pop(issue_id, None)
            return None
        streak = self.streaks.get(issue_id, 0) + 1
        self.streaks[issue_id] = streak
        if self.limit <= 0 or streak < self.limit:
            return None
        parked = Parked(
            issue_id, after, streak,
            f"parked after {streak} continuation runs without progress (issue state and file "
            "unchanged, workspace HEAD unchanged); edit or move the issue to resume",
        )
        self.parked[issue_id] = parked
        return parked

    def is_parked(self, issue_id: str, current: Fingerprint | None = None) -> bool:
        """True while parked; a `current` fingerprint that differs unparks the issue."""
        parked = self.parked.get(issue_id)
        if parked is None:
            return False
        if current is not None and made_progress(parked.fingerprint, current):
            self.resume(issue_id)
            return False
        return True

    def resume(self, issue_id: str) -> None:
        """Unpark (operator action, or progress seen) and start counting afresh."""
        self.parked.pop(issue_id, None)
        self.streaks.pop(issue_id, None)

    reset = resume
