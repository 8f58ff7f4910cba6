"""The default command: the runtime (hub, event log, scheduler, orchestrator, services) with
the console, or headless with `--no-ui`; `demo` adds a scripted team of agents.

Exit codes: 0 after a clean stop; 1 when the event log failed while running; 2 for settings
that cannot work (a bad flag, a busy or unreadable state directory, a port in use, a
non-loopback bind without a token).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marrow_tui.cli.common import EXIT_CONFIG, SubParsers, duration_or_zero, port_number
from marrow_tui.cli.project import config_path, load_or_report
from marrow_tui.hub.defaults import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from marrow_tui.runtime import RuntimeOptions


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--no-ui", action="store_true",
                       help="run headless: the runtime and hub only, a log line per event")
    group.add_argument("--host", default=os.environ.get("MARROW_HOST", DEFAULT_HOST),
                       help=f"address for the hub to listen on (default {DEFAULT_HOST})")
    group.add_argument("--port", type=port_number,
                       default=os.environ.get("MARROW_PORT", str(DEFAULT_PORT)),
                       help=f"hub port; 0 picks a free one (default: $MARROW_PORT, else "
                            f"{DEFAULT_PORT})")
    group.add_argument("--config", "-c", default=None, metavar="PATH",
                       help="the scheduler config (default: $MARROW_CONFIG, else ./marrow.toml "
                            "when it exists; without one, no agents are scheduled)")
    group.add_argument("--workflow", type=Path, default=None, metavar="PATH",
                       help="run the issue orchestrator with this WORKFLOW.md (default: "
                            "./WORKFLOW.md when it exists)")
    group.add_argument("--state-dir", type=Path, default=None,
                       help="where the event log lives (default: .marrow/ beside the config, "
                            "else in the current folder)")
    group.add_argument("--token", dest="hub_token", default=None,
                       help="shared secret agents must send (default: $MARROW_TOKEN); "
                            "required to listen on a non-loopback address")
    group.add_argument("--tls-cert", help="PEM certificate, to serve wss:// for remote agents")
    group.add_argument("--tls-key", help="PEM private key for --tls-cert")
    group.add_argument("--rate", type=float, default=None,
                       help="per-agent frames per second, 0 for no limit "
                            "(default: off on loopback, 100 otherwise)")
    group.add_argument("--burst", type=int, default=20, help="rate-limit burst (default 20)")
    group.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="let a web page from ORIGIN connect (browsers are refused otherwise)")
    group.add_argument("--max-claims-per-agent", type=int, default=128,
                       help="live claims one agent may hold, 0 for no limit (default 128)")
    group.add_argument("--chat-history-mib", type=int,
                       default=os.environ.get("MARROW_CHAT_HISTORY_MIB", "16"), metavar="MIB",
                       help="how much chat history the hub keeps, in MiB, besides its "
                            "10,000-message bound (default: $MARROW_CHAT_HISTORY_MIB, else 16)")
    group.add_argument("--new-state", action="store_true",
                       help="start a new event log on purpose: the state folder is moved "
                            "aside to <folder>.old-<time> (nothing is deleted) first")
    group.add_argument("--operator", default=os.environ.get("MARROW_OPERATOR"),
                       help="the console's name on the hub (default: operator/<your user>)")
    group.add_argument("--no-bell", action="store_true",
                       default=os.environ.get("MARROW_BELL", "1") == "0",
                       help="console: toasts only, no terminal bell on alerts")
    group.add_argument("--log-level", default=os.environ.get("MARROW_LOG_LEVEL", "WARNING"),
                       help="diagnostics on stderr: DEBUG, INFO, WARNING (default), ERROR")


def register(sub: SubParsers) -> None:
    demo = sub.add_parser(
        "demo", help="run with a scripted team of agents, so every pane comes alive",
        description="Start the runtime (console, or headless with --no-ui) and a small scripted "
                    "team of agents that connect over the wire: they plan, claim, collide, "
                    "post progress, hand off and finish, over and over. Beside them, an issue "
                    "is worked by a scripted coding agent over ACP: its transcript is live in "
                    "the Sessions pane (Enter), and it asks you before it runs the tests "
                    "(Steering pane, a); a scheduled agent runs once a minute and asks you "
                    "whether to post the board's summary. --workflow and --config run yours "
                    "instead. Without --state-dir the state goes to a new temporary folder, "
                    "named at start and removed at exit (--keep keeps it).")
    add_runtime_options(demo)
    demo.add_argument("--pace", type=duration_or_zero, default=None, metavar="DURATION",
                      help="time between the agents' steps: 1, 0.5, 2s (default 1s; "
                           "0 = as fast as possible)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the demo's temporary state folder at exit (it is removed "
                           "otherwise; a --state-dir you give is never removed)")
    demo.set_defaults(func=lambda a: run(a, demo=True))


def runtime_options(args: argparse.Namespace, state_dir: Path) -> RuntimeOptions:
    """The runtime's settings from the flags (and their environment defaults)."""
    from marrow_tui.hub.server import ConfigError
    from marrow_tui.runtime import RuntimeOptions

    mib = args.chat_history_mib
    if mib < 1:
        raise ConfigError(f"--chat-history-mib (or MARROW_CHAT_HISTORY_MIB) must be at least 1, "
                          f"not {mib}")
    return RuntimeOptions(state_dir=state_dir.resolve(),
                          max_claims_per_agent=max(0, args.max_claims_per_agent),
                          chat_history_bytes=mib * 1024 * 1024)


def run(args: argparse.Namespace, demo: bool = False) -> int:
    """Start the runtime and hub with the console, or headless with `--no-ui`. A demo without
    --state-dir gets a new temporary folder: said where at start, removed at exit unless
    --keep (only that folder: one the operator named is theirs)."""
    made: Path | None = None
    keep = bool(getattr(args, "keep", False))
    if demo and args.state_dir is None:
        # The demo never writes into the operator's real state: a fresh folder each time.
        import tempfile

        made = args.state_dir = Path(tempfile.mkdtemp(prefix="marrow-demo-"))
        print(f"marrow-tui: the demo's state folder is {made} (" + (
            "kept at exit" if keep else "removed at exit; --keep keeps it") + ")",
            file=sys.stderr, flush=True)
    try:
        return _run(args, demo)
    finally:
        if made is not None:
            _leave_demo_state(made, keep)


def _leave_demo_state(folder: Path, keep: bool) -> None:
    import shutil

    if keep:
        print(f"marrow-tui: the demo's state is kept in {folder}", file=sys.stderr)
        return
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        print(f"marrow-tui: could not remove the demo's state folder {folder}: {exc}",
              file=sys.stderr)
        return
    print(f"marrow-tui: removed the demo's state folder {folder}", file=sys.stderr)


def _run(args: argparse.Namespace, demo: bool) -> int:
    import asyncio
    import logging

    from marrow_tui.hub.server import ConfigError, HubOptions
    from marrow_tui.store.eventlog import StoreError, set_aside

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        stream=sys.stderr,
        format="marrow-tui %(levelname)s %(name)s: %(message)s",
    )
    if demo and getattr(args, "pace", None) is not None:
        os.environ["MARROW_DEMO_PACE"] = str(max(0.0, args.pace))
    config = None
    path = None if demo and args.config is None else config_path(args)
    if demo and args.config is None:
        from marrow_tui.demo import demo_config

        try:  # the demo's scheduled agent, in its own state folder
            path = demo_config(args.state_dir)
        except (ConfigError, OSError) as exc:
            print(f"marrow-tui: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if path is not None:
        config = load_or_report(path)
        if config is None:
            return EXIT_CONFIG
    workflow = args.workflow
    if workflow is None and not demo and Path("WORKFLOW.md").is_file():
        workflow = Path("WORKFLOW.md")
    if workflow is None and demo:
        from marrow_tui.demo import demo_workflow

        try:  # the demo's issue, worked by an agent over ACP, in its own state folder
            workflow = demo_workflow(args.state_dir)
        except (ConfigError, OSError) as exc:
            print(f"marrow-tui: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if workflow is not None:
        from marrow_tui.orchestrator.workflow import load_workflow

        loaded = load_workflow(workflow)
        for diagnostic in loaded.diagnostics:
            print(diagnostic, file=sys.stderr)
        if loaded.workflow is None:
            print(f"marrow-tui: {workflow}: not a usable WORKFLOW.md; nothing was started",
                  file=sys.stderr)
            return EXIT_CONFIG
        workflow = workflow.resolve()
    default_state = config.path.parent / ".marrow" if config is not None else (
        workflow.parent / ".marrow" if workflow is not None else Path(".marrow"))
    state_dir = args.state_dir or Path(os.environ.get("MARROW_STATE_DIR", default_state))
    token = args.hub_token if args.hub_token is not None else os.environ.get("MARROW_TOKEN") or None
    hub = HubOptions(
        host=args.host, port=args.port, token=token, tls_cert=args.tls_cert,
        tls_key=args.tls_key, rate=args.rate, burst=args.burst,
        allow_origins=tuple(args.allow_origin),
    )
    if not args.no_ui and not demo and not args.new_state:
        from marrow_tui.hub.address import running_address

        found = running_address(state_dir)
        if found is not None:  # its runtime runs already: this console attaches to it
            from marrow_tui.cli.attach import attach

            args.state_dir = str(state_dir)
            args.operator_token = None
            args.cafile = None
            args.token = token
            args.connect_timeout = 10.0
            return attach(args, found.uri, state_dir,
                          f"already running here, pid {found.pid}")
    try:
        runtime = runtime_options(args, state_dir)
        hub.check()
        if args.new_state:
            aside = set_aside(runtime.state_dir)
            if aside is not None:
                print(f"marrow-tui: --new-state: moved the old state {runtime.state_dir} aside "
                      f"to {aside}; starting a new event log", file=sys.stderr, flush=True)
        if args.no_ui:
            from marrow_tui.headless import serve

            return asyncio.run(serve(runtime, hub, demo=demo, config=config,
                                     workflow=workflow))
        from marrow_tui.ui.app import run_console

        return asyncio.run(run_console(runtime, hub, demo=demo, operator=args.operator,
                                       bell=not args.no_bell, config=config,
                                       workflow=workflow))
    except (ConfigError, StoreError) as exc:
        print(f"marrow-tui: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
