"""The helper services from a shell: `services [start|stop|restart NAME]` on the running
marrow-tui (through its hub, with the hub subcommands' options, output and exit codes), and
`graph`, their dependency graph from the config alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from marrow_tui.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_USAGE,
    SubParsers,
    add_hub_options,
    run,
)
from marrow_tui.core.text import table
from marrow_tui.cli.project import add_config_option, config_path, load_or_report

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubClient

ACTIONS = ("list", "start", "stop", "restart")


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "services", help="the helper services of the running marrow-tui",
        description="List the helper services (state, pid, port, health, restarts), or start, "
                    "stop or restart one, on the running marrow-tui.")
    p.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    p.add_argument("service", nargs="?", default="", metavar="NAME")
    p.add_argument("--graph", action="store_true", help="also print the dependency graph")
    add_hub_options(p)
    p.set_defaults(func=_run)


def register_graph(sub: SubParsers) -> None:
    p = sub.add_parser(
        "graph", help="print the helper services' dependency graph",
        description="Print the [[services]] of the config in start order: one block per wave "
                    "(a wave starts once every service of the one before is healthy), each "
                    "service with the services it waits for. Stopping goes in reverse.")
    add_config_option(p)
    p.set_defaults(func=cmd_graph)


def _run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.service:
        print(f"marrow-tui: services {args.action} needs a service NAME", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "list":
        return run(args, _do_list, render)
    return run(args, _do_action, lambda f, a: str(f.get("payload", "")))


async def _do_list(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.services_list()


async def _do_action(hub: HubClient, args: argparse.Namespace) -> Frame:
    verb = {"start": hub.service_start, "stop": hub.service_stop,
            "restart": hub.service_restart}[args.action]
    return await verb(args.service)


def render(frame: Frame, args: argparse.Namespace) -> str:
    rows = frame.get("services") or []
    if not rows:
        text = "no services configured"
    else:
        now = time.time()
        lines = []
        for r in rows:
            up = ""
            if r.get("state") == "healthy" and r.get("since"):
                seconds = int(max(0, now - r["since"]))
                up = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 \
                    else f"{seconds // 60}m{seconds % 60:02d}s"
            lines.append([r["name"], r.get("state") or "", str(r.get("pid") or "-"),
                          str(r.get("port") or "-"), r.get("health") or "-", up or "-",
                          str(r.get("restarts") or 0), (r.get("reason") or "")[:60]])
        text = table(["SERVICE", "STATE", "PID", "PORT", "HEALTH", "UP", "RESTARTS",
                      "REASON"], lines)
    if getattr(args, "graph", False) and frame.get("graph"):
        text += "\n\n" + str(frame["graph"])
    return text


def cmd_graph(args: argparse.Namespace) -> int:
    """Exit codes as `validate`: 0 printed (also when there are no services), 2 the config has
    an error (every problem is printed, as `validate` prints them)."""
    from marrow_tui.core.graph import render as render_graph

    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path, check_commands=False, what="no graph to print")
    if config is None:
        return EXIT_CONFIG
    if not config.services:
        print(f"no services in {path} (add a [[services]] table)")
        return EXIT_OK
    print(render_graph(config.services))
    return EXIT_OK
