"""`marrow-tui services [start|stop|restart NAME]`: the running marrow-tui's helper services.

They talk to its hub like the other hub subcommands (see cli_hub: the same options, output and
exit codes). `marrow-tui graph` (services/cli.py) prints the dependency graph from the config,
without a running marrow-tui.
"""

from __future__ import annotations

import argparse
import time

from . import cli_hub
from .hub.client import Frame, HubClient

ACTIONS = ("list", "start", "stop", "restart")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "services", help="the helper services of the running marrow-tui",
        description="List the helper services (state, pid, port, health, restarts), or start, "
                    "stop or restart one, on the running marrow-tui.")
    p.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    p.add_argument("service", nargs="?", default="", metavar="NAME")
    p.add_argument("--graph", action="store_true", help="also print the dependency graph")
    cli_hub._add_common(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.service:
        import sys

        print(f"marrow-tui: services {args.action} needs a service NAME", file=sys.stderr)
        return cli_hub.EXIT_USAGE
    if args.action == "list":
        return cli_hub.run(args, _do_list, render)
    return cli_hub.run(args, _do_action, lambda f, a: str(f.get("payload", "")))


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
        table = []
        for r in rows:
            up = ""
            if r.get("state") == "healthy" and r.get("since"):
                seconds = int(max(0, now - r["since"]))
                up = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 \
                    else f"{seconds // 60}m{seconds % 60:02d}s"
            table.append([r["name"], r.get("state") or "", str(r.get("pid") or "-"),
                          str(r.get("port") or "-"), r.get("health") or "-", up or "-",
                          str(r.get("restarts") or 0), (r.get("reason") or "")[:60]])
        text = cli_hub.table(["SERVICE", "STATE", "PID", "PORT", "HEALTH", "UP", "RESTARTS",
                              "REASON"], table)
    if getattr(args, "graph", False) and frame.get("graph"):
        text += "\n\n" + str(frame["graph"])
    return text
