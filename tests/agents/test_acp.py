"""AcpRun against the scripted fake agent (tests/support/fake_acp_agent.py), a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from acp.schema import ToolCallUpdate

from marrow_tui.agents.acp import AcpFailure, AcpRun, PermissionRequest
from tests.support.waiting import gone, until

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_acp_agent.py"
MCP = {"name": "marrow", "command": "marrow-tui", "args": ["mcp"],
       "env": [{"name": "MARROW_AGENT", "value": "a1"}]}


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workspace = tmp / "ws"
        self.workspace.mkdir()
        self.asked: list[PermissionRequest] = []
        self.answer: str | None = "allow-once"
        self.runs: list[AcpRun] = []
        #: what on_change was told, in order
        self.changes: list[tuple[str, dict[str, Any]]] = []

    def changed(self, what: str, fields: dict[str, Any]) -> None:
        self.changes.append((what, fields))

    def tools(self) -> list[tuple[str, str, str, list[str]]]:
        """The tool call reports as (id, title, status, paths)."""
        return [(f["tool_call_id"], f["title"], f["status"], f["paths"])
                for what, f in self.changes if what == "tool"]

    async def ask(self, request: PermissionRequest) -> str | None:
        self.asked.append(request)
        return self.answer

    def run(self, scenario: str, *, command: list[str] | None = None,
            env: dict[str, str] | None = None, ask: Callable[..., Any] | None = None,
            **options: Any) -> AcpRun:
        run = AcpRun(command or [sys.executable, str(FAKE), scenario],
                     workspace=self.workspace,
                     env=env if env is not None else {"PATH": os.environ["PATH"]},
                     stderr_log=self.tmp / "logs" / f"{scenario}.stderr",
                     transcript=self.tmp / "transcripts" / f"{scenario}.jsonl",
                     ask=ask or self.ask, mcp_servers=[MCP],
                     on_change=options.pop("on_change", self.changed), **options)
        self.runs.append(run)
        return run

    async def started(self, scenario: str, **options: Any) -> AcpRun:
        """A started run."""
        run = self.run(scenario, **options)
        await run.start()
        return run


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for run in h.runs:
        await run.close()
        if run.pid is not None:
            assert await until(lambda pid=run.pid: gone(pid))


async def test_a_turn_gets_the_workspace_the_mcp_servers_and_the_given_environment_only(
        harness: Harness) -> None:
    run = await harness.started("echo", env={"PATH": os.environ["PATH"], "FAKE_GREETING": "hi"})
    end = await run.prompt("fix the bug")
    assert end.stop_reason == "end_turn" and end.usage == {}
    assert run.session_id == "fake-session-1"
    assert run.view.message_tail == (f"cwd={harness.workspace} mcp=marrow fs=False terminal=False "
                                "greeting=hi home=- prompt=fix the bug")


async def test_every_update_is_a_transcript_line_with_its_receive_time(
        harness: Harness) -> None:
    run = await harness.started("claude")
    await run.prompt("go")
    prompt, *records = lines(run.transcript.path)
    assert prompt["update"] == {"sessionUpdate": "user_message_chunk",
                                "content": {"type": "text", "text": "go"}}
    assert len(records) == run.view.updates == 8
    assert all(isinstance(r["at"], float) for r in records)
    assert [r["update"]["sessionUpdate"] for r in records[:3]] == [
        "agent_message_chunk", "tool_call", "tool_call"]


async def test_claudes_repeated_tool_call_merges_into_one(harness: Harness) -> None:
    run = await harness.started("claude")
    end = await run.prompt("go")
    assert end.stop_reason == "end_turn"
    calls = run.view.tool_calls
    assert list(calls) == ["toolu_1", "toolu_2"]
    read = calls["toolu_1"]
    assert (read.title, read.kind, read.status) == ("Read README.md", "read", "completed")
    assert read.raw_input == {"path": "README.md"} and read.raw_output == "# hi"
    assert read.locations == [{"path": "README.md"}]
    assert calls["toolu_2"].content[0]["type"] == "diff"
    assert run.view.message_tail == "Done."
    # reported once when first seen and once when over, the repeat in between not at all
    assert harness.tools() == [("toolu_1", "Read file", "pending", []),
                               ("toolu_1", "Read README.md", "completed", ["README.md"]),
                               ("toolu_2", "Edit README.md", "pending", []),
                               ("toolu_2", "Edit README.md", "completed", ["README.md"])]
    assert harness.changes[0] == ("tool", {"tool_call_id": "toolu_1", "title": "Read file",
                                           "kind": "read", "status": "pending", "paths": []})


async def test_codex_tool_calls_start_in_progress_and_its_plan_and_context_are_kept(
        harness: Harness) -> None:
    run = await harness.started("codex")
    await run.prompt("go")
    assert run.view.tool_calls["call_1"].status == "completed"
    assert [(s.content, s.status) for s in run.view.plan] == [
        ("Run the tests", "completed"), ("Fix the failure", "completed")]
    # the plan sent again unchanged is not reported again
    assert [(what, f.get("status")) for what, f in harness.changes] == [
        ("plan", None), ("tool", "in_progress"), ("tool", "completed"), ("plan", None)]
    assert harness.changes[0] == ("plan", {"entries": [
        {"content": "Run the tests", "status": "in_progress"},
        {"content": "Fix the failure", "status": "pending"}]})
    assert harness.changes[3] == ("plan", {"entries": [
        {"content": "Run the tests", "status": "completed"},
        {"content": "Fix the failure", "status": "completed"}]})


async def test_gemini_asks_permission_before_the_tool_call_exists(harness: Harness) -> None:
    run = await harness.started("gemini")
    await run.prompt("go")
    [request] = harness.asked
    assert (request.tool_call.id, request.tool_call.title, request.tool_call.kind) == (
        "shell-1", "make test", "execute")
    assert [o.kind for o in request.options] == ["allow_once", "allow_always", "reject_once"]
    assert list(run.view.tool_calls) == ["shell-1"]
    assert run.view.tool_calls["shell-1"].status == "completed"
    # the permission request was its first sighting
    assert harness.tools() == [("shell-1", "make test", "pending", []),
                               ("shell-1", "make test", "completed", [])]


@pytest.mark.parametrize("scenario, usage", [
    ("claude", {}),
    # the latest occupancy of the turn: it shrank after a compaction, and is not summed
    ("codex", {"context_used": 9000, "context_size": 200000}),
    # input and output from _meta.quota; the total is their sum
    ("gemini", {"input": 30, "output": 4, "total": 34}),
    ("opencode", {"input": 1200, "output": 300, "total": 1500, "context_used": 1500,
                  "context_size": 128000, "cost": 0.25, "currency": "USD"}),
])
async def test_each_agents_usage_is_what_it_reported_in_the_same_keys(
        harness: Harness, scenario: str, usage: dict[str, Any]) -> None:
    run = await harness.started(scenario)
    end = await run.prompt("go")
    assert end.usage == usage
    assert run.view.usage == usage


async def test_tokens_add_up_over_turns_and_occupancy_and_cost_are_the_latest_word(
        harness: Harness) -> None:
    run = await harness.started("opencode")
    first = await run.prompt("go")
    second = await run.prompt("again")
    assert (first.usage["context_used"], first.usage["cost"]) == (1500, 0.25)
    assert second.usage == {"input": 1200, "output": 300, "total": 1500,
                            "context_used": 3000, "context_size": 128000, "cost": 0.5,
                            "currency": "USD"}
    # cost is the session's so far (0.5, not 0.75); occupancy is not spend
    assert run.view.usage == {"input": 2400, "output": 600, "total": 3000,
                              "context_used": 3000, "context_size": 128000, "cost": 0.5,
                              "currency": "USD"}
    assert [c.status for c in run.view.tool_calls.values()] == ["completed", "completed"]
    assert harness.tools() == [("tool_1", "bash", "pending", []),
                               ("tool_1", "bash", "completed", []),
                               ("tool_2", "bash", "pending", []),
                               ("tool_2", "bash", "completed", [])]


async def test_follow_up_prompts_are_turns_of_the_same_session(harness: Harness) -> None:
    run = await harness.started("echo")
    await run.prompt("fix the bug")
    pid, session = run.pid, run.session_id
    end = await run.prompt("and add a test")
    assert end.stop_reason == "end_turn"
    assert (run.pid, run.session_id) == (pid, session)
    assert run.view.message_tail.endswith("prompt=and add a test")  # this turn's text only
    said = [(r["update"]["sessionUpdate"], r["update"]["content"]["text"][-14:])
            for r in lines(run.transcript.path)]
    assert said == [("user_message_chunk", "fix the bug"),
                    ("agent_message_chunk", "ompt=fix the bug"[-14:]),
                    ("user_message_chunk", "and add a test"),
                    ("agent_message_chunk", "and add a test")]


async def test_a_failing_on_change_callback_is_logged_and_the_turn_goes_on(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    def broken(what: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("the event log is gone")

    run = await harness.started("codex", on_change=broken)
    end = await run.prompt("go")
    assert end.stop_reason == "end_turn" and run.view.message_tail.endswith("All green.")
    failures = [r for r in caplog.records if "on_change callback failed" in r.getMessage()]
    assert len(failures) == 4 and failures[0].exc_info is not None


async def test_last_update_moves_with_every_update_and_permission_request(
        harness: Harness) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    seen: list[float] = []

    async def ask(request: PermissionRequest) -> str | None:
        seen.append(run.last_update)
        return "allow-once"

    run = harness.run("gemini", ask=ask,
                      on_change=lambda what, fields: seen.append(run.last_update))
    await run.start()
    started = run.last_update
    assert before <= started <= loop.time()
    await run.prompt("go")
    # the request is seen by on_change, then by ask; then the tool call's end
    assert len(seen) == 3 and started < seen[0] == seen[1] < seen[2] <= run.last_update


@pytest.mark.parametrize("answer, said", [("allow-always", "answer=allow-always"),
                                          ("reject-once", "answer=reject-once"),
                                          (None, "answer=cancelled"),
                                          ("not-an-option", "answer=cancelled")])
async def test_the_permission_callback_answer_reaches_the_agent(
        harness: Harness, answer: str | None, said: str) -> None:
    harness.answer = answer
    run = await harness.started("permission")
    await run.prompt("go")
    assert [r.tool_call.title for r in harness.asked] == ["rm -rf build"]
    assert harness.asked[0].tool_call.raw_input == {"command": "make test"}
    assert run.view.message_tail == said


async def test_cancel_answers_an_open_permission_request_cancelled_and_ends_the_turn(
        harness: Harness) -> None:
    waiting = asyncio.Event()

    async def never(request: PermissionRequest) -> str | None:
        waiting.set()
        await asyncio.Event().wait()
        return None

    run = harness.run("cancel", ask=never)
    await run.start()
    turn = asyncio.create_task(run.prompt("go"))
    await asyncio.wait_for(waiting.wait(), 10)
    await run.cancel()
    end = await asyncio.wait_for(turn, 10)
    assert end.stop_reason == "cancelled"
    assert run.view.message_tail == "answer=cancelled"
    assert run._proc is not None and run._proc.returncode is None  # the session goes on


async def test_an_agent_that_ignores_cancel_has_its_group_ended(harness: Harness) -> None:
    run = await harness.started("ignore-cancel", cancel_grace=0.5)
    turn = asyncio.create_task(run.prompt("go"))
    assert await until(lambda: run.view.message_tail == "working", 10)
    await run.cancel()
    with pytest.raises(AcpFailure) as failure:
        await asyncio.wait_for(turn, 10)
    assert failure.value.kind == "ignored_cancel"
    assert str(failure.value) == (f"{run.name} did not end its turn within 0.5s of "
                                  "session/cancel; its process group was ended")
    assert run.pid is not None and await until(lambda: gone(run.pid or 0), 10)


async def test_a_crash_mid_turn_says_how_it_exited_and_its_stderr_tail(
        harness: Harness) -> None:
    run = await harness.started("crash")
    with pytest.raises(AcpFailure) as failure:
        await run.prompt("go")
    assert failure.value.kind == "exited"
    assert str(failure.value) == (f"{run.name} exited mid-turn (exit 3): "
                                  "fatal: the model server went away")
    assert lines(run.transcript.path)[1]["update"]["content"]["text"] == "starting"
    with pytest.raises(AcpFailure):  # the run is over
        await run.prompt("again")


async def test_malformed_output_fails_the_turn_and_ends_the_agent(harness: Harness) -> None:
    run = await harness.started("malformed")
    with pytest.raises(AcpFailure) as failure:
        await asyncio.wait_for(run.prompt("go"), 10)
    assert failure.value.kind == "malformed"
    assert str(failure.value) == (f"{run.name} sent malformed JSON-RPC (line 4 of its output is"
                                  " not JSON: this is not json)")
    assert run.pid is not None and await until(lambda: gone(run.pid or 0), 10)


async def test_an_agent_that_does_not_answer_initialize_times_out(harness: Harness) -> None:
    run = harness.run("silent-start", read_timeout=0.5)
    with pytest.raises(AcpFailure) as failure:
        await run.start()
    assert (failure.value.kind, str(failure.value)) == (
        "timeout", f"{run.name} did not answer initialize within 0.5s")
    assert run.pid is not None and await until(lambda: gone(run.pid or 0), 10)


async def test_an_agent_that_exits_at_start_says_so(harness: Harness) -> None:
    run = harness.run("exit-at-start")
    with pytest.raises(AcpFailure) as failure:
        await run.start()
    assert str(failure.value) == (f"{run.name} exited before answering initialize (exit 2): "
                                  "no model configured")


async def test_a_command_not_on_path_names_it_and_the_path(harness: Harness) -> None:
    run = harness.run("echo", command=["no-such-agent-xyz", "acp"],
                      env={"PATH": "/nowhere:/neither"})
    with pytest.raises(AcpFailure) as failure:
        await run.start()
    assert (failure.value.kind, str(failure.value)) == (
        "not_found", "the agent command 'no-such-agent-xyz' was not found on the PATH searched "
        "(/nowhere:/neither)")
    assert run.pid is None


async def test_the_transcript_is_capped_and_rotated_by_whole_lines(harness: Harness) -> None:
    run = await harness.started("claude", transcript_bytes=600)
    for _ in range(3):
        await run.prompt("go")
    files = run.transcript.files()
    assert len(files) == 3
    assert all(f.stat().st_size <= 600 for f in files)
    for f in files:
        lines(f)  # every file holds whole JSON lines


async def test_an_agent_that_wants_signing_in_says_how_in_one_sentence(
        harness: Harness, tmp_path: Path) -> None:
    with pytest.raises(AcpFailure) as failure:
        await harness.started("needs-key")
    assert failure.value.kind == "auth_required"
    assert str(failure.value) == (
        "python needs to be signed in (it answered session/new with 'authentication "
        "required'): set FAKE_API_KEY. Its environment is marrow-tui's plus acp.env")
    # An agent that does not say how: what its preset is known to read, by its program's name.
    claude = tmp_path / "claude-code-acp"
    claude.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" needs-login\n')
    claude.chmod(0o755)
    with pytest.raises(AcpFailure) as failure:
        await harness.run("needs-login", command=[str(claude)], name="claude").start()
    assert "set ANTHROPIC_API_KEY or run `claude` and /login" in str(failure.value)


async def test_a_refused_permission_ends_its_tool_call_and_is_said_at_the_turn_end(
        harness: Harness) -> None:
    """Gemini and codex never say a refused call ended: the refusal ends it (once)."""
    harness.answer = "reject-once"
    run = await harness.started("permission")
    end = await run.prompt("go")
    assert end.refused and run.view.tool_calls["perm-1"].status == "failed"
    assert [status for _, _, status, _ in harness.tools()] == ["pending", "failed"]
    assert lines(run.transcript.path)[-2]["update"] == {
        "sessionUpdate": "tool_call_update", "toolCallId": "perm-1", "status": "failed",
        "_meta": {"marrow": "permission refused"}}
    harness.answer = "allow-once"
    assert not (await run.prompt("again")).refused


async def test_a_permission_request_keeps_a_title_already_known(harness: Harness) -> None:
    """codex asks about a known call under a generic title ("Approve MCP tool call")."""
    run = await harness.started("claude")
    await run.prompt("go")
    before = run.view.tool_calls["toolu_1"].title
    await run.request_permission("fake-session-1", ToolCallUpdate(
        tool_call_id="toolu_1", title="Approve MCP tool call"), options=[])
    assert run.view.tool_calls["toolu_1"].title == before
