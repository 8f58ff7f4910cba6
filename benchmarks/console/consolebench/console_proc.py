"""The console process: marrow-tui's runtime + hub + console in one event loop, instrumented.

One scenario per process (fresh state directory each time), as the runner starts it::

    python -m consolebench.console_proc --scenario load --json out.json --work DIR [...]
    python -m consolebench.console_proc --scenario claims10k --json out.json --work DIR [...]

It is built the way ``marrow_tui.ui.app.run_console`` builds it (runtime started, hub listening,
then the app in the same loop, logs to a file), except that the app runs through
``App.run_test(headless=True, size=(120, 40))`` so Pilot can press keys.

``load``: the agents are a separate process (``consolebench.loadgen``) started here so its PID is
known: connect + setup, then keys with the agents connected but quiet (baseline), then GO, a
warm-up, a steady window (no keys: screen updates, event -> row latency, CPU), and a key window
(keys under load). ``claims10k``: 10,000 claims seeded through ``runtime.handle`` (100 agents x
100, the default per-agent quota holds them), then the console opens: keys from the first moment,
the fill, the longest loop stall, then paging through the table.

Every wait is bounded; the result is one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import textual

from textual.pilot import Pilot

from hubbench.procinfo import CpuSample, proc_rss_kib, window_load
from marrow_tui.hub.server import HubOptions, HubServer
from marrow_tui.runtime import Runtime, RuntimeOptions
from marrow_tui.ui import bridge as bridge_mod
from marrow_tui.ui.app import MarrowApp
from marrow_tui.ui.bridge import Changed
from marrow_tui.ui.screens.main import MainScreen

from . import patches as patch_mod
from .instrument import (
    CallbackClock,
    DispatchClock,
    KeyProbe,
    GcPauses,
    IdleClock,
    LayoutFlag,
    LayoutRequests,
    LoopLag,
    RowLatency,
    ScreenProbe,
    SectionClock,
    key_summary,
    now,
    wait_until,
)

SIZE = (120, 40)
#: keys under load: pane switches and cursor moves, ordered so every key changes something
LOAD_KEYS = ("1", "down", "down", "2", "down", "down", "up", "3", "down", "4", "2", "pagedown",
             "down", "up", "pageup")
#: keys while 10,000 rows are being filled (pane switches work before the first row exists)
FILL_KEYS = ("1", "2", "down", "down")
#: paging through the filled table
SCROLL_KEYS = ("pagedown",) * 20 + ("down",) * 10 + ("ctrl+end", "up", "ctrl+home")


class Instruments:
    def __init__(self) -> None:
        self.callbacks = CallbackClock()
        self.dispatch = DispatchClock(self.callbacks)
        self.layout = LayoutFlag()
        self.screen = ScreenProbe(SIZE[0], SIZE[1], self.layout)
        self.rows = RowLatency()
        self.lag = LoopLag()
        self.sections = SectionClock()
        self.layout_requests = LayoutRequests()
        self.gc = GcPauses()
        self.idle = IdleClock(self.sections, self.callbacks)
        self.changed = [0, 0.0, 0.0]  # count, total s, max s
        self.changed_cost = [0.0]  # the last Changed handler's time (for the flush patch)
        self.dispatch.on_dispatch.append(self._on_dispatch)

    def install(self, lean: bool = False) -> None:
        """`lean` keeps only what the measurements need (screen, rows, keys, loop lag, the
        layout flag): to measure what the attribution instruments cost."""
        self.layout.install()
        self.gc.install()
        if lean:
            self.sections.wrap = lambda *a, **k: None  # type: ignore[method-assign]
            return
        self.callbacks.install()
        self.dispatch.install()
        self.layout_requests.install()
        self.idle.install()

    def uninstall(self) -> None:
        self.gc.uninstall()
        self.idle.uninstall()
        self.layout_requests.uninstall()
        self.dispatch.uninstall()
        self.layout.uninstall()
        self.callbacks.uninstall()

    def watch_runtime(self, runtime: Runtime, server: HubServer) -> None:
        """Follow stamped frames, and time the hub's side of the loop."""
        self.rows.wrap_runtime(runtime)
        sections = self.sections
        sections.wrap(runtime, "handle", "hub: runtime.handle (decide + log append)")
        sections.wrap(runtime, "_release", "hub: release after commit (fan-out + change feed)")
        sections.wrap(server, "_write", "hub: fan-out (frame queued per socket)")
        sections.wrap(server, "flush", "hub: socket writes after a commit")

    def _on_dispatch(self, pump: Any, message: Any, t0: float, dt: float) -> None:
        if isinstance(message, Changed) and isinstance(pump, MainScreen):
            self.rows.in_changed = False
            c = self.changed
            self.changed_cost[0] = dt
            c[0] += 1
            c[1] += dt
            if dt > c[2]:
                c[2] = dt


class BenchApp(MarrowApp):
    """marrow-tui's app with observation hooks; its behaviour is unchanged."""

    def __init__(self, runtime: Runtime, inst: Instruments, patches: set[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(runtime, **kwargs)
        self.inst = inst
        self.patches = patches or set()
        self.key_probe = KeyProbe(self)
        self.main_mounted_at: float | None = None
        self.fill_times: dict[str, list[float]] = {}
        inst.dispatch.on_dispatch.append(self.key_probe.on_dispatch)
        inst.screen.listeners.append(inst.rows.on_display)
        inst.screen.listeners.append(self.key_probe.on_display)

    def _display(self, screen: Any, renderable: Any) -> None:
        self.inst.screen.on_display(screen, renderable)
        super()._display(screen, renderable)

    def push_screen(self, screen: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(screen, MainScreen):
            self._instrument(screen)
        return super().push_screen(screen, *args, **kwargs)

    def _instrument(self, screen: MainScreen) -> None:
        inst = self.inst
        inst.screen.main = screen
        inst.rows.screen = screen
        for name, table in screen.tables.items():
            inst.rows.wrap_table(name, table)
            inst.sections.wrap(table, "sync", f"console: {name} table sync")
            self._wrap_fill(name, table)
        inst.sections.wrap(screen.activity, "add", "console: activity log add")
        inst.sections.wrap(screen, "_refresh_status", "console: status line")
        inst.sections.wrap(screen, "refresh_bindings", "console: refresh_bindings (footer)")
        screen._bench_changed_cost = inst.changed_cost  # type: ignore[attr-defined]
        if self.patches:
            patch_mod.apply_screen_patches(self.patches, screen)

            async def after_mount() -> None:
                await wait_until(lambda: screen.bridge is not None, 10)
                patch_mod.apply_after_mount(self.patches, screen)

            self.call_later(lambda: asyncio.ensure_future(after_mount()))
        # Mark syncs made while a Changed message is handled (vs the 1 s tick).
        orig_dispatch = screen._dispatch_message

        async def dispatch(message: Any) -> None:
            if isinstance(message, Changed):
                inst.rows.in_changed = True
                screen._bench_current_changed = message  # type: ignore[attr-defined]
                try:
                    await orig_dispatch(message)
                finally:
                    screen._bench_current_changed = None  # type: ignore[attr-defined]
                return
            await orig_dispatch(message)

        screen._dispatch_message = dispatch  # type: ignore[method-assign]

    def _wrap_fill(self, name: str, table: Any) -> None:
        orig = table.fill
        times = self.fill_times.setdefault(name, [])

        async def fill() -> None:
            times.append(now())
            await orig()
            times.append(now())

        table.fill = fill


# --------------------------------------------------------------------------- helpers


class Window:
    """Counters at the start and end of a measured window."""

    def __init__(self, app: BenchApp, pids: dict[str, int | str]) -> None:
        self.app = app
        self.pids = pids

    def take(self) -> dict[str, Any]:
        inst = self.app.inst
        main = self.app.main
        bridge = main.bridge if main is not None else None
        return {
            "t": now(),
            "cpu": CpuSample.take(self.pids),
            "flushes": bridge.flushes if bridge else 0,
            "events_seen": bridge.events_seen if bridge else 0,
            "changed": list(inst.changed),
            "screen": inst.screen.snapshot(),
            "busy": inst.callbacks.snapshot(),
            "dispatch": inst.dispatch.snapshot(),
            "sections": inst.sections.snapshot(),
            "categories": inst.callbacks.categories(),
            "layout_s": inst.layout.layout_s,
            "layout_requests": inst.layout_requests.snapshot(),
            "compositor_s": inst.layout.compositor_s,
        }

    def result(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        inst = self.app.inst
        wall = b["t"] - a["t"]
        changed = b["changed"][0] - a["changed"][0]
        sa, sb = a["screen"], b["screen"]
        return {
            "t0": a["t"],
            "t1": b["t"],
            "wall_s": round(wall, 3),
            "load": window_load(a["cpu"], b["cpu"]),
            "events_per_s": round((b["events_seen"] - a["events_seen"]) / wall, 1),
            "bridge_flushes_per_s": round((b["flushes"] - a["flushes"]) / wall, 2),
            "changed_handled_per_s": round(changed / wall, 2),
            "changed_handler_ms_avg": round((b["changed"][1] - a["changed"][1]) * 1000
                                            / max(changed, 1), 3),
            "changed_handler_ms_max": round(b["changed"][2] * 1000, 3),
            "screen_updates_per_s": round((sb["updates"] - sa["updates"]) / wall, 2),
            "layout_updates_per_s": round((sb["layout_updates"] - sa["layout_updates"]) / wall, 2),
            "modal_or_toast_updates_per_s": round((sb["other_updates"] - sa["other_updates"])
                                                  / wall, 2),
            "terminal_bytes_per_s": round((sb["bytes"] - sa["bytes"]) / wall, 0),
            "terminal_render_ms_per_s": round((sb["render_s"] - sa["render_s"]) * 1000 / wall, 2),
            "loop_busy_fraction": round((b["busy"][0] - a["busy"][0]) / wall, 3),
            "loop_callbacks_per_s": round((b["busy"][1] - a["busy"][1]) / wall, 0),
            "layout_ms_per_s": round((b["layout_s"] - a["layout_s"]) * 1000 / wall, 2),
            "compositor_ms_per_s": round((b["compositor_s"] - a["compositor_s"]) * 1000 / wall,
                                         2),
            "lag": inst.lag.window(a["t"], b["t"]),
            "gc": inst.gc.window(a["t"], b["t"]),
            "layout_requests_per_s": LayoutRequests.delta(a["layout_requests"],
                                                          b["layout_requests"], wall),
            "long_callbacks": sorted((c for c in inst.callbacks.long if a["t"] <= c["t"] <= b["t"]),
                                     key=lambda c: -c["ms"])[:5],
            "handlers": DispatchClock.delta(a["dispatch"], b["dispatch"], wall),
            "sections": inst.sections.delta(a["sections"], b["sections"], wall),
            "callbacks": CallbackClock.delta(a["categories"], b["categories"], wall),
        }


async def key_phase(app: BenchApp, pilot: Any, keys: tuple[str, ...], count: int,
                    interval: float, max_s: float) -> list[dict[str, Any]]:
    """Press `count` keys, one every `interval` s (a fast typist), bounded by `max_s`."""
    out = []
    deadline = now() + max_s
    for i in range(count):
        if now() >= deadline:
            break
        t0 = now()
        out.append(await app.key_probe.press(pilot, keys[i % len(keys)]))
        rest = interval - (now() - t0)
        if rest > 0:
            await asyncio.sleep(rest)
    return out


def start_runtime_logging(work: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(work / "marrow-tui.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


async def start_stack(state_dir: Path, max_claims: int) -> tuple[Runtime, HubServer]:
    runtime = Runtime(RuntimeOptions(state_dir=state_dir, max_claims_per_agent=max_claims))
    await runtime.start()
    server = HubServer(runtime, HubOptions(host="127.0.0.1", port=0))
    try:
        await server.start()
    except BaseException:
        await runtime.stop()
        raise
    return runtime, server


# --------------------------------------------------------------------------- scenarios


async def scenario_load(args: argparse.Namespace, inst: Instruments,
                        out: dict[str, Any]) -> None:
    runtime, server = await start_stack(args.work / "state", 128)
    inst.watch_runtime(runtime, server)
    app = BenchApp(runtime, inst, args.patches, hub_uri=server.uri,
                   operator="operator/bench")
    driver: asyncio.subprocess.Process | None = None
    driver_log = open(args.work / "loadgen.stderr", "wb")  # noqa: SIM115 - closed in finally
    try:
        async with app.run_test(headless=True, size=SIZE, notifications=True) as pilot:
            inst.lag.start()
            ok = await wait_until(lambda: app.main is not None
                                  and all(len(t) >= 2 for t in app.fill_times.values())
                                  and len(app.fill_times) == 3, 20)
            out["console_ready"] = ok
            env = dict(os.environ)
            driver = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "consolebench.loadgen", "--uri", server.uri,
                "--agents", str(args.agents), "--rate", str(args.rate),
                "--max-seconds", str(args.max_seconds),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=driver_log, env=env)
            assert driver.stdin is not None and driver.stdout is not None
            out["driver_pid"] = driver.pid
            line = await read_tagged(driver.stdout, "READY", 60)
            out["driver_ready"] = line
            n = args.agents
            state = runtime.state
            setup_ok = await wait_until(
                lambda: len(server.sessions) >= n and len(state.claims) >= 3 * n
                and len(state.board.tasks) >= n, 30)
            out["setup_ok"] = setup_ok
            out["sessions"] = len(server.sessions)
            await asyncio.sleep(1.0)  # the setup's Changed messages reach the screen
            pids: dict[str, int | str] = {"console": "self", "driver": driver.pid}
            win = Window(app, pids)

            # 1. keys with 100 agents connected and quiet: the baseline
            a = win.take()
            idle_keys = await key_phase(app, pilot, LOAD_KEYS, args.keys, args.key_interval,
                                        args.keys * (args.key_interval + 2))
            b = win.take()
            await app.key_probe.drain()
            out["idle_keys"] = {"window": win.result(a, b), "keys": key_summary(idle_keys),
                                "raw": idle_keys}
            # back to the claims pane for the latency window
            if getattr(app.screen, "pane", None) != "claims":
                await app.key_probe.press(pilot, "2")

            # 2. the load: warm-up, then the steady window without keys
            driver.stdin.write(b"GO\n")
            await driver.stdin.drain()
            t_go = now()
            await asyncio.sleep(args.warmup)
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            a = win.take()
            await asyncio.sleep(args.steady)
            b = win.take()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            steady = win.result(a, b)
            steady["rows"] = inst.rows.window(a["t"], b["t"] - 0.5)
            steady["rss_kib"] = proc_rss_kib("self")
            objs = gc.get_objects()
            steady["gc_tracked_objects"] = len(objs)
            if os.environ.get("CONSOLEBENCH_GC_TYPES"):
                from collections import Counter

                steady["gc_types"] = Counter(type(o).__name__ for o in objs).most_common(15)
            del objs
            steady["gc_counts"] = gc.get_count()
            out["steady"] = steady

            # 3. keys under load
            a = win.take()
            load_keys = await key_phase(app, pilot, LOAD_KEYS, args.keys, args.key_interval,
                                        args.keys * (args.key_interval + 2))
            b = win.take()
            await app.key_probe.drain()
            keys_win = win.result(a, b)
            keys_win["rows"] = inst.rows.window(a["t"], b["t"] - 0.5)
            out["load_keys"] = {"window": keys_win, "keys": key_summary(load_keys),
                                "raw": load_keys}
            out["load_s"] = round(now() - t_go, 2)

            driver.stdin.write(b"STOP\n")
            await driver.stdin.drain()
            result = await read_tagged(driver.stdout, "RESULT", 20)
            out["driver"] = result
            out["claims_at_end"] = len(state.claims)
    finally:
        await server.stop()
        await runtime.stop()
        if driver is not None:
            try:
                await asyncio.wait_for(driver.wait(), 20)
            except TimeoutError:
                driver.kill()  # our own child, by its handle
                await driver.wait()
            out["driver_exit"] = driver.returncode
        driver_log.close()


async def read_tagged(stream: asyncio.StreamReader, tag: str, timeout: float) -> Any:
    deadline = now() + timeout
    while now() < deadline:
        try:
            raw = await asyncio.wait_for(stream.readline(), max(0.01, deadline - now()))
        except TimeoutError:
            break
        if not raw:
            break
        text = raw.decode().strip()
        if text.startswith(tag + " "):
            return json.loads(text[len(tag) + 1:])
    return {"error": f"no {tag} line within {timeout} s"}


async def scenario_claims10k(args: argparse.Namespace, inst: Instruments,
                            out: dict[str, Any]) -> None:
    runtime, server = await start_stack(args.work / "state", 128)
    try:
        t = now()
        decider = runtime.decider
        assert decider is not None
        n_agents = max(1, (args.claims + 99) // 100)
        names = [f"bench/a{i:03d}" for i in range(n_agents)]
        for name in names:
            runtime.submit(decider.joined(name, ("bench/worker",)))
        deadline = now() + args.seed_timeout
        for i in range(args.claims):
            name = names[i % n_agents]
            runtime.handle(name, {"type": "claim", "task_id": f"T{i:05d}", "worktree": "bench",
                                  "paths": [f"agents/{name[-4:]}/file{i}.py"],
                                  "ttl_seconds": 86400, "note": f"seeded claim {i}"}, None)
            if i % 1000 == 999:
                await asyncio.wait_for(runtime.settled(), max(1.0, deadline - now()))
        await asyncio.wait_for(runtime.settled(), max(1.0, deadline - now()))
        out["seeded_claims"] = len(runtime.state.claims)
        out["seed_s"] = round(now() - t, 2)
        inst.watch_runtime(runtime, server)

        app = BenchApp(runtime, inst, args.patches, hub_uri=server.uri,
                   operator="operator/bench")
        inst.lag.start()
        win = Window(app, {"console": "self"})
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        claims: Any = None

        def settled() -> bool:
            nonlocal claims
            if app.main is None:
                return False
            claims = app.main.tables["claims"]
            return (len(app.fill_times.get("claims", ())) >= 2 and not claims.filling
                    and claims.row_count == len(runtime.state.claims)
                    and not getattr(claims, "_new_rows", None)  # DataTable's pending idle work,
                and not getattr(claims, "_require_update_dimensions", False))  # if any

        fill_keys: list[dict[str, Any]] = []
        marks: dict[str, float] = {}

        async def keys_while_filling() -> None:
            """From the main screen's first update: a key every interval until the table is
            filled and settled (run_test itself only returns once the app is ready)."""
            pilot = Pilot(app)
            deadline = now() + args.fill_timeout
            i = 0
            while not settled() and now() < deadline:
                t0 = now()
                fill_keys.append(await app.key_probe.press(pilot,
                                                           FILL_KEYS[i % len(FILL_KEYS)]))
                i += 1
                rest = args.key_interval - (now() - t0)
                if rest > 0:
                    await asyncio.sleep(rest)
            while not settled() and now() < deadline:
                await asyncio.sleep(0.005)
            if settled():
                marks["settled"] = now()
                updates = inst.screen.updates
                await wait_until(lambda: inst.screen.updates > updates, 2.0, 0.002)
                marks["settled_screen"] = now()

        key_task: list[asyncio.Future[None]] = []
        inst.screen.on_first = lambda: key_task.append(asyncio.ensure_future(keys_while_filling()))
        a = win.take()
        t_open = a["t"]
        async with app.run_test(headless=True, size=SIZE, notifications=True) as pilot:
            t_ctx = now()
            await wait_until(lambda: bool(key_task), 10)
            if key_task:
                await asyncio.wait_for(key_task[0], args.fill_timeout + 10)
            b = win.take()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            await app.key_probe.drain()
            fill_win = win.result(a, b)
            fill = app.fill_times.get("claims", [])
            first_key = fill_keys[0] if fill_keys else None

            def since_open(t: float | None) -> float | None:
                return round(t - t_open, 3) if t is not None else None

            out["open"] = {
                "run_test_returned_s": since_open(t_ctx),
                "first_screen_s": since_open(inst.screen.first_update_at),
                "first_key_sent_s": since_open(first_key["at"]) if first_key else None,
                "first_key_answered_s": since_open(first_key["at"] + first_key["ms"] / 1000)
                if first_key and first_key["ms"] is not None else None,
                "fill_start_s": since_open(fill[0]) if fill else None,
                "fill_calls_done_s": since_open(fill[1]) if len(fill) > 1 else None,
                "table_settled_s": since_open(marks.get("settled")),
                "table_on_screen_s": since_open(marks.get("settled_screen")),
                "rows": claims.row_count if claims is not None else None,
                "rss_kib": proc_rss_kib("self"),
            }
            out["fill_window"] = fill_win
            out["fill_keys"] = {"keys": key_summary(fill_keys), "raw": fill_keys}

            # paging through the table
            if getattr(app.screen, "pane", None) != "claims":
                await app.key_probe.press(pilot, "2")
            await asyncio.sleep(0.3)
            a = win.take()
            scroll = await key_phase(app, pilot, SCROLL_KEYS, len(SCROLL_KEYS),
                                     args.key_interval, len(SCROLL_KEYS) * 3)
            b = win.take()
            await app.key_probe.drain()
            out["scroll"] = {"window": win.result(a, b), "keys": key_summary(scroll),
                             "raw": scroll,
                             "cursor_row_end": claims.cursor_row if claims is not None else None}
    finally:
        await server.stop()
        await runtime.stop()


async def run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Fills `out` as it goes, so a failure late in a run still leaves what was measured."""
    inst = Instruments()
    inst.install(lean=args.lean)
    out["scenario"] = args.scenario
    try:
        if args.scenario == "load":
            await scenario_load(args, inst, out)
        else:
            await scenario_claims10k(args, inst, out)
    finally:
        inst.lag.stop()
        inst.uninstall()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=("load", "claims10k"), required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="state dir, logs")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--steady", type=float, default=8.0)
    p.add_argument("--keys", type=int, default=30)
    p.add_argument("--key-interval", type=float, default=0.2)
    p.add_argument("--claims", type=int, default=10_000)
    p.add_argument("--seed-timeout", type=float, default=60.0)
    p.add_argument("--fill-timeout", type=float, default=60.0)
    p.add_argument("--max-seconds", type=float, default=120.0, help="bound on the load process")
    p.add_argument("--patch", default="", help="experiment: prototype fixes to apply "
                   f"({', '.join(patch_mod.PATCHES)}, or all); see consolebench/patches.py")
    p.add_argument("--lean", action="store_true",
                   help="only the measuring instruments, no attribution (to measure their cost)")
    p.add_argument("--profile", type=Path, default=None,
                   help="cProfile the steady window (load) or the open + fill (claims10k)")
    args = p.parse_args(argv)
    args.patches = patch_mod.parse(args.patch)
    patch_mod.apply_class_patches(args.patches)
    args.work.mkdir(parents=True, exist_ok=True)
    start_runtime_logging(args.work)
    t0 = now()
    cpu0 = time.process_time()
    doc: dict[str, Any] = {"ok": False, "pid": os.getpid(), "textual": textual.__version__,
                           "patches": sorted(args.patches),
                           "flush_hz": bridge_mod.FLUSH_HZ, "size": list(SIZE)}
    try:
        asyncio.run(run(args, doc))
        doc["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - reported in the JSON, then re-raised below
        doc["error"] = "".join(traceback.format_exception(exc))[-4000:]
    doc["patches_skipped"] = dict(patch_mod.SKIPPED)
    doc["wall_s"] = round(now() - t0, 2)
    doc["process_cpu_s"] = round(time.process_time() - cpu0, 2)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

