"""Why 50 busy agents started at once stall an asyncio loop, and two ways around it.

Not marrow-tui code: a bare asyncio process starts N agents at once (one task each, as the
scheduler's runs are), each a bash loop printing lines for a few seconds, and a 10 ms ticker
measures the loop's lag. Variants:

* ``plain``: ``asyncio.create_subprocess_exec`` as marrow_tui/scheduler/runner.py uses it. It
  runs ``subprocess.Popen`` on the loop thread, and Popen returns only once the child has
  exec'd; with the first agents already holding both CPUs each child waits for a CPU first.
* ``yield``: the same call, one spawn at a time behind an ``asyncio.Lock`` with an
  ``await asyncio.sleep(0)`` after each, so the loop runs other work between spawns.
* ``thread``: ``subprocess.Popen`` in a worker thread (``asyncio.to_thread``), and the wait too.

    python benchmarks/scheduler/spawn_experiment.py [--agents 50] [--seconds 3]

Prints one line per variant: loop lag max and p99, and when the last agent started (its own
``$EPOCHREALTIME`` stamp). Everything is in a temp folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SCRIPT = """#!/bin/bash
printf '%s\\n' "$EPOCHREALTIME" > "$1.stamp"
end=$(( ${EPOCHREALTIME/./} + $2 * 1000000 ))
while (( ${EPOCHREALTIME/./} < end )); do printf '%s line\\n' "$EPOCHREALTIME"; done
"""


async def run(variant: str, n: int, seconds: int, folder: Path) -> str:
    loop = asyncio.get_running_loop()
    script = folder / "agent.sh"
    lags: list[float] = []

    async def tick() -> None:
        due = loop.time() + 0.010
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            lags.append(max(0.0, now - due))
            due = now + 0.010

    lock = asyncio.Lock()

    async def one(i: int) -> None:
        argv = [str(script), str(folder / f"{variant}-{i}"), str(seconds)]
        with open(folder / f"{variant}-{i}.out", "ab") as out:
            if variant == "thread":
                proc = await asyncio.to_thread(
                    subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=True)
            else:
                async with lock if variant == "yield" else _nothing():
                    aproc = await asyncio.create_subprocess_exec(
                        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                        start_new_session=True)
                    if variant == "yield":
                        await asyncio.sleep(0)
        if variant == "thread":
            await asyncio.to_thread(proc.wait)
        else:
            await aproc.wait()

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.1)
    t0 = time.time()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), seconds + 120)
    ticker.cancel()
    last = max(float((folder / f"{variant}-{i}.stamp").read_text()) for i in range(n)) - t0
    s = sorted(lags)
    p99 = s[min(len(s), max(1, math.ceil(0.99 * len(s)))) - 1]
    return (f"{variant:>6}: {n} agents, loop lag max {1000 * s[-1]:7.0f} ms, p99 {1000 * p99:5.0f}"
            f" ms; last agent started {1000 * last:6.0f} ms after the first spawn call")


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--variants", default="plain,yield,thread")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="marrow-spawnexp-"))
    try:
        script = folder / "agent.sh"
        script.write_text(SCRIPT)
        script.chmod(0o755)
        for variant in args.variants.split(","):
            print(asyncio.run(run(variant, args.agents, args.seconds, folder)), flush=True)
            time.sleep(1.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
