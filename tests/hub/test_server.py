"""The hub over real WebSocket connections on 127.0.0.1, several clients at once."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from marrow_tui.hub.secrets import agent_key
from marrow_tui.hub.server import ConfigError, HubOptions

from tests.support.hub import Agent, Hub, start_hub

# ---- names, presence, auth ---------------------------------------------------------------


async def test_presence_is_broadcast_on_join_and_leave(hub: Hub) -> None:
    alice = await hub.agent("demo/alice", roles=["demo/reviewer"])
    bob = await hub.agent("demo/bob")
    joined = await alice.until("presence_update", agent="demo/bob")
    assert joined["event"] == "joined"
    assert joined["online_agents"] == ["demo/alice", "demo/bob"]
    who = await bob.request(("who_snapshot",), type="who_request")
    assert who["online_agents"] == ["demo/alice", "demo/bob"]
    assert who["agent_roles"] == {"demo/alice": ["demo/reviewer"]}
    await bob.ws.close()
    left = await alice.until("presence_update", agent="demo/bob", event="left")
    assert left["online_agents"] == ["demo/alice"]


async def test_duplicate_name_is_refused_with_4009(hub: Hub) -> None:
    await hub.agent("demo/alice")
    twin = await Agent.join(hub.uri, "demo/alice", expect_welcome=False)
    refusal = await twin.until("name_conflict")
    assert "already online" in refusal["payload"]
    assert await twin.closed() == (4009, "name conflict")


async def test_name_switch_is_refused_with_4009(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    await alice.ws.send(json.dumps({"sender": "demo/mallory", "type": "who_request"}))
    assert (await alice.until("name_conflict"))["payload"].startswith("Sender name switch")
    assert await alice.closed() == (4009, "name switch")


@pytest.mark.parametrize("name", ["SynapseHub", "synapsehub", "bob@otherhub", "operator", "Operator"])
async def test_reserved_names_are_refused(hub: Hub, name: str) -> None:
    agent = await Agent.join(hub.uri, name, expect_welcome=False)
    await agent.until("name_conflict")
    assert await agent.closed() == (4009, "reserved identity")


@pytest.mark.parametrize(("name", "shown", "problem"), [
    ("demo/eve\x1b]0;pwned\x07", "demo/eve\\x1b]0;pwned\\x07",
     "a control character (U+001B)"),
    ("demo/eve\nforged", "demo/eve\\nforged", "a control character (U+000A)"),
    ("demo/\u202eeve", "demo/\\u202eeve", "a bidirectional control (U+202E)"),
    ("demo/\ud800eve", "demo/\\ud800eve", "an unpaired surrogate (U+D800)"),
])
async def test_a_name_with_a_control_character_is_refused_at_registration(
        hub: Hub, name: str, shown: str, problem: str) -> None:
    agent = await Agent.join(hub.uri, name, expect_welcome=False)
    refusal = await agent.until("name_conflict")
    assert refusal["payload"] == (
        f"Name '{shown}' holds {problem}; an agent name must be one line of visible text, "
        "without control characters, line breaks, bidi controls or unpaired surrogates.")
    assert await agent.closed() == (4009, "invalid name")
    assert name not in hub.runtime.state.presence.online


async def test_a_name_with_brackets_or_any_script_is_fine(hub: Hub) -> None:
    agent = await hub.agent("demo/[/x] ünïcödé 日本 😀")
    who = await agent.request(("who_snapshot",), type="who_request")
    assert who["online_agents"] == ["demo/[/x] ünïcödé 日本 😀"]


async def test_takeover_evicts_the_old_connection(hub: Hub) -> None:
    old = await hub.agent("demo/alice")
    # a takeover proves it is the agent (its key); without proof see test_operator.py
    new = await Agent.join(hub.uri, "demo/alice", takeover=True,
                           agent_key=agent_key(hub.state_dir, "demo/alice"))
    assert await old.closed() == (4010, "superseded")
    who = await new.request(("who_snapshot",), type="who_request")
    assert who["online_agents"] == ["demo/alice"]


async def test_token_is_required_and_checked(tmp_path) -> None:
    h = await start_hub(tmp_path / "s", token="s3cret")
    try:
        nobody = await Agent.join(h.uri, "t/a", expect_welcome=False)
        assert (await nobody.until("auth_denied"))["payload"] == "Authentication token required."
        assert await nobody.closed() == (4010, "auth denied")
        wrong = await Agent.join(h.uri, "t/b", expect_welcome=False, token="nope")
        assert (await wrong.until("auth_denied"))["payload"] == "Invalid authentication token."
        assert await wrong.closed() == (4010, "auth denied")
        good = await h.agent("t/c", token="s3cret")
        who = await good.request(("who_snapshot",), type="who_request")
        assert who["online_agents"] == ["t/c"]
    finally:
        await h.stop()


@pytest.mark.parametrize("token", ["\ud800", "s3cret\udfff"])
async def test_a_token_that_is_not_utf8_text_is_refused_with_4010(tmp_path, token) -> None:
    h = await start_hub(tmp_path / "s", token="s3cret")
    try:
        odd = await Agent.join(h.uri, "t/a", expect_welcome=False, token=token)
        refusal = await odd.until("auth_denied")
        assert refusal["payload"] == "Invalid authentication token: it is not valid UTF-8 text."
        assert await odd.closed() == (4010, "auth denied")
        good = await h.agent("t/c", token="s3cret")  # the hub is still serving
        assert (await good.request(("who_snapshot",), type="who_request"))["online_agents"] \
            == ["t/c"]
    finally:
        await h.stop()


@pytest.mark.parametrize("token", [None, "s3cret"])
async def test_malformed_frames_do_not_restart_the_registration_deadline(tmp_path,
                                                                         token) -> None:
    """The deadline counts from the connect: a socket that keeps sending junk is still closed."""
    h = await start_hub(tmp_path / "s", token=token, registration_timeout=0.3)
    try:
        async with connect(h.uri, compression=None) as ws:
            closed = False
            async with asyncio.timeout(10):
                while not closed:
                    try:
                        await ws.send("{not json")
                        while json.loads(await ws.recv())["type"] != "error":
                            pass  # the welcome of an open hub
                    except ConnectionClosed:
                        closed = True
            rcvd = ws.protocol.close_rcvd
            assert rcvd is not None
            reason = "auth timeout" if token else "registration timeout"
            assert (rcvd.code, rcvd.reason) == (4012, reason)
    finally:
        await h.stop()


async def test_silent_socket_is_closed_with_4012(tmp_path) -> None:
    h = await start_hub(tmp_path / "s", registration_timeout=0.2)
    try:
        async with connect(h.uri, compression=None) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.wait_closed()
            assert ws.protocol.close_rcvd is not None
            assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4012, "registration timeout")
    finally:
        await h.stop()


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="without a token"):
        HubOptions(host="0.0.0.0").check()
    HubOptions(host="0.0.0.0", token="x").check()
    assert HubOptions(host="127.0.0.1").effective_rate() == 0
    assert HubOptions(host="0.0.0.0", token="x").effective_rate() > 0


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "Malformed JSON."),
        ("[1, 2]", "Malformed frame: expected a JSON object."),
        ('{"type": "claim", "task_id": "x", "v": NaN}', "Malformed JSON."),
        ('{"type": 5}', "Malformed frame: 'type' must be a string."),
        ('{"type": "claim", "task_id": "T", "paths": [1]}',
         "Malformed frame: 'paths' must be a list of strings."),
        ('{"type": "no_such_verb"}', "Unknown message type 'no_such_verb'."),
        ('{"type": "chat", "x": ' + "[" * 80 + "]" * 80 + "}",
         "Malformed frame: nested deeper than 64 levels."),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    hub: Hub, raw: str, expected: str
) -> None:
    alice = await hub.agent("demo/alice")
    await alice.ws.send(raw)
    assert (await alice.until("error"))["payload"] == expected
    who = await alice.request(("who_snapshot",), type="who_request")
    assert who["online_agents"] == ["demo/alice"]
    assert len(hub.runtime.state.claims) == 0


async def test_oversized_frame_closes_with_1009(tmp_path) -> None:
    h = await start_hub(tmp_path / "s", max_frame_bytes=4096)
    try:
        alice = await h.agent("demo/alice")
        await alice.send(type="chat", payload="x" * 8000)
        code, _ = await alice.closed()
        assert code == 1009
    finally:
        await h.stop()


async def test_rate_limit_refuses_frames_beyond_the_burst(tmp_path) -> None:
    h = await start_hub(tmp_path / "s", rate=0.001, burst=2)
    try:
        alice = await h.agent("demo/alice")
        for _ in range(3):
            await alice.send(type="who_request")
        await alice.until("who_snapshot")
        await alice.until("who_snapshot")
        limited = await alice.until("error")
        assert (limited["payload"], limited["error_code"]) == ("Rate limit exceeded.",
                                                                "RATE_LIMITED")
    finally:
        await h.stop()


# ---- claims ------------------------------------------------------------------------------


async def test_overlapping_claims_are_refused_and_grants_broadcast(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", worktree="main",
                                paths=["src/auth.py", "./src/util/"], note="edit auth")
    assert grant["paths"] == ["src/auth.py", "src/util"]
    assert grant["target"] == "all" and grant["epoch"] == 1 and grant["status"] == "claimed"
    seen_by_bob = await bob.until("claim_granted", task_id="T1")
    assert seen_by_bob["owner"] == "demo/alice"
    denied = await bob.request(("claim_denied",), type="claim", task_id="T2", worktree="main",
                               paths=["src/util/deep/x.py"])
    assert denied["reason_code"] == "SCOPE_CONFLICT"
    assert denied["payload"] == "Task 'T2' file scope conflicts with 'T1' held by demo/alice."
    live = await bob.request(("claim_denied",), type="claim", task_id="T1", paths=["elsewhere"])
    assert live["reason_code"] == "LEASE_LIVE"
    other_tree = await bob.request(("claim_granted",), type="claim", task_id="T3",
                                   worktree="feature", paths=["src/util"])
    assert other_tree["epoch"] == 2


async def test_idem_key_replays_byte_identical_and_mutates_once(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    frame = {"type": "claim", "task_id": "K1", "worktree": "w", "paths": ["p"], "idem_key": "A"}
    await alice.send(**frame)
    first = await alice.raw_until("claim_granted")
    await alice.send(**frame)
    second = await alice.raw_until("claim_granted")
    assert first == second
    await alice.send(**{**frame, "paths": ["q"]})
    conflict = await alice.until("error")
    assert conflict["error_code"] == "idempotency_conflict"
    assert hub.runtime.state.claims.epoch == 1
    rows = sqlite3.connect(hub.state_dir / "events.db").execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'claim'").fetchone()
    assert rows == (1,)


async def test_reply_is_sent_only_after_its_event_is_committed(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    db = sqlite3.connect(hub.state_dir / "events.db")
    for n in range(20):
        grant = await alice.request(("claim_granted",), type="claim", task_id=f"T{n}",
                                    paths=[f"f{n}"])
        row = db.execute("SELECT data FROM events WHERE kind='claim' ORDER BY seq DESC LIMIT 1"
                         ).fetchone()
        assert row is not None and json.loads(row[0])["epoch"] == grant["epoch"]


async def test_concurrent_mutations_share_commits(hub: Hub) -> None:
    agents = [await hub.agent(f"bench/a{i}") for i in range(30)]
    before_events, before_commits = hub.runtime.log.durable_seq, hub.runtime.log.commits
    await asyncio.gather(*(a.send(type="claim", task_id=f"T{i}", paths=[f"f{i}"])
                           for i, a in enumerate(agents)))
    await asyncio.gather(*(a.until("claim_granted", task_id=f"T{i}")
                           for i, a in enumerate(agents)))
    events = hub.runtime.log.durable_seq - before_events
    commits = hub.runtime.log.commits - before_commits
    assert events == 30
    assert commits < events


async def test_expiry_fires_on_the_timer_and_is_announced(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"],
                                ttl_seconds=1)
    assert grant["lease_expires_at"] == pytest.approx(hub.clock() + 30)
    await alice.request(("checkpoint_saved",), type="checkpoint", task_id="T1",
                        checkpoint="step=3")
    assert hub.runtime._timer_at == grant["lease_expires_at"]
    hub.clock.advance(31)
    hub.runtime.tick()
    expired = await bob.until("lease_expired", task_id="T1")
    assert expired["owner"] == "demo/alice" and expired["checkpoint_retained"] is True
    assert hub.runtime.state.claims.get("T1") is None
    inherited = await bob.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    assert inherited["checkpoint"] == "step=3" and inherited["owner"] == "demo/bob"


async def test_handoff_needs_an_online_target_and_fences_the_old_owner(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    nobody = await alice.request(("handoff_denied",), type="handoff", task_id="T1",
                                 to_agent="demo/nobody")
    assert nobody["payload"] == "Handoff target 'demo/nobody' is not online."
    await alice.request(("task_updated",), type="task_update", task_id="T1", status="working")
    moved = await alice.request(("handoff_granted",), type="handoff", task_id="T1",
                                to_agent="demo/bob", note="please finish")
    assert moved["owner"] == "demo/bob" and moved["previous_owner"] == "demo/alice"
    assert moved["epoch"] > grant["epoch"] and moved["version"] == 0
    assert moved["status"] == "working"
    note = await bob.until("ledger_progress_posted", task_id="T1")
    assert note["note"]["text"] == "handed off to demo/bob: please finish"
    stale = await alice.request(("release_denied",), type="release", task_id="T1")
    assert "owned by demo/bob" in stale["payload"]
    fenced = await bob.request(("release_denied",), type="release", task_id="T1",
                               epoch=grant["epoch"])
    assert fenced["payload"] == f"Task 'T1' epoch is stale (current {moved['epoch']})."
    done = await bob.request(("release_granted",), type="release", task_id="T1",
                             epoch=moved["epoch"])
    assert done["receipt"]["released"] is True


async def test_lifecycle_errors_are_plain_error_frames(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await alice.request(("task_updated",), type="task_update", task_id="T1", status="working")
    bad = await alice.request(("error",), type="task_update", task_id="T1", status="claimed")
    assert bad["payload"] == "Task 'T1' cannot transition working -> claimed."


async def test_wait_request_refuses_a_deadlock(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await bob.request(("claim_granted",), type="claim", task_id="T3", paths=["b"])
    ok = await alice.request(("wait_granted",), type="wait_request", task_id="T3")
    assert ok["holder"] == "demo/bob"
    refused = await bob.request(("wait_denied",), type="wait_request", task_id="T1")
    assert refused["payload"] == "Waiting for 'T1' held by demo/alice would deadlock."


# ---- blackboard and chat -----------------------------------------------------------------


async def test_blackboard_dag_cas_and_progress(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    await alice.request(("ledger_task_posted",), type="ledger_task", task_id="P1", title="design")
    posted = await alice.request(("ledger_task_posted",), type="ledger_task", task_id="P2",
                                 title="build", depends_on=["P1", "P2", "P1"],
                                 suggested_owner="demo/bob")
    assert posted["task"]["depends_on"] == ["P1"]
    cycle = await alice.request(("error",), type="ledger_task", task_id="P1", title="design",
                                depends_on=["P2"])
    assert "cycle" in cycle["payload"]
    cas = await alice.request(("error",), type="ledger_task_update", task_id="P1",
                              status="done", expected_version=7)
    assert cas["payload"] == "Task 'P1' version conflict: expected v7, board has v1."
    await alice.request(("ledger_task_updated",), type="ledger_task_update", task_id="P1",
                        status="done", expected_version=1)
    await alice.request(("ledger_progress_posted",), type="ledger_progress", task_id="P1",
                        kind="blocked", text="waiting on review")
    board = (await alice.request(("board_snapshot",), type="board_request"))["board"]
    assert [t["task_id"] for t in board["tasks"]] == ["P1", "P2"]
    assert board["ready"] == ["P2"]
    assert board["progress"][-1]["kind"] == "blocked"


async def test_directed_chat_reaches_only_its_recipients(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    carol = await hub.agent("other/carol")
    await alice.send(type="chat", target="all", payload="hello all")
    for agent in (alice, bob, carol):
        assert (await agent.until("chat"))["msg_id"] == 1
    await alice.send(type="chat", target="demo", payload="project only", receipt_requested=True)
    receipt = await alice.until("delivery_receipt")
    assert receipt["recipients"] == ["demo/bob"]
    assert (await bob.until("chat"))["payload"] == "project only"
    await alice.send(type="chat", target="other/*", payload="glob")
    assert (await carol.until("chat"))["payload"] == "glob"
    assert [f["payload"] for f in carol.seen if f["type"] == "chat"] == ["hello all", "glob"]
    history = await carol.request(("history_snapshot",), type="history_request", limit=10)
    assert [m["payload"] for m in history["history"]] == ["hello all", "glob"]
    resumed = await bob.request(("resume_snapshot",), type="resume_request", since=1)
    assert [m["msg_id"] for m in resumed["messages"]] == [2]


# ---- restart -----------------------------------------------------------------------------


async def test_restart_restores_leases_board_chat_and_idempotency(tmp_path) -> None:
    state_dir = tmp_path / "s"
    first = await start_hub(state_dir)
    alice = await first.agent("demo/alice")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", worktree="main",
                                paths=["src"], idem_key="k1")
    await alice.request(("checkpoint_saved",), type="checkpoint", task_id="T1", checkpoint="c1")
    await alice.request(("ledger_task_posted",), type="ledger_task", task_id="P1", title="plan")
    await alice.request(("ledger_progress_posted",), type="ledger_progress", task_id="P1",
                        text="started")
    for n in range(3):
        await alice.send(type="chat", payload=f"m{n}")
        await alice.until("chat", payload=f"m{n}")
    await first.stop()

    second = await start_hub(state_dir, clock=first.clock)
    try:
        claim = second.runtime.state.claims.get("T1")
        assert claim is not None
        assert (claim.owner, claim.epoch, claim.checkpoint) == ("demo/alice", grant["epoch"], "c1")
        assert claim.lease_expires_at == grant["lease_expires_at"]
        # alice still holds T1, so taking her name back takes her key
        alice = await second.agent("demo/alice", agent_key=agent_key(state_dir, "demo/alice"))
        again = await alice.request(("claim_granted",), type="claim", task_id="T1",
                                    worktree="main", paths=["src"], idem_key="k1")
        assert again["epoch"] == grant["epoch"] and again["timestamp"] == grant["timestamp"]
        board = (await alice.request(("board_snapshot",), type="board_request"))["board"]
        assert board["tasks"][0]["title"] == "plan" and board["progress"][0]["text"] == "started"
        await alice.send(type="chat", payload="after")
        assert (await alice.until("chat", payload="after"))["msg_id"] == 4
        state = await alice.request(("state_snapshot",), type="state_request")
        assert [c["task_id"] for c in state["snapshot"]["active_claims"]] == ["T1"]
        renewed = await alice.request(("claim_granted",), type="claim", task_id="T9", paths=["x"])
        assert renewed["epoch"] == grant["epoch"] + 1
    finally:
        await second.stop()


async def test_keyed_release_names_its_operation_and_can_be_confirmed(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    grant = await alice.request(("release_granted",), type="release", task_id="T1",
                                idem_key="op-1")
    assert grant["release_operation_id"] == "op-1"
    digest = grant["request_digest"]
    assert len(digest) == 64
    query = {"task_id": "T1", "operation_id": "op-1", "request_digest": digest}
    confirmed = await alice.request(("state_snapshot",), type="state_request",
                                    release_confirmation=query, request_id="q1")
    assert confirmed["request_id"] == "q1"
    assert confirmed["release_confirmation"]["status"] == "confirmed"
    assert confirmed["release_confirmation"]["receipt"]["released"] is True
    other = await alice.request(("state_snapshot",), type="state_request",
                                release_confirmation={**query, "request_digest": "0" * 64})
    assert other["release_confirmation"]["status"] == "unknown"
    refused = await alice.request(("release_denied",), type="release", task_id="T1",
                                  idem_key="op-2")
    assert refused["release_operation_id"] == "op-2"


async def test_tls_serves_wss_for_remote_agents(tmp_path) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    h = await start_hub(tmp_path / "s", tls_cert=str(cert), tls_key=str(key))
    try:
        assert h.uri.startswith("wss://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(h.uri, ssl=context, compression=None) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"sender": "remote/a", "type": "who_request"}))
            while (frame := json.loads(await ws.recv()))["type"] != "who_snapshot":
                pass
            assert frame["online_agents"] == ["remote/a"]
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(h.uri, compression=None, open_timeout=5):
                pass  # an unverified certificate is refused by a default client
    finally:
        await h.stop()


async def test_resource_offers_and_capability_cards(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    await alice.send(type="resource", kind="llm", name="llama3:8b", capacity=2)
    offered = await bob.until("resource_offered")
    assert (offered["agent"], offered["kind"], offered["key"]) == (
        "demo/alice", "llm", "demo/alice:llm:llama3:8b")
    state = await bob.request(("state_snapshot",), type="state_request")
    assert [r["key"] for r in state["snapshot"]["resources"]] == ["demo/alice:llm:llama3:8b"]
    missing = await alice.request(("error",), type="resource", kind="llm")
    assert missing["payload"] == "resource offer requires kind+name"
    await alice.send(type="advertise", description="reviewer", skills=["python", "review"])
    card = (await bob.until("capability_advertised"))["card"]
    assert card["skills"] == ["python", "review"] and card["project"] == "demo"
    manifest = await bob.request(("manifest_snapshot",), type="manifest_request")
    assert [c["agent"] for c in manifest["manifest"]] == ["demo/alice"]
    hub.clock.advance(301)
    state = await bob.request(("state_snapshot",), type="state_request")
    assert state["snapshot"]["resources"] == []


async def test_browser_origins_are_refused_unless_allowed(tmp_path) -> None:
    from websockets.exceptions import InvalidStatus

    h = await start_hub(tmp_path / "s", allow_origins=("http://localhost:3000",))
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(h.uri, origin="http://evil.example", compression=None):
                pass
        assert refused.value.response.status_code == 403
        async with connect(h.uri, origin="http://localhost:3000", compression=None) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
    finally:
        await h.stop()


async def test_a_blank_sender_binds_an_anonymous_name(hub: Hub) -> None:
    async with connect(hub.uri, compression=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"sender": "   ", "type": "who_request"}))
        while (frame := json.loads(await ws.recv()))["type"] != "who_snapshot":
            pass
        assert frame["online_agents"][0].startswith("anon-")


async def test_nesting_limit_counts_objects_and_arrays(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")

    def nested(levels: int) -> str:
        return '{"a":' * (levels - 1) + '{"a":1' + "}" * levels

    await alice.ws.send('{"type":"chat","payload":"ok","x":' + nested(63) + "}")
    assert (await alice.until("chat"))["payload"] == "ok"
    await alice.ws.send('{"type":"chat","payload":"deep","x":' + nested(64) + "}")
    assert (await alice.until("error"))["payload"].startswith("Malformed frame: nested deeper")


async def test_a_peer_that_stops_reading_is_closed(hub: Hub, monkeypatch) -> None:
    from marrow_tui.hub import server as server_module

    monkeypatch.setattr(server_module, "MAX_OUTBOUND_BYTES", 64 * 1024)
    slow = await Agent.join(hub.uri, "demo/slow")
    slow.ws.transport.pause_reading()  # never read again: the hub's buffer for it grows
    alice = await hub.agent("demo/alice")
    async with asyncio.timeout(10):
        n = 0
        while not hub.server._overloaded and "demo/slow" in hub.server.sessions:
            n += 1
            await alice.send(type="chat", payload="x" * 4000)
            await alice.until("chat", msg_id=n)
    assert hub.server._overloaded or "demo/slow" not in hub.server.sessions
    slow.ws.transport.abort()


async def test_the_expiry_timer_is_armed_after_a_restart(tmp_path) -> None:
    state_dir = tmp_path / "s"
    first = await start_hub(state_dir)
    alice = await first.agent("demo/alice")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"],
                                ttl_seconds=60)
    await first.stop()
    second = await start_hub(state_dir, clock=first.clock)
    try:
        assert second.runtime._timer_at == grant["lease_expires_at"]
    finally:
        await second.stop()


async def test_a_role_cannot_stand_in_for_an_agent(hub: Hub) -> None:
    """A role named like an online agent is refused; one declared before that agent came reaches
    nothing addressed to the agent, live or in history; real roles still work."""
    carol = await hub.agent("carol")
    spy = await Agent.join(hub.uri, "spy", expect_welcome=False, roles=["carol"])
    refusal = await spy.until("name_conflict")
    assert "Role 'carol' of 'spy' is the name of an agent" in refusal["payload"]
    assert await spy.closed() == (4009, "invalid role")
    bad = await Agent.join(hub.uri, "spy2", expect_welcome=False, roles=["rev\x1biewer"])
    assert "Role 'rev\\x1biewer'" in (await bad.until("name_conflict"))["payload"]
    early = await hub.agent("early", roles=["dave", "reviewer"])
    dave = await hub.agent("dave")
    bob = await hub.agent("bob")
    await bob.send(type="chat", target="dave", payload="for dave only")
    await bob.send(type="chat", target="carol", payload="for carol only")
    await bob.send(type="chat", target="reviewer", payload="for reviewers")
    assert (await dave.until("chat", payload="for dave only"))["target"] == "dave"
    await carol.until("chat", payload="for carol only")
    await early.until("chat", payload="for reviewers")
    history = (await early.request(("history_snapshot",), type="history_request"))["history"]
    assert [m["payload"] for m in history] == ["for reviewers"]
    assert not any(f.get("payload", "").endswith("only") for f in early.seen)


async def test_a_role_under_an_agents_name_reaches_nothing_of_it(hub: Hub) -> None:
    """A role under an agent's name (`carol/x`, which a target `carol` would reach) is refused
    while the agent is known, and one declared before the agent came (`dave/x`) stops
    matching once it is; a role under a name that is no agent (`proj/reviewer`) still works,
    by its whole name, a glob or its prefix (`proj`)."""
    carol = await hub.agent("carol")
    spy = await Agent.join(hub.uri, "spy", expect_welcome=False, roles=["carol/x"])
    refusal = await spy.until("name_conflict")
    assert "Role 'carol/x' of 'spy'" in refusal["payload"]
    assert await spy.closed() == (4009, "invalid role")
    early = await hub.agent("early", roles=["dave/x", "proj/reviewer"])
    dave = await hub.agent("dave")
    bob = await hub.agent("bob")
    await bob.send(type="chat", target="dave", payload="for dave only")
    await bob.send(type="chat", target="carol", payload="for carol only")
    await bob.send(type="chat", target="proj/reviewer", payload="for reviewers")
    await bob.send(type="chat", target="proj/*", payload="for proj")
    await bob.send(type="chat", target="proj", payload="for the project")
    await dave.until("chat", payload="for dave only")
    await carol.until("chat", payload="for carol only")
    await early.until("chat", payload="for reviewers")
    await early.until("chat", payload="for proj")
    await early.until("chat", payload="for the project")
    history = (await early.request(("history_snapshot",), type="history_request"))["history"]
    assert [m["payload"] for m in history] == ["for reviewers", "for proj", "for the project"]
    assert not any(f.get("payload", "").endswith("only") for f in early.seen)
