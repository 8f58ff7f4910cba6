"""The helper services from a shell: `services [start|stop|restart NAME]` on the running
marrow-tui (through its hub, with the hub subcommands' options, output and exit codes), and
`graph`, their dependency graph from the config alone.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    SubParsers,
    add_hub_options,
    run,
    usage_error,
)
from marrow_tui.cli.output import pick
from marrow_tui.cli.project import add_config_option, config_path, load_or_report
from marrow_tui.core.text import format_duration, table

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
    if args.action != "list" and not args.service.strip():
        return usage_error(args, f"services {args.action} needs a service NAME")
    if args.action == "list":
        return run(args, _do_list, render, lambda frame: list_fields(frame, args))
    return run(args, _do_action, lambda f, a: str(f.get("payload", "")),
               lambda frame: {"service": frame.get("name"), "action": args.action})


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
            # the console's Services pane says it the same way
            up = (format_duration(now - r["since"])
                  if r.get("state") == "healthy" and r.get("since") else "")
            lines.append([r["name"], r.get("state") or "", str(r.get("pid") or "-"),
                          str(r.get("port") or "-"), r.get("health") or "-", up or "-",
                          str(r.get("restarts") or 0), (r.get("reason") or "")[:60]])
        text = table(["SERVICE", "STATE", "PID", "PORT", "HEALTH", "UP", "RESTARTS",
                      "REASON"], lines)
    if getattr(args, "graph", False) and frame.get("graph"):
        text += "\n\n" + str(frame["graph"])
    return text


#: a service's fields in `services --json`
SERVICE_KEYS = ("name", "state", "pid", "port", "url", "health", "restarts", "reason", "since")


def list_fields(frame: Frame, args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "services": [pick(row, *SERVICE_KEYS) for row in frame.get("services") or []]}
    if args.graph:
        fields["graph"] = frame.get("graph") or ""
    return fields


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
