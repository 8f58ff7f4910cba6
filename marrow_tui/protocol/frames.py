"""What every verb decides with: frame encoding, the deliveries and outcome a frame produces,
the call being handled, and the readers that check a frame's fields.

A leaf: it imports the core and the standard library only, so each verb module and the
decider can share it without importing one another.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.events import Event, Refusal
from ..core.state import State
from ..core.text import identifier_problem

HUB_SENDER = "SynapseHub"
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
#: visible text. Every verb reads them through `text_field`/`strings_field`, which refuse a
#: value with a control character, an unpaired surrogate or a bidi control (docs/protocol.md
#: §1.3). Free text (payload, note, title, description, question, answer, text, body, ...) may
#: hold line breaks; it is escaped where it is printed (core/text.py `printable`).
IDENTIFIER_FIELDS = frozenset({
    "task_id", "id", "worktree", "paths", "target", "to_agent", "history_target",
    "depends_on", "suggested_owner", "project", "status", "kind", "resource_kind",
    "resource_name", "name", "model", "skills", "task_classes", "session", "request_key",
    "agent", "issue", "identifier", "state",
})


def identifier(name: str, value: str) -> str:
    """`value` unchanged if it is fit to be the identifier field `name`, else a BadFrame."""
    problem = identifier_problem(value, joiners=name == "paths")
    if problem is not None:
        raise BadFrame(f"Malformed frame: '{name}' holds {problem}; identifiers may not "
                       "contain control characters, line breaks, bidi controls, invisible "
                       "format characters or unpaired surrogates.")
    return value


def text_field(frame: dict[str, Any], name: str, default: str = "") -> str:
    value = frame.get(name, default)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise BadFrame(f"Malformed frame: '{name}' must be a string.")
    return identifier(name, value) if name in IDENTIFIER_FIELDS else value


def optional_text_field(frame: dict[str, Any], name: str) -> str | None:
    return None if frame.get(name) is None else text_field(frame, name)


def strings_field(frame: dict[str, Any], name: str) -> list[str]:
    value = frame.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    elif not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadFrame(f"Malformed frame: '{name}' must be a list of strings.")
    if name in IDENTIFIER_FIELDS:
        for item in value:
            identifier(name, item)
    return value


def integer_field(frame: dict[str, Any], name: str) -> object:
    """An integer field, passed through when present so the core can refuse a bad one."""
    value = frame.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadFrame(f"Malformed frame: '{name}' must be an integer.")
    return value


def number_field(frame: dict[str, Any], name: str) -> float | None:
    value = frame.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadFrame(f"Malformed frame: '{name}' must be a number.")
    return float(value)


def task_id_field(frame: dict[str, Any]) -> str:
    task_id = text_field(frame, "task_id") or text_field(frame, "id")
    if not task_id:
        payload = frame.get("payload")
        task_id = identifier("payload", payload) if isinstance(payload, str) else ""
    return task_id.strip()


class Context:
    """What the verbs decide with: the state (changed only through events), the hub's identity
    and clock, and the live resource offers and capability cards (ephemeral by design, never
    persisted)."""

    def __init__(self, state: State, hub_id: str, clock: Callable[[], float]) -> None:
        self.state = state
        self.hub_id = hub_id
        self.clock = clock
        self.offers: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}

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

    def expire_offers(self, now: float) -> None:
        for key in [k for k, o in self.offers.items() if o["expires_at"] <= now]:
            del self.offers[key]


@dataclass(slots=True)
class Call:
    """One frame being handled: applies events as it decides and collects what to send."""

    context: Context
    outcome: Outcome
    sender: str
    frame: dict[str, Any]
    operator: bool = False
    #: the connection proved with an agent key that it is the agent it names
    #: (docs/protocol.md §2.7)
    proven: bool = False
    idem: tuple[str, str] | None = None

    def emit(self, event: Event) -> None:
        self.context.state.apply(event)
        self.outcome.events.append(event)

    def _send(self, kind: str, target: str, payload: str, audience: str | None,
              primary: bool, fields: dict[str, Any], /) -> None:
        text = encode(self.context.frame(kind, target, payload, **fields))
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


#: a verb: it decides on the `Call` (replies, refuses or emits events on it)
Handler = Callable[[Call], None]


def operator_only(call: Call) -> bool:
    """A verb for operators only: anyone else is refused (`forbidden`, one sentence)."""
    if not call.operator:
        call.deny("error", Refusal("forbidden", "Only an operator does that (connect with the "
                                                "operator token)."))
        return False
    return True
