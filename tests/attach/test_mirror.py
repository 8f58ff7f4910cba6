"""The change feed over the wire and the mirror that reads it: a real hub on 127.0.0.1 over a
real SQLite state folder, a `MirroredRuntime` connected with the operator token."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from marrow_tui.attach.mirror import MirroredRuntime
from marrow_tui.core.events import Event
from marrow_tui.core.state import State
from marrow_tui.hub import feed
from marrow_tui.hub.client import HubRefused
from marrow_tui.protocol.frames import Outcome
from marrow_tui.runtime import Runtime
from tests.attach.conftest import TOKEN
from tests.support.hub import Agent, Hub
from tests.support.waiting import until



def say(runtime: Runtime, name: str, **frame: Any) -> None:
    """A frame from `name` on the command path, as the hub hands it over."""
    runtime.handle(name, frame, None)


def emit(runtime: Runtime, *events: Event) -> None:
    """Events from a producer (the scheduler's runs), as `Producer._emit` makes them."""
    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=list(events)))


def seen(state: State) -> dict[str, Any]:
    """Every book a console reads. Left out: the idempotency cache (the hub keeps it) and
    `last_seen`, which the hub moves on each frame without an event."""
    snapshot = state.to_snapshot()
    snapshot.pop("idem")
    live = state.live_part()
    for agent in live["online"]:
        agent.pop("last_seen")
    return {"snapshot": snapshot, "live": live}


def populate(hub: Hub) -> None:
    """Claims, a board, a steering request, a run and a scheduled agent."""
    runtime = hub.runtime
    assert runtime.decider is not None
    for name in ("alice", "bob"):
        runtime.submit(runtime.decider.joined(name, ("builder",)))
    say(runtime, "alice", type="ledger_task", task_id="P1", title="design the login flow")
    say(runtime, "alice", type="ledger_task", task_id="P2", title="build it", depends_on=["P1"])
    say(runtime, "alice", type="claim", task_id="T1", paths=["src/login.py"], ttl_seconds=3600)
    say(runtime, "alice", type="checkpoint", task_id="T1", checkpoint="tests written")
    say(runtime, "bob", type="claim", task_id="T2", paths=["src/api/"], ttl_seconds=120)
    say(runtime, "bob", type="steer_ask", question="ship on Friday?", choices=["yes", "no"])
    say(runtime, "alice", type="chat", target="all", payload="login is in review")
    now = hub.clock()
    emit(runtime,
         Event("session_start", {"id": "builder-1", "agent": "builder", "started": now}),
         Event("agent_schedule", {"agent": "builder", "interval": 600.0, "running": "builder-1"}))


def caught_up(mirror: MirroredRuntime, runtime: Runtime) -> Callable[[], bool]:
    return lambda: mirror.seq == runtime.told_seq and seen(mirror.state) == seen(runtime.state)


async def test_a_mirror_loads_the_state_then_follows_every_change(hub: Hub) -> None:
    runtime = hub.runtime
    populate(hub)
    await runtime.settled()
    mirror = MirroredRuntime(hub.uri, "console-a", TOKEN)
    told: list[Event] = []
    mirror.subscribe(told.extend)
    await mirror.start()
    try:
        assert mirror.connected and mirror.loads == 1
        assert await until(caught_up(mirror, runtime))
        state = mirror.state
        assert sorted(c.task_id for c in state.claims) == ["T1", "T2"]
        assert state.claims.get("T1").checkpoint == "tests written"  # type: ignore[union-attr]
        assert sorted(state.board.tasks) == ["P1", "P2"]
        asked = state.steering.waiting()
        assert [r.question for r in asked] == ["ship on Friday?"]
        assert [s.id for s in state.sessions.running()] == ["builder-1"]
        assert state.sessions.agents["builder"].running == "builder-1"
        assert {"alice", "bob", "console-a"} <= set(state.presence.online)

        # Live: an agent's changes, a run ending, and the operator's answer sent through the
        # mirror itself (its effect comes back in the feed, as for the in-process console).
        say(runtime, "alice", type="release", task_id="T1")
        say(runtime, "bob", type="ledger_task_update", task_id="P1", status="done")
        emit(runtime, Event("session_end", {"id": "builder-1", "agent": "builder",
                                            "ended": hub.clock(), "state": "ok", "code": 0}))
        await mirror.send(type="steer_answer", id=asked[0].id, answer="yes")
        assert await until(lambda: not mirror.state.steering.open)
        assert await until(caught_up(mirror, runtime))
        assert state is mirror.state  # the object a console holds stays the one kept up
        assert sorted(c.task_id for c in state.claims) == ["T2"]
        assert state.steering.get(asked[0].id).answer == "yes"  # type: ignore[union-attr]
        assert state.sessions.by_id["builder-1"].state == "ok"
        kinds = [event.kind for event in told]
        assert {"release", "board_task", "session_end", "steer_end"} <= set(kinds)
        assert "claim" not in kinds  # what the snapshot held is not told again
    finally:
        await mirror.stop()
    assert mirror.status == "closed"


async def test_a_dropped_connection_resumes_after_the_last_event_with_none_lost_or_twice(
        hub: Hub) -> None:
    runtime = hub.runtime
    populate(hub)
    mirror = MirroredRuntime(hub.uri, "console-a", TOKEN)
    claimed: list[str] = []
    mirror.subscribe(lambda events: claimed.extend(
        e.data["task_id"] for e in events if e.kind == "claim"))
    statuses: list[str] = []

    def while_away(status: str) -> None:
        statuses.append(status)
        if status == "reconnecting" and statuses.count("reconnecting") == 1:
            # The runtime goes on while the console is away: these happen in the gap.
            for n in range(50, 80):
                say(runtime, "bob", type="claim", task_id=f"T{n}", paths=[f"gap/{n}"])

    mirror.subscribe_status(while_away)
    await mirror.start()
    try:
        for n in range(10, 40):
            say(runtime, "alice", type="claim", task_id=f"T{n}", paths=[f"before/{n}"])
        assert await until(lambda: len(claimed) == 30)
        before = mirror.seq
        connection = hub.server.sessions["console-a"]
        connection.transport.abort()  # the socket drops, from the hub's side
        assert await until(lambda: statuses.count("connected") == 2, timeout=10)
        for n in range(80, 90):
            say(runtime, "alice", type="claim", task_id=f"T{n}", paths=[f"after/{n}"])
        assert await until(caught_up(mirror, runtime))
        assert statuses[-2:] == ["reconnecting", "connected"]
        assert mirror.loads == 1  # resumed by sequence number, not a new snapshot
        assert mirror.seq > before
        expected = [f"T{n}" for n in (*range(10, 40), *range(50, 80), *range(80, 90))]
        assert claimed == expected  # every one once, in order
    finally:
        await mirror.stop()


async def test_a_resume_from_another_log_gets_a_fresh_snapshot(hub: Hub) -> None:
    runtime = hub.runtime
    populate(hub)
    await runtime.settled()
    agent = await Agent.join(hub.uri, "console-raw", operator_token=TOKEN)
    try:
        await agent.send(type="feed_request", since=1, hub_id="mrw-another")
        frame = await agent.until("feed_snapshot", "feed_resume", "error")
        assert frame["type"] == "feed_snapshot"
        assert frame["seq"] == runtime.told_seq
        await agent.send(type="feed_request", since=1, hub_id=frame["hub_id"])
        frame = await agent.until("feed_snapshot", "feed_resume", "error")
        assert frame["type"] == "feed_resume" and frame["since"] == 1
        assert [e["seq"] for e in frame["events"]] == list(range(2, runtime.told_seq + 1))
    finally:
        await agent.ws.close()


async def test_only_an_operator_reads_the_feed(hub: Hub) -> None:
    populate(hub)
    agent = await Agent.join(hub.uri, "carol")
    try:
        frame = await agent.request(("error", "feed_snapshot"), type="feed_request")
        assert frame["type"] == "error" and frame["error_code"] == "forbidden"
        assert frame["payload"] == ("Only an operator reads the change feed (feed_request): "
                                    "connect with the operator token.")
        say(hub.runtime, "alice", type="claim", task_id="T9", paths=["x"])
        await agent.until("claim_granted", task_id="T9")  # broadcasts go on as before
        assert not [f for f in agent.seen if str(f.get("type")).startswith("feed_")]
    finally:
        await agent.ws.close()
    operator = await Agent.join(hub.uri, "console-raw", operator_token=TOKEN)
    try:
        frame = await operator.request(("error", "feed_snapshot"), type="feed_request",
                                       since="yesterday")
        assert frame["type"] == "error" and frame["error_code"] == "MALFORMED"
        assert "'since' must be an integer" in frame["payload"]
    finally:
        await operator.ws.close()
    with pytest.raises(HubRefused, match="Invalid operator token"):
        await MirroredRuntime(hub.uri, "console-b", "not-the-token").start()


async def test_a_burst_of_two_thousand_events_arrives_in_a_few_frames(hub: Hub) -> None:
    runtime = hub.runtime
    populate(hub)
    agent = await Agent.join(hub.uri, "console-raw", operator_token=TOKEN)
    try:
        await agent.send(type="feed_request")
        start = (await agent.until("feed_snapshot"))["seq"]
        for n in range(2000):
            say(runtime, "alice", type="chat", target="all", payload=f"line {n}")
        frames = 0
        chats: list[str] = []
        seqs: list[int] = []
        while len(chats) < 2000:
            frame = await agent.until("feed_events")
            frames += 1
            for event in frame["events"]:
                seqs.append(event["seq"])
                if event["kind"] == "chat":
                    chats.append(event["data"]["payload"])
        assert chats == [f"line {n}" for n in range(2000)]
        assert seqs == list(range(start + 1, start + 1 + len(seqs)))
        # At most one frame per flush, whatever the rate of events: never one per event.
        assert frames <= 20, frames
        # The feed carries every change, so its connection gets no broadcast besides.
        assert not [f for f in agent.seen
                    if f.get("type") == "chat" and f["payload"].startswith("line ")]
    finally:
        await agent.ws.close()


def test_the_live_part_round_trips_through_json() -> None:
    state = State(started_at=5.0)
    for event in (
        Event("presence", {"event": "joined", "agent": "alice", "at": 6.0, "roles": ["x"]}),
        Event("agent_schedule", {"agent": "builder", "interval": 60.0, "queued": 2}),
        Event("issue_status", {"identifier": "ENG-1", "title": "t", "status": "running"}),
        Event("service_health", {"name": "db", "state": "healthy", "port": 5432}),
        Event("wait", {"waiter": "bob", "task_id": "T1", "holder": "alice"}),
    ):
        state.apply(event)
    copy = State()
    copy.load_live_part(json.loads(json.dumps(state.live_part())))
    assert copy.live_part() == state.live_part()
    assert copy.presence.online["alice"].roles == ("x",)


async def test_a_reader_that_falls_behind_gets_a_fresh_snapshot_not_a_growing_queue(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small bounds, so a hundred kilobytes stand for what a busy hub would pile up.
    monkeypatch.setattr(feed, "HOLD_BYTES", 8 * 1024)
    monkeypatch.setattr(feed, "MAX_WAITING_EVENTS", 50)
    runtime = hub.runtime
    populate(hub)
    # A reader that stops reading: its frames stay unread in a small receive buffer.
    reader = socket.create_connection(hub.server.address)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws = await connect(hub.uri, sock=reader, compression=None, max_queue=1, max_size=None)
    agent = Agent(ws, "console-slow")
    try:
        await agent.send(type="heartbeat", operator_token=TOKEN)
        await agent.send(type="feed_request")
        first = await agent.until("feed_snapshot")
        conn = hub.server.sessions["console-slow"]
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        reading = hub.server.feeds.feeds[conn]
        line = "x" * 2000
        for n in range(400):
            say(runtime, "alice", type="chat", target="all", payload=f"{n} {line}")
            await runtime.settled()
            assert len(reading.waiting) <= feed.MAX_WAITING_EVENTS
            if reading.behind:
                break
        assert reading.behind, "the reader never fell behind"
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        # It reads again: what piled up in its buffers arrives, then a fresh snapshot that
        # holds everything since, then the events after it, without a gap.
        again = await agent.until("feed_snapshot", timeout=20)
        assert again["seq"] > first["seq"]
        say(runtime, "alice", type="chat", target="all", payload="after")
        frame = await agent.until("feed_events", timeout=20)
        assert frame["events"][0]["seq"] == again["seq"] + 1
    finally:
        await ws.close()
