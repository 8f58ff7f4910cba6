"""The real Gemini CLI over ACP (`gemini --acp`), offline, driven through AcpRun: its model is
a scripted stub of the Gemini API (tests/support/gemini_model.py), its MCP server is ours
(`python -m marrow_tui mcp`) against a real hub in the test's loop. Skipped, with the reason,
when there is no gemini (tests/support/gemini.py says where it comes from; .ci/run installs
it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from marrow_tui.agents.acp import AcpRun
from tests.support.acp_e2e import (
    AgentRun,
    ours,
    started_agent,
    statuses,
    tool_call_updates,
    updates,
)
from tests.support.gemini import SKIP_REASON, gemini_binary, gemini_offline
from tests.support.gemini_model import GeminiModel, offered_tools
from tests.support.hub import Hub
from tests.support.model_script import Call, Say, Step

BINARY = gemini_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

AGENT = "gemini-1"
COMMAND = "printf made > made.txt"
WRITE = Call("run_shell_command", {"command": COMMAND, "description": "Write made.txt"})
NOTE = Call("post_progress", {"task_id": "T1", "text": "made.txt is written"})
SCRIPT: list[Step] = [WRITE, NOTE, Say("made.txt is written and noted.")]
#: gemini --acp's permission options, as (optionId, kind)
SHELL_OPTIONS = [("proceed_always", "allow_always"), ("proceed_once", "allow_once"),
                 ("cancel", "reject_once")]
MCP_OPTIONS = [("proceed_always_server", "allow_always"), ("proceed_always_tool", "allow_always"),
               ("proceed_once", "allow_once"), ("cancel", "reject_once")]


@pytest.fixture
def model() -> Iterator[GeminiModel]:
    with GeminiModel(SCRIPT) as stub:
        yield stub


@pytest.fixture
async def gemini_run(request: pytest.FixtureRequest, tmp_path: Path, model: GeminiModel,
                     hub: Hub) -> AsyncIterator[AgentRun[GeminiModel]]:
    """gemini --acp started against the stub, with our MCP server; the operator answers
    permission requests with the option kind the test's parameter names."""
    assert BINARY is not None
    setup = gemini_offline(tmp_path / "gemini", model.url, BINARY)
    async with started_agent(tmp_path, setup.command, setup.env, model, hub, request.param,
                             AGENT) as agent:
        yield agent


def call_ids(run: AcpRun) -> list[str]:
    """The tool call ids the run's transcript names, each once, in order."""
    seen: list[str] = []
    for update in updates(run):
        if "toolCallId" in update and update["toolCallId"] not in seen and not ours(update):
            seen.append(update["toolCallId"])
    return seen


@pytest.mark.parametrize("gemini_run", ["allow_once"], indirect=True)
async def test_a_turn_runs_an_allowed_shell_call_then_our_mcp_tool(gemini_run: AgentRun[GeminiModel]) -> None:
    gm = gemini_run
    end = await gm.turn("Write made.txt, then note it on the board.")
    assert gm.model.problems == []
    assert end.stop_reason == "end_turn"
    # Both calls asked first, our MCP tool too; Gemini names its tool calls itself
    # (`<tool>__<tool>_<ms>_<n>`: the Gemini API's function calls carry no id).
    shell, note = gm.operator.asked
    assert shell.tool_call.id.startswith("run_shell_command__run_shell_command_")
    assert (shell.tool_call.title, shell.tool_call.kind) == (COMMAND, "execute")
    assert [(o.option_id, o.kind) for o in shell.options] == SHELL_OPTIONS
    assert note.tool_call.id.startswith("mcp_marrow_post_progress__mcp_marrow_post_progress_")
    assert (note.tool_call.title, note.tool_call.kind) == (
        "post_progress (marrow MCP Server)", "other")
    assert [(o.option_id, o.kind) for o in note.options] == MCP_OPTIONS
    assert (gm.workspace / "made.txt").read_text() == "made"
    # The transcript: no `tool_call` at all; each call's one word is a tool_call_update that
    # it is completed (after its permission request).
    assert call_ids(gm.run) == [shell.tool_call.id, note.tool_call.id]
    for asked in (shell, note):
        [done] = tool_call_updates(gm.run, asked.tool_call.id)
        assert (done["sessionUpdate"], done["status"]) == ("tool_call_update", "completed")
    assert statuses(gm.run, shell.tool_call.id) == ["completed"]
    assert gm.run.view.tool_calls[shell.tool_call.id].status == "completed"
    # The model saw both results; the note is on the hub's board, posted by our MCP server.
    assert "mcp_marrow_post_progress" in offered_tools(gm.model.scripted[-1])
    shell_result, note_result = gm.model.tool_results()
    assert "Output: (empty)" in shell_result and "posted a note on T1." in note_result
    [note_posted] = gm.hub.runtime.state.board.snapshot()["progress"]
    assert (note_posted["task_id"], note_posted["author"], note_posted["text"]) == (
        "T1", f"{AGENT}/mcp", "made.txt is written")
    assert gm.run.view.message_tail == "made.txt is written and noted."
    # Tokens: in the prompt result's _meta.quota, the turn's main model requests added up
    # (its routing question not counted); no usage_update.
    usage = gm.model.usage
    assert end.usage == {"input": sum(usage.input_at(i) for i in range(len(SCRIPT))),
                         "output": len(SCRIPT) * usage.completion,
                         "total": sum(usage.input_at(i) + usage.completion
                                      for i in range(len(SCRIPT)))}
    assert not [u for u in updates(gm.run) if u["sessionUpdate"] == "usage_update"]


@pytest.mark.parametrize("gemini_run", ["reject_once"], indirect=True)
async def test_a_rejected_shell_call_does_not_run_and_the_model_is_told(
        gemini_run: AgentRun[GeminiModel]) -> None:
    gm = gemini_run
    end = await gm.turn("Write made.txt, then note it on the board.")
    assert end.stop_reason == "end_turn"
    assert not (gm.workspace / "made.txt").exists()
    # Unlike the other three, Gemini goes on: the model gets the refusal as the call's result
    # and is asked again (here: the note, refused too, then the text). A refused call is never
    # in the transcript: its permission request is the only word of it.
    assert [r.tool_call.kind for r in gm.operator.asked] == ["execute", "other"]
    assert gm.model.tool_results() == [
        '{"error": "Tool \\"run_shell_command\\" was canceled by the user."}',
        '{"error": "Tool \\"mcp_marrow_post_progress\\" was canceled by the user."}']
    assert call_ids(gm.run) == []
    assert end.refused  # and each refused call ends (failed) in the view
    assert {c.status for c in gm.run.view.tool_calls.values()} == {"failed"}
    assert gm.hub.runtime.state.board.snapshot()["progress"] == []
    assert gm.run.view.message_tail == "made.txt is written and noted."
