"""`marrow-tui graph`: the helper services' dependency graph, from the config alone.

No running marrow-tui is needed. Exit codes as `validate`: 0 printed (also when there are no
services), 2 the config has an error (every problem is printed, as `validate` prints them).
"""

from __future__ import annotations

import argparse

from .. import cli_sched
from ..core.graph import render


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "graph", help="print the helper services' dependency graph",
        description="Print the [[services]] of the config in start order: one block per wave "
                    "(a wave starts once every service of the one before is healthy), each "
                    "service with the services it waits for. Stopping goes in reverse.")
    cli_sched._add_config(p)
    p.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    path = cli_sched.config_path(args, required=True)
    assert path is not None
    config = cli_sched.load_or_report(path, check_commands=False, what="no graph to print")
    if config is None:
        return cli_sched.EXIT_CONFIG
    if not config.services:
        print(f"no services in {path} (add a [[services]] table)")
        return cli_sched.EXIT_OK
    print(render(config.services))
    return cli_sched.EXIT_OK
