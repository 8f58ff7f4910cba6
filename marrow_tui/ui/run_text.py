"""Short texts about an agent run over ACP, shared by the Sessions pane and the agent view:
what it does now, its turns, tokens and cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text

from ..core.sessions import Session
from ..core.steering import SteeringBook

WAITING = "waiting for you"


def waiting_on_operator(session: Session, steering: SteeringBook) -> bool:
    """A steering request the run asked is open: it waits for the operator."""
    return any(request.session == session.id for request in steering.open.values())


def doing_now(session: Session, steering: SteeringBook) -> str:
    """"waiting for you", the current tool call's title, "thinking", or "" (between turns)."""
    if not session.running:
        return ""
    if waiting_on_operator(session, steering):
        return WAITING
    return session.doing


def compact_count(count: int) -> str:
    """950, 12.3k, 4.5M."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def tokens_text(usage: Mapping[str, Any]) -> str:
    """"12.3k tok" (the total, else input plus output); "" when nothing was reported."""
    total = usage.get("total") or (usage.get("input") or 0) + (usage.get("output") or 0)
    return f"{compact_count(int(total))} tok" if total else ""


def cost_text(usage: Mapping[str, Any]) -> str:
    """"$0.42", "0.42 EUR"; "" when the agent gave none."""
    cost = usage.get("cost")
    if not isinstance(cost, int | float) or isinstance(cost, bool):
        return ""
    currency = str(usage.get("currency") or "USD")
    return f"${cost:,.2f}" if currency.upper() == "USD" else f"{cost:,.2f} {currency}"


def turns_text(turns: int) -> str:
    return f"{turns} turn{'' if turns == 1 else 's'}"


def run_summary(session: Session, steering: SteeringBook) -> Text:
    """What the Sessions pane says of an ACP run: doing now · turns · tokens · cost."""
    out = Text()
    doing = doing_now(session, steering)
    if doing:
        out.append(doing, style="bold magenta" if doing == WAITING else "cyan")
    for part in (turns_text(session.turns) if session.turns else "",
                 tokens_text(session.usage), cost_text(session.usage)):
        if part:
            out.append(" · " if out.plain else "")
            out.append(part, style="dim")
    return out
