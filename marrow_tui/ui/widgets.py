"""The panes' widgets: tables that update by row key, and the activity log.

Tables never clear and refill on an event: `sync(keys)` changes only the rows whose keys
changed, and a table draws only the rows on screen, so opening the console on 10,000 live
claims takes a moment and keeps answering keys.

Cells hold agent text (names, task ids, questions, output lines): a cell is drawn as a `Text`,
never read as markup, and its control characters are written out (`_shown_cells`).
"""

from __future__ import annotations

import asyncio
import re
import time
from bisect import bisect_left
from collections import deque
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
from textual.widgets import RichLog

from ..core.claims import Claim
from ..core.orchestration import REFUSED, refused_id
from ..core.state import State
from ..core.text import ago
from .bridge import Activity
from .literal import printable, safe_text

FILL_CHUNK = 500
EXPIRING_SOON = 300.0
ACTIVITY_LINES = 2000
#: rendered lines the activity log keeps (each holds render caches the collector must scan);
#: every entry up to ACTIVITY_LINES is still kept for the filter
RENDERED_LINES = 200


class KeyedTable(ScrollView):
    """A table keyed by id that draws only the rows on screen (Textual's line API).

    Rows live in a sorted key list with their cells; a rendered row is cached until one of its
    cells changes or a column widens. Adding a row costs a list insert, not a measurement of
    every cell, and a repaint renders only the visible rows: a table of 10,000 claims fills in
    a moment and an update storm costs what the screen shows, not what the table holds.
    """

    COLUMNS: tuple[tuple[str, str], ...] = ()
    #: the screen drives the shown pane; a focus change would rebuild the footer
    can_focus = False
    #: widest a column may grow (the last one is never capped: it scrolls)
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
        self.widths = [cell_len(label) for _, label in self.COLUMNS]
        #: keys that changed while the table was hidden: synced when it is shown again
        self.stale: set[str] = set()
        self._highlighted: str | None = None
        #: once the user has chosen a row, the cursor follows that row as others come and go;
        #: before that, the top row stays selected
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
        last = len(self.widths) - 1
        for index, cell in enumerate(cells):
            width = cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))
            if index < last:
                width = min(width, self.MAX_WIDTH)
            if width > self.widths[index]:
                self.widths[index] = width
                grew = True
        return grew

    def _put(self, key: str, cells: tuple[Any, ...]) -> bool:
        """Add or change a row; True when the row set changed."""
        if self._measure(cells):
            self._strips.clear()
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

    def _resized(self) -> None:
        width = sum(self.widths) + self.GAP * len(self.widths)
        size = Size(width, len(self.keys) + 1)
        if size != self.virtual_size:  # type: ignore[has-type]
            self.virtual_size = size
        self.refresh()
        self._announce()

    async def fill(self) -> None:
        """(Re)build every row; yields now and then so keys are answered meanwhile."""
        self.filling = True
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

    def sync(self, keys: Iterable[str]) -> None:
        """Bring the rows for `keys` up to date: add, change or remove them."""
        shown = self._shown
        rows_changed = False
        visible = set(self.visible_keys())
        touched = False
        for key in keys:
            cells = self._shown_cells(key)
            before = shown.get(key)
            if cells is None or not self.matches(cells):
                if before is not None:
                    self._drop(key)
                    rows_changed = True
            elif cells != before:
                rows_changed |= self._put(key, cells)
                touched |= key in visible
        if rows_changed:
            self._resized()
        elif touched:
            self.refresh()

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
        for index, (cell, width) in enumerate(zip(cells, self.widths, strict=True)):
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if index < last:
                text.truncate(width, overflow="ellipsis", pad=True)
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

    def on_click(self, event: Click) -> None:
        row = int(self.scroll_offset.y) + event.y - 1
        if 0 <= row < len(self.keys):
            self.move_cursor(row)


class AgentsTable(KeyedTable):
    COLUMNS = (("agent", "Agent"), ("state", "State"), ("since", "Since"), ("seen", "Seen"),
               ("claims", "Leases"), ("roles", "Roles"))

    def all_keys(self) -> Iterable[str]:
        presence = self.state.presence
        return sorted(set(presence.online) | set(self.state.claims.by_owner))

    def cells(self, key: str) -> tuple[Any, ...] | None:
        now = self.clock()
        agent = self.state.presence.online.get(key)
        held = self.state.claims.by_owner.get(key, ())
        if agent is None and not held:
            return None
        if agent is None:
            since = self.state.presence.offline_since.get(key, self.state.started_at)
            state = Text("offline", style="bold red")
            return (key, state, ago(now - since), "-", ", ".join(sorted(held)), "")
        state = Text("operator", style="bold magenta") if agent.operator else Text("online",
                                                                                    style="green")
        return (key, state, ago(now - agent.since), ago(now - agent.last_seen),
                ", ".join(sorted(held)), ", ".join(agent.roles))


class ClaimsTable(KeyedTable):
    # Fixed-width facts first; the scope, which can be long, last.
    COLUMNS = (("task", "Task"), ("owner", "Owner"), ("status", "Status"), ("left", "Left"),
               ("epoch", "Epoch"), ("ckpt", "Ckpt"), ("scope", "Scope"))

    def all_keys(self) -> Iterable[str]:
        return sorted(self.state.claims.claims)

    def cells(self, key: str) -> tuple[Any, ...] | None:
        claim = self.state.claims.get(key)
        if claim is None:
            return None
        return (claim.task_id, self._owner(claim), claim.status, self._left(claim), claim.epoch,
                "yes" if claim.checkpoint else "", _scope(claim))

    def _owner(self, claim: Claim) -> Text | str:
        if claim.owner in self.state.presence.online:
            return claim.owner
        return Text(f"{claim.owner} (offline)", style="red")

    def _left(self, claim: Claim) -> Text:
        left = claim.lease_expires_at - self.clock()
        style = "bold red" if left < EXPIRING_SOON else ""
        return Text(ago(left), style=style)



def _scope(claim: Claim) -> str:
    paths = ", ".join(claim.paths) if claim.paths else "(whole worktree)"
    return f"{claim.worktree}: {paths}" if claim.worktree else paths


class BoardTable(KeyedTable):
    COLUMNS = (("task", "Task"), ("status", "Status"), ("ready", "Ready"), ("deps", "After"),
               ("owner", "Suggested"), ("title", "Title"), ("note", "Latest note"))

    def all_keys(self) -> Iterable[str]:
        return sorted(self.state.board.tasks)

    def cells(self, key: str) -> tuple[Any, ...] | None:
        board = self.state.board
        task = board.tasks.get(key)
        if task is None:
            return None
        notes = board.progress.for_task(key)
        note = f"[{notes[-1]['kind']}] {notes[-1]['text']}" if notes else ""
        ready = Text("ready", style="bold green") if board.is_ready(task) else ""
        return (key, task["status"], ready, ", ".join(task["depends_on"]),
                task["suggested_owner"], task["title"], note[:60])


class ActivityLog(RichLog):
    """Chat and events as they happen, newest at the bottom, filterable.

    Every entry is kept (bounded); only what can be seen is rendered: nothing while the pane
    is hidden, and of a big burst only the lines that fit, because rendering a line is the
    costly part and a burst of a thousand would scroll past unread anyway.
    """

    can_focus = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=RENDERED_LINES, wrap=False, markup=False, **kwargs)
        self.lines_kept: deque[Activity] = deque(maxlen=ACTIVITY_LINES)
        self.filter_text = ""
        self.stale = False

    def add(self, entries: Iterable[Activity], visible: bool = True) -> None:
        fresh = list(entries)
        self.lines_kept.extend(fresh)
        if not visible:
            self.stale = True
            return
        if self.stale or len(fresh) > self._room():
            self.refilter(self.filter_text)
            return
        for entry in fresh:
            if self._shows(entry):
                self.write(self._render_entry(entry))

    def _room(self) -> int:
        return min(RENDERED_LINES, max(self.size.height, 20) * 2)

    def refilter(self, text: str) -> None:
        """Render the newest matching lines that fit (all of them are still kept)."""
        self.filter_text = text
        self.stale = False
        self.clear()
        matching = [e for e in self.lines_kept if self._shows(e)]
        for entry in matching[-self._room():]:
            self.write(self._render_entry(entry))

    def _shows(self, entry: Activity) -> bool:
        return not self.filter_text or self.filter_text.lower() in entry.text.lower()

    @staticmethod
    def _render_entry(entry: Activity) -> Text:
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.at))
        style = {"chat": "cyan", "expire": "bold red", "handoff": "magenta",
                 "presence": "dim"}.get(entry.kind, "")
        return Text.assemble((stamp + " ", "dim"), (printable(entry.text), style))


#: finished sessions per agent the Sessions pane lists (the state keeps more)
SESSIONS_SHOWN = 10
_STATE_STYLES = {"running": "bold cyan", "ok": "green", "failed": "bold red",
                 "timeout": "bold red", "error": "bold red", "stopped": "yellow",
                 "interrupted": "yellow"}


#: end states whose reason says more than the exit code
_SAY_WHY = frozenset({"timeout", "error", "stopped", "interrupted"})


def session_key(agent: str, started: float, sid: str) -> str:
    """Rows group by agent, newest first (so a running session heads its agent's rows)."""
    return f"{agent}\x1f{1e11 - started:015.3f}\x1f{sid}"


def placeholder_key(agent: str) -> str:
    return f"{agent}\x1f~"


class SessionsTable(KeyedTable):
    """Runs per agent: the running one and the recent ones, newest first.

    The first row of each agent also says what the scheduler will do next (next run in 4m,
    disabled, a wake waiting). Keys sort by agent, then newest first; the session id is the
    key's last part.
    """

    # What the operator reads first, first; the session id (also in the output view's
    # title) last, where a narrow terminal may scroll it off.
    COLUMNS = (("agent", "Agent"), ("started", "Started"), ("took", "Took"),
               ("state", "State"), ("exit", "Exit"), ("line", "Last output"),
               ("session", "Session"))
    MAX_WIDTH = 60

    def agent_names(self) -> list[str]:
        book = self.state.sessions
        names = set(book.agents)
        names.update(s.agent for s in book.by_id.values())
        return sorted(names)

    def keys_of(self, agent: str) -> list[str]:
        """The rows the agent should have now, plus the ones it shows (to drop old ones)."""
        shown = [k for k in self._shown if k.split("\x1f", 1)[0] == agent]
        return sorted(set(shown) | set(self._wanted(agent)))

    def _wanted(self, agent: str) -> list[str]:
        sessions = self.state.sessions.of_agent(agent)
        running = [s for s in sessions if s.running]
        recent = running + [s for s in sessions if not s.running][:SESSIONS_SHOWN]
        if not recent:
            return [placeholder_key(agent)] if agent in self.state.sessions.agents else []
        return [session_key(s.agent, s.started, s.id) for s in recent]

    def all_keys(self) -> Iterable[str]:
        for agent in self.agent_names():
            yield from self._wanted(agent)

    def session_id(self, key: str | None) -> str | None:
        if key is None:
            return None
        sid = key.rsplit("\x1f", 1)[-1]
        return None if sid == "~" else sid

    @staticmethod
    def agent_of(key: str | None) -> str | None:
        return None if key is None else key.split("\x1f", 1)[0]

    def cells(self, key: str) -> tuple[Any, ...] | None:
        agent = self.agent_of(key) or ""
        wanted = self._wanted(agent)
        if key not in wanted:
            return None
        book = self.state.sessions
        sid = self.session_id(key)
        head = wanted[0] == key
        label = self._agent_label(agent) if head else Text("")
        if sid is None:
            return (label, "", "", Text("never run", style="dim"), "", "", "")
        session = book.by_id[sid]
        now = self.clock()
        started = time.strftime("%H:%M:%S", time.localtime(session.started))
        if time.localtime(session.started)[:3] != time.localtime(now)[:3]:
            started = time.strftime("%m-%d %H:%M", time.localtime(session.started))
        took = ago((session.ended or now) - session.started)
        state = Text(session.state, style=_STATE_STYLES.get(session.state, ""))
        code = "" if session.code is None else str(session.code)
        short = sid[len(agent) + 1:] if sid.startswith(agent + "-") else sid
        line = session.last_line
        if session.state in _SAY_WHY and session.reason:
            line = f"{session.reason} · {line}" if line else session.reason
        return (label, started, took, state, code, line[:200], short)

    def _agent_label(self, agent: str) -> Text:
        view = self.state.sessions.agents.get(agent)
        label = Text(agent, style="bold")
        if view is None:
            issue = self.state.issues.issues.get(agent)
            if issue is not None:  # an issue's runs (the orchestrator's, not the config's)
                return label.append(f"  issue · {issue.status}", style="dim")
            return label.append("  (not in config)", style="dim")
        if not view.enabled:
            note, style = "disabled", "dim"
        elif view.running:
            note, style = ("wake queued" if view.wake_pending else ""), "cyan"
        elif view.next_at is not None:
            note, style = f"next {ago(view.next_at - self.clock())}", "dim"
        else:
            note, style = "", ""
        if view.failures:
            note = f"{note}, {view.failures} failed" if note else f"{view.failures} failed"
            style = "red"
        if view.queued:
            note = f"{note}, {view.queued} queued" if note else f"{view.queued} queued"
        return label.append(f"  {note}", style=style) if note else label


#: ended requests the Steering pane still lists (newest first, under the open ones)
STEERING_ENDED_SHOWN = 20


def steering_keys(request_id: str) -> tuple[str, str]:
    """A request's row key while open (oldest first, on top) and once ended (below)."""
    n = int(request_id.lstrip("S") or 0)
    return f"0|{n:012d}", f"1|{10**12 - n:012d}"


class SteeringTable(KeyedTable):
    """Questions agents wait on: the open ones first (the longest-waiting on top), then the
    recently ended ones."""

    COLUMNS = (("id", "Id"), ("asker", "Asks"), ("waited", "Waiting"), ("about", "About"),
               ("state", "State"), ("question", "Question"))
    MAX_WIDTH = 30

    def all_keys(self) -> Iterable[str]:
        book = self.state.steering
        for request in book.open.values():
            yield steering_keys(request.id)[0]
        for request in list(book.ended.values())[-STEERING_ENDED_SHOWN:]:
            yield steering_keys(request.id)[1]

    @staticmethod
    def request_id(key: str | None) -> str | None:
        if key is None:
            return None
        open_, number = key.split("|", 1)
        n = int(number) if open_ == "0" else 10**12 - int(number)
        return f"S{n}"

    def cells(self, key: str) -> tuple[Any, ...] | None:
        request_id = self.request_id(key)
        book = self.state.steering
        request = book.get(request_id or "")
        if request is None or key.startswith("0|") != request.open:
            return None
        if not request.open:
            shown = list(book.ended)[-STEERING_ENDED_SHOWN:]
            if request.id not in shown:
                return None
        now = self.clock()
        waited = ago((request.ended or now) - request.created)
        if request.open:
            state = Text("waiting", style="bold magenta")
            if request.timeout_at is not None:
                state.append(f" {ago(request.timeout_at - now)} left", style="magenta")
        else:
            label = {"answered": "answered", "timed_out": "timed out",
                     "cancelled": "cancelled"}[request.state]
            state = Text(label, style="green" if request.state == "answered" else "yellow")
        question = " ".join(request.question.split())
        if request.choices:
            question += f"  [{' / '.join(request.choices)}]"
        return (request.id, request.asker, waited, request.task_id or "-", state, question)


#: the Issues pane's groups, top to bottom: what runs (or waits on a human), what retries soon,
#: what is up next (by priority), then what needs a hand or is out of play
ISSUE_RANKS = {"running": 0, "waiting": 0, "retrying": 1, "idle": 2, "parked": 3, "blocked": 4,
               "inactive": 5, "done": 6, "refused": 7}
_ISSUE_STYLES = {"running": "bold cyan", "waiting": "bold magenta", "retrying": "yellow",
                 "parked": "bold red", "blocked": "dim", "done": "green", "inactive": "dim",
                 "refused": "red"}
#: an issue without a priority sorts after every one with one (as in smol-symphony)
_NO_PRIORITY = 2 * 10**6


def _natural(identifier: str) -> str:
    """DEMO-2 before DEMO-10: every run of digits padded for a plain string sort."""
    return "".join(part.zfill(12) if part.isdigit() else part
                   for part in re.split(r"(\d+)", identifier))


def issue_key(identifier: str, status: str, priority: int | None,
              sort_as: str | None = None) -> str:
    """An issue's row key: its group, then its priority, then its id (naturally sorted).

    The key changes with the status, so a row moves when its issue starts, retries or parks;
    the identifier is the key's last part. A refused file's row sorts by its path (`sort_as`).
    """
    rank = ISSUE_RANKS.get(status, len(ISSUE_RANKS))
    prio = _NO_PRIORITY if priority is None else min(max(priority + 10**6, 0), _NO_PRIORITY - 1)
    order = _natural(sort_as if sort_as is not None else identifier).replace("\x1f", "?")
    return f"{rank}\x1f{prio:07d}\x1f{order}\x1f{identifier}"


def _printable(text: str) -> str:
    """A file name or reason as shown: a hostile name's control characters become `?`."""
    return "".join(c if c.isprintable() else "?" for c in text)


class IssuesTable(KeyedTable):
    """The orchestrator's issues: running and waiting first, then retries, then what is next
    by priority, then parked, blocked, inactive and done ones."""

    COLUMNS = (("id", "Id"), ("state", "State"), ("status", "Status"), ("attempt", "Attempt"),
               ("priority", "Priority"), ("title", "Title"))
    MAX_WIDTH = 30
    _refused_of: list[dict[str, str]] | None = None
    _refused_rows: dict[str, dict[str, str]]

    @staticmethod
    def identifier(key: str | None) -> str | None:
        return None if key is None else key.rsplit("\x1f", 1)[-1]

    def _wanted(self, identifier: str) -> str | None:
        if identifier.startswith(REFUSED):
            found = self._refused().get(identifier)
            return None if found is None else issue_key(
                identifier, "refused", None, _printable(found["path"]))
        view = self.state.issues.issues.get(identifier)
        return None if view is None else issue_key(identifier, view.status, view.priority)

    def _refused(self) -> dict[str, dict[str, str]]:
        """The tracker files the orchestrator refused, by row id (rebuilt when they change:
        each `tracker_refused` event brings a new list)."""
        files = self.state.issues.refused
        if getattr(self, "_refused_of", None) is not files:
            self._refused_of = files
            self._refused_rows = {refused_id(f["path"]): f for f in files}
        return self._refused_rows

    def keys_of(self, identifier: str) -> list[str]:
        """The row the issue should have now, plus the one it shows (to move or drop it)."""
        keys = {k for k in self._shown if self.identifier(k) == identifier}
        wanted = self._wanted(identifier)
        if wanted is not None:
            keys.add(wanted)
        return sorted(keys)

    def all_keys(self) -> Iterable[str]:
        for view in self.state.issues.issues.values():
            yield issue_key(view.identifier, view.status, view.priority)
        for identifier, found in self._refused().items():
            yield issue_key(identifier, "refused", None, _printable(found["path"]))

    def cells(self, key: str) -> tuple[Any, ...] | None:
        identifier = self.identifier(key) or ""
        if key != self._wanted(identifier):
            return None
        if identifier.startswith(REFUSED):
            found = self._refused()[identifier]
            path = _printable(found["path"])
            folder, _, name = path.rpartition("/")
            return (name, folder.rpartition("/")[2], Text("refused", style="red"), "-", "-",
                    _printable(found["reason"]))
        view = self.state.issues.issues[identifier]
        status = Text(view.status, style=_ISSUE_STYLES.get(view.status, ""))
        if view.status == "retrying" and view.next_at is not None:
            status.append(f" in {ago(view.next_at - self.clock())}")
        elif view.status == "waiting":
            status.append(" on a human", style="magenta")
        reason = " ".join(view.reason.split())
        if view.status in ("parked", "blocked") and reason:
            if reason.startswith(view.status):  # "blocked by DEMO-1" says it all
                status = Text(reason, style=status.style)
            else:
                status.append(f": {reason}")
        elif view.status == "done" and reason:  # e.g. its workspace was kept, and why
            status.append(f": {reason}", style="yellow")
        return (identifier, view.state, status, str(view.attempt) if view.attempt else "-",
                "-" if view.priority is None else str(view.priority), view.title)


_SERVICE_STYLES = {"healthy": "green", "starting": "cyan", "stopping": "yellow",
                   "backoff": "yellow", "unhealthy": "bold red", "failed": "bold red",
                   "blocked": "red", "stopped": "dim", "disabled": "dim"}


class ServicesTable(KeyedTable):
    """The helper services: state, health, pid, port, uptime, restarts, and why."""

    COLUMNS = (("name", "Service"), ("state", "State"), ("health", "Health"), ("pid", "PID"),
               ("port", "Port"), ("up", "Up"), ("restarts", "Restarts"), ("reason", "Reason"))

    def all_keys(self) -> Iterable[str]:
        return sorted(self.state.services.services)

    def cells(self, key: str) -> tuple[Any, ...] | None:
        view = self.state.services.services.get(key)
        if view is None:
            return None
        up = ago(self.clock() - view.since) if view.state == "healthy" and view.since else ""
        return (key, Text(view.state, style=_SERVICE_STYLES.get(view.state, "")),
                view.health or "", view.pid or "", view.port or "", up, view.restarts or "",
                view.reason[:120])
