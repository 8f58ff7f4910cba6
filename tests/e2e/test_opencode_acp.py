"""The real `opencode acp`, offline, driven through AcpRun: its model is a scripted stub
(tests/support/stub_model.py), its MCP server is ours (`python -m marrow_tui mcp`) against a
real hub in the test's loop. Skipped, with the reason, when there is no opencode
(tests/support/opencode.py says where it comes from; .ci/run installs it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.acp_e2e import (
    AgentRun,
    started_agent,
    statuses,
    tool_call_updates,
)
from tests.support.hub import Hub
from tests.support.opencode import (
    CONTEXT,
    INPUT_PRICE,
    OUTPUT_PRICE,
    SKIP_REASON,
    opencode_binary,
    opencode_offline,
)
from tests.support.stub_model import Call, Say, Step, StubModel, Usage, offered_tools

BINARY = opencode_binary()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]

AGENT = "opencode-1"
COMMAND = "printf made > made.txt"
WRITE = Call("bash", {"command": COMMAND, "description": "Write made.txt"})
NOTE = Call("post_progress", {"task_id": "T1", "text": "made.txt is written"})
SCRIPT: list[Step] = [WRITE, NOTE, Say("made.txt is written and noted.")]


def reported(usage: Usage, answers: int) -> dict[str, Any]:
    """The TurnEnd.usage of a turn that ends after the session's first `answers` scripted
    answers: opencode's prompt result holds the last answer's tokens (not the turn's sum), its
    usage_update the context that answer's request used and the session's cost so far."""
    last = usage.of_step(answers - 1)
    prompt = sum(usage.of_step(i)["prompt_tokens"] for i in range(answers))
    cost = (prompt * INPUT_PRICE + answers * usage.completion * OUTPUT_PRICE) / 1_000_000
    return {"input": last["prompt_tokens"], "output": last["completion_tokens"],
            "total": last["total_tokens"], "context_used": last["prompt_tokens"],
            "context_size": CONTEXT, "cost": pytest.approx(cost), "currency": "USD"}


@pytest.fixture
def model() -> Iterator[StubModel]:
    with StubModel(SCRIPT) as stub:
        yield stub


@pytest.fixture
async def opencode_run(request: pytest.FixtureRequest, tmp_path: Path, model: StubModel,
                       hub: Hub) -> AsyncIterator[AgentRun[StubModel]]:
    """opencode started against the stub, with our MCP server; the operator answers
    permission requests with the option kind the test's parameter names."""
    assert BINARY is not None
    setup = opencode_offline(tmp_path / "opencode", model.url, BINARY, permission="ask")
    async with started_agent(tmp_path, setup.command, setup.env, model, hub, request.param,
                             AGENT) as agent:
        yield agent


@pytest.mark.parametrize("opencode_run", ["allow_once"], indirect=True)
async def test_a_turn_runs_an_allowed_shell_call_then_our_mcp_tool(
        opencode_run: AgentRun[StubModel]) -> None:
    oc = opencode_run
    end = await oc.turn("Write made.txt, then note it on the board.")
    assert oc.model.problems == []
    assert end.stop_reason == "end_turn"
    # The shell call asked first: its title is the command; the options are opencode's own.
    [request] = oc.operator.asked
    assert (request.tool_call.id, request.tool_call.title, request.tool_call.kind) == (
        "call_0", COMMAND, "execute")
    assert request.tool_call.raw_input == {"command": COMMAND}
    assert [(o.option_id, o.kind) for o in request.options] == [
        ("once", "allow_once"), ("always", "allow_always"), ("reject", "reject_once")]
    assert (oc.workspace / "made.txt").read_text() == "made"
    # The transcript: the shell call from pending to completed, then the MCP tool's call.
    assert statuses(oc.run, "call_0") == ["pending", "in_progress", "completed"]
    mcp_call = tool_call_updates(oc.run, "call_1")
    assert (mcp_call[0]["title"], mcp_call[0]["kind"]) == ("marrow_post_progress", "other")
    assert statuses(oc.run, "call_1") == ["pending", "in_progress", "completed"]
    assert mcp_call[1]["rawInput"] == NOTE.arguments
    said = mcp_call[-1]["rawOutput"]["output"]
    # The model saw both results; the note is on the hub's board, posted by our MCP server.
    assert "marrow_post_progress" in offered_tools(oc.model.scripted[-1])
    assert oc.model.tool_results() == ["(no output)", said]
    assert "T1" in said
    [note] = oc.hub.runtime.state.board.snapshot()["progress"]
    assert (note["task_id"], note["author"], note["text"]) == (
        "T1", f"{AGENT}/mcp", "made.txt is written")
    # Tokens: the prompt result holds the last model request's usage, not the turn's sum;
    # usage_update holds the context then in use and the session's cost so far.
    assert end.usage == reported(oc.model.usage, len(SCRIPT))
    assert oc.run.view.message_tail == "made.txt is written and noted."


@pytest.mark.parametrize("opencode_run", ["reject_once"], indirect=True)
async def test_a_rejected_shell_call_does_not_run_the_turn_ends_and_the_session_goes_on(
        opencode_run: AgentRun[StubModel]) -> None:
    oc = opencode_run
    end = await oc.turn("Write made.txt, then note it on the board.")
    assert end.stop_reason == "end_turn"
    assert [r.tool_call.title for r in oc.operator.asked] == [COMMAND]
    assert not (oc.workspace / "made.txt").exists()
    assert statuses(oc.run, "call_0") == ["pending", "in_progress", "failed"]
    assert oc.run.view.tool_calls["call_0"].status == "failed"
    # opencode ends the turn at once: the model is not asked again, the MCP tool never runs
    assert len(oc.model.scripted) == 1
    assert oc.hub.runtime.state.board.snapshot()["progress"] == []
    assert end.usage == reported(oc.model.usage, 1)
    # A follow-up in the same session: the script goes on from the conversation it holds
    again = await oc.turn("Never mind the file; just note it.")
    assert again.stop_reason == "end_turn"
    assert oc.operator.asked[1:] == []  # an MCP tool asks no permission
    assert [n["text"] for n in oc.hub.runtime.state.board.snapshot()["progress"]] == [
        "made.txt is written"]
    assert oc.run.view.message_tail == "made.txt is written and noted."
    # Its two model requests: the tokens are the last one's again; the cost is the session's
    assert again.usage == reported(oc.model.usage, 3)
