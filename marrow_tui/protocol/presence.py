"""Who is here and what they offer: joins and leaves, heartbeats, `who`, resource offers and
capability cards (both live only in memory, on the `Context`)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..core.events import Event
from .frames import BadFrame, Call, strings_field, text_field

HUB_VERSION = f"marrow-tui {__version__}"
#: resource offers last this long after their last refresh
OFFER_TTL = 300.0
MAX_OFFERS_PER_AGENT = 64


def record(call: Call, what: str, name: str, roles: tuple[str, ...], operator: bool) -> None:
    """Apply `name` having `joined` or `left`."""
    state = call.context.state
    now = call.context.clock()
    agent = state.presence.online.get(name)
    call.emit(Event(
        "presence",
        {"event": what, "agent": name, "roles": list(roles), "at": now,
         "operator": operator, "since": agent.since if agent else now},
    ))


def announce(call: Call, what: str, name: str) -> None:
    call.broadcast(
        "presence_update",
        "Presence update",
        online_agents=sorted(call.context.state.presence.online),
        event=what,
        agent=name,
    )


def heartbeat(call: Call) -> None:
    return None


def who_request(call: Call) -> None:
    online = call.context.state.presence.online
    call.reply(
        "who_snapshot",
        "Who snapshot",
        online_agents=sorted(online),
        agent_roles={n: list(a.roles) for n, a in sorted(online.items()) if a.roles},
        connected_clients=len(online),
        hub_version=HUB_VERSION,
        mailbox_pending=None,
    )


def resource(call: Call) -> None:
    context = call.context
    f = call.frame
    kind = text_field(f, "kind") or text_field(f, "resource_kind")
    name = text_field(f, "name") or text_field(f, "resource_name")
    if not kind or not name:
        raise BadFrame("resource offer requires kind+name")
    now = context.clock()
    context.expire_offers(now)
    key = f"{call.sender}:{kind}:{name}"
    mine = sum(1 for o in context.offers.values() if o["agent"] == call.sender)
    if key not in context.offers and mine >= MAX_OFFERS_PER_AGENT:
        raise BadFrame("resource offer quota exceeded")
    capacity = f.get("capacity", 1)
    meta = f.get("meta") if isinstance(f.get("meta"), dict) else {}
    context.offers[key] = {
        "agent": call.sender, "kind": kind, "name": name, "key": key,
        "capacity": capacity if isinstance(capacity, int) and capacity >= 1 else 1,
        "meta": meta, "offered_at": now, "expires_at": now + OFFER_TTL,
    }
    call.broadcast("resource_offered", f"Resource offered by {call.sender}",
                   agent=call.sender, kind=kind, name=name, key=key)


def advertise(call: Call) -> None:
    f = call.frame
    card: dict[str, Any] = {
        "agent": call.sender,
        "description": text_field(f, "description"),
        "skills": strings_field(f, "skills"),
        "task_classes": strings_field(f, "task_classes"),
        "model": text_field(f, "model"),
        "project": call.sender.split("/", 1)[0] if "/" in call.sender else "",
        "meta": f.get("meta") if isinstance(f.get("meta"), dict) else {},
        "advertised_at": call.context.clock(),
    }
    call.context.cards[call.sender] = card
    call.broadcast("capability_advertised", f"Capability advertised by {call.sender}",
                   agent=call.sender, card=card)


def manifest_request(call: Call) -> None:
    cards = call.context.cards
    call.reply("manifest_snapshot", "Manifest snapshot",
               manifest=[cards[n] for n in sorted(cards)])
