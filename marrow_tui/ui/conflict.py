"""What the console says about a conflict: an agent's edit blocked by another agent's lease.

The runtime opens a steering request of kind "conflict" whose `conflict` field has the facts
(who edits what with which tool call, and each lease in the way: its owner, task, the paths
that overlap, all it holds, since when, and the run holding it). These functions make them
read as one for the answer dialog and the side-by-side transcripts.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ..core.claims import ClaimBook, Overlap
from ..core.steering import HAND_OVER, LET_IT, REJECT, WAIT, Request
from ..core.text import ago, printable


def holders(request: Request) -> list[Overlap]:
    """The leases in the way, as the runtime listed them when it asked."""
    return [Overlap.from_dict(h) for h in (request.conflict or {}).get("held", ())]


def edited(request: Request) -> str:
    """The paths the blocked tool call would change."""
    facts = request.conflict or {}
    return ", ".join(facts.get("paths", ())) or "the whole worktree"


def holder_grown(holder: Overlap, claims: ClaimBook) -> dict[str, Any]:
    """How the holder's lease came to hold the paths in question: the grow of its tool call
    ({path, tool_call_id, title, at}), or {} when no tool call did (declared paths, a claim
    of its own, or the lease is gone)."""
    claim = claims.get(holder.task_id)
    wanted = set(holder.paths)
    for grown in claim.grown if claim is not None else ():
        if grown.get("path") in wanted and grown.get("tool_call_id"):
            return grown
    return {}


def held_text(request: Request, claims: ClaimBook, now: float) -> Text:
    """Who holds which paths since when on which task, one lease a line (and what else each
    holds: Hand over moves a lease whole)."""
    out = Text()
    for holder in holders(request):
        out.append(printable(", ".join(holder.paths) or "the whole worktree"), style="bold")
        out.append(printable(f"  held by {holder.owner} on {holder.task_id} for "
                             f"{ago(now - holder.since)}"))
        title = holder_grown(holder, claims).get("title")
        if title:
            out.append(printable(f" (claimed by its {title})"), style="dim")
        others = [p for p in holder.holds if p not in holder.paths]
        if others:
            out.append(printable(f"; its lease also holds {', '.join(others)}"), style="dim")
        out.append("\n")
    out.rstrip()
    return out


def choice_meanings(request: Request) -> list[tuple[str, str]]:
    """What each of a conflict's choices does, in its words."""
    asker = request.asker
    found = holders(request)
    owners = ", ".join(dict.fromkeys(h.owner for h in found)) or "the holder"
    leases = ", ".join(f"{h.task_id} (all it holds)" if len(h.holds) > len(h.paths)
                       else h.task_id for h in found)
    return [
        (LET_IT, f"{asker} edits now; {owners} keeps the lease, told by chat"),
        (WAIT, f"{asker} waits for the lease to end, then edits"),
        (HAND_OVER, f"{leases} moves to {asker}, who edits; {owners} is told"),
        (REJECT, f"the edit is refused; {asker} is told"),
    ]


def meanings_text(request: Request) -> Text:
    out = Text()
    for choice, meaning in choice_meanings(request):
        out.append(f"{choice:<10}", style="bold")
        out.append(printable(meaning) + "\n")
    out.rstrip()
    return out


def edit_detail(request: Request) -> str:
    """The tool call's own detail from the request's context (its kind and title line, its
    command or diff, its paths); the whole context when that line is not in it."""
    facts: dict[str, Any] = request.conflict or {}
    head = f"{facts.get('kind', '')}: {facts.get('title') or facts.get('tool_call_id', '')}"
    at = request.context.find(head)
    return request.context[at:] if at >= 0 else request.context
