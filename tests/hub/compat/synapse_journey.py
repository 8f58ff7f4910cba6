"""Drive a marrow-tui hub with synapse-channel's own Python agent class, unmodified.

Run with an interpreter that has synapse-channel installed (never a dependency of ours):
    SYNAPSE_PYTHON tests/hub/compat/synapse_journey.py ws://127.0.0.1:PORT
Prints one line per step and exits non-zero at the first step that does not behave as the
synapse protocol says.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from synapse_channel.client.agent import SynapseAgent

WAIT = 5.0


class Peer:
    def __init__(self, name: str, uri: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.agent = SynapseAgent(name, self._collect, uri=uri, verbose=False)
        self.task: asyncio.Task[None] | None = None

    async def _collect(self, data: dict[str, Any]) -> None:
        await self.inbox.put(data)

    async def start(self) -> None:
        self.task = asyncio.create_task(self.agent.connect())
        if not await self.agent.wait_until_ready(WAIT):
            raise SystemExit(f"{self.agent.name}: not ready")

    async def expect(self, kind: str, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                frame = await self.inbox.get()
                if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def stop(self) -> None:
        self.agent.running = False
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def step(text: str) -> None:
    print(f"ok  {text}", flush=True)


async def main(uri: str) -> None:
    alice, bob = Peer("compat/alice", uri), Peer("compat/bob", uri)
    await alice.start()
    await bob.start()
    step("both agents joined")

    await alice.agent.claim("T1", "edit auth", worktree="main", paths=["src/auth.py", "src/util/"])
    grant = await alice.expect("claim_granted", task_id="T1")
    assert grant["paths"] == ["src/auth.py", "src/util"], grant
    step(f"claim with a file scope (epoch {grant['epoch']})")

    await bob.agent.claim("T2", worktree="main", paths=["src/util/x.py"])
    denied = await bob.expect("claim_denied", task_id="T2")
    assert denied["reason_code"] == "SCOPE_CONFLICT", denied
    step("overlapping claim refused: SCOPE_CONFLICT")

    await alice.agent.update_task("T1", status="working", note="started")
    assert (await alice.expect("task_updated", task_id="T1"))["status"] == "working"
    step("status updated to working")

    await alice.agent.save_checkpoint("T1", "step=3")
    await alice.expect("checkpoint_saved", task_id="T1")
    step("checkpoint saved")

    await alice.agent.handoff("T1", "compat/bob", note="please finish")
    moved = await bob.expect("handoff_granted", task_id="T1")
    assert moved["owner"] == "compat/bob" and moved["checkpoint"] == "step=3", moved
    step(f"handed off to an online agent (new epoch {moved['epoch']})")

    await bob.agent.release("T1")
    await bob.expect("release_granted", task_id="T1")
    step("released")

    await alice.agent.post_task("P1", "design")
    await alice.expect("ledger_task_posted")
    await alice.agent.post_task("P2", "build", depends_on=["P1"], suggested_owner="compat/bob")
    await alice.expect("ledger_task_posted")
    await alice.agent.update_ledger_task("P1", status="done")
    await alice.expect("ledger_task_updated")
    await bob.agent.post_progress("P2", "starting the build")
    await bob.expect("ledger_progress_posted")
    step("board tasks declared with dependencies, updated, progress posted")

    await alice.agent.chat("hello bob", target="compat/bob")
    heard = await bob.expect("chat", payload="hello bob")
    step(f"chat delivered (msg_id {heard['msg_id']})")

    await alice.agent.request_who()
    who = await alice.expect("who_snapshot")
    assert who["online_agents"] == ["compat/alice", "compat/bob"], who
    await alice.agent.request_state()
    state = await alice.expect("state_snapshot")
    assert state["snapshot"]["active_claims"] == [], state
    await alice.agent.request_board()
    board = (await alice.expect("board_snapshot"))["board"]
    assert board["ready"] == ["P2"], board
    step("who, state and board read back")

    await alice.stop()
    await bob.stop()
    print("synapse journey: all steps passed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
