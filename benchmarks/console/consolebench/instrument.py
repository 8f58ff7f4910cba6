"""Instruments for the console process: what the event loop does, what the screen shows, and when.

Everything here observes; nothing changes what marrow-tui or Textual decide. The hooks are
installed in this benchmark process only (no file of marrow_tui or Textual is touched):

* ``CallbackClock`` wraps ``asyncio.Handle._run``: every callback the loop runs is timed, so the
  loop's busy fraction and its longest stalls (with what ran) are known exactly.
* ``DispatchClock`` wraps ``MessagePump._dispatch_message``: time per (widget class, message class).
* ``LoopLag`` is a 5 ms timer that records how late it fires: the stall a key press would see.
* ``ScreenProbe`` is called from the app's ``_display`` (one call per compositor update of the
  screen): counts screen updates, renders each update to terminal bytes the way the Linux driver
  would (headless Textual skips that step), and resolves pending row and key measurements.
* ``RowLatency`` follows stamped frames: ``runtime.handle`` (frame parsed) -> change feed (commit)
  -> ``KeyedTable.sync`` touching the row -> the first screen update that repaints that table.
* ``KeyProbe`` presses a key through Pilot and records when its effect is first on screen.

All times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared with the load process on Linux).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from textual import events
from textual._compositor import CompositorUpdate
from textual.message_pump import MessagePump
from textual.screen import Screen

now = time.monotonic


async def wait_until(cond: Any, timeout: float, step: float = 0.01) -> bool:
    """Poll `cond` every `step` seconds until it holds or `timeout` passes; whether it held."""
    deadline = now() + timeout
    while now() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())
perf = time.perf_counter

#: which table a stamped frame's row is in, by frame type
TABLE_OF_FRAME = {"task_update": "claims", "checkpoint": "claims", "claim": "claims",
                  "release": "claims", "ledger_progress": "board"}
#: which table an event's task_id names a row of, by event kind
CLAIM_EVENT_KINDS = frozenset({"claim", "release", "expire", "task_update", "checkpoint",
                               "handoff", "extend"})


def pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (same rule as hubbench.stats)."""
    if not sorted_values:
        return None
    import math

    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms_summary(seconds: Iterable[float]) -> dict[str, float | int | None]:
    vals = sorted(seconds)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 2)

    return {"n": len(vals), "p50": ms(pct(vals, 50)), "p90": ms(pct(vals, 90)),
            "p99": ms(pct(vals, 99)), "max": ms(vals[-1] if vals else None)}


# --------------------------------------------------------------------------- the event loop


class CallbackClock:
    """Times every callback the event loop runs (task steps, timers, I/O callbacks)."""

    LONG = 0.020  # callbacks longer than this are kept with a description

    def __init__(self) -> None:
        self.busy = 0.0
        self.count = 0
        self.by_category: dict[str, float] = {}
        self.long: list[dict[str, Any]] = []
        self._orig: Callable[..., Any] | None = None
        #: messages dispatched inside the callback being run (for describing long ones)
        self.current: list[tuple[str, float]] = []

    def install(self) -> None:
        handle_cls = asyncio.events.Handle
        orig = handle_cls._run
        self._orig = orig
        clock = self

        def _run(handle: asyncio.Handle) -> None:
            clock.current = []
            t0 = perf()
            try:
                orig(handle)
            finally:
                dt = perf() - t0
                clock.busy += dt
                clock.count += 1
                cat = category(handle)
                by_cat = clock.by_category
                by_cat[cat] = by_cat.get(cat, 0.0) + dt
                if dt > clock.LONG and len(clock.long) < 2000:
                    clock.long.append({"t": now(), "ms": round(dt * 1000, 2),
                                       "what": describe_handle(handle),
                                       "messages": top_messages(clock.current)})

        handle_cls._run = _run  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._orig is not None:
            asyncio.events.Handle._run = self._orig  # type: ignore[method-assign]
            self._orig = None

    def snapshot(self) -> tuple[float, int, int]:
        return self.busy, self.count, len(self.long)

    def categories(self) -> dict[str, float]:
        return dict(self.by_category)

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float], wall: float,
              top: int = 10) -> list[dict[str, Any]]:
        rows = [{"callback": k, "ms_per_s": round((v - a.get(k, 0.0)) * 1000 / wall, 2)}
                for k, v in b.items()]
        rows = [r for r in rows if r["ms_per_s"] > 0]
        rows.sort(key=lambda r: -r["ms_per_s"])
        return rows[:top]


def category(handle: asyncio.Handle) -> str:
    """A cheap label for a callback: the coroutine of a task step, or the function's name."""
    cb = getattr(handle, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return "task " + getattr(owner.get_coro(), "__qualname__", "?")
    name = getattr(cb, "__qualname__", None)
    if name is None:
        inner = getattr(cb, "func", None)  # functools.partial
        name = getattr(inner, "__qualname__", type(cb).__name__)
    return name


def describe_handle(handle: asyncio.Handle) -> str:
    cb = getattr(handle, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        frame = getattr(coro, "cr_frame", None)
        self_obj = frame.f_locals.get("self") if frame is not None else None
        where = f" of {type(self_obj).__name__}" if self_obj is not None else ""
        timer_cb = getattr(self_obj, "_callback", None)  # a Textual Timer: say what it calls
        if timer_cb is not None:
            where += f" -> {getattr(timer_cb, '__qualname__', repr(timer_cb))[:80]}"
        return f"task {name}{where}"
    return getattr(cb, "__qualname__", repr(cb))[:120]


def top_messages(items: list[tuple[str, float]], n: int = 4) -> list[str]:
    totals: dict[str, list[float]] = {}
    for name, dt in items:
        entry = totals.setdefault(name, [0.0, 0])
        entry[0] += dt
        entry[1] += 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])[:n]
    return [f"{name} x{int(c)} {t * 1000:.1f} ms" for name, (t, c) in ranked]


class DispatchClock:
    """Time spent handling each kind of message, by the class of the widget that handled it.

    Times are inclusive (a handler that awaits counts what ran meanwhile); Textual's handlers
    here are synchronous, so in practice this is the handler's own time.
    """

    def __init__(self, callbacks: CallbackClock) -> None:
        self.callbacks = callbacks
        self.stats: dict[str, list[float]] = {}  # "Pump.Message" -> [total_s, count, max_s]
        self.on_dispatch: list[Callable[[MessagePump, Any, float, float], None]] = []
        self._orig: Any = None

    def install(self) -> None:
        orig = MessagePump._dispatch_message
        self._orig = orig
        clock = self

        async def _dispatch_message(pump: MessagePump, message: Any) -> None:
            t0 = perf()
            try:
                await orig(pump, message)
            finally:
                dt = perf() - t0
                key = f"{type(pump).__name__}.{type(message).__name__}"
                entry = clock.stats.get(key)
                if entry is None:
                    clock.stats[key] = [dt, 1, dt]
                else:
                    entry[0] += dt
                    entry[1] += 1
                    if dt > entry[2]:
                        entry[2] = dt
                clock.callbacks.current.append((key, dt))
                for hook in clock.on_dispatch:
                    hook(pump, message, t0, dt)

        MessagePump._dispatch_message = _dispatch_message  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._orig is not None:
            MessagePump._dispatch_message = self._orig  # type: ignore[method-assign]
            self._orig = None

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {k: (v[0], int(v[1])) for k, v in self.stats.items()}

    @staticmethod
    def delta(a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]],
              wall: float, top: int = 12) -> list[dict[str, Any]]:
        rows = []
        for key, (total, count) in b.items():
            t0, c0 = a.get(key, (0.0, 0))
            if count - c0 <= 0:
                continue
            rows.append({"handler": key, "ms_per_s": round((total - t0) * 1000 / wall, 2),
                         "per_s": round((count - c0) / wall, 1),
                         "avg_ms": round((total - t0) * 1000 / (count - c0), 3)})
        rows.sort(key=lambda r: -r["ms_per_s"])
        return rows[:top]


class SectionClock:
    """Times chosen synchronous calls (wrapped on the instance, so only this process sees it)."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}

    def wrap(self, obj: Any, attr: str, label: str) -> None:
        orig = getattr(obj, attr, None)
        if orig is None:  # renamed in the code under test: skip, and say so in the output
            self.stats.setdefault(f"(missing) {label}", [0.0, 0, 0.0])
            return
        entry = self.stats.setdefault(label, [0.0, 0, 0.0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                return orig(*args, **kwargs)
            finally:
                dt = perf() - t0
                entry[0] += dt
                entry[1] += 1
                if dt > entry[2]:
                    entry[2] = dt

        setattr(obj, attr, timed)

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {k: (v[0], int(v[1])) for k, v in self.stats.items()}

    def delta(self, a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]],
              wall: float) -> list[dict[str, Any]]:
        rows = DispatchClock.delta(a, b, wall, top=50)
        for row in rows:
            row["section"] = row.pop("handler")
            row["max_ms_ever"] = round(self.stats[row["section"]][2] * 1000, 2)
        return rows


class IdleClock:
    """Idle handlers run outside ``_dispatch_message`` (DataTable measures new rows and column
    widths there), so they are timed separately, by the class that defines the handler."""

    def __init__(self, sections: SectionClock, callbacks: CallbackClock) -> None:
        self.sections = sections
        self.callbacks = callbacks
        self._patched: list[tuple[type, Any]] = []

    def install(self) -> None:
        from textual.widget import Widget
        from textual.widgets import DataTable, RichLog

        for cls in (DataTable, RichLog, Screen, Widget):
            orig = cls.__dict__.get("_on_idle")
            if orig is None:
                continue
            self._patched.append((cls, orig))
            label = f"textual: {cls.__name__}._on_idle"
            entry = self.sections.stats.setdefault(label, [0.0, 0, 0.0])
            callbacks = self.callbacks

            def make(orig: Any, entry: list[float], label: str) -> Any:
                async def _on_idle(widget: Any, event: Any) -> None:
                    t0 = perf()
                    try:
                        await orig(widget, event)
                    finally:
                        dt = perf() - t0
                        entry[0] += dt
                        entry[1] += 1
                        if dt > entry[2]:
                            entry[2] = dt
                        callbacks.current.append((f"{type(widget).__name__}._on_idle", dt))

                return _on_idle

            setattr(cls, "_on_idle", make(orig, entry, label))

    def uninstall(self) -> None:
        for cls, orig in self._patched:
            setattr(cls, "_on_idle", orig)
        self._patched = []


class LayoutFlag:
    """Marks screen updates that come from a full layout refresh (everything repainted), and
    times compositor work (layout reflow + render of dirty regions)."""

    def __init__(self) -> None:
        self.depth = 0
        self.layout_s = 0.0
        self.layouts = 0
        self.compositor_s = 0.0
        self._orig: Any = None
        self._orig_refresh: Any = None

    def install(self) -> None:
        orig = Screen._refresh_layout
        self._orig = orig
        flag = self

        def _refresh_layout(screen: Screen[Any], size: Any = None, scroll: bool = False) -> None:
            flag.depth += 1
            t0 = perf()
            try:
                orig(screen, size, scroll)
            finally:
                flag.depth -= 1
                flag.layout_s += perf() - t0
                flag.layouts += 1

        Screen._refresh_layout = _refresh_layout  # type: ignore[method-assign]

        orig_refresh = Screen._compositor_refresh
        self._orig_refresh = orig_refresh

        def _compositor_refresh(screen: Screen[Any]) -> None:
            t0 = perf()
            try:
                orig_refresh(screen)
            finally:
                flag.compositor_s += perf() - t0

        Screen._compositor_refresh = _compositor_refresh  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._orig is not None:
            Screen._refresh_layout = self._orig  # type: ignore[method-assign]
            Screen._compositor_refresh = self._orig_refresh  # type: ignore[method-assign]
            self._orig = None


class LayoutRequests:
    """Who asks for a layout: ``Widget.refresh(layout=True)`` calls by widget class (a reactive
    declared with ``layout=True``, such as ``virtual_size``, goes through the same call)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._orig: Any = None

    def install(self) -> None:
        from textual.widget import Widget

        orig = Widget.refresh
        self._orig = orig
        counts = self.counts

        def refresh(widget: Any, *regions: Any, **kwargs: Any) -> Any:
            if kwargs.get("layout"):
                name = type(widget).__name__
                wid = getattr(widget, "id", None)
                key = f"{name}#{wid}" if wid else name
                counts[key] = counts.get(key, 0) + 1
            return orig(widget, *regions, **kwargs)

        Widget.refresh = refresh  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._orig is not None:
            from textual.widget import Widget

            Widget.refresh = self._orig  # type: ignore[method-assign]
            self._orig = None

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    @staticmethod
    def delta(a: dict[str, int], b: dict[str, int], wall: float) -> dict[str, float]:
        rows = {k: round((v - a.get(k, 0)) / wall, 1) for k, v in b.items()}
        return dict(sorted(((k, v) for k, v in rows.items() if v > 0), key=lambda kv: -kv[1]))


class GcPauses:
    """Garbage-collector pauses (they stop the event loop like any long callback)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (time, generation, seconds)
        self._t0 = 0.0

    def install(self) -> None:
        import gc

        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        import gc

        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = perf()
        elif len(self.pauses) < 100_000:
            self.pauses.append((now(), int(info.get("generation", -1)), perf() - self._t0))

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        ps = [p for p in self.pauses if t0 <= p[0] <= t1]
        wall = max(t1 - t0, 1e-9)
        out: dict[str, Any] = {"ms_per_s": round(sum(p[2] for p in ps) * 1000 / wall, 2)}
        for gen in (0, 1, 2):
            g = [p[2] for p in ps if p[1] == gen]
            out[f"gen{gen}"] = {"count": len(g),
                                "max_ms": round(max(g) * 1000, 2) if g else None}
        return out


class LoopLag:
    """A timer every ``interval`` s; how late it fires is how long the loop was busy elsewhere."""

    def __init__(self, interval: float = 0.005, max_samples: int = 200_000) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time, lateness s)
        self.max_samples = max_samples
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        t = loop.time()
        if len(self.samples) < self.max_samples:
            self.samples.append((t, max(0.0, t - self._due)))
        self._due = t + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        vals = sorted(lag for t, lag in self.samples if t0 <= t <= t1)
        summary = ms_summary(vals)
        summary["over_50ms"] = sum(1 for v in vals if v > 0.050)
        summary["over_100ms"] = sum(1 for v in vals if v > 0.100)
        return summary


# --------------------------------------------------------------------------- the screen


class ScreenProbe:
    """Counts the main screen's updates and renders them to terminal bytes like a real driver."""

    def __init__(self, width: int, height: int, layout: LayoutFlag) -> None:
        self.layout = layout
        self.main: Screen[Any] | None = None
        self.updates = 0
        self.layout_updates = 0
        self.other_updates = 0
        self.bytes = 0
        self.render_s = 0.0
        self.first_update_at: float | None = None
        #: called once, at the main screen's first update
        self.on_first: Callable[[], None] | None = None
        self.listeners: list[Callable[[Screen[Any], bool, set[Any], float], None]] = []
        # The real driver renders against a terminal console; use a truecolor one.
        self.console = Console(file=io.StringIO(), color_system="truecolor", force_terminal=True,
                               width=width, height=height, legacy_windows=False,
                               markup=False, highlight=False, emoji=False)

    def on_display(self, screen: Screen[Any], renderable: Any) -> None:
        if renderable is None:
            return
        t = now()
        if screen is not self.main:
            self.other_updates += 1
            return
        self.updates += 1
        if self.first_update_at is None:
            self.first_update_at = t
            if self.on_first is not None:
                self.on_first()
        full = self.layout.depth > 0
        if full:
            self.layout_updates += 1
        if isinstance(renderable, CompositorUpdate):
            t0 = perf()
            self.bytes += len(renderable.render_segments(self.console).encode())
            self.render_s += perf() - t0
        dirty = set(screen._dirty_widgets)
        for listener in self.listeners:
            listener(screen, full, dirty, t)

    def snapshot(self) -> dict[str, float]:
        return {"updates": self.updates, "layout_updates": self.layout_updates,
                "bytes": self.bytes, "render_s": self.render_s,
                "other_updates": self.other_updates}


class RowLatency:
    """Follows stamped frames (``bench_t``) from the agent's send to the row on screen."""

    def __init__(self) -> None:
        # (table, key) -> records; a record is [kind, t_send, t_handle, t_commit, t_sync, t_screen,
        # source]
        self.pending: dict[tuple[str, str], list[list[Any]]] = {}
        self.synced: dict[str, list[list[Any]]] = {}
        self.done: list[list[Any]] = []
        self.tables: dict[str, Any] = {}
        self.screen: Any = None
        self.in_changed = False
        self.handled = 0

    def wrap_runtime(self, runtime: Any) -> None:
        orig = runtime.handle
        pending = self.pending

        def handle(sender: str, frame: dict[str, Any], reply: Any,
                   operator: bool = False, **more: Any) -> None:
            stamp = frame.get("bench_t")
            if stamp is not None:
                kind = frame.get("type")
                table = TABLE_OF_FRAME.get(kind)  # type: ignore[arg-type]
                key = frame.get("task_id")
                if table is not None and isinstance(key, str):
                    self.handled += 1
                    pending.setdefault((table, key), []).append(
                        [kind, float(stamp), now(), None, None, None, None])
            orig(sender, frame, reply, operator, **more)  # `proven` and whatever comes next

        runtime.handle = handle
        runtime.subscribe(self._committed)

    def _committed(self, batch: list[Any]) -> None:
        if not self.pending:
            return
        t = now()
        for event in batch:
            kind = event.kind
            if kind in CLAIM_EVENT_KINDS:
                key = ("claims", event.data.get("task_id"))
            elif kind == "progress":
                key = ("board", event.data.get("task_id"))
            else:
                continue
            for rec in self.pending.get(key, ()):
                if rec[3] is None:
                    rec[3] = t

    def wrap_table(self, name: str, table: Any) -> None:
        self.tables[name] = table
        self.synced[name] = []
        orig = table.sync
        pending = self.pending
        synced = self.synced[name]

        def sync(keys: Iterable[str]) -> None:
            keys = list(keys)
            orig(keys)
            if not pending:
                return
            t = now()
            source = "changed" if self.in_changed else "other"
            for key in keys:
                recs = pending.pop((name, key), None)
                if recs:
                    for rec in recs:
                        rec[4] = t
                        rec[6] = source
                    synced.extend(recs)

        table.sync = sync

    def on_display(self, screen: Any, full: bool, dirty: set[Any], t: float) -> None:
        for name, recs in self.synced.items():
            if not recs:
                continue
            table = self.tables[name]
            visible = getattr(screen, "pane", None) == name or screen.has_class("wide")
            if visible and not (full or table in dirty or screen in dirty):
                continue  # this update does not repaint the table yet
            for rec in recs:
                if visible:
                    rec[5] = t
                # a tuple of atoms is untracked by the garbage collector: no gen-2 cost
                self.done.append(tuple(rec))
            recs.clear()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Records whose frame was sent in [t0, t1]."""
        recs = [r for r in self.done if t0 <= r[1] <= t1]
        unresolved = sum(1 for rs in self.pending.values() for r in rs if t0 <= r[1] <= t1)
        unresolved += sum(1 for rs in self.synced.values() for r in rs if t0 <= r[1] <= t1)
        by_table: dict[str, Any] = {}
        for table in ("claims", "board"):
            rs = [r for r in recs if TABLE_OF_FRAME[r[0]] == table]
            shown = [r for r in rs if r[5] is not None]
            by_table[table] = {
                "send_to_row": ms_summary(r[4] - r[1] for r in rs),
                "send_to_screen": ms_summary(r[5] - r[1] for r in shown),
            }
        shown = [r for r in recs if r[5] is not None and r[3] is not None]
        breakdown = {
            "send_to_handle": ms_summary(r[2] - r[1] for r in recs),
            "handle_to_commit": ms_summary(r[3] - r[2] for r in recs if r[3] is not None),
            "commit_to_row": ms_summary(r[4] - r[3] for r in recs if r[3] is not None),
            "row_to_screen": ms_summary(r[5] - r[4] for r in shown),
        }
        sources: dict[str, int] = {}
        for r in recs:
            sources[r[6]] = sources.get(r[6], 0) + 1
        unresolved_by_table = {
            table: sum(1 for (tb, _), rs in self.pending.items() if tb == table
                       for r in rs if t0 <= r[1] <= t1)
            + sum(1 for r in self.synced.get(table, ()) if t0 <= r[1] <= t1)
            for table in ("claims", "board")}
        return {"records": len(recs), "unresolved": unresolved,
                "unresolved_by_table": unresolved_by_table, "by_source": sources,
                "send_to_row": ms_summary(r[4] - r[1] for r in recs),
                "send_to_screen": ms_summary(r[5] - r[1] for r in recs if r[5] is not None),
                "by_table": by_table, "breakdown": breakdown}


class KeyProbe:
    """Presses a key through Pilot; its latency ends at the first screen update showing its effect.

    The effect is a change of (pane, the widget the key acts on, cursor row, scroll offset), all
    of which the keys used here change; the update must repaint that widget (or be a full
    layout).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending: dict[str, Any] | None = None
        self.records: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Future[None]] = []

    def target(self) -> Any:
        """The widget a key acts on: the shown pane's (the console's panes never take focus,
        the screen drives them), else the focused widget."""
        screen = self.app.screen
        pane = getattr(screen, "pane", None)
        tables = getattr(screen, "tables", None) or {}
        if pane in tables:
            return tables[pane]
        if pane == "activity" and getattr(screen, "activity", None) is not None:
            return screen.activity
        return self.app.focused

    def signature(self) -> tuple[Any, ...]:
        screen = self.app.screen
        target = self.target()
        return (getattr(screen, "pane", None), id(target), getattr(target, "cursor_row", None),
                getattr(target, "scroll_y", None), id(screen))

    def on_display(self, screen: Any, full: bool, dirty: set[Any], t: float) -> None:
        rec = self.pending
        if rec is None:
            return
        if self.signature() == rec["sig0"]:
            return
        target = self.target()
        if full or target in dirty or screen in dirty:
            rec["t_screen"] = t
            rec["event"].set()
            self.pending = None

    def on_dispatch(self, pump: Any, message: Any, t0: float, dt: float) -> None:
        rec = self.pending
        if rec is not None and pump is self.app and isinstance(message, events.Key) \
                and "t_dispatch" not in rec:
            rec["t_dispatch"] = now() - dt  # dispatch start on the monotonic clock
            rec["dispatch_ms"] = round(dt * 1000, 3)

    async def press(self, pilot: Any, key: str, timeout: float = 5.0) -> dict[str, Any]:
        rec: dict[str, Any] = {"key": key, "sig0": self.signature(), "event": asyncio.Event()}
        self.pending = rec
        t0 = rec["t0"] = now()
        # Pilot.press sends the key at once, then waits for the whole app to be idle (with
        # wait_for_idle's CPU polling, up to ~1 s twice on a busy process). That is the test
        # harness's wait, not the console's latency: the next key does not wait for it.
        task = asyncio.ensure_future(pilot.press(key))
        self.tasks.append(task)
        out: dict[str, Any] = {"key": key, "at": t0, "pilot_ms": None}

        def pressed(_: asyncio.Future[None]) -> None:
            out["pilot_ms"] = round((now() - t0) * 1000, 3)

        task.add_done_callback(pressed)
        try:
            await asyncio.wait_for(rec["event"].wait(), timeout)
        except TimeoutError:
            pass
        self.pending = None
        out.update({
            "ms": round((rec["t_screen"] - t0) * 1000, 3) if "t_screen" in rec else None,
            "queue_ms": round((rec["t_dispatch"] - t0) * 1000, 3) if "t_dispatch" in rec
            else None,
            "handler_ms": rec.get("dispatch_ms"),
            "timeout": "t_screen" not in rec,
        })
        self.records.append(out)
        return out

    async def drain(self, timeout: float = 10.0) -> None:
        """Let Pilot's outstanding presses finish (bounded)."""
        tasks = [t for t in self.tasks if not t.done()]
        self.tasks = []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()


def key_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r["ms"] / 1000 for r in records if r["ms"] is not None]
    out = ms_summary(ok)
    out["timeouts"] = sum(1 for r in records if r["timeout"])
    out["queue_ms"] = ms_summary(r["queue_ms"] / 1000 for r in records if r["queue_ms"] is not None)
    out["pilot_press_ms"] = ms_summary(r["pilot_ms"] / 1000 for r in records
                                       if r["pilot_ms"] is not None)
    slow = sorted((r for r in records if r["ms"] is not None), key=lambda r: -r["ms"])[:3]
    out["slowest"] = [{"key": r["key"], "ms": r["ms"], "queue_ms": r["queue_ms"]} for r in slow]
    return out
