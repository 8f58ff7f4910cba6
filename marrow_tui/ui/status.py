"""The status line: what needs the operator, then the counts, fitted to the terminal's width.

Every part is made from the live state each time the line is drawn, so a question that has
ended is gone from it at once. Parts carry a rank: when the line is too long the lowest-ranked
go first, and the attention parts (a question waiting, the most urgent failure) are never
dropped, only their free text (the question, the error) is shortened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from ..core.state import State
from ..core.steering import Request, blocked_parts
from ..core.text import ago, plural, printable
from .bridge import workflow_error

SEPARATOR = " │ "
#: parts of this rank or above are never dropped (only their `stretch` text shortens)
ATTENTION = 100
#: the shortest a question or an error is cut to while other text can still make room
STRETCH_MIN = 12
#: how much of a question or an error counts when deciding which counts still fit
STRETCH_ROOM = 40
#: service states that mean it is down (blocked waits on one of these: not a failure itself)
SERVICE_DOWN = ("failed", "unhealthy", "backoff")
RUN_FAILED = ("failed", "timeout", "error")


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of the status line: `head`, then `stretch` (free text that may be cut short),
    then `tail`, all in `style`; `short` stands for all of it when even that does not fit."""

    rank: int
    head: str
    stretch: str = ""
    tail: str = ""
    style: str = ""
    #: this part's own styled pieces after the rest, e.g. a count in red
    extra: tuple[tuple[str, str], ...] = field(default=())
    short: str = ""

    @property
    def fixed(self) -> int:
        return len(self.head) + len(self.tail) + sum(len(text) for text, _ in self.extra)

    def width(self, stretch: int | None = None) -> int:
        """Its width with its free text cut to `stretch` (-1: in its short form)."""
        if stretch == -1:
            return len(self.short)
        return self.fixed + (len(self.stretch) if stretch is None
                             else min(stretch, len(self.stretch)))

    def render(self, stretch: int | None = None) -> Text:
        if stretch == -1:
            return Text(self.short, style=self.style)
        shown = self.stretch
        if stretch is not None and len(shown) > stretch:
            shown = shown[: max(0, stretch - 1)] + "…" if stretch > 0 else ""
        text = Text(self.head + shown + self.tail, style=self.style)
        for piece, style in self.extra:
            text.append(piece, style=style)
        return text


def fit(parts: list[Part], width: int) -> Text:
    """The parts in their order, without the lowest-ranked ones that do not fit in `width`;
    if the attention parts alone do not fit, the later ones lose their free text, then take
    their short form, and last the first one's free text (the question) is cut short."""
    kept = list(parts)
    cuts: dict[int, int] = {}

    def length(cap: int | None = None) -> int:
        return (sum(p.width(cuts.get(i, cap)) for i, p in enumerate(kept))
                + len(SEPARATOR) * max(0, len(kept) - 1))

    # A long question does not push every count out: it is counted at STRETCH_ROOM at most.
    while length(STRETCH_ROOM) > width:
        droppable = [p for p in kept if p.rank < ATTENTION]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda p: p.rank))
    later = list(reversed(range(1, len(kept))))
    first = min(STRETCH_MIN, len(kept[0].stretch)) if kept else 0
    steps = ([(index, 0) for index in later]
             + [(index, -1) for index in later if kept[index].short]
             + [(0, STRETCH_MIN), (0, 0)])
    for index, floor in steps if kept else ():
        over = length() - width
        if over <= 0:
            break
        if floor == -1:  # the short form, once the question would get less than its minimum
            if length() - kept[0].width() + kept[0].width(first) > width:
                cuts[index] = -1
            continue
        current = cuts.get(index, len(kept[index].stretch))
        cuts[index] = max(min(floor, current), current - over)
    line = Text()
    for index, part in enumerate(kept):
        if index:
            line.append(SEPARATOR, style="dim")
        line.append_text(part.render(cuts.get(index)))
    line.truncate(width)
    return line


def request_part(waiting: list[Request], now: float, answer_key: str) -> Part | None:
    """The oldest open question, its age and how many wait: what `a` answers from anywhere."""
    if not waiting:
        return None
    oldest = waiting[0]
    count = f", {len(waiting)} waiting" if len(waiting) > 1 else ""
    tail = f" ({ago(now - oldest.created)}{count}) · {answer_key} to answer "
    if oldest.kind == "conflict" and oldest.conflict:
        # Who blocks whom stays whole; the paths are cut first. Its age is in Steering.
        who, paths, by = (printable(part) for part in blocked_parts(oldest.conflict))
        more = f" ({len(waiting)} waiting)" if len(waiting) > 1 else ""
        return Part(ATTENTION + 1, f" ⚑ {who}", paths, f"{by}{more} · {answer_key} to answer ",
                    "bold reverse magenta")
    verb = "asks permission" if oldest.kind == "permission" else "asks"
    return Part(ATTENTION + 1, f" ⚑ {printable(oldest.asker)} {verb}: ",
                printable(" ".join(oldest.question.split())), tail, "bold reverse magenta")


def failure_part(state: State) -> Part | None:
    """The most urgent failure in the state now: a config not applied, a workflow with
    errors, a service down, an agent whose runs fail; with how many more there are."""
    failures = failures_now(state)
    if not failures:
        return None
    head, detail = failures[0]
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return Part(ATTENTION, f"✖ {head}", detail, more, "bold red",
                short=f"✖ {plural(len(failures), 'failure')}")


def failures_now(state: State) -> list[tuple[str, str]]:
    """Every failure the state shows, the most urgent first, as (what, detail)."""
    found: list[tuple[str, str]] = []
    config = state.sessions.config
    if config and not config.get("ok", True):
        first = printable(" ".join(str((config.get("errors") or ["invalid"])[0]).split()))
        found.append(("config not applied: ", first))
    workflow = state.issues.workflow
    if workflow and not workflow.get("ok", True):
        found.append(("workflow error: ", printable(workflow_error(workflow))))
    for view in sorted(state.services.services.values(), key=lambda v: v.name):
        if view.state in SERVICE_DOWN:
            found.append((f"service {printable(view.name)} {view.state}",
                          f": {printable(' '.join(view.reason.split()))}" if view.reason
                          else ""))
    for name, agent in sorted(state.sessions.agents.items()):
        if agent.failures:
            runs = state.sessions.of_agent(name)
            last = next((s for s in runs if s.state in RUN_FAILED), None)
            reason = f" ({printable(last.reason)})" if last is not None and last.reason else ""
            found.append((f"{printable(name)}: {plural(agent.failures, 'failed run')}",
                          reason))
    return found
