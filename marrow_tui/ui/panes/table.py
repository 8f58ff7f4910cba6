"""The panes' table: rows keyed by id that update by key.

Tables never clear and refill on an event: `sync(keys)` changes only the rows whose keys
changed, and a table draws only the rows on screen, so opening the console on 10,000 live
claims takes a moment and keeps answering keys.

Cells hold agent text (names, task ids, questions, output lines): a cell is drawn as a `Text`,
never read as markup, and its control characters are written out (`_shown_cells`).

Columns fit the pane (`fit_widths`): facts keep their width, and the text columns (titles,
messages, scopes) share what is left, so a wide terminal shows whole titles and a narrow one
cuts them with an ellipsis before anything scrolls sideways.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...core.state import State
from ...core.text import printable
from ..literal import safe_text

FILL_CHUNK = 500
#: a text column is never cut narrower than this (or its own width, if less) to make room
TEXT_FLOOR = 8
#: widest a text column is measured (a longer cell is cut with an ellipsis)
TEXT_CAP = 400


def fit_widths(natural: list[int], text: list[int], room: int, gap: int) -> list[int]:
    """Each column's drawn width in `room` cells.

    Facts keep their measured width; the text columns (`text`, by index, the most important
    first) are cut when the row does not fit, the least important first, each down to
    TEXT_FLOOR. Only when every one is down to it does the table overflow (and scroll
    sideways)."""
    widths = list(natural)
    over = sum(widths) + gap * max(0, len(widths) - 1) - room
    for index in reversed(text):
        if over <= 0:
            break
        cut = min(over, max(0, natural[index] - TEXT_FLOOR))
        widths[index] -= cut
        over -= cut
    return widths


class KeyedTable(ScrollView):
    """A table keyed by id that draws only the rows on screen (Textual's line API).

    Rows live in a sorted key list with their cells; a rendered row is cached until one of its
    cells changes or a column widens. Adding a row costs a list insert, not a measurement of
    every cell, and a repaint renders only the visible rows: a table of 10,000 claims fills in
    a moment and an update storm costs what the screen shows, not what the table holds.
    """

    COLUMNS: tuple[tuple[str, str], ...] = ()
    #: the text columns (by id, the most important first): they are drawn whole when there is
    #: room, and cut first when there is not; without any, the last column is the one
    TEXT: tuple[str, ...] = ()
    #: the screen drives the shown pane; a focus change would rebuild the footer
    can_focus = False
    #: columns that wait for a wider pane: below OPTIONAL_FROM cells they are not drawn, so
    #: the text columns keep their room on an 80-column terminal
    OPTIONAL: tuple[str, ...] = ()
    OPTIONAL_FROM = 90
    #: widest a column of facts may grow
    MAX_WIDTH = 40
    GAP = 2

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "keyed-table--header", "keyed-table--cursor", "keyed-table--even",
    }
    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        & > .keyed-table--header { text-style: bold; background: $panel; }
        & > .keyed-table--cursor { background: $block-cursor-background;
                                   color: $block-cursor-foreground; text-style: bold; }
        & > .keyed-table--even { background: $surface-lighten-1; }
    }
    """

    cursor_row: reactive[int] = reactive(0, layout=False)

    class RowHighlighted(Message):
        def __init__(self, table: KeyedTable, key: str | None) -> None:
            super().__init__()
            self.table, self.key = table, key

    class Filled(Message):
        """A fill is done: the table holds every row that matches."""

    class RowSelected(Message):
        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

    def __init__(self, state: State, clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(**kwargs)
        self.state = state
        self.clock = clock
        self.filter_text = ""
        self.filling = False
        #: row keys in display order, and each row's cells
        self.keys: list[str] = []
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._strips: dict[str, Strip] = {}
        #: each column's measured width, and as drawn (fitted to the pane)
        self.widths = [cell_len(label) for _, label in self.COLUMNS]
        self.drawn = list(self.widths)
        ids = [column for column, _ in self.COLUMNS]
        self._text = [ids.index(column) for column in (self.TEXT or ids[-1:])]
        self._optional = [ids.index(column) for column in self.OPTIONAL]
        #: keys that changed while the table was hidden: synced when it is shown again
        self.stale: set[str] = set()
        self._highlighted: str | None = None
        #: once the user has chosen a row (or acted on one), the cursor follows that row as
        #: others come and go; before that, the top row stays selected
        self._pinned = False

    # ---- what subclasses provide ----------------------------------------------------------

    def all_keys(self) -> Iterable[str]:
        raise NotImplementedError

    def cells(self, key: str) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def _shown_cells(self, key: str) -> tuple[Any, ...] | None:
        """The row's cells as drawn: agent text with its controls escaped (an ESC in a
        question or an output line must not reach the terminal)."""
        cells = self.cells(key)
        if cells is None:
            return None
        return tuple(safe_text(cell) if isinstance(cell, Text)
                     else printable(cell) if isinstance(cell, str) else cell
                     for cell in cells)

    def identity(self, key: str) -> str:
        """What a row is about, whatever its key says of its state: a row whose key changes
        with its item's state (an issue that parks, a question that ends) says so here, so
        the cursor follows the item to its new row."""
        return key

    def matches(self, cells: tuple[Any, ...]) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in str(cell).lower() for cell in cells)

    # ---- rows -----------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.keys)

    def get_row_index(self, key: str) -> int:
        index = bisect_left(self.keys, key)
        if index < len(self.keys) and self.keys[index] == key:
            return index
        raise KeyError(key)

    @property
    def selected_key(self) -> str | None:
        if not self.keys:
            return None
        return self.keys[min(self.cursor_row, len(self.keys) - 1)]

    def visible_keys(self) -> list[str]:
        first = int(self.scroll_offset.y)
        return self.keys[first : first + max(0, self.size.height - 1)]

    def _measure(self, cells: tuple[Any, ...]) -> bool:
        grew = False
        for index, cell in enumerate(cells):
            width = cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))
            width = min(width, TEXT_CAP if index in self._text else self.MAX_WIDTH)
            if width > self.widths[index]:
                self.widths[index] = width
                grew = True
        return grew

    def _put(self, key: str, cells: tuple[Any, ...]) -> bool:
        """Add or change a row; True when the row set changed."""
        if self._measure(cells):
            self._strips.clear()
            self._fit()
        else:
            self._strips.pop(key, None)
        added = key not in self._shown
        self._shown[key] = cells
        if added:
            index = bisect_left(self.keys, key)
            self.keys.insert(index, key)
            if self._pinned and index <= self.cursor_row and len(self.keys) > 1:
                self.set_reactive(KeyedTable.cursor_row, self.cursor_row + 1)
        return added

    def _drop(self, key: str) -> None:
        index = self.get_row_index(key)
        del self.keys[index]
        del self._shown[key]
        self._strips.pop(key, None)
        if self._pinned and index < self.cursor_row:
            self.set_reactive(KeyedTable.cursor_row, self.cursor_row - 1)
        elif self.cursor_row >= len(self.keys):
            self.set_reactive(KeyedTable.cursor_row, max(0, len(self.keys) - 1))

    def _room(self) -> int:
        """The width rows are drawn in: the pane's, less the scrollbar when rows overflow."""
        width, height = self.size
        if len(self.keys) + 1 > height:
            width -= self.styles.scrollbar_size_vertical
        return max(0, width)

    def _fit(self) -> None:
        room = self._room()
        natural = list(self.widths)
        dropped = room < self.OPTIONAL_FROM
        for index in self._optional if dropped else ():
            natural[index] = 0
        # (a dropped column's gap goes too)
        drawn = fit_widths(natural, self._text, room + self.GAP * len(self._optional) * dropped,
                           self.GAP)
        if drawn != self.drawn:
            self.drawn = drawn
            self._strips.clear()

    def _resized(self) -> None:
        self._fit()
        shown = [width for width in self.drawn if width]
        width = sum(shown) + self.GAP * (len(shown) - 1)
        size = Size(width, len(self.keys) + 1)
        if size != self.virtual_size:  # type: ignore[has-type]
            self.virtual_size = size
        self.refresh()
        self._announce()

    def on_resize(self) -> None:
        self._resized()

    async def fill(self) -> None:
        """(Re)build every row; yields now and then so keys are answered meanwhile."""
        self.filling = True
        chosen = self.selected_key if self._pinned else None
        self.keys = []
        self._shown.clear()
        self._strips.clear()
        self.stale.clear()
        self.widths = [cell_len(label) for _, label in self.COLUMNS]
        rows: list[tuple[str, tuple[Any, ...]]] = []
        for count, key in enumerate(self.all_keys(), 1):
            cells = self._shown_cells(key)
            if cells is not None and self.matches(cells):
                rows.append((key, cells))
                self._measure(cells)
            if count % FILL_CHUNK == 0:
                await asyncio.sleep(0)
        rows.sort(key=lambda row: row[0])
        self.keys = [key for key, _ in rows]
        self._shown = dict(rows)
        self.set_reactive(KeyedTable.cursor_row, min(self.cursor_row, max(0, len(self.keys) - 1)))
        self.filling = False
        self._resized()
        if chosen is not None:
            self._follow(chosen, self.keys)
        self.post_message(self.Filled())

    def sync(self, keys: Iterable[str]) -> None:
        """Bring the rows for `keys` up to date: add, change or remove them."""
        shown = self._shown
        chosen = self.selected_key
        added: list[str] = []
        dropped = False
        visible = set(self.visible_keys())
        touched = False
        for key in keys:
            cells = self._shown_cells(key)
            before = shown.get(key)
            if cells is None or not self.matches(cells):
                if before is not None:
                    self._drop(key)
                    dropped = True
            elif cells != before:
                if self._put(key, cells):
                    added.append(key)
                touched |= key in visible
        if added or dropped:
            self._resized()
            if chosen is not None and chosen not in shown:
                self._follow(chosen, added)
        elif touched:
            self.refresh()

    def _follow(self, chosen: str, candidates: Iterable[str]) -> None:
        """The selected row's item moved to another row (its key changed): select that row."""
        item = self.identity(chosen)
        for key in candidates:
            if self.identity(key) == item:
                self.move_cursor(self.get_row_index(key))
                return

    def later(self, keys: Iterable[str]) -> None:
        """Note changed keys while hidden; `catch_up` applies them when shown."""
        self.stale.update(keys)

    def catch_up(self) -> None:
        if self.stale and not self.filling:
            stale, self.stale = self.stale, set()
            self.sync(sorted(stale))

    def tick(self) -> None:
        """Refresh the rows in view: durations age even when nothing happens."""
        if not self.filling:
            self.sync(self.visible_keys())

    # ---- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x = int(self.scroll_offset.x)
        width = self.size.width
        if y == 0:
            strip = self._render_row(
                tuple(label for _, label in self.COLUMNS),
                self.get_component_rich_style("keyed-table--header"))
            header = self.get_component_rich_style("keyed-table--header")
            return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width).apply_style(
                header)
        index = int(self.scroll_offset.y) + y - 1
        if index >= len(self.keys):
            return Strip.blank(width, self.rich_style)
        key = self.keys[index]
        cached = self._strips.get(key)
        if cached is None:
            cached = self._strips[key] = self._render_row(self._shown[key], None)
        strip = cached.crop(scroll_x, scroll_x + width).extend_cell_length(width)
        if index == self.cursor_row:
            strip = strip.apply_style(self.get_component_rich_style("keyed-table--cursor"))
        elif index % 2:
            strip = strip.apply_style(self.get_component_rich_style("keyed-table--even"))
        return strip.apply_style(self.rich_style)

    def _render_row(self, cells: tuple[Any, ...], style: Style | None) -> Strip:
        line = Text(no_wrap=True, overflow="ellipsis", style=style or "")
        last = len(cells) - 1
        for index, (cell, width) in enumerate(zip(cells, self.drawn, strict=True)):
            if not width:  # an optional column the pane has no room for
                continue
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            text.truncate(width, overflow="ellipsis", pad=index < last)
            if index < last:
                text.append(" " * self.GAP)
            line.append_text(text)
        return Strip(line.render(self.app.console))

    # ---- the cursor -----------------------------------------------------------------------

    def watch_cursor_row(self) -> None:
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        key = self.selected_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, key))

    def move_cursor(self, row: int) -> None:
        if not self.keys:
            return
        self._pinned = True
        self.cursor_row = max(0, min(row, len(self.keys) - 1))
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self.keys) - 1)

    def action_select(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def pin(self) -> None:
        """The operator acted on the selected row: from now on the cursor stays on it."""
        self._pinned = True

    def on_click(self, event: Click) -> None:
        row = int(self.scroll_offset.y) + event.y - 1
        if 0 <= row < len(self.keys):
            self.move_cursor(row)
