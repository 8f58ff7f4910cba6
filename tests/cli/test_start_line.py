"""Headless start says what it restored: a state folder full of history never reads as
"0 events replayed"."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.support.hub import start_hub
from tests.support.hubproc import hub_command, running_hub


async def _history(state_dir: Path) -> None:
    """A run that claimed, chatted and stopped cleanly, writing its snapshot."""
    hub = await start_hub(state_dir)
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await alice.send(type="chat", payload="hello")
    await alice.until("chat")
    await hub.stop()


def start_line(state_dir: Path, cwd: Path) -> str:
    with running_hub(hub_command(state_dir), cwd) as hub:
        return next(line for line in hub.output if "listening on" in line)


def test_the_start_line_names_the_snapshot_and_the_events_replayed(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    assert "no events yet)" in start_line(state_dir, tmp_path)
    asyncio.run(_history(state_dir))
    line = start_line(state_dir, tmp_path)
    assert "1 live claims" in line
    match = re.search(r"restored the snapshot at event (\d+) \+ 0 events replayed\)$",
                      line.rstrip())
    assert match is not None, line
    assert int(match.group(1)) >= 2  # the claim and the chat at least
