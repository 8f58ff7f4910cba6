"""The demo's ACP agent (examples/demo_team/acp/agent.py) driven through AcpRun, a real
subprocess at pace 0: the session it plays, a permission allowed and one rejected, a cancelled
turn picked up by the next prompt, and a workspace it never leaves."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.agents.acp import AcpRun, PermissionRequest
from tests.support.hubproc import REPO
from tests.support.waiting import gone, until

AGENT = REPO / "examples" / "demo_team" / "acp" / "agent.py"


class Driver:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workspace = tmp / "ws"
        self.workspace.mkdir()
        self.asked: list[PermissionRequest] = []
        self.answer: str | None = "allow-once"
        self.run: AcpRun | None = None

    async def ask(self, request: PermissionRequest) -> str | None:
        self.asked.append(request)
        return self.answer

    async def start(self) -> AcpRun:
        env = {"PATH": os.environ["PATH"], "MARROW_DEMO_PACE": "0",
               "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        self.run = AcpRun([sys.executable, str(AGENT)], workspace=self.workspace, env=env,
                          stderr_log=self.tmp / "agent.stderr", ask=self.ask,
                          transcript=self.tmp / "transcript.jsonl", mcp_servers=[])
        await self.run.start()
        return self.run

    def updates(self) -> list[dict[str, Any]]:
        text = (self.tmp / "transcript.jsonl").read_text()
        return [json.loads(line)["update"] for line in text.splitlines()]


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[Driver]:
    d = Driver(tmp_path)
    yield d
    if d.run is not None:
        await d.run.close()
        if d.run.pid is not None:
            assert await until(lambda pid=d.run.pid: gone(pid))


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


async def test_an_allowed_command_runs_the_tests_and_the_turn_ends_with_usage(
        driver: Driver) -> None:
    run = await driver.start()
    end = await run.prompt("Work on ACP-1: slugify() leaves double dashes.")
    assert end.stop_reason == "end_turn"
    assert end.usage == {"input": 18420, "output": 1263, "total": 19683,
                         "context_used": 23512, "context_size": 200000, "cost": 0.0731,
                         "currency": "USD"}
    [request] = driver.asked
    assert (request.tool_call.kind, request.tool_call.title) == ("execute",
                                                                 "python -m unittest -q")
    assert request.tool_call.raw_input["command"] == "python -m unittest -q"
    assert [o.kind for o in request.options] == ["allow_once", "allow_always", "reject_once"]
    view = run.view
    calls = list(view.tool_calls.values())
    assert [(c.kind, c.status) for c in calls] == [
        ("read", "completed"), ("search", "completed"), ("edit", "completed"),
        ("edit", "completed"), ("execute", "completed")]
    assert "OK" in json.dumps(calls[-1].content) and "Ran 3 tests" in json.dumps(
        calls[-1].content)
    assert [step.status for step in view.plan] == ["completed"] * 4
    # the edit is real, its diff says what changed, and the fixed code passes its tests
    slug = (driver.workspace / "textkit" / "slug.py").read_text()
    assert 're.sub(r"[^a-z0-9]+", "-", text.lower())' in slug
    [diff] = [item for item in calls[2].content if item.get("type") == "diff"]
    assert diff["path"] == "textkit/slug.py" and diff["newText"] == slug
    assert "isalnum" in diff["oldText"]
    kinds = {u["sessionUpdate"] for u in driver.updates()}
    assert {"plan", "agent_thought_chunk", "agent_message_chunk", "tool_call",
            "tool_call_update", "usage_update"} <= kinds
    # everything it wrote is in its workspace
    assert files(driver.workspace) == {"README.md", "textkit/__init__.py", "textkit/slug.py",
                                       "tests/__init__.py", "tests/test_slug.py"}
    assert files(driver.tmp) - {f"ws/{name}" for name in files(driver.workspace)} == {
        "agent.stderr", "transcript.jsonl"}


async def test_a_rejected_command_fails_its_tool_call_and_the_turn_still_ends(
        driver: Driver) -> None:
    driver.answer = "reject-once"
    run = await driver.start()
    end = await run.prompt("Work on ACP-1.")
    assert end.stop_reason == "end_turn"
    execute = [c for c in run.view.tool_calls.values() if c.kind == "execute"]
    assert [c.status for c in execute] == ["failed"]
    assert "did not allow" in json.dumps(execute[0].content)
    assert [step.status for step in run.view.plan][-1] == "in_progress"
    assert "won't run the tests" in run.view.message_tail


async def test_a_cancelled_turn_is_picked_up_by_the_next_prompt(driver: Driver) -> None:
    run = await driver.start()
    driver.answer = None  # the permission request is cancelled, as a session/cancel does

    async def cancel_when_asked(request: PermissionRequest) -> str | None:
        driver.asked.append(request)
        await run.cancel()
        return None

    run.ask = cancel_when_asked  # type: ignore[method-assign]
    first = await run.prompt("Work on ACP-1.")
    assert first.stop_reason == "cancelled"
    run.ask = driver.ask  # type: ignore[method-assign]
    driver.answer = "allow-once"
    second = await run.prompt("go on")
    assert second.stop_reason == "end_turn"
    assert "Noted: “go on”" in run.view.message_tail
    # the cancelled command failed; the next turn asked again and ran it
    assert [c.status for c in run.view.tool_calls.values() if c.kind == "execute"] == [
        "failed", "completed"]
    assert len(driver.asked) == 2
