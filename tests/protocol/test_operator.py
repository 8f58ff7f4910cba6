"""The console's operator: an in-process participant with rights over every lease."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.hub import secrets
from marrow_tui.hub.secrets import agent_key, new_secret
from marrow_tui.hub.server import ConfigError

from tests.support.hub import Agent, Hub, start_hub
from tests.support.hubproc import clean_env, hub_command


def _operator(hub: Hub) -> tuple[Any, list[dict[str, Any]]]:
    heard: list[dict[str, Any]] = []
    return hub.runtime.join("operator/test", heard.append), heard


async def test_operator_appears_online_and_its_name_is_taken(hub: Hub) -> None:
    _operator(hub)
    alice = await hub.agent("demo/alice")
    who = await alice.request(("who_snapshot",), type="who_request")
    assert "operator/test" in who["online_agents"]
    twin = await Agent.join(hub.uri, "operator/test", expect_welcome=False)
    await twin.until("name_conflict")
    assert await twin.closed() == (4009, "name conflict")


async def test_operator_hands_off_anyones_lease_and_fences_the_old_holder(hub: Hub) -> None:
    op, heard = _operator(hub)
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    op.send(type="handoff", task_id="T1", to_agent="demo/bob", note="alice is stuck")
    moved = await bob.until("handoff_granted", task_id="T1")
    assert (moved["owner"], moved["previous_owner"]) == ("demo/bob", "demo/alice")
    note = next(f for f in bob.seen if f["type"] == "ledger_progress_posted")
    assert note["note"]["text"] == "handed off to demo/bob by operator/test: alice is stuck"
    stale = await alice.request(("release_denied",), type="release", task_id="T1",
                                epoch=grant["epoch"])
    assert "owned by demo/bob" in stale["payload"]
    assert heard == []  # broadcasts reach the console through the change feed instead


async def test_operator_release_keeps_or_drops_the_checkpoint(hub: Hub) -> None:
    op, _ = _operator(hub)
    alice = await hub.agent("demo/alice")
    for task in ("T1", "T2"):
        await alice.request(("claim_granted",), type="claim", task_id=task, paths=[task])
        await alice.request(("checkpoint_saved",), type="checkpoint", task_id=task,
                            checkpoint=f"{task}-step")
    op.send(type="release", task_id="T1", keep_checkpoint=True)
    released = await alice.until("release_granted", task_id="T1")
    assert (released["owner"], released["released_by"]) == ("demo/alice", "operator/test")
    op.send(type="release", task_id="T2")
    await alice.until("release_granted", task_id="T2")
    assert hub.runtime.state.claims.retained_checkpoints == {"T1": "T1-step"}
    again = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["T1"])
    assert again["checkpoint"] == "T1-step"


async def test_operator_extend_moves_the_expiry_and_keeps_the_epoch(hub: Hub) -> None:
    op, _ = _operator(hub)
    alice = await hub.agent("demo/alice")
    grant = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"],
                                ttl_seconds=60)
    op.send(type="extend", task_id="T1", ttl_seconds=3600)
    extended = await alice.until("lease_extended", task_id="T1")
    assert extended["epoch"] == grant["epoch"]
    assert extended["lease_expires_at"] == hub.clock() + 3600
    hub.clock.advance(61)
    hub.runtime.tick()
    assert hub.runtime.state.claims.get("T1") is not None  # the old deadline no longer ends it
    await alice.request(("task_updated",), type="task_update", task_id="T1", status="working",
                        epoch=grant["epoch"])


async def test_refusals_come_back_to_the_operator_privately(hub: Hub) -> None:
    op, heard = _operator(hub)
    op.send(type="handoff", task_id="NOPE", to_agent="demo/bob")
    await hub.agent("demo/alice")  # a round trip, so the refusal has been delivered
    assert heard and heard[0]["type"] == "handoff_denied"
    assert heard[0]["payload"] == "Task 'NOPE' is not currently claimed."


async def test_remote_agents_cannot_claim_operator_rights(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    mallory = await hub.agent("demo/mallory")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    denied = await mallory.request(("release_denied",), type="release", task_id="T1",
                                   operator=True, keep_checkpoint=True)
    assert "owned by demo/alice" in denied["payload"]
    refused = await mallory.request(("error",), type="extend", task_id="T1")
    assert "owned by demo/alice" in refused["payload"]


# ---- the operator role over the wire (docs/protocol.md §2.7) ------------------------------


def operator_token(hub: Hub) -> str:
    return (hub.state_dir / "operator_token").read_text().strip()


async def test_the_operator_token_is_made_in_the_state_dir_readable_by_its_owner_only(
        hub: Hub) -> None:
    path = hub.state_dir / "operator_token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(operator_token(hub)) >= 32
    again = await start_hub(hub.state_dir.parent / "other")
    try:
        assert operator_token(again) != operator_token(hub)  # one per hub, not a constant
    finally:
        await again.stop()


async def test_a_token_file_others_could_read_is_replaced_and_a_short_one_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tightening the mode would not unread a secret: it is replaced (the old file kept aside,
    private) and the log says so. A secret too short to be one is refused in one sentence."""
    state = tmp_path / "s"
    state.mkdir()
    leaked = state / "operator_token"
    leaked.write_text("x" * 43 + "\n")
    leaked.chmod(0o644)
    hub = await start_hub(state)
    try:
        assert operator_token(hub) != "x" * 43
        assert leaked.stat().st_mode & 0o777 == 0o600
        aside = state / "operator_token.exposed"
        assert aside.read_text().strip() == "x" * 43 and aside.stat().st_mode & 0o777 == 0o600
        assert "could be read by other users" in caplog.text
    finally:
        await hub.stop()
    short = tmp_path / "t"
    short.mkdir()
    (short / "operator_token").write_text("tok\n")
    (short / "operator_token").chmod(0o600)
    with pytest.raises(ConfigError, match="3 characters, too short"):
        await start_hub(short)


def test_a_second_exposure_keeps_the_first_copy_too(tmp_path: Path) -> None:
    path = tmp_path / "operator_token"
    path.write_text("a" * 43 + "\n")
    path.chmod(0o644)
    first = secrets.operator_token(tmp_path)
    path.chmod(0o644)  # exposed again
    second = secrets.operator_token(tmp_path)
    assert len({"a" * 43, first, second}) == 3
    assert (tmp_path / "operator_token.exposed").read_text().strip() == "a" * 43
    assert (tmp_path / "operator_token.exposed.2").read_text().strip() == first


def test_on_a_filesystem_without_private_modes_the_secret_is_kept_and_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "operator_token"
    path.write_text("b" * 43 + "\n")
    path.chmod(0o644)
    # what vfat or a CIFS mount does: every file shows as readable by all, whatever it was made with
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda file, flags, mode=0o777, **kw: real_open(
        file, flags, 0o644, **kw))
    monkeypatch.setattr(os, "chmod", lambda *args, **kw: None)
    assert secrets.operator_token(tmp_path) == "b" * 43
    assert secrets.operator_token(tmp_path) == "b" * 43
    assert not list(tmp_path.glob("*.exposed*")) and not list(tmp_path.glob(".mode-probe*"))
    assert caplog.text.count("keeps no private file modes") == 1


def test_a_start_refused_for_its_secrets_exits_with_one_sentence(tmp_path: Path) -> None:
    """The event log was open when the hub's settings were refused: it is closed, so the
    process ends (it hung) with exit code 2 and the sentence."""
    (tmp_path / "operator_token").write_text("tok\n")
    (tmp_path / "operator_token").chmod(0o600)
    done = subprocess.run(hub_command(tmp_path), env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "too short to be one" in done.stderr and "Traceback" not in done.stderr


async def test_a_connection_with_the_operator_token_has_operator_rights(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    ops = await hub.agent("ops/ann", operator_token=operator_token(hub))
    assert hub.runtime.state.presence.online["ops/ann"].operator
    assert not hub.runtime.state.presence.online["demo/alice"].operator
    for task in ("T1", "T2", "T3"):
        await alice.request(("claim_granted",), type="claim", task_id=task, paths=[task])
    released = await ops.request(("release_granted", "release_denied"), type="release",
                                 task_id="T1")
    assert (released["type"], released["owner"], released["released_by"]) == \
        ("release_granted", "demo/alice", "ops/ann")
    moved = await ops.request(("handoff_granted", "handoff_denied"), type="handoff",
                              task_id="T2", to_agent="demo/bob")
    assert (moved["type"], moved["owner"]) == ("handoff_granted", "demo/bob")
    extended = await ops.request(("lease_extended", "error"), type="extend", task_id="T3",
                                 ttl_seconds=7200)
    assert extended["type"] == "lease_extended"
    # the rights belong to the connection, not to a frame: bob's own flags change nothing
    denied = await bob.request(("release_denied",), type="release", task_id="T3",
                               operator_token=operator_token(hub))
    assert "owned by demo/alice" in denied["payload"]


@pytest.mark.parametrize(("token", "text"), [
    ("nope", "Invalid operator token."),
    ("\ud800", "Invalid operator token: it is not valid UTF-8 text."),
])
async def test_a_wrong_operator_token_is_refused_with_4010(hub: Hub, token: str,
                                                           text: str) -> None:
    mallory = await Agent.join(hub.uri, "ops/mallory", expect_welcome=False,
                               operator_token=token)
    assert (await mallory.until("auth_denied"))["payload"] == text
    assert await mallory.closed() == (4010, "auth denied")
    assert "ops/mallory" not in hub.runtime.state.presence.online


async def test_secrets_in_frames_are_never_stored_or_relayed(hub: Hub) -> None:
    ops = await hub.agent("ops/ann", operator_token=operator_token(hub))
    bob = await hub.agent("demo/bob")
    await ops.send(type="chat", payload="hi", operator_token="x", agent_key="y", token="z")
    heard = await bob.until("chat")
    assert not {"operator_token", "agent_key", "token"} & heard.keys()
    assert not {"operator_token", "agent_key", "token"} & hub.runtime.state.chat.history[-1].keys()


async def test_only_an_operator_answers_and_never_the_asker(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    ops = await hub.agent("ops/ann", operator_token=operator_token(hub))
    rid = (await alice.request(("steer_opened",), type="steer_ask", question="ship?"))["id"]
    refused = await bob.request(("error",), type="steer_answer", id=rid, answer="yes")
    assert refused["error_code"] == "not_operator"
    assert refused["payload"] == f"Only an operator may answer {rid}."
    own = await alice.request(("error",), type="steer_answer", id=rid, answer="yes")
    assert own["error_code"] == "own_request"
    # an operator that asks cannot answer itself either
    mine = (await ops.request(("steer_opened",), type="steer_ask", question="mine?"))["id"]
    self_answer = await ops.request(("error",), type="steer_answer", id=mine, answer="yes")
    assert self_answer["error_code"] == "own_request"
    assert hub.runtime.state.steering.get(rid).open  # type: ignore[union-attr]
    answered = await ops.request(("steer_answered", "error"), type="steer_answer", id=rid,
                                 answer="yes")
    assert answered["type"] == "steer_answered"
    reply = await alice.until("steer_reply", id=rid)
    assert (reply["answer"], reply["answered_by"]) == ("yes", "ops/ann")


async def test_cancelling_someone_elses_request_takes_an_operator(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    bob = await hub.agent("demo/bob")
    ops = await hub.agent("ops/ann", operator_token=operator_token(hub))
    rid = (await alice.request(("steer_opened",), type="steer_ask", question="ship?"))["id"]
    refused = await bob.request(("error",), type="steer_cancel", id=rid)
    assert refused["error_code"] == "not_asker"
    cancelled = await ops.request(("steer_cancelled", "error"), type="steer_cancel", id=rid)
    assert cancelled["type"] == "steer_cancelled"
    assert (await alice.until("steer_reply", id=rid))["state"] == "cancelled"


# ---- names: online ones cannot be taken, offline ones only with proof ---------------------


async def test_an_online_name_is_not_taken_over_without_proof(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    thief = await Agent.join(hub.uri, "demo/alice", expect_welcome=False, takeover=True)
    refusal = await thief.until("name_conflict")
    assert "agent key" in refusal["payload"] and "operator" in refusal["payload"]
    assert await thief.closed() == (4009, "name conflict")
    # alice kept her seat
    assert (await alice.request(("who_snapshot",), type="who_request"))["online_agents"] \
        == ["demo/alice"]
    bad_key = await Agent.join(hub.uri, "demo/alice", expect_welcome=False, takeover=True,
                               agent_key=agent_key(hub.state_dir, "demo/bob"))
    assert (await bad_key.until("auth_denied"))["payload"] == \
        "Invalid agent key for 'demo/alice'."
    assert await bad_key.closed() == (4010, "auth denied")


async def test_an_online_name_is_taken_over_with_its_key_or_by_an_operator(hub: Hub) -> None:
    old = await hub.agent("demo/alice")
    new = await Agent.join(hub.uri, "demo/alice", takeover=True,
                           agent_key=agent_key(hub.state_dir, "demo/alice"))
    assert await old.closed() == (4010, "superseded")
    hub.agents.append(new)
    again = await Agent.join(hub.uri, "demo/alice", takeover=True,
                             operator_token=operator_token(hub))
    hub.agents.append(again)
    assert await new.closed() == (4010, "superseded")
    assert (await again.request(("who_snapshot",), type="who_request"))["online_agents"] \
        == ["demo/alice"]


async def test_an_offline_agents_name_and_leases_are_reclaimed_only_with_proof(
        hub: Hub) -> None:
    watcher = await hub.agent("demo/watcher")
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await alice.ws.close()
    await watcher.until("presence_update", agent="demo/alice", event="left")
    impostor = await Agent.join(hub.uri, "demo/alice", expect_welcome=False)
    refusal = await impostor.until("name_conflict")
    assert refusal["payload"].startswith("Name 'demo/alice' belongs to an offline agent")
    assert await impostor.closed() == (4016, "name owned")
    assert hub.runtime.state.claims.get("T1").owner == "demo/alice"  # type: ignore[union-attr]
    back = await hub.agent("demo/alice", agent_key=agent_key(hub.state_dir, "demo/alice"))
    released = await back.request(("release_granted",), type="release", task_id="T1")
    assert released["owner"] == "demo/alice"


async def test_a_name_that_holds_nothing_is_free_to_reuse(hub: Hub) -> None:
    """Unmodified synapse clients: join, claim and release their own work, leave, come back."""
    watcher = await hub.agent("demo/watcher")
    bob = await hub.agent("demo/bob")
    await bob.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await bob.request(("release_granted",), type="release", task_id="T1")
    await bob.ws.close()
    await watcher.until("presence_update", agent="demo/bob", event="left")
    again = await hub.agent("demo/bob")
    assert (await again.request(("who_snapshot",), type="who_request"))["online_agents"] \
        == ["demo/bob", "demo/watcher"]


async def test_an_offline_askers_name_with_an_unread_answer_needs_proof(hub: Hub) -> None:
    watcher = await hub.agent("demo/watcher")
    alice = await hub.agent("demo/alice")
    await alice.request(("steer_opened",), type="steer_ask", question="ship?")
    await alice.ws.close()
    await watcher.until("presence_update", agent="demo/alice", event="left")
    impostor = await Agent.join(hub.uri, "demo/alice", expect_welcome=False)
    await impostor.until("name_conflict")
    assert await impostor.closed() == (4016, "name owned")
    ops = await hub.agent("demo/alice", operator_token=operator_token(hub))
    assert (await ops.request(("who_snapshot",), type="who_request"))["online_agents"] \
        == ["demo/alice", "demo/watcher"]


# ---- verbs other parts serve: services ------------------------------------------------------


async def test_starting_stopping_and_restarting_services_takes_an_operator(
        hub: Hub, tmp_path: Path) -> None:
    from marrow_tui.config.load import load_config
    from marrow_tui.services.hosting import Services

    path = tmp_path / "marrow.toml"
    path.write_text('[[services]]\nname = "db"\ncommand = ["true"]\nenabled = false\n')
    loaded = load_config(path)
    assert loaded.config is not None, loaded.diagnostics
    services = Services(hub.runtime, loaded.config, tmp_path / "services")
    await services.start()
    try:
        bob = await hub.agent("demo/bob")
        for verb in ("service_start", "service_stop", "service_restart"):
            refused = await bob.request(("error",), type=verb, name="db")
            assert refused["error_code"] == "forbidden", refused
        listed = await bob.request(("services",), type="services_list")  # reading is open
        assert [r["name"] for r in listed["services"]] == ["db"]
        ops = await hub.agent("ops/ann", operator_token=operator_token(hub))
        passed = await ops.request(("error",), type="service_stop", name="db")
        assert passed["error_code"] == "not_running"  # past the rights check, to the service
    finally:
        await services.stop()


async def test_an_agent_key_covers_the_names_under_the_agent_only(hub: Hub) -> None:
    """The MCP server a run starts joins as `<agent>/mcp` with its agent's key."""
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    mcp = await hub.agent("demo/alice/mcp", agent_key=agent_key(hub.state_dir, "demo/alice"))
    assert "demo/alice/mcp" in hub.runtime.state.presence.online
    await mcp.ws.close()
    other = await Agent.join(hub.uri, "demo/bob", expect_welcome=False,
                             agent_key=agent_key(hub.state_dir, "demo/alice"))
    assert (await other.until("auth_denied"))["payload"] == "Invalid agent key for 'demo/bob'."


async def test_a_name_once_proven_with_its_key_needs_it_from_then_on(tmp_path: Path) -> None:
    """A run's name, once it proved itself, is not free for a keyless connection even when it
    holds nothing (its private chat history goes with the name), across a restart; plain
    names stay free to reuse as synapse clients expect."""
    state = tmp_path / "s"
    hub = await start_hub(state)
    try:
        run = await hub.agent("A-1", agent_key=agent_key(state, "A-1"))
        plain = await hub.agent("plain")
        await run.ws.close()
        await plain.ws.close()
        hub.agents.remove(run)
        hub.agents.remove(plain)
        await hub.runtime.settled()
    finally:
        await hub.stop()
    hub = await start_hub(state)
    try:
        thief = await Agent.join(hub.uri, "A-1", expect_welcome=False)
        refused = await thief.until("name_conflict")
        assert "belongs to an agent marrow-tui started" in refused["payload"]
        assert await thief.closed() == (4016, "name owned")
        await hub.agent("plain")  # never keyed: free, as before
        await hub.agent("A-1", operator_token=operator_token(hub))  # an operator may
    finally:
        await hub.stop()


async def test_the_names_under_a_keyed_name_need_its_key_too(hub: Hub) -> None:
    """Once `A-1` proved itself, `A-1/anything` (which a bare `A-1` target reaches, and which
    could act for the run) binds only with the run's key or as an operator."""
    run = await hub.agent("A-1", agent_key=agent_key(hub.state_dir, "A-1"))
    thief = await Agent.join(hub.uri, "A-1/x", expect_welcome=False)
    refused = await thief.until("name_conflict")
    assert "belongs to an agent marrow-tui started" in refused["payload"]
    assert await thief.closed() == (4016, "name owned")
    await hub.agent("A-1/mcp", agent_key=agent_key(hub.state_dir, "A-1"))
    await hub.agent("A-1/y", operator_token=operator_token(hub))
    await hub.agent("A-10")  # not under A-1
    await hub.agent("plain/x")  # under no keyed name: free
    assert run.name == "A-1"


def test_a_new_secret_never_reads_as_a_command_line_option() -> None:
    # token_urlsafe starts with "-" one time in 64; 2,000 draws would show it almost surely.
    drawn = [new_secret() for _ in range(2000)]
    assert not any(value.startswith("-") for value in drawn)
    assert len(set(drawn)) == 2000 and all(len(value) == 43 for value in drawn)
