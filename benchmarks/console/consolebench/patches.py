"""Prototypes of the suggested console fixes, applied in the benchmark process only.

Off by default. ``--patch NAME[,NAME...]`` (runner and console process) applies them by
monkeypatching marrow_tui's classes in this one process, so the effect of each suggested fix can
be measured before anyone changes ``marrow_tui/``. A run with patches is an experiment: its JSON
names the patches, and the report never uses it for the targets.

* ``sync``     KeyedTable.sync updates only the cells whose value changed (most events change one
               or two of seven), instead of calling ``update_cell`` for every column.
* ``status``   the status line is updated with ``layout=False`` (it is one row high) and only
               when its text changed, so it no longer asks for a full-screen layout.
* ``activity`` the activity log renders lines only while its pane is shown, at most the newest
               ``ACTIVITY_BURST`` lines of a burst, and keeps at most that many rendered lines
               (each rendered line is a Strip with its caches: 2,000 of them are a large share
               of what the garbage collector scans); when the pane is shown it renders the
               newest ``ACTIVITY_BURST`` kept entries. All 2,000 entries are still kept for the
               filter.
* ``bindings`` a ``Changed`` message refreshes the footer's bindings only when it names the
               selected claim or task (the only rows whose actions can change); otherwise the
               footer recomposes its keys, a layout each time, on every flush.
* ``gc``       ``gc.freeze()`` once the main screen is up: the objects that exist at start-up
               (Textual, the app, the runtime) leave the collector's generations, so gen-2
               collections scan only what was allocated since.
* ``fill``     the first fill adds 50 rows per chunk and yields with a short sleep, so the
               table's own idle work (measuring the new rows) runs per chunk, between keys.
               Measured: it does NOT fix the 10k stall (the fill takes 8-10 s instead of 2.3 s
               and the longest stall stays ~200 ms), because each screen refresh of a growing
               DataTable costs O(rows) (``_y_offsets``, ``ordered_rows``, re-rendering every
               visible row): the fix is a line-API table, not a chunk size.
* ``flush``    the bridge's flush interval stretches to 3x the time the last ``Changed`` took
               to handle (never below 1/FLUSH_HZ): under load the console takes fewer, larger
               batches and leaves the loop free for keys (an adaptive FLUSH_HZ).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

PATCHES = ("sync", "status", "activity", "bindings", "gc", "fill", "flush")
ACTIVITY_BURST = 200
FILL_CHUNK = 50


#: patches left out because the code under test already does what they prototype
SKIPPED: dict[str, str] = {}


def _uses(func: Any, name: str) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and name in code.co_names


def apply_class_patches(names: set[str]) -> None:
    """Patches on classes: before the app is built."""
    import inspect

    from marrow_tui.ui.panes.activity import ActivityLog
    from marrow_tui.ui.panes.table import KeyedTable
    from marrow_tui.ui.screens.main import MainScreen

    if "sync" in names and _uses(KeyedTable.sync, "_shown"):
        SKIPPED["sync"] = "KeyedTable.sync already compares with the cells it shows"
        names.discard("sync")
    if "activity" in names and "visible" in inspect.signature(ActivityLog.add).parameters:
        SKIPPED["activity"] = "ActivityLog.add already renders only when visible"
        names.discard("activity")
    if "bindings" in names and not _uses(MainScreen._changed, "refresh_bindings"):
        SKIPPED["bindings"] = "MainScreen._changed no longer calls refresh_bindings"
        names.discard("bindings")

    if "sync" in names:
        from rich.text import Text

        missing = object()

        def same(a: Any, b: Any) -> bool:
            if isinstance(a, Text) and isinstance(b, Text):
                return a.plain == b.plain and a.style == b.style and a.spans == b.spans
            return bool(a == b)

        def sync(self: Any, keys: Any) -> None:
            rows, data = self.rows, self._data
            for key in keys:
                cells = self.cells(key)
                present = key in rows
                if cells is None or not self.matches(cells):
                    if present:
                        self.remove_row(key)
                elif present:
                    current = data[key]
                    for (column, _), value in zip(self.COLUMNS, cells, strict=True):
                        old = current.get(column, missing)
                        if old is missing or not same(old, value):
                            self.update_cell(key, column, value)
                else:
                    self.add_row(*cells, key=key)

        KeyedTable.sync = sync  # type: ignore[method-assign]

    if "fill" in names:
        async def fill(self: Any) -> None:
            self.filling = True
            self.clear()
            keys = list(self.all_keys())
            for start in range(0, len(keys), FILL_CHUNK):
                for key in keys[start : start + FILL_CHUNK]:
                    cells = self.cells(key)
                    if cells is not None and self.matches(cells):
                        self.add_row(*cells, key=key)
                await asyncio.sleep(0.002)  # long enough for the table's idle work to run
            self.filling = False

        KeyedTable.fill = fill  # type: ignore[method-assign]


def apply_screen_patches(names: set[str], screen: Any) -> None:
    """Patches on the main screen instance: before it is mounted."""
    apply_bindings_patch(names, screen)
    if "status" in names:
        from textual.widgets import Static

        orig = screen._refresh_status
        last: list[Any] = [None]

        def update(self: Static, content: Any = "", *, layout: bool = True) -> None:
            if content == last[0]:
                return
            last[0] = content
            Static.update(self, content, layout=False)

        def refresh_status() -> None:
            status = screen.query_one("#status")
            if isinstance(status, Static):
                status.update = update.__get__(status)  # type: ignore[method-assign]
            else:
                SKIPPED["status"] = f"the status line is a {type(status).__name__}, not a Static"
            screen._refresh_status = orig
            orig()

        screen._refresh_status = refresh_status

    if "activity" in names:
        log = screen.activity
        log.max_lines = ACTIVITY_BURST

        def shown() -> bool:
            return bool(screen.pane == "activity" or screen.has_class("wide"))

        def add(entries: Any) -> None:
            entries = list(entries)
            log.lines_kept.extend(entries)
            if not shown():
                return
            for entry in entries[-ACTIVITY_BURST:]:
                if log._shows(entry):
                    log.write(log._render_entry(entry))

        log.add = add
        orig_watch = screen.watch_pane

        def watch_pane(pane: str) -> None:
            orig_watch(pane)
            if pane == "activity":
                log.clear()
                tail = [e for e in log.lines_kept if log._shows(e)][-ACTIVITY_BURST:]
                for entry in tail:
                    log.write(log._render_entry(entry))

        screen.watch_pane = watch_pane


def apply_bindings_patch(names: set[str], screen: Any) -> None:
    if "bindings" not in names:
        return
    orig = screen.refresh_bindings

    def refresh_bindings() -> None:
        message = getattr(screen, "_bench_current_changed", None)
        if message is not None:
            claim = screen.panes["claims"].selected()
            task = screen.panes["board"].selected()
            if claim not in message.claims and task not in message.tasks:
                return
        orig()

    screen.refresh_bindings = refresh_bindings


def apply_after_mount(names: set[str], screen: Any) -> None:
    if "gc" in names:
        gc.collect()
        gc.freeze()
    if "flush" in names and screen.bridge is not None:
        from marrow_tui.ui import bridge as bridge_mod

        bridge = screen.bridge
        orig_feed = bridge.feed
        cost = screen._bench_changed_cost  # set by the instruments: last Changed handler time

        def feed(events: Any) -> None:
            was = bridge._scheduled
            bridge._scheduled = True  # the original feed must not schedule its own flush
            try:
                orig_feed(events)
            finally:
                bridge._scheduled = was
            if not was and not bridge._pending.empty():
                bridge._scheduled = True
                delay = max(1 / bridge_mod.FLUSH_HZ, 3 * cost[0])
                asyncio.get_running_loop().call_later(delay, bridge.flush)

        listeners = bridge.runtime._listeners
        for i, listener in enumerate(listeners):
            if getattr(listener, "__self__", None) is bridge:
                listeners[i] = feed

        def unsubscribe() -> None:
            if feed in listeners:
                listeners.remove(feed)

        bridge._unsubscribe = unsubscribe


def parse(spec: str | None) -> set[str]:
    names = {p.strip() for p in (spec or "").split(",") if p.strip()}
    if "all" in names:
        names = set(PATCHES)
    unknown = names - set(PATCHES)
    if unknown:
        raise SystemExit(f"unknown patch(es) {sorted(unknown)}; choose from {PATCHES} or all")
    return names
