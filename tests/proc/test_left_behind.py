"""Processes a run leaves behind: escaped from its group, wiped of its environment, or both.

Real processes throughout (see leftover_procs.py); the scheduler-level cases, a normal
shutdown and a SIGKILL of the real program, are in test_scheduler.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from marrow_tui.config.model import AgentConfig
from marrow_tui.core.events import Event
from marrow_tui.core.sessions import Cleanup, Session, SessionBook
from marrow_tui.proc import boot_id, find, leader_of, stat_of, stop_left_behind
from marrow_tui.scheduler.runner import run_session

from tests.support.leftover_procs import SLEEP, Leftovers, escape_line, leftovers  # noqa: F401 (a fixture)
from tests.support.waiting import gone, until

SID = "orph-20261121-084930-123"


def make_agent(tmp_path: Path, body: str, **kw: object) -> AgentConfig:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    kw.setdefault("heartbeat_timeout", 20)
    kw.setdefault("stop_grace", 1.0)
    return AgentConfig(name="orph", agent_command=shlex.quote(str(script)), workspace=ws,
                       **kw)  # type: ignore[arg-type]


# ---- during a run ------------------------------------------------------------------------------


async def test_a_process_that_left_the_group_but_not_the_session_is_ended(
        tmp_path: Path, leftovers: Leftovers) -> None:
    """A job-control shell puts a job in a group of its own; with its environment wiped, only
    the session id still says whose it is."""
    [pidfile] = leftovers.watch(tmp_path / "job.pid")
    body = escape_line(tmp_path, "setpgid", "job.pid", "wiped") + \
        f"while [ ! -s {shlex.quote(str(pidfile))} ]; do sleep 0.01; done\necho bye\n"
    res = await run_session(make_agent(tmp_path, body), "", SID)
    [pid] = await leftovers.pids_of(pidfile)
    assert res.ok and res.last_line == "bye"
    assert await until(lambda: gone(pid)), "the job in its own group outlived the run"
    assert res.warnings == ["the agent exited but left processes in its group; sent them SIGTERM"]


# ---- after a crash -----------------------------------------------------------------------------


def _stopped_sleep(leftovers: Leftovers) -> subprocess.Popen[bytes]:
    """A `sleep` leading its own group and session, with an empty environment."""
    proc = subprocess.Popen([SLEEP, "600"], env={}, start_new_session=True)
    leftovers.pids.append(proc.pid)
    return proc


async def test_a_recorded_group_is_stopped_only_while_its_leader_is_ours(
        leftovers: Leftovers) -> None:
    """Pid reuse: a group recorded in the log is stopped only if its leader started when the
    log says it did (and on this boot); otherwise it belongs to someone else now."""
    proc = _stopped_sleep(leftovers)
    try:
        leader = leader_of(proc.pid)
        assert leader is not None and leader.pgid == leader.psid == proc.pid
        assert leader.start is not None and leader.boot

        def session(**change: object) -> Session:
            fields = {"id": "someone-else", "pgid": leader.pgid, "psid": leader.psid,
                      "pid_start": leader.start, "boot": leader.boot, **change}
            return Session(agent="a", started=0.0, **fields)  # type: ignore[arg-type]

        for other in (session(pid_start=leader.start - 1), session(boot="another-boot"),
                      session(pid_start=None)):
            cleanup = await stop_left_behind([other], grace=0.5)
            assert cleanup == {} and not gone(proc.pid)

        cleanup = await stop_left_behind([session(id="ours")], grace=0.5)
        assert cleanup == {"ours": Cleanup(stopped=1)}
        assert await until(lambda: proc.poll() is not None)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_the_pid_event_records_the_group_and_the_end_says_what_was_stopped() -> None:
    book = SessionBook()
    for sid in ("a-1", "a-2", "a-3"):
        book.apply(Event("session_start", {"id": sid, "agent": "a", "started": 1.0}))
    book.apply(Event("session_pid", {"id": "a-1", "agent": "a", "pid": 40, "pgid": 40,
                                     "psid": 40, "pid_start": 1234, "boot": "b"}))
    one = book.by_id["a-1"]
    assert (one.pid, one.pgid, one.psid, one.pid_start, one.boot) == (40, 40, 40, 1234, "b")
    ends = {e.data["id"]: e.data["reason"] for e in book.interrupt(9.0, {
        "a-1": Cleanup(stopped=3), "a-2": Cleanup(stopped=1, survivors=(41, 42))})}
    assert ends == {
        "a-1": "marrow-tui stopped while it ran; stopped the 3 processes it left behind",
        "a-2": "marrow-tui stopped while it ran; stopped the 1 process it left behind; "
               "2 processes it left behind could not be stopped (pids 41, 42)",
        "a-3": "marrow-tui stopped while it ran",
    }


async def test_without_proc_nothing_is_found(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr("marrow_tui.proc.PROC", tmp_path / "no-proc")
    session = Session(id="x", agent="a", started=0.0, pgid=1, psid=1, pid_start=1, boot="b")
    assert await stop_left_behind([session]) == {}
    assert leader_of(os.getpid()) is None


def test_our_own_group_is_never_a_left_behind_one() -> None:
    me = leader_of(os.getpid())
    assert me is not None
    group = os.getpgid(0)
    session = Session(id="x", agent="a", started=0.0, pgid=group, psid=os.getsid(0),
                      pid_start=0, boot=me.boot)
    assert os.getpid() not in find([session]).get("x", [])


def _group_without_leader(leftovers: Leftovers, env: dict[str, str],
                          line: str) -> tuple[int, list[int]]:
    """A group (and session) whose leader has exited, its members still running: `line` starts
    them in the background and prints their pids."""
    proc = subprocess.Popen(["sh", "-c", line], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    out, _ = proc.communicate(timeout=10)
    members = [int(p) for p in out.split()]
    leftovers.pids.extend(members)
    assert stat_of(proc.pid) is None  # the leader is gone (reaped)
    for pid in members:
        stat = stat_of(pid)
        assert stat is not None and stat.pgrp == stat.session == proc.pid
    return proc.pid, members


def test_a_reused_group_without_its_leader_is_not_the_runs() -> None:
    """The log recorded run R's leader X. After the crash, X was reused by an unrelated
    job-control leader whose pipeline outlives it: group X, leader gone, no tag. None of it is
    R's; but a group that still holds a process with R's tag was never freed, so it is R's."""
    left = Leftovers()
    try:
        me = stat_of(os.getpid())
        assert me is not None
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        group, members = _group_without_leader(
            left, clean, "sleep 600 >/dev/null 2>&1 & echo $!")

        def run(sid: str, ident: int) -> Session:
            return Session(id=sid, agent="a", started=0.0, pid=ident, pgid=ident, psid=ident,
                           pid_start=me.start, boot=boot_id())

        assert find([run("R-1", group)]) == {}
        sid = "R-2"
        tagged, wiped = _group_without_leader(
            left, {**clean, "MARROW_SESSION": sid},
            "sleep 600 >/dev/null 2>&1 & echo $!; "
            "env -i sleep 600 >/dev/null 2>&1 & echo $!")[1]
        group2 = stat_of(tagged).pgrp  # type: ignore[union-attr]
        assert sorted(find([run(sid, group2)]).get(sid, [])) == sorted([tagged, wiped])
        assert members[0] not in find([run(sid, group2)]).get(sid, [])
    finally:
        left.kill_all()
        for pid in left.pids:
            assert until_gone(pid)


def until_gone(pid: int) -> bool:
    """Reap-free wait (bounded) until `pid` is no longer a live process."""
    import time as _time
    deadline = _time.monotonic() + 10
    while _time.monotonic() < deadline:
        if gone(pid):
            return True
        _time.sleep(0.01)
    return False
