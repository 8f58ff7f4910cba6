"""ClaimBook: every lease rule on its own, then a Hypothesis state machine over the lifecycle.

Decisions are made by `ClaimBook.decide_*` and applied through `State.apply`, as the hub does.
Time is always a parameter (`now=`); nothing sleeps.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from marrow_tui.core.claims import (
    DEFAULT_TTL,
    MAX_CLAIMS_PER_AGENT,
    MAX_TTL,
    MIN_TTL,
    STATUSES,
    TRANSITIONS,
    Claim,
    ClaimBook,
    clamp_ttl,
)
from marrow_tui.core.events import Event, Refusal
from marrow_tui.core.scope import scopes_overlap
from marrow_tui.core.state import State

T0 = 1_800_000_000.0


def fresh(*online: str) -> State:
    state = State(started_at=T0)
    for name in online:
        join(state, name)
    return state


def join(state: State, name: str, at: float = T0) -> None:
    state.apply(Event("presence", {"event": "joined", "agent": name, "at": at}))


def leave(state: State, name: str, at: float = T0) -> None:
    state.apply(Event("presence", {"event": "left", "agent": name, "at": at}))


def ok(result: Event | Refusal) -> Event:
    assert isinstance(result, Event), result
    return result


def refused(result: Event | Refusal, reason: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    assert result.text  # always one human sentence
    return result


def claim(state: State, owner: str, task: str, now: float = T0, **kw: Any) -> Claim:
    state.apply(ok(state.claims.decide_claim(owner, task, now=now, **kw)))
    got = state.claims.get(task.strip())
    assert got is not None
    return got


def update(state: State, who: str, task: str, **kw: Any) -> Claim:
    state.apply(ok(state.claims.decide_update(who, task, **kw)))
    got = state.claims.get(task)
    assert got is not None
    return got


def checkpoint(state: State, who: str, task: str, text: str, **kw: Any) -> Claim:
    state.apply(ok(state.claims.decide_checkpoint(who, task, text, **kw)))
    got = state.claims.get(task)
    assert got is not None
    return got


def release(state: State, who: str, task: str, **kw: Any) -> None:
    state.apply(ok(state.claims.decide_release(who, task, **kw)))
    assert state.claims.get(task) is None


def handoff(state: State, who: str, task: str, to: str, now: float = T0, **kw: Any) -> Claim:
    event = state.claims.decide_handoff(who, task, to, online=state.presence.online, now=now, **kw)
    state.apply(ok(event))
    got = state.claims.get(task)
    assert got is not None
    return got


def sweep(state: State, now: float) -> list[Event]:
    events = state.sweep(now)
    for event in events:
        state.apply(event)
    return events


def book_fingerprint(book: ClaimBook) -> Any:
    return (
        dict(book.claims),
        copy.deepcopy(book.by_owner),
        dict(book.retained_checkpoints),
        book.epoch,
        copy.deepcopy(book.waits),
        list(book._heap),
        copy.deepcopy(book.index._worktrees),
    )


# ---- TTL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DEFAULT_TTL),
        (True, DEFAULT_TTL),
        (False, DEFAULT_TTL),
        (math.nan, DEFAULT_TTL),
        (math.inf, DEFAULT_TTL),
        (-math.inf, DEFAULT_TTL),
        ("abc", DEFAULT_TTL),
        ("", DEFAULT_TTL),
        ("nan", DEFAULT_TTL),
        ("inf", DEFAULT_TTL),
        ("-Infinity", DEFAULT_TTL),
        ([60], DEFAULT_TTL),
        ({"ttl": 60}, DEFAULT_TTL),
        (object(), DEFAULT_TTL),
        ("120", 120.0),
        (" 90.5 ", 90.5),
        ("5", MIN_TTL),
        (0, MIN_TTL),
        (-10, MIN_TTL),
        (29.999, MIN_TTL),
        (30, 30.0),
        (45.5, 45.5),
        (3600, 3600.0),
        (MAX_TTL, MAX_TTL),
        (MAX_TTL + 1, MAX_TTL),
        (10**12, MAX_TTL),
        ("1e12", MAX_TTL),
        # an int too large for a float is still finite: clamped, not an OverflowError
        pytest.param(10**400, MAX_TTL, id="huge-int"),
        pytest.param(-(10**400), MIN_TTL, id="huge-negative-int"),
    ],
)
def test_clamp_ttl(raw: object, expected: float) -> None:
    value = clamp_ttl(raw)
    assert value == expected
    assert isinstance(value, float)


def test_bounds_are_synapse_defaults() -> None:
    assert (MIN_TTL, DEFAULT_TTL, MAX_TTL) == (30.0, 3600.0, 30 * 86400.0)


@pytest.mark.parametrize(
    ("ttl", "length"), [(None, 3600.0), (1, 30.0), (True, 3600.0), (10**9, MAX_TTL), (75, 75.0)]
)
def test_claim_lease_length_uses_the_clamped_ttl(ttl: object, length: float) -> None:
    state = fresh()
    got = claim(state, "a", "T", ttl=ttl, now=T0)
    assert got.lease_expires_at == T0 + length
    assert got.claimed_at == T0


# ---- granting ----------------------------------------------------------------------------------


def test_grant_fields() -> None:
    state = fresh()
    event = ok(
        state.claims.decide_claim(
            "demo/alice",
            "  T1 ",
            worktree="main",
            paths=["src/util/", "src\\auth.py", "./src/util"],
            note="edit auth",
            git={"branch": "x"},
            ttl=120,
            now=T0,
        )
    )
    assert event.kind == "claim" and event.durable
    assert event.data == {
        "task_id": "T1",
        "owner": "demo/alice",
        "worktree": "main",
        "paths": ["src/auth.py", "src/util"],
        "epoch": 1,
        "version": 0,
        "status": "claimed",
        "note": "edit auth",
        "data_ref": "",
        "checkpoint": "",
        "git": {"branch": "x"},
        "claimed_at": T0,
        "lease_expires_at": T0 + 120,
    }
    state.apply(event)
    got = state.claims.get("T1")
    assert got == Claim.from_dict(event.data)
    assert state.claims.owned_by("demo/alice") == [got]
    assert state.claims.epoch == 1
    assert len(state.claims) == 1 and list(state.claims) == [got]


@pytest.mark.parametrize("task", ["", "   ", "\t\n"])
def test_task_id_required(task: str) -> None:
    refused(fresh().claims.decide_claim("a", task, now=T0), "TASK_ID_REQUIRED")


def test_decisions_never_mutate_the_book() -> None:
    state = fresh("a", "b")
    claim(state, "a", "T1", paths=["src"])
    checkpoint(state, "a", "T1", "cp")
    claim(state, "b", "T2", paths=["docs"])
    state.apply(ok(state.claims.decide_wait("b", "T1")[0]))
    before = book_fingerprint(state.claims)
    book = state.claims
    results = [
        book.decide_claim("c", "T3", paths=["x"], now=T0),  # would be granted
        book.decide_claim("a", "T1", paths=["src"], now=T0),  # renewal
        book.decide_claim("b", "T1", now=T0),  # LEASE_LIVE
        book.decide_claim("c", "T4", paths=["src/a"], now=T0),  # SCOPE_CONFLICT
        book.decide_release("a", "T1"),
        book.decide_update("a", "T1", status="working"),
        book.decide_checkpoint("a", "T1", "cp2"),
        book.decide_handoff("a", "T1", "b", online={"b"}, now=T0),
        book.decide_wait("a", "T2")[0],  # would be a deadlock
        book.decide_wait("c", "T2")[0],
    ]
    assert any(isinstance(r, Event) for r in results)
    assert any(isinstance(r, Refusal) for r in results)
    assert book.sweep(T0) == []  # nothing due: the heap is untouched
    assert book_fingerprint(state.claims) == before


def test_lease_live_for_another_owner_until_it_expires() -> None:
    state = fresh()
    claim(state, "alice", "T1", ttl=60, paths=["a"])
    denied = refused(state.claims.decide_claim("bob", "T1", now=T0 + 59.9), "LEASE_LIVE")
    assert denied.text == "Task 'T1' is already claimed by alice."
    # the lease ends at lease_expires_at: from then on the task can be taken over
    taken = claim(state, "bob", "T1", now=T0 + 60, paths=["a"])
    assert taken.owner == "bob"
    assert state.claims.owned_by("alice") == []
    assert state.claims.by_owner == {"bob": {"T1"}}


def test_scope_conflict_names_the_first_conflicting_claim() -> None:
    state = fresh()
    claim(state, "demo/alice", "T1", worktree="main", paths=["src/auth.py", "src/util"])
    denied = refused(
        state.claims.decide_claim("demo/bob", "T2", worktree="main", paths=["src"], now=T0),
        "SCOPE_CONFLICT",
    )
    assert denied.text == "Task 'T2' file scope conflicts with 'T1' held by demo/alice."
    refused(
        state.claims.decide_claim("demo/bob", "T2", worktree="main", paths=["src/util/x"], now=T0),
        "SCOPE_CONFLICT",
    )
    refused(state.claims.decide_claim("demo/bob", "T2", worktree="main", now=T0), "SCOPE_CONFLICT")
    # a sibling, a longer name, another worktree: all free
    claim(state, "demo/bob", "T2", worktree="main", paths=["src/utility", "src/auth"])
    claim(state, "demo/bob", "T3", worktree="other", paths=["src"])
    claim(state, "demo/bob", "T4", worktree="", paths=["src"])


def test_two_whole_worktree_claims_in_the_default_worktree_conflict() -> None:
    state = fresh()
    claim(state, "a", "T1")
    refused(state.claims.decide_claim("b", "T2", now=T0), "SCOPE_CONFLICT")
    refused(state.claims.decide_claim("b", "T2", paths=["any/file"], now=T0), "SCOPE_CONFLICT")
    # a path that widens is a whole-worktree claim too
    claim(state, "b", "T3", worktree="w", paths=["x"])
    refused(state.claims.decide_claim("c", "T4", worktree="w", paths=["../y"], now=T0),
            "SCOPE_CONFLICT")


def test_own_claims_never_conflict() -> None:
    state = fresh()
    claim(state, "a", "T1")  # the whole default worktree
    claim(state, "a", "T2", paths=["src"])
    claim(state, "a", "T3", paths=["src/a.py"])
    claim(state, "a", "T4", paths=["src/a.py"])
    assert {c.task_id for c in state.claims.owned_by("a")} == {"T1", "T2", "T3", "T4"}


def test_quota_exceeded_and_renewal_costs_nothing() -> None:
    state = fresh()
    state.claims.max_claims_per_agent = 2
    claim(state, "a", "T1", paths=["1"])
    claim(state, "a", "T2", paths=["2"])
    denied = refused(state.claims.decide_claim("a", "T3", paths=["3"], now=T0), "QUOTA_EXCEEDED")
    assert "2" in denied.text
    claim(state, "a", "T1", paths=["1"], now=T0 + 1)  # renewal at the limit is allowed
    claim(state, "b", "T3", paths=["3"])  # the limit is per agent
    release(state, "a", "T2")
    claim(state, "a", "T4", paths=["4"])


def test_default_quota_is_128() -> None:
    assert MAX_CLAIMS_PER_AGENT == 128
    state = fresh()
    for i in range(128):
        claim(state, "a", f"T{i}", paths=[f"f{i}"])
    refused(state.claims.decide_claim("a", "T128", paths=["g"], now=T0), "QUOTA_EXCEEDED")


def test_zero_quota_means_unlimited() -> None:
    book = ClaimBook(max_claims_per_agent=0)
    for i in range(200):
        book.apply_claim(ok(book.decide_claim("a", f"T{i}", paths=[f"f{i}"], now=T0)).data)
    assert len(book.owned_by("a")) == 200


def test_quota_is_checked_after_scope() -> None:
    state = fresh()
    state.claims.max_claims_per_agent = 1
    claim(state, "a", "T1", paths=["x"])
    claim(state, "b", "T2", paths=["y"])
    # LEASE_LIVE, then SCOPE_CONFLICT, then QUOTA_EXCEEDED (synapse's order)
    refused(state.claims.decide_claim("a", "T2", paths=["z"], now=T0), "LEASE_LIVE")
    refused(state.claims.decide_claim("a", "T3", paths=["y"], now=T0), "SCOPE_CONFLICT")
    refused(state.claims.decide_claim("a", "T3", paths=["z"], now=T0), "QUOTA_EXCEEDED")


# ---- renewal and epochs ----------------------------------------------------------------------


def test_renewal_rebuilds_the_claim_and_keeps_only_the_checkpoint() -> None:
    state = fresh()
    first = claim(state, "a", "T", worktree="w", paths=["src"], note="n1", git={"b": 1}, ttl=60)
    update(state, "a", "T", status="working", data_ref="ref", note="busy")
    checkpoint(state, "a", "T", "step=3")
    claim(state, "x", "OTHER", paths=["elsewhere"])
    assert state.claims.get("T").version == 2

    renewed = claim(state, "a", "T", worktree="w2", paths=["lib"], note="n2", ttl=300, now=T0 + 50)
    assert renewed.epoch == 3 > first.epoch
    assert renewed.version == 0
    assert renewed.status == "claimed"
    assert renewed.data_ref == ""
    assert renewed.note == "n2"
    assert renewed.git is None
    assert (renewed.worktree, renewed.paths) == ("w2", ("lib",))
    assert renewed.checkpoint == "step=3"
    assert renewed.claimed_at == T0 + 50
    assert renewed.lease_expires_at == T0 + 350
    # the old scope is free, the new one is taken, and the old epoch is fenced
    claim(state, "b", "U", worktree="w", paths=["src"])
    refused(state.claims.decide_claim("b", "V", worktree="w2", paths=["lib/x"], now=T0 + 50),
            "SCOPE_CONFLICT")
    refused(state.claims.decide_release("a", "T", epoch=first.epoch), "STALE_EPOCH")
    assert state.claims.by_owner["a"] == {"T"}


def test_renewal_to_a_conflicting_scope_is_refused() -> None:
    state = fresh()
    claim(state, "a", "T", paths=["src"])
    claim(state, "b", "U", paths=["docs"])
    refused(state.claims.decide_claim("a", "T", paths=["docs/x"], now=T0), "SCOPE_CONFLICT")
    assert state.claims.get("T").paths == ("src",)


def test_epochs_are_hub_global_and_strictly_increasing() -> None:
    state = fresh("a", "b")
    seen = []
    seen.append(claim(state, "a", "T1", paths=["1"]).epoch)
    seen.append(claim(state, "b", "T2", paths=["2"]).epoch)
    seen.append(claim(state, "a", "T1", paths=["1"]).epoch)  # renewal
    release(state, "b", "T2")
    seen.append(claim(state, "b", "T2", paths=["2"]).epoch)  # never reused after a release
    seen.append(handoff(state, "a", "T1", "b").epoch)
    update(state, "b", "T1", status="working")  # updates do not move the epoch
    checkpoint(state, "b", "T1", "cp")
    seen.append(claim(state, "a", "T3", paths=["3"]).epoch)
    assert seen == [1, 2, 3, 4, 5, 6]
    assert state.claims.epoch == 6
    release(state, "a", "T3")
    assert state.claims.epoch == 6  # the counter survives the claims


# ---- release -------------------------------------------------------------------------------------


def test_release_checks_owner_and_epoch() -> None:
    state = fresh()
    c = claim(state, "a", "T", paths=["x"])
    assert refused(state.claims.decide_release("a", "nope"), "NOT_CLAIMED").text == (
        "Task 'nope' is not currently claimed."
    )
    assert refused(state.claims.decide_release("b", "T"), "NOT_OWNER").text == (
        "Task 'T' is owned by a, not b."
    )
    for stale in (c.epoch + 1, 0, True, "1", 1.0):
        denied = refused(state.claims.decide_release("a", "T", epoch=stale), "STALE_EPOCH")
        assert denied.text == f"Task 'T' epoch is stale (current {c.epoch})."
    event = ok(state.claims.decide_release("a", "T", epoch=c.epoch))
    assert event.data == {"task_id": "T", "owner": "a", "epoch": c.epoch, "by": "a"}
    state.apply(event)
    assert state.claims.get("T") is None
    assert "a" not in state.claims.by_owner
    assert list(state.claims.index.worktrees()) == []
    claim(state, "b", "U", paths=["x"])  # the scope is free again
    refused(state.claims.decide_release("a", "T"), "NOT_CLAIMED")


def test_release_without_epoch_is_allowed() -> None:
    state = fresh()
    claim(state, "a", "T")
    release(state, "a", "T", epoch=None)


# ---- task_update -----------------------------------------------------------------------------

PATH_TO = {
    "claimed": [],
    "working": ["working"],
    "input_required": ["working", "input_required"],
    "done": ["done"],
    "failed": ["failed"],
}


@pytest.mark.parametrize("target", STATUSES)
@pytest.mark.parametrize("start", STATUSES)
def test_status_lifecycle(start: str, target: str) -> None:
    state = fresh()
    claim(state, "a", "T")
    for step in PATH_TO[start]:
        update(state, "a", "T", status=step)
    current = state.claims.get("T")
    assert current.status == start
    result = state.claims.decide_update("a", "T", status=target)
    allowed = target == start or target in TRANSITIONS[start]
    if allowed:
        state.apply(ok(result))
        after = state.claims.get("T")
        assert after.status == target
        assert after.version == current.version + 1
    else:
        denied = refused(result, "BAD_TRANSITION")
        assert denied.text == f"Task 'T' cannot transition {start} -> {target}."


def test_transition_table_is_synapses() -> None:
    assert TRANSITIONS == {
        "claimed": {"working", "done", "failed"},
        "working": {"input_required", "done", "failed"},
        "input_required": {"working", "done", "failed"},
        "done": set(),
        "failed": set(),
    }


def test_update_fields_and_version() -> None:
    state = fresh()
    c = claim(state, "a", "T", note="first")
    event = ok(state.claims.decide_update("a", "T", status="working", data_ref="r1", epoch=c.epoch))
    assert event.data == {
        "task_id": "T", "status": "working", "note": "first", "data_ref": "r1", "version": 1
    }
    state.apply(event)
    after = update(state, "a", "T", note="second")  # None fields keep their values
    assert (after.status, after.note, after.data_ref) == ("working", "second", "r1")
    assert after.version == 2
    assert after.epoch == c.epoch and after.lease_expires_at == c.lease_expires_at
    refused(state.claims.decide_update("a", "T", status="bogus"), "BAD_STATUS")
    refused(state.claims.decide_update("a", "T", status=""), "BAD_STATUS")
    refused(state.claims.decide_update("b", "T", status="done"), "NOT_OWNER")
    refused(state.claims.decide_update("a", "nope"), "NOT_CLAIMED")
    refused(state.claims.decide_update("a", "T", epoch=c.epoch + 5), "STALE_EPOCH")


def test_expected_version_compare_and_set() -> None:
    state = fresh()
    claim(state, "a", "T")
    update(state, "a", "T", status="working", expected_version=0)
    denied = refused(
        state.claims.decide_update("a", "T", status="done", expected_version=0), "VERSION_CONFLICT"
    )
    assert denied.text == "Task 'T' version conflict (current 1)."
    refused(state.claims.decide_update("a", "T", expected_version=7), "VERSION_CONFLICT")
    checkpoint(state, "a", "T", "cp")  # a checkpoint bumps the version too
    refused(state.claims.decide_update("a", "T", expected_version=1), "VERSION_CONFLICT")
    assert update(state, "a", "T", status="done", expected_version=2).version == 3


# ---- checkpoint --------------------------------------------------------------------------------


def test_checkpoint_fencing_and_version() -> None:
    state = fresh()
    c = claim(state, "a", "T")
    event = ok(state.claims.decide_checkpoint("a", "T", "step=1", epoch=c.epoch))
    assert event.kind == "checkpoint"
    assert event.data == {"task_id": "T", "checkpoint": "step=1", "version": 1}
    state.apply(event)
    assert checkpoint(state, "a", "T", "step=2").version == 2
    assert state.claims.get("T").checkpoint == "step=2"
    refused(state.claims.decide_checkpoint("b", "T", "x"), "NOT_OWNER")
    refused(state.claims.decide_checkpoint("a", "U", "x"), "NOT_CLAIMED")
    refused(state.claims.decide_checkpoint("a", "T", "x", epoch=c.epoch - 1), "STALE_EPOCH")
    assert state.claims.get("T").checkpoint == "step=2"


# ---- handoff -------------------------------------------------------------------------------------


def test_handoff_moves_the_task_atomically() -> None:
    state = fresh("a", "b")
    c = claim(state, "a", "T", worktree="main", paths=["src"], ttl=40, git={"branch": "f"})
    update(state, "a", "T", status="working", data_ref="ref")
    checkpoint(state, "a", "T", "step=3")
    other = claim(state, "a", "U", paths=["u"])
    event = ok(
        state.claims.decide_handoff(
            "a", "T", "b", online=state.presence.online, note="please finish", epoch=c.epoch,
            now=T0 + 10,
        )
    )
    assert event.data == {
        "task_id": "T",
        "owner": "b",
        "previous_owner": "a",
        "note": "please finish",
        "epoch": other.epoch + 1,
        "version": 0,
        "lease_expires_at": T0 + 10 + DEFAULT_TTL,  # a full default lease, whatever the ttl was
    }
    state.apply(event)
    moved = state.claims.get("T")
    assert moved.owner == "b"
    assert moved.epoch == other.epoch + 1 == state.claims.epoch
    assert moved.version == 0
    assert (moved.status, moved.checkpoint, moved.data_ref) == ("working", "step=3", "ref")
    assert (moved.worktree, moved.paths, moved.git) == ("main", ("src",), {"branch": "f"})
    assert state.claims.by_owner == {"a": {"U"}, "b": {"T"}}
    assert state.claims.next_deadline() == other.lease_expires_at == T0 + DEFAULT_TTL
    assert sorted(e for e, _, _ in state.claims._heap)[-1] == T0 + 10 + DEFAULT_TTL
    # the old owner is fenced out; the new owner works with the new epoch
    refused(state.claims.decide_release("a", "T"), "NOT_OWNER")
    refused(state.claims.decide_update("b", "T", status="done", epoch=c.epoch), "STALE_EPOCH")
    refused(state.claims.decide_checkpoint("b", "T", "x", epoch=c.epoch), "STALE_EPOCH")
    assert update(state, "b", "T", status="done", epoch=moved.epoch).status == "done"
    # the scope moved with the task: the giver is now in conflict with it
    refused(state.claims.decide_claim("a", "V", worktree="main", paths=["src/x"], now=T0 + 10),
            "SCOPE_CONFLICT")


def test_handoff_refusals() -> None:
    state = fresh("a", "b", "c")
    c = claim(state, "a", "T", paths=["src/a"])
    book = state.claims
    online = state.presence.online

    def decide(who: str, to: str, **kw: Any) -> Event | Refusal:
        return book.decide_handoff(who, "T", to, online=online, now=T0, **kw)

    refused(decide("a", ""), "TARGET_REQUIRED")
    refused(decide("a", "a"), "SELF_HANDOFF")
    assert refused(decide("a", "ghost"), "TARGET_OFFLINE").text == (
        "Handoff target 'ghost' is not online."
    )
    refused(decide("b", "c"), "NOT_OWNER")
    refused(decide("a", "b", epoch=c.epoch + 1), "STALE_EPOCH")
    refused(book.decide_handoff("a", "nope", "b", online=online, now=T0), "NOT_CLAIMED")
    leave(state, "b")
    refused(decide("a", "b"), "TARGET_OFFLINE")
    join(state, "b")
    ok(decide("a", "b"))


def test_handoff_scope_is_checked_for_the_recipient() -> None:
    state = fresh("a", "b")
    claim(state, "a", "WIDE", paths=["src"])
    claim(state, "a", "NARROW", paths=["src/a"])  # the giver's own claims may overlap
    denied = refused(
        state.claims.decide_handoff("a", "NARROW", "b", online=state.presence.online, now=T0),
        "SCOPE_CONFLICT",
    )
    assert "'WIDE' held by a" in denied.text and "b cannot take it" in denied.text
    release(state, "a", "WIDE")
    assert handoff(state, "a", "NARROW", "b").owner == "b"


def test_handoff_respects_the_recipients_quota() -> None:
    state = fresh("a", "b")
    state.claims.max_claims_per_agent = 1
    claim(state, "a", "T", paths=["x"])
    claim(state, "b", "U", paths=["y"])
    refused(
        state.claims.decide_handoff("a", "T", "b", online=state.presence.online, now=T0),
        "QUOTA_EXCEEDED",
    )


# ---- expiry --------------------------------------------------------------------------------------


def test_expiry_retains_the_checkpoint_for_the_next_claimant() -> None:
    state = fresh()
    claim(state, "a", "T", paths=["x"], ttl=30)
    update(state, "a", "T", status="working")
    checkpoint(state, "a", "T", "step=7")
    assert sweep(state, T0 + 29.999) == []
    assert state.claims.get("T") is not None
    events = sweep(state, T0 + 30)  # the deadline itself counts as ended
    assert [(e.kind, e.data) for e in events] == [
        ("expire", {"task_id": "T", "owner": "a", "epoch": 1, "checkpoint_retained": True})
    ]
    assert state.claims.get("T") is None and state.claims.by_owner == {}
    assert state.claims.retained_checkpoints == {"T": "step=7"}
    assert sweep(state, T0 + 1000) == []  # ended once only

    taken = claim(state, "b", "T", paths=["x"], now=T0 + 40)
    assert taken.checkpoint == "step=7"
    assert (taken.status, taken.version, taken.epoch) == ("claimed", 0, 2)
    assert state.claims.retained_checkpoints == {}


def test_expired_checkpoint_is_inherited_once_and_dropped_on_release() -> None:
    state = fresh()
    claim(state, "a", "T", ttl=30)
    checkpoint(state, "a", "T", "cp")
    sweep(state, T0 + 30)
    claim(state, "b", "T", now=T0 + 31)
    release(state, "b", "T")
    assert state.claims.retained_checkpoints == {}
    assert claim(state, "c", "T", now=T0 + 32).checkpoint == ""


def test_release_drops_the_checkpoint() -> None:
    state = fresh()
    claim(state, "a", "T")
    checkpoint(state, "a", "T", "cp")
    release(state, "a", "T")
    assert state.claims.retained_checkpoints == {}
    assert claim(state, "b", "T").checkpoint == ""


def test_expiry_without_a_checkpoint_retains_nothing() -> None:
    state = fresh()
    claim(state, "a", "T", ttl=30)
    (event,) = sweep(state, T0 + 31)
    assert event.data["checkpoint_retained"] is False
    assert state.claims.retained_checkpoints == {}


def test_takeover_of_an_expired_but_unswept_lease_inherits_its_checkpoint() -> None:
    """Regression: the checkpoint of an ended lease passes on whether or not it was swept yet."""
    state = fresh()
    claim(state, "a", "T", paths=["x"], ttl=30)
    checkpoint(state, "a", "T", "step=7")
    taken = claim(state, "b", "T", paths=["x"], now=T0 + 31)  # no sweep in between
    assert taken.checkpoint == "step=7"
    assert taken.owner == "b" and state.claims.by_owner == {"b": {"T"}}
    # the old lease's timer is stale: it does not end the new one
    assert state.claims.next_deadline() == T0 + 31 + DEFAULT_TTL
    assert sweep(state, T0 + 100) == []


def test_sweep_ends_leases_in_deadline_order_and_next_deadline_follows() -> None:
    state = fresh("a", "b")
    book = state.claims
    assert book.next_deadline() is None
    claim(state, "a", "T1", paths=["1"], ttl=300)
    claim(state, "a", "T2", paths=["2"], ttl=100)
    claim(state, "a", "T3", paths=["3"], ttl=200)
    assert book.next_deadline() == T0 + 100
    claim(state, "a", "T2", paths=["2"], ttl=1000, now=T0 + 10)  # renewal moves it later
    assert book.next_deadline() == T0 + 200
    release(state, "a", "T3")
    assert book.next_deadline() == T0 + 300
    handoff(state, "a", "T1", "b", now=T0 + 20)  # handoff gives a fresh default lease
    assert book.next_deadline() == T0 + 1010
    claim(state, "b", "T4", paths=["4"], ttl=50, now=T0 + 20)
    assert book.next_deadline() == T0 + 70
    events = sweep(state, T0 + 5000)
    assert [e.data["task_id"] for e in events] == ["T4", "T2", "T1"]
    assert all(e.kind == "expire" for e in events)
    assert len(book) == 0 and book.next_deadline() is None


# ---- wait-for ------------------------------------------------------------------------------------


def wait(state: State, waiter: str, task: str) -> str:
    result, holder = state.claims.decide_wait(waiter, task)
    state.apply(ok(result))
    assert result.data == {"waiter": waiter, "task_id": task, "holder": holder}
    return holder


def test_wait_refusals_and_grant() -> None:
    state = fresh()
    result, holder = state.claims.decide_wait("a", "T")
    refused(result, "NOT_CLAIMED")
    assert holder == ""
    claim(state, "a", "T")
    result, holder = state.claims.decide_wait("a", "T")
    refused(result, "SELF_WAIT")
    assert holder == "a"
    assert wait(state, "b", "T") == "a"
    assert state.claims.waits == {"b": {"T"}}


def test_deadlock_between_two_agents() -> None:
    state = fresh()
    claim(state, "a", "A1", paths=["a"])
    claim(state, "b", "B1", paths=["b"])
    wait(state, "a", "B1")
    result, holder = state.claims.decide_wait("b", "A1")
    assert refused(result, "DEADLOCK").text == "Waiting for 'A1' held by a would deadlock."
    assert holder == "a"
    assert "b" not in state.claims.waits


def test_deadlock_around_three_agents() -> None:
    state = fresh()
    for name in "abc":
        claim(state, name, f"{name.upper()}1", paths=[name])
    wait(state, "a", "B1")
    wait(state, "b", "C1")
    refused(state.claims.decide_wait("c", "A1")[0], "DEADLOCK")
    # a fourth agent may wait on any of them: it closes no cycle
    claim(state, "d", "D1", paths=["d"])
    wait(state, "d", "A1")
    refused(state.claims.decide_wait("c", "D1")[0], "DEADLOCK")  # c -> d -> a -> b -> c


def test_wait_edge_cleared_when_the_task_is_released_or_expires() -> None:
    state = fresh()
    claim(state, "a", "A1", paths=["a"])
    claim(state, "b", "B1", paths=["b"], ttl=30)
    wait(state, "a", "B1")
    refused(state.claims.decide_wait("b", "A1")[0], "DEADLOCK")
    release(state, "b", "B1")
    assert state.claims.waits.get("a", set()) == set()
    claim(state, "b", "B1", paths=["b"], ttl=30)
    wait(state, "b", "A1")  # no cycle now: a no longer waits for anything

    claim(state, "c", "C1", paths=["c"], ttl=30)
    wait(state, "b", "C1")
    assert state.claims.waits["b"] == {"A1", "C1"}
    sweep(state, T0 + 30)  # B1 and C1 expire; A1 is still held
    assert state.claims.waits["b"] == {"A1"}


def test_wait_edge_cleared_when_the_waiter_acquires_the_task() -> None:
    state = fresh()
    claim(state, "a", "T", ttl=30)
    wait(state, "b", "T")
    claim(state, "b", "T", now=T0 + 30)  # takes over the ended lease
    assert state.claims.waits["b"] == set()


def test_wait_edge_cleared_when_the_waiter_receives_the_task_by_handoff() -> None:
    """Regression: a stale edge made a later, unrelated wait look like a deadlock."""
    state = fresh("a", "b", "c")
    claim(state, "a", "T", paths=["t"])
    claim(state, "b", "B1", paths=["b"])
    wait(state, "b", "T")
    handoff(state, "a", "T", "b")
    assert "T" not in state.claims.waits.get("b", set())
    handoff(state, "b", "T", "c")
    # b waits for nothing, so c may wait for b's task
    assert wait(state, "c", "B1") == "b"


def test_wait_edges_forgotten_when_the_waiter_disconnects() -> None:
    state = fresh("a", "b")
    claim(state, "a", "A1", paths=["a"])
    claim(state, "b", "B1", paths=["b"])
    wait(state, "b", "A1")
    leave(state, "b")
    assert "b" not in state.claims.waits
    wait(state, "a", "B1")


# ---- the lease lifecycle as a state machine ------------------------------------------------------

AGENTS = ["a", "b", "c"]
TASKS = ["T1", "T2", "T3", "T4"]
PATHS = st.lists(st.sampled_from(["src", "src/a", "src/b", "docs", "docs/x"]), max_size=2)
WORKTREES = ["", "w"]
OFFLINE_TTL = 100.0


class LeaseMachine(RuleBasedStateMachine):
    """Random steps by a few agents over a few tasks, applied through `State.apply`."""

    @initialize()
    def start(self) -> None:
        self.state = State(started_at=T0, offline_ttl=OFFLINE_TTL)
        for name in AGENTS:
            join(self.state, name)
        self.state.claims.max_claims_per_agent = 3
        self.now = T0
        self.last_granted_epoch = 0
        self.swept = True
        #: what the next claimant of an unheld task must inherit
        self.retained: dict[str, str] = {}

    @property
    def book(self) -> ClaimBook:
        return self.state.claims

    def apply(self, event: Event) -> None:
        book = self.book
        if event.kind in ("claim", "handoff"):
            epoch = event.data["epoch"]
            assert epoch > self.last_granted_epoch  # every grant gets a fresh, larger epoch
            assert epoch == book.epoch + 1
            self.last_granted_epoch = epoch
        if event.kind == "expire":
            old = book.get(event.data["task_id"])
            assert old is not None and old.lease_expires_at <= self.now
            if old.checkpoint:
                self.retained[old.task_id] = old.checkpoint
        if event.kind == "release":
            self.retained.pop(event.data["task_id"], None)
        self.state.apply(event)
        assert book.retained_checkpoints == self.retained

    def sweep_now(self) -> None:
        events = self.state.sweep(self.now)
        ended = [e.data["task_id"] for e in events]
        assert len(ended) == len(set(ended))  # a lease ends once
        for event in events:
            assert event.kind == "expire" or event.data["by"] == "hub:holder-offline"
            if event.kind == "release":
                since = self.state.presence.offline_since[event.data["owner"]]
                assert since + OFFLINE_TTL <= self.now
                assert event.data["holder_offline_seconds"] == round(self.now - since, 3)
            self.apply(event)
        self.swept = True

    @rule(name=st.sampled_from(AGENTS))
    def leave(self, name: str) -> None:
        if name in self.state.presence.online:
            leave(self.state, name, at=self.now)

    @rule(name=st.sampled_from(AGENTS))
    def rejoin(self, name: str) -> None:
        if name not in self.state.presence.online:
            join(self.state, name, at=self.now)

    @rule(seconds=st.sampled_from([0, 1, 29, 30, 100, 3600]))
    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.swept = seconds == 0 and self.swept

    @rule()
    def sweep(self) -> None:
        self.sweep_now()

    @rule(
        owner=st.sampled_from(AGENTS),
        task=st.sampled_from(TASKS),
        worktree=st.sampled_from(WORKTREES),
        paths=PATHS,
        ttl=st.sampled_from([None, 30, 60, 3600]),
        sweep_first=st.booleans(),
    )
    def claim(
        self, owner: str, task: str, worktree: str, paths: list[str], ttl: Any, sweep_first: bool
    ) -> None:
        if owner not in self.state.presence.online:
            return  # the hub only hears from connected agents
        if sweep_first:
            self.sweep_now()
        before = self.book.get(task)
        result = self.book.decide_claim(
            owner, task, worktree=worktree, paths=paths, ttl=ttl, now=self.now
        )
        if isinstance(result, Refusal):
            assert result.reason in {"LEASE_LIVE", "SCOPE_CONFLICT", "QUOTA_EXCEEDED"}
            if result.reason == "LEASE_LIVE":
                assert before is not None and before.owner != owner
                assert before.lease_expires_at > self.now
            return
        if before is not None and before.owner != owner:
            assert before.lease_expires_at <= self.now  # only an ended lease is taken over
        expected_checkpoint = before.checkpoint if before else self.retained.get(task, "")
        self.retained.pop(task, None)
        self.apply(result)
        got = self.book.get(task)
        assert got.owner == owner and got.version == 0 and got.status == "claimed"
        assert got.checkpoint == expected_checkpoint

    @rule(who=st.sampled_from(AGENTS), task=st.sampled_from(TASKS), fenced=st.booleans())
    def release(self, who: str, task: str, fenced: bool) -> None:
        current = self.book.get(task)
        epoch = current.epoch if (current and fenced) else None
        result = self.book.decide_release(who, task, epoch=epoch)
        if current is None or current.owner != who:
            assert isinstance(result, Refusal)
            return
        self.apply(ok(result))
        assert self.book.get(task) is None

    @rule(
        who=st.sampled_from(AGENTS),
        task=st.sampled_from(TASKS),
        status=st.sampled_from([None, *STATUSES]),
        stale=st.booleans(),
    )
    def update(self, who: str, task: str, status: str | None, stale: bool) -> None:
        current = self.book.get(task)
        epoch = (current.epoch - 1) if (current and stale) else None
        result = self.book.decide_update(who, task, status=status, epoch=epoch)
        if current is None or current.owner != who or stale:
            assert isinstance(result, Refusal)
            return
        target = current.status if status is None else status
        if target != current.status and target not in TRANSITIONS[current.status]:
            refused(result, "BAD_TRANSITION")
            return
        self.apply(ok(result))
        assert self.book.get(task).version == current.version + 1

    @rule(
        who=st.sampled_from(AGENTS),
        task=st.sampled_from(TASKS),
        text=st.sampled_from(["", "c1", "c2"]),
    )
    def checkpoint(self, who: str, task: str, text: str) -> None:
        result = self.book.decide_checkpoint(who, task, text)
        current = self.book.get(task)
        if current is None or current.owner != who:
            assert isinstance(result, Refusal)
            return
        self.apply(ok(result))
        assert self.book.get(task).checkpoint == text

    @rule(who=st.sampled_from(AGENTS), task=st.sampled_from(TASKS), to=st.sampled_from(AGENTS))
    def handoff(self, who: str, task: str, to: str) -> None:
        current = self.book.get(task)
        result = self.book.decide_handoff(
            who, task, to, online=self.state.presence.online, now=self.now
        )
        if isinstance(result, Refusal):
            if current is not None and current.owner == who != to:
                if to not in self.state.presence.online:
                    assert result.reason == "TARGET_OFFLINE"
            return
        assert current is not None and current.owner == who != to
        assert to in self.state.presence.online
        self.apply(result)
        moved = self.book.get(task)
        assert moved.owner == to and moved.version == 0
        assert moved.lease_expires_at == self.now + DEFAULT_TTL
        assert (moved.status, moved.checkpoint, moved.paths) == (
            current.status, current.checkpoint, current.paths
        )

    @invariant()
    def live_claims_by_different_owners_never_overlap(self) -> None:
        live = list(self.book)
        for i, x in enumerate(live):
            for y in live[i + 1 :]:
                if x.owner != y.owner:
                    assert not scopes_overlap(x.worktree, x.paths, y.worktree, y.paths), (x, y)

    @invariant()
    def epochs_unique_and_bounded(self) -> None:
        epochs = [c.epoch for c in self.book]
        assert len(epochs) == len(set(epochs))
        assert all(0 < e <= self.book.epoch for e in epochs)
        assert self.book.epoch == self.last_granted_epoch

    @invariant()
    def nothing_expired_after_a_sweep(self) -> None:
        if self.swept:
            assert all(c.lease_expires_at > self.now for c in self.book)
            for name, since in self.state.presence.offline_since.items():
                if since + OFFLINE_TTL <= self.now:
                    assert name not in self.book.by_owner  # long-gone holders hold nothing
            deadline = self.book.next_deadline()
            assert deadline is None or deadline > self.now

    @invariant()
    def next_deadline_is_the_earliest_lease(self) -> None:
        leases = [c.lease_expires_at for c in self.book]
        assert self.book.next_deadline() == (min(leases) if leases else None)

    @invariant()
    def by_owner_and_index_agree_with_claims(self) -> None:
        book = self.book
        expected: dict[str, set[str]] = {}
        for c in book:
            expected.setdefault(c.owner, set()).add(c.task_id)
            assert c.task_id not in book.retained_checkpoints
        assert book.by_owner == expected
        # the index answers exactly as a scan of the live claims would
        for owner in [*AGENTS, "stranger"]:
            for worktree in WORKTREES:
                for paths in [(), ("src",), ("src/a",), ("docs/x",), ("other",)]:
                    found = book.index.conflict(owner, worktree, paths)
                    clash = [
                        (c.task_id, c.owner)
                        for c in book
                        if c.owner != owner
                        and scopes_overlap(worktree, paths, c.worktree, c.paths)
                    ]
                    assert (found is None) == (not clash)
                    assert found is None or found in clash
        assert set(book.index.worktrees()) == {c.worktree for c in book}


LeaseMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLeaseMachine = LeaseMachine.TestCase
