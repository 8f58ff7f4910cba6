"""Run one agent session: spawn the agent command, feed it the prompt, log, time out, clean up.

marrow-core's runner passes the prompt as the last argv element, lets the
agent inherit marrow's stdin and cwd, kills only the direct child with SIGKILL on timeout and
never reports a start failure. Here:

* the prompt goes to the child's stdin by default ("stdin"), or into a file ("file"), or as
  marrow-core's `--dir <workspace> -- <prompt>` ("argv", for opencode); a prompt over Linux's
  128 KiB per-argument limit is warned about and E2BIG is reported, not swallowed;
* the child runs in the workspace, in its own session and process group, with stdin from
  /dev/null unless the prompt is piped in;
* stdout and stderr go straight to `<log_dir>/<sid>.{stdout,stderr}.log`: the child holds the
  file descriptors, we never read a pipe, so a chatty agent can neither block nor cost us memory;
* a timeout or a stop request sends SIGTERM to the whole group, waits `stop_grace`, then sends
  SIGKILL to whatever is left. "The group" here also takes in the processes that moved to a
  group of their own within the run's session (as a shell with job control puts its jobs);
* when the leader exits by itself and members of its group are still running, they get the
  same SIGTERM, grace, SIGKILL treatment, so no session leaves orphans behind. A process that
  must outlive its session has to leave the session (setsid), as any daemon does anyway;
* nothing of a run outlives marrow-tui itself: a stop at shutdown (`StopRequest.shutdown`)
  or a cancelled run also ends, after the group, the processes that left the session but
  still carry the run's `MARROW_SESSION` (proc.py; after a crash, the next start does);
* every outcome is a `RunResult` with a state and a human reason; `run_session` never raises
  for a failure of the agent (only cancellation propagates, after the group is ended).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ..config.model import AgentConfig
from ..core.sessions import Cleanup
from ..core.text import seconds_text
from ..proc import (
    describe_exit,
    end_group,
    first_ending,
    group_alive,
    signal_group,
    spawning,
    stop_tagged,
    tail_line,
)

#: Linux MAX_ARG_STRLEN: the longest single argv string, its NUL included
MAX_ARG_STRLEN = 128 * 1024
#: the possible `RunResult.state` values
STATES = ("ok", "failed", "timeout", "stopped", "error")
#: how a shutdown's reason names the processes that had left the run's group
LEFT_THE_GROUP = "that had left its process group"


@dataclass(slots=True)
class RunResult:
    sid: str
    agent: str
    #: epoch seconds (from the `clock` given to run_session)
    started: float
    ended: float
    #: the leader's pid (also the process group id); None when nothing was started
    pid: int | None
    #: one of STATES
    state: str
    #: exit status; negative for a signal (-9 = SIGKILL); None when nothing was started
    code: int | None
    #: for people: "exit 0", "exit 7", "killed by SIGSEGV", "timed out after 10s",
    #: "stopped by operator", "stopped at shutdown", "could not start: command not found: foo"
    reason: str
    stdout_path: Path
    stderr_path: Path
    #: the last non-empty line of stdout, else of stderr
    last_line: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


class StopRequest(asyncio.Event):
    """Set to stop a run (by the operator); `shutdown()` to stop it because marrow-tui quits,
    which also ends the processes that left the run's group, and says so in the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.at_shutdown = False

    def shutdown(self) -> None:
        self.at_shutdown = True
        self.set()


def _stopper(stop: asyncio.Event | None) -> str:
    """Who a stop came from, for the reason: "at shutdown" or "by operator"."""
    return "at shutdown" if isinstance(stop, StopRequest) and stop.at_shutdown else "by operator"


def session_id(name: str, now: datetime | None = None) -> str:
    """`<name>-YYYYmmdd-HHMMSS-mmm` in local time; the name keeps alnum, `-` and `_` only."""
    now = now or datetime.now()
    safe = "".join(c for c in name if c.isalnum() or c in "-_") or "agent"
    return f"{safe}-{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"


async def run_session(
    agent: AgentConfig,
    prompt: str,
    sid: str,
    *,
    env_extra: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    timeout: float | None = None,
    clock: Callable[[], float] = time.time,
) -> RunResult:
    """Run `agent.agent_command` once with `prompt`; see the module docstring for the rules.

    `timeout` overrides `agent.heartbeat_timeout` (0 or less: no limit). Setting `stop` ends
    the run the same way a timeout does, with state "stopped"; a `StopRequest` set with
    `shutdown()` ends, after the group, the processes carrying the run's tag as well. Cancelling
    the call does both (SIGTERM, `stop_grace`, SIGKILL) before the CancelledError propagates.
    """
    started = clock()
    out_path = agent.log_dir / f"{sid}.stdout.log"
    err_path = agent.log_dir / f"{sid}.stderr.log"
    warnings: list[str] = []

    def result(
        state: str, reason: str, pid: int | None = None, code: int | None = None
    ) -> RunResult:
        last = tail_line(out_path) or tail_line(err_path)
        return RunResult(
            sid=sid, agent=agent.name, started=started, ended=clock(), pid=pid, state=state,
            code=code, reason=reason, stdout_path=out_path, stderr_path=err_path,
            last_line=last, warnings=warnings,
        )  # fmt: skip

    limit = agent.heartbeat_timeout if timeout is None else timeout
    try:
        launch = _prepare(agent, prompt, sid, env_extra or {}, warnings)
    except _CannotStart as exc:
        return result("error", f"could not start: {exc}")
    if stop is not None and stop.is_set():
        return result("stopped", f"stopped {_stopper(stop)} (before it started)")

    try:
        proc = await _spawn(agent, launch, out_path, err_path)
    except _CannotStart as exc:
        reason = f"could not start: {exc}"
        _append(err_path, f"marrow: {reason}\n")
        return result("error", reason)

    if on_start is not None:
        try:
            on_start(proc.pid)
        except Exception as exc:  # noqa: BLE001 -- a broken callback must not orphan the child
            warnings.append(f"on_start callback failed: {exc!r}")

    feeder = _start_feeder(proc, launch.stdin_data)
    escaped = ""
    try:
        ended_by = await _wait(proc, stop, limit if limit and limit > 0 else None)
        # (group_alive reads /proc: off the event loop)
        if ended_by is not None or await asyncio.to_thread(group_alive, proc.pid):
            if ended_by is None:
                warnings.append(
                    "the agent exited but left processes in its group; sent them SIGTERM"
                )
            if ended_by == "stopped" and _stopper(stop) == "at shutdown":
                ended, cleanup = await _end_all(proc, sid, agent.stop_grace)
                escaped = cleanup.text(LEFT_THE_GROUP)
            else:
                ended = await end_group(proc, agent.stop_grace)
            warnings.extend(ended)
    except asyncio.CancelledError:
        try:
            await _end_all(proc, sid, agent.stop_grace)
        except asyncio.CancelledError:
            signal_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        await _stop_feeder(proc, feeder, warnings)

    code = proc.returncode
    if ended_by == "timeout":
        return result("timeout", f"timed out after {seconds_text(limit)}", proc.pid, code)
    if ended_by == "stopped":
        why = f"stopped {_stopper(stop)}" + (f"; {escaped}" if escaped else "")
        return result("stopped", why, proc.pid, code)
    if code == 0:
        return result("ok", "exit 0", proc.pid, code)
    return result("failed", describe_exit(code), proc.pid, code)


def prune_logs(log_dir: Path, max_age_days: int, max_count: int, now: float | None = None) -> int:
    """marrow-core's exec-log pruning: files older than `max_age_days` go first, then the oldest
    beyond `max_count`. Subfolders are left alone; 0 disables either rule. Returns how many
    files were deleted."""
    now = time.time() if now is None else now
    try:
        entries = [e for e in os.scandir(log_dir) if e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    files: list[tuple[float, str]] = []
    for entry in entries:
        try:
            files.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
        except FileNotFoundError:
            continue
    files.sort()
    doomed: list[str] = []
    if max_age_days > 0:
        cutoff = now - max_age_days * 86400
        doomed = [path for mtime, path in files if mtime < cutoff]
        files = [(mtime, path) for mtime, path in files if mtime >= cutoff]
    if max_count > 0 and len(files) > max_count:
        doomed += [path for _, path in files[: len(files) - max_count]]
    deleted = 0
    for path in doomed:
        try:
            os.unlink(path)
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted


async def _end_all(proc: asyncio.subprocess.Process, sid: str,
                   grace: float) -> tuple[list[str], Cleanup]:
    """`end_group`, and at the same time (so within the one grace) the processes that left
    the run's session with its tag."""
    return await asyncio.gather(end_group(proc, grace),
                                stop_tagged(sid, grace, outside=proc.pid))


# ---- internals --------------------------------------------------------------------------------


class _CannotStart(Exception):
    """Why a session could not be started (the message follows "could not start: ")."""


@dataclass(slots=True)
class _Launch:
    argv: list[str]
    env: dict[str, str]
    stdin_data: bytes | None


def _prepare(
    agent: AgentConfig, prompt: str, sid: str, env_extra: Mapping[str, str], warnings: list[str]
) -> _Launch:
    workspace = agent.checkout
    if not workspace.is_dir():
        raise _CannotStart(f"workspace does not exist: {workspace}")
    try:
        argv = shlex.split(agent.agent_command)
    except ValueError as exc:
        raise _CannotStart(f"cannot parse agent_command: {exc}") from None
    if not argv:
        raise _CannotStart("agent_command is empty")
    env = {**os.environ, **dict(agent.env)}
    env.update(MARROW_AGENT=agent.name, MARROW_WORKSPACE=str(agent.workspace),
               MARROW_CHECKOUT=str(workspace), MARROW_SESSION=sid)
    data = prompt.encode("utf-8", errors="replace")
    stdin_data: bytes | None = None
    if agent.prompt == "stdin":
        stdin_data = data
    elif agent.prompt == "argv":
        argv += ["--dir", str(workspace), "--", prompt]
        if len(data) + 1 > MAX_ARG_STRLEN:
            warnings.append(
                f"the prompt is {len(data) // 1024} KiB, over Linux's 128 KiB limit for one "
                'argument; use prompt = "stdin" or "file"'
            )
    elif agent.prompt == "file":
        prompt_file = agent.workspace / "runtime" / "prompts" / f"{sid}.md"
        try:
            prompt_file.parent.mkdir(parents=True, exist_ok=True)
            prompt_file.write_bytes(data)
        except OSError as exc:
            raise _CannotStart(f"cannot write the prompt file {prompt_file}: {exc}") from None
        env["MARROW_PROMPT_FILE"] = str(prompt_file)
        argv = [arg.replace("{prompt_file}", str(prompt_file)) for arg in argv]
    else:
        raise _CannotStart(f"unknown prompt mode {agent.prompt!r} (stdin, argv or file)")
    env.update(env_extra)
    return _Launch(argv=argv, env=env, stdin_data=stdin_data)


async def _spawn(
    agent: AgentConfig, launch: _Launch, out_path: Path, err_path: Path
) -> asyncio.subprocess.Process:
    """Start the child with its stdout and stderr on our log files (closed here once it has
    its own copies)."""
    argv0 = launch.argv[0]
    stdin = asyncio.subprocess.DEVNULL if launch.stdin_data is None else asyncio.subprocess.PIPE
    async with spawning():
        return await _exec(agent, launch, argv0, stdin, out_path, err_path)


async def _exec(agent: AgentConfig, launch: _Launch, argv0: str, stdin: int, out_path: Path,
                err_path: Path) -> asyncio.subprocess.Process:
    with _open_log(out_path) as out, _open_log(err_path) as err:
        try:
            return await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=stdin,
                stdout=out,
                stderr=err,
                cwd=agent.checkout,
                env=launch.env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise _CannotStart(f"command not found: {argv0}") from None
        except PermissionError:
            raise _CannotStart(f"permission denied: {argv0}") from None
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise _CannotStart(
                    "argument list too long (Linux allows 128 KiB per argument); "
                    'use prompt = "stdin" or "file"'
                ) from None
            raise _CannotStart(f"{argv0}: {exc.strerror or exc}") from None
        except ValueError as exc:  # e.g. a NUL character in an argument
            raise _CannotStart(str(exc)) from None


def _open_log(path: Path) -> BinaryIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")
    except OSError as exc:
        raise _CannotStart(f"cannot open the log {path}: {exc.strerror or exc}") from None


async def _wait(
    proc: asyncio.subprocess.Process, stop: asyncio.Event | None, limit: float | None
) -> str | None:
    """Wait for the leader to exit; "timeout" or "stopped" when that came first instead."""
    waiter = asyncio.ensure_future(proc.wait())
    try:
        return await first_ending(waiter, stop, limit)
    finally:
        waiter.cancel()


def _start_feeder(
    proc: asyncio.subprocess.Process, data: bytes | None
) -> asyncio.Task[None] | None:
    if data is None or proc.stdin is None:
        return None
    return asyncio.create_task(_feed(proc.stdin, data))


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the prompt and close stdin; a child that stops reading is not our problem."""
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()


async def _stop_feeder(
    proc: asyncio.subprocess.Process, feeder: asyncio.Task[None] | None, warnings: list[str]
) -> None:
    if feeder is None:
        return
    if not feeder.done():
        feeder.cancel()
    await asyncio.wait([feeder])  # unlike `await feeder`, never swallows our own cancellation
    if not feeder.cancelled() and feeder.exception() is not None:
        warnings.append(f"writing the prompt to stdin failed: {feeder.exception()!r}")
    if proc.stdin is not None:
        proc.stdin.close()


def _append(path: Path, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass
