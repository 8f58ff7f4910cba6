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
from marrow_tui.core.steering import (
    MAX_ENDED,
    MAX_OPEN_PER_ASKER,
    MAX_UNRECEIVED,
    MAX_UNRECEIVED_PER_ASKER,
    REUSE_WINDOW,
    Request,
    SteeringBook,
)
from marrow_tui.hub.client import HubClient
from marrow_tui.hub.secrets import agent_key, operator_token

from tests.support.hub import WAIT, Agent, FakeClock, start_hub
from tests.support.hubproc import clean_env, running_hub


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
    end(book, book.decide_answer(rid, " yes ", "operator/me", 130.0, operator=True))
    request = book.get(rid)
    assert request is not None
    assert (request.state, request.answer, request.answered_by, request.ended) == (
        "answered", "yes", "operator/me", 130.0)
    assert book.undelivered("alice") == [request]
    again = book.decide_answer(rid, "no", "someone", 131.0, operator=True)
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
    end(book, book.decide_answer(rid, "yes", "op", 120.0, operator=True))
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
    empty = book.decide_answer("S1", "   ", "op", 2.0, operator=True)
    assert isinstance(empty, Refusal) and empty.reason == "empty_answer"
    unknown = book.decide_answer("S999", "x", "op", 2.0, operator=True)
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
    state.apply(state.steering.decide_answer(  # type: ignore[arg-type]
        "S2", "fine", "op", 110.0, operator=True))
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
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        listed = await ops.request(("steer_requests",), type="steer_list")
        assert [r["id"] for r in listed["requests"]] == [rid]
        answered = await ops.request(("steer_answered", "error"), type="steer_answer", id=rid,
                                     answer="yes")
        assert answered["sent"] is True and "delivered" not in answered
        reply = await alice.until("steer_reply", id=rid)
        assert (reply["state"], reply["answer"], reply["answered_by"]) == ("answered", "yes",
                                                                           "ops")
        request = hub.runtime.state.steering.get(rid)
        assert request is not None and not request.delivered  # sent is not received
        acked = await alice.request(("steer_acked", "error"), type="steer_ack", id=rid)
        assert (acked["type"], acked["delivered"]) == ("steer_acked", True)
        assert request.delivered and request.delivered_at == hub.clock.now
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
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        answered = await ops.request(("steer_answered",), type="steer_answer", id=rid,
                                     answer="later is fine")
        assert answered["sent"] is False
        back = await Agent.join(hub.uri, "alice", expect_welcome=False,
                                agent_key=agent_key(hub.state_dir, "alice"))
        hub.agents.append(back)
        reply = await back.until("steer_reply", id=rid)
        assert reply["answer"] == "later is fine"
        # steer_get by the asker of an ended request counts as its acknowledgement
        state = await back.request(("steer_state",), type="steer_get", id=rid)
        assert state["request"]["answer"] == "later is fine"
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
    ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
    await ops.request(("steer_answered",), type="steer_answer", id=first, answer="yes")
    await hub.stop()

    hub = await start_hub(tmp_path / "state")
    try:
        book = hub.runtime.state.steering
        assert book.get(second).open  # type: ignore[union-attr]
        alice = await Agent.join(hub.uri, "alice", expect_welcome=False,
                                 agent_key=agent_key(hub.state_dir, "alice"))
        hub.agents.append(alice)
        reply = await alice.until("steer_reply", id=first)  # kept across the restart
        assert reply["answer"] == "yes"
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        await ops.request(("steer_answered",), type="steer_answer", id=second, answer="no")
        assert (await alice.until("steer_reply", id=second))["answer"] == "no"
    finally:
        await hub.stop()


# ---- marrow-tui ask, a real process ------------------------------------------------------


def _op(state_dir: Path) -> str:
    """The operator token the hub made in its state dir (answering takes an operator)."""
    return operator_token(state_dir)


def _ours(state: Path, port: str = "0") -> list[str]:
    """Our hub (steering is our own vocabulary, so never another hub here)."""
    return [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1", "--port", port,
            "--state-dir", str(state)]


def _ask(uri: str, *args: str, state: Path | None = None) -> subprocess.Popen[str]:
    """`marrow-tui ask` as a run of ours would call it (with its agent key, when `state`)."""
    env = clean_env() | {"MARROW_HUB_URI": uri, "MARROW_AGENT": "scripted"}
    if state is not None:
        env["MARROW_AGENT_KEY"] = agent_key(state, "scripted")
    return subprocess.Popen([sys.executable, "-m", "marrow_tui", "ask", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _kill(proc: subprocess.Popen[str]) -> None:
    """End a child still running (a failed test), and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


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
        proc = _ask(hub.uri, "Ship it?", "--choices", "yes,no", "--context", "all green",
                    state=state)
        try:
            request = await _open_request(hub.uri)
            assert (request["question"], request["choices"]) == ("Ship it?", ["yes", "no"])
        except BaseException:
            _kill(proc)
            raise
    try:
        # The hub is gone; the question is still asked. Start it again on the same port.
        with running_hub(_ours(state, port), tmp_path) as hub:
            ops = await Agent.join(hub.uri, "ops", operator_token=_op(state))
            answered = await ops.request(("steer_answered",), type="steer_answer",
                                         id=request["id"], answer="yes")
            assert answered["type"] == "steer_answered"
            out, err = await asyncio.to_thread(proc.communicate, timeout=WAIT * 3)
            await ops.ws.close()
    finally:
        _kill(proc)  # never leave a `marrow-tui ask` behind when the test fails
    assert proc.returncode == 0, err
    assert out == "yes\n"


async def test_ask_with_a_timeout_prints_the_default(tmp_path: Path) -> None:
    with running_hub(_ours(tmp_path / "state"), tmp_path) as hub:
        proc = _ask(hub.uri, "Which?", "--timeout", "1s", "--default", "the safe one")
        try:
            out, err = await asyncio.to_thread(proc.communicate, timeout=WAIT * 2)
        finally:
            _kill(proc)
    assert proc.returncode == 0
    assert out == "the safe one\n"
    assert "using the default" in err


def test_a_key_finds_a_pending_request_but_not_one_already_received() -> None:
    book = SteeringBook()
    key = "issue/A-1:q"
    rid = ask(book, key=key, session="run-1")
    end(book, book.decide_answer(rid, "yes", "op", 120.0, operator=True))
    # answered, not yet received: any run of the issue picks it up (a restart)
    again = book.decide_ask("alice", 130.0, question="Deploy?", key=key, session="run-2")
    assert isinstance(again, Request) and again.id == rid
    end(book, book.decide_ack(rid, "alice", 1000.0))
    assert book.get(rid).delivered_at == 1000.0  # type: ignore[union-attr]

    def asks(now: float, session: str) -> Event | Refusal | Request:
        return book.decide_ask("alice", now, question="Deploy?", key=key, session=session)

    # received: a retry by the same run just after gets the same request; the window counts
    # from the receipt, not from the answer (ended at 120)
    retry = asks(1000.0 + REUSE_WINDOW, "run-1")
    assert isinstance(retry, Request) and retry.id == rid
    for other in ("run-2", ""):  # another run, or one that does not say, asks afresh
        fresh = asks(1001.0, other)
        assert isinstance(fresh, Event) and fresh.data["id"] != rid
    late = asks(1000.0 + REUSE_WINDOW + 1, "run-1")  # the same run, later: afresh
    assert isinstance(late, Event)
    # an old `steer_delivered` with no time counts from the end
    old = SteeringBook()
    rid = ask(old, key=key, session="run-1")
    end(old, old.decide_answer(rid, "yes", "op", 120.0, operator=True))
    old.apply(Event("steer_delivered", {"id": rid}))
    assert old.get(rid).delivered_at == 120.0  # type: ignore[union-attr]


def test_an_end_without_an_answer_is_never_handed_to_another_run() -> None:
    """An issue's question cancelled (or timed out with no default) while its run was gone:
    the next run of the issue asks afresh; the run that asked still gets its end."""
    book = SteeringBook()
    key = "issue/A-1:q"
    cancelled = ask(book, key=key, session="run-1")
    end(book, book.decide_cancel(cancelled, "orchestrator", 110.0, operator=True))
    nothing = ask(book, key="issue/A-1:other", session="run-1", timeout=5.0)
    end(book, book.sweep(106.0)[0])
    assert [r.id for r in book.undelivered("alice")] == [cancelled, nothing]

    def asks(session: str, question_key: str = key) -> Event | Refusal | Request:
        return book.decide_ask("alice", 120.0, question="Deploy?", key=question_key,
                               session=session)

    same = asks("run-1")
    assert isinstance(same, Request) and same.id == cancelled
    for stale in (key, "issue/A-1:other"):
        fresh = asks("run-2", stale)
        assert isinstance(fresh, Event), fresh
        assert fresh.data["id"] not in (cancelled, nothing)


def test_only_the_asker_acknowledges_an_ended_request_and_twice_is_once() -> None:
    book = SteeringBook()
    rid = ask(book)
    still = book.decide_ack(rid, "alice", 101.0)
    assert isinstance(still, Refusal) and still.reason == "still_open"
    end(book, book.decide_answer(rid, "yes", "op", 110.0, operator=True))
    other = book.decide_ack(rid, "bob", 111.0)
    assert isinstance(other, Refusal) and other.reason == "not_asker"
    unknown = book.decide_ack("S99", "alice", 111.0)
    assert isinstance(unknown, Refusal) and unknown.reason == "unknown_request"
    end(book, book.decide_ack(rid, "alice", 112.0))
    assert book.decide_ack(rid, "alice", 113.0) is None  # nothing more to record
    assert book.get(rid).delivered_at == 112.0  # type: ignore[union-attr]


def answered(book: SteeringBook, asker: str, now: float) -> str:
    rid = ask(book, asker, now)
    end(book, book.decide_answer(rid, "yes", "op", now, operator=True))
    return rid


def test_an_answer_not_received_outlives_thousands_received_by_others() -> None:
    """Answers that were received make room first, however old the unreceived one is."""
    book = SteeringBook()
    waiting = answered(book, "alice", 1.0)
    for n in range(4 * MAX_ENDED + 100):
        rid = answered(book, "bob", 2.0 + n)
        book.apply(Event("steer_delivered", {"id": rid}))
    assert [r.id for r in book.undelivered("alice")] == [waiting]
    # (the newest is marked received after it was retired: trimmed at the next end)
    assert sum(1 for r in book.ended.values() if r.delivered) == MAX_ENDED + 1


def test_an_asker_that_never_acknowledges_cannot_push_out_others_answers() -> None:
    book = SteeringBook()
    patient = [answered(book, f"agent{i}", 1.0 + i) for i in range(10)]
    for n in range(MAX_UNRECEIVED + 500):
        answered(book, f"careless{n % 40}", 100.0 + n)
    for i, rid in enumerate(patient):
        assert [r.id for r in book.undelivered(f"agent{i}")] == [rid]
    assert sum(1 for r in book.ended.values() if not r.delivered) <= MAX_UNRECEIVED
    own = book.undelivered("careless0")
    assert 0 < len(own) <= MAX_UNRECEIVED_PER_ASKER
    # the newest of its own answers are the ones kept
    assert own[-1].created == max(r.created for r in book.ended.values() if r.asker == "careless0")


# ---- receipt: sent is not received ----------------------------------------------------------


async def _gone(hub: Any, name: str) -> None:
    """Until the hub has seen `name` go."""
    async with asyncio.timeout(WAIT):
        while name in hub.runtime.state.presence.online:
            await asyncio.sleep(0.01)


async def test_an_answer_survives_a_late_reconnect_of_the_next_run(tmp_path: Path) -> None:
    """Ask, go away, get answered, come back 10 minutes later in the next run with the same
    key: the reply pushed while the client was still connecting is not lost."""
    clock = FakeClock()
    hub = await start_hub(tmp_path / "state", clock)
    key = "issue/A-1:deploy"
    try:
        first = HubClient(hub.uri, "alice", heartbeat_interval=None)
        await first.connect()
        asking = asyncio.create_task(first.ask_and_wait("Deploy?", request_key=key,
                                                        session="run-1"))
        async with asyncio.timeout(WAIT):
            while not hub.runtime.state.steering.open:
                await asyncio.sleep(0.01)
        [rid] = hub.runtime.state.steering.open
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
        await first.close()
        await _gone(hub, "alice")
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        answered = await ops.request(("steer_answered",), type="steer_answer", id=rid,
                                     answer="yes, deploy")
        assert answered["sent"] is False
        clock.advance(600)
        hub.runtime.tick()
        async with HubClient(hub.uri, "alice", heartbeat_interval=None,
                             agent_key=agent_key(hub.state_dir, "alice")) as second:
            reply = await asyncio.wait_for(
                second.ask_and_wait("Deploy?", request_key=key, session="run-2"), WAIT)
        assert (reply["id"], reply["state"], reply["answer"]) == (rid, "answered",
                                                                  "yes, deploy")
        book = hub.runtime.state.steering
        assert not book.open and list(book.ended) == [rid]  # one request, asked once
        request = book.get(rid)
        assert request is not None and request.delivered and request.delivered_at == clock.now
    finally:
        await hub.stop()


async def test_ask_and_wait_acknowledges_a_reply_it_waited_for(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with HubClient(hub.uri, "alice", heartbeat_interval=None) as alice:
            asking = asyncio.create_task(alice.ask_and_wait("Q?", request_key="k"))
            async with asyncio.timeout(WAIT):
                while not hub.runtime.state.steering.open:
                    await asyncio.sleep(0.01)
            [rid] = hub.runtime.state.steering.open
            hub.runtime.handle("ops", {"type": "steer_answer", "id": rid, "answer": "A"}, None,
                               operator=True)
            reply = await asyncio.wait_for(asking, WAIT)
            assert reply["answer"] == "A"
        assert hub.runtime.state.steering.get(rid).delivered  # type: ignore[union-attr]
    finally:
        await hub.stop()


async def test_a_dropped_reply_is_sent_again_on_the_next_join_until_acked(
        tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        alice = await hub.agent("alice")
        rid = (await alice.request(("steer_opened",), type="steer_ask", question="Q?"))["id"]
        await alice.ws.close()
        hub.agents.remove(alice)
        await _gone(hub, "alice")
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        await ops.request(("steer_answered",), type="steer_answer", id=rid, answer="fine")

        async def join_and_see() -> list[dict[str, Any]]:
            """Join as alice, read up to a reply of ours, leave; the steer_replies seen."""
            agent = await Agent.join(hub.uri, "alice", expect_welcome=False,
                                     agent_key=agent_key(hub.state_dir, "alice"))
            try:
                await agent.request(("steer_requests",), type="steer_list")  # a barrier
                return [f for f in agent.seen if f.get("type") == "steer_reply"]
            finally:
                await agent.ws.close()
                await _gone(hub, "alice")

        for _ in range(2):  # received and dropped on the floor: no ack, so it comes again
            [reply] = await join_and_see()
            assert (reply["id"], reply["answer"]) == (rid, "fine")
            assert not hub.runtime.state.steering.get(rid).delivered  # type: ignore[union-attr]

        bob = await hub.agent("bob")
        refused = await bob.request(("steer_acked", "error"), type="steer_ack", id=rid)
        assert (refused["type"], refused["error_code"]) == ("error", "not_asker")
        assert not hub.runtime.state.steering.get(rid).delivered  # type: ignore[union-attr]

        alice = await hub.agent("alice", agent_key=agent_key(hub.state_dir, "alice"))
        for _ in range(2):  # idempotent
            acked = await alice.request(("steer_acked", "error"), type="steer_ack", id=rid)
            assert acked["type"] == "steer_acked"
        await alice.ws.close()
        hub.agents.remove(alice)
        await _gone(hub, "alice")
        assert await join_and_see() == []  # acked: not sent again
    finally:
        await hub.stop()


async def test_a_received_answer_is_reused_by_its_own_run_only(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        alice = await hub.agent("alice")

        async def asks(session: str) -> dict[str, Any]:
            return await alice.request(("steer_opened", "error"), type="steer_ask",
                                       question="Q?", request_key="issue/A-1:q",
                                       session=session)

        rid = (await asks("run-1"))["id"]
        hub.runtime.handle("ops", {"type": "steer_answer", "id": rid, "answer": "A"}, None,
                           operator=True)
        await alice.until("steer_reply", id=rid)
        await alice.request(("steer_acked",), type="steer_ack", id=rid)
        again = await asks("run-1")  # the same run retrying: the same request
        assert (again["id"], again["state"]) == (rid, "answered")
        other = await asks("run-2")  # the next run asking the same: a new question
        assert other["id"] != rid and other["state"] == "open"
    finally:
        await hub.stop()


async def test_an_answer_is_read_only_by_its_asker_and_operators(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        alice = await hub.agent("alice")
        rid = (await alice.request(("steer_opened",), type="steer_ask", question="Key?",
                                   context="the diff: token=abc"))["id"]
        spy = await hub.agent("spy")
        listed = await spy.request(("steer_requests",), type="steer_list")
        [seen] = [r for r in listed["requests"] if r["id"] == rid]
        assert seen["question"] == "Key?" and seen["context"] == "" and seen["context_withheld"]
        ops = await hub.agent("ops", operator_token=_op(hub.state_dir))
        await ops.request(("steer_answered",), type="steer_answer", id=rid, answer="s3cret")
        got = (await spy.request(("steer_state",), type="steer_get", id=rid))["request"]
        assert got["state"] == "answered" and got["answer"] is None and got["answer_withheld"]
        assert got["context"] == "" and got["context_withheld"]
        listed = (await spy.request(("steer_requests",), type="steer_list", ended=True))
        [seen] = [r for r in listed["requests"] if r["id"] == rid]
        assert seen["answer"] is None and seen["context"] == ""
        for reader in (alice, ops):
            got = (await reader.request(("steer_state",), type="steer_get", id=rid))["request"]
            assert got["answer"] == "s3cret" and "answer_withheld" not in got
            assert got["context"] == "the diff: token=abc" and "context_withheld" not in got
    finally:
        await hub.stop()
