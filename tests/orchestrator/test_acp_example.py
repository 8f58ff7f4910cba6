"""examples/acp as a user runs it (a copy): the scripted ACP agent asks to run the tests, the
operator allows it, the agent marks the issue done through our MCP server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.orchestrator import make  # noqa: F401 (a fixture)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acp"


async def test_the_acp_example_runs_to_done(tmp_path: Path, make: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_AGENT_PACE", "0")
    folder = tmp_path / "acp"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".marrow*"))
    run = await make(folder / "WORKFLOW.md")
    run.patience = 60.0
    await run.tick()
    book = run.hub.runtime.state.steering
    [asked] = await run.until(lambda: list(book.open.values()))
    assert (asked.kind, asked.question) == ("permission", "Allow execute: python -m pytest -q?")
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": asked.id,
                                   "answer": "Allow once"}, None, operator=True)
    [ended] = await run.until(lambda: run.ended("ACP-1"))
    assert ended.reason == "marked done: greet: type hints, docstring and a test"
    assert (folder / "issues" / "Done" / "ACP-1.md").is_file()
    assert (ended.usage["total"], ended.usage["cost"]) == (5840, 0.0421)
