"""What the +N/-M of 50 running issues costs the runtime: target < 5 % of a core.

    python benchmarks/review/review_stat_bench.py [--issues 50] [--runs 2] [--window 60]
        [--warmup 10] [--files 200] [--commit-odds 0.15] [--tag T] [--profile FILE]

Per run, in a fresh temp folder: a real git repository (`--files` tracked files of 40 lines
on `main`), `--issues` issues in Todo, and a WORKFLOW.md that runs all of them at once with
the agent `review/agent.py` (a plain command that keeps its run alive: every 1-3 s it
appends lines to a file of its own, sometimes rewrites a line of a tracked file, and with
`--commit-odds` commits everything). The runtime is its own process: `marrow-tui --no-ui
--workflow W` (through `review/runtime_probe.py`, which only counts). Two setups, alternated
run by run on the same machine:

* **worktrees**: `workspace.git: {repo, base: main}`: each issue's workspace is a worktree,
  and the +N/-M watch (reviews.py StatWatch) looks at them every 2 s;
* **plain**: no `workspace.git`; an `after_create` hook clones the repository into the
  workspace (`git clone --shared`), so the agents do the same git work and the watch has
  nothing to look at. The baseline.

Once every run has started and `--warmup` seconds passed, the runtime's CPU is read from
/proc/PID/stat over `--window` seconds: its own (utime + stime, all threads) and its reaped
children's (cutime + cstime: the git commands the watch runs; the agents are its children
too but are not reaped inside the window, and their own git commands are theirs). The cost
of +N/-M is worktrees minus plain. The probe's counters say how many looks and git measures
ran and how many `review_stat` events went out in the window: if the numbers never changed,
the benchmark measured nothing, and the result says so.

Then, in this process, on the worktrees the last run left (its runtime and agents stopped),
the watch's look (`reviews.StatWatch._look`) is timed: the first look (all issues new), a look when nothing changed,
a look after commits in `--changed` worktrees, and a look with every issue marked dirty (what
the end of a run forces); wall time and CPU (this process and its git children) per cycle and
per issue.

Writes `benchmarks/results/review-stat-<UTC time>[-tag].json` and prints a summary. Nothing
is asserted. `--profile FILE` runs the runtime of the first worktrees run under cProfile
(all threads' Python time is not in it: the event loop's thread only) and writes FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))

from hubbench.procinfo import CLK_TCK, SystemTimes, machine_description  # noqa: E402

from marrow_tui.orchestrator.workspaces import worktree_of  # noqa: E402
from marrow_tui.reviews import STAT_EVERY, StatWatch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TARGET_CORES = 0.05
#: the longest the runs may take to start, and the runtime to stop
START_LIMIT = 240.0
STOP_LIMIT = 30.0
IDENTITY = ("-c", "user.name=Bench", "-c", "user.email=bench@example.com")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


# ---- the setup ------------------------------------------------------------------------------


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for k in range(files):
        body = "".join(f"def f{k}_{n}():\n    return {n}\n" for n in range(20))
        (repo / "src" / f"mod{k}.py").write_text(body)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


WORKFLOW = """---
tracker:
  kind: local
  root: issues
polling:
  interval_ms: 30000
workspace:
  root: ws
{git}agent:
  command: '"{python}" "{agent}" "{stop}" "{pids}" {odds}'
  max_concurrent_agents: {issues}
  max_turns: 20
  stall_timeout_ms: 0
  prompt_timeout_ms: 0
{hooks}---
Work on {{{{ issue.identifier }}}}.
"""
GIT = "  git:\n    repo: repo\n    base: main\n"
CLONE = "hooks:\n  after_create: |\n    git clone -q --shared \"{repo}\" .\n"


def make_setup(root: Path, *, worktrees: bool, issues: int, files: int, odds: float) -> Path:
    repo = make_repo(root, files)
    todo = root / "issues" / "Todo"
    todo.mkdir(parents=True)
    for n in range(1, issues + 1):
        (todo / f"R-{n}.md").write_text(f"---\ntitle: work item {n}\n---\nChange things.\n")
    (root / "pids").mkdir()
    workflow = root / "WORKFLOW.md"
    workflow.write_text(WORKFLOW.format(
        git=GIT if worktrees else "", python=sys.executable, agent=HERE / "agent.py",
        stop=root / "stop", pids=root / "pids", odds=odds, issues=issues,
        hooks="" if worktrees else CLONE.format(repo=repo)))
    return workflow


# ---- the runtime process --------------------------------------------------------------------


def proc_times(pid: int) -> dict[str, float]:
    """utime, stime, cutime, cstime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(x) / CLK_TCK for x in fields[11:15])
    return {"own": utime + stime, "children": cutime + cstime}


def read_counters(path: Path) -> dict[str, Any]:
    for _ in range(20):  # the probe replaces it atomically; it may not be written yet
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
    return {"counters": {}, "last_stat": {}}


class Runtime:
    """marrow-tui --no-ui on the workflow, through the probe; its output lines kept."""

    def __init__(self, root: Path, workflow: Path, profile: Path | None) -> None:
        self.counters = root / "counters.json"
        self.stderr = (root / "runtime.stderr.log").open("w")
        python = [sys.executable]
        if profile is not None:
            python += ["-m", "cProfile", "-o", str(profile)]
        self.proc = subprocess.Popen(
            [*python, str(HERE / "runtime_probe.py"), str(self.counters), "--no-ui", "--host",
             "127.0.0.1", "--port", "0", "--workflow", str(workflow), "--state-dir",
             str(root / "state")], stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def started(self) -> int:
        return sum(" started (" in line for line in list(self.lines))

    def ended(self) -> list[str]:
        return [line for line in list(self.lines) if line.split()[1:2] == ["run"]
                and " started (" not in line]

    def wait_started(self, count: int) -> float:
        t0 = time.monotonic()
        while self.started() < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"marrow-tui exited ({self.proc.returncode}) before "
                                   f"{count} runs started")
            if time.monotonic() - t0 > START_LIMIT:
                raise RuntimeError(f"only {self.started()} of {count} runs started in "
                                   f"{START_LIMIT:g} s")
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_LIMIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_LIMIT)
        self.reader.join(timeout=STOP_LIMIT)
        self.stderr.close()


def end_agents(root: Path) -> int:
    """Stop the agents (the stop file), then end any left by their own pid."""
    (root / "stop").touch()
    left = 0
    deadline = time.monotonic() + 10
    for entry in (root / "pids").iterdir():
        pid = int(entry.name)
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            left += 1
            os.kill(pid, signal.SIGKILL)
    return left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def commits_made(root: Path, worktrees: bool, issues: int) -> int:
    total = 0
    for n in range(1, issues + 1):
        if worktrees:
            total += int(git(root / "repo", "rev-list", "--count", f"main..marrow/R-{n}"))
        elif (root / "ws" / f"R-{n}" / ".git").exists():
            total += int(git(root / "ws" / f"R-{n}", "rev-list", "--count", "origin/main..HEAD"))
    return total


def one_run(root: Path, args: argparse.Namespace, *, worktrees: bool,
            profile: Path | None) -> dict[str, Any]:
    workflow = make_setup(root, worktrees=worktrees, issues=args.issues, files=args.files,
                          odds=args.commit_odds)
    runtime = Runtime(root, workflow, profile)
    try:
        start_s = runtime.wait_started(args.issues)
        time.sleep(args.warmup)  # the first looks at the new worktrees are not measured
        before, sys_before = proc_times(runtime.proc.pid), SystemTimes.read()
        counted_before = read_counters(runtime.counters)
        ended_before = len(runtime.ended())
        time.sleep(args.window)  # the measured window itself
        after, sys_after = proc_times(runtime.proc.pid), SystemTimes.read()
        counted_after = read_counters(runtime.counters)
        ended_in_window = runtime.ended()[ended_before:]
    finally:
        runtime.stop()
        left = end_agents(root)
    wall = sys_after.wall - sys_before.wall
    own = after["own"] - before["own"]
    children = after["children"] - before["children"]
    busy = (sys_after.busy - sys_before.busy) / wall
    counters = {label: {"cpu_s": round(value[0] - counted_before["counters"].get(
                            label, [0.0, 0])[0], 4),
                        "calls": value[1] - counted_before["counters"].get(label, [0.0, 0])[1]}
                for label, value in counted_after["counters"].items()}
    last = counted_after["last_stat"]
    return {
        "setup": "worktrees" if worktrees else "plain",
        "runs_started_s": round(start_s, 2),
        "window_s": round(wall, 2),
        "runtime_own_cores": round(own / wall, 4),
        "runtime_children_cores": round(children / wall, 4),
        "runtime_total_cores": round((own + children) / wall, 4),
        "machine_busy_cores": round(busy, 3),
        "other_cores": round(max(0.0, busy - (own + children) / wall), 3),
        "window_counters": counters,
        "issues_with_nonzero_stat": sum(1 for v in last.values() if v[0]),
        "last_stats_sample": dict(sorted(last.items())[:5]),
        "runs_ended_in_window": ended_in_window[:10],
        "agents_killed_at_end": left,
        "commits_by_agents": commits_made(root, worktrees, args.issues),
    }


# ---- the watch's look in this process -----------------------------------------------------------


def cpu_now() -> float:
    """CPU seconds of this process and its reaped children (git), to the microsecond."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                           resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_look(review: StatWatch, names: list[str],
               dirty: set[str]) -> tuple[float, float, int]:
    wall0, cpu0 = time.perf_counter(), cpu_now()
    found = review._look(names, dirty)
    return (time.perf_counter() - wall0) * 1000, (cpu_now() - cpu0) * 1000, len(found)


def summary(samples: list[tuple[float, float, int]], per: int) -> dict[str, Any]:
    walls = [s[0] for s in samples]
    cpus = [s[1] for s in samples]
    return {"cycles": len(samples), "wall_ms_median": round(statistics.median(walls), 2),
            "cpu_ms_median": round(statistics.median(cpus), 2),
            "cpu_ms_max": round(max(cpus), 2),
            "cpu_ms_per_issue": round(statistics.median(cpus) / max(per, 1), 3),
            "issues_measured": [s[2] for s in samples]}


def look_cycles(root: Path, issues: int, changed: int, repeats: int) -> dict[str, Any]:
    """Time the watch's look on the worktrees a run left (agents and runtime stopped)."""
    ws = root / "ws"
    names = [f"R-{n}" for n in range(1, issues + 1)]
    review = StatWatch(lambda: {}, lambda name: worktree_of(ws, name),
                       lambda name, counts: None)
    out: dict[str, Any] = {"first look (every issue new)": summary(
        [timed_look(review, names, set())], issues)}
    out["quiet look (nothing changed)"] = summary(
        [timed_look(review, names, set()) for _ in range(repeats)], issues)
    samples = []
    for rep in range(repeats):
        for name in names[:changed]:
            place = ws / name
            with (place / "work" / "bench.txt").open("a") as fh:
                fh.write(f"look {rep}\n")
            git(place, "add", "-A")
            git(place, "commit", "-qm", f"look {rep}")
        samples.append(timed_look(review, names, set()))
    out[f"look after commits in {changed} worktrees"] = summary(samples, changed)
    out["look with every issue dirty (runs ended)"] = summary(
        [timed_look(review, names, set(names)) for _ in range(max(repeats // 4, 2))],
        issues)
    return out


# ---- the whole ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--commit-odds", type=float, default=0.15)
    parser.add_argument("--changed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=("both", "worktrees"), default="both")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    cycles: dict[str, Any] = {}
    setups = (True, False) if args.only == "both" else (True,)
    for rep in range(args.runs):
        for worktrees in setups:
            root = Path(tempfile.mkdtemp(prefix="marrow-revbench-"))
            try:
                label = "worktrees" if worktrees else "plain"
                log(f"run {rep + 1}/{args.runs}: {label}, {args.issues} issues")
                profile = args.profile if worktrees and rep == 0 else None
                record = one_run(root, args, worktrees=worktrees, profile=profile)
                log(f"  runtime {record['runtime_own_cores']:.4f} cores own + "
                    f"{record['runtime_children_cores']:.4f} children; "
                    f"review_stat {record['window_counters'].get('review_stat events')}")
                runs.append(record)
                if worktrees and not cycles:
                    cycles = look_cycles(root, args.issues, args.changed, args.repeats)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    report = build_report(args, runs, cycles)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"review-stat-{stamp}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {out}")
    return 0


def build_report(args: argparse.Namespace, runs: list[dict[str, Any]],
                 cycles: dict[str, Any]) -> dict[str, Any]:
    def median(setup: str, key: str) -> float | None:
        values = [r[key] for r in runs if r["setup"] == setup]
        return round(statistics.median(values), 4) if values else None

    cost = {key: (None if median("plain", key) is None else
                  round(median("worktrees", key) - median("plain", key), 4))
            for key in ("runtime_own_cores", "runtime_total_cores")}
    stats = [r["window_counters"].get("review_stat events", {}).get("calls", 0)
             for r in runs if r["setup"] == "worktrees"]
    return {
        "schema": "review-stat-1",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        | {"STAT_EVERY": STAT_EVERY},
        "machine": machine_description(REPO),
        "target_cores": TARGET_CORES,
        "summary": {
            "worktrees_total_cores_median": median("worktrees", "runtime_total_cores"),
            "plain_total_cores_median": median("plain", "runtime_total_cores"),
            "cost_of_stats_cores (worktrees - plain)": cost,
            "review_stat_events_per_window": stats,
            "stats_changed": bool(stats) and min(stats) > 0,
            "meets_target": (cost["runtime_total_cores"] is not None
                             and cost["runtime_total_cores"] < TARGET_CORES),
        },
        "runs": runs,
        "look_cycles": cycles,
    }


if __name__ == "__main__":
    raise SystemExit(main())
