"""What a session's updates add up to: its tool calls merged by id, its plan, its usage and the
agent's text. Built from plain dicts (an update as ACP sends it, as a transcript line holds it),
so a transcript read back after a restart gives the same view as the live session.

Applying an update also says what changed that a summary would show (a tool call first seen or
ended, a new plan): the caller turns that into event-log lines, never one line per chunk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.sessions import add_usage

# Updates may arrive in any order (claude repeats `tool_call`, codex starts at in_progress,
# gemini asks permission before the tool call exists): a status only moves forward.
STATUS_RANK = {"pending": 0, "in_progress": 1, "completed": 2, "failed": 2}
#: the most paths a tool call's summary names
SUMMARY_PATHS = 20
#: how much of the end of the agent's text in a turn is kept (for its last words)
MESSAGE_TAIL = 4096
#: ended tool calls kept in the view, the latest (the transcript keeps every one): a run that
#: lives for days makes tens of thousands, each with its output. An update that names one
#: forgotten makes it anew (agents repeat an update just after the end, not 64 calls later)
ENDED_KEPT = 64

#: what a summary would show changed: ("tool", ToolCall.summary()) or ("plan", {"entries"})
Change = tuple[str, dict[str, Any]]


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

    @property
    def paths(self) -> list[str]:
        """The files it touches: its locations' and its diffs' paths, each once, at most
        SUMMARY_PATHS."""
        items = [*self.locations,
                 *(c for c in self.content if isinstance(c, Mapping) and c.get("type") == "diff")]
        found: dict[str, None] = {}
        for item in items:
            path = item.get("path") if isinstance(item, Mapping) else None
            if isinstance(path, str) and path:
                found.setdefault(path)
                if len(found) == SUMMARY_PATHS:
                    break
        return list(found)

    def summary(self) -> dict[str, Any]:
        """What an event-log line says of it."""
        return {"tool_call_id": self.id, "title": self.title, "kind": self.kind,
                "status": self.status, "paths": self.paths}


@dataclass(frozen=True, slots=True)
class PlanStep:
    content: str
    priority: str
    status: str


def context_usage(update: Mapping[str, Any]) -> dict[str, Any]:
    """A `usage_update` as usage keys (`core.sessions.add_usage`'s): the context occupancy
    and the session's cost so far, whichever it gives."""
    usage: dict[str, Any] = {}
    for wire, key in (("used", "context_used"), ("size", "context_size")):
        if _count(update.get(wire)):
            usage[key] = update[wire]
    cost = update.get("cost")
    if isinstance(cost, Mapping):
        amount = cost.get("amount")
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            usage["cost"] = float(amount)
        if isinstance(cost.get("currency"), str) and cost["currency"]:
            usage["currency"] = cost["currency"]
    return usage


def token_usage(result: Mapping[str, Any]) -> dict[str, Any]:
    """A turn's tokens from its `session/prompt` result, as usage keys: `usage {inputTokens,
    outputTokens, totalTokens}` (opencode), else gemini's `_meta.quota.token_count
    {input_tokens, output_tokens}`. Only what is reported; total = input + output when the
    agent gives both but no total."""
    usage: dict[str, Any] = {}
    given = result.get("usage")
    if isinstance(given, Mapping):
        for wire, key in (("inputTokens", "input"), ("outputTokens", "output"),
                          ("totalTokens", "total")):
            if _count(given.get(wire)):
                usage[key] = given[wire]
    meta = result.get("_meta")
    quota = meta.get("quota") if isinstance(meta, Mapping) else None
    counts = quota.get("token_count") if isinstance(quota, Mapping) else None
    if isinstance(counts, Mapping):
        for wire, key in (("input_tokens", "input"), ("output_tokens", "output")):
            if key not in usage and _count(counts.get(wire)):
                usage[key] = counts[wire]
    if "total" not in usage and "input" in usage and "output" in usage:
        usage["total"] = usage["input"] + usage["output"]
    return usage


def _count(value: Any) -> bool:
    """A token count as the wire may carry one: an int, not negative (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(slots=True)
class SessionView:
    #: by toolCallId, in the order first seen: those not ended, and the last ENDED_KEPT ended
    tool_calls: dict[str, ToolCall] = field(default_factory=dict)
    #: the ended ones' ids, in the order they ended
    _ended: deque[str] = field(default_factory=deque)
    plan: tuple[PlanStep, ...] = ()
    #: the session's usage so far, folded as `core.sessions.add_usage` folds it: tokens are
    #: the sum of the turns' reports; context occupancy and cost the latest word
    usage: dict[str, Any] = field(default_factory=dict)
    #: what `usage_update`s said during the current (or last) turn
    turn_usage: dict[str, Any] = field(default_factory=dict)
    #: the end of the agent's text in the current (or last) turn, at most MESSAGE_TAIL
    #: characters (all of it would cost a copy of the whole turn's text per chunk)
    message_tail: str = ""
    updates: int = 0

    def apply(self, update: Mapping[str, Any]) -> Change | None:
        """Take one `session/update`'s `update`; what changed that a summary shows."""
        self.updates += 1
        kind = update.get("sessionUpdate")
        if kind in ("tool_call", "tool_call_update"):
            return self.merge_tool_call(update)[1]
        if kind == "agent_message_chunk":
            content = update.get("content")
            if isinstance(content, Mapping) and content.get("type") == "text":
                self.message_tail = (self.message_tail
                                     + str(content.get("text", "")))[-MESSAGE_TAIL:]
        elif kind == "plan":
            entries = update.get("entries")
            return self._set_plan(entries if isinstance(entries, list) else [])
        elif kind == "usage_update":
            reported = context_usage(update)
            self.turn_usage.update(reported)
            add_usage(self.usage, reported)
        return None

    def merge_tool_call(self, fields: Mapping[str, Any]) -> tuple[ToolCall, Change | None]:
        """Merge `fields` into the tool call they name, made at its first sighting; the
        change to report when this is its first sighting or the update that ends it (one
        report when it is first seen already over)."""
        ident = str(fields.get("toolCallId", ""))
        call = self.tool_calls.get(ident)
        first = call is None
        if call is None:
            call = self.tool_calls[ident] = ToolCall(ident)
        was_over = call.over
        call.merge(fields)
        if call.over and not was_over:
            self._forget_ended(ident)
        if first or (call.over and not was_over):
            return call, ("tool", call.summary())
        return call, None

    def _forget_ended(self, ident: str) -> None:
        """`ident` just ended: keep it, and forget the oldest ended beyond ENDED_KEPT."""
        self._ended.append(ident)
        while len(self._ended) > ENDED_KEPT:
            old = self._ended.popleft()
            call = self.tool_calls.get(old)
            if call is not None and call.over:
                del self.tool_calls[old]

    def _set_plan(self, entries: list[Any]) -> Change | None:
        before = self._plan_entries()
        self.plan = tuple(PlanStep(str(e.get("content", "")), str(e.get("priority", "")),
                                   str(e.get("status", "")))
                          for e in entries if isinstance(e, Mapping))
        after = self._plan_entries()
        return None if after == before else ("plan", {"entries": after})

    def _plan_entries(self) -> list[dict[str, str]]:
        return [{"content": step.content, "status": step.status} for step in self.plan]

    def turn_started(self) -> None:
        self.message_tail = ""
        self.turn_usage = {}

    def turn_ended(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Count a `session/prompt` result (as on the wire); the turn's usage: its tokens and
        the latest context and cost it reported, only what the agent gave."""
        turn = {**token_usage(result), **self.turn_usage}
        add_usage(self.usage, turn)
        return turn
