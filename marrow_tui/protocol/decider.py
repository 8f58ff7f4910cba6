"""The wire vocabulary: frames in, decisions through the core, frames out. No I/O here.

`Protocol.handle` takes one parsed frame from a bound session and returns an `Outcome`: the
events it applied (in order) and the frames to deliver once those events are durable. The
runtime persists the events and releases the deliveries after the commit, so a reply that says
"done" never precedes its record on disk.

The vocabulary is synapse-channel's core set (see docs/protocol.md for what we do differently).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..core.chat import BROADCAST_TARGETS, addressed_to, within
from ..core.events import Event, Refusal
from ..core.state import State
from ..core.text import identifier_problem
from . import steering

HUB_SENDER = "SynapseHub"
PROTOCOL_VERSION = 2
HUB_VERSION = f"marrow-tui {__version__}"
#: resource offers last this long after their last refresh
OFFER_TTL = 300.0
MAX_OFFERS_PER_AGENT = 64

REPLAY_PROTECTED = frozenset(
    {
        "extend",
        "claim",
        "release",
        "task_update",
        "handoff",
        "checkpoint",
        "ledger_task",
        "ledger_task_update",
        "ledger_progress",
    }
)
#: fields left out of the idempotency digest: they differ between two sends of one request
_DIGEST_SKIP = frozenset({"timestamp", "client_timestamp", "auth", "signature", "token"})

ALL = "all"


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


@dataclass(slots=True)
class Delivery:
    """A frame (already serialised once) and who gets it.

    `audience` is `ALL` (every bound session), `None` (the requester only), or a set of names.
    """

    text: str
    audience: str | frozenset[str] | None


@dataclass(slots=True)
class Outcome:
    events: list[Event] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)


class BadFrame(Exception):
    """A frame whose fields have the wrong shape; answered with an `error` and otherwise ignored."""


#: Fields that name something (a task, a worktree, a path, an agent, a request, a state):
#: they are printed in logs and tables and matched by equality, so they are one line of
#: visible text. Every verb reads them through `_text`/`_strings`, which refuse a value with
#: a control character, an unpaired surrogate or a bidi control (docs/protocol.md §1.3).
#: Free text (payload, note, title, description, question, answer, text, body, ...) may hold
#: line breaks; it is escaped where it is printed (core/text.py `printable`).
IDENTIFIER_FIELDS = frozenset({
    "task_id", "id", "worktree", "paths", "target", "to_agent", "history_target",
    "depends_on", "suggested_owner", "project", "status", "kind", "resource_kind",
    "resource_name", "name", "model", "skills", "task_classes", "session", "request_key",
    "agent", "issue", "identifier", "state",
})


def _identifier(name: str, value: str) -> str:
    """`value` unchanged if it is fit to be the identifier field `name`, else a BadFrame."""
    problem = identifier_problem(value)
    if problem is not None:
        raise BadFrame(f"Malformed frame: '{name}' holds {problem}; identifiers may not "
                       "contain control characters, line breaks, bidi controls, invisible "
                       "format characters or unpaired surrogates.")
    return value


def _text(frame: dict[str, Any], name: str, default: str = "") -> str:
    value = frame.get(name, default)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise BadFrame(f"Malformed frame: '{name}' must be a string.")
    return _identifier(name, value) if name in IDENTIFIER_FIELDS else value


#: the public name for other parts of the runtime that serve verbs (`Protocol.register`)
text_field = _text


def _optional_text(frame: dict[str, Any], name: str) -> str | None:
    return None if frame.get(name) is None else _text(frame, name)


def _strings(frame: dict[str, Any], name: str) -> list[str]:
    value = frame.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    elif not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadFrame(f"Malformed frame: '{name}' must be a list of strings.")
    if name in IDENTIFIER_FIELDS:
        for item in value:
            _identifier(name, item)
    return value


def _int_or_none(frame: dict[str, Any], name: str) -> object:
    """An integer field, passed through when present so the core can refuse a bad one."""
    value = frame.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadFrame(f"Malformed frame: '{name}' must be an integer.")
    return value


def _task_id(frame: dict[str, Any]) -> str:
    task_id = _text(frame, "task_id") or _text(frame, "id")
    if not task_id:
        payload = frame.get("payload")
        task_id = _identifier("payload", payload) if isinstance(payload, str) else ""
    return task_id.strip()


def request_digest(frame: dict[str, Any]) -> str:
    body = {k: v for k, v in frame.items() if k not in _DIGEST_SKIP}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Protocol:
    """Decides what each frame means. Owns no sockets; mutates `state` only through events."""

    def __init__(self, state: State, hub_id: str, clock: Callable[[], float]) -> None:
        self.state = state
        self.hub_id = hub_id
        self.clock = clock
        #: live resource offers and capability cards: ephemeral by design, never persisted
        self.offers: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self._verbs: dict[str, Callable[[_Call], None]] = {
            "heartbeat": self._heartbeat,
            "ack": self._heartbeat,
            "claim": self._claim,
            "release": self._release,
            "task_update": self._task_update,
            "checkpoint": self._checkpoint,
            "handoff": self._handoff,
            "extend": self._extend,
            "wait_request": self._wait,
            "ledger_task": self._ledger_task,
            "ledger_task_update": self._ledger_task_update,
            "ledger_progress": self._ledger_progress,
            "board_request": self._board,
            "chat": self._chat,
            "history_request": self._history,
            "resume_request": self._resume,
            "who_request": self._who,
            "state_request": self._state,
            "resource": self._resource,
            "resource_offer": self._resource,
            "offer_resource": self._resource,
            "advertise": self._advertise,
            "manifest_request": self._manifest,
        }
        steering.register(self)

    def register(self, verb: str, handler: Callable[[Call], None]) -> None:
        """Add a verb served by another part of the runtime (the scheduler's `wake`, ...).

        The handler decides like the core verbs do: it replies, refuses or emits events on
        the `Call`, and its replies are released only once those events are durable.
        """
        if verb in self._verbs:
            raise ValueError(f"verb {verb!r} is already served")
        self._verbs[verb] = handler

    # ---- frames --------------------------------------------------------------------------

    def frame(self, kind: str, target: str, payload: str, /, **fields: Any) -> dict[str, Any]:
        return {
            "sender": HUB_SENDER,
            "target": target,
            "type": kind,
            "payload": payload,
            "timestamp": self.clock(),
            "hub_id": self.hub_id,
            **fields,
        }

    def error(self, target: str, text: str, /, **fields: Any) -> Delivery:
        return Delivery(encode(self.frame("error", target, text, **fields)), None)

    def welcome(self, connected: int) -> str:
        return encode(
            self.frame(
                "welcome",
                "self",
                "Welcome to marrow-tui",
                connected_clients=connected,
                online_agents=sorted(self.state.presence.online),
                protocol_version=PROTOCOL_VERSION,
            )
        )

    # ---- presence ------------------------------------------------------------------------

    def joined(self, name: str, roles: tuple[str, ...], operator: bool = False) -> Outcome:
        return self._presence("joined", name, roles, operator)

    def left(self, name: str) -> Outcome:
        self.cards.pop(name, None)
        return self._presence("left", name, (), False)

    def _presence(self, what: str, name: str, roles: tuple[str, ...], operator: bool) -> Outcome:
        outcome = Outcome()
        now = self.clock()
        agent = self.state.presence.online.get(name)
        event = Event(
            "presence",
            {"event": what, "agent": name, "roles": list(roles), "at": now,
             "operator": operator, "since": agent.since if agent else now},
        )
        self.state.apply(event)
        outcome.events.append(event)
        if what == "joined":
            # Ends it has not acknowledged (answers that came while it was away, or a reply
            # it dropped) are sent again; they count as delivered once it acks them.
            for request in self.state.steering.undelivered(name):
                delivery = steering.deliver_ended(self, request.id)
                if delivery is not None:
                    outcome.deliveries.append(delivery)
        outcome.deliveries.append(
            Delivery(
                encode(
                    self.frame(
                        "presence_update",
                        ALL,
                        "Presence update",
                        online_agents=sorted(self.state.presence.online),
                        event=what,
                        agent=name,
                    )
                ),
                ALL,
            )
        )
        return outcome

    # ---- time ----------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> Outcome:
        """Apply and announce every lease that ended and every offline holder's release."""
        outcome = Outcome()
        call = _Call(self, outcome, HUB_SENDER, {})
        self._sweep_into(call, self.clock() if now is None else now)
        return outcome

    def _sweep_into(self, call: _Call, now: float) -> None:
        deadline = self.state.next_deadline()
        if deadline is None or deadline > now:
            return
        for event in self.state.sweep(now):
            call.emit(event)
            data = event.data
            if event.kind == "steer_end":  # a steering request timed out
                delivery = steering.deliver_ended(self, data["id"])
                if delivery is not None:
                    call.outcome.deliveries.append(delivery)
            elif event.kind == "expire":
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

    # ---- dispatch ------------------------------------------------------------------------

    def handle(self, sender: str, frame: dict[str, Any], operator: bool = False,
               proven: bool = False) -> Outcome:
        """One frame from the bound session `sender` (envelope already validated).

        `operator` is true for the in-process console session and for a connection that
        registered with the operator token (the server decides, once, at registration; a
        frame's own fields never grant it). An operator may release, hand off and extend
        anyone's lease, answer and cancel others' steering requests, and use the verbs other
        parts serve for operators only (they read `call.operator`). `proven` is true for a
        connection whose first frame carried a valid agent key for its name (or a name it is
        under): it is that agent, not just a connection using its name (`call.proven`). See
        docs/protocol.md §2.7.
        """
        outcome = Outcome()
        kind = frame.get("type") or "chat"
        kind = kind.strip().lower()
        handler = self._verbs.get(kind)
        if handler is None:
            outcome.deliveries.append(self.error(sender, f"Unknown message type '{kind}'."))
            return outcome
        now = self.clock()
        call = _Call(self, outcome, sender, frame, operator=operator, proven=proven)
        self.state.touch(sender, now)
        self._sweep_into(call, now)
        key = None
        if kind in REPLAY_PROTECTED and isinstance(frame.get("idem_key"), str) and frame["idem_key"]:
            key = f"{sender}\0{kind}\0{frame['idem_key']}"
            digest = request_digest(frame)
            seen = self.state.idem.get(key)
            if seen is not None:
                if seen[0] == digest:
                    outcome.deliveries.append(Delivery(seen[1], None))
                else:
                    outcome.deliveries.append(
                        self.error(
                            sender,
                            "Idempotency key was already used for a different request.",
                            error_code="idempotency_conflict",
                        )
                    )
                return outcome
            call.idem = (key, digest)
        try:
            handler(call)
        except BadFrame as exc:
            outcome.deliveries.append(self.error(sender, str(exc)))
        return outcome

    # ---- claims --------------------------------------------------------------------------

    def _heartbeat(self, call: _Call) -> None:
        return None

    def _claim(self, call: _Call) -> None:
        f = call.frame
        task_id = _task_id(f)
        worktree = _text(f, "worktree")
        paths = _strings(f, "paths")
        git = f.get("git")
        result = self.state.claims.decide_claim(
            call.sender,
            task_id,
            worktree=worktree,
            paths=paths,
            ttl=f.get("ttl_seconds"),
            note=_text(f, "note"),
            git=git,
            now=self.clock(),
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

    def _release(self, call: _Call) -> None:
        task_id = _task_id(call.frame)
        # A keyed release names its operation in the verdict, so a client that lost the
        # connection can tell its own release from someone else's (synapse 0.99 clients check).
        binding: dict[str, str] = {}
        if call.idem is not None:
            binding = {"release_operation_id": call.frame["idem_key"],
                       "request_digest": call.idem[1]}
        result = self.state.claims.decide_release(
            call.sender, task_id, epoch=_int_or_none(call.frame, "epoch"),
            operator=call.operator, keep_checkpoint=call.frame.get("keep_checkpoint") is True,
        )
        if isinstance(result, Refusal):
            call.deny("release_denied", result, task_id=task_id, **binding)
            return
        call.emit(result)
        owner = result.data["owner"]
        if owner != call.sender:
            binding["released_by"] = call.sender
        receipt = self._receipt(call.frame, task_id, owner)
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
        from ..core.board import MAX_NOTE
        from ..core.receipts import receipt_has_evidence, receipt_note

        if receipt_has_evidence(receipt):
            note = self.state.board.decide_progress(
                # the whole receipt is in the grant; the note is its summary, within bounds
                call.sender, task_id, receipt_note(receipt)[:MAX_NOTE], kind="assessment",
                now=self.clock(),
            )
            if isinstance(note, Event):
                call.emit(note)
                call.broadcast("ledger_progress_posted", f"Release receipt from {call.sender}",
                               task_id=task_id, note=note.data)

    def _extend(self, call: _Call) -> None:
        task_id = _task_id(call.frame)
        result = self.state.claims.decide_extend(
            call.sender, task_id, ttl=call.frame.get("ttl_seconds"), now=self.clock(),
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

    def _release_confirmation(self, sender: str, query: object) -> dict[str, Any]:
        """Whether a keyed release by `sender` is on record, read from the idempotency keys."""
        if not isinstance(query, dict) or not all(
            isinstance(query.get(k), str) for k in ("task_id", "operation_id", "request_digest")
        ):
            return {"status": "unknown"}
        asked = {k: query[k] for k in ("task_id", "operation_id", "request_digest")}
        seen = self.state.idem.get(f"{sender}\0release\0{asked['operation_id']}")
        if seen is None or seen[0] != asked["request_digest"]:
            return {"status": "unknown", **asked}
        reply = json.loads(seen[1])
        receipt = reply.get("receipt")
        if (reply.get("type") != "release_granted" or reply.get("task_id") != asked["task_id"]
                or reply.get("owner") != sender or not isinstance(receipt, dict)):
            return {"status": "unknown", **asked}
        return {**asked, "status": "confirmed", "owner": sender,
                "release_operation_id": asked["operation_id"], "receipt": receipt}

    @staticmethod
    def _receipt(frame: dict[str, Any], task_id: str, owner: str) -> dict[str, Any]:
        """The graded close-out receipt for a granted release (core/receipts.py, §3.2)."""
        from ..core.receipts import build_receipt

        return build_receipt(frame, task_id, owner)

    def _task_update(self, call: _Call) -> None:
        f = call.frame
        task_id = _task_id(f)
        result = self.state.claims.decide_update(
            call.sender,
            task_id,
            status=_optional_text(f, "status"),
            note=_optional_text(f, "note"),
            data_ref=_optional_text(f, "data_ref"),
            epoch=_int_or_none(f, "epoch"),
            expected_version=_int_or_none(f, "expected_version"),
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

    def _checkpoint(self, call: _Call) -> None:
        f = call.frame
        task_id = _task_id(f) if f.get("task_id") or f.get("id") else ""
        text = f.get("checkpoint")
        if text is None:
            text = f.get("payload", "")
        if not isinstance(text, str):
            text = json.dumps(text)
        result = self.state.claims.decide_checkpoint(
            call.sender, task_id, text, epoch=_int_or_none(f, "epoch")
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

    def _handoff(self, call: _Call) -> None:
        f = call.frame
        task_id = _task_id(f)
        to_agent = _text(f, "to_agent") or _text(f, "target")
        if to_agent in BROADCAST_TARGETS:
            to_agent = ""
        result = self.state.claims.decide_handoff(
            call.sender,
            task_id,
            to_agent.strip(),
            online=self.state.presence.online,
            note=_text(f, "note"),
            epoch=_int_or_none(f, "epoch"),
            now=self.clock(),
            operator=call.operator,
        )
        if isinstance(result, Refusal):
            call.deny("handoff_denied", result, task_id=task_id)
            return
        note = result.data["note"]
        giver = result.data["previous_owner"]
        by = f" by {call.sender}" if giver != call.sender else ""
        progress = self.state.board.decide_progress(
            call.sender, task_id, f"handed off to {to_agent}{by}: {note}".rstrip(": "),
            now=self.clock(),
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
        claim = self.state.claims.claims[task_id]
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

    def _wait(self, call: _Call) -> None:
        task_id = _task_id(call.frame)
        result, holder = self.state.claims.decide_wait(call.sender, task_id)
        if isinstance(result, Refusal):
            call.deny("wait_denied", result, task_id=task_id, holder=holder,
                      reason_code=result.reason)
            return
        call.emit(result)
        call.reply("wait_granted", f"Waiting for '{task_id}' held by {holder}.",
                   task_id=task_id, holder=holder)

    # ---- blackboard ----------------------------------------------------------------------

    def _ledger_task(self, call: _Call) -> None:
        f = call.frame
        result = self.state.board.decide_declare(
            call.sender,
            _task_id(f),
            _text(f, "title"),
            description=_text(f, "description"),
            depends_on=_strings(f, "depends_on"),
            suggested_owner=_text(f, "suggested_owner"),
            project=_text(f, "project"),
            expected_version=_int_or_none(f, "expected_version"),
            now=self.clock(),
        )
        self._board_outcome(call, result, "ledger_task_posted", "declared")

    def _ledger_task_update(self, call: _Call) -> None:
        f = call.frame
        result = self.state.board.decide_update(
            call.sender,
            _task_id(f),
            status=_optional_text(f, "status"),
            suggested_owner=_optional_text(f, "suggested_owner"),
            project=_optional_text(f, "project"),
            expected_version=_int_or_none(f, "expected_version"),
            now=self.clock(),
        )
        self._board_outcome(call, result, "ledger_task_updated", "updated")

    def _board_outcome(
        self, call: _Call, result: Event | Refusal, kind: str, verb: str
    ) -> None:
        if isinstance(result, Refusal):
            call.deny("error", result, task_id=_task_id(call.frame))
            return
        call.emit(result)
        task = result.data["task"]
        call.broadcast(
            kind,
            f"Task '{task['task_id']}' {verb} by {call.sender}.",
            primary=True,
            task=task,
        )

    def _ledger_progress(self, call: _Call) -> None:
        f = call.frame
        text = _text(f, "text") or _text(f, "note") or _text(f, "payload")
        result = self.state.board.decide_progress(
            call.sender, _task_id(f), text, kind=_text(f, "kind", "note") or "note",
            now=self.clock(),
        )
        if isinstance(result, Refusal):
            call.deny("error", result, task_id=_task_id(f))
            return
        call.emit(result)
        call.broadcast(
            "ledger_progress_posted",
            f"Progress on '{result.data['task_id']}' by {call.sender}.",
            primary=True,
            task_id=result.data["task_id"],
            note=result.data,
        )

    def _board(self, call: _Call) -> None:
        call.reply("board_snapshot", "Board snapshot", board=self.state.board.snapshot())

    # ---- chat ----------------------------------------------------------------------------

    def _chat(self, call: _Call) -> None:
        f = call.frame
        target = _text(f, "target", ALL) or ALL
        msg = {k: v for k, v in f.items() if k != "token"}
        now = self.clock()
        client_ts = f.get("timestamp")
        if isinstance(client_ts, (int, float)) and not isinstance(client_ts, bool) \
                and math.isfinite(client_ts):
            msg["client_timestamp"] = client_ts
        msg.update(
            sender=call.sender,
            target=target,
            type="chat",
            timestamp=now,
            hub_id=self.hub_id,
            msg_id=self.state.chat.msg_id + 1,
        )
        msg.setdefault("payload", "")
        text = encode(msg)
        limit = self.state.chat.max_message_bytes
        if len(text) > limit:  # ASCII JSON: characters are bytes
            cid = f.get("client_msg_id")
            echo = {"client_msg_id": cid} if isinstance(cid, str) and len(cid) <= 256 else {}
            call.deny("error", Refusal(
                "chat_too_large",
                f"Chat refused: the message is {len(text):,} bytes as the hub stores it, "
                f"over the {limit:,}-byte limit for one chat; send it in parts or as a file.",
            ), **echo)
            return
        call.emit(Event("chat", msg, text))
        if target in BROADCAST_TARGETS:
            call.outcome.deliveries.append(Delivery(text, ALL))
            return
        recipients = sorted(
            name
            for name in self.state.presence.online
            if name != call.sender
            and addressed_to(target, name, self.state.presence.roles_of(name))
        )
        call.outcome.deliveries.append(Delivery(text, frozenset((*recipients, call.sender))))
        if f.get("receipt_requested") is True:
            delivered = bool(recipients)
            call.reply(
                "delivery_receipt",
                f"delivered to {', '.join(recipients)}" if delivered
                else f"delivery failed: no online recipient matched {target}",
                delivered=delivered,
                deferred=False,
                dead_lettered=not delivered,
                reason="" if delivered else "no_online_recipient",
                message_id=msg["msg_id"],
                message_target=target,
                recipients=recipients,
                matched_recipients=recipients,
                stale_recipients=[],
                **({"client_msg_id": f["client_msg_id"]} if "client_msg_id" in f else {}),
            )

    def _visible(self, name: str, frame: dict[str, Any]) -> bool:
        target = frame.get("target", ALL)
        return (
            target in BROADCAST_TARGETS
            or frame.get("sender") == name
            or addressed_to(target, name, self.state.presence.roles_of(name))
        )

    def _history(self, call: _Call) -> None:
        limit = call.frame.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int):
            limit = 100
        only = _text(call.frame, "history_target")
        visible = [
            m for m in self.state.chat.history
            if self._visible(call.sender, m) and (not only or m.get("target") == only)
        ]
        wanted = visible[-max(0, min(limit, len(visible))):] if limit > 0 else []
        history = within(wanted, newest=True)
        call.reply(
            "history_snapshot",
            "History snapshot",
            history=history,
            requested_limit=limit,
            # older messages left out to keep the reply under the clients' frame limit
            complete=len(history) == len(wanted),
        )

    def _resume(self, call: _Call) -> None:
        since = call.frame.get("since", 0)
        if isinstance(since, bool) or not isinstance(since, int):
            raise BadFrame("Malformed frame: 'since' must be an integer.")
        wanted = [m for m in self.state.chat.since(since) if self._visible(call.sender, m)]
        messages = within(wanted, newest=False)
        # A client that gets `complete: false` asks again from the last msg_id it got.
        call.reply("resume_snapshot", "Resume snapshot", since=since, messages=messages,
                   complete=len(messages) == len(wanted))

    # ---- queries -------------------------------------------------------------------------

    def _who(self, call: _Call) -> None:
        online = self.state.presence.online
        call.reply(
            "who_snapshot",
            "Who snapshot",
            online_agents=sorted(online),
            agent_roles={n: list(a.roles) for n, a in sorted(online.items()) if a.roles},
            connected_clients=len(online),
            hub_version=HUB_VERSION,
            mailbox_pending=None,
        )

    def claim_view(self, now: float) -> list[dict[str, Any]]:
        presence = self.state.presence
        view = []
        for claim in sorted(self.state.claims, key=lambda c: c.task_id):
            item = claim.to_dict()
            online = claim.owner in presence.online
            item["holder_online"] = online
            if not online:
                since = presence.offline_since.get(claim.owner, self.state.started_at)
                item["holder_offline_seconds"] = round(max(0.0, now - since), 3)
            view.append(item)
        return view

    def _state(self, call: _Call) -> None:
        now = self.clock()
        self._expire_offers(now)
        extra = {}
        if "request_id" in call.frame:
            extra["request_id"] = call.frame["request_id"]
        if "release_confirmation" in call.frame:
            call.reply("state_snapshot", "Release confirmation", **extra,
                       release_confirmation=self._release_confirmation(
                           call.sender, call.frame["release_confirmation"]))
            return
        call.reply(
            "state_snapshot",
            "State snapshot",
            **extra,
            snapshot={
                "active_claims": self.claim_view(now),
                "agents": [
                    {"agent": a.name, "last_seen": a.last_seen}
                    for a in sorted(self.state.presence.online.values(), key=lambda a: a.name)
                ],
                "resources": list(self.offers.values()),
                "generated_at": now,
                "dead_letters": [],
                "pending_relay_approvals": [],
            },
        )

    def _expire_offers(self, now: float) -> None:
        for key in [k for k, o in self.offers.items() if o["expires_at"] <= now]:
            del self.offers[key]

    def _resource(self, call: _Call) -> None:
        f = call.frame
        kind = _text(f, "kind") or _text(f, "resource_kind")
        name = _text(f, "name") or _text(f, "resource_name")
        if not kind or not name:
            raise BadFrame("resource offer requires kind+name")
        now = self.clock()
        self._expire_offers(now)
        key = f"{call.sender}:{kind}:{name}"
        mine = sum(1 for o in self.offers.values() if o["agent"] == call.sender)
        if key not in self.offers and mine >= MAX_OFFERS_PER_AGENT:
            raise BadFrame("resource offer quota exceeded")
        capacity = f.get("capacity", 1)
        meta = f.get("meta") if isinstance(f.get("meta"), dict) else {}
        self.offers[key] = {
            "agent": call.sender, "kind": kind, "name": name, "key": key,
            "capacity": capacity if isinstance(capacity, int) and capacity >= 1 else 1,
            "meta": meta, "offered_at": now, "expires_at": now + OFFER_TTL,
        }
        call.broadcast("resource_offered", f"Resource offered by {call.sender}",
                       agent=call.sender, kind=kind, name=name, key=key)

    def _advertise(self, call: _Call) -> None:
        f = call.frame
        card: dict[str, Any] = {
            "agent": call.sender,
            "description": _text(f, "description"),
            "skills": _strings(f, "skills"),
            "task_classes": _strings(f, "task_classes"),
            "model": _text(f, "model"),
            "project": call.sender.split("/", 1)[0] if "/" in call.sender else "",
            "meta": f.get("meta") if isinstance(f.get("meta"), dict) else {},
            "advertised_at": self.clock(),
        }
        self.cards[call.sender] = card
        call.broadcast("capability_advertised", f"Capability advertised by {call.sender}",
                       agent=call.sender, card=card)

    def _manifest(self, call: _Call) -> None:
        call.reply("manifest_snapshot", "Manifest snapshot",
                   manifest=[self.cards[n] for n in sorted(self.cards)])


@dataclass(slots=True)
class _Call:
    """One frame being handled: applies events as it decides and collects what to send."""

    protocol: Protocol
    outcome: Outcome
    sender: str
    frame: dict[str, Any]
    operator: bool = False
    #: the connection proved with an agent key that it is the agent it names (§2.7)
    proven: bool = False
    idem: tuple[str, str] | None = None

    def emit(self, event: Event) -> None:
        self.protocol.state.apply(event)
        self.outcome.events.append(event)

    def _send(self, kind: str, target: str, payload: str, audience: str | None,
              primary: bool, fields: dict[str, Any], /) -> None:
        text = encode(self.protocol.frame(kind, target, payload, **fields))
        self.outcome.deliveries.append(Delivery(text, audience))
        if primary and self.idem is not None:
            key, digest = self.idem
            self.emit(Event("idem", {"key": key, "digest": digest, "response": text}))

    def broadcast(self, kind: str, payload: str, /, primary: bool = False,
                  **fields: Any) -> None:
        self._send(kind, ALL, payload, ALL, primary, fields)

    def reply(self, kind: str, payload: str, /, primary: bool = False, **fields: Any) -> None:
        self._send(kind, self.sender, payload, None, primary, fields)

    def deny(self, kind: str, refusal: Refusal, /, **fields: Any) -> None:
        if kind == "error":
            fields.setdefault("error_code", refusal.reason)
        self._send(kind, self.sender, refusal.text, None, False, fields)


#: the public name handlers registered with `Protocol.register` receive
Call = _Call
