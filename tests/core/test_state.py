"""State: the single apply point, snapshots, presence and offline release, idempotency, chat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marrow_tui.core.chat import ChatLog, addressed_to
from marrow_tui.core.claims import DEFAULT_TTL
from marrow_tui.core.events import Event, Refusal, describe
from marrow_tui.core.state import (
    MAX_IDEMPOTENCY_KEYS,
    OFFLINE_TTL,
    SNAPSHOT_FORMAT,
    IdempotencyCache,
    State,
)

T0 = 1_800_000_000.0


def ok(result: Event | Refusal) -> Event:
    assert isinstance(result, Event), result
    return result


def join(state: State, name: str, at: float = T0, roles: tuple[str, ...] = (),
         operator: bool = False) -> None:
    state.apply(Event("presence", {"event": "joined", "agent": name, "at": at,
                                   "roles": list(roles), "operator": operator}))


def leave(state: State, name: str, at: float) -> None:
    state.apply(Event("presence", {"event": "left", "agent": name, "at": at}))


def claim(state: State, owner: str, task: str, now: float = T0, **kw: Any) -> None:
    state.apply(ok(state.claims.decide_claim(owner, task, now=now, **kw)))


def sweep(state: State, now: float) -> list[Event]:
    events = state.sweep(now)
    for event in events:
        state.apply(event)
    return events


def chat(state: State, sender: str, target: str, payload: Any) -> None:
    state.apply(Event("chat", {"sender": sender, "target": target, "type": "chat",
                               "payload": payload, "msg_id": state.chat.msg_id + 1}))


def busy_state() -> State:
    """A state touching every part of the snapshot."""
    state = State(started_at=T0)
    for name in ("alice", "bob", "carol"):
        join(state, name)
    claim(state, "alice", "T1", worktree="main", paths=["src/a", "src/b"], note="n",
          git={"branch": "feat", "base": "main"}, ttl=600)
    state.apply(ok(state.claims.decide_update("alice", "T1", status="working", data_ref="r")))
    state.apply(ok(state.claims.decide_checkpoint("alice", "T1", "step=2")))
    claim(state, "bob", "T2", paths=["docs"], ttl=30)
    state.apply(ok(state.claims.decide_checkpoint("bob", "T2", "half done")))
    claim(state, "carol", "T3", paths=["x"])
    state.apply(ok(state.claims.decide_handoff("carol", "T3", "bob", online=state.presence.online,
                                               now=T0 + 1)))
    claim(state, "carol", "T4", paths=["y"])
    state.apply(ok(state.claims.decide_release("carol", "T4")))
    assert [e.kind for e in sweep(state, T0 + 30)] == ["expire"]  # T2 ends, checkpoint kept
    for task, deps in (("P1", []), ("P2", ["P1"]), ("P3", ["P1", "P2", "GHOST"])):
        state.apply(ok(state.board.decide_declare("alice", task, f"do {task}", depends_on=deps,
                                                  project="proj", now=T0)))
    state.apply(ok(state.board.decide_update("bob", "P1", status="done", now=T0 + 2)))
    for i, kind in enumerate(("note", "blocked", "assessment")):
        state.apply(ok(state.board.decide_progress("bob", "P2", f"note {i}", kind=kind, now=T0)))
    chat(state, "alice", "all", "hello")
    chat(state, "bob", "alice", {"structured": [1, 2]})
    state.apply(Event("agent_paused", {"agent": "builder", "paused": True, "by": "operator/x",
                                       "at": T0}))
    for i in range(3):
        state.apply(Event("idem", {"key": f"alice\x00claim\x00k{i}", "digest": f"d{i}",
                                   "response": f'{{"r": {i}}}'}))
    return state


# ---- snapshots ---------------------------------------------------------------------------------


def test_snapshot_round_trip_through_json() -> None:
    state = busy_state()
    snap = state.to_snapshot()
    assert snap["format"] == SNAPSHOT_FORMAT
    text = json.dumps(snap)

    restored = State(started_at=T0 + 100)
    restored.load_snapshot(json.loads(text))

    assert restored.claims.claims == state.claims.claims
    assert set(restored.claims.claims) == {"T1", "T3"}
    assert restored.claims.get("T1").git == {"branch": "feat", "base": "main"}
    assert restored.claims.get("T1").checkpoint == "step=2"
    assert restored.claims.epoch == state.claims.epoch == 5  # T4's epoch survives its release
    assert restored.claims.by_owner == state.claims.by_owner == {"alice": {"T1"}, "bob": {"T3"}}
    assert restored.claims.retained_checkpoints == {"T2": "half done"}
    assert restored.claims.next_deadline() == state.claims.next_deadline() == T0 + 600
    assert restored.board.tasks == state.board.tasks
    assert restored.board.ready() == ["P2"]
    assert list(restored.board.progress) == list(state.board.progress)
    assert len(restored.board.progress) == 3
    assert restored.chat.msg_id == state.chat.msg_id == 2
    assert list(restored.chat.history) == list(state.chat.history)
    assert restored.idem.entries == state.idem.entries
    assert restored.sessions.paused == {"builder": "operator/x"}
    assert list(restored.idem.entries) == list(state.idem.entries)  # order kept (eviction order)
    # a second round trip is byte-identical
    assert json.dumps(restored.to_snapshot()) == text


def test_restored_state_decides_like_the_original() -> None:
    state = busy_state()
    restored = State(started_at=T0 + 100)
    restored.load_snapshot(json.loads(json.dumps(state.to_snapshot())))
    for book in (state.claims, restored.claims):
        # the scope index was rebuilt: conflicts, the epoch counter and the inheritance agree
        denied = book.decide_claim("zed", "N", worktree="main", paths=["src"], now=T0 + 100)
        assert isinstance(denied, Refusal) and denied.reason == "SCOPE_CONFLICT"
        assert ok(book.decide_claim("zed", "N", paths=["free"], now=T0 + 100)).data["epoch"] == 6
        took = ok(book.decide_claim("zed", "T2", paths=["docs"], now=T0 + 100))
        assert took.data["checkpoint"] == "half done"
        fenced = book.decide_release("bob", "T3", epoch=3)
        assert isinstance(fenced, Refusal) and fenced.reason == "STALE_EPOCH"


def test_snapshot_keeps_the_larger_msg_id_and_epoch() -> None:
    state = State()
    chat(state, "a", "all", "one")
    snap = json.loads(json.dumps(state.to_snapshot()))
    snap["msg_id"] = 40  # older frames may have been trimmed from the history
    snap["epoch"] = 17  # the counter outlives every claim
    restored = State()
    restored.load_snapshot(snap)
    assert restored.chat.msg_id == 40
    assert restored.claims.epoch == 17
    claim(restored, "a", "T")
    assert restored.claims.get("T").epoch == 18


def test_snapshot_of_an_empty_state() -> None:
    restored = State()
    restored.load_snapshot(json.loads(json.dumps(State().to_snapshot())))
    assert len(restored.claims) == 0 and restored.claims.epoch == 0
    assert restored.board.tasks == {} and restored.chat.msg_id == 0
    assert restored.next_deadline() is None


@pytest.mark.parametrize("fmt", [None, 0, 2, "1"])
def test_unknown_snapshot_format_is_refused(fmt: object) -> None:
    snap = State().to_snapshot()
    snap["format"] = fmt
    with pytest.raises(ValueError, match="unsupported snapshot format"):
        State().load_snapshot(snap)


# ---- presence and the offline release ------------------------------------------------------------


def test_presence_join_and_leave() -> None:
    state = State()
    join(state, "alice", at=T0, roles=("proj/reviewer",), operator=True)
    agent = state.presence.online["alice"]
    assert (agent.since, agent.last_seen, agent.operator) == (T0, T0, True)
    assert state.presence.roles_of("alice") == ("proj/reviewer",)
    assert state.presence.roles_of("ghost") == ()
    state.touch("alice", T0 + 5)
    state.touch("ghost", T0 + 5)  # unknown: ignored
    assert state.presence.online["alice"].last_seen == T0 + 5
    assert "ghost" not in state.presence.online
    leave(state, "alice", at=T0 + 9)
    assert "alice" not in state.presence.online
    assert state.presence.offline_since == {}  # it held nothing: nothing to remember
    join(state, "alice", at=T0 + 12)
    assert state.presence.offline_since == {}


def test_holder_that_leaves_is_released_after_offline_ttl() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    claim(state, "a", "T1", paths=["1"])
    claim(state, "a", "T2", paths=["2"])
    state.apply(ok(state.claims.decide_checkpoint("a", "T1", "cp")))
    claim(state, "b", "T3", paths=["3"])  # b never connected in this test, and never left
    leave(state, "a", at=T0 + 10)
    assert state.next_deadline() == T0 + 110
    assert sweep(state, T0 + 109.999) == []  # not before
    assert len(state.claims) == 3
    events = sweep(state, T0 + 110)
    assert [(e.kind, e.data) for e in events] == [
        ("release", {"task_id": task, "owner": "a", "epoch": epoch, "by": "hub:holder-offline",
                     "holder_offline_seconds": 100.0})
        for task, epoch in (("T1", 1), ("T2", 2))
    ]
    assert describe(events[0]) == "release   T1 held by a (by hub:holder-offline)"
    assert set(state.claims.claims) == {"T3"}
    assert state.claims.retained_checkpoints == {}  # a release drops the checkpoint
    assert state.next_deadline() == T0 + DEFAULT_TTL
    assert sweep(state, T0 + 200) == []


def test_holder_offline_seconds_counts_from_when_it_left() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    claim(state, "a", "T", ttl=10**6)
    leave(state, "a", at=T0 + 10)
    (event,) = sweep(state, T0 + 500)  # a late sweep
    assert event.data["holder_offline_seconds"] == 490.0


def test_holder_that_rejoins_keeps_its_claims() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    claim(state, "a", "T")
    leave(state, "a", at=T0 + 10)
    join(state, "a", at=T0 + 50)
    assert state.next_deadline() == T0 + DEFAULT_TTL  # only the lease itself remains
    assert sweep(state, T0 + 1000) == []
    assert state.claims.get("T").owner == "a"
    # leaving again starts a new window; the old one does not fire
    leave(state, "a", at=T0 + 1000)
    assert state.next_deadline() == T0 + 1100
    assert sweep(state, T0 + 1099) == []
    assert [e.data["task_id"] for e in sweep(state, T0 + 1100)] == ["T"]


def test_leaving_without_claims_schedules_nothing() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    leave(state, "a", at=T0)
    assert state.next_deadline() is None
    assert sweep(state, T0 + 10**6) == []


def test_holder_whose_claims_ended_is_not_released_twice() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    claim(state, "a", "T")
    leave(state, "a", at=T0)
    state.apply(ok(state.claims.decide_release("a", "T")))
    assert state.next_deadline() is None
    assert sweep(state, T0 + 100) == []


def test_handoff_recipient_who_later_leaves_is_watched() -> None:
    state = State(offline_ttl=100)
    join(state, "a")
    join(state, "b")
    claim(state, "a", "T")
    state.apply(ok(state.claims.decide_handoff("a", "T", "b", online=state.presence.online,
                                               now=T0)))
    leave(state, "a", at=T0)  # the giver holds nothing any more
    assert state.next_deadline() == T0 + DEFAULT_TTL
    leave(state, "b", at=T0 + 5)
    assert [(e.kind, e.data["owner"]) for e in sweep(state, T0 + 105)] == [("release", "b")]


def test_after_restore_counts_holders_offline_from_started_at() -> None:
    old = State(offline_ttl=100)
    join(old, "a")
    join(old, "b")
    claim(old, "a", "T1", paths=["1"], ttl=10**6)
    claim(old, "b", "T2", paths=["2"], ttl=10**6)
    started = T0 + 5000
    state = State(started_at=started, offline_ttl=100)
    state.load_snapshot(json.loads(json.dumps(old.to_snapshot())))
    state.after_restore()
    assert state.presence.offline_since == {"a": started, "b": started}
    assert state.next_deadline() == started + 100
    join(state, "b", at=started + 20)  # b reconnects in time
    assert sweep(state, started + 99) == []
    events = sweep(state, started + 100)
    assert [(e.data["task_id"], e.data["by"], e.data["holder_offline_seconds"])
            for e in events] == [("T1", "hub:holder-offline", 100.0)]
    assert set(state.claims.claims) == {"T2"}


def test_replayed_handoff_then_after_restore_releases_each_claim_once() -> None:
    """Regression: the recipient was queued twice and every claim was released twice."""
    started = T0 + 10
    state = State(started_at=started, offline_ttl=100)
    # as the runtime does: replay the log tail (presence is not logged), then after_restore
    state.apply(Event("claim", {"task_id": "T", "owner": "a", "worktree": "", "paths": ["x"],
                                "epoch": 1, "lease_expires_at": T0 + 10**6}))
    state.apply(Event("handoff", {"task_id": "T", "owner": "b", "previous_owner": "a",
                                  "note": "", "epoch": 2, "version": 0,
                                  "lease_expires_at": T0 + 10**6}))
    state.after_restore()
    events = state.sweep(started + 100)
    assert [(e.kind, e.data["task_id"], e.data["owner"]) for e in events] == [
        ("release", "T", "b")
    ]


def test_lease_that_expires_while_its_holder_is_offline_ends_once() -> None:
    """Regression: the same lease was ended twice (expire, then release) in one sweep."""
    state = State(offline_ttl=100)
    join(state, "a")
    claim(state, "a", "EARLY", paths=["1"], ttl=60)  # ends before the offline deadline
    claim(state, "a", "LATE", paths=["2"], ttl=300)  # would end after it
    for task in ("EARLY", "LATE"):
        state.apply(ok(state.claims.decide_checkpoint("a", task, f"cp-{task}")))
    leave(state, "a", at=T0)
    events = sweep(state, T0 + 1000)  # one late sweep covers both deadlines
    assert sorted((e.kind, e.data["task_id"]) for e in events) == [
        ("expire", "EARLY"),
        ("release", "LATE"),
    ]
    # the lease that ran out first keeps its checkpoint; the released one does not
    assert state.claims.retained_checkpoints == {"EARLY": "cp-EARLY"}
    assert len(state.claims) == 0


def test_lease_and_offline_deadline_at_the_same_moment_end_once() -> None:
    state = State(offline_ttl=3600)
    join(state, "a")
    claim(state, "a", "T", ttl=3600)
    state.apply(ok(state.claims.decide_checkpoint("a", "T", "cp")))
    leave(state, "a", at=T0)
    events = sweep(state, T0 + 3600)
    assert [(e.kind, e.data["task_id"]) for e in events] == [("release", "T")]
    assert len(state.claims) == 0 and state.claims.retained_checkpoints == {}


def test_default_offline_ttl_is_an_hour() -> None:
    assert OFFLINE_TTL == 3600.0
    assert State().offline_ttl == OFFLINE_TTL


def test_unknown_event_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        State().apply(Event("bogus", {}))


# ---- idempotency ---------------------------------------------------------------------------------


def test_idempotency_cache_keeps_the_newest_keys() -> None:
    cache = IdempotencyCache(limit=3)
    for i in range(3):
        cache.apply({"key": f"k{i}", "digest": f"d{i}", "response": f"r{i}"})
    cache.apply({"key": "k0", "digest": "d0b", "response": "r0b"})  # refreshed: newest now
    cache.apply({"key": "k3", "digest": "d3", "response": "r3"})
    cache.apply({"key": "k4", "digest": "d4", "response": "r4"})
    assert list(cache.entries) == ["k0", "k3", "k4"]
    assert cache.get("k0") == ("d0b", "r0b")
    assert cache.get("k1") is None and cache.get("k2") is None
    assert len(cache.entries) == 3


def test_idempotency_default_bound_through_state() -> None:
    assert MAX_IDEMPOTENCY_KEYS == 100_000
    state = State()
    assert state.idem.limit == MAX_IDEMPOTENCY_KEYS
    state.idem.limit = 50
    for i in range(120):
        state.apply(Event("idem", {"key": f"s\x00claim\x00{i}", "digest": "d",
                                   "response": str(i)}))
    assert len(state.idem.entries) == 50
    assert state.idem.get("s\x00claim\x0069") is None
    assert state.idem.get("s\x00claim\x0070") == ("d", "70")
    assert state.idem.get("s\x00claim\x00119") == ("d", "119")


# ---- chat ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "name", "roles", "expected"),
    [
        ("all", "proj/alice", (), True),
        ("*", "proj/alice", (), True),
        ("", "proj/alice", (), True),
        ("proj/alice", "proj/alice", (), True),  # exact
        ("proj/alicex", "proj/alice", (), False),
        ("proj/ali", "proj/alice", (), False),  # no prefix matching within a segment
        ("proj/bob", "proj/alice", (), False),
        ("proj/bob, proj/alice", "proj/alice", (), True),  # comma list, spaces trimmed
        ("proj/bob,,  ,proj/carol", "proj/alice", (), False),
        ("proj/bob, all", "proj/alice", (), True),  # a broadcast inside a list
        ("proj/*", "proj/alice", (), True),  # glob
        ("proj/a?ice", "proj/alice", (), True),
        ("proj/[ab]lice", "proj/alice", (), True),
        ("other/*", "proj/alice", (), False),
        ("Proj/*", "proj/alice", (), False),  # case-sensitive
        ("proj", "proj/alice", (), True),  # bare project
        ("proj", "project/alice", (), False),
        ("proj", "proj", (), True),
        ("proj/reviewer", "proj/alice", ("proj/reviewer",), True),  # role
        ("proj/reviewer", "proj/alice", ("proj/writer",), False),
        ("proj/rev*", "proj/alice", ("proj/reviewer",), True),  # glob over roles
        ("team", "proj/alice", ("team/lead",), True),  # bare prefix of a role
        ("x/y, proj/reviewer", "other/bob", ("proj/reviewer",), True),
    ],
)
def test_addressed_to(target: str, name: str, roles: tuple[str, ...], expected: bool) -> None:
    assert addressed_to(target, name, roles) is expected


def test_chat_log_history() -> None:
    log = ChatLog(limit=3)
    for i in range(1, 6):
        log.apply({"msg_id": i, "payload": str(i)})
    assert log.msg_id == 5
    assert [f["msg_id"] for f in log.history] == [3, 4, 5]
    assert [f["msg_id"] for f in log.since(3)] == [4, 5]
    assert [f["msg_id"] for f in log.tail(2)] == [4, 5]
    assert log.tail(0) == [] and log.tail(-1) == []
    log.apply({"msg_id": 2, "payload": "late"})  # msg_id never goes back
    assert log.msg_id == 5


def test_agents_that_leave_holding_nothing_are_forgotten() -> None:
    from marrow_tui.core.events import Event as _Event

    state = State(started_at=0.0)
    for n in range(1000):
        name = f"cli/once-{n}"
        state.apply(_Event("presence", {"event": "joined", "agent": name, "at": float(n)}))
        state.apply(_Event("presence", {"event": "left", "agent": name, "at": float(n)}))
    assert state.presence.offline_since == {}
    assert state.presence.online == {}


def _frame(msg_id: int, payload: str) -> dict[str, Any]:
    return {"type": "chat", "sender": "a", "target": "all", "payload": payload, "msg_id": msg_id}


def test_chat_history_is_bounded_by_bytes_as_well_as_count() -> None:
    size = len(json.dumps(_frame(10, "x" * 200), separators=(",", ":")))  # two-digit ids
    log = ChatLog(limit=100, max_bytes=size * 4 + size // 2)
    for i in range(1, 21):
        log.apply(_frame(i, "x" * 200))
    assert [f["msg_id"] for f in log.history] == [17, 18, 19, 20]
    assert log.bytes == size * 4 <= log.max_bytes
    assert log.msg_id == 20
    # the count bound still holds for small frames
    small = ChatLog(limit=3, max_bytes=1 << 20)
    for i in range(1, 6):
        small.apply(_frame(i, "y"))
    assert [f["msg_id"] for f in small.history] == [3, 4, 5]


def test_chat_size_is_the_encoded_frame_when_given() -> None:
    log = ChatLog(limit=10, max_bytes=100)
    log.apply(_frame(1, "a"), size=60)
    log.apply(_frame(2, "b"), size=60)  # 120 > 100: the oldest goes
    assert [f["msg_id"] for f in log.history] == [2] and log.bytes == 60
    log.apply(_frame(3, "c"), size=500)  # over the whole budget: not kept, msg_id still moves
    assert list(log.history) == [] and log.bytes == 0 and log.msg_id == 3


def test_one_chat_is_capped_below_the_history_budget() -> None:
    from marrow_tui.core.chat import MAX_CHAT_BYTES

    assert ChatLog().max_message_bytes == MAX_CHAT_BYTES < 1024 * 1024  # below the frame limit
    assert ChatLog(max_bytes=1000).max_message_bytes == 1000


def test_state_bounds_chat_by_bytes_through_replay_and_snapshot() -> None:
    big = State()
    for i in range(50):
        chat(big, "a", "all", "z" * 1000)
    snap = json.loads(json.dumps(big.to_snapshot()))
    small = State(chat_history_bytes=10_000)
    small.load_snapshot(snap)
    assert 0 < small.chat.bytes <= 10_000
    assert len(small.chat.history) < 10 and small.chat.msg_id == 50
    assert small.chat.history[-1]["msg_id"] == 50
    for i in range(50):
        small.apply(Event("chat", {"type": "chat", "sender": "b", "target": "all",
                                   "payload": "q" * 1000, "msg_id": small.chat.msg_id + 1}))
    assert small.chat.bytes <= 10_000 and small.chat.msg_id == 100


def test_review_stat_sets_the_issues_diff_and_is_not_logged() -> None:
    state = State()
    state.apply(Event("issue_status", {"identifier": "ACP-3", "status": "running"}))
    assert state.issues.issues["ACP-3"].diff is None
    stat = Event("review_stat", {"identifier": "ACP-3", "files": 2, "added": 12, "removed": 3,
                                 "at": 1.0})
    state.apply(stat)
    assert state.issues.issues["ACP-3"].diff == {"files": 2, "added": 12, "removed": 3}
    assert stat.transient
    # an issue the state does not know of gets no view from a stat alone
    state.apply(Event("review_stat", {"identifier": "GONE-1", "files": 1, "added": 1,
                                      "removed": 0, "at": 1.0}))
    assert "GONE-1" not in state.issues.issues
