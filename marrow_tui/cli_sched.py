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
import io
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import cli_hub
from .config import DEFAULT_CONFIG, Config, load_config
from .hub.client import Frame, HubClient
from .hub.server import DEFAULT_PORT

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def config_path(args: argparse.Namespace, required: bool = False) -> Path | None:
    """`--config`, else $MARROW_CONFIG, else ./marrow.toml when it exists."""
    given = getattr(args, "config", None) or os.environ.get("MARROW_CONFIG")
    if given:
        return Path(given).expanduser()
    default = Path(DEFAULT_CONFIG)
    if default.exists() or required:
        return default
    return None


def load_or_report(path: Path, err: Any = None) -> Config | None:
    """The config, with its warnings on stderr; None (and every problem printed) if invalid."""
    err = err or sys.stderr
    loaded = load_config(path)
    for diagnostic in loaded.diagnostics:
        print(diagnostic, file=err)
    if loaded.errors or loaded.config is None:
        count = len(loaded.errors)
        print(f"marrow-tui: {path}: {count} problem{'s' if count != 1 else ''}; "
              "nothing was started", file=err)
        return None
    return loaded.config


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
                   help="event log folder (default: .marrow beside the config)")
    p.set_defaults(func=cmd_run_once)

    p = sub.add_parser("doctor", help="check workspaces, commands, scripts, state dir, port",
                       description="Check what the config needs on this machine. Exit 0 when "
                                   "all is well, 1 when something needs repair, 2 when the "
                                   "config itself is invalid.")
    _add_config(p)
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("install-service",
                       help="render a systemd user unit and a launchd plist for --no-ui",
                       description="Render the service files that run `marrow-tui --no-ui` "
                                   "with this config. They are printed, or written into "
                                   "--output-dir; nothing is installed or enabled.")
    _add_config(p)
    p.add_argument("--output-dir", type=Path, default=None,
                   help="write the files here instead of printing them")
    p.add_argument("--platform", choices=("linux", "darwin", "both"), default="both")
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_install_service)

    task = sub.add_parser("task", help="add a task to an agent's queue, or list the queues")
    task_sub = task.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    p = task_sub.add_parser("add", help="queue a task for an agent's next run",
                            description="Queue a task for an agent: the running marrow-tui "
                                        "takes it over its hub; with none running, the file "
                                        "is written into the agent's tasks/queue directly.")
    p.add_argument("--agent", required=True, metavar="NAME")
    p.add_argument("title")
    p.add_argument("body", nargs="?", default="")
    _add_config(p)
    cli_hub._add_common(p)
    p.set_defaults(func=cmd_task_add)
    p = task_sub.add_parser("list", help="list queued and delegated tasks")
    p.add_argument("--agent", default="", metavar="NAME")
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

    p = sub.add_parser("sessions", help="recent agent runs on the running marrow-tui")
    p.add_argument("--limit", type=int, default=20)
    cli_hub._add_common(p)
    p.set_defaults(func=lambda a: cli_hub.run(a, _do_sessions, _render_sessions))


# ---- validate, scaffold, install-service ----------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import format_summary

    path = config_path(args, required=True)
    assert path is not None
    loaded = load_config(path)
    problems = loaded.validate()
    for diagnostic in problems:
        print(diagnostic, file=sys.stderr)
    errors = [d for d in problems if d.severity == "error"]
    if errors or loaded.config is None:
        print(f"marrow-tui: {path}: {len(errors)} problem{'s' if len(errors) != 1 else ''}",
              file=sys.stderr)
        return EXIT_CONFIG
    print(format_summary(loaded.config))
    return EXIT_OK


def cmd_scaffold(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    try:
        written = scaffold(args.directory)
    except OSError as exc:
        print(f"marrow-tui: cannot scaffold {args.directory}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for path, what in written:
        print(f"{what:<16} {path}")
    config = shlex.quote(str(args.directory / DEFAULT_CONFIG))
    print(f"\nnext: marrow-tui --config {config} validate, then "
          f"marrow-tui --config {config} run-once")
    return EXIT_OK


def cmd_install_service(args: argparse.Namespace) -> int:
    from .service_units import render_units

    path = config_path(args, required=True)
    assert path is not None
    if load_or_report(path) is None:
        return EXIT_CONFIG
    found = shutil.which("marrow-tui")
    executable: str | list[str] = found or [sys.executable, "-m", "marrow_tui"]
    state_dir = getattr(args, "state_dir", None)
    try:
        units = render_units(path.resolve(), executable=executable,
                             state_dir=state_dir.resolve() if state_dir else None,
                             platform=args.platform)
    except ValueError as exc:
        print(f"marrow-tui: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output_dir is None:
        for name, text in units:
            print(f"# ---- {name}")
            print(text)
        return EXIT_OK
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units:
        target = args.output_dir / name
        target.write_text(text)
        print(f"wrote {target}")
    return EXIT_OK


# ---- dry-run, run-once -------------------------------------------------------------------


def _chosen(config: Config, names: list[str]) -> list[Any] | None:
    unknown = [n for n in names if config.agent(n) is None]
    if unknown:
        print(f"marrow-tui: no agent named {', '.join(unknown)} in {config.path}",
              file=sys.stderr)
        return None
    return [config.agent(n) for n in names] if names else [a for a in config.agents
                                                           if a.enabled]


def cmd_dry_run(args: argparse.Namespace) -> int:
    from .scheduler.prompt import assemble
    from .scheduler.runner import session_id
    from .scheduler.tasks import list_tasks

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    agents = _chosen(config, args.agent)
    if agents is None:
        return EXIT_CONFIG

    async def main() -> None:
        from datetime import datetime

        for agent in agents:
            tasks = list_tasks(agent.tasks_dir, "queue")
            assembled = await assemble(agent, config.rules_path, tasks=tasks)
            for warning in assembled.warnings:
                print(f"{agent.name}: {warning}", file=sys.stderr)
            sid = session_id(agent.name, datetime.now())
            print(f"--- DRY RUN [{agent.name}] session={sid} "
                  f"prompt={agent.prompt} bytes={len(assembled.prompt.encode())} ---")
            sys.stdout.write(assembled.prompt)
            print("--- END ---")

    asyncio.run(main())
    return EXIT_OK


def cmd_run_once(args: argparse.Namespace) -> int:
    from .host import hosted
    from .hub.server import HubOptions
    from .runtime import RuntimeOptions
    from .store.eventlog import StoreError

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    agents = _chosen(config, args.agent)
    if agents is None:
        return EXIT_CONFIG
    if not agents:
        print("marrow-tui: no enabled agent to run", file=sys.stderr)
        return EXIT_CONFIG
    state_dir = getattr(args, "state_dir", None) or config.path.parent / ".marrow"

    async def main() -> int:
        runtime = RuntimeOptions(state_dir=state_dir.resolve())
        hub = HubOptions(host="127.0.0.1", port=0,
                         token=os.environ.get("MARROW_TOKEN") or None)
        async with hosted(runtime, hub, config=config, heartbeats=False) as unit:
            results = await unit.scheduler.run_once([a.name for a in agents])
            await unit.runtime.settled()
        failed = 0
        for agent, result in zip(agents, results, strict=True):
            if result is None:
                failed += 1
                print(f"{agent.name:<16} error    (no result)")
                continue
            took = result.ended - result.started
            print(f"{agent.name:<16} {result.state:<8} {took:7.1f}s  {result.reason}"
                  f"\n{'':<16} log {result.stdout_path}")
            failed += not result.ok
        return EXIT_FAILED if failed else EXIT_OK

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"marrow-tui: {exc}", file=sys.stderr)
        return EXIT_CONFIG


# ---- doctor ------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from .scheduler.prompt import scan_context

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    problems: list[str] = []

    def check(ok: bool, text: str, problem: str | None = None) -> None:
        print(f"  {'✓' if ok else '✗'} {text}")
        if not ok:
            problems.append(problem or text)

    for agent in config.agents:
        print(f"[{agent.name}]{'' if agent.enabled else ' (disabled)'}")
        ws = agent.workspace
        check(ws.is_dir(), f"workspace {ws}", f"{agent.name}: workspace missing: {ws}")
        if ws.is_dir():
            check(os.access(ws, os.W_OK), "workspace writable",
                  f"{agent.name}: workspace not writable: {ws}")
        argv0 = shlex.split(agent.agent_command)[0]
        env_path = dict(agent.env).get("PATH")
        found = shutil.which(argv0, path=env_path) if "/" not in argv0 else (
            argv0 if os.access(argv0, os.X_OK) else None)
        check(found is not None, f"command {argv0}" + (f" ({found})" if found and
                                                        found != argv0 else ""),
              f"{agent.name}: command not found: {argv0}")
        for folder in agent.context_dirs:
            if not folder.is_dir():
                print(f"  - context dir {folder} (none; no context scripts)")
                continue
            scan = scan_context([folder])
            print(f"  ✓ context dir {folder}: {len(scan.scripts)} script(s)")
            for path in scan.ignored:
                print(f"    · {path.name} is not executable: not run (fine for notes)")
        for name in ("queue", "delegated", "done"):
            folder = agent.tasks_dir / name
            if folder.exists():
                check(os.access(folder, os.W_OK), f"tasks/{name} writable",
                      f"{agent.name}: not writable: {folder}")
    if config.rules_path is not None:
        print("[rules]")
        check(config.rules_path.is_file(), f"rules file {config.rules_path}",
              f"rules file missing: {config.rules_path}")
    print("[runtime]")
    state_dir = (getattr(args, "state_dir", None) or config.path.parent / ".marrow").resolve()
    _doctor_state_dir(state_dir, check)
    port = int(os.environ.get("MARROW_PORT", DEFAULT_PORT))
    _doctor_port(port, check)
    if problems:
        print(f"\ndoctor: {len(problems)} issue(s) found:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_FAILED
    print("\ndoctor: all good")
    return EXIT_OK


def _doctor_state_dir(state_dir: Path, check: Any) -> None:
    from .store.eventlog import StateLock, StoreError

    if not state_dir.exists():
        parent = state_dir.parent
        check(os.access(parent, os.W_OK), f"state dir {state_dir} (will be created)",
              f"cannot create the state dir in {parent}")
        return
    check(os.access(state_dir, os.W_OK), f"state dir {state_dir} writable",
          f"state dir not writable: {state_dir}")
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except StoreError as exc:
        print(f"  · {exc}")
    except OSError as exc:
        check(False, f"state dir lock: {exc}")
    else:
        lock.release()
        print("  ✓ state dir free (no marrow-tui running on it)")


def _doctor_port(port: int, check: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        in_use = probe.connect_ex(("127.0.0.1", port)) == 0
    if not in_use:
        print(f"  ✓ hub port {port} free")
        return

    async def ask() -> bool:
        try:
            async with HubClient(f"ws://127.0.0.1:{port}", f"doctor/{os.getpid()}",
                                 open_timeout=2, request_timeout=2,
                                 heartbeat_interval=None) as hub:
                frame = await hub.who()
        except Exception:
            return False
        return "marrow-tui" in str(frame.get("hub_version", ""))

    if asyncio.run(ask()):
        print(f"  · hub port {port} is served by a running marrow-tui")
    else:
        check(False, f"hub port {port} is taken by another program",
              f"hub port {port} in use by another program (use --port)")


# ---- task, wake, sessions (over the running hub) -----------------------------------------


def cmd_task_add(args: argparse.Namespace) -> int:
    if not args.title.strip():
        print("marrow-tui: the task needs a title", file=sys.stderr)
        return EXIT_CONFIG
    code = cli_hub.run(args, lambda hub, a: hub.task_add(a.agent, a.title, a.body),
                       lambda f, a: f"queued for {f.get('agent')}: {f.get('file')}",
                       stderr=io.StringIO() if _nobody_home(args) else None)
    if code != cli_hub.EXIT_UNREACHABLE:
        return code
    # No marrow-tui running: the queue is plain files, write it ourselves.
    from .scheduler.tasks import add_task

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    agent = config.agent(args.agent)
    if agent is None:
        print(f"marrow-tui: no agent named {args.agent} in {config.path}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        written = add_task(agent.tasks_dir, args.title, args.body)
    except (ValueError, OSError) as exc:
        print(f"marrow-tui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"queued for {agent.name}: {written} (no marrow-tui running; written directly)")
    return EXIT_OK


def cmd_task_list(args: argparse.Namespace) -> int:
    code = cli_hub.run(args, lambda hub, a: hub.task_list(a.agent), _render_tasks,
                       stderr=io.StringIO() if _nobody_home(args) else None)
    if code != cli_hub.EXIT_UNREACHABLE:
        return code
    from .scheduler.tasks import list_tasks

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    tasks = [{"agent": a.name, "file": str(t.path), "title": t.title, "state": t.state}
             for a in config.agents if not args.agent or a.name == args.agent
             for state in ("queue", "delegated") for t in list_tasks(a.tasks_dir, state)]
    print(_render_tasks({"tasks": tasks}, args))
    return EXIT_OK


def _nobody_home(args: argparse.Namespace) -> bool:
    """True when nothing listens at the hub address (so the fallback applies silently)."""
    from urllib.parse import urlsplit

    parts = urlsplit(args.uri)
    host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) != 0


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
