"""The claim verbs: leases on tasks (claim, release, extend, update, checkpoint, handoff,
wait), what the sweep announces when a lease ends on its own, and the state snapshot."""

from __future__ import annotations

import json
from typing import Any

from ..core.board import MAX_NOTE
from ..core.chat import BROADCAST_TARGETS
from ..core.events import Event, Refusal
from ..core.receipts import build_receipt, receipt_has_evidence, receipt_note
from .frames import Call, Context, integer_field, optional_text_field, strings_field, \
    task_id_field, text_field


def claim(call: Call) -> None:
    state = call.context.state
    f = call.frame
    task_id = task_id_field(f)
    worktree = text_field(f, "worktree")
    paths = strings_field(f, "paths")
    git = f.get("git")
    result = state.claims.decide_claim(
        call.sender,
        task_id,
        worktree=worktree,
        paths=paths,
        ttl=f.get("ttl_seconds"),
        note=text_field(f, "note"),
        git=git,
        now=call.context.clock(),
    )
    if isinstance(result, Refusal):
        call.deny("claim_denied", result, task_id=task_id, reason_code=result.reason)
        return
    call.emit(result)
    c = result.data
    call.broadcast(
        "claim_granted",
        f"Task '{task_id}' claimed by {call.sender}.",
        primary=True,
        task_id=task_id,
        owner=c["owner"],
        note=c["note"],
        lease_expires_at=c["lease_expires_at"],
        status=c["status"],
        worktree=c["worktree"],
        paths=c["paths"],
        epoch=c["epoch"],
        version=c["version"],
        checkpoint=c["checkpoint"],
        git=c["git"],
    )


def release(call: Call) -> None:
    state = call.context.state
    task_id = task_id_field(call.frame)
    # A keyed release names its operation in the verdict, so a client that lost the
    # connection can tell its own release from someone else's (synapse 0.99 clients check).
    binding: dict[str, str] = {}
    if call.idem is not None:
        binding = {"release_operation_id": call.frame["idem_key"],
                   "request_digest": call.idem[1]}
    result = state.claims.decide_release(
        call.sender, task_id, epoch=integer_field(call.frame, "epoch"),
        operator=call.operator, keep_checkpoint=call.frame.get("keep_checkpoint") is True,
    )
    if isinstance(result, Refusal):
        call.deny("release_denied", result, task_id=task_id, **binding)
        return
    call.emit(result)
    owner = result.data["owner"]
    if owner != call.sender:
        binding["released_by"] = call.sender
    # the graded close-out receipt (core/receipts.py, docs/protocol.md §3.2)
    receipt = build_receipt(call.frame, task_id, owner)
    call.broadcast(
        "release_granted",
        f"Task '{task_id}' released by {call.sender}.",
        primary=True,
        task_id=task_id,
        owner=owner,
        epoch=result.data["epoch"],
        receipt=receipt,
        **binding,
    )
    # As synapse does: a release that said anything about its work also records the
    # receipt on the board, as an `assessment` note broadcast after the grant.
    if receipt_has_evidence(receipt):
        note = state.board.decide_progress(
            # the whole receipt is in the grant; the note is its summary, within bounds
            call.sender, task_id, receipt_note(receipt)[:MAX_NOTE], kind="assessment",
            now=call.context.clock(),
        )
        if isinstance(note, Event):
            call.emit(note)
            call.broadcast("ledger_progress_posted", f"Release receipt from {call.sender}",
                           task_id=task_id, note=note.data)


def extend(call: Call) -> None:
    task_id = task_id_field(call.frame)
    result = call.context.state.claims.decide_extend(
        call.sender, task_id, ttl=call.frame.get("ttl_seconds"), now=call.context.clock(),
        operator=call.operator,
    )
    if isinstance(result, Refusal):
        call.deny("error", result, task_id=task_id)
        return
    call.emit(result)
    d = result.data
    call.broadcast(
        "lease_extended",
        f"Lease on '{task_id}' held by {d['owner']} extended by {call.sender}.",
        primary=True,
        task_id=task_id,
        owner=d["owner"],
        epoch=d["epoch"],
        lease_expires_at=d["lease_expires_at"],
    )


def task_update(call: Call) -> None:
    f = call.frame
    task_id = task_id_field(f)
    result = call.context.state.claims.decide_update(
        call.sender,
        task_id,
        status=optional_text_field(f, "status"),
        note=optional_text_field(f, "note"),
        data_ref=optional_text_field(f, "data_ref"),
        epoch=integer_field(f, "epoch"),
        expected_version=integer_field(f, "expected_version"),
    )
    if isinstance(result, Refusal):
        call.deny("error", result, task_id=task_id)
        return
    call.emit(result)
    d = result.data
    call.broadcast(
        "task_updated",
        f"Task '{task_id}' updated by {call.sender}.",
        primary=True,
        task_id=task_id,
        owner=call.sender,
        status=d["status"],
        data_ref=d["data_ref"],
        version=d["version"],
    )


def checkpoint(call: Call) -> None:
    f = call.frame
    task_id = task_id_field(f) if f.get("task_id") or f.get("id") else ""
    text = f.get("checkpoint")
    if text is None:
        text = f.get("payload", "")
    if not isinstance(text, str):
        text = json.dumps(text)
    result = call.context.state.claims.decide_checkpoint(
        call.sender, task_id, text, epoch=integer_field(f, "epoch")
    )
    if isinstance(result, Refusal):
        call.deny("checkpoint_denied", result, task_id=task_id)
        return
    call.emit(result)
    call.reply(
        "checkpoint_saved",
        f"Checkpoint saved for '{task_id}' by {call.sender}.",
        primary=True,
        task_id=task_id,
        version=result.data["version"],
    )


def handoff(call: Call) -> None:
    state = call.context.state
    f = call.frame
    task_id = task_id_field(f)
    to_agent = text_field(f, "to_agent") or text_field(f, "target")
    if to_agent in BROADCAST_TARGETS:
        to_agent = ""
    result = state.claims.decide_handoff(
        call.sender,
        task_id,
        to_agent.strip(),
        online=state.presence.online,
        note=text_field(f, "note"),
        epoch=integer_field(f, "epoch"),
        now=call.context.clock(),
        operator=call.operator,
    )
    if isinstance(result, Refusal):
        call.deny("handoff_denied", result, task_id=task_id)
        return
    note = result.data["note"]
    giver = result.data["previous_owner"]
    by = f" by {call.sender}" if giver != call.sender else ""
    progress = state.board.decide_progress(
        call.sender, task_id, f"handed off to {to_agent}{by}: {note}".rstrip(": "),
        now=call.context.clock(),
    )
    if isinstance(progress, Event):
        call.emit(progress)
        call.broadcast(
            "ledger_progress_posted",
            f"Progress on '{task_id}' by {call.sender}.",
            task_id=task_id,
            note=progress.data,
        )
    call.emit(result)
    claim = state.claims.claims[task_id]
    call.broadcast(
        "handoff_granted",
        f"Task '{task_id}' handed off from {giver} to {claim.owner}.",
        primary=True,
        task_id=task_id,
        owner=claim.owner,
        previous_owner=giver,
        note=note,
        status=claim.status,
        worktree=claim.worktree,
        paths=list(claim.paths),
        epoch=claim.epoch,
        version=claim.version,
        lease_expires_at=claim.lease_expires_at,
        checkpoint=claim.checkpoint,
        data_ref=claim.data_ref,
        git=claim.git,
    )


def wait(call: Call) -> None:
    task_id = task_id_field(call.frame)
    result, holder = call.context.state.claims.decide_wait(call.sender, task_id)
    if isinstance(result, Refusal):
        call.deny("wait_denied", result, task_id=task_id, holder=holder,
                  reason_code=result.reason)
        return
    call.emit(result)
    call.reply("wait_granted", f"Waiting for '{task_id}' held by {holder}.",
               task_id=task_id, holder=holder)


def announce_lapse(call: Call, event: Event) -> None:
    """Broadcast a lease the sweep ended: it expired, or its holder was offline too long."""
    data = event.data
    if event.kind == "expire":
        call.broadcast(
            "lease_expired",
            f"Lease on '{data['task_id']}' held by {data['owner']} expired.",
            task_id=data["task_id"],
            owner=data["owner"],
            epoch=data["epoch"],
            checkpoint_retained=data["checkpoint_retained"],
        )
    else:
        call.broadcast(
            "release_granted",
            f"Task '{data['task_id']}' released: {data['owner']} was offline.",
            task_id=data["task_id"],
            owner=data["owner"],
            released_by=data["by"],
            holder_offline_seconds=data["holder_offline_seconds"],
        )


def _claim_view(context: Context, now: float) -> list[dict[str, Any]]:
    state = context.state
    presence = state.presence
    view = []
    for claim in sorted(state.claims, key=lambda c: c.task_id):
        item = claim.to_dict()
        online = claim.owner in presence.online
        item["holder_online"] = online
        if not online:
            since = presence.offline_since.get(claim.owner, state.started_at)
            item["holder_offline_seconds"] = round(max(0.0, now - since), 3)
        view.append(item)
    return view


def state_snapshot(call: Call) -> None:
    context = call.context
    now = context.clock()
    context.expire_offers(now)
    extra = {}
    if "request_id" in call.frame:
        extra["request_id"] = call.frame["request_id"]
    if "release_confirmation" in call.frame:
        call.reply("state_snapshot", "Release confirmation", **extra,
                   release_confirmation=_release_confirmation(
                       context, call.sender, call.frame["release_confirmation"]))
        return
    call.reply(
        "state_snapshot",
        "State snapshot",
        **extra,
        snapshot={
            "active_claims": _claim_view(context, now),
            "agents": [
                {"agent": a.name, "last_seen": a.last_seen}
                for a in sorted(context.state.presence.online.values(), key=lambda a: a.name)
            ],
            "resources": list(context.offers.values()),
            "generated_at": now,
            "dead_letters": [],
            "pending_relay_approvals": [],
        },
    )


def _release_confirmation(context: Context, sender: str, query: object) -> dict[str, Any]:
    """Whether a keyed release by `sender` is on record, read from the idempotency keys."""
    if not isinstance(query, dict) or not all(
        isinstance(query.get(k), str) for k in ("task_id", "operation_id", "request_digest")
    ):
        return {"status": "unknown"}
    asked = {k: query[k] for k in ("task_id", "operation_id", "request_digest")}
    seen = context.state.idem.get(f"{sender}\0release\0{asked['operation_id']}")
    if seen is None or seen[0] != asked["request_digest"]:
        return {"status": "unknown", **asked}
    reply = json.loads(seen[1])
    receipt = reply.get("receipt")
    if (reply.get("type") != "release_granted" or reply.get("task_id") != asked["task_id"]
            or reply.get("owner") != sender or not isinstance(receipt, dict)):
        return {"status": "unknown", **asked}
    return {**asked, "status": "confirmed", "owner": sender,
            "release_operation_id": asked["operation_id"], "receipt": receipt}
