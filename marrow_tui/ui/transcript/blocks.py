"""What a transcript shows, as blocks: the agent's text joined into flowing paragraphs, its
thoughts, the operator's prompts, one row per tool call (at its first sighting, changed in
place as later updates arrive, whatever their order), the plan (once, the latest), and notes.

Built from transcript records in order, and from earlier records put before them (`prepend`,
as the view reads further back): the result is the same as reading them all in order. A
block's `version` grows whenever it changes, so the view re-renders only the blocks that did. `lines` turns a block into styled lines for a given
width; the view wraps and draws them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from ...agents.view import PlanStep, ToolCall
from ...core.text import one_line, printable
from .reader import Record

#: diff lines shown per diff item before "N more lines"
DIFF_LINES = 12
#: context lines around each change
DIFF_CONTEXT = 2
#: a tool's text output: lines shown
OUTPUT_LINES = 3

ICONS = {"pending": ("○", "dim"), "in_progress": ("◐", "bold yellow"),
         "completed": ("✓", "bold green"), "failed": ("✗", "bold red")}
PLAN_MARKS = {"completed": ("[x]", "green"), "in_progress": ("[~]", "bold yellow"),
              "pending": ("[ ]", "")}
#: kinds of text block, and the update kinds that feed them
TEXT_KINDS = {"agent_message_chunk": "message", "agent_thought_chunk": "thought",
              "user_message_chunk": "user"}
TEXT_BLOCKS = frozenset(TEXT_KINDS.values())
#: blocks drawn as rows: no blank line between two of them
ROWS = frozenset({"tool", "note"})


def gap_between(last: str | None, kind: str) -> bool:
    """A blank line before a block, unless it is the first or a row after a row."""
    return last is not None and not (kind in ROWS and last in ROWS)


@dataclass(slots=True)
class Line:
    """One logical line of a block: wrapped to the width (with `indent` before each piece) or
    cut at it."""

    text: Text
    wrap: bool = True
    indent: Text | None = None


@dataclass(eq=False, slots=True)
class Block:
    kind: str
    text: str = ""
    call: ToolCall | None = None
    plan: tuple[PlanStep, ...] = ()
    #: a blank line before it
    gap: bool = False
    version: int = 0

    def lines(self) -> list[Line]:
        if self.kind == "tool" and self.call is not None:
            return tool_lines(self.call)
        if self.kind == "plan":
            return plan_lines(self.plan)
        text = printable(self.text.strip("\n"), lines=True)
        if self.kind == "user":
            marker = Text("▌ ", style="bold cyan")
            return [Line(Text(part, style="bold"), indent=marker)
                    for part in text.split("\n")]
        style = {"thought": "dim italic", "note": "dim italic"}.get(self.kind, "")
        return [Line(Text(part, style=style)) for part in text.split("\n")]


@dataclass(slots=True)
class Blocks:
    """The blocks a run of records adds up to, kept up to date record by record."""

    blocks: list[Block] = field(default_factory=list)
    #: blocks changed or added since `take_dirty`
    dirty: set[int] = field(default_factory=set)
    _calls: dict[str, Block] = field(default_factory=dict)
    #: every update that named each tool call, in order (to merge again when earlier ones come)
    _call_updates: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    _plan: Block | None = None
    _index: dict[int, int] = field(default_factory=dict)

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def call_index(self, ident: str) -> int | None:
        """Where a tool call's block is (None when no update read so far names it)."""
        block = self._calls.get(ident)
        return self._index.get(id(block)) if block is not None else None

    def take_dirty(self) -> set[int]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def add(self, record: Record) -> None:
        if record.problem:
            self._new("note", text=f"({record.problem}: skipped)")
            return
        update = record.update
        kind = update.get("sessionUpdate")
        if record.dropped:
            self._new("note", text=f"(an update of {record.dropped} bytes ({kind}) was too "
                      "big to keep)")
        if kind in TEXT_KINDS:
            self._text(TEXT_KINDS[kind], chunk_text(update.get("content")))
        elif kind in ("tool_call", "tool_call_update"):
            self._tool(update)
        elif kind == "plan":
            self._plan_update(update.get("entries"))
        elif kind == "current_mode_update":
            self._new("note", text=f"mode: {update.get('currentModeId', '?')}")

    def _new(self, kind: str, **fields: Any) -> Block:
        block = Block(kind, gap=gap_between(self.blocks[-1].kind if self.blocks else None,
                                            kind), **fields)
        self._index[id(block)] = len(self.blocks)
        self.dirty.add(len(self.blocks))
        self.blocks.append(block)
        return block

    def _touch(self, block: Block) -> None:
        block.version += 1
        self.dirty.add(self._index[id(block)])

    def _text(self, kind: str, text: str) -> None:
        if not text:
            return  # an empty chunk (claude sends one) changes nothing
        last = self.blocks[-1] if self.blocks else None
        if last is not None and last.kind == kind:
            last.text += text
            self._touch(last)
        else:
            self._new(kind, text=text)

    def _tool(self, update: Mapping[str, Any]) -> None:
        ident = str(update.get("toolCallId", ""))
        block = self._calls.get(ident)
        if block is None:
            block = self._calls[ident] = self._new("tool", call=ToolCall(ident))
        else:
            self._touch(block)
        assert block.call is not None
        block.call.merge(update)
        self._call_updates.setdefault(ident, []).append(update)

    def _plan_update(self, entries: Any) -> None:
        steps = tuple(PlanStep(str(e.get("content", "")), str(e.get("priority", "")),
                               str(e.get("status", "")))
                      for e in entries or () if isinstance(e, Mapping))
        if self._plan is None:
            self._plan = self._new("plan", plan=steps)
        else:
            self._plan.plan = steps
            self._touch(self._plan)


    def prepend(self, records: Iterable[Record]) -> tuple[list[int], set[int]]:
        """Put what earlier `records` add up to before these blocks, as if read in order: a
        tool call seen in both stays at its first sighting, merged from all its updates; the
        plan stays where it first was, with the latest steps; text that runs on is joined.

        Returns the old indexes of the blocks kept (they follow the new ones, in order) and
        the new indexes of the blocks to draw again.
        """
        head = Blocks()
        head.extend(records)
        dirty = set(range(len(head.blocks)))
        dropped: set[int] = set()
        for ident, block in self._calls.items():
            first = head._calls.get(ident)
            if first is None:
                head._calls[ident] = block
                head._call_updates[ident] = self._call_updates[ident]
                continue
            updates = head._call_updates[ident] + self._call_updates[ident]
            first.call = ToolCall(ident)
            for update in updates:
                first.call.merge(update)
            head._call_updates[ident] = updates
            dropped.add(self._index[id(block)])
        if self._plan is not None:
            if head._plan is not None:
                head._plan.plan = self._plan.plan
                dropped.add(self._index[id(self._plan)])
            else:
                head._plan = self._plan
        merged, kept = list(head.blocks), []
        for old, block in enumerate(self.blocks):
            if old in dropped:
                continue
            last = merged[-1] if merged else None
            if last is not None and block.kind in TEXT_BLOCKS and last.kind == block.kind:
                last.text += block.text  # it ran on across what moved away
                last.version += 1
                dirty.add(len(merged) - 1)
                continue
            gap = gap_between(last.kind if last else None, block.kind)
            if gap != block.gap:
                block.gap = gap
                block.version += 1
                dirty.add(len(merged))
            merged.append(block)
            kept.append(old)
        self.blocks, self._calls, self._plan = merged, head._calls, head._plan
        self._call_updates = head._call_updates
        self._index = {id(block): index for index, block in enumerate(merged)}
        self.dirty = set()
        return kept, dirty


def chunk_text(content: Any) -> str:
    """A content block as text: its text, or what it is when it is not text."""
    if not isinstance(content, Mapping):
        return ""
    kind = content.get("type")
    if kind == "text":
        return str(content.get("text", ""))
    if kind == "resource_link":
        return f"[{content.get('name') or content.get('uri', 'a resource')}]"
    if kind == "resource":
        resource = content.get("resource")
        uri = resource.get("uri", "") if isinstance(resource, Mapping) else ""
        return f"[{uri or 'a resource'}]"
    return f"[{kind or 'content'}]"


def _paths(call: ToolCall) -> list[str]:
    paths = [str(loc.get("path")) for loc in call.locations
             if isinstance(loc, Mapping) and loc.get("path")]
    for item in call.content:
        path = item.get("path") if isinstance(item, Mapping) and item.get("type") == "diff" \
            else None
        if path and str(path) not in paths:
            paths.append(str(path))
    return paths


def tool_lines(call: ToolCall) -> list[Line]:
    icon, style = ICONS.get(call.status, ICONS["pending"])
    row = Text.assemble((icon, style), " ", (f"{call.kind:<7}", "dim"), " ",
                        (printable(one_line(call.title or call.id, 200)), "bold"))
    paths = [path for path in _paths(call) if path not in call.title]  # said once
    if paths:
        row.append("  " + printable(", ".join(paths)), style="dim")
    lines = [Line(row, wrap=False)]
    for item in call.content:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "diff":
            lines += diff_lines(item.get("oldText"), item.get("newText"))
        elif item.get("type") == "content":
            lines += output_lines(chunk_text(item.get("content")))
        elif item.get("type") == "terminal":
            lines.append(Line(Text("    (terminal output)", style="dim"), wrap=False))
    return lines


def diff_lines(old: Any, new: Any) -> list[Line]:
    """The change as coloured unified-diff lines, cut after DIFF_LINES."""
    before = str(old).splitlines() if isinstance(old, str) else []
    after = str(new).splitlines() if isinstance(new, str) else []
    shown: list[Line] = []
    for line in difflib.unified_diff(before, after, lineterm="", n=DIFF_CONTEXT):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            style = "cyan dim"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = "dim"
        shown.append(Line(Text("    " + printable(line), style=style), wrap=False))
    return _cut(shown, DIFF_LINES)


def output_lines(text: str) -> list[Line]:
    lines = [Line(Text("    │ " + printable(part), style="dim"), wrap=False)
             for part in text.strip("\n").split("\n") if text.strip()]
    return _cut(lines, OUTPUT_LINES)


def _cut(lines: list[Line], most: int) -> list[Line]:
    if len(lines) <= most:
        return lines
    more = len(lines) - most
    return lines[:most] + [Line(Text(f"    … {more} more line{'s' * (more != 1)}",
                                     style="dim italic"), wrap=False)]


def plan_lines(plan: tuple[PlanStep, ...]) -> list[Line]:
    done = sum(step.status == "completed" for step in plan)
    lines = [Line(Text.assemble(("Plan", "bold"), (f"  {done}/{len(plan)} done", "dim")))]
    for step in plan:
        mark, style = PLAN_MARKS.get(step.status, PLAN_MARKS["pending"])
        lines.append(Line(Text(printable(one_line(step.content, 400)),
                               style="dim" if step.status == "completed" else ""),
                          indent=Text(f"  {mark} ", style=style)))
    return lines
