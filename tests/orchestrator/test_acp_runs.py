"""Issue runs that speak ACP: the scripted fake agent (a real subprocess) with our real MCP
server in its session, on a real hub: permissions through the steering queue or the policy,
questions whose answer is the next prompt, follow-ups, cancel, turns and usage in the log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.steering import Request
from marrow_tui.proc import processes_of
from marrow_tui.scheduler.heartbeat import Scheduler

from tests.support.hub import FakeClock
from tests.support.hubproc import clean_env
from tests.support.login_shell import profile_resets_path
from tests.support.orchestrator import Running, acp_workflow, issue, make  # noqa: F401
from tests.support.waiting import gone

#: each run starts a Python agent that imports the ACP SDK, and our MCP server (the MCP SDK):
#: seconds each on a loaded machine
PATIENCE = 60.0


def permission(run: Running) -> list[Request]:
    return [r for r in run.hub.runtime.state.steering.open.values() if r.kind == "permission"]


def logged(run: Running, kind: str) -> list[dict[str, Any]]:
    """The events of `kind` in the run's event log (the SQLite file), oldest first."""
    path = run.hub.runtime.log.path
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT data FROM events WHERE kind = ? ORDER BY seq", (kind,))
        return [json.loads(data) for (data,) in rows]


async def test_a_permission_request_is_answered_by_the_operator_then_the_run_marks_done(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "A-1", "make a file")
    run = await make(acp_workflow(tmp_path, "worker"))
    run.patience = PATIENCE
    await run.tick()
    [request] = await run.until(lambda: permission(run))
    [session] = run.sessions
    assert (request.question, request.asker, request.task_id, request.session) == (
        "Allow execute: touch made.txt?", "A-1", "A-1", session.id)
    assert request.choices == ["Allow once", "Always allow", "Reject"]
    assert "$ make test" in request.context.splitlines()  # what it wants to run
    assert request.default == "Reject"  # what a deadline answers (the policy's default)
    runtime = run.hub.runtime
    replies: list[str] = []
    runtime.handle("A-1", {"type": "steer_answer", "id": request.id, "answer": "Allow once"},
                   replies.append)  # an agent never approves its own request
    runtime.handle("ops", {"type": "steer_answer", "id": request.id, "answer": "maybe"},
                   replies.append, operator=True)  # not one of the choices
    await runtime.settled()
    assert len(replies) == 2 and all('"error"' in r for r in replies)
    runtime.handle("ops", {"type": "steer_answer", "id": request.id, "answer": "Allow once"},
                   None, operator=True)
    [ended] = await run.until(lambda: run.ended("A-1"))
    assert (ended.state, ended.reason) == ("ok", "marked done: made it (allow-once)")
    assert (ended.turns, ended.usage) == (1, {"input": 100, "output": 20, "total": 120})
    lines = Path(ended.transcript).read_text().splitlines()
    assert any(json.loads(line)["update"].get("toolCallId") == "touch-1" for line in lines)
    await runtime.settled()
    turns = [(t["phase"], t.get("stop_reason")) for t in logged(run, "session_turn")]
    assert turns == [("start", None), ("end", "end_turn")]
    tools = logged(run, "session_tool")
    assert [(t["tool_call_id"], t["status"]) for t in tools][-1] == ("touch-1", "completed")


async def test_the_policy_answers_by_tool_kind_without_asking(tmp_path: Path,
                                                              make: Any) -> None:
    issue(tmp_path, "Todo", "B-1", "allowed")
    run = await make(acp_workflow(tmp_path, "worker", acp="  permissions:\n"
                                                          "    allow: [execute]\n"))
    run.patience = PATIENCE
    await run.tick()
    [ended] = await run.until(lambda: run.ended("B-1"))
    assert ended.reason == "marked done: made it (allow-once)"
    assert not run.hub.runtime.state.steering.ended  # nobody was asked
    issue(tmp_path, "Todo", "B-2", "denied")
    path = acp_workflow(tmp_path, "worker", acp="  permissions: deny\n")
    run.orchestrator.path = path
    run.orchestrator.reload()
    await run.tick()
    [ended] = await run.until(lambda: run.ended("B-2"))
    assert ended.reason == "marked done: made it (reject-once)"
    await run.hub.runtime.settled()
    decided = [t.get("permission") for t in logged(run, "session_tool") if "permission" in t]
    assert decided == ["allowed by the policy (execute)", "denied by the policy (execute)"]


async def test_a_question_ends_the_turn_and_its_answer_is_the_next_prompt(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "C-1", "paint")
    run = await make(acp_workflow(tmp_path, "asker"))
    run.patience = PATIENCE
    await run.tick()
    book = run.hub.runtime.state.steering
    [question] = await run.until(lambda: list(book.open.values()))
    assert (question.kind, question.asker, question.choices) == ("question", "C-1/mcp",
                                                                  ["red", "blue"])
    [session] = run.sessions
    await run.until(lambda: session.doing == "waiting for your answer")
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": question.id,
                                   "answer": "blue"}, None, operator=True)
    [ended] = await run.until(lambda: run.ended("C-1"))
    assert ended.reason == "marked done: painted blue"
    assert ended.turns == 2
    assert book.get(question.id).delivered  # type: ignore[union-attr]


async def test_the_operator_cancels_turns_and_prompts_the_session(tmp_path: Path,
                                                                  make: Any) -> None:
    """A cancelled turn leaves the session waiting for the operator's prompt; a prompt to an
    idle session goes at once, one during a turn waits for its end; then the run goes on by
    itself up to max_turns (follow-ups do not count) and the issue is parked."""
    issue(tmp_path, "Todo", "D-1", "slow")
    run = await make(acp_workflow(tmp_path, "slow", agent="  max_turns: 2\n",
                                  prompt="Work on {{ issue.identifier }} slowly."))
    run.patience = PATIENCE
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)

    async def reply(kind: str) -> dict[str, Any]:
        return await run.until(lambda: replies and replies[-1].get("type") == kind
                               and replies.pop())

    await run.tick()
    [session] = await run.until(lambda: run.sessions)
    await run.until(lambda: session.in_turn)
    ops.send(type="session_cancel", id=session.id)
    await reply("session_cancelling")
    await run.until(lambda: session.doing == "waiting for your prompt")
    ops.send(type="session_cancel", id=session.id)  # between turns: nothing to cancel
    assert (await reply("error"))["error_code"] == "no_turn"
    ops.send(type="session_prompt", id=session.id, text="go on slowly")
    assert (await reply("session_prompted"))["queued"] is False
    await run.until(lambda: session.in_turn and session.turns == 2)
    ops.send(type="session_prompt", id=session.id, text="after this turn")
    assert (await reply("session_prompted"))["queued"] is True
    ops.send(type="session_cancel", id=session.id)
    [ended] = await run.until(lambda: run.ended("D-1"))
    assert (ended.state, ended.turns) == ("ok", 5)
    assert "agent.max_turns" in run.orchestrator.parked["D-1"]
    await run.hub.runtime.settled()
    starts = [t["prompt"] for t in logged(run, "session_turn") if t["phase"] == "start"]
    assert starts == ["task", "follow-up", "follow-up", "continuation", "continuation"]
    ends = [t["stop_reason"] for t in logged(run, "session_turn") if t["phase"] == "end"]
    assert ends == ["cancelled", "cancelled", "end_turn", "end_turn", "end_turn"]
    assert [p["text"] for p in logged(run, "session_prompt")] == ["go on slowly",
                                                                   "after this turn"]
    assert len(logged(run, "session_cancel")) == 2


async def test_prompts_reach_only_running_acp_sessions_from_an_operator(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "E-1", "slow")
    run = await make(acp_workflow(tmp_path, "slow", prompt="Work on it slowly."))
    run.patience = PATIENCE
    replies: list[str] = []
    await run.tick()
    [session] = await run.until(lambda: run.sessions)
    await run.until(lambda: session.in_turn)
    runtime = run.hub.runtime
    runtime.handle("E-1", {"type": "session_prompt", "id": session.id, "text": "x"},
                   replies.append)
    runtime.handle("ops", {"type": "session_prompt", "id": "nope", "text": "x"},
                   replies.append, operator=True)
    runtime.handle("ops", {"type": "session_prompt", "id": session.id, "text": "  "},
                   replies.append, operator=True)
    await runtime.settled()
    assert ['"forbidden"' in replies[0], "no such session" in replies[1],
            '"empty_prompt"' in replies[2]] == [True, True, True]


async def test_an_agent_that_is_not_installed_fails_the_run_in_one_sentence(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "F-1", "nobody")
    path = acp_workflow(tmp_path, "echo")
    path.write_text(path.read_text().replace(
        path.read_text().split("command: ", 1)[1].split("\n", 1)[0], "no-such-agent-cli acp"))
    run = await make(path)
    run.patience = PATIENCE
    await run.tick()
    [ended] = await run.until(lambda: run.ended("F-1"))
    assert ended.state == "failed"
    assert ended.reason.startswith("the agent command 'no-such-agent-cli' was not found on "
                                   "the PATH searched (")


async def test_a_crash_fails_the_run_and_the_retry_says_it_is_a_new_session(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "G-1", "crashes")
    clock = FakeClock()
    run = await make(acp_workflow(tmp_path, "crash"), clock)
    run.patience = PATIENCE
    await run.tick()
    [first] = await run.until(lambda: run.ended("G-1"))
    assert first.state == "failed"
    assert first.reason.endswith("exited mid-turn (exit 3): fatal: the model server went away")
    assert Path(first.transcript).is_file()  # kept, with what it said before
    clock.advance(10.0)  # the first retry's backoff
    await run.tick()
    [_, second] = await run.until(lambda: len(run.ended("G-1")) == 2 and run.ended("G-1"))
    prompt = json.loads(Path(second.transcript).read_text().splitlines()[0])["update"]
    assert prompt["content"]["text"].startswith(
        f"Note: this is a new session. Your previous one ({first.id}) ended: {first.reason}.")


async def test_cancelling_a_turn_cancels_its_open_permission_request(tmp_path: Path,
                                                                     make: Any) -> None:
    issue(tmp_path, "Todo", "H-1", "asks, then is cancelled")
    run = await make(acp_workflow(tmp_path, "cancel"))
    run.patience = PATIENCE
    ops = run.hub.runtime.join("operator/test", lambda frame: None)
    await run.tick()
    [request] = await run.until(lambda: permission(run))
    [session] = run.sessions
    ops.send(type="session_cancel", id=session.id)
    await run.until(lambda: session.doing == "waiting for your prompt")
    ended = run.hub.runtime.state.steering.get(request.id)
    assert ended is not None and (ended.state, ended.answered_by) == ("cancelled", "H-1")


async def test_killed_mid_turn_the_run_is_interrupted_its_agent_stopped_and_the_retry_is_new(
        tmp_path: Path, make: Any) -> None:
    """SIGKILL the real program while its ACP agent works: on the next start the run is
    interrupted and the agent it left behind is stopped; its transcript is kept; the next run
    is a new session, and its prompt says why the last one ended."""
    issue(tmp_path, "Todo", "K-1", "killed")
    path = acp_workflow(tmp_path, "slow", prompt="Work on {{ issue.identifier }} slowly.")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "--no-ui", "--port", "0", "--workflow", str(path),
         "--state-dir", str(tmp_path / "state")], stdout=subprocess.PIPE, text=True,
        env=clean_env())
    try:
        line = ""
        assert proc.stdout is not None
        while " started " not in line:
            line = proc.stdout.readline()
            assert line, "marrow-tui exited before the run started"
        sid = line.split()[2]
        pids: list[int] = []
        async with asyncio.timeout(PATIENCE):  # the agent is up, logged, and so is its turn
            while not (pids and (tmp_path / "ws" / ".logs" / f"{sid}.transcript.jsonl")
                       .is_file() and pid_logged(tmp_path / "state" / "events.db", sid)):
                pids = processes_of({sid}).get(sid, [])
                await asyncio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=PATIENCE)
    os.kill(pids[0], 0)  # the agent outlived the kill
    run = await make(path)
    run.patience = PATIENCE
    before = run.hub.runtime.state.sessions.by_id[sid]
    assert before.state == "interrupted"
    assert before.reason.startswith("marrow-tui stopped while it ran; stopped the ")
    assert await until_gone(pids)
    assert Path(before.transcript).is_file()
    await run.tick()
    [after] = await run.until(lambda: [s for s in run.sessions if s.id != sid and s.in_turn])
    prompt = json.loads(Path(after.transcript).read_text().splitlines()[0])["update"]
    assert prompt["content"]["text"].startswith(
        f"Note: this is a new session. Your previous one ({sid}) ended: marrow-tui stopped "
        "while it ran")


async def test_a_process_the_agent_left_in_a_session_of_its_own_is_stopped_with_the_run(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "E-1", "escapes")
    run = await make(acp_workflow(tmp_path, "escaper"))
    run.patience = PATIENCE
    await run.tick()
    [ended] = await run.until(lambda: run.ended("E-1"))
    assert ended.reason.startswith("marked done")
    escaped = int((tmp_path / "ws" / "escaped.pid").read_text())
    assert await until_gone([escaped])


def pid_logged(path: Path, sid: str) -> bool:
    """The run's session_pid is durable in the event log of another process."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT data FROM events WHERE kind = 'session_pid'").fetchall()
    return any(json.loads(data).get("id") == sid for (data,) in rows)


async def until_gone(pids: list[int]) -> bool:
    async with asyncio.timeout(PATIENCE):
        while not all(gone(pid) for pid in pids):
            await asyncio.sleep(0.05)
    return True


async def test_a_silent_agent_stalls_but_not_while_it_waits_on_a_person(
        tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "S-1", "asks and waits")
    run = await make(acp_workflow(tmp_path, "permission", stall_ms=1000))
    run.patience = PATIENCE
    await run.tick()
    [request] = await run.until(lambda: permission(run))
    [session] = run.sessions
    loop = asyncio.get_running_loop()
    stalled_by = loop.time() + 3.0  # three stall timeouts spent waiting on a person
    await run.until(lambda: loop.time() > stalled_by or not session.running)
    assert session.running
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": request.id,
                                   "answer": "Reject"}, None, operator=True)
    issue(tmp_path, "Todo", "S-2", "goes quiet")
    path = acp_workflow(tmp_path, "slow", stall_ms=1000, prompt="Work on it slowly.")
    run.orchestrator.path = path
    run.orchestrator.reload()
    await run.tick()
    [quiet] = await run.until(lambda: run.ended("S-2"))
    assert quiet.state == "timeout"
    assert quiet.reason.startswith("stalled: no update from the agent for ")


async def test_session_stop_stops_an_issue_run_and_parks_its_issue(tmp_path: Path,
                                                                   make: Any) -> None:
    """The one `session_stop` (the scheduler serves it) reaches an issue's run too."""
    issue(tmp_path, "Todo", "P-1", "stopped")
    run = await make(acp_workflow(tmp_path, "slow", prompt="Work on it slowly."))
    run.patience = PATIENCE
    scheduler = Scheduler(run.hub.runtime, None)
    await scheduler.start(loop=False)
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)
    await run.tick()
    [session] = await run.until(lambda: run.sessions)
    await run.until(lambda: session.in_turn)
    ops.send(type="session_stop", id=session.id)
    [ended] = await run.until(lambda: run.ended("P-1"))
    assert (ended.state, ended.reason) == ("stopped", "cancelled by the operator")
    assert replies[0]["type"] == "session_stopping"
    assert "P-1" in run.orchestrator.parked
    ops.send(type="session_stop", id=session.id)  # over now
    await run.until(lambda: len(replies) == 2)
    assert replies[1]["error_code"] == "not_running"
    await scheduler.stop()


def test_a_plain_agent_command_runs_directly_and_anything_a_shell_changes_runs_in_one() -> None:
    from marrow_tui.agent_session import launch_argv

    assert launch_argv('opencode acp --model "a b"') == ["opencode", "acp", "--model", "a b"]
    for line in ('"$PYTHON" agent.py', "~/bin/agent", "agent *.md", "a && b", "A=1 agent"):
        assert launch_argv(line, "zsh") == ["zsh", "-lc", line], line
    # with our own marrow-tui, the shell puts its folder first again after the profile
    assert launch_argv("a && b", "bash", Path("/s d/bin/marrow-tui")) == [
        "bash", "-lc", """export PATH='/s d/bin':"$PATH"; a && b"""]
    assert launch_argv("agent", "bash", Path("/s/bin/marrow-tui")) == ["agent"]


async def test_an_acp_run_finds_this_marrow_tui_whatever_its_login_shell_does(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ACP command with shell syntax runs under `bash -lc`, whose profile here sets PATH
    afresh: the agent's PATH still finds this marrow-tui first, and $MARROW_TUI is it."""
    profile_resets_path(tmp_path / "home")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    issue(tmp_path, "Todo", "W-1", "which marrow-tui")
    path = acp_workflow(tmp_path, "which")
    path.write_text(path.read_text().replace(f'"{sys.executable}"', '"$PYTHON"'))
    run = await make(path)
    run.patience = PATIENCE
    await run.tick()
    [ended] = await run.until(lambda: run.ended("W-1"))
    said = [json.loads(line)["update"] for line in
            Path(ended.transcript).read_text().splitlines()]
    first = next(u["content"]["text"] for u in said
                 if u.get("sessionUpdate") == "agent_message_chunk")
    own = tmp_path / "state" / "bin" / "marrow-tui"
    assert first == f"path={own} MARROW_TUI={own}"
