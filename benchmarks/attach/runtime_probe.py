"""`python -m marrow_tui` with counters of what the change feed costs it: the runtime under test.

    python runtime_probe.py COUNTERS.json --no-ui --host 127.0.0.1 --port 0 --state-dir D

Runs marrow-tui's own entry point (`marrow_tui.cli.main.main`) with the arguments after the
first, in this process, after wrapping the feed's entry points (hub/feed.py) and the hub's
broadcast (`HubServer.send_all`, which leaves out the feed's connections) with timers of the
event-loop thread's CPU time (`time.thread_time`: user + system, so a socket write's syscall
counts, and time the thread spent preempted by other processes does not). A daemon thread
writes the totals to COUNTERS.json every 0.25 s. Nothing else changes: the wrappers only time.

Why: on this shared 2-vCPU machine the runtime's CPU per second moves by more than a console
costs (other helpers' tests come and go, and a saturated machine makes the runtime batch more),
so "CPU with a console minus without" is noisy; the feed's own CPU is what a console costs it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from marrow_tui.hub import feed, server  # noqa: E402

#: label -> [CPU seconds, calls]
COUNTERS: dict[str, list[float]] = {}


def timed(owner: type, name: str, label: str) -> None:
    original = getattr(owner, name)
    entry = COUNTERS.setdefault(label, [0.0, 0])
    clock = time.thread_time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return original(*args, **kwargs)
        finally:
            entry[0] += clock() - t0
            entry[1] += 1

    setattr(owner, name, wrapper)


def write_forever(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    while True:
        tmp.write_text(json.dumps({"t": time.monotonic(), "pid": os.getpid(),
                                   "counters": COUNTERS}))
        tmp.replace(path)
        time.sleep(0.25)


def main() -> None:
    path = Path(sys.argv[1])
    sys.argv = ["marrow-tui", *sys.argv[2:]]
    timed(feed.FeedHub, "_told", "feed: number + encode each batch, offer to every reader")
    timed(feed.Feed, "_flush", "feed: send a connection its waiting events")
    timed(feed.Feed, "begin", "feed: read the state for a snapshot")
    timed(feed.Feed, "_first", "feed: send the first frame")
    timed(feed.FeedHub, "history", "feed: history request")
    timed(server.HubServer, "send_all", "hub: broadcast to agents (all but feed connections)")
    threading.Thread(target=write_forever, args=(path,), daemon=True).start()
    from marrow_tui.cli.main import main as marrow_main

    marrow_main()


if __name__ == "__main__":
    main()
