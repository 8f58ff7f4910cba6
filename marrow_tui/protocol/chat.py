"""The chat verbs: send a message (to everyone, a name or a role), and read the history or
resume from a message id."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..core.chat import BROADCAST_TARGETS, addressed_to, within
from ..core.events import Event, Refusal
from .frames import ALL, BadFrame, Call, Context, Delivery, encode, text_field


def chat(call: Call) -> None:
    state = call.context.state
    f = call.frame
    target = text_field(f, "target", ALL) or ALL
    msg = {k: v for k, v in f.items() if k != "token"}
    now = call.context.clock()
    client_ts = f.get("timestamp")
    if isinstance(client_ts, (int, float)) and not isinstance(client_ts, bool) \
            and math.isfinite(client_ts):
        msg["client_timestamp"] = client_ts
    msg.update(
        sender=call.sender,
        target=target,
        type="chat",
        timestamp=now,
        hub_id=call.context.hub_id,
        msg_id=state.chat.msg_id + 1,
    )
    msg.setdefault("payload", "")
    text = encode(msg)
    limit = state.chat.max_message_bytes
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
        for name in state.presence.online
        if name != call.sender
        and addressed_to(target, name, state.presence.roles_of(name))
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


def _reader(context: Context, name: str) -> Callable[[dict[str, Any]], bool]:
    """Whether `name` may see a chat frame; its roles are looked up once for a whole history."""
    roles = context.state.presence.roles_of(name)

    def visible(frame: dict[str, Any]) -> bool:
        target = frame.get("target", ALL)
        return (target in BROADCAST_TARGETS or frame.get("sender") == name
                or addressed_to(target, name, roles))
    return visible


def history_request(call: Call) -> None:
    limit = call.frame.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int):
        limit = 100
    only = text_field(call.frame, "history_target")
    readable = _reader(call.context, call.sender)
    visible = [m for m in call.context.state.chat.history
               if readable(m) and (not only or m.get("target") == only)]
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


def resume_request(call: Call) -> None:
    since = call.frame.get("since", 0)
    if isinstance(since, bool) or not isinstance(since, int):
        raise BadFrame("Malformed frame: 'since' must be an integer.")
    wanted = list(filter(_reader(call.context, call.sender), call.context.state.chat.since(since)))
    messages = within(wanted, newest=False)
    # A client that gets `complete: false` asks again from the last msg_id it got.
    call.reply("resume_snapshot", "Resume snapshot", since=since, messages=messages,
               complete=len(messages) == len(wanted))
