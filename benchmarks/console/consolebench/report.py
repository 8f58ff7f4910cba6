"""Renders ``results/CONSOLE.md`` from the newest console run (full runs before quick ones).

Generated, never edited by hand: ``run_console_bench.py --report-only [FILE]`` rewrites it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hubbench.stats import summary

FLUSH_HZ_DEFAULT = 15
KEY_P99_MS = 100.0
STALL_MS = 100.0
FIRST_KEY_S = 3.0


def load_runs(results_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(results_dir.glob("console-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == "console-1":
            doc["_file"] = path.name
            runs.append(doc)
    return runs


def pick(runs: list[dict[str, Any]], experiment: bool = False) -> dict[str, Any] | None:
    """Newest run, full before quick; experiments (patched runs) only when asked for."""
    runs = [r for r in runs if bool(r.get("experiment")) == experiment]
    if not runs:
        return None
    return max(runs, key=lambda r: (r.get("mode") == "full", r.get("completed", False),
                                    r["name"]))


def get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 10_000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def cell(values: Iterable[Any], digits: int = 1) -> str:
    s = summary(v for v in values if isinstance(v, (int, float)))
    if not s["n"]:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} [{fmt(s['min'], digits)}–{fmt(s['max'], digits)}]"


def med(values: Iterable[Any]) -> float | None:
    return summary(v for v in values if isinstance(v, (int, float)))["median"]


def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "no data"
    return "**PASS**" if ok(value) else "**FAIL**"


class Doc:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]], align: str | None = None) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "|".join(align or ["---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add("")


def section_rows(records: list[dict[str, Any]], window: str) -> list[list[str]]:
    """Median ms/s per timed section and per loop callback category, over runs."""
    per: dict[str, list[float]] = {}
    for rec in records:
        w = get(rec, f"result.{window}") or {}
        for row in w.get("sections", []):
            per.setdefault(row["section"], []).append(row["ms_per_s"])
        for row in w.get("handlers", [])[:8]:
            per.setdefault(f"handler {row['handler']}", []).append(row["ms_per_s"])
    for key in ("layout_ms_per_s", "compositor_ms_per_s", "terminal_render_ms_per_s"):
        label = {"layout_ms_per_s": "textual: full layout refreshes (reflow + repaint)",
                 "compositor_ms_per_s": "textual: compositor refreshes (render updates)",
                 "terminal_render_ms_per_s": "bench: render updates to terminal bytes"}[key]
        per[label] = [get(r, f"result.{window}.{key}") or 0.0 for r in records]
    gc = [get(r, f"result.{window}.gc.ms_per_s") for r in records]
    per["python: garbage collector"] = [g for g in gc if g is not None]
    rows = [(k, med(v) or 0.0, v) for k, v in per.items()]
    rows = [r for r in rows if r[1] >= 1.0]
    rows.sort(key=lambda r: -r[1])
    return [[name, cell(vals, 1)] for name, _, vals in rows[:22]]


EXPERIMENT_ROWS = (
    ("console process CPU under load, cores", "load", "steady.load.console_cores", 2),
    ("other load on the machine, cores", "load", "steady.load.other_cores", 2),
    ("event loop busy under load", "load", "steady.loop_busy_fraction", 3),
    ("bridge flushes /s", "load", "steady.bridge_flushes_per_s", 2),
    ("`Changed` handler, average ms", "load", "steady.changed_handler_ms_avg", 1),
    ("screen updates /s", "load", "steady.screen_updates_per_s", 2),
    ("full layout refreshes /s", "load", "steady.layout_updates_per_s", 2),
    ("GC ms/s", "load", "steady.gc.ms_per_s", 1),
    ("longest gen-2 GC pause, ms", "load", "steady.gc.gen2.max_ms", 1),
    ("event -> claims row updated p50, ms", "load",
     "steady.rows.by_table.claims.send_to_row.p50", 1),
    ("event -> claims row updated p99, ms", "load",
     "steady.rows.by_table.claims.send_to_row.p99", 1),
    ("keys under load p50, ms", "load", "load_keys.keys.p50", 1),
    ("**keys under load p99, ms**", "load", "load_keys.keys.p99", 1),
    ("keys under load max, ms", "load", "load_keys.keys.max", 1),
    ("keys with agents quiet p99, ms", "load", "idle_keys.keys.p99", 1),
    ("10k: first key answered, s", "claims10k", "open.first_key_answered_s", 2),
    ("10k: table filled and settled, s", "claims10k", "open.table_settled_s", 2),
    ("**10k: longest stall during the fill, ms**", "claims10k", "fill_window.lag.max", 1),
    ("10k: keys during the fill p50, ms", "claims10k", "fill_keys.keys.p50", 1),
    ("10k: paging p99, ms", "claims10k", "scroll.keys.p99", 1),
)


def render_experiment(d: "Doc", base: dict[str, Any], exp: dict[str, Any]) -> None:
    patches = (exp.get("settings") or {}).get("patches", "")
    d.add("## Experiment: the suggested fixes, prototyped", "",
          f"From `results/{exp['_file']}` ({exp.get('mode')} run, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(exp.get('started_at', 0)))}): the "
          f"same benchmark with `--patch {patches}`, i.e. the fixes described in "
          "`benchmarks/console/consolebench/patches.py` monkeypatched into the console process "
          "(marrow_tui itself unchanged). Not used for the verdicts above; it shows what each "
          "suggested change buys.", "")
    rows = []
    for label, scenario, path, digits in EXPERIMENT_ROWS:
        vals = []
        for doc in (base, exp):
            recs = [r for r in doc.get("records", []) if r["scenario"] == scenario and r.get("ok")]
            vals.append(cell((get(r, "result." + path) for r in recs), digits))
        rows.append([label, *vals])
    d.table(["metric", "as shipped", "with the prototypes"], rows,
            align=["---", "---:", "---:"])


def render(doc_in: dict[str, Any], experiment: dict[str, Any] | None = None) -> str:
    recs = doc_in.get("records", [])
    load = [r for r in recs if r["scenario"] == "load" and r.get("ok")]
    c10k = [r for r in recs if r["scenario"] == "claims10k" and r.get("ok")]
    flush_hz = next((get(r, "result.flush_hz") for r in recs if get(r, "result.flush_hz")),
                    FLUSH_HZ_DEFAULT)
    s = doc_in.get("settings", {})
    m = doc_in.get("machine", {})
    d = Doc()
    d.add("# Console benchmark: marrow-tui's console under 100 agents x 10 events/s, and on "
          "10,000 claims", "",
          "Generated by `benchmarks/console/run_console_bench.py` from "
          f"`results/{doc_in['_file']}` ({doc_in.get('mode')} run, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(doc_in.get('started_at', 0)))}, "
          f"{doc_in.get('wall_s')} s). Do not edit: rerun the benchmark or "
          "`run_console_bench.py --report-only`. What is measured and how: "
          "[`../README.md`](../README.md#console-benchmark).", "",
          f"Machine: {m.get('cpu_model')}, {m.get('cpus')} vCPUs, {m.get('mem_total_gib')} GiB, "
          f"Linux {m.get('kernel')}, Python {m.get('python')}, Textual "
          f"{next((get(r, 'result.textual') for r in recs if get(r, 'result.textual')), '?')}; "
          f"repo `{str(m.get('repo_commit'))[:12]}`"
          f"{' (dirty tree)' if m.get('repo_dirty') else ''}."
          f" Console 120x40 headless through Pilot; {s.get('agents')} agents x "
          f"{s.get('rate')} frames/s from a separate process over WebSockets on 127.0.0.1. "
          f"Cells: median [min–max] over {s.get('runs')} run(s), fresh processes each.", "")

    # ---------------------------------------------------------------- targets
    key_p99 = [get(r, "result.load_keys.keys.p99") for r in load]
    changed = [get(r, "result.steady.changed_handled_per_s") for r in load]
    screen = [get(r, "result.steady.screen_updates_per_s") for r in load]
    flushes = [get(r, "result.steady.bridge_flushes_per_s") for r in load]
    first_key = [get(r, "result.open.first_key_answered_s") for r in c10k]
    stall = [get(r, "result.fill_window.lag.max") for r in c10k]
    timeouts = sum(get(r, "result.load_keys.keys.timeouts") or 0 for r in load)
    d.add("## Targets", "")
    d.table(["target", "threshold", "measured", "verdict"], [
        ["keystroke -> screen under load, p99", f"< {KEY_P99_MS:.0f} ms",
         cell(key_p99) + " ms" + (f" ({timeouts} keys never answered)" if timeouts else ""),
         verdict(max((v for v in key_p99 if v is not None), default=None) if not timeouts
                 else 1e9, lambda v: v < KEY_P99_MS)],
        ["repaints under load: `Changed` messages handled/s", f"<= {flush_hz} (FLUSH_HZ)",
         cell(changed, 2), verdict(max((v for v in changed if v is not None), default=None),
                                   lambda v: v <= flush_hz)],
        ["repaints under load: screen updates/s (compositor)", f"<= {2 * flush_hz} (2 x FLUSH_HZ)",
         cell(screen, 2), verdict(max((v for v in screen if v is not None), default=None),
                                  lambda v: v <= 2 * flush_hz)],
        ["10k claims: first key answered, from opening the console", f"<= {FIRST_KEY_S:.0f} s",
         cell(first_key, 2) + " s", verdict(max((v for v in first_key if v is not None),
                                                 default=None), lambda v: v <= FIRST_KEY_S)],
        ["10k claims: longest event-loop stall during the fill", f"<= {STALL_MS:.0f} ms",
         cell(stall) + " ms", verdict(max((v for v in stall if v is not None), default=None),
                                      lambda v: v <= STALL_MS)],
    ], align=["---", "---:", "---:", "---"])
    d.add(f"A verdict uses the worst run. The repaint bound holds, but read it with the bridge's "
          f"cadence: the bridge asks for a flush {flush_hz} times a second; under this load it "
          f"managed {cell(flushes, 1)} flushes/s because the event loop is saturated (see loop "
          "busy below), so the repaint rate is set by CPU, not by FLUSH_HZ.", "")

    # ---------------------------------------------------------------- load
    if load:
        d.add("## 1. Under load: 100 agents x 10 events/s", "")
        rows = [
            ["frames sent by the agents /s (target 1,000)",
             cell(get(r, "result.driver.pacer.sent_per_s") for r in load)],
            ["events committed and seen by the bridge /s (steady window)",
             cell(get(r, "result.steady.events_per_s") for r in load)],
            ["agent send lateness p99 (load process keeping its schedule), ms",
             cell(get(r, "result.driver.pacer.send_lateness_ms.p99") for r in load)],
            ["frames delivered to the agents /s (broadcast fan-out)",
             cell((get(r, "result.driver.frames_in") or 0)
                  / max((get(r, "result.driver.pacer.t_end") or 1)
                        - (get(r, "result.driver.pacer.t_go") or 0), 1e-9) for r in load)],
            ["errors / refusals received by the agents",
             cell((get(r, "result.driver.errors") for r in load), 0)],
            ["**bridge flushes /s**", cell(flushes, 2)],
            ["**`Changed` messages handled by the main screen /s**", cell(changed, 2)],
            ["`Changed` handler, average ms", cell(get(r, "result.steady.changed_handler_ms_avg")
                                                  for r in load)],
            ["`Changed` handler, longest ms", cell(get(r, "result.steady.changed_handler_ms_max")
                                                  for r in load)],
            ["**screen updates /s** (compositor writes to the terminal)", cell(screen, 2)],
            ["... of which full layout refreshes /s",
             cell((get(r, "result.steady.layout_updates_per_s") for r in load), 2)],
            ["terminal output, KB/s", cell((get(r, "result.steady.terminal_bytes_per_s") or 0)
                                           / 1000 for r in load)],
            ["**event -> claims row updated (KeyedTable.sync), p50 ms**",
             cell(get(r, "result.steady.rows.by_table.claims.send_to_row.p50") for r in load)],
            ["**event -> claims row updated, p99 ms**",
             cell(get(r, "result.steady.rows.by_table.claims.send_to_row.p99") for r in load)],
            ["event -> claims row on screen (the pane shown), p50 ms",
             cell(get(r, "result.steady.rows.by_table.claims.send_to_screen.p50")
                  for r in load)],
            ["event -> claims row on screen, p99 ms",
             cell(get(r, "result.steady.rows.by_table.claims.send_to_screen.p99")
                  for r in load)],
            ["event -> board row updated (pane hidden), p50 ms",
             cell(get(r, "result.steady.rows.by_table.board.send_to_row.p50") for r in load)],
            ["... send -> hub parsed the frame, p50 ms",
             cell(get(r, "result.steady.rows.breakdown.send_to_handle.p50") for r in load)],
            ["... parsed -> committed (group commit, fsync), p50 ms",
             cell(get(r, "result.steady.rows.breakdown.handle_to_commit.p50") for r in load)],
            ["... committed -> row updated (coalescing + queue), p50 ms",
             cell(get(r, "result.steady.rows.breakdown.commit_to_row.p50") for r in load)],
            ["... row updated -> on screen, p50 ms",
             cell(get(r, "result.steady.rows.breakdown.row_to_screen.p50") for r in load)],
            ["stamped frames followed / left unresolved",
             cell((get(r, "result.steady.rows.records") for r in load), 0) + " / "
             + cell((get(r, "result.steady.rows.unresolved") for r in load), 0)],
            ["**console process CPU, cores** (runtime + hub + console)",
             cell((get(r, "result.steady.load.console_cores") for r in load), 2)],
            ["**load process CPU, cores** (100 agents)",
             cell((get(r, "result.steady.load.driver_cores") for r in load), 2)],
            ["other load on the machine, cores",
             cell((get(r, "result.steady.load.other_cores") for r in load), 2)],
            ["event loop busy (share of wall time in callbacks)",
             cell((get(r, "result.steady.loop_busy_fraction") for r in load), 3)],
            ["loop lag (5 ms timer lateness) p99 ms",
             cell(get(r, "result.steady.lag.p99") for r in load)],
            ["loop lag max ms", cell(get(r, "result.steady.lag.max") for r in load)],
            ["GC pauses ms/s; longest gen-2 pause ms",
             cell(get(r, "result.steady.gc.ms_per_s") for r in load) + "; "
             + cell(get(r, "result.steady.gc.gen2.max_ms") for r in load)],
            ["console RSS, MiB", cell((get(r, "result.steady.rss_kib") or 0) / 1024
                                      for r in load)],
        ]
        d.table(["metric (steady window, no keys)", "value"], rows, align=["---", "---:"])

        d.add("### Keystrokes", "",
              f"{s.get('keys')} keys per phase, one every {s.get('key_interval')} s: pane switches "
              "(1/2/3/4) and cursor moves (down/up/pagedown/pageup). Latency = key sent through "
              "`Pilot.press` -> first screen update showing its effect; *queued* = until the app "
              "starts handling the key event.", "")
        krows = []
        for label, key in (("100 agents connected, quiet (baseline)", "idle_keys"),
                           ("**under load**", "load_keys")):
            krows.append([label] + [cell(get(r, f"result.{key}.keys.{q}") for r in load)
                                    for q in ("p50", "p90", "p99", "max")]
                         + [cell(get(r, f"result.{key}.keys.queue_ms.p50") for r in load),
                            cell((get(r, f"result.{key}.keys.timeouts") for r in load), 0),
                            cell((get(r, f"result.{key}.window.load.console_cores")
                                  for r in load), 2)])
        d.table(["phase", "p50 ms", "p90 ms", "p99 ms", "max ms", "queued p50 ms",
                 "unanswered", "console cores"], krows, align=["---"] + ["---:"] * 7)

        d.add("### Where the console process's event loop spends its time under load", "",
              "Milliseconds per second of wall time in the steady window (1,000 ms = one core). "
              "Rows are timed separately and nest (a `Changed` handler contains the table syncs; "
              "a layout refresh contains a compositor refresh), so they do not add up.", "")
        d.table(["what", "ms per s"], section_rows(load, "steady"), align=["---", "---:"])
        worst = max(load, key=lambda r: get(r, "result.steady.lag.max") or 0)
        longs = get(worst, "result.steady.long_callbacks") or []
        if longs:
            d.add(f"Longest event-loop callbacks in the noisiest-lag run (`{worst['dir']}`):", "")
            d.table(["ms", "callback", "messages handled inside it"],
                    [[fmt(c["ms"]), f"`{c['what']}`", "; ".join(c["messages"]) or "–"]
                     for c in longs], align=["---:", "---", "---"])

    # ---------------------------------------------------------------- 10k
    if c10k:
        d.add("## 2. Opening the console on 10,000 live claims", "",
              "10,000 claims (100 agents x 100, seeded through `runtime.handle`, committed), "
              "then the console opens. Times are from the start of `run_test` (the app "
              "starting). Keys are pressed from the main screen's first update, one every "
              "0.1 s, until the claims table is filled; then the table is paged through.", "")
        rows = [
            ["main screen's first update, s", cell((get(r, "result.open.first_screen_s")
                                                    for r in c10k), 2)],
            ["**first key answered, s**", cell(first_key, 2)],
            ["`run_test` returned (app ready for Pilot), s",
             cell((get(r, "result.open.run_test_returned_s") for r in c10k), 2)],
            ["fill: last `add_row` call, s", cell((get(r, "result.open.fill_calls_done_s")
                                                   for r in c10k), 2)],
            ["**claims table filled and settled (10,000 rows, DataTable's idle work done), s**",
             cell((get(r, "result.open.table_settled_s") for r in c10k), 2)],
            ["... and on screen, s", cell((get(r, "result.open.table_on_screen_s")
                                           for r in c10k), 2)],
            ["**longest event-loop stall during open + fill, ms**", cell(stall)],
            ["loop lag p99 during open + fill, ms", cell(get(r, "result.fill_window.lag.p99")
                                                        for r in c10k)],
            ["stalls > 100 ms during open + fill", cell((get(r, "result.fill_window.lag."
                                                             "over_100ms") for r in c10k), 0)],
            ["keys during the fill: answered / p50 / max ms",
             cell((get(r, "result.fill_keys.keys.n") for r in c10k), 0) + " / "
             + cell(get(r, "result.fill_keys.keys.p50") for r in c10k) + " / "
             + cell(get(r, "result.fill_keys.keys.max") for r in c10k)],
            ["**paging the filled table (20 pagedown, 10 down, ctrl+end, up, ctrl+home): p50 / "
             "p99 / max ms**",
             cell(get(r, "result.scroll.keys.p50") for r in c10k) + " / "
             + cell(get(r, "result.scroll.keys.p99") for r in c10k) + " / "
             + cell(get(r, "result.scroll.keys.max") for r in c10k)],
            ["console CPU during open + fill, cores",
             cell((get(r, "result.fill_window.load.console_cores") for r in c10k), 2)],
            ["other load during open + fill, cores",
             cell((get(r, "result.fill_window.load.other_cores") for r in c10k), 2)],
            ["console RSS after the fill, MiB", cell((get(r, "result.open.rss_kib") or 0) / 1024
                                                    for r in c10k)],
        ]
        d.table(["metric", "value"], rows, align=["---", "---:"])
        d.add("Where the time goes during open + fill (ms per s):", "")
        d.table(["what", "ms per s"], section_rows(c10k, "fill_window"), align=["---", "---:"])
        worst = max(c10k, key=lambda r: get(r, "result.fill_window.lag.max") or 0)
        longs = get(worst, "result.fill_window.long_callbacks") or []
        if longs:
            d.add(f"Longest callbacks during the fill in the worst run (`{worst['dir']}`):", "")
            d.table(["ms", "callback", "messages and idle handlers inside it"],
                    [[fmt(c["ms"]), f"`{c['what']}`", "; ".join(c["messages"]) or "–"]
                     for c in longs], align=["---:", "---", "---"])

    if experiment is not None:
        render_experiment(d, doc_in, experiment)

    # ---------------------------------------------------------------- anomalies
    d.add("## Failures and anomalies", "")
    notes = []
    for r in recs:
        res = r.get("result", {})
        tag = f"`{r['scenario']}` rep {r['rep']} (`{r['dir']}`)"
        if not r.get("ok"):
            notes.append(f"- {tag}: failed: `{str(res.get('error', ''))[-400:]}`")
            continue
        if r.get("noisy"):
            notes.append(f"- {tag}: {r['other_cores']:.2f} cores of other load in the measured "
                         f"window after {r.get('tries')} tries (kept, flagged)")
        for key in ("idle_keys", "load_keys", "fill_keys", "scroll"):
            t = get(res, f"{key}.keys.timeouts")
            if t:
                notes.append(f"- {tag}: {t} key(s) in `{key}` had no visible effect within 5 s")
        if r["scenario"] == "load":
            errs = get(res, "driver.errors")
            if errs:
                notes.append(f"- {tag}: the agents received {errs} errors/refusals, e.g. "
                             f"`{(get(res, 'driver.error_samples') or [''])[0][:200]}`")
            skipped = get(res, "driver.pacer.skipped_slots")
            if skipped:
                notes.append(f"- {tag}: the load process skipped {skipped} send slots "
                             "(more than 0.5 s late)")
            if get(res, "driver.connected") != s.get("agents"):
                notes.append(f"- {tag}: only {get(res, 'driver.connected')} agents connected")
            unresolved = get(res, "steady.rows.unresolved_by_table.claims")
            if unresolved:
                notes.append(f"- {tag}: {unresolved} stamped claim frames sent in the steady "
                             "window had not reached their row when it ended")
            board = get(res, "steady.rows.unresolved_by_table.board")
            if board:
                notes.append(f"- {tag}: {board} board-row updates were still waiting at the end "
                             "of the steady window (the board pane was hidden: rows of hidden "
                             "panes are brought up to date when the pane is shown)")
        skipped = res.get("patches_skipped")
        if skipped:
            notes.append(f"- {tag}: patches not applied, the code already does it: "
                         + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()))
    d.add(*(notes or ["None."]), "")
    d.add("## How to read this", "",
          "* The console process is `marrow-tui` as it runs (runtime + hub + Textual app in one "
          "event loop); Textual runs headless, so the benchmark renders every screen update to "
          "terminal bytes itself the way the Linux driver would (counted in its CPU).",
          "* *Loop busy* near 1.0 means the event loop never waits: every key then queues behind "
          "whatever runs, and the bridge's timer fires late (fewer flushes than FLUSH_HZ).",
          "* *event -> row* starts at the agent's send (its `time.monotonic()`, the same clock) "
          "and ends when `KeyedTable.sync` has updated that row; *on screen* ends at the first "
          "compositor update that repaints the table while its pane is shown.",
          "* Raw numbers, every key and the slowest callbacks are in the JSON file named at the "
          "top; per-run logs in `benchmarks/.work/console/`.", "")
    return "\n".join(d.lines)


def write_console_md(results_dir: Path, source: Path | None) -> Path:
    runs = load_runs(results_dir)
    if source is not None:
        doc = json.loads(source.read_text())
        doc["_file"] = source.name
    else:
        doc = pick(runs)
        if doc is None:
            raise SystemExit(f"no console-*.json results in {results_dir}")
    out = results_dir / "CONSOLE.md"
    out.write_text(render(doc, pick(runs, experiment=True)))
    return out
