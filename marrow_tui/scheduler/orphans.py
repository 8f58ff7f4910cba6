"""Agent processes a killed marrow-tui left behind, found and stopped on the next start.

A run's processes live in their own process group, so a SIGKILL of marrow-tui leaves them
running with nobody to stop them. Every one of them carries `MARROW_SESSION=<id>` in its
environment (children inherit it), which is how they are found again: by reading
/proc/<pid>/environ, never by trusting a pid that may have been reused. Where there is no
/proc (macOS), nothing is found and the session is still ended as interrupted.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

PROC = Path("/proc")
#: how long the left-behind processes get between SIGTERM and SIGKILL
GRACE = 2.0


def processes_of(sessions: set[str]) -> dict[str, list[int]]:
    """The live pids whose environment names one of `sessions`, by session."""
    found: dict[str, list[int]] = {}
    if not sessions or not PROC.is_dir():
        return found
    wanted = {f"MARROW_SESSION={sid}".encode(): sid for sid in sessions}
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if not _alive(int(entry.name)):
            continue
        for item in environ.split(b"\0"):
            sid = wanted.get(item)
            if sid is not None:
                found.setdefault(sid, []).append(int(entry.name))
                break
    return found


def _alive(pid: int) -> bool:
    """Still running: exists and is not a zombie (an exited child nobody has reaped)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


async def stop_left_behind(sessions: set[str], grace: float = GRACE) -> set[str]:
    """SIGTERM (then SIGKILL) every process of `sessions`; the sessions that had any."""
    found = processes_of(sessions)
    pids = [pid for pids in found.values() for pid in pids]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while any(_alive(pid) for pid in pids) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return set(found)
