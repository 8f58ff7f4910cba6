"""How long the agent view takes to open on a 100,000-update transcript and show its tail.

    python benchmarks/console/transcript_open.py [--updates 100000] [--runs 10] [--tag T]

Writes the transcript once with the runner's own writer (agents/transcript.py, through
tests/support/transcripts.py: whole turns of prompts, thoughts, text chunks, tool calls with
diffs and output, plans, usage; about 150 bytes an update). Then, in a headless Textual app
(120x40), `--runs` times: push a fresh agent view (`AgentScreen`) on the file and wait, one
refresh at a time, until the screen shows the transcript's last line at the bottom; the time
from the push to that refresh is the figure (target < 300 ms). Also timed: the reader and the
blocks alone (no Textual), and reading back to the very first update (`g`, the worst case of
scrolling up), once after the openings. Writes `benchmarks/results/transcript-open-<UTC time>[-tag].json` and prints the
medians. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from textual.app import App

from hubbench.procinfo import machine_description  # noqa: E402 (the path is set above)
from marrow_tui.attach.files import LocalFiles
from marrow_tui.core.sessions import Session, SessionBook
from marrow_tui.core.steering import SteeringBook
from marrow_tui.ui.app import styles_dir
from marrow_tui.ui.screens.agent import AgentScreen
from marrow_tui.ui.transcript.blocks import Blocks
from marrow_tui.ui.transcript.reader import TranscriptReader
from marrow_tui.ui.transcript.widget import TranscriptLog
from tests.support.transcripts import UPDATES_PER_TURN, write_transcript

RESULTS = REPO / "benchmarks" / "results"
TARGET_MS = 300.0
SIZE = (120, 40)


class BenchApp(App[None]):
    CSS_PATH: ClassVar = [styles_dir() / "app.tcss", styles_dir() / "main.tcss"]
    files = LocalFiles()


def last_line(updates: int) -> str:
    return f"Done with turn {updates // UPDATES_PER_TURN}."


def reader_alone(path: Path) -> float:
    started = time.perf_counter()
    blocks = Blocks()
    blocks.extend(TranscriptReader(path).open_tail())
    return (time.perf_counter() - started) * 1000


async def view_runs(path: Path, runs: int, expected: str) -> dict[str, Any]:
    session = Session(id="bench-1", agent="bench", started=0.0, transcript=str(path))
    sessions = SessionBook()
    sessions.by_id[session.id] = session
    app = BenchApp()
    opens: list[float] = []
    to_top: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        # reading back to the top last: what it leaves behind to collect would land on the
        # next opening's time
        for run in range(runs + 1):
            screen = AgentScreen(session, sessions, SteeringBook())
            started = time.perf_counter()
            await app.push_screen(screen)
            log = screen.query_one(TranscriptLog)
            async with asyncio.timeout(30):
                while not (log.visible_text()[-1:] == [expected]
                           and log.scroll_y == log.max_scroll_y):
                    await pilot.pause()
            if run < runs:
                opens.append((time.perf_counter() - started) * 1000)
                records = log.records_read
            else:
                started = time.perf_counter()
                log.action_top()
                async with asyncio.timeout(120):
                    while not (log.reader.at_start and log.scroll_y == 0):
                        await pilot.pause()
                to_top.append((time.perf_counter() - started) * 1000)
            app.pop_screen()
            await pilot.pause()
    return {"open_ms": opens, "records_read_on_open": records, "read_to_top_ms": to_top}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tag", default="")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    updates = args.updates - args.updates % UPDATES_PER_TURN  # whole turns: a known last line
    with tempfile.TemporaryDirectory(prefix="transcript-bench-") as tmp:
        path = Path(tmp) / "t.jsonl"
        started = time.perf_counter()
        write_transcript(path, updates)
        wrote = time.perf_counter() - started
        alone = [reader_alone(path) for _ in range(args.runs)]
        view = asyncio.run(view_runs(path, args.runs, last_line(updates)))
        size = path.stat().st_size
    result = {
        "benchmark": "transcript-open", "argv": sys.argv, "machine": machine_description(REPO),
        "updates": updates, "bytes": size, "write_seconds": round(wrote, 2),
        "terminal": SIZE, "target_ms": TARGET_MS,
        "reader_and_blocks_ms": [round(x, 2) for x in alone],
        "open_ms": [round(x, 2) for x in view["open_ms"]],
        "records_read_on_open": view["records_read_on_open"],
        "read_to_top_ms": [round(x, 1) for x in view["read_to_top_ms"]],
    }
    median = statistics.median(view["open_ms"])
    result["open_ms_median"] = round(median, 2)
    result["open_ms_max"] = round(max(view["open_ms"]), 2)
    result["pass"] = max(view["open_ms"]) < TARGET_MS
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results_dir / f"transcript-open-{stamp}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{updates} updates, {size / 1e6:.1f} MB: the view shows the tail in "
          f"{median:.0f} ms median, {max(view['open_ms']):.0f} ms max (target < {TARGET_MS:.0f}"
          f"); reader and blocks alone {statistics.median(alone):.1f} ms; "
          f"{view['records_read_on_open']} records read on opening; reading back to the first "
          f"update {statistics.median(view['read_to_top_ms']):.0f} ms. -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
