"""Short texts about an agent run over ACP, shared by the Sessions pane and the agent view:
what it does now, its turns, tokens and cost."""

from __future__ import annotations

from rich.text import Text

from ..core.sessions import Session
from ..core.steering import SteeringBook
from ..core.text import cost_text, plural, tokens_text

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


def run_summary(session: Session, steering: SteeringBook) -> Text:
    """What the Sessions pane says of an ACP run: doing now · turns · tokens · cost."""
    out = Text()
    doing = doing_now(session, steering)
    if doing:
        out.append(doing, style="bold magenta" if doing == WAITING else "cyan")
    for part in (plural(session.turns, "turn") if session.turns else "",
                 tokens_text(session.usage), cost_text(session.usage)):
        if part:
            out.append(" · " if out.plain else "")
            out.append(part, style="dim")
    return out
