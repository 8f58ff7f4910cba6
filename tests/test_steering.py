"""Steering: the request lifecycle on plain numbers, then over real sockets with a fake clock,
across disconnects and restarts, and through `marrow-tui ask` as a real process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from marrow_tui.core.events import Event, Refusal
from marrow_tui.core.state import State
from marrow_tui.core.steering import MAX_OPEN_PER_ASKER, Request, SteeringBook

from .conftest import WAIT, Agent, FakeClock, start_hub
from .hubproc import clean_env, running_hub


def ask(book: SteeringBook, asker: str = "alice", now: float = 100.0, **kw: Any) -> str:
    kw.setdefault("question", "Deploy?")
    event = book.decide_ask(asker, now, **kw)
    assert isinstance(event, Event), event
    book.apply(event)
    return str(event.data["id"])


def end(book: SteeringBook, decided: Event | Refusal) -> None:
    assert isinstance(decided, Event), decided
    book.apply(decided)


# ---- the lifecycle, pure ----------------------------------------------------------------


def test_a_request_ends_once_with_its_answer() -> None:
    book = SteeringBook()
    rid = ask(book, question="  Deploy now?  ", context="tests green", choices=["yes", " no "])
    request = book.get(rid)
    assert request is not None and request.open
    assert (request.question, request.choices) == ("Deploy now?", ["yes", "no"])
    end(book, book.decide_answer(rid, " yes ", "operator/me", 130.0))
    request = book.get(rid)
    assert request is not None
    assert (request.state, request.answer, request.answered_by, request.ended) == (
        "answered", "yes", "operator/me", 130.0)
    assert book.undelivered("alice") == [request]
    again = book.decide_answer(rid, "no", "someone", 131.0)
    assert isinstance(again, Refusal) and again.reason == "not_open"
    book.apply(Event("steer_delivered", {"id": rid}))
    assert book.undelivered("alice") == []


def test_a_timeout_ends_it_with_the_default_and_says_so() -> None:
    book = SteeringBook()
    with_default = ask(book, timeout=60, default="no")
    without = ask(book, now=110.0, timeout=60)
    assert book.next_deadline() == 160.0
    assert book.sweep(159.9) == []
    [first] = book.sweep(160.0)
    assert first.data | {"at": 0} == {"id": with_default, "state": "timed_out", "answer": "no",
                                      "by": "hub:timeout", "at": 0, "default_used": True}
    book.apply(first)
    [second] = book.sweep(500.0)
    assert second.data["answer"] is None and second.data["default_used"] is False
    book.apply(second)
    assert book.next_deadline() is None and not book.open
    ids = [r.id for r in book.undelivered("alice")]
    assert ids == [with_default, without]


def test_an_answer_before_the_deadline_wins() -> None:
    book = SteeringBook()
    rid = ask(book, timeout=60, default="no")
    end(book, book.decide_answer(rid, "yes", "op", 120.0))
    assert book.sweep(1000.0) == [] and book.next_deadline() is None


def test_only_the_asker_or_the_operator_cancels() -> None:
    book = SteeringBook()
    rid = ask(book)
    refused = book.decide_cancel(rid, "mallory", 101.0)
    assert isinstance(refused, Refusal) and refused.reason == "not_asker"
    end(book, book.decide_cancel(rid, "operator/me", 101.0, operator=True))
    assert book.get(rid).state == "cancelled"  # type: ignore[union-attr]
    rid2 = ask(book)
    end(book, book.decide_cancel(rid2, "alice", 102.0))


def test_bad_requests_are_refused() -> None:
    book = SteeringBook()
    cases = [({"question": "  "}, "bad_question"), ({"question": "x" * 5000}, "too_long"),
             ({"question": "q", "choices": [str(n) for n in range(30)]}, "bad_choices"),
             ({"question": "q", "timeout": -1}, "bad_timeout"),
             ({"question": "q", "default": "x"}, "bad_default")]
    for kwargs, reason in cases:
        refused = book.decide_ask("alice", 1.0, **kwargs)
        assert isinstance(refused, Refusal) and refused.reason == reason, kwargs
    for _ in range(MAX_OPEN_PER_ASKER):
        ask(book)
    refused = book.decide_ask("alice", 1.0, question="one more")
    assert isinstance(refused, Refusal) and refused.reason == "too_many_open"
    empty = book.decide_answer("S1", "   ", "op", 2.0)
    assert isinstance(empty, Refusal) and empty.reason == "empty_answer"
    unknown = book.decide_answer("S999", "x", "op", 2.0)
    assert isinstance(unknown, Refusal) and unknown.reason == "unknown_request"


def test_the_same_key_finds_the_same_request() -> None:
    book = SteeringBook()
    rid = ask(book, key="run-7:q1")
    again = book.decide_ask("alice", 200.0, question="Deploy?", key="run-7:q1")
    assert isinstance(again, Request) and again.id == rid
    other = book.decide_ask("bob", 200.0, question="Deploy?", key="run-7:q1")
    assert isinstance(other, Event)  # keys are per asker


def test_requests_survive_a_snapshot() -> None:
    state = State()
    opened = state.steering.decide_ask("alice", 100.0, question="Q?", timeout=60.0,
                                       default="d")
    assert isinstance(opened, Event)
    state.apply(opened)
    answered = state.steering.decide_ask("bob", 100.0, question="R?")
    assert isinstance(answered, Event)
    state.apply(answered)
    state.apply(state.steering.decide_answer("S2", "fine", "op", 110.0))  # type: ignore[arg-type]
    restored = State()
    restored.load_snapshot(state.to_snapshot())
    assert restored.steering.next_deadline() == 160.0
    assert [r.id for r in restored.steering.undelivered("bob")] == ["S2"]
    new = restored.steering.decide_ask("carol", 120.0, question="S?")
    assert isinstance(new, Event) and new.data["id"] == "S3"


# ---- over the wire ----------------------------------------------------------------------


async def test_ask_answer_over_the_wire(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        alice = await hub.agent("alice")
        opened = await alice.request(("steer_opened", "error"), type="steer_ask",
                                     question="Deploy now?", choices=["yes", "no"],
                                     task_id="T1")
        rid = opened["id"]
        ops = await hub.agent("ops")
        listed = await ops.request(("steer_requests",), type="steer_list")
        assert [r["id"] for r in listed["requests"]] == [rid]
        answered = await ops.request(("steer_answered", "error"), type="steer_answer", id=rid,
                                     answer="yes")
        assert answered["delivered"] is True
        reply = await alice.until("steer_reply", id=rid)
        assert (reply["state"], reply["answer"], reply["answered_by"]) == ("answered", "yes",
                                                                           "ops")
        again = await ops.request(("steer_answered", "error"), type="steer_answer", id=rid,
                                  answer="no")
        assert again["type"] == "error" and again["error_code"] == "not_open"
        bad = await alice.request(("error", "steer_opened"), type="steer_ask",
                                  question="q", choices="a,b", timeout_seconds="soon")
        assert "Malformed frame" in bad["payload"]
    finally:
        await hub.stop()


async def test_an_answer_waits_for_an_absent_asker(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        alice = await hub.agent("alice")
        rid = (await alice.request(("steer_opened",), type="steer_ask", question="Q?"))["id"]
        await alice.ws.close()
        hub.agents.remove(alice)
        async with asyncio.timeout(WAIT):  # until the hub has seen alice go
            while "alice" in hub.runtime.state.presence.online:
                await asyncio.sleep(0.01)
        ops = await hub.agent("ops")
        answered = await ops.request(("steer_answered",), type="steer_answer", id=rid,
                                     answer="later is fine")
        assert answered["delivered"] is False
        back = await Agent.join(hub.uri, "alice", expect_welcome=False)
        hub.agents.append(back)
        reply = await back.until("steer_reply", id=rid)
        assert reply["answer"] == "later is fine"
        assert hub.runtime.state.steering.get(rid).delivered  # type: ignore[union-attr]
    finally:
        await hub.stop()


async def test_a_timeout_delivers_the_default(tmp_path: Path) -> None:
    clock = FakeClock()
    hub = await start_hub(tmp_path / "state", clock)
    try:
        alice = await hub.agent("alice")
        rid = (await alice.request(("steer_opened",), type="steer_ask", question="Q?",
                                   timeout_seconds=1800, default="skip it"))["id"]
        clock.advance(1799)
        hub.runtime.tick()
        clock.advance(1)
        hub.runtime.tick()
        reply = await alice.until("steer_reply", id=rid)
        assert (reply["state"], reply["answer"], reply["default_used"]) == (
            "timed_out", "skip it", True)
    finally:
        await hub.stop()


async def test_requests_and_answers_survive_a_restart(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    alice = await hub.agent("alice")
    first = (await alice.request(("steer_opened",), type="steer_ask", question="A?"))["id"]
    second = (await alice.request(("steer_opened",), type="steer_ask", question="B?"))["id"]
    await alice.ws.close()
    hub.agents.remove(alice)
    ops = await hub.agent("ops")
    await ops.request(("steer_answered",), type="steer_answer", id=first, answer="yes")
    await hub.stop()

    hub = await start_hub(tmp_path / "state")
    try:
        book = hub.runtime.state.steering
        assert book.get(second).open  # type: ignore[union-attr]
        alice = await Agent.join(hub.uri, "alice", expect_welcome=False)
        hub.agents.append(alice)
        reply = await alice.until("steer_reply", id=first)  # kept across the restart
        assert reply["answer"] == "yes"
        ops = await hub.agent("ops")
        await ops.request(("steer_answered",), type="steer_answer", id=second, answer="no")
        assert (await alice.until("steer_reply", id=second))["answer"] == "no"
    finally:
        await hub.stop()


# ---- marrow-tui ask, a real process ------------------------------------------------------


def _ours(state: Path, port: str = "0") -> list[str]:
    """Our hub (steering is our own vocabulary, so never another hub here)."""
    return [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1", "--port", port,
            "--state-dir", str(state)]


def _ask(uri: str, *args: str) -> subprocess.Popen[str]:
    env = clean_env() | {"MARROW_HUB_URI": uri, "MARROW_AGENT": "scripted"}
    return subprocess.Popen([sys.executable, "-m", "marrow_tui", "ask", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


async def _open_request(uri: str) -> dict[str, Any]:
    ops = await Agent.join(uri, "ops")
    try:
        async with asyncio.timeout(WAIT):
            while True:
                listed = await ops.request(("steer_requests",), type="steer_list")
                if listed["requests"]:
                    return dict(listed["requests"][0])
                await asyncio.sleep(0.02)
    finally:
        await ops.ws.close()


async def test_ask_prints_the_answer_even_across_a_hub_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_hub(_ours(state), tmp_path) as hub:
        port = hub.uri.rsplit(":", 1)[1]
        proc = _ask(hub.uri, "Ship it?", "--choices", "yes,no", "--context", "all green")
        request = await _open_request(hub.uri)
        assert (request["question"], request["choices"]) == ("Ship it?", ["yes", "no"])
    # The hub is gone; the question is still asked. Start it again on the same port.
    with running_hub(_ours(state, port), tmp_path) as hub:
        ops = await Agent.join(hub.uri, "ops")
        answered = await ops.request(("steer_answered",), type="steer_answer",
                                     id=request["id"], answer="yes")
        assert answered["type"] == "steer_answered"
        out, err = await asyncio.to_thread(proc.communicate, timeout=WAIT * 3)
        await ops.ws.close()
    assert proc.returncode == 0, err
    assert out == "yes\n"


async def test_ask_with_a_timeout_prints_the_default(tmp_path: Path) -> None:
    with running_hub(_ours(tmp_path / "state"), tmp_path) as hub:
        proc = _ask(hub.uri, "Which?", "--timeout", "1s", "--default", "the safe one")
        out, err = await asyncio.to_thread(proc.communicate, timeout=WAIT * 2)
    assert proc.returncode == 0
    assert out == "the safe one\n"
    assert "using the default" in err


def test_a_key_finds_a_pending_request_but_not_one_already_received() -> None:
    book = SteeringBook()
    rid = ask(book, key="issue/A-1:q")
    end(book, book.decide_answer(rid, "yes", "op", 120.0))
    again = book.decide_ask("alice", 130.0, question="Deploy?", key="issue/A-1:q")
    assert isinstance(again, Request) and again.id == rid  # answered, not yet received
    book.apply(Event("steer_delivered", {"id": rid}))
    retry = book.decide_ask("alice", 140.0, question="Deploy?", key="issue/A-1:q")
    assert isinstance(retry, Request) and retry.id == rid  # a retry just after: the same
    fresh = book.decide_ask("alice", 120.0 + 301, question="Deploy?", key="issue/A-1:q")
    assert isinstance(fresh, Event) and fresh.data["id"] != rid  # later: ask afresh
