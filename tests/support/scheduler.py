"""A scheduler on a real hub, and the configs and agent scripts the scheduler tests give it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.config.load import load_config
from marrow_tui.config.model import AgentConfig, Config
from marrow_tui.core.events import Event
from marrow_tui.scheduler.heartbeat import Scheduler

from tests.support.hub import WAIT, FakeClock, Hub, start_hub
from tests.support.orchestrator import FAKE_ACP_AGENT


def make_agent(tmp_path: Path, **kw: object) -> AgentConfig:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    kw.setdefault("context_dirs", (ws / "context.d",))
    return AgentConfig(name="orch", agent_command="true", workspace=ws, **kw)  # type: ignore[arg-type]


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def write_config(root: Path, agents: dict[str, str], interval: int = 60,
                 extra: str = "") -> Path:
    """A config with one agent per (name, shell body); each copies its prompt to prompt.txt."""
    parts = []
    for name, body in agents.items():
        command = script(root / "bin" / f"{name}.sh", body)
        parts.append(
            f'[[agents]]\nname = "{name}"\nheartbeat_interval = {interval}\n'
            f'heartbeat_timeout = 30\nworkspace = "{root / "ws" / name}"\n'
            f'agent_command = "{shlex.quote(str(command))}"\nstop_grace = 1\n{extra}\n')
        (root / "ws" / name).mkdir(parents=True, exist_ok=True)
    path = root / "marrow.toml"
    path.write_text("\n".join(parts))
    return path


def loaded(path: Path) -> Config:
    result = load_config(path)
    assert not result.errors, result.errors
    assert result.config is not None
    return result.config


class Running:
    """A hub with a scheduler, and every event the change feed published."""

    def __init__(self, hub: Hub, scheduler: Scheduler) -> None:
        self.hub = hub
        self.scheduler = scheduler
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        hub.runtime.subscribe(self._feed)

    def _feed(self, events: list[Event]) -> None:
        self.events.extend(events)
        self._changed.set()

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e.data for e in self.events
                if e.kind == kind and all(e.data.get(k) == v for k, v in match.items())]

    async def until(self, test: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Wait (bounded) until `test()` is true: looked at on every event, and every 50 ms
        for conditions outside the runtime (a file an agent writes)."""
        async with asyncio.timeout(timeout):
            while not (value := test()):
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
        return value

    async def ended(self, count: int, agent: str | None = None) -> list[dict[str, Any]]:
        match = {"agent": agent} if agent else {}
        return await self.until(lambda: len(self.of("session_end", **match)) >= count
                                and self.of("session_end", **match))


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(config: Path | Config, clock: FakeClock | None = None, watch: bool = False,
                    state: Path | None = None) -> Running:
        hub = await start_hub(state or tmp_path / "state", clock or FakeClock())
        if isinstance(config, Path):
            config = loaded(config)
        scheduler = Scheduler(hub.runtime, config, hub_uri=hub.uri, watch=watch)
        running = Running(hub, scheduler)
        await scheduler.start()
        started.append(running)
        return running

    yield start
    for running in started:
        await running.scheduler.stop()
        await running.hub.stop()


#: the fake ACP agent and our MCP server each start a Python that imports an SDK
PATIENCE = 60.0


def acp_config(root: Path, scenario: str, extra: str = "") -> Path:
    command = shlex.join([sys.executable, str(FAKE_ACP_AGENT), scenario])
    (root / "ws").mkdir(parents=True, exist_ok=True)
    path = root / "marrow.toml"
    path.write_text(f"""[[agents]]
name = "coder"
protocol = "acp"
agent_command = {command!r}
workspace = "{root / 'ws'}"
heartbeat_interval = 3600
{extra}
""")
    return path


def said(transcript: str) -> str:
    """What the agent said, from its transcript."""
    updates = [json.loads(line)["update"] for line in Path(transcript).read_text().splitlines()]
    return "".join(u["content"]["text"] for u in updates
                   if u.get("sessionUpdate") == "agent_message_chunk")
