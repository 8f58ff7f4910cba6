"""The diff view: what an issue's agent changed, file by file, against its base or since the
last review.

The console asks the orchestrator (`review_diff`, over the operator's session) and shows the
reply: the files changed with +N/-M on the left, the chosen file's unified diff on the right,
its lines numbered (old and new) and marked, its code coloured by a lexer chosen from the
file's name. Both lists draw only the rows on screen (Textual's line API), and a file's lines
are coloured once, when it is first shown: a diff of 5,000 lines over 200 files opens at once
and scrolls without a slow frame.

The keys are the action table's (`DIFF_ACTIONS` in actions.py); the three review actions go
to the console's `Reviewer` (ui/review.py), which asks before each.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal, Protocol

from rich.cells import cell_len
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer

from ...core.diff import FileDiff, Line, parse
from ...core.text import plural, printable
from ..actions import DIFF_ACTIONS, diff_help_rows
from ..modals.detail import HelpModal

Against = Literal["base", "review"]
RowKind = Literal["file", "note", "hunk", "line"]

#: how a file's status reads in the list (one letter) and above its diff (a word)
STATUS_MARK = {"added": "A", "deleted": "D", "modified": "M", "renamed": "R", "copied": "C",
               "mode": "M"}
STATUS_WORD = {"added": "new file", "deleted": "deleted", "modified": "modified",
               "renamed": "renamed", "copied": "copied", "mode": "mode changed"}
#: how far left and right move the diff sideways
PAN = 8
#: the colours of the code (terminal colours: they follow the terminal's own palette)
CODE_THEME = "ansi_dark"
#: drawn rows kept for drawing again (a few screens); past it they are drawn anew (each holds
#: Textual's caches: kept for every row ever shown, they lengthen each garbage collection)
DRAWN_KEPT = 80
#: files whose coloured lines are kept for going back to them (older ones are coloured again)
FILES_KEPT = 8


def keep_out_of_collections() -> None:
    """What exists now (the parsed diff, its coloured files, a lexer just loaded) stays while
    the view is open: out of the collector's generations, a full collection while scrolling
    scans only what came since, not all of it (the collections are the frames' long pauses).
    Only cyclic garbage waits for the view to close; the rest is freed as usual."""
    gc.freeze()


def collect_after_view() -> None:
    """The view closed: what it kept out of the collections goes back, the garbage among it
    (a closed screen's widgets hold each other in cycles) is freed, and what is left lives as
    long as the console, so it is frozen again (as the main screen does when it opens)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class Ref:
    """A line of the diff the operator picked, for a request for changes."""

    path: str
    line: int

    def text(self) -> str:
        return f"{self.path}:{self.line}"


class Reviewer(Protocol):
    """The console's review actions (ui/review.py), as the diff view uses them."""

    def ask_diff(self, identifier: str, against: Against) -> None: ...

    def refs(self, identifier: str) -> list[Ref]: ...

    def toggle_ref(self, identifier: str, ref: Ref) -> bool: ...

    def accept(self, identifier: str) -> None: ...

    def request_changes(self, identifier: str) -> None: ...

    def discard(self, identifier: str) -> None: ...


def stat_text(files: int, added: int, removed: int) -> Text:
    """`+12 −3`, green and red; a diff of no files reads `±0`."""
    if not files:
        return Text("±0", style="dim")
    return Text.assemble((f"+{added}", "green"), " ", (f"−{removed}", "red"))


# ---- the rows of one file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    kind: RowKind
    text: str = ""
    line: Line | None = None
    #: the hunk the row belongs to (-1: the file's header)
    hunk: int = -1


def file_rows(diff: FileDiff, *, cut: bool = False) -> list[Row]:
    """What the view shows for one file: its header, what git says of it, its hunks."""
    path = printable(diff.path)
    head = (f"{printable(diff.old_path)} → {path}" if diff.old_path else path)
    rows = [Row("file", f"{head}  ({STATUS_WORD.get(diff.status, diff.status)})")]
    rows += [Row("note", printable(note)) for note in diff.notes]
    if diff.binary:
        rows.append(Row("note", "Binary file: its content is not shown."))
    elif not diff.hunks:
        rows.append(Row("note", {"added": "An empty new file.",
                                 "deleted": "An empty file was deleted."}.get(
            diff.status, "No lines changed.")))
    for index, hunk in enumerate(diff.hunks):
        rows.append(Row("hunk", printable(hunk.header), hunk=index))
        rows += [Row("line", line=line, hunk=index) for line in hunk.lines]
    if cut:
        rows.append(Row("note", "The diff was cut here (it is larger than the orchestrator "
                                "sends): the rest of this file and any later files are not "
                                "shown. marrow-tui diff ID shows it all."))
    return rows


@lru_cache(maxsize=256)
def lexer_for(path: str) -> Any:
    """The pygments lexer for a file's name (None: shown uncoloured). Pygments' lexer table
    is loaded on the first diff shown, not when the console starts (some 70 ms)."""
    from pygments.lexers import get_lexer_for_filename  # type: ignore[import-untyped]
    from pygments.util import ClassNotFound  # type: ignore[import-untyped]

    try:
        return get_lexer_for_filename(path.rsplit("/", 1)[-1], stripnl=False,
                                      ensurenl=False)
    except ClassNotFound:
        return None


def coloured(diff: FileDiff, rows: list[Row]) -> list[Text]:
    """Each line row's code as coloured text (other rows: empty). A hunk is coloured as one
    piece, so a string or comment that spans lines reads as one."""
    lexer = lexer_for(diff.path)
    out = [Text() for _ in rows]
    start = 0
    while start < len(rows):
        if rows[start].kind != "line":
            start += 1
            continue
        end = start
        while end < len(rows) and rows[end].kind == "line" and rows[end].hunk == rows[start].hunk:
            end += 1
        code = [printable((row.line.text if row.line else "").expandtabs(4))
                for row in rows[start:end]]
        pieces: list[Text] = [Text(text) for text in code] if lexer is None else list(
            Syntax("", lexer, theme=CODE_THEME).highlight("\n".join(code)).split(
                "\n", allow_blank=True))
        for offset in range(end - start):
            out[start + offset] = pieces[offset] if offset < len(pieces) else Text(code[offset])
        start = end
    return out


# ---- the files list ------------------------------------------------------------------------


class FileList(ScrollView):
    """The files changed, one a row, with +N/-M; the chosen one highlighted."""

    can_focus = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {"file-list--chosen"}
    DEFAULT_CSS = """
    FileList {
        background: $surface;
        overflow-x: hidden;
        & > .file-list--chosen { background: $block-cursor-background;
                                 color: $block-cursor-foreground; text-style: bold; }
    }
    """

    class Chosen(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files: list[FileDiff] = []
        self.chosen = 0
        self._strips: dict[int, Strip] = {}
        #: the widest +N/-M, so the numbers line up at the right
        self._stat_width = 0

    @staticmethod
    def stat_of(diff: FileDiff) -> Text:
        return (Text("bin", style="dim") if diff.binary
                else stat_text(1, diff.added, diff.removed))

    def show(self, files: list[FileDiff]) -> None:
        self.files, self.chosen = files, 0
        self._stat_width = max((self.stat_of(diff).cell_len for diff in files), default=0)
        self._strips.clear()
        self.virtual_size = Size(self.size.width, len(files))
        self.scroll_to(y=0, animate=False)
        self.refresh()

    def choose(self, index: int) -> None:
        self.chosen = index
        top, height = int(self.scroll_offset.y), self.size.height
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)
        self.refresh()

    def on_resize(self) -> None:
        self._strips.clear()
        self.virtual_size = Size(self.size.width, len(self.files))

    def row_text(self, index: int, width: int) -> Text:
        diff = self.files[index]
        stat = self.stat_of(diff)
        stat.pad_left(self._stat_width - stat.cell_len)
        mark = Text(STATUS_MARK.get(diff.status, "?") + " ", style="bold")
        room = max(1, width - mark.cell_len - stat.cell_len - 1)
        path = printable(diff.path)
        if cell_len(path) > room:  # the file's name matters most: cut from the left
            while path and cell_len(path) > room - 1:
                path = path[1:]
            path = "…" + path
        return Text.assemble(mark, path, " " * max(1, room - cell_len(path) + 1), stat)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # (less the scrollbar)
        index = int(self.scroll_offset.y) + y
        if index >= len(self.files):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None:
            text = self.row_text(index, width)
            text.truncate(width, pad=True)
            strip = self._strips[index] = Strip(text.render(self.app.console), width)
        if index == self.chosen:
            strip = strip.apply_style(self.get_component_rich_style("file-list--chosen"))
        return strip.apply_style(self.rich_style)

    def on_click(self, event: Click) -> None:
        index = int(self.scroll_offset.y) + event.y
        if 0 <= index < len(self.files):
            self.post_message(self.Chosen(index))


# ---- one file's diff -------------------------------------------------------------------------


class DiffLines(ScrollView):
    """One file's unified diff: numbered, marked and coloured lines, a cursor on one of them.
    Only the rows on screen are drawn; a drawn row is kept until the file or width changes."""

    can_focus = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "diff-lines--added", "diff-lines--removed", "diff-lines--hunk", "diff-lines--file",
        "diff-lines--note", "diff-lines--gutter", "diff-lines--cursor", "diff-lines--picked",
    }
    DEFAULT_CSS = """
    DiffLines {
        background: $surface;
        & > .diff-lines--added { background: $success 20%; }
        & > .diff-lines--removed { background: $error 20%; }
        & > .diff-lines--hunk { color: $accent; background: $boost; }
        & > .diff-lines--file { text-style: bold; background: $panel; }
        & > .diff-lines--note { color: $text-muted; text-style: italic; }
        & > .diff-lines--gutter { color: $text-muted; }
        & > .diff-lines--cursor { background: $block-cursor-background 60%; }
        & > .diff-lines--picked { text-style: underline; }
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[Row] = []
        self.code: list[Text] = []
        self.cursor = 0
        #: rows picked as references (underlined)
        self.picked: set[int] = set()
        self._digits = 1
        self._strips: dict[int, Strip] = {}
        #: each row's strip as last drawn, and how (scrolled sideways, width, under the cursor)
        self._shown: dict[int, tuple[tuple[int, int, bool], Strip]] = {}
        #: what the view says in place of a diff (asking, no changes, a refusal)
        self.message = ""

    def say(self, message: str) -> None:
        self.message, self.rows, self.code, self.cursor = message, [], [], 0
        self.picked = set()
        self._strips.clear()
        self._shown.clear()
        self.virtual_size = Size(self.size.width, 2)
        self.refresh()

    def show(self, rows: list[Row], code: list[Text], picked: set[int]) -> None:
        self.message, self.rows, self.code, self.picked = "", rows, code, picked
        numbers = [n for row in rows if row.line is not None
                   for n in (row.line.old, row.line.new) if n is not None]
        self._digits = len(str(max(numbers, default=1)))
        self._strips.clear()
        self._shown.clear()
        widest = max((text.cell_len for text in code), default=0)
        self.virtual_size = Size(self.gutter_width + widest, len(rows))
        self.cursor = next((i for i, row in enumerate(rows) if row.kind == "hunk"), 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def set_picked(self, picked: set[int]) -> None:
        for index in picked ^ self.picked:
            self._strips.pop(index, None)
            self._shown.pop(index, None)
        self.picked = set(picked)
        self.refresh()

    @property
    def gutter_width(self) -> int:
        return 2 * self._digits + 4

    def on_resize(self) -> None:
        self._strips.clear()
        self._shown.clear()

    def move_to(self, row: int, *, top: bool = False) -> None:
        """Put the cursor on `row`, scrolling so it is in sight (at the top, with `top`)."""
        if not self.rows:
            return
        before, self.cursor = self.cursor, max(0, min(row, len(self.rows) - 1))
        first, height = int(self.scroll_offset.y), max(1, self.size.height)
        if top or self.cursor < first:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= first + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)
        if int(self.scroll_offset.y) == first:  # no scroll: only the two rows change
            self.refresh_line(before)
            self.refresh_line(self.cursor)
        else:
            self.refresh()

    def _row_text(self, index: int) -> Text:
        row = self.rows[index]
        if row.kind != "line" or row.line is None:
            style = {"file": "diff-lines--file", "hunk": "diff-lines--hunk"}.get(
                row.kind, "diff-lines--note")
            text = Text(row.text if row.kind != "note" else f"  {row.text}",
                        style=self.get_component_rich_style(style))
            return text
        line, digits = row.line, self._digits
        old = "" if line.old is None else str(line.old)
        new = "" if line.new is None else str(line.new)
        mark = {"added": "+", "removed": "-", "context": " "}.get(line.kind, "\\")
        gutter = Text(f"{old:>{digits}} {new:>{digits}} ",
                      style=self.get_component_rich_style("diff-lines--gutter"))
        # An added or removed line's tint is the text's base style: beneath the lexer's
        # colours, and over the padding that runs it to the edge.
        tint = self.get_component_rich_style(f"diff-lines--{line.kind}") \
            if line.kind in ("added", "removed") else ""
        text = Text.assemble(gutter, (f"{mark} ", "bold"), style=tint)
        if line.kind == "note":
            text.append(printable(line.text), style="dim italic")
        else:
            text.append_text(self.code[index])
        if index in self.picked:
            text.stylize(self.get_component_rich_style("diff-lines--picked"), len(gutter))
        return text

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = int(self.scroll_offset.x)
        if self.message:
            if y != 1:
                return Strip.blank(width, self.rich_style)
            text = Text(f"  {self.message}", style="italic")
            return Strip(text.render(self.app.console)).crop_extend(0, width, self.rich_style)
        index = int(self.scroll_offset.y) + y
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        if len(self._strips) > DRAWN_KEPT:  # a long file read through: keep a few screens
            self._strips.clear()
            self._shown.clear()
        strip = self._strips.get(index)
        if strip is None:
            text = self._row_text(index)
            # (to the view's edge too: the drawn rows are dropped when it is resized)
            full = max(text.cell_len, self.virtual_size.width, width)
            kind = self.rows[index]
            if kind.kind in ("file", "hunk") or (kind.line is not None
                                                 and kind.line.kind in ("added", "removed")):
                text.pad_right(full - text.cell_len)  # the line's colour runs to the edge
            strip = self._strips[index] = Strip(text.render(self.app.console))
        view = (scroll_x, width, index == self.cursor)
        shown = self._shown.get(index)
        if shown is not None and shown[0] == view:
            return shown[1]
        if scroll_x or strip.cell_length != width:
            # (never on a strip that already fits: crop_extend would cache the strip in
            # itself, a reference cycle that only a full collection frees: tens of
            # milliseconds while scrolling, for thousands of such strips)
            strip = strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
        if index == self.cursor:
            strip = strip.apply_style(self.get_component_rich_style("diff-lines--cursor"))
        strip = strip.apply_style(self.rich_style)
        # The same row drawn the same way is the same strip: a repaint (the cursor moving
        # two rows down) makes new strips for the rows that changed only, and Textual's own
        # caches on the others are hits, not garbage for the collector.
        self._shown[index] = (view, strip)
        return strip

    def on_click(self, event: Click) -> None:
        index = int(self.scroll_offset.y) + event.y
        if 0 <= index < len(self.rows):
            self.move_to(index)


# ---- the screen ------------------------------------------------------------------------------


class TitleLine(Widget):
    """One line of text that repaints without laying the screen out again (a file change
    lays out the diff's scrollbars already)."""

    text: reactive[Text] = reactive(Text, layout=False)

    def render(self) -> Text:
        return self.text


class DiffScreen(Screen[None]):
    """What an issue's agent changed, against its base branch or since the last review."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(a.key, a.run, a.hint or a.help, show=a.show, key_display=a.key_display,
                tooltip=a.help, id=a.id) for a in DIFF_ACTIONS]
    AUTO_FOCUS = None

    def __init__(self, identifier: str, reviewer: Reviewer, against: Against = "base",
                 keys: dict[str, str] | None = None) -> None:
        super().__init__()
        self.identifier = identifier
        self.reviewer = reviewer
        self.against: Against = against
        self.keys = keys or {}
        #: the reply shown (None: asking)
        self.reply: dict[str, Any] | None = None
        self.files: list[FileDiff] = []
        self.chosen = 0
        #: each file's rows and coloured code, made when the file is first shown
        self._made: dict[int, tuple[list[Row], list[Text]]] = {}
        #: the lexers' kinds the view has coloured with
        self._languages: set[type] = set()
        self.asking = True
        self.file_list = FileList(id="diff-files")
        self.lines = DiffLines(id="diff-lines")

    def compose(self) -> ComposeResult:
        yield TitleLine(id="diff-title")
        with Horizontal(id="diff-body"):
            yield self.file_list
            yield self.lines
        # (the palette's key is left out: the view's keys fill an 80-column footer)
        yield Footer(compact=True, show_command_palette=False)


    def on_mount(self) -> None:
        self.ask()

    def on_unmount(self) -> None:
        """Let go of the diff as the view closes, and collect what the closed screen leaves
        (Textual's widgets hold each other in cycles, with every line they drew): collected
        now, while the console repaints anyway, it does not land as a long pause in the
        middle of a later frame (the next diff view's scrolling, say)."""
        self._made.clear()
        self.files = []
        self.reply = None
        self.file_list.show([])
        self.lines.say("")
        self.app.call_later(collect_after_view)

    # ---- asking and showing ----------------------------------------------------------------

    def ask(self) -> None:
        self.asking = True
        which = "against its base" if self.against == "base" else "since the last review"
        self.lines.say(f"Asking for {self.identifier}'s diff {which}…")
        self._title()
        self.reviewer.ask_diff(self.identifier, self.against)

    def show(self, reply: dict[str, Any]) -> None:
        """A `review_diff` reply for this issue."""
        if reply.get("against", self.against) != self.against:
            return  # an answer to a question since changed (the toggle was pressed again)
        self.asking = False
        self.reply = reply
        text = reply.get("diff")
        self.files = parse(text if isinstance(text, str) else "")
        self._made.clear()
        self.file_list.show(self.files)
        self._title()
        if not self.files:
            base = printable(str(reply.get("base") or "the base branch"))
            self.lines.say(f"No changes against {base}." if self.against == "base"
                           else "No changes since the last review.")
            return
        self.choose(0)
        keep_out_of_collections()

    def failed(self, text: str) -> None:
        """The orchestrator refused (no such issue, no git workspace, no orchestrator)."""
        self.asking = False
        self.lines.say(printable(text))
        self._title()

    def choose(self, index: int, *, last_row: bool = False) -> None:
        if not self.files:
            return
        self.chosen = max(0, min(index, len(self.files) - 1))
        rows, code = self._rows(self.chosen)
        self.file_list.choose(self.chosen)
        self.lines.show(rows, code, self._picked_rows(rows))
        if last_row:
            self.lines.move_to(len(rows) - 1)
        self._title()

    def _rows(self, index: int) -> tuple[list[Row], list[Text]]:
        made = self._made.pop(index, None)
        if made is None:
            diff = self.files[index]
            cut = bool(self.reply and self.reply.get("truncated")) and index == len(self.files) - 1
            rows = file_rows(diff, cut=cut)
            made = (rows, coloured(diff, rows))
            language = type(lexer_for(diff.path))
            if language not in self._languages:  # its first file: the lexer's modules and
                self._languages.add(language)  # compiled rules were loaded, for good
                keep_out_of_collections()
        self._made[index] = made  # (the most recent last)
        while len(self._made) > FILES_KEPT:
            del self._made[next(iter(self._made))]
        return made

    def _picked_rows(self, rows: list[Row]) -> set[int]:
        refs = set(self.reviewer.refs(self.identifier))
        path = self.files[self.chosen].path
        return {i for i, row in enumerate(rows)
                if row.line is not None and (ref := self._ref(path, row)) is not None
                and ref in refs}

    @staticmethod
    def _ref(path: str, row: Row) -> Ref | None:
        line = row.line
        if line is None or line.kind == "note":
            return None
        number = line.new if line.new is not None else line.old
        return None if number is None else Ref(path, number)

    def title_text(self) -> Text:
        text = Text.assemble((f" {printable(self.identifier)} ", "bold reverse"), " ")
        reply = self.reply or {}
        base = printable(str(reply.get("base") or "its base"))
        if self.against == "base":
            text.append(f"against {base}", style="bold")
        else:
            text.append("since the last review", style="bold")
        if self.asking or not reply:
            return text
        stat = reply.get("stat") or {}
        files = int(stat.get("files", len(self.files)))
        text.append(f"  {plural(files, 'file')} ")
        text.append_text(stat_text(files, int(stat.get("added", 0)),
                                   int(stat.get("removed", 0))))
        if self.files:
            text.append(f"  file {self.chosen + 1}/{len(self.files)}", style="dim")
        refs = self.reviewer.refs(self.identifier)
        if refs:
            text.append(f"  {plural(len(refs), 'ref')}", style="cyan")
        if reply.get("uncommitted"):
            text.append("  with uncommitted work", style="yellow")
        if reply.get("truncated"):
            text.append("  truncated", style="bold red")
        return text

    def _title(self) -> None:
        self.query_one(TitleLine).text = self.title_text()

    # ---- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("file", "hunk", "reference"):
            return bool(self.files)
        return True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_help(self) -> None:
        self.app.push_screen(HelpModal(diff_help_rows(self.keys)))

    def action_move(self, step: int) -> None:
        self.lines.move_to(self.lines.cursor + step)

    def action_page(self, direction: int) -> None:
        self.lines.move_to(self.lines.cursor + direction * max(1, self.lines.size.height - 1))

    def action_jump(self, row: int) -> None:
        self.lines.move_to(row if row >= 0 else len(self.lines.rows) - 1)

    def action_pan(self, direction: int) -> None:
        self.lines.scroll_to(x=max(0, self.lines.scroll_offset.x + direction * PAN),
                             animate=False)

    def action_file(self, step: int) -> None:
        if self.files:
            self.choose((self.chosen + step) % len(self.files))

    def action_hunk(self, step: int) -> None:
        """The next (or previous) hunk's header, on into the next (previous) file."""
        rows, cursor = self.lines.rows, self.lines.cursor
        heads = [i for i, row in enumerate(rows) if row.kind == "hunk"]
        ahead = [i for i in heads if (i > cursor if step > 0 else i < cursor)]
        if ahead:
            self.lines.move_to(ahead[0] if step > 0 else ahead[-1], top=True)
            return
        if len(self.files) < 2:
            return
        self.choose((self.chosen + step) % len(self.files))
        if step < 0:
            heads = [i for i, row in enumerate(self.lines.rows) if row.kind == "hunk"]
            if heads:
                self.lines.move_to(heads[-1], top=True)

    def action_toggle_against(self) -> None:
        self.against = "review" if self.against == "base" else "base"
        self.reply = None
        self.files = []
        self._made.clear()
        self.file_list.show([])
        self.ask()

    def action_reference(self) -> None:
        if not self.files or not self.lines.rows:
            return
        row = self.lines.rows[self.lines.cursor]
        ref = self._ref(self.files[self.chosen].path, row)
        if ref is None:
            self.app.notify("Put the cursor on a line of code to reference it.", timeout=3)
            return
        added = self.reviewer.toggle_ref(self.identifier, ref)
        self.refs_changed()
        self.app.notify(printable(f"{'Referenced' if added else 'No longer referenced'}: "
                                  f"{ref.text()}"), timeout=3, markup=False)

    def refs_changed(self) -> None:
        """The references were sent (or dropped) elsewhere: show them as they are now."""
        if self.files and self.lines.rows:
            self.lines.set_picked(self._picked_rows(self.lines.rows))
        self._title()

    def action_accept(self) -> None:
        self.reviewer.accept(self.identifier)

    def action_request_changes(self) -> None:
        self.reviewer.request_changes(self.identifier)

    def action_discard(self) -> None:
        self.reviewer.discard(self.identifier)

    @on(FileList.Chosen)
    def _clicked(self, message: FileList.Chosen) -> None:
        self.choose(message.index)
