"""The Activity pane: chat and events as they happen."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widget import Widget
from textual.widgets import RichLog

from ...core.text import printable
from ..actions import Hint
from ..bridge import Activity
from .base import Console, Pane

ACTIVITY_LINES = 2000
#: logged events read back when the console opens (the recent past, before a restart too)
ACTIVITY_PAST = 1000
#: rendered lines the activity log keeps (each holds render caches the collector must scan);
#: every entry up to ACTIVITY_LINES is still kept for the filter
RENDERED_LINES = 200


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
        late = False
        for entry in fresh:
            late |= self._place(entry)
        if not visible:
            self.stale = True
            return
        if late or self.stale or len(fresh) > self._room():
            self.refilter(self.filter_text)
            return
        for entry in fresh:
            if self._shows(entry):
                self.write(self._render_entry(entry))

    def _place(self, entry: Activity) -> bool:
        """Keep the entries in time order: a line shown late (a join held to see whether the
        connection was brief) goes where its time says. True if it went before the newest."""
        kept = self.lines_kept
        if not kept or entry.at >= kept[-1].at:
            kept.append(entry)
            return False
        if len(kept) == kept.maxlen:
            kept.popleft()
        kept.insert(bisect_right(kept, entry.at, key=lambda e: e.at), entry)
        return True

    def add_past(self, entries: Iterable[Activity], visible: bool = True) -> None:
        """What happened before the newest lines: put before them, as it came first."""
        self.lines_kept = deque([*entries, *self.lines_kept], maxlen=ACTIVITY_LINES)
        if visible:
            self.refilter(self.filter_text)
        else:
            self.stale = True

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
                 "presence": "dim", "start": "bold"}.get(entry.kind, "")
        return Text.assemble((stamp + " ", "dim"), (printable(entry.text), style))


class ActivityPane(Pane):
    name = "activity"
    title = "Activity"

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.log = ActivityLog(id="activity-log")

    @property
    def widget(self) -> Widget:
        return self.log

    def hint(self) -> Hint:
        return ("view.filter",)
