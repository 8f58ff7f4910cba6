"""The scheduler's subcommands: check and scaffold a config, run agents once, operate them.

Why a separate module: `cli.py` only parses and dispatches. These commands need the config
and the scheduler; the ones that act on a running console (`wake`, `task`, `sessions`) go
through its hub like the other hub subcommands (see `cli_hub`), so what they do shows in the
console at once.

Exit codes: 0 done; 1 something failed (a run, a doctor check, a refusal by the hub);
2 a config or usage problem; 3 no running marrow-tui could be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import cli_hub
from .config.diagnostics import Diagnostic
from .config.load import Loaded, load_config
from .config.model import DEFAULT_CONFIG, AgentConfig, Config
from .hub.client import Frame, HubClient, HubConnectionError, Refused
from .hub.server import DEFAULT_PORT

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

PROG = "marrow-tui"


def config_path(args: argparse.Namespace, required: bool = False) -> Path | None:
    """`--config`, else $MARROW_CONFIG, else ./marrow.toml when it exists."""
    given = getattr(args, "config", None) or os.environ.get("MARROW_CONFIG")
    if given:
        return Path(given).expanduser()
    default = Path(DEFAULT_CONFIG)
    if default.exists() or required:
        return default
    return None


def load_or_report(path: Path, err: Any = None, *, check_commands: bool = True,
                   what: str = "nothing was started") -> Config | None:
    """The config, with its warnings on stderr; None (and every problem printed) if invalid."""
    err = err or sys.stderr
    loaded = load_config(path, check_commands=check_commands)
    if not _report(loaded, path, err, what):
        return None
    return loaded.config


def _report(loaded: Loaded, path: Path, err: Any, what: str,
            diagnostics: list[Diagnostic] | None = None) -> bool:
    """Print the diagnostics and a closing line; False when there is an error.

    A file that cannot be read at all (missing, a folder, unreadable) is one line, not a
    diagnostic plus a count.
    """
    problems = loaded.diagnostics if diagnostics is None else diagnostics
    unreadable = _unreadable(loaded, path)
    if unreadable is not None:
        print(f"{PROG}: {unreadable}", file=err)
        return False
    for diagnostic in problems:
        print(diagnostic, file=err)
    errors = sum(d.severity == "error" for d in problems)
    if errors or loaded.config is None:
        warnings = len(problems) - errors
        counted = _plural(errors, "error") + (f", {_plural(warnings, 'warning')}"
                                              if warnings else "")
        print(f"{PROG}: {path}: {counted}; {what}", file=err)
        return False
    return True


def _unreadable(loaded: Loaded, path: Path) -> str | None:
    """One sentence when the config file itself could not be read, else None."""
    if loaded.config is not None or len(loaded.diagnostics) != 1:
        return None
    only = loaded.diagnostics[0]
    if only.key or only.line is not None or only.message.startswith("invalid TOML"):
        return None
    if not path.exists():
        return (f"no config file at {path} (pass --config PATH, set MARROW_CONFIG, or "
                f"create one with `{PROG} scaffold DIR`)")
    return f"cannot use the config {path}: {only.message}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _state_dir(args: argparse.Namespace, config: Config) -> Path:
    """--state-dir, else $MARROW_STATE_DIR, else .marrow beside the config (as the runtime)."""
    given = getattr(args, "state_dir", None) or os.environ.get("MARROW_STATE_DIR")
    return Path(given).expanduser() if given else config.folder / ".marrow"


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=argparse.SUPPRESS, metavar="PATH",
                        help=f"the scheduler config (default: $MARROW_CONFIG, else "
                             f"./{DEFAULT_CONFIG})")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check the config: a summary, or every problem",
                       description="Check the scheduler config. Prints a summary and exits 0, "
                                   "or names every problem with file, line and key and exits 2.")
    _add_config(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("scaffold", help="write a starter config and workspace into DIR",
                       description="Write a starter marrow.toml, workspace, rules, context "
                                   "script and agent script into DIR. Existing files are "
                                   "never overwritten.")
    p.add_argument("directory", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_scaffold)

    p = sub.add_parser("dry-run", help="print the prompt each agent would get now",
                       description="Assemble and print each enabled agent's prompt (rules, "
                                   "role, context scripts, queued tasks) without running it "
                                   "or moving any task.")
    _add_config(p)
    p.add_argument("--agent", action="append", default=[], metavar="NAME",
                   help="only this agent (repeatable; default: every enabled agent)")
    p.set_defaults(func=cmd_dry_run)

    p = sub.add_parser("run-once", help="run each enabled agent once, then exit",
                       description="Start the runtime headless, run each enabled agent once "
                                   "(all at once), record the sessions in the log and exit: "
                                   "0 if every run succeeded, 1 otherwise.")
    _add_config(p)
    p.add_argument("--agent", action="append", default=[], metavar="NAME",
                   help="only this agent (repeatable; disabled agents may be named)")
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="event log folder (default: $MARROW_STATE_DIR, else .marrow beside "
                        "the config); it must not be in use by a running marrow-tui")
    p.set_defaults(func=cmd_run_once)

    p = sub.add_parser("doctor", help="check workspaces, commands, scripts, state dir, port",
                       description="Check what the config needs on this machine. Exit 0 when "
                                   "all is well, 1 when something needs repair, 2 when the "
                                   "config itself is invalid.")
    _add_config(p)
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="event log folder (default: $MARROW_STATE_DIR, else .marrow beside "
                        "the config)")
    p.add_argument("--port", type=int, default=argparse.SUPPRESS,
                   help=f"the hub port to check (default: $MARROW_PORT, else {DEFAULT_PORT})")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("install-service",
                       help="render a systemd user unit and a launchd plist for --no-ui",
                       description="Render the service files that run `marrow-tui --no-ui` "
                                   "with this config. They are printed, or written into "
                                   "--output-dir; nothing is installed or enabled.")
    _add_config(p)
    p.add_argument("--output-dir", type=Path, default=None,
                   help="write the files here instead of printing them")
    p.add_argument("--platform", choices=("linux", "darwin", "both"), default="both",
                   help="linux: the systemd unit, darwin: the launchd plist (default both)")
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="pass --state-dir to the service (default: its own default, .marrow "
                        "beside the config); its logs go there too")
    p.set_defaults(func=cmd_install_service)

    task = sub.add_parser("task", help="add a task to an agent's queue, or list the queues")
    task_sub = task.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    p = task_sub.add_parser("add", help="queue a task for an agent's next run",
                            description="Queue a task for an agent: the running marrow-tui "
                                        "takes it over its hub; with none running, the file "
                                        "is written into the agent's tasks/queue directly.")
    p.add_argument("--agent", required=True, metavar="NAME", help="the agent to give it to")
    p.add_argument("title", help="one line: the task's heading in the prompt")
    p.add_argument("body", nargs="?", default="", help="the task's text (optional)")
    _add_config(p)
    cli_hub._add_common(p)
    p.set_defaults(func=cmd_task_add)
    p = task_sub.add_parser("list", help="list queued and delegated tasks",
                            description="List the tasks waiting in the agents' queues and "
                                        "the ones handed to a run: from the running "
                                        "marrow-tui, else read from the files.")
    p.add_argument("--agent", default="", metavar="NAME", help="only this agent's tasks")
    _add_config(p)
    cli_hub._add_common(p)
    p.set_defaults(func=cmd_task_list)

    p = sub.add_parser("wake", help="run a configured agent now (on the running marrow-tui)",
                       description="Wake an agent of the running marrow-tui: it runs now, or "
                                   "right after its current run.")
    p.add_argument("agent")
    p.add_argument("--reason", default="", help="shown in the console and the log")
    cli_hub._add_common(p)
    p.set_defaults(func=lambda a: cli_hub.run(a, _do_wake, _render_wake))

    p = sub.add_parser("sessions", help="recent agent runs on the running marrow-tui",
                       description="The running marrow-tui's agents (next run, queued tasks, "
                                   "failures in a row) and their latest runs, newest first.")
    p.add_argument("--limit", type=int, default=20, help="runs to show (default 20)")
    cli_hub._add_common(p)
    p.set_defaults(func=lambda a: cli_hub.run(a, _do_sessions, _render_sessions))


# ---- validate, scaffold, install-service ----------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from .config.summary import format_summary

    path = config_path(args, required=True)
    assert path is not None
    loaded = load_config(path)
    if not _report(loaded, path, sys.stderr, "the config is not valid", loaded.validate()):
        return EXIT_CONFIG
    assert loaded.config is not None
    print(format_summary(loaded.config))
    return EXIT_OK


def cmd_scaffold(args: argparse.Namespace) -> int:
    from .scaffold import KEPT, scaffold

    try:
        written = scaffold(args.directory)
    except OSError as exc:
        why = ("a file is in the way of a folder" if isinstance(exc, FileExistsError)
               else exc.strerror or str(exc))
        print(f"{PROG}: cannot scaffold {args.directory}: {exc.filename or args.directory}: "
              f"{why}", file=sys.stderr)
        return EXIT_FAILED
    for path, what in written:
        print(f"{what:<16} {path}")
    config = shlex.quote(str(args.directory / DEFAULT_CONFIG))
    if all(what == KEPT for _path, what in written):
        print("\nnothing written: every file already exists and was kept")
    print(f"\nnext: {PROG} --config {config} validate, then "
          f"{PROG} --config {config} run-once")
    return EXIT_OK


def cmd_install_service(args: argparse.Namespace) -> int:
    from .service_units import INSTALL_COMMANDS, INSTALL_LOCATIONS, render_units

    path = config_path(args, required=True)
    assert path is not None
    # The service would refuse an invalid config at every start: refuse it now.
    if load_or_report(path, what="no service file was rendered") is None:
        return EXIT_CONFIG
    found = shutil.which("marrow-tui")
    executable: str | list[str] = (os.path.abspath(found) if found
                                   else [sys.executable, "-m", "marrow_tui"])
    state_dir = getattr(args, "state_dir", None)
    try:
        units = render_units(path.resolve(), executable=executable,
                             state_dir=state_dir.resolve() if state_dir else None,
                             platform=args.platform)
    except ValueError as exc:
        print(f"{PROG}: cannot render the service files: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output_dir is None:
        if len(units) == 1:  # bare, so `install-service --platform linux > FILE` works
            sys.stdout.write(units[0][1])
            return EXIT_OK
        for name, text in units:
            print(f"# ---- {name}")
            print(text)
        return EXIT_OK
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units:
            (args.output_dir / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write into {args.output_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    for name, _text in units:
        target = args.output_dir / name
        where = INSTALL_LOCATIONS[name]
        print(f"wrote {target}\n  install: mkdir -p {os.path.dirname(where)} && "
              f"cp {shlex.quote(str(target))} {where} && {INSTALL_COMMANDS[name]}")
    return EXIT_OK


# ---- dry-run, run-once -------------------------------------------------------------------


def _chosen(config: Config, names: list[str]) -> list[AgentConfig] | None:
    """The named agents (disabled ones too), else the enabled ones; None (said why) if none."""
    unknown = [n for n in dict.fromkeys(names) if config.agent(n) is None]
    if unknown:
        known = ", ".join(a.name for a in config.agents) or "none"
        print(f"{PROG}: no agent named {', '.join(unknown)} in {config.path} "
              f"(agents: {known})", file=sys.stderr)
        return None
    if names:
        return [a for n in dict.fromkeys(names) if (a := config.agent(n)) is not None]
    enabled = [a for a in config.agents if a.enabled]
    if not enabled:
        what = ("every agent is disabled (name one with --agent)" if config.agents
                else "it has no [[agents]] table")
        print(f"{PROG}: no enabled agent in {config.path}: {what}", file=sys.stderr)
        return None
    return enabled


def _config_and_agents(args: argparse.Namespace, what: str = "nothing was started"
                       ) -> tuple[Config, list[Any]] | None:
    """The config and the agents `--agent` names (else the enabled ones); None, with the
    reason on stderr, when either is not there."""
    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path, what=what)
    if config is None:
        return None
    agents = _chosen(config, args.agent)
    return None if agents is None else (config, agents)


def cmd_dry_run(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .scheduler.prompt import PromptError, assemble
    from .scheduler.runner import session_id
    from .scheduler.tasks import list_tasks

    chosen = _config_and_agents(args, what="nothing was assembled")
    if chosen is None:
        return EXIT_CONFIG
    config, agents = chosen

    async def main() -> None:
        for agent in agents:
            # The queue is read, never moved: a dry run hands no task to anyone.
            tasks = list_tasks(agent.tasks_dir, "queue")
            assembled = await assemble(agent, config.rules_path, tasks=tasks)
            for warning in assembled.warnings:
                print(f"{agent.name}: {warning}", file=sys.stderr)
            sid = session_id(agent.name, datetime.now())
            print(f"--- DRY RUN [{agent.name}] session={sid} prompt={agent.prompt} "
                  f"tasks={len(tasks)} bytes={len(assembled.prompt.encode())} ---")
            sys.stdout.write(assembled.prompt)
            if assembled.prompt and not assembled.prompt.endswith("\n"):
                sys.stdout.write("\n")
            print("--- END ---")

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PromptError as exc:  # a rules or role file that changed since the config loaded
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_run_once(args: argparse.Namespace) -> int:
    from .host import hosted
    from .hub.server import HubOptions
    from .runtime import RuntimeOptions
    from .store.eventlog import StoreError

    chosen = _config_and_agents(args)
    if chosen is None:
        return EXIT_CONFIG
    config, agents = chosen
    state_dir = _state_dir(args, config).resolve()
    holder = _lock_holder(state_dir)
    if holder is not None:
        print(f"{PROG}: {state_dir} is in use by a running marrow-tui (pid {holder}); "
              f"run an agent there with `{PROG} wake NAME`, or pass another --state-dir",
              file=sys.stderr)
        return EXIT_CONFIG

    async def main() -> int:
        runtime = RuntimeOptions(state_dir=state_dir)
        hub = HubOptions(host="127.0.0.1", port=0,
                         token=os.environ.get("MARROW_TOKEN") or None)
        async with hosted(runtime, hub, config=config, heartbeats=False) as unit:
            before = {s.id for s in unit.runtime.state.sessions.by_id.values()}
            results = await unit.scheduler.run_once([a.name for a in agents])
            await unit.runtime.settled()
            book = unit.runtime.state.sessions
            failed = 0
            for agent, result in zip(agents, results, strict=True):
                if result is not None:
                    state, reason, took = result.state, result.reason, result.ended - result.started
                    log: Path | None = result.stdout_path
                else:  # it could not even start: the session's end in the log says why
                    ended = [s for s in book.of_agent(agent.name) if s.id not in before]
                    session = ended[0] if ended else None
                    state = session.state if session is not None else "error"
                    reason = session.reason if session is not None else "no result"
                    took, log = 0.0, None
                failed += state != "ok"
                print(f"{agent.name:<16} {state:<8} {took:7.1f}s  {reason}")
                if log is not None and log.exists():
                    print(f"{'':<16} log {log}")
        total = len(agents)
        print(f"\nrun-once: {total - failed} of {total} run(s) ok; sessions recorded in "
              f"{state_dir}")
        return EXIT_FAILED if failed else EXIT_OK

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the runs were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _lock_holder(state_dir: Path) -> str | None:
    """The pid of the marrow-tui holding `state_dir`, or None when it is free (or absent)."""
    import errno
    import fcntl

    from .store.eventlog import StateLock

    lock = StateLock(state_dir)
    try:
        fd = os.open(lock.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # closing drops a lock we took
    return None


# ---- doctor ------------------------------------------------------------------------------


#: the first bytes of programs exec runs without a #! line (ELF, Mach-O, universal Mach-O)
_BINARY_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                 b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


class _Doctor:
    """Prints one line per check; remembers the ones that need repair."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.counted = True  # problems of a disabled agent are shown, not counted

    def check(self, ok: bool, text: str, problem: str = "") -> bool:
        print(f"  {'✓' if ok else '✗'} {text}")
        if not ok and self.counted:
            self.problems.append(problem or text)
        return ok

    def note(self, text: str) -> None:
        print(f"  · {text}")


def cmd_doctor(args: argparse.Namespace) -> int:
    path = config_path(args, required=True)
    assert path is not None
    # A missing command is checked below as a repair to make (exit 1), not as a config error.
    config = load_or_report(path, check_commands=False, what="nothing else was checked")
    if config is None:
        return EXIT_CONFIG
    doctor = _Doctor()
    for agent in config.agents:
        print(f"[{agent.name}]" + ("" if agent.enabled else " (disabled: not counted)"))
        doctor.counted = agent.enabled
        _doctor_agent(agent, doctor)
    doctor.counted = True
    if config.rules_path is not None:
        print("[rules]")
        doctor.check(config.rules_path.is_file(), f"rules file {config.rules_path}",
                     f"rules file missing: {config.rules_path}")
    print("[runtime]")
    _doctor_state_dir(_state_dir(args, config).resolve(), doctor)
    host = args.host if args.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    _doctor_port(host, args.port, doctor)
    if doctor.problems:
        print(f"\ndoctor: {_plural(len(doctor.problems), 'issue')} to fix:", file=sys.stderr)
        for problem in doctor.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_FAILED
    print("\ndoctor: all good")
    return EXIT_OK


def _doctor_agent(agent: AgentConfig, doctor: _Doctor) -> None:
    from .scheduler.prompt import scan_context

    name, ws = agent.name, agent.workspace
    if doctor.check(ws.is_dir(), f"workspace {ws}", f"{name}: workspace missing: {ws}"):
        doctor.check(os.access(ws, os.W_OK | os.X_OK), "workspace writable",
                     f"{name}: workspace not writable: {ws}")
    program = agent.argv()[0]
    found = _find_program(program, agent.environment.get("PATH"))
    shown = f" ({found})" if found and found != program else ""
    if doctor.check(found is not None, f"command {program}{shown}",
                    f"{name}: command not found: {program}") and found is not None:
        trouble = _exec_problem(Path(found))
        if trouble:
            doctor.check(False, trouble, f"{name}: {trouble}")
    if agent.role_file is not None:
        doctor.check(agent.role_file.is_file(), f"role file {agent.role_file}",
                     f"{name}: role file missing: {agent.role_file}")
    for folder in agent.context_dirs:
        if not folder.is_dir():
            doctor.note(f"context dir {folder}: none, so no context scripts")
            continue
        scan = scan_context([folder])
        print(f"  ✓ context dir {folder}: {_plural(len(scan.scripts), 'script')}")
        for script in scan.scripts:
            trouble = _exec_problem(script)
            if trouble:
                doctor.check(False, trouble, f"{name}: {trouble}")
        for ignored in scan.ignored:
            doctor.note(f"{ignored.name} is not executable, so it is not run "
                        "(chmod +x it if it is a script)")
    for sub in ("queue", "delegated", "done"):
        folder = agent.tasks_dir / sub
        if folder.exists():
            doctor.check(os.access(folder, os.W_OK | os.X_OK), f"tasks/{sub} writable",
                         f"{name}: not writable: {folder}")


def _find_program(program: str, path_env: str | None) -> str | None:
    """Where exec finds `program` (as the runner looks it up), or None."""
    if "/" in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program, path=path_env)


def _exec_problem(path: Path) -> str | None:
    """Why exec would refuse the file at `path` (no #! line, no interpreter), or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(256)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
        if not words:
            return f"{path} has an empty #! line"
        interpreter = words[0]
        if not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
            return f"{path} names an interpreter that is not there: {interpreter}"
        return None
    if head[:4] in _BINARY_MAGIC:
        return None
    return f"{path} has no #! line, so it cannot be run directly"


def _doctor_state_dir(state_dir: Path, doctor: _Doctor) -> None:
    if not state_dir.exists():
        parent = state_dir.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        doctor.check(os.access(parent, os.W_OK | os.X_OK),
                     f"state dir {state_dir} (created at the first start)",
                     f"cannot create the state dir {state_dir}: {parent} is not writable")
        return
    if not doctor.check(state_dir.is_dir() and os.access(state_dir, os.W_OK | os.X_OK),
                        f"state dir {state_dir} writable",
                        f"state dir not a writable folder: {state_dir}"):
        return
    holder = _lock_holder(state_dir)
    if holder is None:
        doctor.check(True, "state dir free (no marrow-tui running on it)")
    else:
        doctor.note(f"state dir in use by a running marrow-tui (pid {holder}): `run-once` "
                    "needs it free; `wake`, `task` and `sessions` go through its hub")


def _doctor_port(host: str, port: int, doctor: _Doctor) -> None:
    if port == 0:
        doctor.note("hub port 0: a free port is picked at each start")
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            in_use = probe.connect_ex((host, port)) == 0
        except OSError:
            in_use = False
    if not in_use:
        doctor.check(True, f"hub port {port} free")
        return

    async def ask() -> str:
        try:
            async with HubClient(f"ws://{host}:{port}", f"doctor/{os.getpid()}",
                                 token=os.environ.get("MARROW_TOKEN") or None,
                                 open_timeout=2, request_timeout=2,
                                 heartbeat_interval=None) as hub:
                frame = await hub.who()
        except (HubConnectionError, Refused, OSError):
            return ""
        return str(frame.get("hub_version", ""))

    version = asyncio.run(ask())
    if version.startswith("marrow-tui"):
        doctor.note(f"hub port {port} is served by a running marrow-tui ({version}); "
                    "another one needs another --port")
    else:
        doctor.check(False, f"hub port {port} is taken by another program",
                     f"hub port {port} is in use by another program (start with --port)")


# ---- task, wake, sessions (over the running hub) -----------------------------------------


def cmd_task_add(args: argparse.Namespace) -> int:
    if not args.title.strip():
        print(f"{PROG}: the task needs a title", file=sys.stderr)
        return EXIT_CONFIG
    if not _nobody_home(args.uri):
        return cli_hub.run(args, lambda hub, a: hub.task_add(a.agent, a.title, a.body),
                           lambda f, a: f"queued for {f.get('agent')}: {f.get('file')}")
    # Nothing listens there: the queue is plain files, so write the file ourselves.
    from .scheduler.tasks import add_task

    found = _direct(args)
    if isinstance(found, int):
        return found
    config, agents = found
    agent = agents[0]
    try:
        written = add_task(agent.tasks_dir, args.title, args.body)
    except (ValueError, OSError) as exc:
        print(f"{PROG}: the task was not written: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"type": "task_added", "agent": agent.name, "file": str(written),
                          "direct": True}))
    else:
        print(f"queued for {agent.name}: {written} (written directly: "
              f"{_why_direct(args, config)})")
    return EXIT_OK


def cmd_task_list(args: argparse.Namespace) -> int:
    if not _nobody_home(args.uri):
        return cli_hub.run(args, lambda hub, a: hub.task_list(a.agent), _render_tasks)
    from .scheduler.tasks import list_tasks

    found = _direct(args)
    if isinstance(found, int):
        return found
    _config, agents = found
    tasks = [{"agent": a.name, "file": str(t.path), "title": t.title, "state": t.state,
              "created": t.created}
             for a in agents for state in ("queue", "delegated")
             for t in list_tasks(a.tasks_dir, state)]
    frame = {"type": "tasks", "tasks": tasks, "direct": True}
    print(json.dumps(frame) if args.json else cli_hub.printable(_render_tasks(frame, args),
                                                                 lines=True))
    return EXIT_OK


def _direct(args: argparse.Namespace) -> tuple[Config, list[AgentConfig]] | int:
    """The config and the agents `--agent` names (all when it is empty), for working on the
    task files without a hub; else the exit code, with the reason printed."""
    path = config_path(args, required=True)
    assert path is not None
    if not path.exists():
        print(f"{PROG}: no marrow-tui answers at {args.uri}, and there is no config file at "
              f"{path} to find the task folders in (pass --uri or --config)", file=sys.stderr)
        return cli_hub.EXIT_UNREACHABLE
    config = load_or_report(path, check_commands=False, what="no task was touched")
    if config is None:
        return EXIT_CONFIG
    if not args.agent:
        return config, list(config.agents)
    agent = config.agent(args.agent)
    if agent is None:  # the same exit code as the hub's refusal
        known = ", ".join(a.name for a in config.agents) or "none"
        print(f"{PROG}: no agent named {args.agent} in {config.path} (agents: {known})",
              file=sys.stderr)
        return EXIT_FAILED
    return config, [agent]


def _why_direct(args: argparse.Namespace, config: Config) -> str:
    holder = _lock_holder(_state_dir(args, config).resolve())
    if holder is not None:
        return f"the marrow-tui on this config, pid {holder}, does not answer at {args.uri}"
    return f"no marrow-tui answers at {args.uri}"


def _nobody_home(uri: str) -> bool:
    """True when nothing listens at the hub address, so the files are used directly.

    A malformed address is not "nobody": the hub command reports it (exit 2).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        return False
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def _render_tasks(frame: Frame, args: argparse.Namespace) -> str:
    tasks = frame.get("tasks") or []
    if not tasks:
        return "(no tasks queued)"
    rows = [[t["agent"], t["state"], t["title"], Path(t["file"]).name] for t in tasks]
    return cli_hub.table(["AGENT", "STATE", "TITLE", "FILE"], rows)


async def _do_wake(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.wake(args.agent, args.reason)


def _render_wake(frame: Frame, args: argparse.Namespace) -> str:
    if frame.get("started"):
        return f"wake submitted for \"{frame.get('agent')}\": it runs now"
    return f"wake submitted for \"{frame.get('agent')}\": it runs again when its current run ends"


async def _do_sessions(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.sessions(max(0, args.limit))


def _render_sessions(frame: Frame, args: argparse.Namespace) -> str:
    now = time.time()
    lines = []
    agents = frame.get("agents") or []
    if agents:
        rows = []
        for a in sorted(agents, key=lambda a: a["agent"]):
            if not a.get("enabled", True):
                nxt = "disabled"
            elif a.get("running"):
                nxt = "running"
            elif a.get("next_at"):
                nxt = f"in {max(0, int(a['next_at'] - now))}s"
            else:
                nxt = "-"
            rows.append([a["agent"], nxt, str(a.get("queued", 0)), str(a.get("failures", 0))])
        lines.append(cli_hub.table(["AGENT", "NEXT RUN", "QUEUED", "FAILURES"], rows))
    sessions = frame.get("sessions") or []
    if sessions:
        rows = []
        for s in sessions:
            end = s.get("ended") or now
            started = time.strftime("%m-%d %H:%M:%S", time.localtime(s["started"]))
            code = "" if s.get("code") is None else str(s["code"])
            rows.append([s["id"], started, f"{end - s['started']:.1f}s", s["state"], code,
                         (s.get("last_line") or "")[:60]])
        lines.append(cli_hub.table(["SESSION", "STARTED", "TOOK", "STATE", "EXIT", "LAST LINE"],
                                   rows))
    if not lines:
        return "no agents configured and no sessions yet"
    return "\n\n".join(lines)
