"""Integration tests of HubClient against a real hub subprocess over real sockets.

The hub is ``python -m marrow_tui --no-ui --port 0``; ``MARROW_TEST_HUB`` may
name another hub command with ``{port}`` (see tests/cli/test_hub.py), which is
how these tests double as a wire-compatibility check against synapse-channel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from marrow_tui.hub.client import (
    Frame,
    HubClient,
    HubConnectionError,
    HubRefused,
    HubTimeout,
    HubUnreachable,
    Refused,
    board_update_reply,
    build_matcher,
    declaration_reply,
    run_request,
)
from marrow_tui.hub.secrets import agent_key

from tests.support.hubproc import REPO, free_port, hub_command, running_hub


@pytest.fixture
def hub_uri(tmp_path: Path) -> Iterator[str]:
    """A fresh hub per test, so no claim or board task leaks between tests."""
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as running:
        yield running.uri


@pytest.fixture
async def alice(hub_uri: str) -> AsyncIterator[HubClient]:
    async with HubClient(hub_uri, "t/alice", roles=["t/reviewer"]) as client:
        yield client


@pytest.fixture
async def bob(hub_uri: str) -> AsyncIterator[HubClient]:
    async with HubClient(hub_uri, "t/bob") as client:
        yield client


def _claims(frame: Frame) -> dict[str, Frame]:
    return {c["task_id"]: c for c in frame["snapshot"]["active_claims"]}


# --------------------------------------------------------------------------- session


async def test_registration_binds_name_and_roles(hub_uri: str, alice: HubClient) -> None:
    assert alice.welcome is not None and alice.welcome["type"] == "welcome"
    who = await alice.who()
    assert "t/alice" in who["online_agents"]
    assert who["agent_roles"]["t/alice"] == ["t/reviewer"]


async def test_duplicate_name_is_refused_with_4009(hub_uri: str, alice: HubClient) -> None:
    with pytest.raises(HubRefused) as caught:
        async with HubClient(hub_uri, "t/alice"):
            pass
    assert caught.value.code == 4009
    assert hub_uri in str(caught.value)
    assert "t/alice" in (await alice.who())["online_agents"]


async def test_takeover_evicts_the_old_session(hub_uri: str, tmp_path: Path) -> None:
    old = HubClient(hub_uri, "t/seat")
    await old.connect()
    try:
        # a takeover proves it is the agent (its key): an online name is not free to take
        async with HubClient(hub_uri, "t/seat", takeover=True,
                             agent_key=agent_key(tmp_path / "state", "t/seat")) as new:
            assert "t/seat" in (await new.who())["online_agents"]
            with pytest.raises(HubConnectionError):
                await old.who()
            assert not old.connected
    finally:
        await old.close()


async def test_presence_and_leave_are_seen_by_others(hub_uri: str, alice: HubClient) -> None:
    seen = alice.subscribe()
    async with HubClient(hub_uri, "t/visitor"):
        joined = await alice.next_matching(
            seen, lambda f: f.get("type") == "presence_update" and f.get("agent") == "t/visitor")
        assert joined["event"] == "joined"
    left = await alice.next_matching(
        seen, lambda f: f.get("type") == "presence_update" and f.get("event") == "left")
    assert left["agent"] == "t/visitor"


async def test_unreachable_hub_raises_hub_unreachable() -> None:
    uri = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(HubUnreachable) as caught:
        async with HubClient(uri, "t/x", open_timeout=5):
            pass
    assert uri in caught.value.message


async def test_silent_hub_times_out() -> None:
    """A WebSocket server that never says welcome: connect must not hang."""

    async def mute(connection: ServerConnection) -> None:
        await connection.wait_closed()

    async with serve(mute, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        started = time.monotonic()
        with pytest.raises(HubTimeout):
            await HubClient(f"ws://127.0.0.1:{port}", "t/x", open_timeout=0.5).connect()
        assert time.monotonic() - started < 5


def test_run_request_runs_one_call_synchronously(hub_uri: str) -> None:
    grant = run_request(hub_uri, "t/script", lambda hub: hub.claim("S1", ["scripts/"]))
    assert grant["owner"] == "t/script"
    state = run_request(hub_uri, "t/reader", lambda hub: hub.state())
    assert _claims(state)["S1"]["paths"] == ["scripts"]


# --------------------------------------------------------------------------- claims


async def test_claim_grant_is_broadcast_and_paths_normalised(alice: HubClient,
                                                              bob: HubClient) -> None:
    seen = bob.subscribe()
    grant = await alice.claim("T1", ["src/auth.py", "src/util/"], worktree="main",
                              ttl_seconds=120, note="edit auth")
    assert (grant["type"], grant["owner"], grant["status"]) == ("claim_granted", "t/alice",
                                                                "claimed")
    assert grant["paths"] == ["src/auth.py", "src/util"]
    assert isinstance(grant["epoch"], int)
    assert grant["lease_expires_at"] - grant["timestamp"] == pytest.approx(120, abs=2)
    observed = await bob.next_matching(seen, lambda f: f.get("type") == "claim_granted")
    assert observed["task_id"] == "T1" and observed["epoch"] == grant["epoch"]


async def test_claim_denials_carry_reason_codes(alice: HubClient, bob: HubClient) -> None:
    await alice.claim("T1", ["src/util"], worktree="main")
    with pytest.raises(Refused) as scope:
        await bob.claim("T2", ["src/util/x.py"], worktree="main")
    assert scope.value.code == "SCOPE_CONFLICT" and scope.value.type == "claim_denied"
    assert scope.value.frame["task_id"] == "T2" and "T1" in scope.value.text
    with pytest.raises(Refused) as live:
        await bob.claim("T1", ["elsewhere"], worktree="other")
    assert live.value.code == "LEASE_LIVE"
    other_tree = await bob.claim("T3", ["src/util"], worktree="feature")
    assert other_tree["owner"] == "t/bob"
    assert set(_claims(await alice.state())) == {"T1", "T3"}


async def test_concurrent_agents_each_get_their_own_replies(alice: HubClient,
                                                            bob: HubClient) -> None:
    """Both see each other's grants as broadcasts; neither mistakes one for its reply."""
    ids = [f"{who}{n}" for n in range(8) for who in ("A", "B")]

    async def claim_as(client: HubClient, prefix: str) -> list[Frame]:
        return [await client.claim(f"{prefix}{n}", [f"{prefix}/{n}"]) for n in range(8)]

    mine, theirs = await asyncio.gather(claim_as(alice, "A"), claim_as(bob, "B"))
    assert [(g["task_id"], g["owner"]) for g in mine] == [(f"A{n}", "t/alice") for n in range(8)]
    assert [(g["task_id"], g["owner"]) for g in theirs] == [(f"B{n}", "t/bob") for n in range(8)]
    assert set(_claims(await alice.state())) == set(ids)


async def test_idempotent_claim_is_applied_once(alice: HubClient) -> None:
    first = await alice.claim("K1", ["k"], idem_key="idem-1")
    again = await alice.claim("K1", ["k"], idem_key="idem-1")
    assert again["epoch"] == first["epoch"]
    assert _claims(await alice.state())["K1"]["epoch"] == first["epoch"]


async def test_task_update_lifecycle_and_fencing(alice: HubClient, bob: HubClient) -> None:
    grant = await alice.claim("T1", ["a"])
    working = await alice.task_update("T1", "working", note="half", data_ref="mem://x",
                                      epoch=grant["epoch"])
    assert (working["status"], working["data_ref"], working["version"]) == ("working",
                                                                            "mem://x", 1)
    with pytest.raises(Refused) as illegal:
        await alice.task_update("T1", "claimed")
    assert illegal.value.type == "error" and "claimed" in illegal.value.text
    with pytest.raises(Refused) as stale:
        await alice.task_update("T1", "working", epoch=grant["epoch"] + 1000)
    assert "stale" in stale.value.text
    with pytest.raises(Refused):
        await bob.task_update("T1", "done")
    assert _claims(await bob.state())["T1"]["status"] == "working"


async def test_checkpoint_is_private_and_owner_only(alice: HubClient, bob: HubClient) -> None:
    await alice.claim("T1", ["a"])
    saved = await alice.checkpoint("T1", "step=3")
    assert saved["type"] == "checkpoint_saved" and saved["task_id"] == "T1"
    with pytest.raises(Refused) as denied:
        await bob.checkpoint("T1", "step=4")
    assert denied.value.type in ("checkpoint_denied", "error")
    assert _claims(await bob.state())["T1"]["checkpoint"] == "step=3"


async def test_handoff_moves_the_lease_and_fences_the_giver(alice: HubClient,
                                                            bob: HubClient) -> None:
    grant = await alice.claim("T1", ["src"], worktree="main")
    await alice.checkpoint("T1", "step=1")
    with pytest.raises(Refused) as offline:
        await alice.handoff("T1", "t/nobody")
    assert offline.value.type == "handoff_denied"

    seen = bob.subscribe()
    moved = await alice.handoff("T1", "t/bob", note="please finish", epoch=grant["epoch"])
    assert (moved["owner"], moved["previous_owner"]) == ("t/bob", "t/alice")
    assert moved["epoch"] > grant["epoch"] and moved["checkpoint"] == "step=1"
    arrived = await bob.next_matching(seen, lambda f: f.get("type") == "handoff_granted")
    assert arrived["task_id"] == "T1"

    with pytest.raises(Refused) as not_owner:
        await alice.release("T1")
    assert not_owner.value.type == "release_denied"
    with pytest.raises(Refused):
        await bob.release("T1", epoch=grant["epoch"])
    released = await bob.release("T1", epoch=moved["epoch"])
    assert released["type"] == "release_granted" and released["owner"] == "t/bob"
    assert _claims(await alice.state()) == {}
    with pytest.raises(Refused) as gone:
        await bob.release("T1")
    assert gone.value.type == "release_denied"


async def test_wait_that_would_deadlock_is_refused(alice: HubClient, bob: HubClient) -> None:
    await alice.claim("T1", ["a"])
    await bob.claim("T2", ["b"])
    granted = await alice.wait("T2")
    assert granted["type"] == "wait_granted" and granted["holder"] == "t/bob"
    with pytest.raises(Refused) as deadlock:
        await bob.wait("T1")
    assert deadlock.value.type == "wait_denied" and "deadlock" in deadlock.value.text


# --------------------------------------------------------------------------- board


async def test_board_dag_ready_set_cas_and_progress(alice: HubClient, bob: HubClient) -> None:
    p1 = await alice.declare("P1", "design", description="d")
    assert p1["task"]["version"] == 1 and p1["task"]["status"] == "open"
    p2 = await alice.declare("P2", "build", depends_on=["P1"], suggested_owner="t/bob",
                             project="demo")
    assert p2["task"]["depends_on"] == ["P1"]
    with pytest.raises(Refused) as cycle:
        await alice.declare("P1", "design", depends_on=["P2"])
    assert "cycle" in cycle.value.text
    assert (await bob.board())["board"]["ready"] == ["P1"]

    moved = await bob.board_update("P1", status="in_progress", expected_version=1)
    assert moved["task"]["version"] == 2
    with pytest.raises(Refused) as conflict:
        await alice.board_update("P1", status="done", expected_version=1)
    assert "version" in conflict.value.text

    note = await bob.progress("P1", "waiting on review", kind="blocked")
    assert note["note"]["author"] == "t/bob" and note["note"]["kind"] == "blocked"
    with pytest.raises(Refused):
        await bob.progress("P1", "x", kind="shout")
    await alice.board_update("P1", status="done")

    board = (await alice.board())["board"]
    assert board["ready"] == ["P2"]
    assert [n["text"] for n in board["progress"] if n["task_id"] == "P1"] == ["waiting on review"]
    assert {t["task_id"]: t["status"] for t in board["tasks"]} == {"P1": "done", "P2": "open"}


async def test_progress_reply_is_ours_not_a_concurrent_note(alice: HubClient,
                                                            bob: HubClient) -> None:
    await alice.declare("P1", "design")
    replies = await asyncio.gather(
        *[alice.progress("P1", f"alice {n}") for n in range(5)],
        *[bob.progress("P1", f"bob {n}") for n in range(5)],
    )
    assert [r["note"]["text"] for r in replies] == [f"alice {n}" for n in range(5)] + [
        f"bob {n}" for n in range(5)]


# --------------------------------------------------------------------------- chat


async def test_chat_is_stamped_delivered_and_kept_in_history(alice: HubClient,
                                                             bob: HubClient) -> None:
    seen = bob.subscribe()
    broadcast = await alice.send("hello all")
    direct = await alice.send("hi bob", target="t/bob")
    assert direct["msg_id"] > broadcast["msg_id"]
    assert direct["target"] == "t/bob" and direct["sender"] == "t/alice"
    got = await bob.next_matching(seen, lambda f: f.get("type") == "chat"
                                  and f.get("payload") == "hi bob")
    assert got["msg_id"] == direct["msg_id"]
    history = (await bob.history(10))["history"]
    assert [m["payload"] for m in history][-2:] == ["hello all", "hi bob"]


# --------------------------------------------------------------------------- secured hub


@pytest.fixture
def secured_hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Our hub over wss:// with a token; yields (uri, certificate file)."""
    if os.environ.get("MARROW_TEST_HUB"):
        pytest.skip("starts marrow-tui's own hub with its TLS and token flags")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    command = [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1",
               "--port", "0", "--state-dir", str(tmp_path / "state"), "--token", "s3cret",
               "--tls-cert", str(cert), "--tls-key", str(key)]
    with running_hub(command, tmp_path) as running:
        yield running.uri, cert


async def test_wss_with_token_and_private_ca(secured_hub: tuple[str, Path]) -> None:
    uri, cert = secured_hub
    assert uri.startswith("wss://")
    trust = ssl.create_default_context(cafile=str(cert))
    async with HubClient(uri, "t/secure", token="s3cret", ssl=trust) as client:
        grant = await client.claim("S1", ["secure/"])
        assert grant["owner"] == "t/secure"
        assert "t/secure" in (await client.who())["online_agents"]

    with pytest.raises(HubRefused) as wrong:
        await HubClient(uri, "t/intruder", token="guess", ssl=trust).connect()
    assert wrong.value.code == 4010
    with pytest.raises(HubRefused) as missing:
        await HubClient(uri, "t/intruder", ssl=trust).connect()
    assert missing.value.code == 4010
    with pytest.raises(HubUnreachable) as untrusted:
        await HubClient(uri, "t/secure", token="s3cret").connect()
    assert "certificate" in untrusted.value.message


def test_client_and_hub_commands_import_no_console_libraries() -> None:
    """Scripts and agents import these; they must not drag textual or rich along."""
    probe = (
        "import sys, marrow_tui.hub.client, marrow_tui.cli.hub\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'rich'})\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, check=True, timeout=60)
    assert done.stdout.strip() == ""


# --------------------------------------------------------------------------- reply matching


def _task_frame(kind: str, **task: object) -> Frame:
    base: Frame = {"task_id": "P1", "title": "design", "depends_on": [], "status": "open",
                   "suggested_owner": "", "project": "", "version": 1}
    return {"sender": "SynapseHub", "target": "all", "type": kind, "task": {**base, **task}}


def test_a_late_board_broadcast_from_another_agent_is_not_our_reply() -> None:
    """Regression: bob's earlier update reached alice after she sent hers.

    Seen live against synapse: alice's CAS update (expected v1, status done)
    took bob's in_progress broadcast (v2) as its success, and the real refusal
    arrived afterwards. The reply must match what we asked for.
    """
    ours = build_matcher(board_update_reply("P1", {"status": "done"}, 1))
    assert ours(_task_frame("ledger_task_updated", status="in_progress", version=2)) is None
    assert ours(_task_frame("ledger_task_updated", status="done", version=3)) is None
    assert ours(_task_frame("ledger_task_updated", status="done", version=2)) == "ok"
    assert ours({"type": "error", "payload": "Task 'P1' version conflict"}) == "refused"


def test_a_declaration_reply_must_carry_our_content() -> None:
    ours = build_matcher(declaration_reply("P2", "build", ["P1", "P1", "P2", " P0 "], "t/bob"))
    theirs = _task_frame("ledger_task_posted", task_id="P2", title="build", depends_on=["P1"])
    assert ours(theirs) is None
    mine = _task_frame("ledger_task_posted", task_id="P2", title=" build ",
                       depends_on=["P0", "P1"], suggested_owner="t/bob")
    assert ours(mine) == "ok"
    assert ours({**mine, "type": "ledger_task_updated"}) is None


async def test_an_operator_client_ends_another_agents_lease(hub_uri: str, alice: HubClient,
                                                            tmp_path: Path) -> None:
    await alice.claim("T1", ["src"])
    token = (tmp_path / "state" / "operator_token").read_text().strip()
    async with HubClient(hub_uri, "t/ops", operator_token=token) as ops:
        released = await ops.force_release("T1", keep_checkpoint=True)
    assert (released["owner"], released["released_by"]) == ("t/alice", "t/ops")
    async with HubClient(hub_uri, "t/mallory") as mallory:
        await alice.claim("T2", ["lib"])
        with pytest.raises(Refused) as refused:
            await mallory.force_release("T2")
    assert "owned by t/alice" in refused.value.text
