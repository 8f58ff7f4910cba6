"""The heartbeat rules and the session history, on plain numbers (no clock, no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marrow_tui.core.events import Event
from marrow_tui.core.sessions import MAX_BACKOFF_FACTOR, Schedule, SessionBook
from marrow_tui.core.state import State


def test_first_run_is_due_at_once() -> None:
    s = Schedule("a", 60)
    s.start(100.0)
    assert s.due(100.0)
    assert s.begin("a-1") == "heartbeat"
    assert not s.due(100.0)


def test_interval_counts_from_the_end_of_a_run() -> None:
    s = Schedule("a", 60)
    s.start(0.0)
    s.begin("a-1")
    s.finish(45.0, ok=True)  # a 45 s run
    assert s.next_at == 105.0
    assert not s.due(104.9)
    assert s.due(105.0)


def test_never_two_runs_of_one_agent() -> None:
    s = Schedule("a", 60)
    s.start(0.0)
    s.begin("a-1")
    assert not s.due(10_000.0)
    assert s.wake(5.0, "again") is False  # during a run: no second run now
    assert not s.due(10_000.0)


def test_wakes_during_a_run_collapse_into_one_follow_up() -> None:
    s = Schedule("a", 60)
    s.start(0.0)
    s.begin("a-1")
    s.wake(1.0, "first")
    s.wake(2.0, "second")
    s.wake(3.0, "third")
    s.finish(10.0, ok=True)
    assert s.due(10.0)
    assert s.begin("a-2") == "third"  # the last reason is the one shown
    s.finish(12.0, ok=True)
    assert s.next_at == 72.0  # and only one follow-up: back to the heartbeat


def test_wake_when_idle_runs_now() -> None:
    s = Schedule("a", 3600)
    s.start(0.0)
    s.begin("a-1")
    s.finish(1.0, ok=True)
    assert not s.due(2.0)
    assert s.wake(2.0, "operator") is True
    assert s.due(2.0)
    assert s.begin("a-2") == "operator"


def test_failures_back_off_and_success_resets() -> None:
    s = Schedule("a", 100)
    s.start(0.0)
    waits = []
    t = 0.0
    for n in range(6):
        s.begin(f"a-{n}")
        s.finish(t, ok=False)
        waits.append(s.next_at - t)
        t = s.next_at
    assert waits == [100, 200, 400, 800, 800, 800]
    assert max(waits) == 100 * MAX_BACKOFF_FACTOR
    s.begin("a-ok")
    s.finish(t, ok=True)
    assert s.failures == 0
    assert s.next_at == t + 100


def test_a_manual_wake_overrides_the_backoff() -> None:
    s = Schedule("a", 100)
    s.start(0.0)
    for n in range(4):
        s.begin(f"a-{n}")
        s.finish(0.0, ok=False)
    assert s.next_at == 800.0
    assert s.wake(1.0, "try now")
    assert s.due(1.0)


def test_disabled_agent_never_runs_and_enabling_runs_it_now() -> None:
    s = Schedule("a", 60, enabled=False)
    s.start(0.0)
    assert s.next_at is None and not s.due(1e9)
    s.reconfigure(50.0, 60, enabled=True)
    assert s.due(50.0)


def test_new_interval_counts_from_the_last_end() -> None:
    s = Schedule("a", 600)
    s.start(0.0)
    s.begin("a-1")
    s.finish(10.0, ok=True)
    s.reconfigure(20.0, 60, enabled=True)
    assert s.next_at == 70.0
    # a change during a run applies when it ends
    s.begin("a-2")
    s.reconfigure(80.0, 300, enabled=True)
    s.finish(90.0, ok=True)
    assert s.next_at == 390.0


def test_disabling_during_a_run_lets_it_finish_then_stops() -> None:
    s = Schedule("a", 60)
    s.start(0.0)
    s.begin("a-1")
    s.reconfigure(1.0, 60, enabled=False)
    assert s.running == "a-1"
    s.finish(5.0, ok=True)
    assert s.next_at is None


@given(st.lists(st.sampled_from(["wake", "tick", "end_ok", "end_fail", "toggle"]),
                max_size=60))
def test_schedule_invariants(steps: list[str]) -> None:
    """Whatever happens: at most one run, and an enabled idle agent always has a next run."""
    s = Schedule("a", 60)
    now = 0.0
    s.start(now)
    n = 0
    for step in steps:
        now += 7.0
        if step == "wake" and s.enabled:
            s.wake(now, "w")
        elif step == "tick" and s.due(now):
            n += 1
            s.begin(f"a-{n}")
        elif step.startswith("end") and s.running is not None:
            s.finish(now, ok=step == "end_ok")
        elif step == "toggle":
            s.reconfigure(now, 60, enabled=not s.enabled)
        if s.running is not None:
            assert s.next_at is None and not s.due(now + 1e9)
        elif s.enabled:
            assert s.next_at is not None and s.next_at <= now + 60 * MAX_BACKOFF_FACTOR
        else:
            assert s.next_at is None


def _start(sid: str, agent: str = "a", at: float = 1.0) -> Event:
    return Event("session_start", {"id": sid, "agent": agent, "started": at,
                                   "trigger": "heartbeat", "stdout": "o", "stderr": "e",
                                   "tasks": []})


def _end(sid: str, agent: str = "a", at: float = 2.0, state: str = "ok") -> Event:
    return Event("session_end", {"id": sid, "agent": agent, "started": 1.0, "ended": at,
                                 "state": state, "code": 0, "reason": "exit 0",
                                 "last_line": "done"})


def test_session_book_history_is_bounded_per_agent() -> None:
    book = SessionBook(history=3)
    for n in range(10):
        book.apply(_start(f"a-{n}", at=float(n)))
        book.apply(_end(f"a-{n}", at=n + 0.5))
    book.apply(_start("b-0", agent="b"))
    assert [s.id for s in book.of_agent("a")] == ["a-9", "a-8", "a-7"]
    assert [s.id for s in book.running()] == ["b-0"]


def test_running_sessions_survive_a_snapshot_and_end_as_interrupted() -> None:
    state = State()
    state.apply(_start("a-1"))
    state.apply(_end("a-1"))
    state.apply(_start("a-2", at=3.0))
    state.apply(Event("session_progress", {"id": "a-2", "last_line": "working"}))
    restored = State()
    restored.load_snapshot(state.to_snapshot())
    events = restored.sessions.interrupt(now=99.0)
    assert [e.data["id"] for e in events] == ["a-2"]
    for event in events:
        restored.apply(event)
    a2 = restored.sessions.by_id["a-2"]
    assert (a2.state, a2.ended, a2.last_line) == ("interrupted", 99.0, "working")
    assert restored.sessions.by_id["a-1"].state == "ok"
    assert restored.sessions.running() == []


def test_usage_adds_up_tokens_and_cost_per_agent_and_keeps_occupancy_out() -> None:
    book = SessionBook()
    for sid, agent, usage in (("a-1", "DEMO-1", {"input": 100, "output": 20, "total": 120,
                                                 "context_used": 9000, "cost": 0.25,
                                                 "currency": "USD"}),
                              ("a-2", "DEMO-1", {"input": 50, "output": 5, "total": 55,
                                                 "context_used": 4000, "cost": 0.5,
                                                 "currency": "USD"}),
                              ("b-1", "alpha", {"context_used": 100})):
        book.apply(Event("session_start", {"id": sid, "agent": agent, "started": 1.0}))
        book.apply(Event("session_turn", {"id": sid, "phase": "start", "turn": 1}))
        book.apply(Event("session_turn", {"id": sid, "phase": "end", "turn": 1,
                                          "usage": usage}))
    assert book.by_id["a-1"].usage["context_used"] == 9000  # a session keeps its latest
    assert book.usage_by_agent() == {
        "DEMO-1": {"input": 150, "output": 25, "total": 175, "cost": 0.75, "currency": "USD"}}
