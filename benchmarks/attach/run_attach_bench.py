"""Attached consoles: first paint on 10,000 claims, keys and the runtime's cost under load.

    python benchmarks/attach/run_attach_bench.py [--runs 3] [--only paint,load] [--tag T]

Issue 14's benchmark. Every part is its own process, all on 127.0.0.1:

* the runtime: `python -m marrow_tui --no-ui --host 127.0.0.1 --port 0 --state-dir D` (started
  through the reliability runs' `Hub`: its own session, ended by its PID), temp state;
* the agents: consolebench's load process (`consolebench.loadgen`, real WebSockets), 100
  agents; `--hold 100` gives the runtime 10,000 claims;
* the consoles: the real `marrow-tui attach URI --operator-token T` (D/operator_token), each
  in a tmux session of its own (a tmux server of this benchmark's own, `-L`), so a real
  terminal draws it; and, for key latency, `attached_console.py`, the same console under Pilot
  with consolebench's instruments, as a process of its own.

`paint` (10,000 claims, 100 agents online, no load): `--runs` times, (a) the real `marrow-tui
attach` in a 200x50 tmux window (three columns: every pane of the setup on screen), timed from
just before `tmux new-session` to the first `capture-pane` (polled every 20 ms) on which every
pane shows its content (status line "10000 leases", an agent row, a claim row, a board row, an
Activity line); (b) `attached_console.py --mode paint` at 200x50: the same, seen from inside
(imports, mirror connect + snapshot, first screen update, every pane filled).

`load` (100 agents x 10 frames/s, consolebench's mix, 3 claims each): GO, warm-up, then per
repetition CPU windows of the runtime's PID with 0, 1 and 5 real consoles attached (120x40), and
0 again; the cost of a console is the runtime's CPU with it minus without (the mean of the two
0-console windows around it). Then `attached_console.py --mode keys` (120x40): consolebench's
30 keys under load, `--runs` times, with the runtime's CPU in that window too.

Writes `benchmarks/results/attach-<UTC time>[-tag].json` and prints the summary. Nothing is
asserted; every wait is bounded; every process is ended by its own PID or tmux session name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH / "reliability"), str(BENCH / "console"), str(BENCH)]

from hubbench.procinfo import CpuSample, wait_quiet, window_load  # noqa: E402
from hubbench.stats import percentile  # noqa: E402
from relcommon import (Hub, Peer, base_result, hub_kind, install_cleanup,  # noqa: E402
                       now_stamp, operator_token, read_state)

RESULTS = BENCH / "results"
WORK = BENCH / ".work" / "attach"
TMUX_SOCKET = f"marrow-attach-bench-{os.getpid()}"
TARGETS = {"first_paint_s": 1.0, "key_p99_ms": 100.0, "one_console_cores": 0.10,
           "five_consoles_cores": 0.25}
#: what a filled screen shows at 200x50 (the seeded names of consolebench.loadgen)
FILLED_MARKS = {
    "status": re.compile(r"attached to .*│ 10\d online │ 10000 leases"),
    "agents": re.compile(r"bench/a000 +online"),
    "claims": re.compile(r"a000-t00001 +bench/a000"),
    "board": re.compile(r"B-a000 +open"),
    "activity": re.compile(r"\d\d:\d\d:\d\d (claim|start) "),
}
#: an attached console under load (120x40: fewer panes shown) is up once it says so
ATTACHED_MARKS = {"status": re.compile(r"attached to ")}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def screen_filled(text: str, marks: dict[str, re.Pattern[str]] = FILLED_MARKS) -> list[str]:
    """The panes a captured screen does not show filled yet (empty: every pane is)."""
    return [name for name, mark in marks.items() if not mark.search(text)]


# --------------------------------------------------------------------------- processes


class Load:
    """consolebench's load process: `READY` once its agents are set up, `GO`, `STOP`."""

    def __init__(self, uri: str, agents: int, hold: int, rate: float, err: Path) -> None:
        self.err = open(err, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consolebench.loadgen", "--uri", uri, "--agents", str(agents),
             "--hold", str(hold), "--rate", str(rate), "--max-seconds", "1500"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
            cwd=BENCH / "console", env=child_env(), start_new_session=True)

    def tagged(self, tag: str) -> Any:
        assert self.proc.stdout is not None
        for _ in range(100):  # bounded: the process's own --max-seconds ends it anyway
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        return {"error": f"no {tag} line"}

    def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> Any:
        result = None
        if self.proc.poll() is None:
            self.say("STOP")
            result = self.tagged("RESULT")
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait(10)
        self.err.close()
        return result


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def tmux(*args: str) -> str:
    out = subprocess.run(["tmux", "-L", TMUX_SOCKET, *args], capture_output=True, text=True,
                         timeout=20, check=False)
    return out.stdout


class RealConsole:
    """`marrow-tui attach` in a tmux window of its own (a real terminal draws it)."""

    def __init__(self, name: str, uri: str, token: str, size: tuple[int, int], home: Path,
                 without_host: bool = False) -> None:
        self.name = name
        home.mkdir(parents=True, exist_ok=True)
        entry = str(HERE / "attach_without_host.py") if without_host else "-m marrow_tui"
        command = (f"cd {home} && exec env PYTHONPATH={REPO} XDG_STATE_HOME={home} "
                   f"{sys.executable} {entry} attach {uri} --operator-token {token} "
                   f"--no-bell")  # its stderr is the terminal: Textual draws there
        self.t0 = time.monotonic()
        pid = tmux("new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", name,
                   "-x", str(size[0]), "-y", str(size[1]), command)
        self.pid = int(pid.strip() or 0)

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.name)

    def wait_painted(self, timeout: float, step: float = 0.02,
                     marks: dict[str, re.Pattern[str]] = FILLED_MARKS) -> dict[str, Any]:
        """Poll the screen until it shows every mark (bounded)."""
        first_drawn = None
        missing: list[str] = list(marks)
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            t = time.monotonic()
            if first_drawn is None and text.strip():
                first_drawn = t - self.t0
            missing = screen_filled(text, marks)
            if not missing:
                return {"painted_s": round(t - self.t0, 3),
                        "first_drawn_s": round(first_drawn or t - self.t0, 3)}
            time.sleep(step)
        return {"painted_s": None, "missing": missing, "screen_tail": self.screen()[-800:]}

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """SIGTERM (the console detaches, as on `q`), wait for its exit, then close the
        window. A console that does not exit in time is SIGKILLed by its PID and counted:
        one left behind would keep its feed and bias the next window. (Closing the window
        first, a SIGHUP, left every console hanging in exit here: see the README.)"""
        t0 = time.monotonic()
        killed = False
        if self.pid and alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            while alive(self.pid) and time.monotonic() - t0 < timeout:
                time.sleep(0.05)
            if alive(self.pid):
                killed = True
                os.kill(self.pid, signal.SIGKILL)
        tmux("kill-session", "-t", self.name)
        return {"exit_s": round(time.monotonic() - t0, 3), "killed": killed}


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, reaped by tmux soon, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def instrumented(uri: str, token: str, mode: str, size: str, work: Path,
                 extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(HERE / "attached_console.py"), "--uri", uri, "--operator-token",
         token, "--mode", mode, "--size", size, "--work", str(work), *(extra or [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(work / "stderr", "wb"),
        env=child_env(), start_new_session=True)


def read_tagged(proc: subprocess.Popen[bytes], tag: str) -> Any:
    assert proc.stdout is not None
    for _ in range(1000):
        line = proc.stdout.readline().decode()
        if not line:
            break
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    return {"error": f"no {tag} line (exit {proc.poll()})"}


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()  # type: ignore[union-attr]  # its stdin closing ends it
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait(10)


async def claims_held(uri: str, want: int, timeout: float) -> int:
    """Wait (bounded) until the runtime holds `want` claims; how many it holds."""
    deadline = time.monotonic() + timeout
    count = 0
    peer = await Peer.open(uri, "bench/counter")
    try:
        while time.monotonic() < deadline:
            count = len(await read_state(peer))
            if count >= want:
                break
            await asyncio.sleep(0.5)
    finally:
        await peer.close()
    return count


# --------------------------------------------------------------------------- scenarios


def start_runtime(tmp: Path) -> tuple[Hub, str, str]:
    """`python -m marrow_tui --no-ui` as runtime_probe.py runs it (with the feed's counters)."""
    kind = hub_kind(cwd=tmp)
    kind.build_argv = lambda port, state_dir: [  # type: ignore[method-assign]
        sys.executable, str(HERE / "runtime_probe.py"), str(tmp / "counters.json"), "--no-ui",
        "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state_dir)]
    hub = Hub(kind, tmp / "state", tmp / "runtime.out", tmp / "runtime.err").start()
    uri = asyncio.run(hub.ready(60))
    token = operator_token(tmp / "state")
    if not token:
        raise RuntimeError("the runtime wrote no operator_token")
    return hub, uri, token


def scenario_paint(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    hub, uri, token = start_runtime(tmp)
    load = Load(uri, args.agents, args.claims // args.agents, args.rate, tmp / "load.err")
    try:
        out["load_ready"] = load.tagged("READY")
        t0 = time.monotonic()
        out["claims"] = asyncio.run(claims_held(uri, args.claims, 120))
        out["seed_s"] = round(time.monotonic() - t0, 2)
        time.sleep(1.0)
        real, lazy, inside = [], [], []
        for run in range(args.runs):
            for without_host, into in ((False, real), (True, lazy)):
                quiet = wait_quiet(0.3, 5)
                label = f"paint-{run}{'-without-host' if without_host else ''}"
                console = RealConsole(label, uri, token, (200, 50), tmp / label, without_host)
                cpu0 = CpuSample.take({"runtime": hub.pid})
                got = console.wait_painted(args.paint_timeout)
                got["runtime_cpu_s"] = round(window_load(cpu0, CpuSample.take(
                    {"runtime": hub.pid}))["runtime_cpu_s"], 3)
                got["quiet"] = quiet
                got["stop"] = console.stop()
                into.append(got)
                log(f"paint ({label}, real attach in tmux): {got}")
                time.sleep(0.5)
            quiet = wait_quiet(0.3, 5)
            t_spawn = time.monotonic()
            proc = instrumented(uri, token, "paint", "200x50", tmp / f"inside-{run}")
            seen = read_tagged(proc, "PAINT")
            end(proc)
            inside.append(breakdown(seen, t_spawn) | {"quiet": quiet})
            log(f"paint (instrumented) run {run + 1}: {inside[-1]}")
            time.sleep(0.5)
        out["real"] = real
        out["real_without_host_import"] = lazy
        out["inside"] = inside
        out["import_tree"] = import_tree()
    finally:
        out["load"] = load.stop()
        out["runtime_stop"] = hub.stop()


def breakdown(seen: dict[str, Any], t_spawn: float) -> dict[str, Any]:
    """The instrumented console's steps, from its spawn."""
    if "t_main" not in seen:
        return seen

    def since(key: str) -> float | None:
        value = seen.get(key)
        return None if value is None else round(value - t_spawn, 3)

    return {"interpreter_s": since("t_main"), "imported_s": since("t_imported"),
            "mirror_loaded_s": since("t_mirror"), "mirror_start_s": seen.get("mirror_start_s"),
            "first_update_s": since("t_first_update"), "painted_s": since("t_painted"),
            "fill_s": seen.get("fill_s"), "rows": seen.get("rows"), "claims": seen.get("claims")}


def import_tree() -> dict[str, Any]:
    """What `marrow-tui attach` imports before it connects, from `python -X importtime`: the
    heaviest top-level packages, cumulative."""
    code = ("import marrow_tui.cli.main, marrow_tui.cli.attach, marrow_tui.attach.mirror, "
            "marrow_tui.ui.app")
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, env=child_env(), timeout=60, check=False).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1])))
    total = sum(us for name, us in rows if not name.startswith(" "))
    heavy = sorted(((name.strip(), us) for name, us in rows if us > 30_000),
                   key=lambda row: -row[1])[:25]
    return {"total_ms": round(total / 1000, 1),
            "heaviest_cumulative_ms": [[name, round(us / 1000, 1)] for name, us in heavy]}


def counters(path: Path) -> dict[str, Any]:
    """runtime_probe.py's totals (`counters`: label -> [CPU seconds, calls]) and when (`t`)."""
    for _ in range(20):  # bounded: it is rewritten every 0.25 s
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    return {"t": time.monotonic(), "counters": {}}


def counter_rates(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """CPU ms per second of wall, and calls per second, of each counter in a window."""
    out: dict[str, Any] = {}
    wall = max(b["t"] - a["t"], 1e-9)
    for label, (cpu, calls) in b["counters"].items():
        cpu0, calls0 = a["counters"].get(label, (0.0, 0))
        out[label] = {"ms_per_s": round((cpu - cpu0) * 1000 / wall, 3),
                      "calls_per_s": round((calls - calls0) / wall, 1)}
    out["feed_total_ms_per_s"] = round(sum(v["ms_per_s"] for k, v in out.items()
                                           if k.startswith("feed:")), 3)
    return out


class EventCount:
    """Events the runtime has told: `--no-ui` prints one line per event to its stdout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.lines = 0

    def take(self) -> int:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        whole = chunk.rfind(b"\n") + 1
        self.offset += whole
        self.lines += chunk.count(b"\n", 0, whole)
        return self.lines


def cpu_window(pids: dict[str, int], seconds: float, events: EventCount) -> dict[str, Any]:
    """The processes' CPU over `seconds`, and the runtime's CPU per event told meanwhile."""
    c0 = counters(events.path.parent / "counters.json")
    a, e0 = CpuSample.take(pids), events.take()  # type: ignore[arg-type]
    time.sleep(seconds)
    b, e1 = CpuSample.take(pids), events.take()  # type: ignore[arg-type]
    c1 = counters(events.path.parent / "counters.json")
    out: dict[str, Any] = {k: round(v, 4) for k, v in window_load(a, b).items()}
    out["counters"] = counter_rates(c0, c1)
    out["events_per_s"] = round((e1 - e0) / out["wall_s"], 1)
    out["runtime_ms_per_event"] = round(out["runtime_cpu_s"] * 1000 / max(e1 - e0, 1), 4)
    return out


def attach_many(kind: str, count: int, uri: str, token: str, tmp: Path,
                label: str) -> tuple[list[Any], list[Any]]:
    """`count` consoles: real ones in tmux (`real`) or the console's wire side alone
    (`mirror`); the handles and how long each took to show it is attached."""
    handles: list[Any] = []
    ready: list[Any] = []
    for n in range(count):
        if kind == "real":
            console = RealConsole(f"{label}-{n}", uri, token, (120, 40), tmp / f"{label}-{n}")
            handles.append(console)
            ready.append(console.wait_painted(30, 0.1, ATTACHED_MARKS).get("first_drawn_s"))
        else:
            proc = instrumented(uri, token, "mirror", "120x40", tmp / f"{label}-{n}")
            handles.append(proc)
            ready.append(read_tagged(proc, "READY").get("mirror_start_s"))
    return handles, ready


def detach_all(handles: list[Any]) -> list[Any]:
    """End every console; what each real one's stop said."""
    stops = []
    for handle in handles:
        if isinstance(handle, RealConsole):
            stops.append(handle.stop())
        else:
            end(handle)
    return stops


def pid_of(handle: Any) -> int:
    return handle.pid


def scenario_load(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    hub, uri, token = start_runtime(tmp)
    load = Load(uri, args.agents, 3, args.rate, tmp / "load.err")
    handles: list[Any] = []
    try:
        out["load_ready"] = load.tagged("READY")
        out["claims_before_go"] = asyncio.run(claims_held(uri, 3 * args.agents, 60))
        events = EventCount(tmp / "runtime.out")
        load.say("GO")
        time.sleep(args.warmup)
        pids = {"runtime": hub.pid, "load": load.proc.pid}
        reps = []
        for rep in range(args.runs if "cpu" in args.parts else 0):
            wait_quiet(0.3, 3)
            row: dict[str, Any] = {"none_before": cpu_window(pids, args.window, events)}
            for kind in ("real", "mirror"):
                for count in (1, args.many):
                    more, ready = attach_many(kind, count - len(handles), uri, token, tmp,
                                              f"{kind}-{rep}-{len(handles)}")
                    handles += more
                    time.sleep(args.settle)
                    watched = pids | {f"console{i}": pid_of(h) for i, h in enumerate(handles)}
                    window = cpu_window(watched, args.window, events)
                    window["attached"] = len(handles)
                    window["ready_s"] = ready
                    row[f"{kind}_{count}"] = window
                row[f"{kind}_stops"] = detach_all(handles)
                handles = []
                time.sleep(args.settle)
            row["none_after"] = cpu_window(pids, args.window, events)
            row["cost"] = costs(row, args.many)
            reps.append(row)
            log(f"load rep {rep + 1}: {row['cost']}")
        out["cpu"] = reps
        keys = []
        for run in range(args.runs if "keys" in args.parts else 0):
            wait_quiet(0.3, 3)
            proc = instrumented(uri, token, "keys", "120x40", tmp / f"keys-{run}",
                                ["--keys", str(args.keys)] + (
                                    ["--profile", str(args.profile)] if args.profile else []))
            ready = read_tagged(proc, "READY")
            time.sleep(args.settle)
            before = CpuSample.take(pids | {"console": proc.pid})
            proc.stdin.write(b"KEYS\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            result = read_tagged(proc, "RESULT")
            result["window"] = {k: round(v, 4) for k, v in window_load(
                before, CpuSample.take(pids | {"console": proc.pid})).items()}
            result["ready"] = {k: ready.get(k) for k in ("mirror_start_s", "painted", "rows")}
            end(proc)
            keys.append(result)
            log(f"keys run {run + 1}: {result.get('keys', {}).get('p99')} ms p99, "
                f"{result.get('keys', {}).get('p50')} ms p50")
        out["keys"] = keys
    finally:
        detach_all(handles)
        out["load"] = load.stop()
        out["runtime_stop"] = hub.stop()


def costs(row: dict[str, Any], many: int) -> dict[str, float]:
    """What the consoles cost the runtime, in cores, against the mean of the windows without
    any: `raw` is CPU/s with minus without; `per_event` is the CPU per event told with minus
    without, times the events/s without (the cost at the nominal load, when a saturated
    machine slowed the runtime down in the window with consoles)."""
    base = [row["none_before"], row["none_after"]]
    cores = sum(w["runtime_cores"] for w in base) / 2
    per_event = sum(w["runtime_ms_per_event"] for w in base) / 2
    rate = sum(w["events_per_s"] for w in base) / 2
    out = {"runtime_cores_without": round(cores, 4)}
    for kind in ("real", "mirror"):
        for count in (1, many):
            window = row[f"{kind}_{count}"]
            out[f"{kind}_{count}_raw"] = round(window["runtime_cores"] - cores, 4)
            out[f"{kind}_{count}_per_event"] = round(
                (window["runtime_ms_per_event"] - per_event) * rate / 1000, 4)
            out[f"{kind}_{count}_feed"] = round(
                window["counters"]["feed_total_ms_per_s"] / 1000, 4)
    return out


# --------------------------------------------------------------------------- summary


def spread(values: list[float | None]) -> dict[str, Any]:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(percentile(vals, 50), 4), "min": round(vals[0], 4),
            "max": round(vals[-1], 4), "n": len(vals)}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    paint = result.get("paint") or {}
    if paint.get("real"):
        summary["first_paint_s"] = spread([r.get("painted_s") for r in paint["real"]])
        summary["first_drawn_s"] = spread([r.get("first_drawn_s") for r in paint["real"]])
        summary["experiment_first_paint_without_host_import_s"] = spread(
            [r.get("painted_s") for r in paint.get("real_without_host_import", ())])
        summary["inside_painted_s"] = spread([r.get("painted_s") for r in paint["inside"]])
        summary["inside_imported_s"] = spread([r.get("imported_s") for r in paint["inside"]])
        summary["inside_mirror_loaded_s"] = spread([r.get("mirror_loaded_s")
                                                    for r in paint["inside"]])
    load = result.get("load") or {}
    if load.get("cpu"):
        rows = load["cpu"]
        many = result["settings"]["many"]
        summary["runtime_cores_no_console"] = spread([r["cost"]["runtime_cores_without"]
                                                      for r in rows])
        for kind in ("real", "mirror"):
            for count, name in ((1, "one"), (many, "many")):
                for how in ("raw", "per_event", "feed"):
                    summary[f"{name}_{kind}_cores_{how}"] = spread(
                        [r["cost"][f"{kind}_{count}_{how}"] for r in rows])
        windows = [w for r in rows for k, w in r.items() if isinstance(w, dict) and "wall_s" in w]
        summary["other_cores"] = spread([w["other_cores"] for w in windows])
    if load.get("keys"):
        summary["key_p99_ms"] = spread([k.get("keys", {}).get("p99") for k in load["keys"]])
        summary["key_p50_ms"] = spread([k.get("keys", {}).get("p50") for k in load["keys"]])
        summary["keys_console_cores"] = spread([k.get("console_cores") for k in load["keys"]])
    verdicts = {}
    measured_by = {"one_console_cores": "one_real_cores_per_event",
                   "five_consoles_cores": "many_real_cores_per_event"}
    for name, limit in TARGETS.items():
        key = measured_by.get(name, name)
        worst = (summary.get(key) or {}).get("max")
        verdicts[name] = {"target": f"< {limit}", "worst": worst,
                          "pass": None if worst is None else worst < limit}
    summary["verdicts"] = verdicts
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="paint,load", help="scenarios: paint,load")
    p.add_argument("--parts", default="cpu,keys", help="of load: the CPU windows, the keys")
    p.add_argument("--profile", type=Path, default=None,
                   help="cProfile the attached console's key phase into this file (a "
                        "diagnosis: it slows the console, so its keys are not the result)")
    p.add_argument("--runs", type=int, default=3, help="repetitions of each measurement")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--claims", type=int, default=10_000, help="claims held for the paint")
    p.add_argument("--rate", type=float, default=10.0, help="frames/s per agent under load")
    p.add_argument("--many", type=int, default=5, help="consoles attached at once")
    p.add_argument("--window", type=float, default=8.0, help="seconds per CPU window")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=2.0, help="after consoles attach or leave")
    p.add_argument("--keys", type=int, default=30, help="keys per run under load")
    p.add_argument("--paint-timeout", type=float, default=20.0)
    p.add_argument("--tag", default=None)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (state, logs)")
    args = p.parse_args(argv)
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed: each real console runs in a tmux window")
    os.environ["PYTHONPATH"] = str(REPO)  # the runtime runs this tree's marrow_tui
    install_cleanup()
    WORK.mkdir(parents=True, exist_ok=True)
    result = base_result("attach", sys.argv, {k: str(v) if isinstance(v, Path) else v
                                              for k, v in vars(args).items()})
    result["uptime_before"] = Path("/proc/loadavg").read_text().strip()
    only = set(args.only.split(","))
    try:
        for name, scenario in (("paint", scenario_paint), ("load", scenario_load)):
            if name not in only:
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
            out: dict[str, Any] = {"dir": str(tmp)}
            result[name] = out
            try:
                scenario(args, tmp, out)
            except Exception as exc:  # noqa: BLE001 - kept in the result, the run goes on
                out["error"] = f"{type(exc).__name__}: {exc}"
                log(f"{name} failed: {out['error']}")
            finally:
                if not args.keep:
                    shutil.rmtree(tmp, ignore_errors=True)
    finally:
        tmux("kill-server")  # this benchmark's own tmux server (-L), nobody else's
    result["uptime_after"] = Path("/proc/loadavg").read_text().strip()
    result["summary"] = summarize(result)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"attach-{now_stamp()}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    log(f"wrote {path}")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
