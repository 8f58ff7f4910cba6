"""Process handling, written once: a spawn in a group of its own (one fork at a time), a
bounded run, the end of a group (SIGTERM, a grace, SIGKILL), the search for and stop of what a
run left behind, and how a process ended, for people. Linux's /proc is read where it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .aio import within
from .core.sessions import Cleanup, Session
from .core.text import seconds_text

PROC = Path("/proc")
#: how long a group's leader gets to exit after SIGKILL before it is given up on
KILL_WAIT = 5.0
#: how long the left-behind processes get between SIGTERM and SIGKILL
GRACE = 2.0
#: how long SIGKILL gets to finish left-behind processes before they are reported as still
#: running
LEFT_BEHIND_KILL_WAIT = 2.0
#: how often processes are looked at while waiting for them to end
POLL = 0.05
#: after a bounded run's leader is gone, how long its pipes may take to report end of file
READ_GRACE = 1.0
#: how much of a log's end `tail_line` reads
TAIL_BYTES = 4096
#: the longest line `tail_line` returns
TAIL_LINE_MAX = 500


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


def processes() -> Iterator[tuple[int, Stat]]:
    """Every live process but this one, with its stat; nothing without /proc."""
    if not PROC.is_dir():
        return
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = stat_of(pid)
        if pid != me and stat is not None and stat.alive:
            yield pid, stat


def environ(pid: int) -> list[bytes]:
    """A process's environment as `NAME=value` items; [] when it cannot be read."""
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


# ---- what a run left behind --------------------------------------------------------------------
#
# A run's leader starts a process group and a (Unix) session of its own; its pid is the id of
# both. Two things find the run's processes again, and each misses what the other finds: the
# environment tag `MARROW_SESSION=<id>`, which children inherit (it follows a child that called
# setsid, not one started with a wiped environment), and the group and session ids the log
# records in the `session_pid` event (they follow a child with a wiped environment, not one
# that called setsid). Pids are reused, so a recorded id is trusted only as `_trusted` says,
# and only the members that started after the leader are stopped. Nothing in marrow-tui's own
# process group or session is ever touched. Where there is no /proc (macOS) nothing is found,
# and a run killed with marrow-tui is still ended as interrupted.


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
    ours = {os.getpgid(0), os.getsid(0)}
    tags = {f"MARROW_SESSION={s.id}".encode(): s.id for s in sessions}
    boot = boot_id()
    # Every live process once: its stat, and whose tag it carries.
    procs = [(pid, stat, _tagged(environ(pid), tags)) for pid, stat in processes()
             if not {stat.pgrp, stat.session} & ours]
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


def _tagged(items: list[bytes], tags: dict[bytes, str]) -> str | None:
    for item in items:
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
    return await stop_found(found, look, grace)


async def stop_found(found: dict[str, list[int]], look: Callable[[], dict[str, list[int]]],
                     grace: float, kill_wait: float = LEFT_BEHIND_KILL_WAIT) -> dict[str, Cleanup]:
    """SIGTERM the processes `found` (pids by owner), then after `grace` SIGKILL what is left
    of them and of what `look` finds by then, and give SIGKILL `kill_wait` to finish them;
    what that achieved, by owner. A pid is only signalled while it is still the process that
    was found (its start time), never a newcomer that reused it."""
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
    deadline = loop.time() + kill_wait
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


# ---- process groups ----------------------------------------------------------------------------


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user; nothing we may do about it
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process group, or the session of the same id, has a live member. Zombies do
    not count: where PID 1 does not reap orphans (some containers), a dead grandchild stays a
    zombie in the group for ever."""
    if not (PROC / "self").is_dir():
        return signal_group(pgid, 0)
    return bool(group_members(pgid))


def signal_strays(pgid: int, *sigs: int) -> None:
    """Send `sigs` to the members of session `pgid` outside group `pgid` (a job-control shell
    puts its jobs in groups of their own); `signal_group` does not reach them. Reads /proc."""
    for pid in group_members(pgid):
        try:
            if os.getpgid(pid) != pgid:
                for sig in sigs:
                    os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes in the group `pgid` or in the session of that id (a
    leader started with its own session gives both its pid), from /proc (Linux); [] elsewhere.
    """
    return [pid for pid, stat in processes() if pgid in (stat.pgrp, stat.session)]


async def end_group(proc: asyncio.subprocess.Process, grace: float) -> list[str]:
    """SIGTERM the process group led by `proc` (and the strays of its session), wait up to
    `grace` seconds for them to end, SIGKILL whatever is left, reap the leader. Returns
    warnings (empty when all went well)."""
    pgid = proc.pid
    warnings: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, grace)
    signal_group(pgid, signal.SIGTERM)
    signal_group(pgid, signal.SIGCONT)  # a stopped process only sees SIGTERM once continued
    await asyncio.to_thread(signal_strays, pgid, signal.SIGTERM, signal.SIGCONT)
    if proc.returncode is None:
        await within(proc.wait(), max(0.0, grace))
    # (group_alive reads /proc: off the event loop, which serves the hub meanwhile)
    while await asyncio.to_thread(group_alive, pgid) and loop.time() < deadline:
        await asyncio.sleep(POLL)
    if proc.returncode is None or await asyncio.to_thread(group_alive, pgid):
        signal_group(pgid, signal.SIGKILL)
        await asyncio.to_thread(signal_strays, pgid, signal.SIGKILL)
        warnings.append(f"still running {seconds_text(grace)} after SIGTERM; sent SIGKILL")
    if not await within(proc.wait(), KILL_WAIT):
        warnings.append(f"pid {pgid} did not exit after SIGKILL")
    return warnings


# ---- spawning ----------------------------------------------------------------------------------

_SPAWN_LOCKS: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


@contextlib.asynccontextmanager
async def spawning() -> AsyncIterator[None]:
    """Held around a spawn: one at a time per event loop, with a turn of the loop after each.

    asyncio forks on the event loop's thread, and the fork returns only once the child has
    exec'd: tens of ms each when the CPUs are busy. One spawn at a time, with a turn of the
    loop between them, keeps the hub and the console answering while 50 agents start
    (measured in benchmarks/results/SCHEDULER.md: a 2.4 s freeze became short pauses)."""
    loop = asyncio.get_running_loop()
    lock = _SPAWN_LOCKS.get(loop)
    if lock is None:
        for old in [other for other in _SPAWN_LOCKS if other.is_closed()]:
            del _SPAWN_LOCKS[old]
        lock = _SPAWN_LOCKS[loop] = asyncio.Lock()
    async with lock:
        try:
            yield
        finally:
            await asyncio.sleep(0)


# ---- bounded runs ------------------------------------------------------------------------------


@dataclass(slots=True)
class Capture:
    """Reads a pipe to its end, keeping at most `cap` bytes: the first ones, or with `tail`
    the last ones (the rest is read and dropped, so the writer never blocks). What was read
    survives the reader being cancelled."""

    cap: int
    tail: bool = False
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            if self.tail:
                self.data += chunk
                if len(self.data) > self.cap:
                    del self.data[: -self.cap]
                    self.truncated = True
                continue
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace").strip()


@dataclass(frozen=True, slots=True)
class Bounded:
    """How a bounded run ended; its output is in the `Capture`s it was given."""

    pid: int
    #: exit status (negative for a signal); None if it could not be reaped
    code: int | None
    #: None when it ended by itself, else "timeout" or "stopped"
    ended_by: str | None


async def run_bounded(
    argv: Sequence[str],
    *,
    out: Capture,
    err: Capture | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    stop: asyncio.Event | None = None,
    until_output_ends: bool = False,
    grace: float = 0.0,
    kill_wait: float = KILL_WAIT,
    read_grace: float = READ_GRACE,
    end_leftovers: bool = True,
    stdin: IO[bytes] | None = None,
) -> Bounded:
    """Run `argv` in a process group and session of its own, stdin from /dev/null (or the
    open file `stdin`, read from its current position), its stdout
    into `out` and its stderr into `err` (into `out` when None), for at most `timeout` seconds
    (None: no limit) or until `stop` is set. Then, or when cancelled, its group is ended.
    Raises OSError or ValueError when it cannot be started.

    The run is over when the leader exits, or with `until_output_ends` when its output has
    ended too. Ending the group: SIGTERM and `grace` seconds when `grace` > 0, then SIGKILL,
    and `kill_wait` seconds for the run to be over. With `end_leftovers`, the members a
    leader left behind when it exited by itself get SIGKILL as well. After the leader's exit
    the pipes get `read_grace` to report their end (a process that left the group may hold
    them), unless the run waits for its output to end anyway."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if err is not None else asyncio.subprocess.STDOUT,
        start_new_session=True)
    if until_output_ends:
        ended_by = await _until_output_ends(proc, out, err, timeout, stop, grace, kill_wait,
                                            end_leftovers)
    else:
        ended_by = await _until_exit(proc, out, err, timeout, stop, grace, kill_wait,
                                     read_grace, end_leftovers)
    return Bounded(proc.pid, proc.returncode, ended_by)


async def _until_exit(proc: asyncio.subprocess.Process, out: Capture, err: Capture | None,
                      timeout: float | None, stop: asyncio.Event | None, grace: float,
                      kill_wait: float, read_grace: float, end_leftovers: bool) -> str | None:
    readers = [asyncio.create_task(out.drain(proc.stdout))]
    if err is not None:
        readers.append(asyncio.create_task(err.drain(proc.stderr)))
    try:
        waiter = asyncio.ensure_future(proc.wait())
        ended_by = await first_ending(waiter, stop, timeout)
        if ended_by is not None or (end_leftovers and group_alive(proc.pid)):
            if grace > 0:
                signal_group(proc.pid, signal.SIGTERM)
                await asyncio.wait([waiter], timeout=grace)
            signal_group(proc.pid, signal.SIGKILL)
        done, _ = await asyncio.wait([waiter], timeout=kill_wait)
        if not done:
            waiter.cancel()
        _, pending = await asyncio.wait(readers, timeout=read_grace)
        if pending:  # a process that left the group still holds the pipe: stop listening
            _close_transport(proc)
    except asyncio.CancelledError:
        signal_group(proc.pid, signal.SIGKILL)
        _close_transport(proc)
        raise
    finally:
        for reader in readers:
            reader.cancel()
    return ended_by


async def _until_output_ends(proc: asyncio.subprocess.Process, out: Capture,
                             err: Capture | None, timeout: float | None,
                             stop: asyncio.Event | None, grace: float, kill_wait: float,
                             end_leftovers: bool) -> str | None:
    async def finish() -> None:
        await asyncio.gather(out.drain(proc.stdout),
                             err.drain(proc.stderr) if err is not None else asyncio.sleep(0))
        await proc.wait()

    finished = asyncio.ensure_future(finish())
    ended_by = None
    try:
        ended_by = await first_ending(finished, stop, timeout)
    finally:
        if proc.returncode is None:  # timed out, stopped or cancelled
            steps = [(signal.SIGTERM, grace)] if grace > 0 else []
            for sig, wait in [*steps, (signal.SIGKILL, kill_wait)]:
                signal_group(proc.pid, sig)
                await within(asyncio.shield(finished), wait)
                if proc.returncode is not None:
                    break
        elif end_leftovers:  # its group outlives a reaped leader
            signal_group(proc.pid, signal.SIGKILL)
        finished.cancel()
    return ended_by


async def first_ending(over: asyncio.Future[Any], stop: asyncio.Event | None,
                       timeout: float | None) -> str | None:
    """Wait for `over`: None when it is done, else "timeout" or "stopped" (`stop` was set),
    whichever came first."""
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    watched = {over} if stopper is None else {over, stopper}
    try:
        done, _ = await asyncio.wait(watched, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if over in done:
        return None
    return "stopped" if stopper is not None and stopper in done else "timeout"


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    transport = getattr(proc, "_transport", None)  # asyncio offers no public way to do this
    if transport is not None:
        transport.close()


# ---- how a process ended, for people -----------------------------------------------------------


def describe_exit(code: int | None) -> str:
    """How a process ended, for people: "exit 7", "killed by SIGKILL", "ended" (unknown)."""
    if code is None:
        return "ended"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def tail_line(path: Path) -> str:
    """The last non-empty line of a file, read from its last 4 KiB only (cheap on any size).

    Terminal escape sequences and control characters are removed; "" when there is none.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read(TAIL_BYTES)
    except OSError:
        return ""
    text = _ANSI.sub("", data.decode("utf-8", errors="replace"))
    for line in reversed(text.splitlines()):
        line = "".join(c for c in line if c.isprintable() or c == "\t").strip()
        if line:
            return line[:TAIL_LINE_MAX]
    return ""


#: words that make a shell line more than one plain command (keywords and builtins)
_NOT_EXECUTABLE = frozenset(
    "! { } if then else elif fi case esac for while until do done function select time "
    "exec cd export set unset source . eval trap exit return shift read wait ulimit umask "
    "alias unalias readonly local command builtin".split())


def simple_command(line: str) -> bool:
    """Whether a shell line is one plain command (`prog args...`: no `;`, `&`, `|`,
    redirection, subshell, keyword, builtin or leading assignment), which can run without a
    shell (or with `exec` before it), so its pid is the one we track."""
    if "\n" in line or "\r" in line or not line.strip():
        return False
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: leave it to the shell to complain
        return False
    if not words or any(w and all(c in "();<>|&" for c in w) for w in words):
        return False
    first = words[0]
    return first not in _NOT_EXECUTABLE and "=" not in first
