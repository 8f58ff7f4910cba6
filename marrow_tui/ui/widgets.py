"""The panes' widgets: tables that update by row key, and the activity log.

Tables never clear and refill on an event: `sync(keys)` changes only the rows whose keys
changed. A first fill of a big table is done in chunks that yield to the event loop, so opening
the console on 10,000 live claims keeps answering keys while the rows arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable, RichLog

from ..core.claims import Claim
from ..core.state import State
from .bridge import Activity

FILL_CHUNK = 250
EXPIRING_SOON = 300.0
ACTIVITY_LINES = 2000
#: rendered lines the activity log keeps (each holds render caches the collector must scan);
#: every entry up to ACTIVITY_LINES is still kept for the filter
RENDERED_LINES = 200


def ago(seconds: float) -> str:
    """A short, stable duration: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class KeyedTable(DataTable[Any]):
    """A DataTable whose rows are keyed by an id and refreshed one row at a time."""

    COLUMNS: tuple[tuple[str, str], ...] = ()

    def __init__(self, state: State, clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.state = state
        self.clock = clock
        self.filter_text = ""
        self.filling = False
        #: the cells each row shows now, so a sync touches only the cells that differ
        self._shown: dict[str, tuple[Any, ...]] = {}
        #: keys that changed while the table was hidden: synced when it is shown again
        self.stale: set[str] = set()

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)

    # subclasses: every key that should be a row, and a row's cells (None = no row)
    def all_keys(self) -> Iterable[str]:
        raise NotImplementedError

    def cells(self, key: str) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def matches(self, cells: tuple[Any, ...]) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in str(cell).lower() for cell in cells)

    async def fill(self) -> None:
        """(Re)build every row, a chunk at a time."""
        self.filling = True
        self.clear()
        self._shown.clear()
        self.stale.clear()
        keys = list(self.all_keys())
        for start in range(0, len(keys), FILL_CHUNK):
            rows = []
            for key in keys[start : start + FILL_CHUNK]:
                cells = self.cells(key)
                if cells is not None and self.matches(cells):
                    rows.append((cells, key))
            for cells, key in rows:
                self.add_row(*cells, key=key)
                self._shown[key] = cells
            await asyncio.sleep(0)
        self.filling = False

    def sync(self, keys: Iterable[str]) -> None:
        """Bring the rows for `keys` up to date: add or remove rows, change only cells that differ."""
        shown = self._shown
        for key in keys:
            cells = self.cells(key)
            before = shown.get(key)
            if cells is None or not self.matches(cells):
                if before is not None:
                    self.remove_row(key)
                    del shown[key]
            elif before is None:
                self.add_row(*cells, key=key)
                shown[key] = cells
            elif cells != before:
                for (column, _), value, old in zip(self.COLUMNS, cells, before, strict=True):
                    if value != old:
                        self.update_cell(key, column, value)
                shown[key] = cells

    def later(self, keys: Iterable[str]) -> None:
        """Note changed keys while hidden; `catch_up` applies them when shown."""
        self.stale.update(keys)

    def catch_up(self) -> None:
        if self.stale and not self.filling:
            stale, self.stale = self.stale, set()
            self.sync(sorted(stale))

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except Exception:
            return None
        return key

    def tick(self) -> None:
        """Refresh the rows in view: durations age even when nothing happens."""
        if not self.filling:
            self.sync(self.visible_keys())

    def visible_keys(self) -> list[str]:
        first = int(self.scroll_y)
        last = min(self.row_count, first + self.size.height)
        keys = []
        for index in range(first, last):
            key = self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            if key is not None:
                keys.append(key)
        return keys


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
        return Text.assemble((stamp + " ", "dim"), (entry.text, style))
