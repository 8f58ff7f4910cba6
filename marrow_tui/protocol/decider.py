"""The decider: frames in, decisions through the core, frames out. No I/O here.

`Decider.handle` takes one parsed frame from a bound session and returns an `Outcome`: the
events it applied (in order) and the frames to deliver once those events are durable. The
runtime persists the events and releases the deliveries after the commit, so a reply that says
"done" never precedes its record on disk.

The vocabulary is synapse-channel's core set (see docs/protocol.md for what we do differently).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from ..core.state import State
from . import board, chat, claims, presence, steering
from .frames import HUB_SENDER, BadFrame, Call, Context, Delivery, Handler, Outcome, encode

#: the synapse wire revision the hub says it serves in `welcome`: the core vocabulary
#: (docs/protocol.md §1.5)
SERVED_WIRE_REVISION = 2

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


def request_digest(frame: dict[str, Any]) -> str:
    body = {k: v for k, v in frame.items() if k not in _DIGEST_SKIP}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Decider(Context):
    """Decides what each frame means. Owns no sockets; mutates `state` only through events."""

    def __init__(self, state: State, hub_id: str, clock: Callable[[], float]) -> None:
        super().__init__(state, hub_id, clock)
        self._verbs: dict[str, Handler] = {
            "heartbeat": presence.heartbeat,
            "ack": presence.heartbeat,
            "claim": claims.claim,
            "release": claims.release,
            "task_update": claims.task_update,
            "checkpoint": claims.checkpoint,
            "handoff": claims.handoff,
            "extend": claims.extend,
            "wait_request": claims.wait,
            "ledger_task": board.ledger_task,
            "ledger_task_update": board.ledger_task_update,
            "ledger_progress": board.ledger_progress,
            "board_request": board.board_request,
            "chat": chat.chat,
            "history_request": chat.history_request,
            "resume_request": chat.resume_request,
            "who_request": presence.who_request,
            "state_request": claims.state_snapshot,
            "resource": presence.resource,
            "resource_offer": presence.resource,
            "offer_resource": presence.resource,
            "advertise": presence.advertise,
            "manifest_request": presence.manifest_request,
            "steer_ask": steering.steer_ask,
            "steer_answer": steering.steer_answer,
            "steer_cancel": steering.steer_cancel,
            "steer_ack": steering.steer_ack,
            "steer_get": steering.steer_get,
            "steer_list": steering.steer_list,
        }

    def register(self, verb: str, handler: Handler) -> None:
        """Add a verb served by another part of the runtime (the scheduler's `wake`, ...).

        The handler decides like the core verbs do: it replies, refuses or emits events on
        the `Call`, and its replies are released only once those events are durable.
        """
        if verb in self._verbs:
            raise ValueError(f"verb {verb!r} is already served")
        self._verbs[verb] = handler

    def welcome(self, connected: int) -> str:
        return encode(
            self.frame(
                "welcome",
                "self",
                "Welcome to marrow-tui",
                connected_clients=connected,
                online_agents=sorted(self.state.presence.online),
                protocol_version=SERVED_WIRE_REVISION,
            )
        )

    # ---- presence ------------------------------------------------------------------------

    def joined(self, name: str, roles: tuple[str, ...], operator: bool = False) -> Outcome:
        call = Call(self, Outcome(), HUB_SENDER, {})
        presence.record(call, "joined", name, roles, operator)
        # Ends it has not acknowledged (answers that came while it was away, or a reply
        # it dropped) are sent again; they count as delivered once it acks them.
        for request in self.state.steering.undelivered(name):
            steering.push_end(call, request.id)
        presence.announce(call, "joined", name)
        return call.outcome

    def left(self, name: str) -> Outcome:
        self.cards.pop(name, None)
        call = Call(self, Outcome(), HUB_SENDER, {})
        presence.record(call, "left", name, (), False)
        presence.announce(call, "left", name)
        return call.outcome

    # ---- time ----------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> Outcome:
        """Apply and announce every lease that ended and every offline holder's release."""
        outcome = Outcome()
        call = Call(self, outcome, HUB_SENDER, {})
        self._sweep_into(call, self.clock() if now is None else now)
        return outcome

    def _sweep_into(self, call: Call, now: float) -> None:
        deadline = self.state.next_deadline()
        if deadline is None or deadline > now:
            return
        for event in self.state.sweep(now):
            call.emit(event)
            if event.kind == "steer_end":  # a steering request timed out
                steering.push_end(call, event.data["id"])
            else:
                claims.announce_lapse(call, event)

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
        call = Call(self, outcome, sender, frame, operator=operator, proven=proven)
        self.state.touch(sender, now)
        self._sweep_into(call, now)
        key = None
        if (kind in REPLAY_PROTECTED and isinstance(frame.get("idem_key"), str)
                and frame["idem_key"]):
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
