"""The orchestrator: fresh console process per run, scenarios interleaved, raw JSON out.

Method (the hub benchmark's, see benchmarks/README.md): repetitions are the outer loop and the
scenarios the inner one, so a noisy minute on this shared 2-vCPU VM hits both alike; before each
run we wait (bounded) for a quiet machine; a run whose measured window saw more than 0.5 cores of
other load is retried once (full mode, at most ``retry_budget`` retries in all) and the cleaner
try kept. Each console process starts the load process itself (so it knows its PID and can
measure its CPU) and writes one JSON document; this runner only collects them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubbench.procinfo import machine_description, wait_quiet

from . import report

CONSOLE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = CONSOLE_DIR.parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work" / "console"
RESULTS_DIR = BENCH_DIR / "results"
SCENARIOS = ("load", "claims10k")


@dataclass
class Settings:
    quick: bool
    runs: int
    agents: int
    rate: float
    warmup: float
    steady: float
    keys: int
    key_interval: float
    claims: int
    quiet_busy_cores: float
    quiet_max_wait: float
    noisy_other_cores: float
    tries: int
    retry_budget: int
    run_timeout: float
    patches: str


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(CONSOLE_DIR), str(BENCH_DIR), str(REPO_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("TEXTUAL", None)  # no devtools
    env["PYTHONHASHSEED"] = "0"
    return env


def other_cores(result: dict[str, Any]) -> float:
    """Other load during the run's main window (the steady window, or the fill)."""
    window = result.get("steady") or result.get("fill_window") or {}
    return float((window.get("load") or {}).get("other_cores", 0.0))


class Bench:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.s = settings
        self.run_dir = run_dir
        self.records: list[dict[str, Any]] = []
        self.retries_left = settings.retry_budget
        self._seq = 0

    def console_args(self, scenario: str) -> list[str]:
        s = self.s
        extra = ["--patch", s.patches] if s.patches else []
        return extra + self._scenario_args(scenario)

    def _scenario_args(self, scenario: str) -> list[str]:
        s = self.s
        if scenario == "load":
            return ["--agents", str(s.agents), "--rate", str(s.rate), "--warmup", str(s.warmup),
                    "--steady", str(s.steady), "--keys", str(s.keys),
                    "--key-interval", str(s.key_interval),
                    "--max-seconds", str(s.run_timeout)]
        return ["--claims", str(s.claims), "--key-interval", "0.1"]

    def one(self, scenario: str, rep: int, attempt: int) -> dict[str, Any]:
        self._seq += 1
        cell = self.run_dir / f"{self._seq:03d}-{scenario}-r{rep}-a{attempt}"
        cell.mkdir(parents=True, exist_ok=True)
        out = cell / "result.json"
        rec: dict[str, Any] = {"scenario": scenario, "rep": rep, "attempt": attempt,
                               "dir": str(cell.relative_to(BENCH_DIR))}
        rec["quiet"] = wait_quiet(self.s.quiet_busy_cores, self.s.quiet_max_wait)
        cmd = [sys.executable, "-m", "consolebench.console_proc", "--scenario", scenario,
               "--json", str(out), "--work", str(cell), *self.console_args(scenario)]
        rec["argv"] = " ".join(shlex.quote(c) for c in cmd[1:])
        t0 = time.monotonic()
        with open(cell / "console.stdout", "wb") as so, open(cell / "console.stderr", "wb") as se:
            try:
                proc = subprocess.run(cmd, env=child_env(), cwd=REPO_DIR, stdout=so, stderr=se,
                                      timeout=self.s.run_timeout, check=False)
                rec["exit"] = proc.returncode
            except subprocess.TimeoutExpired:
                rec["exit"] = "timeout"
        rec["process_wall_s"] = round(time.monotonic() - t0, 2)
        if out.exists():
            rec["result"] = json.loads(out.read_text())
        else:
            rec["result"] = {"ok": False,
                             "error": (cell / "console.stderr").read_text()[-3000:]}
        rec["ok"] = bool(rec["result"].get("ok"))
        rec["other_cores"] = round(other_cores(rec["result"]), 3)
        return rec

    def cell(self, scenario: str, rep: int) -> dict[str, Any]:
        tries = []
        for attempt in range(self.s.tries):
            rec = self.one(scenario, rep, attempt)
            tries.append(rec)
            if not rec["ok"] or rec["other_cores"] <= self.s.noisy_other_cores:
                break
            if attempt + 1 >= self.s.tries or self.retries_left <= 0:
                break
            self.retries_left -= 1
            log(f"   noisy ({rec['other_cores']:.2f} other cores); retrying")
        best = min(tries, key=lambda r: (not r["ok"], r["other_cores"]))
        best["tries"] = len(tries)
        best["noisy"] = best["other_cores"] > self.s.noisy_other_cores
        self.records.append(best)
        return best


def get_path(obj: Any, path: str) -> dict[str, Any]:
    for part in path.split("."):
        obj = obj.get(part, {}) if isinstance(obj, dict) else {}
    return obj if isinstance(obj, dict) else {}


def summary_line(rec: dict[str, Any]) -> str:
    r = rec["result"]
    if not rec["ok"]:
        return f"FAIL {str(r.get('error', ''))[-300:]}"
    if rec["scenario"] == "load":
        st = r.get("steady", {})
        keys = (r.get("load_keys") or {}).get("keys", {})
        rows = get_path(st, "rows.by_table.claims.send_to_row")
        return (f"ok events/s={st.get('events_per_s')} changed/s={st.get('changed_handled_per_s')} "
                f"screen/s={st.get('screen_updates_per_s')} "
                f"console={st.get('load', {}).get('console_cores', 0):.2f} cores "
                f"row p50/p99={rows.get('p50')}/{rows.get('p99')} ms "
                f"keys p50/p99={keys.get('p50')}/{keys.get('p99')} ms "
                f"other={rec['other_cores']:.2f}")
    op = r.get("open", {})
    lag = (r.get("fill_window") or {}).get("lag", {})
    scroll = (r.get("scroll") or {}).get("keys", {})
    return (f"ok first key answered {op.get('first_key_answered_s')} s, filled "
            f"{op.get('table_settled_s')} s, max stall {lag.get('max')} ms, scroll p99 "
            f"{scroll.get('p99')} ms other={rec['other_cores']:.2f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="marrow-tui console benchmark (see benchmarks/README.md)")
    p.add_argument("--quick", action="store_true", help="1 run each, shorter windows (~1 min)")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3, quick 1)")
    p.add_argument("--only", default=",".join(SCENARIOS), help="scenarios: load,claims10k")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0, help="frames/s per agent")
    p.add_argument("--steady", type=float, default=None, help="steady window s (8, quick 4)")
    p.add_argument("--keys", type=int, default=None, help="keys per key phase (30, quick 15)")
    p.add_argument("--claims", type=int, default=10_000)
    p.add_argument("--tries", type=int, default=None, help="tries per run when noisy (2, quick 1)")
    p.add_argument("--patch", default="", metavar="NAMES",
                   help="experiment: prototype fixes applied in the console process "
                        "(consolebench/patches.py; 'all' for every one); never used for targets")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-report", action="store_true", help="do not regenerate CONSOLE.md")
    p.add_argument("--keep-state", action="store_true", help="keep the state directories")
    p.add_argument("--report-only", nargs="?", const="latest", default=None, metavar="JSON",
                   help="only regenerate CONSOLE.md (from the newest run, or the given file)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    q = args.quick
    return Settings(
        quick=q,
        runs=args.runs or (1 if q else 3),
        agents=args.agents,
        rate=args.rate,
        warmup=1.0 if q else 2.0,
        steady=args.steady or (4.0 if q else 8.0),
        keys=args.keys or (15 if q else 30),
        key_interval=0.2,
        claims=args.claims,
        quiet_busy_cores=0.3,
        quiet_max_wait=2.0 if q else 4.0,
        noisy_other_cores=0.5,
        tries=args.tries or (1 if q else 2),
        retry_budget=0 if q else 2,
        run_timeout=150.0,
        patches=args.patch,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only is not None:
        src = None if args.report_only == "latest" else Path(args.report_only)
        log(f"wrote {report.write_console_md(args.results_dir, src)}")
        return 0
    settings = settings_from(args)
    scenarios = [x for x in args.only.split(",") if x]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = "quick" if settings.quick else "full"
    tag = args.tag or ("patched" if settings.patches else "")
    name = f"console-{stamp}{('-' + tag) if tag else ''}"
    run_dir = WORK_DIR / name
    run_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, run_dir)
    started = time.time()
    log(f"run {name} ({mode}): {scenarios} x {settings.runs}; logs in {run_dir}")
    completed = False
    try:
        for rep in range(settings.runs):
            for scenario in scenarios:
                rec = bench.cell(scenario, rep)
                log(f"{scenario:<9} rep {rep} {summary_line(rec)}")
        completed = True
    finally:
        doc = {
            "schema": "console-1",
            "name": name,
            "mode": mode,
            "completed": completed,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
            "started_at": started,
            "wall_s": round(time.time() - started, 1),
            "scenarios": scenarios,
            "settings": asdict(settings),
            "experiment": bool(settings.patches),
            "machine": machine_description(REPO_DIR),
            "records": bench.records,
        }
        out = args.results_dir / f"{name}.json"
        out.write_text(json.dumps(doc, indent=1, default=str))
        log(f"wrote {out} ({doc['wall_s']} s)")
        if not args.keep_state:
            for state in run_dir.glob("*/state"):
                shutil.rmtree(state, ignore_errors=True)
    if not args.no_report:
        log(f"wrote {report.write_console_md(args.results_dir, None)}")
    return 0 if completed else 1
