"""What checking an ACP tool call against the live leases adds to a permission decision.

    python benchmarks/leases/edit_check.py [--leases 1000] [--agents 50] [--runs 20000] [--tag T]

A claim book with `--leases` live leases: `--agents` runs' leases in one checkout (the
agents' shared worktree), each grown by 10 edited paths, and the rest agents' own claims of
3 paths each, half of them in that checkout and half spread over 20 others. Then, `--runs`
times each, the decision function itself (core/edits.py `check_edit`, with the real
os.path.realpath on a real folder) for: an edit of a file no lease holds (the common case,
whose paths then join the run's lease), a readable `rm` of two files, an edit of a file
another run's lease holds (the conflict found, with the overlapping lease read), and an
execute call that cannot be read; and, for scale, the policy's verdict alone (what a
decision cost before). Writes `benchmarks/results/edit-check-<UTC time>[-tag].json` and
prints median and p99 in microseconds. The target: the check adds < 1 ms (median and p99).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from marrow_tui.core.acp import PermissionPolicy
from marrow_tui.core.claims import ClaimBook
from marrow_tui.core.edits import check_edit
from marrow_tui.core.events import Event

RESULTS = REPO / "benchmarks" / "results"
TARGET_US = 1000.0
GROWN = 10
OWN_PATHS = 3
OTHER_WORKTREES = 20


def seeded(root: str, leases: int, agents: int) -> ClaimBook:
    book = ClaimBook(max_claims_per_agent=0)

    def put(decided: Event | Any) -> None:
        assert isinstance(decided, Event), decided
        book.apply_claim(decided.data)

    for n in range(agents):
        put(book.decide_claim(f"team/agent{n}", f"run-{n}", worktree=root, session=f"run-{n}",
                              ttl=86400, now=0.0))
        grow = book.decide_grow(f"run-{n}", tuple(f"pkg{n}/mod{k}.py" for k in range(GROWN)),
                                tool_call_id=f"c{n}", title="Edit", now=0.0)
        assert isinstance(grow, Event)
        book.apply_grow(grow.data)
    for n in range(leases - agents):
        worktree = root if n % 2 == 0 else f"/srv/other{n % OTHER_WORKTREES}"
        put(book.decide_claim(f"script{n}", f"T{n}", worktree=worktree,
                              paths=[f"lib{n}/f{k}.py" for k in range(OWN_PATHS)], ttl=86400,
                              now=0.0))
    assert len(book) == leases
    return book


def timed(work: Callable[[], Any], runs: int) -> dict[str, float]:
    for _ in range(min(runs, 1000)):  # warm up
        work()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        work()
        samples.append((clock() - start) / 1000)
    samples.sort()
    return {"median_us": round(statistics.median(samples), 2),
            "p99_us": round(samples[int(len(samples) * 0.99) - 1], 2),
            "max_us": round(samples[-1], 2), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = os.path.realpath(folder)
        os.makedirs(os.path.join(root, "src"))
        book = seeded(root, args.leases, args.agents)
        me = "team/agent0"
        policy = PermissionPolicy(mode="ask", allow=frozenset({"read"}))

        def edit(path: str) -> Callable[[], Any]:
            absolute = os.path.join(root, path)
            locations = [{"path": absolute}]
            content = [{"type": "diff", "path": absolute, "oldText": "a\n", "newText": "b\n"}]
            raw = {"file_path": absolute}
            return lambda: check_edit(book, me, root, "edit", locations, content, raw,
                                      cwd=root, realpath=os.path.realpath, now=1.0)

        def run(command: str) -> Callable[[], Any]:
            raw = {"command": command}
            return lambda: check_edit(book, me, root, "execute", [], [], raw, cwd=root,
                                      realpath=os.path.realpath, now=1.0)

        free, overlap = edit("src/new.py"), edit("pkg7/mod3.py")
        assert free()[1] == [] and overlap()[1][0].task_id == "run-7"
        cases = {
            "edit, no lease in the way": free,
            "execute `rm src/a.py src/b.py`, readable": run("rm src/a.py src/b.py"),
            "edit of a file another run's lease holds": overlap,
            "execute `make test`, unreadable": run("make test"),
            "policy verdict alone (before)": lambda: policy.verdict("edit"),
        }
        results = {name: timed(work, args.runs) for name, work in cases.items()}
    verdict = all(r["p99_us"] < TARGET_US for name, r in results.items() if "policy" not in name)
    report = {"leases": args.leases, "agents": args.agents, "target_us": TARGET_US,
              "meets_target": verdict, "python": platform.python_version(),
              "machine": platform.machine(), "cases": results}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"edit-check-{stamp}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:<48} median {r['median_us']:>8.2f} us   p99 {r['p99_us']:>8.2f} us")
    print(f"{args.leases} leases, {args.agents} agents: "
          f"{'meets' if verdict else 'misses'} the < 1 ms target; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
