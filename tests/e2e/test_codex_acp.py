"""The real Codex over ACP (`codex-acp`), offline, driven through AcpRun: its model is a
scripted stub of the OpenAI Responses API (tests/support/responses_model.py), its MCP server is
ours (`python -m marrow_tui mcp`) against a real hub in the test's loop. Skipped, with the
reason, when there is no codex-acp (tests/support/codex.py says where it comes from; .ci/run
installs it).
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
from tests.support.codex import SKIP_REASON, codex_binary, codex_offline
from tests.support.hub import Hub
from tests.support.model_script import Call, Say, Step
from tests.support.responses_model import ResponsesModel, offered_tools

BINARY = codex_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

AGENT = "codex-1"
COMMAND = "printf made > made.txt"
WRITE = Call("exec_command", {"cmd": COMMAND})
NOTE = Call("post_progress", {"task_id": "T1", "text": "made.txt is written"})
SCRIPT: list[Step] = [WRITE, NOTE, Say("made.txt is written and noted.")]
#: codex-acp's permission options, as (optionId, kind)
SHELL_OPTIONS = [("approved", "allow_once"), ("approved-execpolicy-amendment", "allow_always"),
                 ("abort", "reject_once")]
MCP_OPTIONS = [("approved", "allow_once"), ("approved-for-session", "allow_always"),
               ("approved-always", "allow_always"), ("cancel", "reject_once")]
#: codex-acp's first chunk of a turn: its model is not one Codex knows
UNKNOWN_MODEL = ("Model metadata for `stub` not found. Defaulting to fallback metadata; this "
                 "can degrade performance and cause issues.")
#: the context window Codex assumes for a model it does not know (95% of 272,000)
FALLBACK_CONTEXT = 258_400


@pytest.fixture
def model() -> Iterator[ResponsesModel]:
    with ResponsesModel(SCRIPT) as stub:
        yield stub


@pytest.fixture
async def codex_run(request: pytest.FixtureRequest, tmp_path: Path, model: ResponsesModel,
                     hub: Hub) -> AsyncIterator[AgentRun[ResponsesModel]]:
    """codex-acp started against the stub, with our MCP server; the operator answers
    permission requests with the option kind the test's parameter names."""
    assert BINARY is not None
    setup = codex_offline(tmp_path / "codex", model.url, BINARY)
    async with started_agent(tmp_path, setup.command, setup.env, model, hub, request.param,
                             AGENT) as agent:
        yield agent


@pytest.mark.parametrize("codex_run", ["allow_once"], indirect=True)
async def test_a_turn_runs_an_allowed_shell_call_then_our_mcp_tool(codex_run: AgentRun[ResponsesModel]) -> None:
    cx = codex_run
    end = await cx.turn("Write made.txt, then note it on the board.")
    assert cx.model.problems == []
    assert end.stop_reason == "end_turn"
    # Both calls asked first, our MCP tool too, each before its tool call existed; the ids are
    # the model's own, the titles and options codex-acp's.
    shell, note = cx.operator.asked
    assert (shell.tool_call.id, shell.tool_call.title, shell.tool_call.kind) == (
        "call_0", COMMAND, "execute")
    assert shell.tool_call.raw_input["command"] == ["/bin/bash", "-lc", COMMAND]
    assert [(o.option_id, o.kind) for o in shell.options] == SHELL_OPTIONS
    assert (note.tool_call.id, note.tool_call.title, note.tool_call.kind) == (
        "call_1", "Tool: marrow/post_progress", "other")  # its known title, not the request's
    assert [(o.option_id, o.kind) for o in note.options] == MCP_OPTIONS
    assert (cx.workspace / "made.txt").read_text() == "made"
    # The transcript: each tool call starts at in_progress, after its permission request.
    [started] = [u for u in tool_call_updates(cx.run, "call_0") if u["sessionUpdate"] == "tool_call"]
    assert (started["title"], started["kind"]) == (COMMAND, "execute")
    assert statuses(cx.run, "call_0") == ["in_progress", "completed"]
    [mcp_call] = [u for u in tool_call_updates(cx.run, "call_1") if u["sessionUpdate"] == "tool_call"]
    assert (mcp_call["title"], mcp_call.get("kind")) == ("Tool: marrow/post_progress", None)
    assert mcp_call["rawInput"] == {"server": "marrow", "tool": "post_progress",
                                    "arguments": NOTE.arguments}
    assert statuses(cx.run, "call_1") == ["in_progress", "completed"]
    # The model saw both results (codex wraps them); the note is on the hub's board.
    assert "mcp__marrow__post_progress" in offered_tools(cx.model.scripted[-1])
    shell_result, note_result = cx.model.tool_results()
    assert "Process exited with code 0" in shell_result and "T1" in note_result
    [note_posted] = cx.hub.runtime.state.board.snapshot()["progress"]
    assert (note_posted["task_id"], note_posted["author"], note_posted["text"]) == (
        "T1", f"{AGENT}/mcp", "made.txt is written")
    # The turn's first chunk is codex's warning about the unknown model; the text follows.
    chunks = [u["content"]["text"] for u in updates(cx.run)
              if u["sessionUpdate"] == "agent_message_chunk"]
    assert chunks[0] == UNKNOWN_MODEL
    assert "".join(chunks[1:]) == "made.txt is written and noted."
    # Tokens: none in the prompt result; a usage_update after each model answer, its `used`
    # that answer's input and output tokens, its `size` the fallback context window.
    usage = cx.model.usage
    occupancy = [(u["used"], u["size"]) for u in updates(cx.run)
                 if u["sessionUpdate"] == "usage_update"]
    assert occupancy == [(usage.input_at(i) + usage.completion, FALLBACK_CONTEXT)
                         for i in range(len(SCRIPT))]
    assert end.usage == {"context_used": occupancy[-1][0], "context_size": FALLBACK_CONTEXT}


@pytest.mark.parametrize("codex_run", ["reject_once"], indirect=True)
async def test_a_rejected_shell_call_does_not_run_and_the_turn_ends_cancelled(
        codex_run: AgentRun[ResponsesModel]) -> None:
    cx = codex_run
    end = await cx.turn("Write made.txt, then note it on the board.")
    [asked] = cx.operator.asked
    assert asked.tool_call.id == "call_0"
    assert not (cx.workspace / "made.txt").exists()
    # "abort" ends the turn as cancelled, the model not asked again, and the tool call is
    # never announced: the only word of it is the permission request.
    assert end.stop_reason == "cancelled"
    assert len(cx.model.scripted) == 1
    assert tool_call_updates(cx.run, "call_0") == []
    assert end.refused and cx.run.view.tool_calls["call_0"].status == "failed"  # ended by us
    assert cx.hub.runtime.state.board.snapshot()["progress"] == []
    assert end.usage == {"context_used": cx.model.usage.input_at(0) + cx.model.usage.completion,
                         "context_size": FALLBACK_CONTEXT}
