"""What the end-to-end tests of real ACP agents (tests/e2e/test_*_acp.py) share: an operator
that answers permission requests, our MCP server as a session's `mcpServers` entry, a run's
transcript read back, and the check that an agent left no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from marrow_tui.agents.acp import AcpRun, PermissionRequest, TurnEnd
from tests.support.hub import Hub
from tests.support.hubproc import REPO
from tests.support.waiting import gone, until


@dataclass
class Operator:
    """Answers every permission request with the option of one kind, and keeps the requests."""

    kind: str
    asked: list[PermissionRequest] = field(default_factory=list)

    async def ask(self, request: PermissionRequest) -> str | None:
        self.asked.append(request)
        return next((o.option_id for o in request.options if o.kind == self.kind), None)


#: a turn of a few model steps takes a real agent seconds; this only bounds a hang
TURN_LIMIT = 90.0

M = TypeVar("M")


@dataclass
class AgentRun(Generic[M]):
    """A started real agent, its stub model, the hub its MCP server reaches."""

    run: AcpRun
    model: M
    hub: Hub
    workspace: Path
    operator: Operator
    #: the MARROW_SESSION our MCP server carries: finds its process
    session: str

    async def turn(self, text: str) -> TurnEnd:
        return await asyncio.wait_for(self.run.prompt(text), TURN_LIMIT)


@contextlib.asynccontextmanager
async def started_agent(folder: Path, command: Sequence[str], env: Mapping[str, str],
                        model: M, hub: Hub, answer: str,
                        agent: str) -> AsyncIterator[AgentRun[M]]:
    """The agent started in `folder`/ws with our MCP server (as `agent`), the operator
    answering its permission requests with the option kind `answer`; at the end it must leave
    no process behind."""
    workspace = folder / "ws"
    workspace.mkdir()
    operator = Operator(answer)
    session = f"e2e-{uuid.uuid4().hex}"  # unique on the machine: teardown looks for it
    run = AcpRun(command, workspace=workspace, env=env, stderr_log=folder / "agent.stderr",
                 transcript=folder / "t.jsonl", ask=operator.ask,
                 mcp_servers=[marrow_mcp_server(hub.uri, agent, session)], read_timeout=60)
    await run.start()
    try:
        yield AgentRun(run, model, hub, workspace, operator, session)
    finally:
        await closed_leaving_nothing(run, session)


def marrow_mcp_server(hub_uri: str, agent: str, session: str) -> dict[str, Any]:
    """Our MCP server in ACP's stdio form, as the agent's `mcpServers` entry."""
    env = {"PYTHONPATH": str(REPO), "MARROW_HUB_URI": hub_uri, "MARROW_AGENT": agent,
           "MARROW_SESSION": session}
    return {"name": "marrow", "command": sys.executable, "args": ["-m", "marrow_tui", "mcp"],
            "env": [{"name": k, "value": v} for k, v in env.items()]}


def processes_with(variable: str) -> list[int]:
    """The processes whose environment holds `variable` (NAME=value) exactly."""
    wanted = variable.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and not gone(int(entry.name)):
            found.append(int(entry.name))
    return found


async def closed_leaving_nothing(run: AcpRun, session: str) -> None:
    """Close the run; its agent and what the agent started (our MCP server, which carries
    MARROW_SESSION=`session`) must go with its process group."""
    await run.close()
    assert run.pid is not None and await until(lambda: gone(run.pid or 0), 10)
    marker = f"MARROW_SESSION={session}"
    assert await until(lambda: not processes_with(marker), 10), processes_with(marker)


def updates(run: AcpRun) -> list[dict[str, Any]]:
    """Every session/update the run's transcript holds, in order."""
    return [json.loads(line)["update"] for line in run.transcript.path.read_text().splitlines()]


def tool_call_updates(run: AcpRun, call_id: str) -> list[dict[str, Any]]:
    """The agent's own updates of a tool call (not the lines we add: `_meta.marrow`)."""
    return [u for u in updates(run) if u["sessionUpdate"] in ("tool_call", "tool_call_update")
            and u["toolCallId"] == call_id and not ours(u)]


def ours(update: dict[str, Any]) -> bool:
    """A transcript line marrow-tui wrote (a permission request, its refusal)."""
    meta = update.get("_meta")
    return isinstance(meta, dict) and "marrow" in meta


def statuses(run: AcpRun, call_id: str) -> list[str]:
    """The statuses a tool call went through, each once, in order."""
    seen: list[str] = []
    for update in tool_call_updates(run, call_id):
        if "status" in update and update["status"] not in seen:
            seen.append(update["status"])
    return seen


def issue_workflow(root: Path, launch: str, env: Mapping[str, str],
                   allow: Sequence[str]) -> Path:
    """WORKFLOW.md for one issue run by a real agent: `launch` is the `acp:` line that starts
    it (`adapter: claude`, `command: ...`), `env` its acp.env, `allow` the tool kinds the
    policy allows (the rest are asked)."""
    path = root / "WORKFLOW.md"
    path.write_text(f"""---
tracker:
  kind: local
  root: issues
  active_states: [Todo]
  terminal_states: [Done]
polling:
  interval_ms: 60000
workspace:
  root: ws
agent:
  max_turns: 1
acp:
  {launch}
  env: {json.dumps(dict(env))}
  stall_timeout_ms: 0
  permissions:
    mode: ask
    allow: [{", ".join(allow)}]
---
Work on {{{{ issue.identifier }}}}: {{{{ issue.title }}}}.
""")
    return path
