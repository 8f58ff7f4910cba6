"""A reference ticker: a bare asyncio process doing nothing but the host's 10 ms loop-lag probe.

Run next to the marrow-tui process during the output windows, it shows how late any mostly
idle process on this machine wakes while the agents hold the CPUs: lag that the marrow-tui
process shows *beyond* this one is its own work; lag this one shows too is the kernel's
CPU scheduler. Stops when stdin closes (or after --max-seconds) and prints one JSON line.
Imports nothing from marrow_tui.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(max(1, math.ceil(q / 100.0 * len(s))), len(s)) - 1]


async def main(max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    lags: list[float] = []

    async def tick() -> None:
        period = 0.010
        due = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            lags.append(max(0.0, now - due))
            due = now + period

    task = asyncio.create_task(tick())
    print(json.dumps({"ticking": True}), flush=True)
    try:
        await asyncio.wait_for(reader.read(), max_seconds)
    except TimeoutError:
        pass
    task.cancel()
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ticks": len(lags), "p50_ms": 1000 * pct(lags, 50),
                      "p99_ms": 1000 * pct(lags, 99), "max_ms": 1000 * max(lags, default=0.0),
                      "over_50ms": sum(1 for x in lags if x > 0.05),
                      "cpu_s": r.ru_utime + r.ru_stime}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-seconds", type=float, default=120.0)
    asyncio.run(main(ap.parse_args().max_seconds))
