"""The real `opencode acp`, offline against the stub model, run as an ACP run of ours: its shell
command writes a file a script's lease holds, so the edit waits (a conflict the operator
chose to wait on) until the script releases its lease; then it runs. Skipped, with the
reason, when there is no opencode (tests/support/opencode.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from marrow_tui.agent_session import AgentSession, Limits
from marrow_tui.core.acp import PermissionPolicy
from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Outcome
from tests.support.hub import Hub
from tests.support.opencode import SKIP_REASON, opencode_binary, opencode_offline
from tests.support.stub_model import Call, Say, StubModel

BINARY = opencode_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

COMMAND = "printf made > made.txt"
SCRIPT = [Call("bash", {"command": COMMAND, "description": "Write made.txt"}),
          Say("made.txt is written.")]
#: a real agent's turn against the stub takes seconds; this bounds a hang
PATIENCE = 90.0


async def test_opencode_waits_for_a_scripts_lease_then_goes_on_when_it_is_released(
        tmp_path: Path, hub: Hub) -> None:
    assert BINARY is not None
    workspace = tmp_path / "ws"
    workspace.mkdir()
    runtime = hub.runtime
    runtime.handle("script", {"type": "claim", "task_id": "T9",
                              "worktree": str(workspace.resolve()), "paths": ["made.txt"]},
                   None)

    def emit(event: Event) -> None:
        runtime.state.apply(event)
        runtime.submit(Outcome(events=[event]))

    with StubModel(SCRIPT) as model:
        setup = opencode_offline(tmp_path / "opencode", model.url, BINARY, permission="ask")
        session = AgentSession(
            runtime, emit, session="oc-run", agent="opencode-1", task_id="",
            command=setup.command, workspace=workspace, env=setup.env,
            stderr_log=tmp_path / "oc.stderr", transcript=tmp_path / "oc.jsonl",
            mcp_servers=[], policy=PermissionPolicy(mode="allow", conflict="wait"),
            limits=Limits(), read_timeout=60, stop=asyncio.Event(), is_done=lambda: False,
            continuation=None)
        running = asyncio.ensure_future(session.run("Write made.txt."))
        try:
            book = runtime.state.steering
            async with asyncio.timeout(PATIENCE):
                while not book.conflicts():
                    await asyncio.wait({running}, timeout=0.05)
                    assert not running.done(), running.result()
            [request] = book.conflicts()
            assert request.asker == "opencode-1" and request.waiting_by == "opencode-1"
            assert request.conflict is not None
            assert (request.conflict["paths"], request.conflict["kind"]) == (["made.txt"],
                                                                            "execute")
            assert [h["owner"] for h in request.conflict["held"]] == ["script"]
            assert not (workspace / "made.txt").exists()  # it waits: nothing written
            runtime.handle("script", {"type": "release", "task_id": "T9"}, None)
            async with asyncio.timeout(PATIENCE):
                ending = await running
        finally:
            session.stop.set()
            await asyncio.wait({running}, timeout=PATIENCE)
    assert ending.state == "ok", ending
    assert (workspace / "made.txt").read_text() == "made"
    ended = book.get(request.id)
    assert ended is not None and (ended.answer, ended.answered_by) == ("Wait",
                                                                       "hub:lease-ended")
    assert not runtime.state.claims.get("oc-run")  # the run's lease ended with it
