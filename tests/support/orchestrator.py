"""An orchestrator on a real hub, and the tracker files and WORKFLOW.md its tests give it."""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.orchestrator.dispatcher import Orchestrator

from tests.support.hub import WAIT, FakeClock, Hub, start_hub


ISSUE = """---
title: {title}
priority: {priority}
{extra}---
{body}
"""


def issue(root: Path, state: str, ident: str, title: str, priority: int = 2,
          extra: str = "", body: str = "Do the thing.") -> Path:
    folder = root / "issues" / state
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ident}.md"
    path.write_text(ISSUE.format(title=title, priority=priority, extra=extra, body=body))
    return path


#: the front matter's tracker, polling and workspace, the same for every test workflow
TRACKER = """tracker:
  kind: local
  root: issues
  active_states: [Todo, In Progress]
  terminal_states: [Done, Cancelled]
polling:
  interval_ms: 60000
workspace:
  root: ws
"""


def workflow(root: Path, agent_body: str, prompt: str = "Work on {{ issue.identifier }}.",
             extra: str = "") -> Path:
    script = root / "agent.sh"
    script.write_text("#!/bin/sh\ncat > prompt.txt\n" + agent_body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    path = root / "WORKFLOW.md"
    path.write_text(f"""---
{TRACKER}agent:
  command: '"{script}"'
  max_idle_continuations: 2
  stall_timeout_ms: 0
{extra}---
{prompt}
""")
    return path


FAKE_ACP_AGENT = Path(__file__).resolve().parent / "fake_acp_agent.py"


def acp_workflow(root: Path, scenario: str, acp: str = "", agent: str = "",
                 prompt: str = "Work on {{ issue.identifier }}.", stall_ms: int = 0) -> Path:
    """WORKFLOW.md for ACP runs of the fake agent's `scenario` (extra `acp:` and `agent:`
    lines as given, indented by two spaces)."""
    path = root / "WORKFLOW.md"
    path.write_text(f"""---
{TRACKER}agent:
  max_idle_continuations: 5
{agent}acp:
  command: '"{sys.executable}" "{FAKE_ACP_AGENT}" {scenario}'
  stall_timeout_ms: {stall_ms}
{acp}---
{prompt}
""")
    return path


MARROW = f'"{sys.executable}" -m marrow_tui'


class Running:
    def __init__(self, hub: Hub, orchestrator: Orchestrator) -> None:
        self.hub, self.orchestrator = hub, orchestrator
        #: how long `until` waits by default
        self.patience = WAIT * 2

    @property
    def sessions(self) -> list[Any]:
        return sorted(self.hub.runtime.state.sessions.by_id.values(), key=lambda s: s.started)

    def ended(self, identifier: str | None = None) -> list[Any]:
        return [s for s in self.sessions if not s.running
                and (identifier is None or s.agent == identifier)]

    async def until(self, test: Callable[[], Any], timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout or self.patience):
            while not (value := test()):
                await asyncio.sleep(0.02)
        return value

    async def tick(self) -> None:
        await self.orchestrator.tick()
        await self.hub.runtime.settled()


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(path: Path, clock: FakeClock | None = None) -> Running:
        hub = await start_hub(tmp_path / "state", clock or FakeClock())
        orchestrator = Orchestrator(hub.runtime, path, hub_uri=hub.uri, watch=False)
        await orchestrator.start(loop=False)
        run = Running(hub, orchestrator)
        started.append(run)
        return run

    yield start
    for run in started:
        await run.orchestrator.stop()
        await run.hub.stop()
