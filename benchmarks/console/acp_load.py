"""The console with 20 ACP agents streaming: keys, CPU, memory and the event log's share.

    python benchmarks/console/acp_load.py [--agents 20] [--rate 200] [--seconds 60] [--tag T]

Issue 12's benchmark: N agents (acp_stream_agent.py, written with the `acp` SDK's agent side),
each streaming `--rate` updates a second for `--seconds` (message and thought chunks, tool calls
pending -> in_progress -> completed with a small diff now and then, a plan now and then, usage),
with the console open on one run's transcript. Targets: key latency p99 < 50 ms, the console
process's CPU < 60 % of one core, event-log bytes < 1 % of transcript bytes, RSS < 250 MB.

How it runs, in this one process, which *is* the console process:

* A temporary folder gets a WORKFLOW.md (`acp.command` = this interpreter running the agent,
  `agent.max_concurrent_agents` = N, `agent.max_turns: 1`, `acp.permissions: allow`) and N
  issues in `issues/Todo/`.
* marrow-tui runs on it as `marrow-tui --workflow WORKFLOW.md --state-dir STATE` would
  (`ui.app.run_console`: `host.hosted(...)` with the workflow, so the runtime, the hub and the
  orchestrator, then `MarrowApp` in the same loop), except that the app runs through
  `App.run_test(headless=True, size=(120, 40))` so Pilot can press keys, as the console
  benchmark (consolebench) does. The orchestrator dispatches the N issues at once and starts
  the agents as their own processes.
* Once every agent streams: Sessions pane (`5`), Enter on the first run: the agent view follows
  its transcript. A warm-up, a **steady window** without keys, then a **key window**: a key
  every `--key-interval` s, cycling through scrolling in the agent view (pageup, up, k, down, j,
  pagedown, End/G to follow again), Esc back to the Sessions pane, cursor moves, a pane switch
  (`6`, `5`) and Enter to open the view again; until shortly before the agents stop.
* A key's latency is consolebench's: from the press to the first screen update after which what
  the key acts on differs (the screen, the pane, the cursor row, the scroll offset or whether
  the view follows the tail) and that widget was repainted. While the view follows the tail,
  its scroll offset moves with every poll, so it counts only once following stops.
* Every 0.5 s: this process's CPU (`/proc/self/stat`, all its threads), VmRSS and VmHWM, and
  each agent process's CPU (`/proc/<pid>/stat`, its last reading kept once it exits).
  Updates delivered = `session/update`s the runs' ACP clients received (a counter around
  `AcpRun.take_update`). Screen updates are rendered to terminal bytes as the Linux driver
  would (consolebench's ScreenProbe way), so that CPU is in the figure.
* After the agents end their turns: the event log (the state folder's `events.db` plus
  `-wal` and `-shm`) against the transcripts (`<workspace.root>/.logs/*.transcript.jsonl*`),
  and the events by kind (count, bytes of their JSON).

`--py-spy PATH` (the py-spy binary) samples this process over the steady and key windows and
puts the hottest functions (own and inclusive share of samples) into the JSON. Writes
`benchmarks/results/acp-load-<UTC time>[-tag].json` and prints the summary. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent), str(REPO)]  # consolebench, hubbench, marrow_tui

import textual  # noqa: E402
from rich.console import Console  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402

from consolebench.instrument import CallbackClock, GcPauses, KeyProbe, LayoutFlag  # noqa: E402
from consolebench.instrument import LoopLag, key_summary  # noqa: E402
from consolebench.instrument import ms_summary, now, perf, wait_until  # noqa: E402
from hubbench.procinfo import CpuSample, machine_description, proc_cpu_seconds  # noqa: E402
from hubbench.procinfo import wait_quiet, window_load  # noqa: E402
from marrow_tui.agents.acp import AcpRun  # noqa: E402
from marrow_tui.host import hosted  # noqa: E402
from marrow_tui.hub.server import HubOptions  # noqa: E402
from marrow_tui.runtime import RuntimeOptions  # noqa: E402
from marrow_tui.ui.app import MarrowApp  # noqa: E402
from marrow_tui.ui.screens.agent import AgentScreen  # noqa: E402
from marrow_tui.ui.transcript.widget import TranscriptLog  # noqa: E402

AGENT = HERE / "acp_stream_agent.py"
RESULTS = HERE.parent / "results"
SIZE = (120, 40)
#: how often this process looks at a condition it waits for (it is the console process too)
POLL = 0.05
TARGETS = {"key_p99_ms": 50.0, "console_cpu_cores": 0.60, "event_log_share": 0.01,
           "rss_max_mb": 250.0}
#: the key window's cycle: scrolling in the agent view, back to the list, moves, a pane switch,
#: the view again. Every key changes what it acts on (see ViewKeyProbe).
KEYS = ("pageup", "up", "k", "pageup", "down", "j", "pagedown", "end", "pageup", "G",
        "escape", "down", "down", "up", "up", "6", "5", "enter")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- the workflow


def write_workflow(root: Path, args: argparse.Namespace) -> Path:
    """WORKFLOW.md and N issues in `root`; the agent streams as the flags say."""
    todo = root / "issues" / "Todo"
    todo.mkdir(parents=True)
    for i in range(1, args.agents + 1):
        (todo / f"LOAD-{i}.md").write_text(
            f"---\ntitle: Streaming agent {i}\npriority: 2\n---\nStream for the benchmark.\n")
    command = " ".join([sys.executable, str(AGENT), "--rate", f"{args.rate:g}",
                        "--seconds", f"{args.seconds:g}", "--tool-every", str(args.tool_every),
                        "--diff-every", str(args.diff_every),
                        "--plan-every", str(args.plan_every)])
    path = root / "WORKFLOW.md"
    path.write_text(f"""---
tracker:
  kind: local
  root: issues
polling:
  interval_ms: 30000
workspace:
  root: workspaces
agent:
  protocol: acp
  max_concurrent_agents: {args.agents}
  max_turns: 1
  stall_timeout_ms: 120000
acp:
  command: {json.dumps(command)}
  permissions: allow
---
Work on {{{{ issue.identifier }}}}: {{{{ issue.title }}}}.
""")
    return path


# --------------------------------------------------------------------------- probes


class ViewKeyProbe(KeyProbe):
    """consolebench's key probe, taught the agent view: there the key acts on the transcript,
    and while it follows the tail its scroll offset moves by itself, so only whether it
    follows counts."""

    def target(self) -> Any:
        screen = self.app.screen
        if isinstance(screen, AgentScreen):
            return screen.query_one(TranscriptLog)
        return super().target()

    def signature(self) -> tuple[Any, ...]:
        screen = self.app.screen
        target = self.target()
        following = getattr(target, "following", None)
        scroll = "follows" if following else getattr(target, "scroll_y", None)
        return (id(screen), getattr(screen, "pane", None), id(target),
                getattr(target, "cursor_row", None), scroll, following)


    async def press(self, pilot: Any, key: str, timeout: float = 5.0) -> dict[str, Any]:
        before = self.state()
        out = await super().press(pilot, key, timeout)
        if out["timeout"]:  # what the key acted on, before and after: why nothing showed
            out["state_before"], out["state_after"] = before, self.state()
        return out

    def state(self) -> dict[str, Any]:
        target = self.target()
        return {name: getattr(target, name, None) for name in
                ("following", "scroll_y", "scroll_target_y", "max_scroll_y", "cursor_row")}


class DisplayProbe:
    """Every screen update (the main screen's and the agent view's), rendered to terminal
    bytes as the real driver would; tells the key probe."""

    def __init__(self, layout: LayoutFlag) -> None:
        self.layout = layout
        self.updates: Counter[str] = Counter()
        self.bytes = 0
        self.render_s = 0.0
        self.keys: ViewKeyProbe | None = None
        self.console = Console(file=io.StringIO(), color_system="truecolor", force_terminal=True,
                               width=SIZE[0], height=SIZE[1], legacy_windows=False,
                               markup=False, highlight=False, emoji=False)

    def on_display(self, screen: Any, renderable: Any) -> None:
        if renderable is None:
            return
        t = now()
        self.updates[type(screen).__name__] += 1
        full = self.layout.depth > 0
        if isinstance(renderable, CompositorUpdate):
            t0 = perf()
            self.bytes += len(renderable.render_segments(self.console).encode())
            self.render_s += perf() - t0
        if self.keys is not None:
            self.keys.on_display(screen, full, set(screen._dirty_widgets), t)

    def snapshot(self) -> dict[str, Any]:
        return {"updates": dict(self.updates), "bytes": self.bytes, "render_s": self.render_s}


class LoadApp(MarrowApp):
    """marrow-tui's app with the display probe; its behaviour is unchanged."""

    def __init__(self, *args: Any, display: DisplayProbe, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.display_probe = display

    def _display(self, screen: Any, renderable: Any) -> None:
        self.display_probe.on_display(screen, renderable)
        super()._display(screen, renderable)


class UpdateCounter:
    """`session/update`s taken by every AcpRun (a counter around `AcpRun.take_update`, where
    each one goes whichever way it came in)."""

    def __init__(self) -> None:
        self.count = 0
        self._orig = AcpRun.take_update

    def install(self) -> None:
        orig, counter = self._orig, self

        def take_update(run: AcpRun, *args: Any, **kwargs: Any) -> None:
            counter.count += 1
            orig(run, *args, **kwargs)

        AcpRun.take_update = take_update  # type: ignore[method-assign]

    def uninstall(self) -> None:
        AcpRun.take_update = self._orig  # type: ignore[method-assign]


def gc_census(top: int = 15) -> dict[str, Any]:
    """What the garbage collector tracks (a gen-2 pause walks all of it)."""
    import gc

    objects = gc.get_objects()
    tracked = len(objects)
    kinds = Counter(type(o).__name__ for o in objects).most_common(top)
    del objects
    return {"tracked": tracked, "top": kinds, "thresholds": gc.get_threshold()}


def runqueue_seconds() -> float:
    """Time the main thread (the event loop's) spent runnable but waiting for a CPU."""
    try:
        return int(Path(f"/proc/self/task/{os.getpid()}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def status_kib(field: str, pid: int | str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler:
    """Every `every` s: this process's CPU and memory, the agents' CPU, updates delivered."""

    def __init__(self, runtime: Any, updates: UpdateCounter, every: float = 0.5) -> None:
        self.runtime = runtime
        self.updates = updates
        self.every = every
        self.series: list[dict[str, Any]] = []
        #: pid -> [first cpu seconds seen, last]
        self.agents: dict[int, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def agent_pids(self) -> list[int]:
        return [s.pid for s in self.runtime.state.sessions.by_id.values()
                if s.running and s.pid]

    def sample(self) -> dict[str, Any]:
        for pid in self.agent_pids():
            try:
                cpu = proc_cpu_seconds(pid)
            except OSError:
                continue
            seen = self.agents.setdefault(pid, [cpu, cpu])
            seen[1] = cpu
        point = {"t": now(), "cpu_s": proc_cpu_seconds("self"), "runqueue_s": runqueue_seconds(),
                 "rss_kib": status_kib("VmRSS"), "hwm_kib": status_kib("VmHWM"),
                 "agents_cpu_s": sum(last for _, last in self.agents.values()),
                 "updates": self.updates.count}
        self.series.append(point)
        return point

    def window(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        wall = b["t"] - a["t"]
        rss = [p["rss_kib"] for p in self.series if a["t"] <= p["t"] <= b["t"] and p["rss_kib"]]
        return {
            "wall_s": round(wall, 2),
            "console_cores": round((b["cpu_s"] - a["cpu_s"]) / wall, 3),
            # the event loop's thread runnable but not running (waiting for a CPU), s per s
            "loop_thread_runqueue_wait": round((b["runqueue_s"] - a["runqueue_s"]) / wall, 3),
            "agents_cores": round((b["agents_cpu_s"] - a["agents_cpu_s"]) / wall, 3),
            "updates_per_s": round((b["updates"] - a["updates"]) / wall, 1),
            "rss_max_mb": round(max(rss) / 1024, 1) if rss else None,
        }


# --------------------------------------------------------------------------- the run


def streaming(runtime: Any, n: int) -> bool:
    """All n runs have a transcript with something in it."""
    running = [s for s in runtime.state.sessions.by_id.values() if s.running and s.transcript]
    if len(running) < n:
        return False
    return all(Path(s.transcript).exists() and Path(s.transcript).stat().st_size > 2000
               for s in running)


def sizes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def event_log_files(state: Path) -> list[Path]:
    return [state / name for name in ("events.db", "events.db-wal", "events.db-shm")]


def events_by_kind(db: Path) -> dict[str, dict[str, int]]:
    """Count and JSON bytes of the logged events, by kind (read-only, after the run)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(events)")]
        kind = "kind" if "kind" in cols else cols[1]
        data = "data" if "data" in cols else cols[-1]
        rows = con.execute(f"SELECT {kind}, COUNT(*), SUM(LENGTH({data})) FROM events "
                           f"GROUP BY {kind} ORDER BY 3 DESC").fetchall()
    finally:
        con.close()
    return {str(k): {"count": int(c), "bytes": int(b or 0)} for k, c, b in rows}


def agent_reports(logs: Path) -> list[dict[str, Any]]:
    """What each agent said at the end of its turn (its stderr log)."""
    out = []
    for path in sorted(logs.glob("*.stderr.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("acp-stream-agent "):
                out.append(json.loads(line.split(" ", 1)[1]))
    return out


def view_ready(app: LoadApp) -> bool:
    screen = app.screen
    if not isinstance(screen, AgentScreen):
        return False
    view = screen.query_one(TranscriptLog)
    return view.size.height > 0 and view.virtual_size.height > 0 and \
        view.scroll_y >= view.max_scroll_y

async def key_window(app: LoadApp, pilot: Any, probe: ViewKeyProbe, until: float,
                     interval: float) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    i = 0
    while now() < until and i < 10_000:
        key = KEYS[i % len(KEYS)]
        i += 1
        t0 = now()
        record = await probe.press(pilot, key)
        record["screen"] = type(app.screen).__name__
        records.append(record)
        if key == "enter":  # the next key waits for the view to show its tail
            await wait_until(lambda: view_ready(app), 5, POLL)
        rest = interval - (now() - t0)
        if rest > 0:
            await asyncio.sleep(rest)
    return records


class PySpy:
    """py-spy sampling this process (raw collapsed stacks), then the hottest functions."""

    def __init__(self, binary: str | None, out: Path) -> None:
        self.binary, self.out = binary, out
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float) -> None:
        if not self.binary:
            return
        self.proc = subprocess.Popen(
            [self.binary, "record", "--pid", str(os.getpid()), "--rate", "100", "--duration",
             str(max(1, int(seconds))), "--function", "--format", "raw", "--output", str(self.out),
             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its handle
            _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-2000:]}
        return hot_spots(self.out)


def hot_spots(raw: Path, top: int = 60) -> dict[str, Any]:
    """Own and inclusive shares of samples by function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "share": round(c / total, 4)}
                for f, c in counter.most_common(top)]

    return {"samples": total, "own": share(own), "inclusive": share(inclusive)}


async def run(args: argparse.Namespace, root: Path, out: dict[str, Any]) -> None:
    workflow = write_workflow(root, args)
    state = root / "state"
    logs = root / "workspaces" / ".logs"
    updates = UpdateCounter()
    updates.install()
    layout = LayoutFlag()
    layout.install()
    gc_pauses = GcPauses()
    gc_pauses.install()
    lag = LoopLag()
    display = DisplayProbe(layout)
    callbacks = CallbackClock()
    if args.attribute:
        callbacks.install()
    t_start = now()
    try:
        async with hosted(RuntimeOptions(state_dir=state), HubOptions(host="127.0.0.1", port=0),
                          workflow=workflow) as unit:
            runtime = unit.runtime
            app = LoadApp(runtime, hub_uri=unit.server.uri, operator="operator/bench",
                          bell=False, display=display)
            probe = ViewKeyProbe(app)
            display.keys = probe
            sampler = Sampler(runtime, updates)
            async with app.run_test(headless=True, size=SIZE, notifications=True) as pilot:
                lag.start()
                sampler.start()
                ok = await wait_until(lambda: streaming(runtime, args.agents), args.start_timeout,
                                      POLL)
                t_streaming = now()
                out["all_streaming"] = ok
                out["all_streaming_after_s"] = round(t_streaming - t_start, 2)
                log(f"{args.agents} agents streaming: {ok}, after {t_streaming - t_start:.1f} s")
                opening = [await probe.press(pilot, "5"), await probe.press(pilot, "enter")]
                await wait_until(lambda: view_ready(app), 10, POLL)
                out["opening_keys"] = opening
                out["view_open"] = isinstance(app.screen, AgentScreen)
                await asyncio.sleep(args.warmup)
                end_of_stream = t_streaming + args.seconds - 3.0
                spy = PySpy(args.py_spy, root / "py-spy.raw")
                spy.start(end_of_stream - now() - 2.0)
                a_cpu = CpuSample.take({"console": "self"})
                a = sampler.sample()
                ds = display.snapshot()
                await asyncio.sleep(args.steady)
                b = sampler.sample()
                steady = sampler.window(a, b)
                steady["lag"] = lag.window(a["t"], b["t"])
                steady["gc"] = gc_pauses.window(a["t"], b["t"])
                d0 = display.snapshot()
                steady["screen_updates_per_s"] = {
                    k: round((v - ds["updates"].get(k, 0)) / (b["t"] - a["t"]), 1)
                    for k, v in d0["updates"].items()}
                records = await key_window(app, pilot, probe, end_of_stream, args.key_interval)
                c = sampler.sample()
                c_cpu = CpuSample.take({"console": "self"})
                d1 = display.snapshot()
                await probe.drain()
                keys = sampler.window(b, c)
                keys["lag"] = lag.window(b["t"], c["t"])
                keys["gc"] = gc_pauses.window(b["t"], c["t"])
                keys["screen_updates_per_s"] = {
                    k: round((v - d0["updates"].get(k, 0)) / (c["t"] - b["t"]), 1)
                    for k, v in d1["updates"].items()}
                keys["terminal_bytes_per_s"] = round((d1["bytes"] - d0["bytes"])
                                                     / (c["t"] - b["t"]))
                whole = sampler.window(a, c)
                whole["machine"] = {k: round(v, 3) for k, v in window_load(a_cpu, c_cpu).items()}
                # the machine's busy time that is neither this process nor its agents
                whole["others_cores"] = round(max(0.0, whole["machine"]["machine_busy_cores"]
                                                  - whole["console_cores"]
                                                  - whole["agents_cores"]), 3)
                whole["lag"] = lag.window(a["t"], c["t"])
                out["windows"] = {"steady": steady, "keys": keys, "load": whole}
                out["keys"] = {"summary": key_summary(records), "raw": records,
                               "by_screen": {
                                   name: ms_summary(r["ms"] / 1000 for r in records
                                                    if r["ms"] is not None and
                                                    r["screen"] == name)
                                   for name in ("AgentScreen", "MainScreen")}}
                out["hot_spots"] = spy.finish()
                out["gc_census"] = gc_census()
                if args.attribute:
                    out["callbacks"] = {
                        "ms_per_s": CallbackClock.delta({}, callbacks.categories(),
                                                        c["t"] - t_start, top=25),
                        "longest": sorted(callbacks.long, key=lambda x: -x["ms"])[:25]}
                log("keys done; waiting for the agents to end their turns")
                ended = await wait_until(
                    lambda: not any(s.running for s in runtime.state.sessions.by_id.values()),
                    args.seconds + 60, POLL)
                out["runs_ended"] = ended
                await runtime.settled()
                out["rss_hwm_mb"] = round((status_kib("VmHWM") or 0) / 1024, 1)
                out["series"] = [{k: (round(v, 3) if isinstance(v, float) else v)
                                  for k, v in p.items()} for p in sampler.series]
                out["agents_cpu_s_total"] = round(sum(last - first for first, last
                                                      in sampler.agents.values()), 2)
                out["sessions"] = {s.id: {"state": s.state, "reason": s.reason}
                                   for s in runtime.state.sessions.by_id.values()}
                transcripts = sorted(logs.glob("*.transcript.jsonl*"))
                out["sizes_live"] = {"event_log_bytes": sizes(event_log_files(state)),
                                     "transcript_bytes": sizes(transcripts),
                                     "transcript_files": len(transcripts)}
                await sampler.stop()
        out["sizes_closed"] = {"event_log_bytes": sizes(event_log_files(state)),
                               "event_log_files": {p.name: p.stat().st_size
                                                   for p in event_log_files(state) if p.exists()},
                               "transcript_bytes": sizes(sorted(logs.glob(
                                   "*.transcript.jsonl*")))}
        out["events_by_kind"] = events_by_kind(state / "events.db")
        out["agent_reports"] = agent_reports(logs)
    finally:
        lag.stop()
        callbacks.uninstall()
        gc_pauses.uninstall()
        layout.uninstall()
        updates.uninstall()


# --------------------------------------------------------------------------- the summary


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    load = doc["windows"]["load"]
    keys = doc["keys"]["summary"]
    live = doc["sizes_live"]
    closed = doc["sizes_closed"]
    reports = doc["agent_reports"]
    # The share is what the log grew by: its file once the runtime closed it (the WAL
    # checkpointed into it). Live, the WAL adds a journal SQLite reuses rather than grows (up
    # to ~4 MB, its 1,000-page auto-checkpoint), which no length of run makes smaller in
    # bytes, only in share: it is reported beside.
    share_live = live["event_log_bytes"] / max(1, live["transcript_bytes"])
    share_closed = closed["event_log_bytes"] / max(1, closed["transcript_bytes"])
    rss = max(load["rss_max_mb"] or 0, doc.get("rss_hwm_mb") or 0)
    measured = {
        "key_p50_ms": keys["p50"],
        "key_p95_ms": _pct([r["ms"] for r in doc["keys"]["raw"] if r["ms"] is not None], 95),
        "key_p99_ms": keys["p99"], "key_max_ms": keys["max"], "keys": keys["n"],
        "key_timeouts": keys["timeouts"],
        "console_cpu_cores": load["console_cores"],
        "agents_cpu_cores": load["agents_cores"],
        "machine_busy_cores": load["machine"]["machine_busy_cores"],
        "others_cores": load["others_cores"],
        "rss_max_mb": rss,
        "event_log_bytes": closed["event_log_bytes"],
        "event_log_bytes_live": live["event_log_bytes"],
        "transcript_bytes": closed["transcript_bytes"],
        "event_log_share": round(share_closed, 5),
        "event_log_share_live": round(share_live, 5),
        "updates_delivered_per_s": load["updates_per_s"],
        "updates_asked_per_s": doc["settings"]["agents"] * doc["settings"]["rate"],
        "agents_sent_per_s_each": sorted(r["rate"] for r in reports),
        "agents_worst_behind_updates": max((r["worst_behind_updates"] for r in reports),
                                           default=None),
    }
    verdicts = {
        "key_p99_ms": passed(measured["key_p99_ms"], TARGETS["key_p99_ms"]),
        "console_cpu_cores": passed(measured["console_cpu_cores"],
                                    TARGETS["console_cpu_cores"]),
        "event_log_share": passed(measured["event_log_share"], TARGETS["event_log_share"]),
        "rss_max_mb": passed(measured["rss_max_mb"], TARGETS["rss_max_mb"]),
    }
    return {"measured": measured, "targets": TARGETS, "verdicts": verdicts}


def _pct(values: list[float], q: float) -> float | None:
    import math

    if not values:
        return None
    values = sorted(values)
    return values[min(len(values), max(1, math.ceil(q / 100 * len(values)))) - 1]


def passed(value: float | None, target: float) -> str:
    return "n/a" if value is None else ("PASS" if value < target else "FAIL")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0, help="updates a second per agent")
    p.add_argument("--seconds", type=float, default=60.0, help="how long each agent streams")
    p.add_argument("--tool-every", type=int, default=200,
                   help="a tool call every N updates (200 at 200/s: one a second, as a model "
                        "round trip a call allows; 40 is the stress mix)")
    p.add_argument("--diff-every", type=int, default=3)
    p.add_argument("--plan-every", type=int, default=1000,
                   help="a plan change every N updates (1000: every fifth tool call)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--steady", type=float, default=10.0, help="seconds without keys")
    p.add_argument("--key-interval", type=float, default=0.25)
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--py-spy", default=None, metavar="PATH", help="py-spy binary: profile")
    p.add_argument("--attribute", action="store_true",
                   help="time every event-loop callback (the longest are kept; costs CPU)")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="wait at most this long for a quiet machine (< 0.3 busy cores) first")
    p.add_argument("--nice", type=int, default=0,
                   help="change this process's (and so the agents') niceness first: a negative "
                        "value (root only) keeps other tenants of a shared VM from starving them")
    p.add_argument("--gc-threshold", default="", metavar="A,B,C",
                   help="experiment: gc.set_threshold(A, B, C) in the console process first "
                        "(such runs are tagged gc-A-B-C)")
    p.add_argument("--tag", default="")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.gc_threshold:
        import gc

        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
        args.tag = "-".join(filter(None, (args.tag, "gc", args.gc_threshold.replace(",", "-"))))
    if args.nice:
        os.nice(args.nice)  # the agents, started by this process, inherit it
    quiet = wait_quiet(0.3, args.quiet_wait)
    root = Path(tempfile.mkdtemp(prefix="marrow-acp-load-"))
    doc: dict[str, Any] = {
        "schema": "acp-load-1", "command": " ".join(sys.argv), "ok": False,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("results_dir",)},
        "machine": machine_description(REPO), "textual": textual.__version__,
        "quiet_before": quiet, "folder": str(root), "pid": os.getpid(),
    }
    doc["settings"]["results_dir"] = str(args.results_dir)
    log(f"pid {os.getpid()}, folder {root}")
    t0, cpu0 = now(), time.process_time()
    try:
        asyncio.run(run(args, root, doc))
        doc["summary"] = summarise(doc)
        doc["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - kept in the JSON, the run exits 1
        doc["error"] = "".join(traceback.format_exception(exc))[-4000:]
    doc["wall_s"] = round(now() - t0, 1)
    doc["process_cpu_s"] = round(time.process_time() - cpu0, 1)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"acp-load-{stamp}{'-' + args.tag if args.tag else ''}.json"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / name).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    log(f"wrote {args.results_dir / name}")
    if "summary" in doc:
        print(json.dumps(doc["summary"], indent=1))
    else:
        print(doc.get("error", ""), file=sys.stderr)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
