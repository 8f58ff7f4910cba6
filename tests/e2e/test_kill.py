"""SIGKILL in the middle of a stream of claims loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.hubproc import hub_command, running_hub

#: the sender keeps streaming until the hub dies (this bounds it if the kill never came)
MAX_CLAIMS = 200_000
KILL_AFTER = 500


async def test_sigkill_mid_stream_keeps_every_acknowledged_claim(tmp_path: Path) -> None:
    command = hub_command(tmp_path / "state", "--max-claims-per-agent", "0")
    acknowledged: set[str] = set()
    sent = 0
    sent_at_kill = -1
    with running_hub(command, tmp_path) as hub:
        async with connect(hub.uri, compression=None, max_queue=None) as ws:
            await ws.send(json.dumps({"sender": "k/agent", "type": "heartbeat"}))

            async def stream() -> None:
                nonlocal sent
                for n in range(MAX_CLAIMS):
                    await ws.send(json.dumps({"sender": "k/agent", "type": "claim",
                                              "task_id": f"T{n}", "paths": [f"f/{n}"]}))
                    sent = n + 1

            sender = asyncio.create_task(stream())
            try:
                async with asyncio.timeout(60):
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["type"] == "claim_granted":
                            acknowledged.add(frame["task_id"])
                            if len(acknowledged) == KILL_AFTER:
                                sent_at_kill = sent
                                hub.process.send_signal(signal.SIGKILL)
            except ConnectionClosed:
                pass  # the hub died under us: that is the point
            sender.cancel()
        assert hub.process.wait(timeout=10) == -signal.SIGKILL
    assert KILL_AFTER <= len(acknowledged)
    assert sent_at_kill < MAX_CLAIMS, "the kill landed while claims were still streaming"

    with running_hub(command, tmp_path) as hub:
        async with connect(hub.uri, compression=None, max_queue=None, max_size=None) as ws:
            await ws.send(json.dumps({"sender": "k/check", "type": "state_request"}))
            async with asyncio.timeout(30):
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "state_snapshot":
                        break
        live = {c["task_id"] for c in frame["snapshot"]["active_claims"]}
        assert acknowledged <= live
        assert all(c["owner"] == "k/agent" for c in frame["snapshot"]["active_claims"])
        assert "replayed" in "".join(hub.output)
    assert hub.process.returncode == 0
