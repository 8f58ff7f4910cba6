"""What the +N/-M of 50 running issues costs the runtime.

    python benchmarks/review/stat_load.py [--issues 50] [--window 60] [--tag T]

A real git repository in a temporary folder, a WORKFLOW.md with `--issues` issues in Todo and
`agent.max_concurrent_agents` as many, and an agent that keeps its run alive in its worktree:
every 2 s it appends a line to a file, and every 5th time it commits (so HEAD, the index and
the branch move, and the numbers change). The runtime, its hub and the orchestrator run in
this process (`host.hosted`, as `marrow-tui --no-ui` runs them), so the `review_stat` events
are counted as they are published.

Two runs, one after the other, each measured over `--window` seconds once every run is up:
- **worktrees**: `workspace.git` on: each issue a git worktree, its +N/-M watched
  (reviews.py StatWatch: a few stat() calls per worktree every 2 s, git in a thread when one
  changed, or after a run or a turn ended);
- **plain**: the same agents in plain folders (no `workspace.git`: nothing to watch).

The cost is the process's CPU (user + system, its threads included) plus that of the git
processes it ran and reaped (the agents run on, so theirs is not counted), as a share of one
core; the difference between the two runs is what the +N/-M costs. Then the watcher's look is
timed directly on the worktrees the first run left: with nothing changed (the stat() calls
only) and with every worktree measured again (50 `git` stats).

Writes `benchmarks/results/review-stat-<UTC time>[-tag].json` and prints the figures. Nothing
is asserted: the target (< 5 % of a core) is read from the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from hubbench.procinfo import machine_description  # noqa: E402 (the path is set above)
from marrow_tui.core.events import Event  # noqa: E402
from marrow_tui.host import hosted  # noqa: E402
from marrow_tui.hub.server import HubOptions  # noqa: E402
from marrow_tui.orchestrator.workspaces import worktree_of  # noqa: E402
from marrow_tui.reviews import StatWatch  # noqa: E402
from marrow_tui.runtime import RuntimeOptions  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TARGET_SHARE = 0.05
#: the longest the runs may take to be up
START_TIMEOUT = 180.0

AGENT = """#!/bin/sh
cat > /dev/null
i=0
while true; do
  sleep 2
  i=$((i+1))
  echo "line $i of $MARROW_ISSUE" >> work.txt
  if [ $((i % 5)) -eq 0 ]; then
    git add -A >/dev/null 2>&1
    git -c user.name=agent -c user.email=agent@example.com commit -qm "step $i" \\
      >/dev/null 2>&1
  fi
done
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def setup(root: Path, issues: int, worktrees: bool) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for n in range(20):
        (repo / "src" / f"m{n}.py").write_text(f"def f{n}():\n    return {n}\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=r", "-c", "user.email=r@example.com", "commit", "-qm", "base")
    agent = root / "agent.sh"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    todo = root / "issues" / "Todo"
    todo.mkdir(parents=True)
    for n in range(1, issues + 1):
        (todo / f"LOAD-{n}.md").write_text(f"---\ntitle: load {n}\npriority: 2\n---\nWork.\n")
    git_line = "  git: {repo: repo, base: main}\n" if worktrees else ""
    workflow = root / "WORKFLOW.md"
    workflow.write_text(f"""---
tracker:
  kind: local
  root: issues
  active_states: [Todo, In Progress]
  terminal_states: [Done, Cancelled]
polling:
  interval_ms: 30000
workspace:
  root: worktrees
{git_line}agent:
  command: '{agent}'
  max_concurrent_agents: {issues}
  stall_timeout_ms: 0
  prompt_timeout_ms: 0
---
Work on {{{{ issue.identifier }}}}.
""")
    return workflow


def cpu_seconds() -> float:
    """This process's CPU and its reaped children's (the git processes it ran)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


async def measure(root: Path, issues: int, window: float, worktrees: bool) -> dict[str, Any]:
    workflow = setup(root, issues, worktrees)
    stats: list[Event] = []
    options = RuntimeOptions(state_dir=root / "state")
    async with hosted(options, HubOptions(host="127.0.0.1", port=0), workflow=workflow) as unit:
        unit.runtime.subscribe(lambda events: stats.extend(
            e for e in events if e.kind == "review_stat"))
        sessions = unit.runtime.state.sessions
        started = time.monotonic()
        while len(sessions.running()) < issues:
            if time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"only {len(sessions.running())} of {issues} runs started")
            await asyncio.sleep(0.5)
        up = time.monotonic() - started
        await asyncio.sleep(5.0)  # the first looks at every new worktree are done
        seen_before = len(stats)
        cpu_before, wall_before = cpu_seconds(), time.monotonic()
        await asyncio.sleep(window)
        cpu = cpu_seconds() - cpu_before
        wall = time.monotonic() - wall_before
        running = len(sessions.running())
        counted = len(stats) - seen_before
        changed = {e.data["identifier"] for e in stats[seen_before:]}
        shown = sum(1 for view in unit.runtime.state.issues.issues.values()
                    if view.diff is not None)
    return {"worktrees": worktrees, "runs_up_after_s": round(up, 1),
            "runs_running_at_end": running, "window_s": round(wall, 1),
            "cpu_s": round(cpu, 3), "core_share": round(cpu / wall, 4),
            "review_stat_events_in_window": counted,
            "issues_whose_numbers_changed_in_window": len(changed),
            "issues_showing_numbers_at_end": shown}


def time_looks(root: Path, issues: int, rounds: int = 20) -> dict[str, Any]:
    """The watcher's look on the worktrees left behind: stat() only, and git for each."""
    spaces = root / "worktrees"
    names = [f"LOAD-{n}" for n in range(1, issues + 1)]
    trees = {name: worktree_of(spaces, name) for name in names}
    watch = StatWatch(lambda: {}, trees.get, lambda name, counts: None)
    watch._look(names, set(names))  # the first look records every stamp
    quiet, full = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        watch._look(names, set())
        quiet.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        watch._look(names, set(names))
        full.append((time.perf_counter() - started) * 1000)
    return {"worktrees_found": sum(1 for t in trees.values() if t is not None),
            "look_unchanged_ms_median": round(statistics.median(quiet), 3),
            "look_unchanged_us_per_issue": round(statistics.median(quiet) * 1000 / issues, 1),
            "look_all_measured_ms_median": round(statistics.median(full), 1),
            "look_all_measured_ms_per_issue": round(statistics.median(full) / issues, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issues", type=int, default=50)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        with_trees = asyncio.run(measure(Path(tmp) / "trees", args.issues, args.window, True))
        looks = time_looks(Path(tmp) / "trees", args.issues)
        plain = asyncio.run(measure(Path(tmp) / "plain", args.issues, args.window, False))
    load_after = os.getloadavg()
    cost = with_trees["core_share"] - plain["core_share"]
    result = {
        "benchmark": "review-stat", "argv": sys.argv, "machine": machine_description(REPO),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "issues": args.issues, "target_core_share": TARGET_SHARE,
        "with_worktrees": with_trees, "plain_folders": plain, "looks": looks,
        "stat_cost_core_share": round(cost, 4), "pass": cost < TARGET_SHARE,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results_dir / f"review-stat-{stamp}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.issues} running issues: the runtime used {with_trees['core_share']:.1%} of a "
          f"core with worktrees (+N/-M watched; {with_trees['review_stat_events_in_window']} "
          f"review_stat events, {with_trees['issues_whose_numbers_changed_in_window']} issues "
          f"changed in {with_trees['window_s']:.0f} s) and {plain['core_share']:.1%} in plain "
          f"folders: the +N/-M costs {cost:.1%} (target < {TARGET_SHARE:.0%}). A look with "
          f"nothing changed: {looks['look_unchanged_ms_median']:.2f} ms; every worktree "
          f"measured again: {looks['look_all_measured_ms_median']:.0f} ms. -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
