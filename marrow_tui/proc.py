"""The processes a run left behind, found and stopped: at the next start after marrow-tui was
killed, and (for those that left the run's process group) at a normal shutdown.

A run's leader starts a process group and a (Unix) session of its own; its pid is the id of
both. Two things find the run's processes again, and each misses what the other finds:

* the environment tag `MARROW_SESSION=<id>`, which children inherit: it follows a child that
  called setsid (and so left the group and the session), but not one started with a wiped
  environment (`env -i`);
* the process group and session ids, written to the log in the `session_pid` event once the
  leader runs: they follow a child with a wiped environment, but not one that called setsid.

Pids are reused, so a recorded group (or session) is trusted only when the log also holds the
leader's start time and this boot's id, and either the leader is still the same process, or it
is gone but a member still carries the run's tag (Linux reuses a pid only once no process has
it as its pid, group or session, so such a witness proves the id was never free); even then,
only the members that started after the leader are stopped. A group whose leader is gone and
that holds no tagged process may be someone else's that reused the id: only tagged processes
are stopped then. Nothing in marrow-tui's own
process group or session is ever touched. All of it reads /proc: where there is none (macOS),
nothing is found, and a run killed with marrow-tui is still ended as interrupted.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .core.sessions import Cleanup, Session

PROC = Path("/proc")
#: how long the left-behind processes get between SIGTERM and SIGKILL
GRACE = 2.0
#: how long SIGKILL gets to finish them before they are reported as still running
KILL_WAIT = 2.0
#: how often they are looked at while waiting
POLL = 0.05


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/<pid>/stat used here."""

    state: str
    pgrp: int
    session: int
    #: clock ticks after boot
    start: int

    @property
    def alive(self) -> bool:
        """Not a zombie (an exited process nobody has reaped), nor dead."""
        return self.state not in ("Z", "X")


@dataclass(frozen=True, slots=True)
class Leader:
    """A run's leader as the log records it."""

    pid: int
    pgid: int
    psid: int
    start: int | None
    boot: str

    def fields(self) -> dict[str, object]:
        """The `session_pid` event's fields besides id, agent and pid."""
        return {"pgid": self.pgid, "psid": self.psid, "pid_start": self.start,
                "boot": self.boot}


def stat_of(pid: int) -> Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Stat(fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def leader_of(pid: int) -> Leader | None:
    """A freshly started leader as the log should record it; None without /proc."""
    stat = stat_of(pid)
    if stat is None:
        return None
    return Leader(pid, stat.pgrp, stat.session, stat.start, boot_id())


def leader_fields(pid: int) -> dict[str, object]:
    """`Leader.fields` of a leader started with its own session; if it already exited (or
    there is no /proc), its ids are still its pid, and its start time is unknown."""
    leader = leader_of(pid) or Leader(pid, pid, pid, None, boot_id())
    return leader.fields()


def find(sessions: Iterable[Session]) -> dict[str, list[int]]:
    """The live processes of `sessions`, by session id: those carrying a session's tag, and
    the members of its recorded group or session that are still provably its own."""
    sessions = list(sessions)
    if not sessions or not PROC.is_dir():
        return {}
    me = os.getpid()
    ours = {os.getpgid(0), os.getsid(0)}
    tags = {f"MARROW_SESSION={s.id}".encode(): s.id for s in sessions}
    boot = boot_id()
    # Every live process once: its stat, and whose tag it carries.
    procs: list[tuple[int, Stat, str | None]] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = stat_of(pid)
        if pid == me or stat is None or not stat.alive or {stat.pgrp, stat.session} & ours:
            continue
        procs.append((pid, stat, _tagged(entry, tags)))
    # A group or session id holding a process with the run's tag (a witness).
    witnessed = {(ident, owner) for _pid, stat, owner in procs if owner is not None
                 for ident in (stat.pgrp, stat.session)}
    groups: dict[int, tuple[str, int]] = {}
    for s in sessions:
        if s.pid_start is None or not boot or s.boot != boot:
            continue
        for ident in {s.pgid, s.psid} - {None} - ours:
            assert ident is not None
            if _trusted(ident, s, witnessed):
                groups[ident] = (s.id, s.pid_start)
    found: dict[str, list[int]] = {}
    for pid, stat, tagged in procs:
        owner = None
        for ident in (stat.pgrp, stat.session):
            hit = groups.get(ident)
            if hit is not None and stat.start >= hit[1]:
                owner = hit[0]
                break
        if owner is None:
            owner = tagged
        if owner is not None:
            found.setdefault(owner, []).append(pid)
    return found


def _trusted(ident: int, session: Session, witnessed: set[tuple[int, str]]) -> bool:
    """Whether the group or session `ident` the log recorded for `session` is still its own.

    Linux hands out a pid again only once no process has it as its pid, group or session.
    So the id is the run's while its leader is still the process the log recorded (the same
    start time), or while a process carrying the run's tag is a member (then the id was never
    free since the run began). With the leader gone and no such witness, the id may have been
    reused by an unrelated group whose own leader has exited: it is not trusted, and only the
    processes carrying the tag are stopped."""
    holder = stat_of(ident)  # the leader (perhaps a zombie), or whoever has its pid now
    if holder is not None:
        return holder.start == session.pid_start
    return (ident, session.id) in witnessed


def _tagged(entry: Path, tags: dict[bytes, str]) -> str | None:
    try:
        environ = (entry / "environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        sid = tags.get(item)
        if sid is not None:
            return sid
    return None


def processes_of(sessions: set[str]) -> dict[str, list[int]]:
    """The live pids whose environment names one of `sessions`, by session."""
    return find(Session(id=sid, agent="", started=0.0) for sid in sessions)


async def stop_left_behind(sessions: Iterable[Session],
                           grace: float = GRACE) -> dict[str, Cleanup]:
    """SIGTERM, then after `grace` SIGKILL, every process of `sessions` (see `find`); what
    that achieved, for each session that had any."""
    sessions = list(sessions)
    return await _stop(lambda: find(sessions), grace)


async def stop_tagged(sid: str, grace: float = GRACE, outside: int | None = None) -> Cleanup:
    """Stop the processes that carry session `sid`'s tag (at a normal shutdown: those that
    left the run's session). The members of the group and session `outside` are left to
    whoever ends that group, and not counted."""

    def look() -> dict[str, list[int]]:
        pids = [pid for pid in processes_of({sid}).get(sid, [])
                if outside is None or ((stat := stat_of(pid)) is not None
                                       and outside not in (stat.pgrp, stat.session))]
        return {sid: pids} if pids else {}

    done = await _stop(look, grace)
    return done.get(sid, Cleanup())


async def _stop(look: Callable[[], dict[str, list[int]]], grace: float) -> dict[str, Cleanup]:
    found = await asyncio.to_thread(look)
    if not found:
        return {}
    owners = {pid: sid for sid, pids in found.items() for pid in pids}
    starts = {pid: stat.start for pid in owners if (stat := stat_of(pid)) is not None}
    for pid in starts:
        _signal(pid, starts[pid], signal.SIGTERM)
        _signal(pid, starts[pid], signal.SIGCONT)  # a stopped process sees SIGTERM once continued
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, grace)
    while _running(starts) and loop.time() < deadline:
        await asyncio.sleep(POLL)
    # Whatever they started during the grace is theirs too.
    for sid, pids in (await asyncio.to_thread(look)).items():
        for pid in pids:
            stat = stat_of(pid)
            if pid not in owners and stat is not None:
                owners[pid] = sid
                starts[pid] = stat.start
    for pid in _running(starts):
        _signal(pid, starts[pid], signal.SIGKILL)
    deadline = loop.time() + KILL_WAIT
    while _running(starts) and loop.time() < deadline:
        await asyncio.sleep(POLL)
    left = set(_running(starts))
    cleanups: dict[str, Cleanup] = {}
    for sid in {owners[pid] for pid in starts}:
        mine = sorted(pid for pid in starts if owners[pid] == sid)
        cleanups[sid] = Cleanup(stopped=sum(pid not in left for pid in mine),
                                survivors=tuple(pid for pid in mine if pid in left))
    return cleanups


def _same(pid: int, start: int) -> bool:
    """Still the process that was found (a live one, not a newcomer with its pid)."""
    stat = stat_of(pid)
    return stat is not None and stat.alive and stat.start == start


def _running(starts: dict[int, int]) -> list[int]:
    return [pid for pid, start in starts.items() if _same(pid, start)]


def _signal(pid: int, start: int, sig: int) -> None:
    if _same(pid, start):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
