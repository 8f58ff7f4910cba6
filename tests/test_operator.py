"""The console's operator: an in-process participant with rights over every lease."""

from __future__ import annotations

from typing import Any

from .conftest import Agent, Hub


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
