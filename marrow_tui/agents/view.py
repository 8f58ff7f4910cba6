"""What a session's updates add up to: its tool calls merged by id, its plan, its tokens and
the context it reports. Built from plain dicts (an update as ACP sends it, as a transcript line
holds it), so a transcript read back after a restart gives the same view as the live session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Updates may arrive in any order (claude repeats `tool_call`, codex starts at in_progress,
# gemini asks permission before the tool call exists): a status only moves forward.
STATUS_RANK = {"pending": 0, "in_progress": 1, "completed": 2, "failed": 2}


@dataclass(slots=True)
class ToolCall:
    """One tool call as merged so far from every update that named its id."""

    id: str
    title: str = ""
    kind: str = "other"
    status: str = "pending"
    #: content items as sent (text, `diff {path, oldText, newText}`, `terminal`)
    content: list[Any] = field(default_factory=list)
    #: `{path, line}` items as sent
    locations: list[Any] = field(default_factory=list)
    raw_input: Any = None
    raw_output: Any = None

    def merge(self, fields: Mapping[str, Any]) -> None:
        """Take what `fields` (a `tool_call`, a `tool_call_update` or a permission request's
        `toolCall`) says; what it leaves out stays as it was."""
        if fields.get("title"):
            self.title = str(fields["title"])
        if fields.get("kind"):
            self.kind = str(fields["kind"])
        status = fields.get("status")
        if status in STATUS_RANK and STATUS_RANK[status] >= STATUS_RANK.get(self.status, 0):
            self.status = str(status)
        if fields.get("content") is not None:
            self.content = list(fields["content"])
        if fields.get("locations") is not None:
            self.locations = list(fields["locations"])
        if "rawInput" in fields:
            self.raw_input = fields["rawInput"]
        if "rawOutput" in fields:
            self.raw_output = fields["rawOutput"]

    @property
    def over(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass(frozen=True, slots=True)
class PlanStep:
    content: str
    priority: str
    status: str


@dataclass(frozen=True, slots=True)
class Tokens:
    """Tokens a turn consumed, as the agent reports them in its prompt result."""

    input: int = 0
    output: int = 0
    total: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.input + other.input, self.output + other.output,
                      self.total + other.total)


@dataclass(frozen=True, slots=True)
class Context:
    """The context window as last reported (`usage_update`): an occupancy, never a spend, so
    it is replaced, not summed (a compaction makes it shrink)."""

    used: int
    size: int
    cost: float | None = None
    currency: str | None = None


@dataclass(slots=True)
class SessionView:
    #: by toolCallId, in the order first seen
    tool_calls: dict[str, ToolCall] = field(default_factory=dict)
    plan: tuple[PlanStep, ...] = ()
    context: Context | None = None
    #: the session's tokens: the sum of its turns' reports
    tokens: Tokens = Tokens()
    #: the agent's text in the current (or last) turn
    message: str = ""
    updates: int = 0

    def apply(self, update: Mapping[str, Any]) -> None:
        """Take one `session/update`'s `update`."""
        self.updates += 1
        kind = update.get("sessionUpdate")
        if kind in ("tool_call", "tool_call_update"):
            self.tool_call(update)
        elif kind == "agent_message_chunk":
            content = update.get("content")
            if isinstance(content, Mapping) and content.get("type") == "text":
                self.message += str(content.get("text", ""))
        elif kind == "plan":
            self.plan = tuple(
                PlanStep(str(e.get("content", "")), str(e.get("priority", "")),
                         str(e.get("status", "")))
                for e in update.get("entries") or () if isinstance(e, Mapping))
        elif kind == "usage_update":
            cost = update.get("cost") if isinstance(update.get("cost"), Mapping) else {}
            self.context = Context(int(update.get("used") or 0), int(update.get("size") or 0),
                                   cost.get("amount"), cost.get("currency"))

    def tool_call(self, fields: Mapping[str, Any]) -> ToolCall:
        """Merge `fields` into the tool call they name, made at its first sighting."""
        ident = str(fields.get("toolCallId", ""))
        call = self.tool_calls.get(ident)
        if call is None:
            call = self.tool_calls[ident] = ToolCall(ident)
        call.merge(fields)
        return call

    def turn_started(self) -> None:
        self.message = ""

    def turn_ended(self, usage: Mapping[str, Any] | None) -> Tokens | None:
        """Count a prompt result's `usage`; the turn's tokens, None when not reported."""
        if not usage:
            return None
        turn = Tokens(int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0),
                      int(usage.get("totalTokens") or 0))
        self.tokens += turn
        return turn
