#!/usr/bin/env python3
"""The demo's scheduled agent: `marrow-tui demo` runs it once a minute beside the team.

Each run is a session in the Sessions pane (Enter shows this output as it comes). It reads the
blackboard, asks the operator whether to post a summary to the team (the bell rings, `a`
answers; unanswered for two minutes, it posts), and does what the operator said. It needs
nothing but the standard library and `marrow-tui`, which every run finds on its PATH (the
one that started it), with MARROW_HUB_URI and MARROW_AGENT in its environment.

Exit codes: 0 posted or skipped; 1 the board could not be read or the question failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

POST, SKIP = "post it", "skip"


def say(text: str) -> None:
    print(f"[{os.environ.get('MARROW_AGENT', 'reporter')}] {text}", flush=True)


def marrow_tui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["marrow-tui", *args], capture_output=True, text=True, check=False)


def tasks_in(frame: Any) -> list[dict[str, Any]]:
    """The board's tasks, wherever the reply frame keeps them."""
    if isinstance(frame, dict):
        if isinstance(frame.get("tasks"), list):
            return [t for t in frame["tasks"] if isinstance(t, dict)]
        for value in frame.values():
            if found := tasks_in(value):
                return found
    return []


def summary() -> str | None:
    board = marrow_tui("board", "--json", "--notes", "0")
    if board.returncode != 0:
        say(f"could not read the board: {board.stderr.strip()}")
        return None
    tasks = tasks_in(json.loads(board.stdout or "{}"))
    if not tasks:
        return "the board is empty so far"
    counts = Counter(str(t.get("status", "?")) for t in tasks)
    return f"{len(tasks)} tasks on the board: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items()))


def main() -> int:
    prompt = sys.stdin.read()
    say(f"prompt of {len(prompt.splitlines())} lines; reading the board")
    time.sleep(3 * float(os.environ.get("MARROW_DEMO_PACE") or 1))  # the team plans first
    text = summary()
    if text is None:
        return 1
    say(text)
    say("asking the operator (a answers)")
    asked = marrow_tui("ask", "Post the board summary to the team's chat?", "--context", text,
                       "--choices", f"{POST},{SKIP}", "--timeout", "2m", "--default", POST)
    if asked.returncode != 0:
        say(f"no answer: {asked.stderr.strip()}")
        return 1
    answer = asked.stdout.strip()
    if answer != POST:
        say(f"the operator said {answer!r}: not posted")
        return 0
    sent = marrow_tui("send", f"reporter: {text}")
    say("posted to the team" if sent.returncode == 0 else f"not posted: {sent.stderr.strip()}")
    return 0 if sent.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
