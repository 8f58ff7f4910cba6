"""An issue run's processes at a normal shutdown: the ones that left its group go too, and the
run ends "stopped at shutdown"; its group and session ids are in the log for a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.leftover_procs import Leftovers, escape_line, leftovers  # noqa: F401 (a fixture)
from tests.support.orchestrator import issue, make, workflow  # noqa: F401 (a fixture)
from tests.support.waiting import gone, until


async def test_a_shutdown_ends_the_issue_run_and_what_left_its_group(
        tmp_path: Path, make: Any, leftovers: Leftovers) -> None:
    escaped, job = leftovers.watch(tmp_path / "escaped.pid", tmp_path / "job.pid")
    issue(tmp_path, "Todo", "A-1", "first")
    body = (escape_line(tmp_path, "setsid", "escaped.pid", "kept")
            + escape_line(tmp_path, "setpgid", "job.pid", "wiped") + "exec sleep 600\n")
    run = await make(workflow(tmp_path, body))
    await run.tick()
    pids = await leftovers.pids_of(escaped, job)
    [session] = run.sessions  # the agent runs: its ids were recorded when it started
    recorded = {name: getattr(session, name, None) for name in ("pid", "psid", "pid_start")}
    await run.orchestrator.stop()
    for pid in pids:
        assert await until(lambda: gone(pid)), f"pid {pid} outlived the shutdown"
    [ended] = run.ended("A-1")
    assert (ended.state, ended.reason) == ("stopped", "stopped at shutdown")
    assert session.pgid == recorded["psid"] == recorded["pid"]
    assert recorded["pid_start"] is not None
