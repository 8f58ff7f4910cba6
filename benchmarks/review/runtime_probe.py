"""`python -m marrow_tui` with counters on the +N/-M watch: the runtime under test.

    python runtime_probe.py COUNTERS.json --no-ui --host 127.0.0.1 --port 0 --workflow W ...

Runs marrow-tui's own entry point (`marrow_tui.cli.main.main`) with the arguments after the
first, in this process, after wrapping three things: the +N/-M watch's look
(`reviews.StatWatch._look`: one look at every shown issue's worktree, in a worker thread) and
the `stat_of` it calls
(one git measure of one worktree) with counters of calls and of that thread's CPU time
(`time.thread_time`: the git processes they run are not in it; the benchmark reads those as
the runtime's reaped children), and `Review.start`, to also subscribe a counter of the
`review_stat` events the runtime emits (a transient event: the log never has it). A daemon
thread writes the totals to COUNTERS.json every 0.25 s. The wrappers only count.
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

from marrow_tui.core.events import Event  # noqa: E402
from marrow_tui import reviews  # noqa: E402
from marrow_tui.orchestrator import review  # noqa: E402

#: label -> [thread CPU seconds, calls]
COUNTERS: dict[str, list[float]] = {}
#: identifier -> the +N/-M its last review_stat said
LAST_STAT: dict[str, list[int | None]] = {}
STATS = COUNTERS.setdefault("review_stat events", [0.0, 0])


def timed(owner: Any, name: str, label: str) -> None:
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


def heard(events: list[Event]) -> None:
    for event in events:
        if event.kind == "review_stat":
            STATS[1] += 1
            d = event.data
            LAST_STAT[str(d["identifier"])] = [d.get("files"), d.get("added"), d.get("removed")]


def counting_start(original: Any) -> Any:
    def start(self: review.Review) -> None:
        self.runtime.subscribe(heard)
        original(self)
    return start


def write_forever(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    while True:
        tmp.write_text(json.dumps({"t": time.monotonic(), "pid": os.getpid(),
                                   "counters": COUNTERS, "last_stat": dict(LAST_STAT)}))
        tmp.replace(path)
        time.sleep(0.25)


def main() -> None:
    path = Path(sys.argv[1])
    sys.argv = ["marrow-tui", *sys.argv[2:]]
    timed(reviews.StatWatch, "_look", "look: every shown issue's worktree (worker thread)")
    timed(reviews, "stat_of", "git measure of one worktree (stat_of)")
    review.Review.start = counting_start(review.Review.start)  # type: ignore[method-assign]
    threading.Thread(target=write_forever, args=(path,), daemon=True).start()
    from marrow_tui.cli.main import main as marrow_main

    marrow_main()


if __name__ == "__main__":
    main()
