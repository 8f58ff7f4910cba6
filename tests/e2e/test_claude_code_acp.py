"""The real Claude Code over ACP (`claude-code-acp`), offline, driven through AcpRun: its model
is a scripted stub of the Anthropic Messages API (tests/support/anthropic_model.py), its MCP
server is ours (`python -m marrow_tui mcp`) against a real hub in the test's loop. Skipped,
with the reason, when there is no claude-code-acp (tests/support/claude_code.py says where it
comes from; .ci/run installs it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.acp_e2e import (
    AgentRun,
    started_agent,
    statuses,
    tool_call_updates,
    updates,
)
from tests.support.anthropic_model import AnthropicModel, offered_tools
from tests.support.claude_code import SKIP_REASON, claude_code_binary, claude_code_offline
from tests.support.hub import Hub
from tests.support.model_script import Call, Say, Step

BINARY = claude_code_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

AGENT = "claude-1"
COMMAND = "printf made > made.txt"
WRITE = Call("Bash", {"command": COMMAND, "description": "Write made.txt"})
NOTE = Call("post_progress", {"task_id": "T1", "text": "made.txt is written"})
SCRIPT: list[Step] = [WRITE, NOTE, Say("made.txt is written and noted.")]
#: claude-code-acp's permission options, as (optionId, kind)
OPTIONS = [("allow_always", "allow_always"), ("allow", "allow_once"), ("reject", "reject_once")]


@pytest.fixture
def model() -> Iterator[AnthropicModel]:
    with AnthropicModel(SCRIPT) as stub:
        yield stub


@pytest.fixture
async def claude_run(request: pytest.FixtureRequest, tmp_path: Path, model: AnthropicModel,
                     hub: Hub) -> AsyncIterator[AgentRun[AnthropicModel]]:
    """claude-code-acp started against the stub, with our MCP server; the operator answers
    permission requests with the option kind the test's parameter names."""
    assert BINARY is not None
    setup = claude_code_offline(tmp_path / "claude", model.url, BINARY)
    async with started_agent(tmp_path, setup.command, setup.env, model, hub, request.param,
                             AGENT) as agent:
        yield agent


@pytest.mark.parametrize("claude_run", ["allow_once"], indirect=True)
async def test_a_turn_runs_an_allowed_shell_call_then_our_mcp_tool(claude_run: AgentRun[AnthropicModel]) -> None:
    cc = claude_run
    end = await cc.turn("Write made.txt, then note it on the board.")
    assert cc.model.problems == []
    assert end.stop_reason == "end_turn"
    # Both calls asked first, our MCP tool too (Claude Code asks for every tool not known safe);
    # the tool call ids are the model's own, the options claude-code-acp's.
    shell, note = cc.operator.asked
    assert (shell.tool_call.id, shell.tool_call.title, shell.tool_call.kind) == (
        "call_0", f"`{COMMAND}`", "execute")
    assert shell.tool_call.raw_input == WRITE.arguments
    assert (note.tool_call.id, note.tool_call.title, note.tool_call.kind) == (
        "call_1", "mcp__marrow__post_progress", "other")
    assert [(o.option_id, o.kind) for o in shell.options] == OPTIONS
    assert [(o.option_id, o.kind) for o in note.options] == OPTIONS
    assert (cc.workspace / "made.txt").read_text() == "made"
    # The transcript: each call announced twice under one id (first with a generic title and
    # no input), then straight from pending to completed: no in_progress.
    first, second = [u for u in tool_call_updates(cc.run, "call_0")
                     if u["sessionUpdate"] == "tool_call"]
    assert (first["title"], first["rawInput"]) == ("Terminal", {})
    assert (second["title"], second["rawInput"]) == (f"`{COMMAND}`", WRITE.arguments)
    assert statuses(cc.run, "call_0") == ["pending", "completed"]
    assert statuses(cc.run, "call_1") == ["pending", "completed"]
    said = tool_call_updates(cc.run, "call_1")[-1]["rawOutput"]
    # The model saw both results; the note is on the hub's board, posted by our MCP server.
    assert "mcp__marrow__post_progress" in offered_tools(cc.model.scripted[-1])
    assert cc.model.tool_results() == ["", said]
    assert "T1" in said
    [note_posted] = cc.hub.runtime.state.board.snapshot()["progress"]
    assert (note_posted["task_id"], note_posted["author"], note_posted["text"]) == (
        "T1", f"{AGENT}/mcp", "made.txt is written")
    # The text came in word chunks after an empty one; no usage at all, in the prompt result
    # or in any update.
    chunks = [u["content"]["text"] for u in updates(cc.run)
              if u["sessionUpdate"] == "agent_message_chunk"]
    assert chunks[0] == "" and "".join(chunks) == "made.txt is written and noted."
    assert cc.run.view.message_tail == "made.txt is written and noted."
    assert end.usage == {}
    assert not [u for u in updates(cc.run) if u["sessionUpdate"] == "usage_update"]


@pytest.mark.parametrize("claude_run", ["reject_once"], indirect=True)
async def test_a_rejected_shell_call_does_not_run_and_the_turn_ends(claude_run: AgentRun[AnthropicModel]) -> None:
    cc = claude_run
    end = await cc.turn("Write made.txt, then note it on the board.")
    assert end.stop_reason == "end_turn"
    assert [r.tool_call.id for r in cc.operator.asked] == ["call_0"]
    assert not (cc.workspace / "made.txt").exists()
    assert statuses(cc.run, "call_0") == ["pending", "failed"]
    assert cc.run.view.tool_calls["call_0"].status == "failed"
    [*_, refused] = tool_call_updates(cc.run, "call_0")
    assert "User refused permission to run tool" in refused["content"][0]["content"]["text"]
    # As opencode does, Claude Code ends the turn at once: the model is not asked again.
    assert len(cc.model.scripted) == 1
    assert cc.hub.runtime.state.board.snapshot()["progress"] == []
    assert end.usage == {}
