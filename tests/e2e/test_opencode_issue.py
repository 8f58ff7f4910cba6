"""The whole loop with the real `opencode acp` (offline, against the scripted stub model): an
issue is dispatched to an ACP run, opencode's shell call asks permission, the request is in the
steering queue and an operator answers it, the command runs, opencode calls mark_done through
our MCP server (which the run put in its session), the issue lands in Done, and the transcript
and the usage are there. Skipped, with the reason, without opencode (.ci/run installs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.opencode import SKIP_REASON, opencode_binary, opencode_offline
from tests.support.acp_e2e import issue_workflow
from tests.support.orchestrator import Running, issue, make  # noqa: F401
from tests.support.stub_model import Call, Say, StubModel

BINARY = opencode_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

#: opencode starts in seconds, our MCP server in one; this only bounds a hang
PATIENCE = 120.0


async def test_an_issue_runs_on_opencode_with_a_permission_answered_by_the_operator(
        tmp_path: Path, make: Any) -> None:
    assert BINARY is not None
    script = [Call("bash", {"command": "printf made > made.txt", "description": "Write it"}),
              Call("mark_done", {"title": "Wrote made.txt", "summary": "printf made."}),
              Say("Done.")]
    with StubModel(script) as model:
        opencode = opencode_offline(tmp_path / "opencode", model.url, BINARY, permission="ask")
        env = {k: v for k, v in opencode.env.items() if k.startswith(("OPENCODE", "XDG_"))
               or k in ("HOME", "TMPDIR")}
        issue(tmp_path, "Todo", "OC-1", "write made.txt")
        run: Running = await make(issue_workflow(
            tmp_path, f"command: {json.dumps(' '.join(opencode.command))}", env,
            ["read", "search"]))
        run.patience = PATIENCE
        await run.tick()
        book = run.hub.runtime.state.steering
        [asked] = await run.until(lambda: [r for r in book.open.values()
                                           if r.kind == "permission"])
        assert asked.asker == "OC-1" and "printf made > made.txt" in asked.context
        allow = next(c for c in asked.choices if c.lower().startswith("allow"))
        workspace = run.orchestrator.running[next(iter(run.orchestrator.running))].workspace
        assert not (workspace / "made.txt").exists()  # not before it is allowed
        run.hub.runtime.handle("ops", {"type": "steer_answer", "id": asked.id,
                                       "answer": allow}, None, operator=True)
        [ended] = await run.until(lambda: run.ended("OC-1"))
    assert (ended.state, ended.reason) == ("ok", "marked done: Wrote made.txt")
    assert (tmp_path / "issues" / "Done" / "OC-1.md").is_file()
    updates = [json.loads(line)["update"] for line in
               Path(ended.transcript).read_text().splitlines()]
    statuses = {u.get("toolCallId"): u.get("status") for u in updates if u.get("status")}
    assert "completed" in statuses.values()
    assert ended.usage.get("total", 0) > 0 and ended.usage.get("context_size") == 128_000
    assert not model.problems
