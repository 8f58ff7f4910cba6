"""The agent of the +N/-M benchmark: a plain command that keeps its run alive and works.

    python agent.py STOP_FILE PID_DIR COMMIT_ODDS

Runs in the issue's workspace (a git worktree, or a clone for the baseline). Every 1-3 s it
appends 1-5 lines to `work/<workspace>.txt`, now and then rewrites a line of a tracked file
(so the -M moves too), prints one line (its run is never stalled), and with COMMIT_ODDS
commits everything (`git add -A`, `git commit`). It stops when STOP_FILE exists or the
process that started it is gone. Its pid goes to PID_DIR, so the benchmark can end the
ones left over by their pid.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Bench Agent", "GIT_AUTHOR_EMAIL": "agent@example.com",
            "GIT_COMMITTER_NAME": "Bench Agent", "GIT_COMMITTER_EMAIL": "agent@example.com"}


def git(*args: str) -> None:
    subprocess.run(["git", *args], env={**os.environ, **IDENTITY}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   timeout=60)


def rewrite_a_line(rng: random.Random, step: int) -> None:
    tracked = sorted(Path("src").glob("*.py"))
    if not tracked:
        return
    path = rng.choice(tracked)
    lines = path.read_text().splitlines(keepends=True)
    if lines:
        lines[rng.randrange(len(lines))] = f"# changed at step {step}\n"
        path.write_text("".join(lines))


def main() -> int:
    stop, pids, odds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    (pids / str(os.getpid())).touch()
    parent = os.getppid()
    rng = random.Random(os.getpid())
    work = Path("work") / f"{Path.cwd().name}.txt"
    work.parent.mkdir(exist_ok=True)
    step = 0
    while not stop.exists() and os.getppid() == parent:
        time.sleep(rng.uniform(1.0, 3.0))
        step += 1
        with work.open("a") as out:
            out.writelines(f"line {step}.{n}\n" for n in range(rng.randint(1, 5)))
        if rng.random() < 0.3:
            rewrite_a_line(rng, step)
        print(f"step {step}", flush=True)
        if rng.random() < odds:
            git("add", "-A")
            git("commit", "-q", "-m", f"step {step}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
