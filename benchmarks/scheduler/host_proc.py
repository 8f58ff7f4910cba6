"""The marrow-tui process of the scheduler benchmark: `hosted()` with a config, plus probes.

Built like `marrow-tui --no-ui --config FILE` (marrow_tui.headless.serve): the runtime on a
fresh state directory (real SQLite), the hub listening on 127.0.0.1 with a free port, the
scheduler started by `marrow_tui.host.hosted` with its heartbeats and its config watch, and the
change feed printed to a file as headless mode prints it to stdout. Nothing in marrow_tui is
patched or wrapped; the probes only listen:

* the change feed (`runtime.subscribe`): the wall time (`time.time()`) at which each
  `wake`, `session_start`, `session_pid` and `session_end` reached it, i.e. was committed;
* a ticker task on the same event loop that asks to wake every 10 ms and records how late it
  woke (the loop lag), and every 100 ms VmRSS;
* `resource.getrusage(RUSAGE_SELF)` (this process, all its threads: the loop, asyncio's
  `to_thread` workers, the event log's writer, the config watcher; not the agents) and
  `RUSAGE_CHILDREN` (reaped agents) at the edges of each window;
* optionally cProfile over one window (the event-loop thread only).

It is driven over stdin/stdout by bench.py, one JSON object per line:

    -> {"cmd": "begin", "ticker": true, "profile": "FILE or null"}   <- {"begun": t}
    -> {"cmd": "end", "ends": K, "timeout": S}                        <- {"window": {...}}
    -> {"cmd": "diag_no_watch"}   (diagnostic: cancel the config watch) <- {"cancelled": n}
    -> {"cmd": "quit"}                                                <- {"bye": true}

On start it waits (bounded) for the configured agents' first runs (the first heartbeat is due
at once) to end, then prints {"ready": true, "uri": ..., "pid": ...}. It exits on "quit", on
stdin closing (the runner went away) or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from marrow_tui.config.load import load_config
from marrow_tui.core.events import Event
from marrow_tui.headless import EventPrinter
from marrow_tui.host import Hosted, hosted
from marrow_tui.hub.server import HubOptions
from marrow_tui.runtime import RuntimeOptions

WATCHED = ("wake", "session_start", "session_pid", "session_end")


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def machine_busy() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in parts[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))  # nearest rank, as hubbench.stats
    return s[min(rank, len(s)) - 1]


class Probe:
    """The feed listener and the window bookkeeping."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.ends = 0
        self.changed = asyncio.Event()
        self.lags: list[float] = []
        #: (lag, loop time) of each tick, for when the worst one happened
        self.worst: tuple[float, float] = (0.0, 0.0)
        self.rss_max = 0
        self.ticking = False

    def feed(self, events: list[Event]) -> None:
        now = time.time()
        for event in events:
            if event.kind in WATCHED:
                d = event.data
                keep = {k: d.get(k) for k in ("id", "agent", "started", "ended", "state", "pid")
                        if k in d}
                self.events.append((now, event.kind, keep))
                if event.kind == "session_end":
                    self.ends += 1
        self.changed.set()

    async def until_ends(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.ends < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.05))
        return True

    async def ticker(self, period: float = 0.010) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + period
        n = 0
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            if self.ticking:
                lag = max(0.0, now - due)
                self.lags.append(lag)
                if lag > self.worst[0]:
                    self.worst = (lag, time.time() - lag)
                n += 1
                if n % 10 == 0:
                    self.rss_max = max(self.rss_max, rss_kib())
            due = now + period


async def run(args: argparse.Namespace) -> int:
    loaded = load_config(Path(args.config))
    if loaded.errors or loaded.config is None:
        out({"error": f"config: {loaded.errors}"})
        return 2
    config = loaded.config
    agents = len(config.agents)
    probe = Probe()
    printer_file = open(args.events_log, "w")  # noqa: SIM115 -- closed below
    unit_box: list[Hosted] = []

    def ready(unit: Hosted) -> None:
        unit_box.append(unit)
        unit.runtime.subscribe(EventPrinter(printer_file))
        unit.runtime.subscribe(probe.feed)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    t_launch = time.time()
    try:
        async with hosted(RuntimeOptions(state_dir=Path(args.state_dir)),
                          HubOptions(host="127.0.0.1", port=0), config=config,
                          on_ready=ready) as unit:
            up = time.time()
            first_ok = await probe.until_ends(agents, args.start_timeout)
            await unit.runtime.settled()
            ticker: asyncio.Task[None] | None = None  # only while a window asks for it
            out({"ready": first_ok, "uri": unit.server.uri, "pid": os.getpid(),
                 "agents": agents, "hosted_s": up - t_launch,
                 "first_runs_s": time.time() - up, "rss_kib": rss_kib()})
            window: dict[str, Any] = {}
            profiler: cProfile.Profile | None = None
            deadline = time.monotonic() + args.max_seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    line = await asyncio.wait_for(reader.readline(), left)
                except TimeoutError:
                    break
                if not line:
                    break
                cmd = json.loads(line)
                if cmd["cmd"] == "begin":
                    probe.events.clear()
                    probe.ends = 0
                    probe.lags = []
                    probe.worst = (0.0, 0.0)
                    probe.rss_max = rss_kib()
                    probe.ticking = bool(cmd.get("ticker", True))
                    if probe.ticking and ticker is None:
                        ticker = asyncio.create_task(probe.ticker())
                    if cmd.get("profile"):
                        profiler = cProfile.Profile()
                        profiler.enable()
                    window = {"file": cmd.get("profile"), "t0": time.time(),
                              "mono0": time.monotonic(), "cpu0": cpu(resource.RUSAGE_SELF),
                              "child0": cpu(resource.RUSAGE_CHILDREN), "busy0": machine_busy()}
                    out({"begun": window["t0"]})
                elif cmd["cmd"] == "end":
                    complete = await probe.until_ends(int(cmd.get("ends", 0)),
                                                      float(cmd.get("timeout", 30)))
                    await unit.runtime.settled()
                    if profiler is not None:
                        profiler.disable()
                        profiler.dump_stats(window["file"])
                        profiler = None
                    wall = time.monotonic() - window["mono0"]
                    own = cpu(resource.RUSAGE_SELF) - window["cpu0"]
                    children = cpu(resource.RUSAGE_CHILDREN) - window["child0"]
                    busy = machine_busy() - window["busy0"]
                    probe.ticking = False
                    if ticker is not None:
                        ticker.cancel()
                        ticker = None
                    lags = probe.lags
                    out({"window": {
                        "complete": complete, "wall_s": wall,
                        "cpu_s": own, "children_cpu_s": children,
                        "machine_busy_cpu_s": busy,
                        "other_cores": max(0.0, busy - own - children) / max(wall, 1e-9),
                        "rss_kib_end": rss_kib(), "rss_kib_max": max(probe.rss_max, rss_kib()),
                        "maxrss_kib_since_start": resource.getrusage(
                            resource.RUSAGE_SELF).ru_maxrss,
                        "lag": {"ticks": len(lags),
                                "p50_ms": 1000 * (pct(lags, 50) or 0.0),
                                "p99_ms": 1000 * (pct(lags, 99) or 0.0),
                                "max_ms": 1000 * (max(lags) if lags else 0.0),
                                "over_50ms": sum(1 for x in lags if x > 0.05),
                                "over_100ms": sum(1 for x in lags if x > 0.1),
                                # when the worst stall began, in seconds from the window's start
                                "max_began_s": probe.worst[1] - window["t0"]
                                if probe.worst[0] else None},
                        "events": [[t, kind, data] for t, kind, data in probe.events],
                    }})
                elif cmd["cmd"] == "diag_no_watch":
                    # Diagnostic only (the idle cell's second window): stop the config watch
                    # to see what it costs. Nothing else in marrow_tui is touched.
                    watchers = [t for t in unit.scheduler._tasks
                                if t.get_name() == "config-watch"]
                    for task in watchers:
                        task.cancel()
                    await asyncio.sleep(0.5)
                    out({"cancelled": len(watchers)})
                elif cmd["cmd"] == "quit":
                    break
            if ticker is not None:
                ticker.cancel()
            t_stop = time.time()
        out({"bye": True, "stop_s": time.time() - t_stop})
    finally:
        printer_file.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--events-log", required=True)
    ap.add_argument("--log", required=True, help="marrow's own log (warnings and up)")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()
    logging.basicConfig(filename=args.log, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
