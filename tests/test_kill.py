"""SIGKILL in the middle of a stream of claims loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

LISTENING = re.compile(r"listening on (wss?://\S+)")


async def _start(state_dir: Path) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", "--no-ui", "--port", "0", "--state-dir",
        str(state_dir), "--max-claims-per-agent", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    match = LISTENING.search(line.decode())
    assert match, line

    async def drain() -> None:
        assert proc.stdout is not None
        while await proc.stdout.read(65536):
            pass

    return proc, match.group(1), asyncio.create_task(drain())


async def test_sigkill_mid_stream_keeps_every_acknowledged_claim(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    proc, uri, drain = await _start(state_dir)
    acknowledged: set[str] = set()
    total = 3000
    async with connect(uri, compression=None, max_queue=None) as ws:
        await ws.send(json.dumps({"sender": "k/agent", "type": "heartbeat"}))

        async def stream() -> None:
            for n in range(total):
                await ws.send(json.dumps({"sender": "k/agent", "type": "claim",
                                          "task_id": f"T{n}", "paths": [f"f/{n}"]}))

        sender = asyncio.create_task(stream())
        try:
            async with asyncio.timeout(60):
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "claim_granted":
                        acknowledged.add(frame["task_id"])
                        if len(acknowledged) == 500:
                            proc.send_signal(signal.SIGKILL)
        except ConnectionClosed:
            pass  # the hub died under us: that is the point
        sender.cancel()
    await proc.wait()
    await drain
    assert proc.returncode == -signal.SIGKILL
    assert 500 <= len(acknowledged) < total, "the kill must land mid-stream"

    proc, uri, drain = await _start(state_dir)
    try:
        async with connect(uri, compression=None, max_queue=None) as ws:
            await ws.send(json.dumps({"sender": "k/check", "type": "state_request"}))
            async with asyncio.timeout(30):
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "state_snapshot":
                        break
        live = {c["task_id"] for c in frame["snapshot"]["active_claims"]}
        assert acknowledged <= live
        assert all(c["owner"] == "k/agent" for c in frame["snapshot"]["active_claims"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await drain
