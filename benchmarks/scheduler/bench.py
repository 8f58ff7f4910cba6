"""The scheduler benchmark, one command: ``python benchmarks/scheduler/bench.py [--quick]``.

Measures what the heartbeat scheduler (marrow_tui/scheduler/) costs the marrow-tui process
when it runs 1, 10 and 50 agents as real subprocesses: wake-to-start latency, event-loop lag
and CPU while agents flood their logs, the full overhead of a trivial run, and the idle cost.
See benchmarks/README.md ("Scheduler benchmark") and results/SCHEDULER.md.

Each cell gets a fresh marrow-tui process (host_proc.py: `marrow_tui.host.hosted()` with a
generated config, a fresh SQLite state directory in a temp folder, the hub on 127.0.0.1). This
process is the operator: it wakes agents over the real hub with raw `wake` frames, reads the
agents' own start stamps, and tells the host when to open and close a measuring window.
Everything is bounded in time; every process started here is ended by its own PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work" / "scheduler"
sys.path[:0] = [str(BENCH_DIR)]

from hubbench.procinfo import machine_description, wait_quiet  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

SECTIONS = ("wake", "full", "output", "idle")
INTERVAL = 86400  # the heartbeat: far away, so only wakes start runs after the first one


@dataclass
class Settings:
    quick: bool
    agents: list[int]
    full_agents: list[int]
    rounds: int
    samples: int
    out_seconds: float
    out_modes: list[str]
    bulk_cap_mb: int
    idle_agents: list[int]
    idle_seconds: float
    profile: bool
    quiet_max_wait: float


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(max(1, math.ceil(q / 100.0 * len(s))), len(s)) - 1]


def ms_summary(seconds: list[float]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 2)
    return {"n": len(seconds), "p50": ms(pct(seconds, 50)), "p99": ms(pct(seconds, 99)),
            "max": ms(max(seconds) if seconds else None)}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH")) if p)
    env["LC_ALL"] = "C"  # $EPOCHREALTIME with a '.' in the agents' bash
    return env


AGENT_SCRIPT = """#!/bin/bash
# First act: the wall time, with no fork ($EPOCHREALTIME is a bash 5 builtin variable).
printf '%s\\n' "$EPOCHREALTIME" > "{stamps}/$MARROW_SESSION"
read -r mode seconds cap < "{mode_file}"
case "$mode" in
  lines)  # as many short lines as bash can print (one write(2) each), for $seconds
    end=$(( ${{EPOCHREALTIME/./}} + seconds * 1000000 )); i=0
    while (( ${{EPOCHREALTIME/./}} < end )); do
      printf '%s line %d of a chatty agent, as fast as it can\\n' "$EPOCHREALTIME" $((i++))
    done ;;
  bulk)   # yes(1) in 8 KiB writes for $seconds, at most $cap bytes
    timeout --foreground "$seconds" yes 'marrow bench bulk output line' | head -c "$cap" ;;
  *) echo "woke" ;;
esac
"""


class Host:
    """One marrow-tui process (host_proc.py) on a generated config of `n` agents."""

    def __init__(self, root: Path, n: int, command: str | None, label: str,
                 max_seconds: float) -> None:
        self.dir = root / label
        self.n = n
        self.names = [f"a{i:02d}" for i in range(n)]
        self.stamps = self.dir / "stamps"
        self.mode_file = self.dir / "mode"
        self.max_seconds = max_seconds
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.ws: ClientConnection | None = None
        self.stamps.mkdir(parents=True)
        script = self.dir / "agent.sh"
        script.write_text(AGENT_SCRIPT.format(stamps=self.stamps, mode_file=self.mode_file))
        script.chmod(0o755)
        self.set_mode("noop")
        command = command or shlex.quote(str(script))
        parts = []
        for name in self.names:
            ws = self.dir / "ws" / name
            ws.mkdir(parents=True)
            parts.append(
                f'[[agents]]\nname = "{name}"\nheartbeat_interval = {INTERVAL}\n'
                f'heartbeat_timeout = 600\nworkspace = "{ws}"\n'
                f'agent_command = {json.dumps(command)}\nstop_grace = 1\n')
        self.config = self.dir / "marrow.toml"
        self.config.write_text("\n".join(parts))
        self.script = script

    def set_mode(self, mode: str, seconds: float = 0, cap: int = 0) -> None:
        self.mode_file.write_text(f"{mode} {int(seconds)} {cap}\n")

    async def start(self) -> dict[str, Any]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "host_proc.py"), "--config", str(self.config),
            "--state-dir", str(self.dir / "state"), "--events-log", str(self.dir / "events.log"),
            "--log", str(self.dir / "marrow.log"), "--max-seconds", str(self.max_seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=open(self.dir / "host.stderr", "wb"), env=child_env(), cwd=str(self.dir))
        self.info = await self._read(60 + self.n)
        if "ready" not in self.info:
            raise RuntimeError(f"host did not start: {self.info}")
        return self.info

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"host exited; stderr tail: {self.stderr_tail()}")
        return json.loads(line)

    def stderr_tail(self) -> str:
        try:
            return (self.dir / "host.stderr").read_text()[-2000:]
        except OSError:
            return ""

    async def command(self, wait: float, **cmd: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._read(wait)

    async def begin(self, ticker: bool = True, profile: str | None = None) -> None:
        await self.command(10, cmd="begin", ticker=ticker, profile=profile)

    async def end(self, ends: int, timeout: float) -> dict[str, Any]:
        return (await self.command(timeout + 30, cmd="end", ends=ends, timeout=timeout))["window"]

    # ---- the operator's socket -------------------------------------------------------------

    async def connect(self) -> None:
        self.ws = await connect(self.info["uri"], compression=None, max_size=None,
                                open_timeout=10, ping_interval=None, close_timeout=2)
        await self.ws.send(frame("bench-ops", "heartbeat", payload="online",
                                 protocol_version=7))
        await self.expect({"welcome"}, 1, 10)

    async def expect(self, kinds: set[str], count: int, timeout: float) -> list[tuple[float, dict]]:
        assert self.ws is not None
        got: list[tuple[float, dict]] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                raw = await self.ws.recv()
                t = time.time()
                obj = json.loads(raw)
                if obj.get("type") in kinds:
                    got.append((t, obj))
                elif obj.get("type") == "error" and obj.get("target") == "bench-ops":
                    raise RuntimeError(f"hub refused: {obj}")
        return got

    async def wake_all(self, names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        """Send one `wake` per agent back to back on one socket; the send time of each, and
        when each `wake_result` came back."""
        assert self.ws is not None
        sent: dict[str, float] = {}
        for name in names:
            text = frame("bench-ops", "wake", agent=name, reason="bench")
            sent[name] = time.time()
            await self.ws.send(text)
        replies = await self.expect({"wake_result"}, len(names), 30)
        answered = {obj["agent"]: t for t, obj in replies}
        if not all(obj.get("started") for _, obj in replies):
            raise RuntimeError(f"a wake did not start at once: {replies}")
        return sent, answered

    def stamp(self, session: str) -> float | None:
        try:
            return float((self.stamps / session).read_text().strip())
        except (OSError, ValueError):
            return None

    def stdout_bytes(self) -> int:
        total = 0
        for path in (self.dir / "ws").glob("*/runtime/logs/exec/*.stdout.log"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    async def stop(self) -> dict[str, Any]:
        bye: dict[str, Any] = {}
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.proc is not None and self.proc.returncode is None:
            try:
                bye = await self.command(60, cmd="quit")
                await asyncio.wait_for(self.proc.wait(), 30)
            except Exception:  # noqa: BLE001 -- end it by its own pid, whatever happened
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return bye


def frame(sender: str, type_: str, **fields: Any) -> str:
    body = {"sender": sender, "target": "System", "type": type_, "payload": "",
            "timestamp": time.time(), **fields}
    return json.dumps(body, separators=(",", ":"))


def sessions_of(window: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per session id: agent, and the feed time of start / pid / end, plus its own times."""
    out: dict[str, dict[str, Any]] = {}
    for t, kind, data in window["events"]:
        sid = data.get("id")
        if not sid:
            continue
        rec = out.setdefault(sid, {"agent": data.get("agent")})
        rec[f"{kind}_feed"] = t
        if kind == "session_start":
            rec["started"] = data.get("started")
        elif kind == "session_end":
            rec["ended"] = data.get("ended")
            rec["state"] = data.get("state")
    return out


def window_summary(w: dict[str, Any]) -> dict[str, Any]:
    keep = {k: w[k] for k in ("complete", "wall_s", "cpu_s", "children_cpu_s", "other_cores",
                              "rss_kib_end", "rss_kib_max", "lag")}
    keep["cpu_cores"] = w["cpu_s"] / max(w["wall_s"], 1e-9)
    return keep


def worst(windows: list[dict[str, Any]], key: str) -> float | None:
    """The worst loop-lag figure over windows that saw a tick (a window shorter than the
    ticker's 10 ms period has none)."""
    seen = [w["lag"][key] for w in windows if w["lag"]["ticks"]]
    return max(seen) if seen else None


def top_functions(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    """The profile's heaviest functions by own time, and by cumulative time."""
    stats = pstats.Stats(str(path))
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in table.items():
        rows.append({"func": f"{Path(file).name}:{line}({func})", "calls": nc,
                     "own_s": round(tt, 4), "cum_s": round(ct, 4)})
    by_own = sorted(rows, key=lambda r: -r["own_s"])[:limit]
    by_cum = sorted(rows, key=lambda r: -r["cum_s"])[:limit]
    return [{"by": "own"}, *by_own, {"by": "cumulative"}, *by_cum]


class Bench:
    def __init__(self, settings: Settings, root: Path, keep: bool) -> None:
        self.s = settings
        self.root = root
        self.keep = keep
        self.results: dict[str, list[dict[str, Any]]] = {k: [] for k in SECTIONS}
        self.failures: list[dict[str, Any]] = []
        self.profiles_dir = WORK_DIR / "profiles"

    async def host(self, n: int, label: str, command: str | None = None,
                   max_seconds: float = 300) -> Host:
        quiet = wait_quiet(0.3, self.s.quiet_max_wait)
        host = Host(self.root, n, command, label, max_seconds)
        info = await host.start()
        info["quiet"] = quiet
        await host.connect()
        return host

    async def finish(self, host: Host) -> dict[str, Any]:
        bye = await host.stop()
        if not self.keep:
            shutil.rmtree(host.dir, ignore_errors=True)
        return bye

    # ---- 0. the floor: the same spawns with no scheduler ----------------------------------

    async def floor(self, n: int, rounds: int, mode: str = "noop", seconds: float = 0,
                    cap: int = 0) -> dict[str, Any]:
        """N bare `asyncio.create_subprocess_exec` of the same agent script at once (one task
        each, like the scheduler's runs), from a plain asyncio process (this one, otherwise
        idle), logs to files, with the same 10 ms ticker: what spawning costs with no
        scheduler, no hub, no SQLite."""
        spec = Host(self.root, 0, None, f"floor-{mode}-{n}", 0)  # not started: script, stamps
        spec.set_mode(mode, seconds, cap)
        d, script, stamps = spec.dir, spec.script, spec.stamps
        loop = asyncio.get_running_loop()
        lags: list[float] = []

        async def tick() -> None:
            due = loop.time() + 0.010
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                now = loop.time()
                lags.append(max(0.0, now - due))
                due = now + 0.010

        async def one(sid: str) -> None:
            with open(d / f"{sid}.out", "ab") as out, open(d / f"{sid}.err", "ab") as err:
                proc = await asyncio.create_subprocess_exec(
                    str(script), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
                    cwd=str(d), env={**child_env(), "MARROW_SESSION": sid},
                    start_new_session=True)
            await proc.wait()

        lat: list[float] = []
        ticker = asyncio.create_task(tick())
        try:
            for r in range(rounds):
                t0 = time.time()
                await asyncio.wait_for(asyncio.gather(
                    *(one(f"floor-{r}-{i}") for i in range(n))), seconds + 60)
                for i in range(n):
                    with contextlib.suppress(OSError, ValueError):
                        lat.append(float((stamps / f"floor-{r}-{i}").read_text()) - t0)
        finally:
            ticker.cancel()
        if not self.keep:
            shutil.rmtree(d, ignore_errors=True)
        return {**ms_summary(lat), "lag_max_ms": round(1000 * max(lags, default=0.0), 1),
                "lag_p99_ms": round(1000 * (pct(lags, 99) or 0.0), 1), "ticks": len(lags)}

    # ---- 1. wake -> the agent's process runs ----------------------------------------------

    async def wake(self, n: int) -> None:
        rounds = max(self.s.rounds, min(self.s.samples // n, 20))
        log(f"wake: {n} agent(s), {rounds} round(s)")
        host = await self.host(n, f"wake-{n}")
        samples: dict[str, list[float]] = {k: [] for k in (
            "wake_result", "session_start", "session_pid", "process_started", "session_end")}
        windows = []
        try:
            for _ in range(rounds):
                await host.begin()
                sent, answered = await host.wake_all(host.names)
                w = await host.end(n, 30)
                windows.append(window_summary(w))
                for name, t in answered.items():
                    samples["wake_result"].append(t - sent[name])
                for sid, rec in sessions_of(w).items():
                    t0 = sent[rec["agent"]]
                    for kind in ("session_start", "session_pid", "session_end"):
                        if f"{kind}_feed" in rec:
                            samples[kind].append(rec[f"{kind}_feed"] - t0)
                    stamp = host.stamp(sid)
                    if stamp is not None:
                        samples["process_started"].append(stamp - t0)
                await asyncio.sleep(0.2)
        finally:
            bye = await self.finish(host)
        floor = await self.floor(n, rounds)
        self.results["wake"].append({
            "agents": n, "rounds": rounds, "host": host.info, "bye": bye,
            "latency_ms": {k: ms_summary(v) for k, v in samples.items()},
            "floor_bare_spawn_ms": floor,
            "lag_p99_ms_max_over_rounds": worst(windows, "p99_ms"),
            "lag_max_ms": worst(windows, "max_ms"),
            "cpu_s_per_run": sum(w["cpu_s"] for w in windows) / (n * rounds),
            "windows": windows})

    # ---- 3. a trivial run, wake -> session_end committed ----------------------------------

    async def full(self, n: int) -> None:
        rounds = max(self.s.rounds, min(self.s.samples // n, 20))
        log(f"full: {n} x `true`, {rounds} round(s)")
        host = await self.host(n, f"full-{n}", command="true")
        samples: dict[str, list[float]] = {"session_end": [], "session_start": [],
                                           "session_pid": [], "run_duration": []}
        windows = []
        profile = None
        try:
            for r in range(rounds + (1 if self.s.profile and n == max(self.s.full_agents)
                                     else 0)):
                profiled = r == rounds
                if profiled:
                    self.profiles_dir.mkdir(parents=True, exist_ok=True)
                    profile = self.profiles_dir / f"full-{n}.prof"
                await host.begin(profile=str(profile) if profiled else None)
                sent, _ = await host.wake_all(host.names)
                w = await host.end(n, 30)
                if profiled:
                    break
                windows.append(window_summary(w))
                for rec in sessions_of(w).values():
                    t0 = sent[rec["agent"]]
                    for kind in ("session_start", "session_pid", "session_end"):
                        if f"{kind}_feed" in rec:
                            samples[kind].append(rec[f"{kind}_feed"] - t0)
                    if rec.get("ended") and rec.get("started"):
                        samples["run_duration"].append(rec["ended"] - rec["started"])
                    if rec.get("state") != "ok":
                        self.failures.append({"section": "full", "agents": n, "session": rec})
                await asyncio.sleep(0.2)
        finally:
            bye = await self.finish(host)
        cell = {"agents": n, "rounds": rounds, "host": host.info, "bye": bye,
                "latency_ms": {k: ms_summary(v) for k, v in samples.items()},
                "cpu_ms_per_run": 1000 * sum(w["cpu_s"] for w in windows) / (n * rounds),
                "lag_p99_ms_max_over_rounds": worst(windows, "p99_ms"),
                "lag_max_ms": worst(windows, "max_ms"),
                "windows": windows}
        if profile is not None and profile.exists():
            cell["profile"] = {"file": str(profile.relative_to(REPO_DIR)),
                               "top": top_functions(profile)}
        self.results["full"].append(cell)

    # ---- 2. agents flooding their logs -----------------------------------------------------

    async def output(self, mode: str, n: int) -> None:
        seconds = self.s.out_seconds
        cap = self.s.bulk_cap_mb * 1024 * 1024
        log(f"output: {n} agent(s), {mode}, {seconds:g} s")
        host = await self.host(n, f"output-{mode}-{n}")
        profile = None
        if self.s.profile and n == max(self.s.agents):
            self.profiles_dir.mkdir(parents=True, exist_ok=True)
            profile = self.profiles_dir / f"output-{mode}-{n}.prof"
        try:
            host.set_mode(mode, seconds, cap)
            ref = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "ticker.py"), "--max-seconds", str(seconds + 120),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert ref.stdout is not None and ref.stdin is not None
            await asyncio.wait_for(ref.stdout.readline(), 10)
            await host.begin()
            t0 = time.time()
            sent, _ = await host.wake_all(host.names)
            w = await host.end(n, seconds + 60)
            wall = time.time() - t0
            ref.stdin.close()
            ref_out = json.loads(await asyncio.wait_for(ref.stdout.readline(), 10))
            await asyncio.wait_for(ref.wait(), 10)
            written = host.stdout_bytes()
            starts = []
            for sid, rec in sessions_of(w).items():
                stamp = host.stamp(sid)
                if stamp is not None:
                    starts.append(stamp - sent[rec["agent"]])
            states = {rec.get("state") for rec in sessions_of(w).values()}
            if states != {"ok"}:
                self.failures.append({"section": "output", "agents": n, "states": list(states)})
            cell = {"agents": n, "mode": mode, "seconds": seconds, "host": host.info,
                    "window": window_summary(w), "wake_to_all_ended_s": wall,
                    "reference_ticker": ref_out, "stdout_bytes": written,
                    "process_started_ms": ms_summary(starts),
                    "stdout_mb_per_s": written / 1e6 / max(w["wall_s"], 1e-9)}
            if profile is not None:
                # The same load once more, profiled (cProfile costs CPU: not in the numbers).
                host.set_mode(mode, seconds, cap)
                await host.begin(profile=str(profile))
                await host.wake_all(host.names)
                await host.end(n, seconds + 60)
                cell["profile"] = {"file": str(profile.relative_to(REPO_DIR)),
                                   "top": top_functions(profile)}
        finally:
            bye = await self.finish(host)
        cell["bye"] = bye
        # The same agents spawned by a bare asyncio process: which stalls are asyncio's own.
        cell["bare_asyncio_spawn"] = await self.floor(n, 1, mode, seconds, cap)
        self.results["output"].append(cell)

    # ---- 4. idle -------------------------------------------------------------------------------

    async def idle(self, n: int) -> None:
        seconds = self.s.idle_seconds
        log(f"idle: {n} agent(s), {seconds:g} s")
        host = await self.host(n, f"idle-{n}")
        try:
            await asyncio.sleep(2.0)  # past the first runs' follow-ups
            await host.begin(ticker=False)
            await asyncio.sleep(seconds)
            w = await host.end(0, 5)
            await host.begin(ticker=True)
            await asyncio.sleep(min(3.0, seconds))
            lag = await host.end(0, 5)
            unwatched = None
            if n == max(self.s.idle_agents):
                # Diagnostic: the same idle window with the config watch cancelled.
                await host.command(10, cmd="diag_no_watch")
                await host.begin(ticker=False)
                await asyncio.sleep(seconds)
                unwatched = await host.end(0, 5)
        finally:
            bye = await self.finish(host)
        self.results["idle"].append({
            "agents": n, "seconds": w["wall_s"], "host": host.info, "bye": bye,
            "cpu_s": w["cpu_s"], "cpu_s_per_min": 60 * w["cpu_s"] / w["wall_s"],
            "rss_kib": w["rss_kib_end"], "other_cores": w["other_cores"],
            "idle_lag": lag["lag"],
            "without_config_watch": None if unwatched is None else {
                "seconds": unwatched["wall_s"], "cpu_s": unwatched["cpu_s"],
                "cpu_s_per_min": 60 * unwatched["cpu_s"] / unwatched["wall_s"]}})

    async def run(self, only: list[str]) -> None:
        order = [(s, n) for s in ("wake",) if s in only for n in self.s.agents]
        order += [(s, n) for s in ("full",) if s in only for n in self.s.full_agents]
        order += [(f"output:{m}", n) for m in self.s.out_modes if "output" in only
                  for n in self.s.agents]
        order += [(s, n) for s in ("idle",) if s in only for n in self.s.idle_agents]
        for section, n in order:
            try:
                if section == "wake":
                    await self.wake(n)
                elif section == "full":
                    await self.full(n)
                elif section.startswith("output:"):
                    await self.output(section.split(":")[1], n)
                else:
                    await self.idle(n)
            except Exception as exc:  # noqa: BLE001 -- record it, go on with the next cell
                log(f"  FAILED: {exc!r}")
                self.failures.append({"section": section, "agents": n, "error": repr(exc)})


# ---- the report -------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} ms"


def report(doc: dict[str, Any]) -> str:
    r = doc["results"]
    lines = []
    m = doc["machine"]
    lines.append(f"Source: `{doc['file']}` ({'quick' if doc['settings']['quick'] else 'full'} "
                 f"run, {doc['started']}, {doc['duration_s']:.0f} s). Machine: {m['cpu_model']}, "
                 f"{m['cpus']} CPUs (`nproc` {doc['nproc']}), Python {m['python']}, "
                 f"kernel {m['kernel']}, commit `{(m['repo_commit'] or '')[:7]}`"
                 f"{' (dirty tree)' if m['repo_dirty'] else ''}.\n")
    if r["wake"]:
        lines += ["### 1. Wake -> agent process started (all N woken at once)\n",
                  "ms from the `wake` frame's send to: the agent's first act "
                  "(`$EPOCHREALTIME` in its bash), and the feed seeing the events committed. "
                  "Floor: the same script, N at once, spawned by a bare asyncio process.\n",
                  "| N | samples | wake_result p50 / p99 | process started p50 / p99 / max | "
                  "floor p50 / p99 / max | session_start committed p50 / p99 | "
                  "session_pid committed p99 | loop lag max | CPU per run |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in r["wake"]:
            L = c["latency_ms"]
            f = c["floor_bare_spawn_ms"]
            lines.append(
                f"| {c['agents']} | {L['process_started']['n']} | {fmt(L['wake_result']['p50'])}"
                f" / {fmt(L['wake_result']['p99'])} | {fmt(L['process_started']['p50'])} / "
                f"{fmt(L['process_started']['p99'])} / {fmt(L['process_started']['max'])} | "
                f"{fmt(f['p50'])} / {fmt(f['p99'])} / {fmt(f['max'])} | "
                f"{fmt(L['session_start']['p50'])} / {fmt(L['session_start']['p99'])} | "
                f"{fmt(L['session_pid']['p99'])} | {ms(c['lag_max_ms'])} | "
                f"{fmt(1000 * c['cpu_s_per_run'])} ms |")
        lines.append("")
    if r["output"]:
        lines += ["### 2. N agents printing as fast as they can (stdout to their log files)\n",
                  "| mode | N | window | agents' output | marrow-tui CPU | loop lag p50 / p99 / "
                  "max (began at) | ticks > 50 ms | reference ticker p99 / max | last agent "
                  "started | bare asyncio spawn: lag max / last started | RSS max | other load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in r["output"]:
            w = c["window"]
            lag = w["lag"]
            ref = c["reference_ticker"]
            lines.append(
                f"| {c['mode']} | {c['agents']} | {fmt(w['wall_s'], 2)} s | "
                f"{fmt(c['stdout_bytes'] / 1e6, 0)} MB ({fmt(c['stdout_mb_per_s'], 0)} MB/s) | "
                f"{fmt(w['cpu_s'], 3)} s ({fmt(100 * w['cpu_cores'])} % of a core) | "
                f"{fmt(lag['p50_ms'], 2)} / {fmt(lag['p99_ms'])} / {fmt(lag['max_ms'])} ms "
                f"({fmt(lag.get('max_began_s'), 2)} s) | "
                f"{lag['over_50ms']} of {lag['ticks']} | {fmt(ref['p99_ms'])} / "
                f"{fmt(ref['max_ms'])} ms | {fmt(c['process_started_ms']['max'], 0)} ms | "
                + (f"{fmt(b['lag_max_ms'])} / {fmt(b['max'], 0)} ms | "
                   if (b := c.get("bare_asyncio_spawn")) else "– | ")
                + f"{fmt(w['rss_kib_max'] / 1024)} MiB | "
                f"{fmt(w['other_cores'], 2)} cores |")
        lines.append("")
    if r["full"]:
        lines += ["### 3. A trivial agent (`true`): wake -> session_end committed\n",
                  "| N at once | samples | session_end p50 / p99 / max | run (start->end) p50 "
                  "| CPU of marrow-tui per run | loop lag p99 (worst round) / max |",
                  "|---|---|---|---|---|---|"]
        for c in r["full"]:
            L = c["latency_ms"]
            lines.append(
                f"| {c['agents']} | {L['session_end']['n']} | {fmt(L['session_end']['p50'])} / "
                f"{fmt(L['session_end']['p99'])} / {fmt(L['session_end']['max'])} ms | "
                f"{fmt(L['run_duration']['p50'])} ms | {fmt(c['cpu_ms_per_run'])} ms | "
                f"{ms(c['lag_p99_ms_max_over_rounds'])} / {ms(c['lag_max_ms'])} |")
        lines.append("")
    if r["idle"]:
        lines += ["### 4. Idle: configured agents, heartbeat far away\n",
                  "| N | window | CPU | CPU per minute | RSS | loop lag p99 / max (idle) | "
                  "CPU per minute with the config watch cancelled (diagnostic) |",
                  "|---|---|---|---|---|---|---|"]
        for c in r["idle"]:
            lag = c["idle_lag"]
            lines.append(
                f"| {c['agents']} | {fmt(c['seconds'])} s | {fmt(c['cpu_s'], 3)} s | "
                f"{fmt(c['cpu_s_per_min'], 2)} s/min ({fmt(100 * c['cpu_s_per_min'] / 60, 2)} % of "
                f"a core) | {fmt(c['rss_kib'] / 1024)} MiB | {fmt(lag['p99_ms'], 2)} / "
                f"{fmt(lag['max_ms'], 2)} ms | "
                + (f"{fmt(c['without_config_watch']['cpu_s_per_min'], 2)} s/min |"
                   if c.get("without_config_watch") else "– |"))
        lines.append("")
    hosts = [(s, c) for s in ("wake", "full", "output", "idle") for c in r[s]]
    if hosts:
        lines += ["### Start-up and shutdown of each marrow-tui process\n",
                  "| cell | N | hosted() up | first runs (N at once, heartbeat) ended | RSS at "
                  "ready | stop |", "|---|---|---|---|---|---|"]
        for s, c in hosts:
            h = c["host"]
            name = s + (f":{c['mode']}" if "mode" in c else "")
            lines.append(f"| {name} | {c['agents']} | {fmt(1000 * h['hosted_s'], 0)} ms | "
                         f"{fmt(1000 * h['first_runs_s'], 0)} ms | {fmt(h['rss_kib'] / 1024)} MiB"
                         f" | {fmt(1000 * c.get('bye', {}).get('stop_s', float('nan')), 0)} ms |")
        lines.append("")
    if doc["failures"]:
        lines += ["### Failures\n"] + [f"* `{json.dumps(f)[:400]}`" for f in doc["failures"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="The scheduler benchmark (see benchmarks/README.md)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds, 2 s output windows, 5 s idle; about 1 minute")
    ap.add_argument("--agents", default="1,10,50", help="agent counts for wake and output")
    ap.add_argument("--full-agents", default="1,50", help="agent counts for the `true` runs")
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections: wake,full,output,idle")
    ap.add_argument("--rounds", type=int, help="wake rounds per cell (default 5, quick 2)")
    ap.add_argument("--output-seconds", type=float, help="how long each agent prints (5; quick 2)")
    ap.add_argument("--modes", default=None, help="output modes: lines,bulk (quick: lines)")
    ap.add_argument("--bulk-cap-mb", type=int, default=200, help="bulk: at most this per agent")
    ap.add_argument("--idle-seconds", type=float, help="idle window (10; quick 5)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                    help="one extra cProfiled round for the largest N of full and output, not "
                         "in the numbers (default: on, off with --quick)")
    ap.add_argument("--tmp-dir", default=None, help="where the temp folder goes (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (state, logs)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--results-dir", default=str(RESULTS_DIR))
    ap.add_argument("--report", nargs="?", const="", default=None, metavar="FILE",
                    help="only print the markdown tables of a result file (default: newest)")
    args = ap.parse_args()
    results_dir = Path(args.results_dir)
    if args.report is not None:
        path = Path(args.report) if args.report else max(results_dir.glob("scheduler-*.json"))
        doc = json.loads(path.read_text())
        print(report(doc))
        return 0
    quick = args.quick
    settings = Settings(
        quick=quick, agents=[int(x) for x in args.agents.split(",")],
        full_agents=[int(x) for x in args.full_agents.split(",")],
        rounds=args.rounds or (2 if quick else 5), samples=40 if quick else 100,
        out_seconds=args.output_seconds or (2.0 if quick else 5.0),
        out_modes=(args.modes or ("lines" if quick else "lines,bulk")).split(","),
        bulk_cap_mb=args.bulk_cap_mb,
        idle_agents=[50] if quick else [1, 50],
        idle_seconds=args.idle_seconds or (5.0 if quick else 10.0),
        profile=(not quick) if args.profile is None else args.profile,
        quiet_max_wait=2.0 if quick else 4.0)
    only = [s for s in args.only.split(",") if s]
    started = datetime.now(UTC)
    t0 = time.time()
    root = Path(tempfile.mkdtemp(prefix="marrow-schedbench-", dir=args.tmp_dir))
    log(f"temp folder {root}")
    bench = Bench(settings, root, args.keep)
    try:
        asyncio.run(bench.run(only))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    name = f"scheduler-{started:%Y%m%dT%H%M%SZ}{'-quick' if quick else ''}"
    name += f"-{args.tag}" if args.tag else ""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    doc = {"schema": "scheduler-1", "file": str(path.relative_to(REPO_DIR))
           if path.is_relative_to(REPO_DIR) else str(path),
           "started": started.isoformat(timespec="seconds"), "duration_s": time.time() - t0,
           "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
           "settings": asdict(settings), "only": only,
           "machine": machine_description(REPO_DIR), "nproc": len(os.sched_getaffinity(0)),
           "temp_folder_fs": _fs_of(root.parent), "results": bench.results,
           "failures": bench.failures}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(report(doc))
    log(f"wrote {path}")
    return 1 if bench.failures else 0


def _fs_of(path: Path) -> str:
    """The file system type of the temp folder (tmpfs makes SQLite's fsync free)."""
    best, fs = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and \
                    len(parts[1]) > len(best):
                best, fs = parts[1], parts[2]
    return fs


if __name__ == "__main__":
    sys.exit(main())
