"""The transcript as one line-API widget: only the lines on screen are drawn.

The records read so far (the file's tail at first, more as the operator scrolls up) add up to
blocks (blocks.py); each block is rendered to strips once per change and width, and a list of
block start lines maps a screen row to its strip. A tail of thousands of updates is a few
hundred blocks, so opening costs what the tail holds, not what the file holds.

It follows the live file (a poll a few times a second, reading only what was appended) and
stays at the bottom while it follows; scrolling up stops following, End or G (or scrolling back
to the bottom) follows again. A replaced or shortened file (a rotation) is read again from its
end.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .blocks import Block, Blocks
from .reader import TranscriptReader

#: how often the live file is looked at
FOLLOW_EVERY = 0.25
#: on opening, read further back until this many screens of lines are there (or the start)
SCREENS_AHEAD = 3
#: the largest step back when the operator scrolls up (each step doubles, up to this: about
#: 1,500 updates, read, parsed and drawn in about 50 ms, while a key waits); it starts two
#: screens ahead of the top, so a page up rarely waits on it
MAX_CHUNK = 256 * 1024
#: searching reads at most this many steps further back before it says "not found"
SEARCH_STEPS = 8
#: while following, the most lines held: past it the view opens again on the file's tail
#: (some 20 ms), so a view left open on a fast agent for days holds what a fresh one does
FOLLOW_KEEP_LINES = 2000
#: drawn lines kept for redrawing (a few tall screens); older ones are drawn again if needed.
#: A drawn line holds its strip and the styled and cropped strips Textual caches on it (some
#: 30 objects): kept for every line that ever scrolled past, they made each full collection
#: slower the longer the view was open
DRAWN_KEPT = 240


class TranscriptLog(ScrollView, can_focus=True):
    """A session's transcript, read lazily from `path` and followed as it grows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end,G", "follow", "Follow", show=False, id="transcript.follow"),
        Binding("home,g", "top", "Top", show=False, id="transcript.top"),
        Binding("k", "scroll_up", show=False),
        Binding("j", "scroll_down", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"transcript--match"}
    DEFAULT_CSS = """
    TranscriptLog {
        background: $surface;
        overflow-x: hidden;
        scrollbar-gutter: stable;
        & > .transcript--match { background: $warning 40%; }
    }
    """

    class Following(Message):
        """Following the tail started or stopped (the screen says which)."""

        def __init__(self, transcript: TranscriptLog, following: bool) -> None:
            super().__init__()
            self.transcript, self.following = transcript, following

    def __init__(self, path: Path, *, poll_every: float = FOLLOW_EVERY, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.path = path
        self.poll_every = poll_every
        self.reader = TranscriptReader(path)
        #: how many records were read so far (the blocks hold what they add up to)
        self.records_read = 0
        self.model = Blocks()
        self.following = True
        #: each block's lines at `_width` (wrapped, styled text), each drawn into a strip only
        #: once it is on screen; and the line each block starts at
        self._pieces: list[list[Text]] = []
        self._strips: list[list[Strip | None]] = []
        #: where the kept drawn lines are, oldest first: (a block's strips, line in it)
        self._drawn: deque[tuple[list[Strip | None], int]] = deque()
        self._starts: list[int] = []
        self._total = 0
        self._width = 0
        #: the line of the last search match
        self.match_line: int | None = None
        self._adjusting = False
        self._loading = False
        #: a tool call to go to once the widget has its width (`go_to_call` before layout)
        self._wanted_call = ""

    # ---- reading --------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._reload()
        self.set_interval(self.poll_every, self.poll)

    def _reload(self) -> None:
        """(Re)open on the file's tail."""
        records = self.reader.open_tail()
        self.records_read = len(records)
        self.model = Blocks()
        self.model.extend(records)
        self.model.take_dirty()
        self.match_line = None
        self._pieces, self._strips, self._starts, self._total = [], [], [], 0
        self._drawn.clear()
        if self._width:
            self._render_all()
            self._fill_screens()

    def poll(self) -> None:
        """Take what the live file gained (or reload it when it was replaced)."""
        found = self.reader.poll()
        if found.reset:
            self._reload()
            return
        if not found.records:
            return
        self.records_read += len(found.records)
        self.model.extend(found.records)
        if self.following and self._total > FOLLOW_KEEP_LINES:
            self._reload()
        elif self._width:
            self._rerender(self.model.take_dirty())

    def _fill_screens(self) -> None:
        """Read further back until a few screens of lines are there, or the start."""
        wanted = max(1, self.size.height) * SCREENS_AHEAD
        while self._total < wanted and not self.reader.at_start:
            if not self.load_earlier():
                break

    def load_earlier(self) -> bool:
        """Read the chunk before what was read; keeps the lines on screen where they are."""
        if self._loading:
            return False
        self._loading = True
        try:
            records = self.reader.earlier()
            self.reader.chunk_bytes = min(self.reader.chunk_bytes * 2, MAX_CHUNK)
            if not records:
                return False
            before = self._total
            self.records_read += len(records)
            kept, dirty = self.model.prepend(records)
            head = len(self.model.blocks) - len(kept)
            self._pieces = [[] for _ in range(head)] + [self._pieces[i] for i in kept]
            self._strips = [[] for _ in range(head)] + [self._strips[i] for i in kept]
            self._rerender(dirty)
            added = self._total - before
            if self.match_line is not None:
                self.match_line += added
            if not self.following:
                self._adjusting = True
                self.scroll_to(y=self.scroll_y + added, animate=False, immediate=True)
                self._adjusting = False
            return True
        finally:
            self._loading = False

    # ---- rendering ------------------------------------------------------------------------

    def on_resize(self, event: Resize) -> None:
        width = self.scrollable_content_region.width
        if width != self._width and width > 0:
            self._width = width
            self._render_all()
            self._fill_screens()
            if self._wanted_call:
                self.go_to_call(self._wanted_call)

    def _render_all(self) -> None:
        self._pieces = [self._lay_out(block) for block in self.model.blocks]
        self._strips = [[None] * len(pieces) for pieces in self._pieces]
        self._drawn.clear()
        self._restart()

    def _rerender(self, dirty: set[int]) -> None:
        for index in sorted(dirty):
            pieces = self._lay_out(self.model.blocks[index])
            if index < len(self._pieces):
                self._pieces[index] = pieces
                self._strips[index] = [None] * len(pieces)
            else:
                self._pieces.append(pieces)
                self._strips.append([None] * len(pieces))
        self._restart()

    def _restart(self) -> None:
        """Block start lines and the virtual size; then the tail, while following."""
        starts, total = [], 0
        for pieces in self._pieces:
            starts.append(total)
            total += len(pieces)
        self._starts, self._total = starts, total
        self.virtual_size = Size(self._width, total)
        self.refresh()
        if self.following:
            self._to_end()
            # the size may be settled only after this refresh (on opening): once more then
            self.call_after_refresh(self._to_end_if_following)

    def _to_end(self) -> None:
        self._adjusting = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._adjusting = False

    def _to_end_if_following(self) -> None:
        if self.following:
            self._to_end()

    def _lay_out(self, block: Block) -> list[Text]:
        """The block's lines at the width: wrapped, or cut when drawn."""
        console = self.app.console
        width = max(1, self._width)
        shown = [Text()] if block.gap else []
        for line in block.lines():
            indent = line.indent or Text()
            room = max(1, width - indent.cell_len)
            pieces = (list(line.text.wrap(console, room)) if line.wrap and line.text.plain
                      else [line.text])
            shown += [indent + piece if line.indent is not None else piece for piece in pieces]
        return shown

    def _draw(self, text: Text) -> Strip:
        console = self.app.console
        segments = text.render(console)
        if text.style:  # a Text's own style is not in what it renders
            segments = Segment.apply_style(segments, console.get_style(text.style))
        strip = Strip(list(segments), text.cell_len)
        return strip.crop(0, self._width) if strip.cell_length > self._width else strip

    def render_line(self, y: int) -> Strip:
        number = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if number >= self._total or not self._starts:
            return Strip.blank(width, self.rich_style)
        strip = self.line(number).extend_cell_length(width)
        if number == self.match_line:
            strip = strip.apply_style(self.get_component_rich_style("transcript--match"))
        return strip.apply_style(self.rich_style)

    def line(self, number: int) -> Strip:
        index = bisect_right(self._starts, number) - 1
        strips, at = self._strips[index], number - self._starts[index]
        strip = strips[at]
        if strip is None:
            strip = strips[at] = self._draw(self._pieces[index][at])
            self._drawn.append((strips, at))
            if len(self._drawn) > DRAWN_KEPT:
                old, line = self._drawn.popleft()
                if line < len(old):  # a block laid out again has a new list; this one is gone
                    old[line] = None
        return strip

    def line_text(self, number: int) -> str:
        index = bisect_right(self._starts, number) - 1
        return self._pieces[index][number - self._starts[index]].plain

    def lines_text(self) -> list[str]:
        """Every line read so far, as plain text (long rows whole: the screen cuts them)."""
        return [piece.plain for pieces in self._pieces for piece in pieces]

    def visible_text(self) -> list[str]:
        top = int(self.scroll_y)
        return [self.line_text(n)
                for n in range(top, min(self._total, top + self.size.height))]

    # ---- following and scrolling ----------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._adjusting:
            return
        self._follow(new_value >= self.max_scroll_y)
        if new_value < 2 * max(1, self.size.height) and not self.reader.at_start:
            self.call_later(self.load_earlier)

    def _follow(self, following: bool) -> None:
        if following != self.following:
            self.following = following
            self.post_message(self.Following(self, following))

    def action_scroll_up(self) -> None:
        self._stop_following()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._stop_following()
        super().action_page_up()

    def _stop_following(self) -> None:
        """Before a scroll up starts: it animates, and lines read before its first step
        would otherwise pull the view back to the tail (the key lost)."""
        if self.scroll_y > 0:
            self._follow(False)

    def action_follow(self) -> None:
        self._follow(True)
        self._to_end()

    def action_top(self) -> None:
        """Go to the first update: a chunk read back at a time, the loop free in between (a
        long transcript takes seconds to read back whole), the top shown at every step."""
        self._follow(False)
        more = not self.reader.at_start and self.load_earlier()
        self._adjusting = True
        self.scroll_home(animate=False, immediate=True)
        self._adjusting = False
        if more:
            self.call_later(self.action_top)

    # ---- search ---------------------------------------------------------------------------

    def search(self, needle: str, forward: bool = True) -> bool:
        """Go to the next (or previous) line holding `needle`, from the last match or the top
        of the screen; reads further back (a few chunks at most) when nothing is found."""
        if not needle:
            return False
        for _ in range(SEARCH_STEPS + 1):
            found = self._find(needle.casefold(), forward)
            if found is not None:
                self.match_line = found
                self._follow(False)
                self._adjusting = True
                self.scroll_to(y=max(0, found - self.size.height // 2), animate=False,
                               immediate=True)
                self._adjusting = False
                self.refresh()
                return True
            if self.reader.at_start or not self.load_earlier():
                return False
        return False

    def go_to_call(self, ident: str) -> bool:
        """Show a tool call's first line near the top, marked as a search match is; reads
        further back (a few chunks at most) to find it. False when it is not there (yet)."""
        if not self._width:  # not laid out yet: done on the first resize
            self._wanted_call = ident
            return False
        self._wanted_call = ""
        for _ in range(SEARCH_STEPS + 1):
            index = self.model.call_index(ident)
            if index is not None:
                found = self._starts[index] + (1 if self.model.blocks[index].gap else 0)
                self.match_line = found
                self._follow(False)
                self._show_line(found)
                # on opening, the scroll range is settled only after this refresh
                self.call_after_refresh(self._show_line, found)
                return True
            if self.reader.at_start or not self.load_earlier():
                return False
        return False

    def _show_line(self, number: int) -> None:
        """Scroll so that line `number` is a third of the way down."""
        self._adjusting = True
        self.scroll_to(y=max(0, number - self.size.height // 3), animate=False, immediate=True)
        self._adjusting = False
        self.refresh()

    def _find(self, needle: str, forward: bool) -> int | None:
        total = self._total
        if not total:
            return None
        here = self.match_line if self.match_line is not None else int(self.scroll_y) - 1
        step = 1 if forward else -1
        for offset in range(1, total + 1):
            number = (here + step * offset) % total
            if needle in self.line_text(number).casefold():
                return number
        return None

