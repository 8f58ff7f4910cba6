"""How long the `marrow-tui` command takes to start: the import of its entry point, and a whole
`marrow-tui who --json` against a running hub.

    python benchmarks/cli/import_time.py [--runs 15] [--baseline COMMIT] [--tag T]

For each run, in a fresh interpreter: `python -X importtime -c "import marrow_tui.cli.main"`
(the cumulative microseconds of that import, as Python reports them, and the process's wall
time), then `python -m marrow_tui who --json` against a hub started once for the whole
benchmark (`--no-ui`, loopback, a temporary state dir, ended by its own PID). With
`--baseline COMMIT`, the same import is measured on that commit's tree (from `git archive`,
its entry module named by `--baseline-module`, `marrow_tui.cli` before the cli/ package) in
the same interleaved loop, so both see the same machine. Writes
`benchmarks/results/cli-import-<UTC time>[-tag].json` and prints the medians. Nothing is
asserted: the target (under 60 ms for the import) is read from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
TARGET_MS = 60.0
HUB_LINE = re.compile(r"(?:listening|running) on (wss?://\S+)")


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
    env["PYTHONPATH"] = str(root)
    return env


def import_once(root: Path, module: str) -> dict[str, float]:
    """One fresh interpreter importing `module`: its cumulative import time and wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, env=env_for(root), cwd=root,
                          timeout=60, check=True)
    wall = time.perf_counter() - started
    cumulative = None
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            cumulative = int(parts[1])
    if cumulative is None:
        raise RuntimeError(f"no import time for {module} in:\n{done.stderr[-2000:]}")
    return {"import_ms": cumulative / 1000, "process_ms": wall * 1000}


def who_once(uri: str) -> float:
    """Wall time of one `marrow-tui who --json`, in milliseconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "marrow_tui", "who", "--json", "--uri", uri,
                           "--name", "bench/who"], capture_output=True, text=True,
                          env=env_for(REPO), cwd=REPO, timeout=60)
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or json.loads(done.stdout).get("ok") is not True:
        raise RuntimeError(f"who failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def start_hub(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1", "--port", "0",
         "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(REPO),
        cwd=state_dir.parent)
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        found = HUB_LINE.search(line)
        if found:
            return process, found.group(1)
    stop_hub(process)
    raise RuntimeError("the hub did not say where it listens within 30 s")


def stop_hub(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def baseline_tree(commit: str, into: Path) -> Path:
    """`commit`'s marrow_tui/ (and styles/) unpacked into `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "marrow_tui"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2), "min": round(ordered[0], 2),
            "max": round(ordered[-1], 2), "n": len(ordered)}


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--module", default="marrow_tui.cli.main")
    parser.add_argument("--baseline", default=None, metavar="COMMIT",
                        help="also measure the entry point's import on this commit")
    parser.add_argument("--baseline-module", default="marrow_tui.cli")
    parser.add_argument("--tag", default="")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    runs: dict[str, list[dict[str, float]]] = {"import": [], "baseline_import": [], "who": []}
    with tempfile.TemporaryDirectory(prefix="marrow-cli-bench-") as tmp:
        base = baseline_tree(args.baseline, Path(tmp)) if args.baseline else None
        hub, uri = start_hub(Path(tmp) / "state")
        try:
            for module, root in ((args.module, REPO), (args.baseline_module, base)):
                if root is not None:  # warm the bytecode caches once
                    import_once(root, module)
            who_once(uri)
            for _ in range(args.runs):  # interleaved: a noisy moment hits every figure alike
                runs["import"].append(import_once(REPO, args.module))
                if base is not None:
                    runs["baseline_import"].append(import_once(base, args.baseline_module))
                runs["who"].append({"wall_ms": who_once(uri)})
        finally:
            stop_hub(hub)

    load1, _, _ = os.getloadavg()
    result = {
        "benchmark": "cli-import",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load1_after": load1},
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "marrow_tui")),
        "module": args.module,
        "target_import_ms": TARGET_MS,
        "import_ms": summary([r["import_ms"] for r in runs["import"]]),
        "import_process_ms": summary([r["process_ms"] for r in runs["import"]]),
        "who_json_wall_ms": summary([r["wall_ms"] for r in runs["who"]]),
        "runs": runs,
    }
    if base is not None:
        result["baseline"] = {
            "commit": args.baseline, "module": args.baseline_module,
            "import_ms": summary([r["import_ms"] for r in runs["baseline_import"]]),
            "import_process_ms": summary([r["process_ms"] for r in runs["baseline_import"]]),
        }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.results_dir / f"cli-import-{stamp}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"import {args.module}: median {result['import_ms']['median']} ms "
          f"(target < {TARGET_MS:g} ms) [{result['import_ms']['min']}-"
          f"{result['import_ms']['max']}]")
    if base is not None:
        print(f"import {args.baseline_module} at {args.baseline}: median "
              f"{result['baseline']['import_ms']['median']} ms")
    print(f"who --json: median {result['who_json_wall_ms']['median']} ms wall")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
