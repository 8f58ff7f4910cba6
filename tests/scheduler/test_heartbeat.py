"""The scheduler inside a real runtime: real SQLite, real WebSocket verbs, real agent processes.

The heartbeat's clock is a FakeClock, so "the next run is due in 60 s" is checked by moving the
clock, never by waiting; the runs themselves are real subprocesses, waited for with a bound.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.proc import processes_of

from tests.support.hub import WAIT, FakeClock, start_hub
from tests.support.hubproc import clean_env
from tests.support.leftover_procs import Leftovers, escape_line, leftovers  # noqa: F401 (a fixture)
from tests.support.login_shell import profile_resets_path
from tests.support.scheduler import loaded, make, script, write_config  # noqa: F401 (make: a fixture)
from tests.support.waiting import gone, until


async def test_agents_run_at_once_and_then_on_their_heartbeat(tmp_path: Path, make: Any) -> None:
    clock = FakeClock()
    config = write_config(tmp_path, {"a": "cat > prompt.txt; echo hello from a\n",
                                     "b": "cat > prompt.txt; echo hello from b\n"})
    run = await make(config, clock)
    ends = await run.ended(2)
    assert {e["agent"] for e in ends} == {"a", "b"}
    assert all(e["state"] == "ok" and e["code"] == 0 for e in ends)
    assert {e["last_line"] for e in ends} == {"hello from a", "hello from b"}
    # The prompt reached each agent on stdin, in its own workspace.
    for name in ("a", "b"):
        assert "Operate from the configured profile prompt" in (
            tmp_path / "ws" / name / "prompt.txt").read_text()
    schedule = run.scheduler.schedules["a"]
    assert schedule.next_at == clock.now + 60  # counted from the end of the run
    clock.advance(59)
    run.scheduler.poke()
    await run.hub.runtime.settled()
    assert len(run.of("session_start")) == 2  # not due yet
    clock.advance(1)
    run.scheduler.poke()
    await run.ended(4)
    assert len(run.of("session_start", agent="a")) == 2


async def test_sessions_are_in_the_log_and_come_back_after_a_restart(tmp_path: Path,
                                                                      make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo one; echo two\n"})
    run = await make(config)
    [end] = await run.ended(1)
    await run.scheduler.stop()
    await run.hub.stop()
    again = await start_hub(tmp_path / "state")
    try:
        session = again.runtime.state.sessions.by_id[end["id"]]
        assert (session.state, session.code, session.last_line) == ("ok", 0, "two")
        assert Path(session.stdout).read_text() == "one\ntwo\n"
    finally:
        await again.stop()


async def test_a_wake_over_the_wire_runs_the_agent_now(tmp_path: Path, make: Any) -> None:
    clock = FakeClock()
    config = write_config(tmp_path, {"a": "echo ran\n"})
    run = await make(config, clock)
    await run.ended(1)
    caller = await run.hub.agent("ops")
    reply = await caller.request(("wake_result", "error"), type="wake", agent="a",
                                 reason="look now")
    assert reply["type"] == "wake_result" and reply["started"] is True
    ends = await run.ended(2)
    assert run.of("session_start")[-1]["trigger"] == "look now"
    assert ends[-1]["state"] == "ok"
    refused = await caller.request(("wake_result", "error"), type="wake", agent="nobody")
    assert refused["type"] == "error" and refused["error_code"] == "unknown_agent"


async def test_wakes_during_a_run_collapse_into_one_follow_up(tmp_path: Path,
                                                              make: Any) -> None:
    gate = tmp_path / "gate"
    config = write_config(tmp_path, {
        "a": f'echo started; while [ ! -e "{gate}" ]; do sleep 0.02; done; echo finished\n'})
    clock = FakeClock()
    run = await make(config, clock)
    await run.until(lambda: run.of("session_start"))
    caller = await run.hub.agent("ops")
    for n in range(3):
        reply = await caller.request(("wake_result",), type="wake", agent="a", reason=f"w{n}")
        assert reply["started"] is False  # it is running: queued behind the run
    gate.touch()
    await run.ended(2)
    await run.hub.runtime.settled()
    assert len(run.of("session_start")) == 2  # exactly one follow-up for three wakes
    assert run.scheduler.schedules["a"].next_at == clock.now + 60
    assert run.of("session_start")[1]["trigger"] == "w2"


async def test_a_task_reaches_the_next_prompt_and_ends_in_done(tmp_path: Path,
                                                              make: Any) -> None:
    clock = FakeClock()
    config = write_config(tmp_path, {"a": "cat > prompt.txt\n"})
    run = await make(config, clock)
    await run.ended(1)
    caller = await run.hub.agent("ops")
    added = await caller.request(("task_added", "error"), type="task_add", agent="a",
                                 title="Fix the login bug", body="It fails on empty input.")
    assert added["type"] == "task_added"
    queued = Path(added["file"])
    assert queued.parent == tmp_path / "ws" / "a" / "tasks" / "queue" and queued.exists()
    assert run.hub.runtime.state.sessions.agents["a"].queued == 1
    await caller.request(("wake_result",), type="wake", agent="a")
    [_, second] = await run.ended(2)
    prompt = (tmp_path / "ws" / "a" / "prompt.txt").read_text()
    assert "--- [Tasks] ---" in prompt and "Fix the login bug" in prompt
    assert "It fails on empty input." in prompt
    assert second["state"] == "ok"
    assert not queued.exists()
    assert (tmp_path / "ws" / "a" / "tasks" / "done" / queued.name).exists()


async def test_a_failed_run_puts_its_tasks_back_and_backs_off(tmp_path: Path,
                                                             make: Any) -> None:
    clock = FakeClock()
    config = write_config(tmp_path, {"a": "cat >/dev/null; echo broken >&2; exit 7\n"})
    queue = tmp_path / "ws" / "a" / "tasks" / "queue"
    queue.mkdir(parents=True)
    (queue / "20260101-000000-000-x.md").write_text("# X\n")
    run = await make(config, clock)
    [end] = await run.ended(1)
    assert (end["state"], end["code"]) == ("failed", 7)
    assert "back in the queue" in end["reason"]
    assert (queue / "20260101-000000-000-x.md").exists()
    assert end["last_line"] == "broken"  # stderr when stdout is empty
    caller = await run.hub.agent("ops")
    await caller.request(("wake_result",), type="wake", agent="a")
    await run.ended(2)
    schedule = run.scheduler.schedules["a"]
    assert schedule.failures == 2
    assert schedule.next_at == clock.now + 120  # doubled after the second failure


async def test_an_agent_that_cannot_start_says_why(tmp_path: Path, make: Any) -> None:
    config = loaded(write_config(tmp_path, {"a": "true\n"}))
    (tmp_path / "bin" / "a.sh").unlink()  # gone after the config was checked
    run = await make(config)
    [end] = await run.ended(1)
    assert end["state"] == "error" and "not found" in end["reason"]


async def test_the_operator_stops_a_run(tmp_path: Path, make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo up; exec sleep 600\n"})
    run = await make(config)
    [start] = await run.until(lambda: run.of("session_start"))
    await run.until(lambda: run.of("session_pid", id=start["id"]))
    stranger = await run.hub.agent("stranger")
    refused = await stranger.request(("error", "session_stopping"), type="session_stop",
                                     id=start["id"])
    assert refused["type"] == "error" and refused["error_code"] == "forbidden"
    replies: list[dict[str, Any]] = []
    operator = run.hub.runtime.join("operator/test", replies.append)
    operator.send(type="session_stop", id=start["id"])
    [end] = await run.ended(1)
    assert end["state"] == "stopped"
    assert replies and replies[0]["type"] == "session_stopping"


async def test_after_a_kill_the_history_is_intact_and_the_orphan_is_stopped(
        tmp_path: Path, make: Any) -> None:
    """SIGKILL the real program mid-run: on restart the run is interrupted, not running,
    its task is back in the queue, and the agent process it left behind is stopped."""
    config = write_config(tmp_path, {"a": "echo busy; exec sleep 600\n"})
    queue = tmp_path / "ws" / "a" / "tasks" / "queue"
    queue.mkdir(parents=True)
    (queue / "20260101-000000-000-x.md").write_text("# X\n")
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "--no-ui", "--port", "0", "--config", str(config),
         "--state-dir", str(state)], stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = ""
        assert proc.stdout is not None
        while " started " not in line:
            line = proc.stdout.readline()
            assert line, "marrow-tui exited before the run started"
        sid = line.split()[2]
        # wait (bounded) until the run's process is up and recorded
        pids: list[int] = []
        async with asyncio.timeout(WAIT):
            while not pids:
                pids = processes_of({sid}).get(sid, [])
                await asyncio.sleep(0.01)
        pid = pids[0]
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
    os.kill(pid, 0)  # the agent outlived the kill
    run = await make(config, state=state)
    session = run.hub.runtime.state.sessions.by_id[sid]
    assert session.state == "interrupted"
    assert session.reason == ("marrow-tui stopped while it ran; "
                              "stopped the 1 process it left behind")
    assert _gone(pid)
    # Its task went back to the queue and was handed to the first run after the restart.
    [first] = await run.until(lambda: run.of("session_start"))
    assert [Path(p).name for p in first["tasks"]] == ["20260101-000000-000-x.md"]


async def test_a_shutdown_stops_what_the_run_left_and_says_shutdown(
        tmp_path: Path, make: Any, leftovers: Leftovers) -> None:
    """A normal quit: the run ends "stopped at shutdown" (not "by operator"), and its
    processes go with it: one that left for a session of its own (found by MARROW_SESSION)
    and one with a wiped environment in a group of its own (found by its session id)."""
    ws = tmp_path / "ws" / "a"
    ws.mkdir(parents=True)
    escaped, job = leftovers.watch(ws / "escaped.pid", ws / "job.pid")
    body = (escape_line(ws, "setsid", "escaped.pid", "kept")
            + escape_line(ws, "setpgid", "job.pid", "wiped") + "echo busy; exec sleep 600\n")
    run = await make(write_config(tmp_path, {"a": body}))
    [start] = await run.until(lambda: run.of("session_start"))
    pids = await leftovers.pids_of(escaped, job)
    await run.until(lambda: run.of("session_pid", id=start["id"]))
    await run.scheduler.stop()
    for pid in pids:
        assert await until(lambda: gone(pid)), f"pid {pid} outlived the shutdown"
    [end] = await run.until(lambda: run.of("session_end", id=start["id"]))
    assert end["state"] == "stopped"
    assert end["reason"] == ("stopped at shutdown; "
                             "stopped the 1 process that had left its process group")


async def test_after_a_kill_the_stripped_and_escaped_processes_are_stopped_too(
        tmp_path: Path, make: Any, leftovers: Leftovers) -> None:
    """SIGKILL the real program mid-run. Its run left four processes: the agent itself, one
    that left for a session of its own with MARROW_SESSION, and two with no environment at all
    (one in the run's group, one in a group of its own in the run's session). The restart
    stops all four, and the log says exactly that."""
    ws = tmp_path / "ws" / "a"
    ws.mkdir(parents=True)
    files = leftovers.watch(ws / "escaped.pid", ws / "bare.pid", ws / "job.pid")
    body = (escape_line(ws, "setsid", "escaped.pid", "kept")
            + escape_line(ws, "stay", "bare.pid", "wiped")
            + escape_line(ws, "setpgid", "job.pid", "wiped")
            + "echo busy; exec sleep 600\n")
    config = write_config(tmp_path, {"a": body})
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "--no-ui", "--port", "0", "--config", str(config),
         "--state-dir", str(state)], stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = ""
        assert proc.stdout is not None
        while " started " not in line:
            line = proc.stdout.readline()
            assert line, "marrow-tui exited before the run started"
        sid = line.split()[2]
        pids = await leftovers.pids_of(*files)
        async with asyncio.timeout(WAIT):  # the leader is up and its group is in the log
            while not (_logged_group(state, sid) and processes_of({sid}).get(sid)):
                await asyncio.sleep(0.01)
        leader = _logged_group(state, sid)
        leftovers.pids.append(leader)
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
    for pid in [leader, *pids]:
        os.kill(pid, 0)  # all outlived the kill
    run = await make(config, state=state)
    for pid in [leader, *pids]:
        assert _gone(pid), f"pid {pid} outlived the restart"
    session = run.hub.runtime.state.sessions.by_id[sid]
    assert session.state == "interrupted"
    assert session.reason == ("marrow-tui stopped while it ran; "
                              "stopped the 4 processes it left behind")


def _logged_group(state: Path, sid: str) -> int:
    """The process group the log recorded for `sid` (0 while it has none)."""
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{state / 'events.db'}?mode=ro", uri=True, timeout=1)
    try:
        rows = db.execute("SELECT data FROM events WHERE kind = 'session_pid'").fetchall()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    for (data,) in rows:
        event = json.loads(data)
        if event.get("id") == sid:
            return int(event.get("pgid") or event["pid"])
    return 0


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (which a container's init may never reap)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[1].split()[0] == "Z"


async def test_config_changes_apply_and_bad_ones_keep_the_last_good(tmp_path: Path,
                                                                   make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo a\n"})
    run = await make(config, watch=True)
    await run.ended(1)
    text = config.read_text()
    config.write_text(text + "\n[[agents]]\nname = 'a'\n")  # a duplicate: invalid
    bad = await run.until(lambda: [s for s in run.of("config_status") if not s["ok"]],
                          timeout=10)
    assert any("duplicate" in e.lower() for e in bad[-1]["errors"])
    assert list(run.scheduler.schedules) == ["a"]
    ws_b = tmp_path / "ws" / "b"
    ws_b.mkdir()
    config.write_text(text + f'\n[[agents]]\nname = "b"\nworkspace = "{ws_b}"\n'
                             f'agent_command = "{sys.executable} -c print(42)"\n')
    await run.until(lambda: run.of("session_end", agent="b"), timeout=10)
    assert set(run.scheduler.schedules) == {"a", "b"}
    assert run.of("config_status")[-1]["ok"] is True


async def test_disabling_an_agent_stops_its_heartbeat(tmp_path: Path, make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo a\n"})
    clock = FakeClock()
    run = await make(config, clock)
    await run.ended(1)
    config.write_text(config.read_text().replace("stop_grace = 1",
                                                 "stop_grace = 1\nenabled = false"))
    assert run.scheduler.reload() is not None
    clock.advance(3600)
    run.scheduler.poke()
    await run.hub.runtime.settled()
    assert len(run.of("session_start")) == 1
    caller = await run.hub.agent("ops")
    refused = await caller.request(("error", "wake_result"), type="wake", agent="a")
    assert refused["error_code"] == "agent_disabled"


async def test_a_pause_is_an_event_in_the_log_and_outlives_a_restart(tmp_path: Path,
                                                                    make: Any) -> None:
    """`agent_pause` is an operator's: refused to others and for bad fields; it stops the
    heartbeat without touching marrow.toml, and a restart on the same state keeps it."""
    config = write_config(tmp_path, {"a": "echo a\n"})
    written = config.read_bytes()
    clock = FakeClock()
    run = await make(config, clock)
    await run.ended(1)
    stranger = await run.hub.agent("stranger")
    refused = await stranger.request(("error", "pause_result"), type="agent_pause", agent="a",
                                     paused=True)
    assert refused["error_code"] == "forbidden"
    replies: list[dict[str, Any]] = []
    operator = run.hub.runtime.join("operator/test", replies.append)
    operator.send(type="agent_pause", agent="a", paused="yes")
    operator.send(type="agent_pause", agent="nobody", paused=True)
    operator.send(type="agent_pause", agent="a", paused=True)
    await run.until(lambda: len(replies) == 3)
    assert [r.get("error_code") for r in replies[:2]] == ["bad_frame", "unknown_agent"]
    assert replies[2]["type"] == "pause_result" and "Paused 'a'" in replies[2]["payload"]
    assert run.of("agent_paused") == [{"agent": "a", "paused": True, "by": "operator/test",
                                       "at": clock.now}]
    clock.advance(3600)
    run.scheduler.poke()
    await run.hub.runtime.settled()
    assert len(run.of("session_start")) == 1
    refused = await stranger.request(("error", "wake_result"), type="wake", agent="a")
    assert refused["error_code"] == "agent_paused"
    assert config.read_bytes() == written
    operator.close()
    await run.scheduler.stop()
    await run.hub.stop()

    again = await make(config, clock)
    await again.hub.runtime.settled()
    assert again.hub.runtime.state.sessions.paused == {"a": "operator/test"}
    assert again.scheduler.schedules["a"].next_at is None
    assert again.hub.runtime.state.sessions.agents["a"].paused
    assert not again.of("session_start")
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "marrow_tui", "sessions", "--uri", again.hub.uri],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["a", "paused"]
    assert again.scheduler.pause("a", False, "operator/test").startswith("Resumed 'a'")
    await again.ended(1)
    assert config.read_bytes() == written


async def test_the_agent_environment_reaches_the_hub(tmp_path: Path, make: Any) -> None:
    config = write_config(tmp_path, {"a": "env | grep ^MARROW_ | sort > env.txt\n"})
    run = await make(config)
    [end] = await run.ended(1)
    env = dict(line.split("=", 1) for line in
               (tmp_path / "ws" / "a" / "env.txt").read_text().splitlines())
    assert env["MARROW_AGENT"] == "a"
    assert env["MARROW_SESSION"] == end["id"]
    assert env["MARROW_HUB_URI"] == run.hub.uri
    assert env["MARROW_WORKSPACE"] == str(tmp_path / "ws" / "a")


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
async def test_sessions_request_lists_runs_and_schedules(tmp_path: Path, make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo a\n", "b": "echo b\n"})
    run = await make(config)
    await run.ended(2)
    caller = await run.hub.agent("ops")
    reply = await caller.request(("sessions",), type="sessions_request", limit=5)
    assert {s["agent"] for s in reply["sessions"]} == {"a", "b"}
    assert {a["agent"] for a in reply["agents"]} == {"a", "b"}
    assert reply["config"]["ok"] is True


async def test_an_odd_task_name_or_a_broken_queue_never_wedges_the_agent(tmp_path: Path,
                                                                         make: Any) -> None:
    config = write_config(tmp_path, {"a": "cat > prompt.txt\n"})
    run = await make(config)
    await run.ended(1)
    caller = await run.hub.agent("ops")
    added = await caller.request(("task_added", "error"), type="task_add", agent="a",
                                 title="v1² ٣")
    assert added["type"] == "task_added"
    listed = await caller.request(("tasks", "error"), type="task_list", agent="a")
    assert [t["title"] for t in listed["tasks"]] == ["v1² ٣"]
    await caller.request(("wake_result",), type="wake", agent="a")
    [_, second] = await run.ended(2)
    assert second["state"] == "ok"
    assert "v1² ٣" in (tmp_path / "ws" / "a" / "prompt.txt").read_text()
    # A task that cannot be handed over (delegated/ is a file): the run ends as an error,
    # the task stays queued, and the agent is free for the next run.
    tasks = tmp_path / "ws" / "a" / "tasks"
    shutil.rmtree(tasks / "delegated")
    (tasks / "delegated").write_text("not a folder")
    await caller.request(("task_added",), type="task_add", agent="a", title="stuck")
    await caller.request(("wake_result",), type="wake", agent="a")
    ends = await run.ended(3)
    assert ends[-1]["state"] == "error", ends[-1]
    assert [p.name.endswith("stuck.md") for p in (tasks / "queue").iterdir()] == [True]
    assert run.scheduler.runs == {} and run.scheduler.schedules["a"].running is None


async def test_the_verbs_refuse_bad_fields(tmp_path: Path, make: Any) -> None:
    config = write_config(tmp_path, {"a": "echo a\n"})
    run = await make(config)
    await run.ended(1)
    caller = await run.hub.agent("ops")
    for frame in ({"type": "wake", "agent": {"x": 1}},
                  {"type": "task_add", "agent": "a", "title": ["t"]},
                  {"type": "task_list", "agent": ["a"]}):
        reply = await caller.request(("error",), **frame)
        assert "Malformed frame" in reply["payload"]
    for frame, code in (
            ({"type": "wake", "agent": "a", "reason": "x" * 201}, "bad_reason"),
            ({"type": "wake", "agent": "a", "reason": "\x1b[2J"}, "bad_reason"),
            ({"type": "task_add", "agent": "a", "title": "t" * 201}, "bad_task"),
            ({"type": "task_add", "agent": "a", "title": "\x1b]0;x\x07"}, "bad_task"),
            ({"type": "task_add", "agent": "a", "title": "t", "body": "b" * 70_000},
             "bad_task"),
            ({"type": "session_stop", "id": "nope"}, "forbidden")):
        reply = await caller.request(("error", "wake_result", "task_added"), **frame)
        assert reply.get("error_code") == code, (frame, reply)
    assert not list((tmp_path / "ws" / "a").glob("tasks/queue/*.md"))


async def test_stop_during_the_context_scripts_ends_the_run_at_once(tmp_path: Path,
                                                                    make: Any) -> None:
    context = tmp_path / "ctx"
    script(context / "10-slow.sh", "echo begun > \"$MARROW_WORKSPACE/ctx.txt\"; exec sleep 600\n")
    config = write_config(tmp_path, {"a": "echo ran > ran.txt\n"},
                          extra=f'context_dirs = ["{context}"]\ncontext_timeout = 300\n')
    run = await make(config)
    [start] = await run.until(lambda: run.of("session_start"))
    began = tmp_path / "ws" / "a" / "ctx.txt"
    await run.until(lambda: run.scheduler.runs and began.exists() or None)
    assert run.scheduler.stop_session(start["id"]) is None
    [end] = await run.ended(1)
    assert end["state"] == "stopped"
    assert not (tmp_path / "ws" / "a" / "ran.txt").exists()  # the agent never started


async def test_shutdown_stops_a_run_that_ignores_sigterm_and_records_it(tmp_path: Path,
                                                                        make: Any) -> None:
    config = write_config(tmp_path, {"a": "trap '' TERM; echo stubborn; "
                                          "while :; do sleep 0.05; done\n"})
    state = tmp_path / "state"
    run = await make(config, state=state)
    [start] = await run.until(lambda: run.of("session_pid"))
    pids = processes_of({start["id"]})[start["id"]]
    await run.scheduler.stop()  # stop_grace = 1: SIGTERM, then SIGKILL
    assert all(_gone(pid) for pid in pids)
    await run.hub.stop()
    again = await start_hub(tmp_path / "state")
    try:
        assert again.runtime.state.sessions.by_id[start["id"]].state == "stopped"
    finally:
        await again.stop()


async def test_a_run_calls_this_marrow_tui_first_on_its_path(tmp_path: Path,
                                                             make: Any) -> None:
    """The agent's PATH (its `env` here) has another marrow-tui first, and its workspace a
    package of that name: the run still calls the one that runs it, by name and as
    $MARROW_TUI."""
    other = profile_resets_path(tmp_path / "home")
    config = write_config(tmp_path, {"a": (
        'test "$(command -v marrow-tui)" = "$MARROW_TUI" || exit 4\n'
        'marrow-tui who > who.txt || exit 5\n')},
        extra=f'env = {{ PATH = "{other}:/usr/bin:/bin" }}')
    shadow = tmp_path / "ws" / "a" / "marrow_tui"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text("raise SystemExit('the workspace copy')\n")
    run = await make(config)
    [end] = await run.ended(1)
    assert (end["state"], end["code"]) == ("ok", 0), end
    assert "online" in (tmp_path / "ws" / "a" / "who.txt").read_text()
