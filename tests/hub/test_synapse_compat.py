"""An unmodified synapse-channel client against our hub (opt-in: it is never our dependency).

Set MARROW_SYNAPSE_PYTHON to an interpreter that has synapse-channel installed, e.g. the one
`python benchmarks/run_hub_bench.py` creates in benchmarks/.work/synapse-venv, to run it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.hub import Hub

SYNAPSE_PYTHON = os.environ.get("MARROW_SYNAPSE_PYTHON")
JOURNEY = Path(__file__).parent / "compat" / "synapse_journey.py"
GOLDEN_DEMO = Path(__file__).parent / "compat" / "synapse_golden_demo.py"

pytestmark = pytest.mark.skipif(
    not SYNAPSE_PYTHON, reason="set MARROW_SYNAPSE_PYTHON to a python with synapse-channel"
)


async def test_synapse_agent_class_runs_the_core_journey(hub: Hub) -> None:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        str(SYNAPSE_PYTHON), str(JOURNEY), hub.uri,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "all steps passed" in text
    assert hub.runtime.state.board.ready() == ["P2"]


async def test_synapse_golden_demo_runs_against_our_hub(hub: Hub) -> None:
    """synapse-channel's own packaged demo (`synapse_channel.demo.run_coordination_demo`):
    claims, a refused conflict, the file-claim guard, a handoff, and releases whose receipts
    the hub must grade `unverified`, then a dashboard read, all against our hub."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        str(SYNAPSE_PYTHON), str(GOLDEN_DEMO), hub.uri,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "golden demo: completed, 7 steps" in text
    board = hub.runtime.state.board
    assert {board.tasks[t]["status"] for t in ("DEMO-CLAUDE", "DEMO-CODEX")} == {"done"}
    graded = [note for note in board.progress if note["kind"] == "assessment"]
    assert sorted(note["task_id"] for note in graded) == ["DEMO-CLAUDE", "DEMO-CODEX"]
    assert all("epistemic_status=unverified" in note["text"] for note in graded)
    assert hub.runtime.state.claims.claims == {}
