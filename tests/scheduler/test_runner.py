"""One agent session, with real subprocesses: prompt delivery, logs, timeouts, process groups."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from marrow_tui.config.model import AgentConfig
from marrow_tui.proc import tail_line
from marrow_tui.scheduler.runner import (
    RunResult,
    prune_logs,
    run_session,
    session_id,
)

from tests.support.waiting import gone, until

PY = shlex.quote(sys.executable)
SID = "orch-20261121-084930-123"


def sh(tmp_path: Path, body: str, name: str = "agent.sh") -> str:
    """An executable /bin/sh script; returns an agent_command that runs it."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return shlex.quote(str(path))


def make_agent(tmp_path: Path, command: str, **kw: object) -> AgentConfig:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    kw.setdefault("heartbeat_timeout", 20)
    kw.setdefault("stop_grace", 2.0)
    return AgentConfig(name="orch", agent_command=command, workspace=ws, **kw)  # type: ignore[arg-type]


def test_scheduler_imports_no_textual() -> None:
    code = (
        "import sys\n"
        "import marrow_tui.scheduler.runner, marrow_tui.scheduler.prompt, "
        "marrow_tui.scheduler.tasks\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] == 'textual'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---- session ids -------------------------------------------------------------------------------


def test_session_id_format_and_sanitising() -> None:
    now = datetime(2026, 11, 21, 8, 49, 30, 7000)
    assert session_id("orch", now) == "orch-20261121-084930-007"
    assert re.fullmatch(r"name-\d{8}-\d{6}-\d{3}", session_id("name"))
    assert session_id("my agent!", now) == "myagent-20261121-084930-007"
    assert session_id("../..", now) == "agent-20261121-084930-007"
    assert session_id("a_b-c", now).startswith("a_b-c-")


# ---- runs --------------------------------------------------------------------------------------


async def test_ok_run_writes_logs_and_last_line(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, sh(tmp_path, "echo first; echo; echo 'the end'; echo warn >&2"))
    started: list[int] = []
    clock = iter([100.0, 107.5]).__next__
    res = await run_session(agent, "hi", SID, on_start=started.append, clock=clock)
    assert res.ok and res.state == "ok" and res.code == 0 and res.reason == "exit 0"
    assert res.stdout_path == agent.log_dir / f"{SID}.stdout.log"
    assert res.stderr_path == agent.log_dir / f"{SID}.stderr.log"
    assert res.stdout_path.read_text() == "first\n\nthe end\n"
    assert res.stderr_path.read_text() == "warn\n"
    assert res.last_line == "the end"
    assert started == [res.pid]
    assert (res.started, res.ended, res.duration) == (100.0, 107.5, 7.5)
    assert res.warnings == []


async def test_stdin_prompt_reaches_the_child_exactly(tmp_path: Path) -> None:
    out = tmp_path / "got.bin"
    agent = make_agent(tmp_path, sh(tmp_path, f"cat > '{out}'"))
    prompt = "héllo ✓ line\n" + "".join(f"{i:07d} " for i in range(135_000)) + "\nend"
    assert len(prompt.encode()) > 1024 * 1024
    res = await run_session(agent, prompt, SID)
    assert res.ok, res.reason
    assert out.read_bytes() == prompt.encode()
    # stdin mode passes no extra arguments
    res = await run_session(agent, "small", SID + "b")
    assert out.read_bytes() == b"small"


async def test_argv_mode_passes_dir_and_prompt(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    code = f"import json,sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"
    agent = make_agent(tmp_path, f"{PY} -c {shlex.quote(code)} run --agent x", prompt="argv")
    prompt = "line one\nline 'two' \"three\" $HOME"
    res = await run_session(agent, prompt, SID)
    assert res.ok, res.reason
    assert json.loads(out.read_text()) == [
        "run", "--agent", "x", "--dir", str(agent.workspace), "--", prompt,
    ]  # fmt: skip


async def test_argv_mode_stdin_is_dev_null(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "sh -c 'cat; echo done'", prompt="argv", heartbeat_timeout=10)
    res = await run_session(agent, "p", SID)
    assert res.state == "ok" and res.last_line == "done"


async def test_argv_mode_prompt_over_128k(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "true", prompt="argv")
    res = await run_session(agent, "x" * (200 * 1024), SID)
    assert res.state == "error"
    assert "argument list too long" in res.reason and res.reason.startswith("could not start: ")
    assert any("128 KiB" in w for w in res.warnings)
    assert "argument list too long" in res.stderr_path.read_text()


async def test_file_mode(tmp_path: Path) -> None:
    out = tmp_path / "file.json"
    code = (
        "import json,os,sys; json.dump([sys.argv[1], os.environ['MARROW_PROMPT_FILE'], "
        f"open(sys.argv[1]).read(), sys.stdin.read()], open({str(out)!r}, 'w'))"
    )
    agent = make_agent(tmp_path, f"{PY} -c {shlex.quote(code)} {{prompt_file}}", prompt="file")
    res = await run_session(agent, "the prompt ✓\n", SID)
    assert res.ok, res.reason
    expected = agent.workspace / "runtime" / "prompts" / f"{SID}.md"
    assert json.loads(out.read_text()) == [str(expected), str(expected), "the prompt ✓\n", ""]


async def test_cwd_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_PARENT", "inherited")
    out = tmp_path / "env.txt"
    body = (
        f'{{ pwd; echo "$MARROW_AGENT|$MARROW_WORKSPACE|$MARROW_SESSION"; '
        f'echo "$FROM_PARENT|$AGENT_VAR|$EXTRA"; }} > "{out}"'
    )
    agent = make_agent(tmp_path, sh(tmp_path, body), env=(("AGENT_VAR", "a"), ("EXTRA", "no")))
    res = await run_session(agent, "", SID, env_extra={"EXTRA": "yes"})
    assert res.ok, res.reason
    assert out.read_text().splitlines() == [
        str(agent.workspace),
        f"orch|{agent.workspace}|{SID}",
        "inherited|a|yes",
    ]


async def test_failing_exit_code(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, sh(tmp_path, "echo bad thing >&2; exit 7"))
    res = await run_session(agent, "p", SID)
    assert (res.state, res.code, res.reason, res.ok) == ("failed", 7, "exit 7", False)
    assert res.last_line == "bad thing"  # stdout empty: stderr's last line


async def test_missing_binary_is_an_error_not_an_exception(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "no-such-binary-xyz --flag")
    res = await run_session(agent, "p", SID)
    assert res.state == "error" and res.code is None and res.pid is None
    assert res.reason == "could not start: command not found: no-such-binary-xyz"
    assert "not found" in res.last_line


@pytest.mark.parametrize(
    ("command", "prompt_mode", "reason"),
    [
        ("'unclosed", "stdin", "could not start: cannot parse agent_command"),
        ("", "stdin", "could not start: agent_command is empty"),
        ("true", "carrier-pigeon", "could not start: unknown prompt mode"),
    ],
)
async def test_bad_configs_cannot_start(
    tmp_path: Path, command: str, prompt_mode: str, reason: str
) -> None:
    agent = make_agent(tmp_path, command, prompt=prompt_mode)
    res = await run_session(agent, "p", SID)
    assert res.state == "error" and res.reason.startswith(reason)


async def test_missing_workspace(tmp_path: Path) -> None:
    agent = AgentConfig(name="x", agent_command="true", workspace=tmp_path / "nope")
    res = await run_session(agent, "p", SID)
    assert res.state == "error"
    assert res.reason == f"could not start: workspace does not exist: {tmp_path / 'nope'}"
    assert not (tmp_path / "nope").exists()


async def test_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"echo $$ > '{pids}'; sleep 1000 & echo $! >> '{pids}'; echo waiting; wait"
    agent = make_agent(tmp_path, sh(tmp_path, body))
    begun = time.monotonic()
    res = await run_session(agent, "p", SID, timeout=0.5)
    assert time.monotonic() - begun < 2.0  # SIGTERM was enough: no stop_grace wait
    assert res.state == "timeout" and res.reason == "timed out after 0.5s"
    assert res.code == -15 and res.last_line == "waiting"
    assert res.warnings == []
    leader, child = (int(x) for x in pids.read_text().split())
    assert leader == res.pid
    assert await until(lambda: gone(leader) and gone(child))


async def test_sigterm_ignored_gets_sigkill_after_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    body = f"trap '' TERM; echo $$ > '{pidfile}'; while :; do sleep 0.05; done"
    agent = make_agent(tmp_path, sh(tmp_path, body), heartbeat_timeout=20, stop_grace=0.5)
    begun = time.monotonic()
    res = await run_session(agent, "p", SID, timeout=0.5)
    elapsed = time.monotonic() - begun
    assert 0.9 < elapsed < 3.0
    assert res.state == "timeout" and res.code == -9
    assert res.warnings == ["still running 0.5s after SIGTERM; sent SIGKILL"]
    assert await until(lambda: gone(int(pidfile.read_text())))


async def test_huge_output_does_not_block(tmp_path: Path) -> None:
    code = (
        "import sys; w=sys.stdout.buffer.write; chunk=b'y'*1048575+b'\\n'\n"
        "for _ in range(50): w(chunk)\n"
        "w(b'final line\\n')"
    )
    agent = make_agent(tmp_path, f"{PY} -c {shlex.quote(code)}")
    res = await run_session(agent, "p", SID, timeout=15)
    assert res.ok, res.reason
    assert res.stdout_path.stat().st_size == 50 * 1024 * 1024 + len("final line\n")
    assert res.last_line == "final line"


async def test_stop_event(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    agent = make_agent(tmp_path, sh(tmp_path, f"touch '{ready}'; sleep 1000"))
    stop = asyncio.Event()
    run = asyncio.create_task(run_session(agent, "p", SID, stop=stop))
    assert await until(ready.exists)
    stop.set()
    res = await asyncio.wait_for(run, 5)
    assert res.state == "stopped" and res.reason == "stopped by operator"
    assert res.code is not None and res.code < 0
    assert await until(lambda: gone(res.pid or 0))


async def test_stop_already_set_starts_nothing(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "true")
    stop = asyncio.Event()
    stop.set()
    res = await run_session(agent, "p", SID, stop=stop)
    assert res.state == "stopped" and res.pid is None


async def test_child_closing_stdin_early_does_not_hurt(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, sh(tmp_path, "exec 0<&-; echo closed"))
    res = await run_session(agent, "z" * (1024 * 1024), SID)
    assert res.ok and res.last_line == "closed"
    assert res.warnings == []


async def test_child_never_reading_stdin_times_out_cleanly(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, sh(tmp_path, "sleep 1000"))
    res = await run_session(agent, "z" * (1024 * 1024), SID, timeout=0.5)
    assert res.state == "timeout" and res.warnings == []


async def test_leftover_group_members_are_ended(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg"
    body = f"sleep 1000 >/dev/null 2>&1 & echo $! > '{pidfile}'; echo bye"
    agent = make_agent(tmp_path, sh(tmp_path, body))
    res = await run_session(agent, "", SID)
    assert res.ok and res.last_line == "bye"
    assert res.warnings == ["the agent exited but left processes in its group; sent them SIGTERM"]
    assert await until(lambda: gone(int(pidfile.read_text())))


async def test_cancelling_the_run_ends_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    agent = make_agent(tmp_path, sh(tmp_path, f"echo $$ > '{pidfile}'; sleep 1000"))
    run = asyncio.create_task(run_session(agent, "", SID))
    assert await until(pidfile.exists) and await until(lambda: pidfile.read_text().strip() != "")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await until(lambda: gone(int(pidfile.read_text())))


# ---- tail_line ---------------------------------------------------------------------------------


def test_tail_line(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert tail_line(log) == ""
    log.write_bytes(b"a\n" * 100_000 + b"\x1b[32mgreen \xe2\x9c\x93\x1b[0m\r\n\n  \n")
    assert tail_line(log) == "green ✓"
    log.write_bytes(b"progress 10%\rprogress 99%")
    assert tail_line(log) == "progress 99%"
    log.write_bytes(b"z" * 10_000)
    assert tail_line(log) == "z" * 500


# ---- prune_logs (ported from marrow-core) -----------------------------------------------------

NOW = 1_800_000_000.0
DAY = 86400


def touch(folder: Path, name: str, age_days: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(name)
    os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


def test_prune_missing_or_empty(tmp_path: Path) -> None:
    assert prune_logs(tmp_path / "nope", 7, 200, NOW) == 0
    assert prune_logs(tmp_path, 7, 200, NOW) == 0


def test_prune_both_zero_disables(tmp_path: Path) -> None:
    for i in range(5):
        touch(tmp_path, f"{i}.log", 100)
    assert prune_logs(tmp_path, 0, 0, NOW) == 0
    assert len(list(tmp_path.iterdir())) == 5


def test_prune_by_age(tmp_path: Path) -> None:
    old = [touch(tmp_path, f"old{i}.log", 10) for i in range(3)]
    new = [touch(tmp_path, f"new{i}.log", 1) for i in range(2)]
    assert prune_logs(tmp_path, 7, 0, NOW) == 3
    assert sorted(tmp_path.iterdir()) == sorted(new)
    assert not any(p.exists() for p in old)


def test_prune_by_count_keeps_newest(tmp_path: Path) -> None:
    files = [touch(tmp_path, f"{i}.log", 10 - i) for i in range(10)]  # files[9] newest
    assert prune_logs(tmp_path, 0, 4, NOW) == 6
    assert sorted(tmp_path.iterdir()) == sorted(files[6:])


def test_prune_age_then_count(tmp_path: Path) -> None:
    for i in range(5):
        touch(tmp_path, f"old{i}.log", 30)
    recent = [touch(tmp_path, f"new{i}.log", 1 - i * 0.01) for i in range(13)]
    assert prune_logs(tmp_path, 7, 10, NOW) == 8  # 5 by age, then 3 over the count
    assert sorted(tmp_path.iterdir()) == sorted(recent[3:])


def test_prune_ignores_subdirectories(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    touch(sub, "inner.log", 100)
    os.utime(sub, (NOW - 100 * DAY, NOW - 100 * DAY))
    touch(tmp_path, "outer.log", 100)
    assert prune_logs(tmp_path, 7, 1, NOW) == 1
    assert (sub / "inner.log").exists()


def test_result_ok_property() -> None:
    res = RunResult(
        sid="s", agent="a", started=0, ended=1, pid=1, state="failed", code=1, reason="exit 1",
        stdout_path=Path("o"), stderr_path=Path("e"),
    )  # fmt: skip
    assert not res.ok and res.duration == 1
