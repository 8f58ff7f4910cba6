"""The whole loop with the real Claude Code, Codex and Gemini CLI (offline, each against its
API's scripted stub), as test_opencode_issue.py does with opencode: an issue is dispatched to
an ACP run started by the agent's preset (`acp.adapter`, its binary's folder on the PATH),
the agent's shell call asks permission, the request is in the steering queue and an operator
answers it, the command runs, the agent calls mark_done through our MCP server (allowed by
the policy: an MCP tool is of kind `other`), the issue lands in Done, and the transcript and
the usage the agent reports are there. Each agent is skipped, with the reason, when it is not
installed (.ci/run installs them)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support import claude_code, codex, gemini
from tests.support.anthropic_model import AnthropicModel
from tests.support.gemini_model import GeminiModel
from tests.support.model_script import Call, Say, ScriptedServer, Step
from tests.support.acp_e2e import issue_workflow
from tests.support.orchestrator import Running, issue, make  # noqa: F401
from tests.support.responses_model import ResponsesModel

pytestmark = pytest.mark.slow

#: an agent starts in seconds, our MCP server in one; this only bounds a hang
PATIENCE = 120.0
COMMAND = "printf made > made.txt"
DONE = Call("mark_done", {"title": "Wrote made.txt", "summary": "printf made."})


class Offline(Protocol):
    """What each agent's offline set-up gives: its environment variables of its own."""

    @property
    def own(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class Agent:
    """One real agent: its preset, where it is, its model's API, its shell call."""

    adapter: str
    binary: str | None
    skip: str
    model: type[ScriptedServer]
    shell: Call
    offline: Callable[[Path, str, str], Offline]
    #: the permission request's choice that allows once (the agent's own word)
    allow: str
    #: what the run's usage must hold: the agent's own report (docs/agents.md's table)
    usage: Callable[[dict[str, Any]], bool]


AGENTS = [
    Agent("claude", claude_code.claude_code_binary(), claude_code.SKIP_REASON, AnthropicModel,
          Call("Bash", {"command": COMMAND, "description": "Write made.txt"}),
          claude_code.claude_code_offline, "Allow", lambda usage: usage == {}),
    Agent("codex", codex.codex_binary(), codex.SKIP_REASON, ResponsesModel,
          Call("exec_command", {"cmd": COMMAND}), codex.codex_offline, "Yes, proceed",
          lambda usage: usage.get("context_used", 0) > 0 and "total" not in usage),
    Agent("gemini", gemini.gemini_binary(), gemini.SKIP_REASON, GeminiModel,
          Call("run_shell_command", {"command": COMMAND, "description": "Write made.txt"}),
          gemini.gemini_offline, "Allow",
          lambda usage: usage.get("total", 0) > 0 and "context_used" not in usage),
]


@pytest.mark.parametrize("agent", [pytest.param(a, id=a.adapter, marks=pytest.mark.skipif(
    a.binary is None, reason=a.skip)) for a in AGENTS])
async def test_an_issue_runs_on_the_agent_with_a_permission_answered_by_the_operator(
        agent: Agent, tmp_path: Path, make: Any) -> None:
    assert agent.binary is not None
    script: list[Step] = [agent.shell, DONE, Say("Done.")]
    with agent.model(script) as model:
        setup = agent.offline(tmp_path / agent.adapter, model.root, agent.binary)
        # the preset's command is found on the PATH the agent gets
        path = f"{Path(agent.binary).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        env = {**setup.own, "PATH": path}
        issue(tmp_path, "Todo", "AG-1", "write made.txt")
        run: Running = await make(issue_workflow(tmp_path, f"adapter: {agent.adapter}", env,
                                                 ["read", "search", "other"]))
        run.patience = PATIENCE
        await run.tick()
        book = run.hub.runtime.state.steering
        [asked] = await run.until(lambda: [r for r in book.open.values()
                                           if r.kind == "permission"])
        assert asked.asker == "AG-1" and COMMAND in asked.context
        assert agent.allow in asked.choices
        workspace = run.orchestrator.running[next(iter(run.orchestrator.running))].workspace
        assert not (workspace / "made.txt").exists()  # not before it is allowed
        run.hub.runtime.handle("ops", {"type": "steer_answer", "id": asked.id,
                                       "answer": agent.allow}, None, operator=True)
        [ended] = await run.until(lambda: run.ended("AG-1"))
    assert (ended.state, ended.reason) == ("ok", "marked done: Wrote made.txt")
    assert (tmp_path / "issues" / "Done" / "AG-1.md").is_file()
    # mark_done was allowed by the policy: the shell call was the one question
    assert [r.kind for r in (*book.open.values(), *book.ended.values())] == ["permission"]
    updates = [json.loads(line)["update"] for line in
               Path(ended.transcript).read_text().splitlines()]
    # the shell call ran (its workspace is gone with the issue done): its last status
    [shell] = {u["toolCallId"] for u in updates if COMMAND in u.get("title", "")}
    assert [u["status"] for u in updates
            if u.get("toolCallId") == shell and "status" in u][-1] == "completed"
    assert agent.usage(ended.usage), ended.usage
    assert not model.problems
