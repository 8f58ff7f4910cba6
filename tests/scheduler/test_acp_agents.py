"""Agents from marrow.toml that speak ACP: the scripted fake agent (a real subprocess) on a
heartbeat, with our MCP server in its session, on a real hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marrow_tui.config.load import load_config

from tests.support.login_shell import profile_resets_path
from tests.support.scheduler import PATIENCE, acp_config, make, said  # noqa: F401 (make: a fixture)

async def test_an_acp_agent_asks_permission_through_the_steering_queue(tmp_path: Path,
                                                                       make: Any) -> None:
    run = await make(acp_config(tmp_path, "permission"))
    book = run.hub.runtime.state.steering
    [request] = await run.until(lambda: list(book.open.values()), PATIENCE)
    [start] = run.of("session_start")
    assert (request.kind, request.asker, request.session) == ("permission", "coder",
                                                              start["id"])
    assert start["stdout"] == "" and start["transcript"].endswith(".transcript.jsonl")
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": request.id,
                                   "answer": "Allow once"}, None, operator=True)
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert (end["state"], end["reason"], end["last_line"]) == (
        "ok", "the agent ended its turn", "answer=allow-once")
    session = run.hub.runtime.state.sessions.by_id[start["id"]]
    assert session.turns == 1


async def test_the_policy_of_an_agent_answers_without_asking(tmp_path: Path,
                                                             make: Any) -> None:
    run = await make(acp_config(tmp_path, "permission", 'permissions = "deny"'))
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["last_line"] == "answer=reject-once"
    assert not run.hub.runtime.state.steering.ended


async def test_a_question_is_answered_in_the_next_turn_and_prompts_reach_it(
        tmp_path: Path, make: Any) -> None:
    run = await make(acp_config(tmp_path, "asker"))
    book = run.hub.runtime.state.steering
    [question] = await run.until(lambda: list(book.open.values()), PATIENCE)
    assert (question.kind, question.asker) == ("question", "coder/mcp")
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)
    [start] = run.of("session_start")
    ops.send(type="session_prompt", id=start["id"], text="and keep it short")
    await run.until(lambda: any(r.get("type") == "session_prompted" for r in replies))
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": question.id,
                                   "answer": "blue"}, None, operator=True)
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["state"] == "ok"
    prompts = [t["prompt"] for t in run.of("session_turn", phase="start")]
    assert prompts[0] == "task" and "answer" in prompts and "follow-up" in prompts


async def test_session_stop_stops_an_acp_run(tmp_path: Path, make: Any) -> None:
    run = await make(acp_config(tmp_path, "slow", 'role = "Work slowly."'))  # until stopped
    [start] = await run.until(lambda: run.of("session_turn", phase="start"), PATIENCE)
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)
    ops.send(type="session_stop", id=start["id"])
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert (end["state"], end["reason"]) == ("stopped", "stopped by operator")


def test_acp_keys_that_are_wrong_say_where(tmp_path: Path) -> None:
    path = acp_config(tmp_path, "echo", 'preset = "cursor"\n'
                                        'permissions = { mode = "maybe", allow = ["typing"] }')
    path.write_text(path.read_text().replace('protocol = "acp"', 'protocol = "grpc"'))
    found = [(d.key, d.line, d.message) for d in load_config(path).errors]
    assert ("agents[0].protocol", 3, "must be one of command, acp, not 'grpc'") in found
    assert ("agents[0].preset", 7, "unknown agent preset 'cursor' (known: opencode, codex, "
            "claude, gemini; or set agent_command)") in found
    assert ("agents[0].permissions.mode", 8, "must be one of ask, allow, deny, got 'maybe'") \
        in found
    assert any(key == "agents[0].permissions.allow" and "'typing'" in message
               for key, _, message in found)


def test_a_preset_gives_the_command_and_a_missing_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    path.write_text(f'[[agents]]\nname = "c"\nprotocol = "acp"\npreset = "claude"\n'
                    f'workspace = "{tmp_path}"\n'
                    'permissions = { mode = "ask", allow = ["read"], timeout_ms = 60000 }\n')
    loaded = load_config(path, check_commands=False)
    assert loaded.config is not None, loaded.errors
    [agent] = loaded.config.agents
    assert (agent.protocol, agent.preset, agent.agent_command) == ("acp", "claude",
                                                                   "claude-code-acp")
    assert (agent.permissions.verdict("read"), agent.permissions.timeout) == ("allow", 60.0)


def test_an_agent_declares_the_paths_its_runs_lease_holds(tmp_path: Path) -> None:
    path = acp_config(tmp_path, "echo", 'lease_paths = ["src/auth", "docs"]\n'
                                        'permissions = { mode = "ask", conflict = "wait" }')
    loaded = load_config(path)
    assert loaded.config is not None, loaded.errors
    [agent] = loaded.config.agents
    assert (agent.lease_paths, agent.permissions.conflict) == (("src/auth", "docs"), "wait")


async def test_the_agent_gets_the_heartbeat_prompt_its_env_and_our_mcp_server(
        tmp_path: Path, make: Any) -> None:
    run = await make(acp_config(tmp_path, "echo", 'env = { FAKE_GREETING = "hello" }\n'
                                                  'role = "You keep the queue moving."'))
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["state"] == "ok"
    text = said(run.of("session_start")[0]["transcript"])
    assert f"cwd={tmp_path / 'ws'} mcp=marrow " in text
    assert "fs=False terminal=False greeting=hello" in text
    assert "You keep the queue moving." in text  # the role, in the scheduler's prompt


async def test_the_answer_to_a_question_is_the_next_prompt_and_usage_adds_up(
        tmp_path: Path, make: Any) -> None:
    run = await make(acp_config(tmp_path, "teller"))
    book = run.hub.runtime.state.steering
    [question] = await run.until(lambda: list(book.open.values()), PATIENCE)
    [start] = run.of("session_start")
    session = run.hub.runtime.state.sessions.by_id[start["id"]]
    await run.until(lambda: session.doing == "waiting for your answer", PATIENCE)
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": question.id,
                                   "answer": "blue"}, None, operator=True)
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert (end["state"], end["last_line"]) == ("ok", "the answer is blue")
    assert session.turns == 2
    assert session.usage == {"input": 120, "output": 12, "total": 132}
    assert book.get(question.id).delivered  # type: ignore[union-attr]


async def test_the_operator_prompts_an_idle_or_busy_run_and_cancels_its_turn(
        tmp_path: Path, make: Any) -> None:
    """A cancelled turn leaves the run waiting for the operator's prompt; a prompt then goes
    at once, one during a turn waits for its end; the run ends once a turn ends with nothing
    left to answer."""
    run = await make(acp_config(tmp_path, "slow", 'role = "Work slowly."'))
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)

    async def reply(kind: str) -> dict[str, Any]:
        return await run.until(lambda: replies and replies[-1].get("type") == kind
                               and replies.pop(), PATIENCE)

    [start] = await run.until(lambda: run.of("session_turn", phase="start"), PATIENCE)
    session = run.hub.runtime.state.sessions.by_id[start["id"]]
    await run.until(lambda: session.in_turn, PATIENCE)
    ops.send(type="session_cancel", id=session.id)
    await reply("session_cancelling")
    await run.until(lambda: session.doing == "waiting for your prompt", PATIENCE)
    ops.send(type="session_prompt", id=session.id, text="go on slowly")
    assert (await reply("session_prompted"))["queued"] is False
    await run.until(lambda: session.in_turn and session.turns == 2, PATIENCE)
    ops.send(type="session_prompt", id=session.id, text="then say so")
    assert (await reply("session_prompted"))["queued"] is True
    ops.send(type="session_cancel", id=session.id)
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert (end["state"], end["last_line"]) == ("ok", "turn 3: then say so")
    await run.hub.runtime.settled()
    assert [t["prompt"] for t in run.of("session_turn", phase="start")] == [
        "task", "follow-up", "follow-up"]
    assert [t["stop_reason"] for t in run.of("session_turn", phase="end")] == [
        "cancelled", "cancelled", "end_turn"]


async def test_a_shutdown_stops_an_acp_run_and_says_so(tmp_path: Path, make: Any) -> None:
    run = await make(acp_config(tmp_path, "slow", 'role = "Work slowly."'))
    [start] = await run.until(lambda: run.of("session_turn", phase="start"), PATIENCE)
    await run.scheduler.stop()
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert (end["id"], end["state"], end["reason"]) == (start["id"], "stopped",
                                                        "stopped at shutdown")


async def test_a_preset_whose_program_is_gone_fails_the_run_in_one_sentence(
        tmp_path: Path, make: Any) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    path = acp_config(tmp_path, "echo", f'env = {{ PATH = "{empty}" }}')
    path.write_text(path.read_text().replace("agent_command", 'preset = "codex"\n#'))
    config = load_config(path, check_commands=False).config  # (as if uninstalled since)
    assert config is not None
    run = await make(config)
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["state"] == "failed"
    # (the folder of the marrow-tui the run calls is searched first: it holds nothing else)
    assert end["reason"].startswith("the agent command 'codex-acp' was not found on the PATH "
                                    f"searched ({tmp_path / 'state' / 'bin'}:{empty}")


async def test_an_acp_agent_finds_this_marrow_tui_first_on_its_path(tmp_path: Path,
                                                                    make: Any) -> None:
    """The agent's PATH (its `env` here) has another marrow-tui first: the ACP agent's
    environment still finds the one that runs it, and $MARROW_TUI is it."""
    other = profile_resets_path(tmp_path / "home")
    run = await make(acp_config(tmp_path, "which", f'env = {{ PATH = "{other}:/usr/bin:/bin" }}'))
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["state"] == "ok", end
    own = tmp_path / "state" / "bin" / "marrow-tui"
    assert said(run.of("session_start")[0]["transcript"]) == f"path={own} MARROW_TUI={own}"
