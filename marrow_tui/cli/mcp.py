"""`marrow-tui mcp`: the options of the MCP server (marrow_tui/mcp/server.py) and its start.

The server and its SDK load only when the command runs. `python -m marrow_tui.mcp` runs the
same command on its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Final

from marrow_tui.cli.common import EXIT_USAGE, SubParsers, UsageError, duration, ssl_context
from marrow_tui.core.text import SafeFormatter

log = logging.getLogger("marrow_tui.mcp")

DESCRIPTION: Final = (
    "Serve the hub's tools (ask_human, mark_done, claim, release, handoff, post_progress, "
    "read_board, state) to a coding agent as an MCP server on stdin/stdout. Configure it in "
    "the agent like any stdio MCP server; inside a scheduled run the environment the scheduler "
    "sets (MARROW_HUB_URI, MARROW_AGENT, MARROW_SESSION, MARROW_TOKEN) is all it needs. "
    "See docs/mcp.md."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", default=None,
                   help="hub address (default: $MARROW_HUB_URI, else ws://127.0.0.1:8876)")
    p.add_argument("--name", default=None,
                   help="the name on the hub (default: $MARROW_AGENT/mcp, else mcp/<user>)")
    p.add_argument("--token", default=None, help="connect token (default: $MARROW_TOKEN)")
    p.add_argument("--cafile", default=None, help="CA bundle to verify a wss:// hub")
    p.add_argument("--connect-timeout", type=duration, default=10.0,
                   metavar="DURATION", help="for connecting and each request (default 10s)")
    p.add_argument("--give-up-after", type=duration, default=3600.0,
                   metavar="DURATION",
                   help="ask_human: when the hub is gone this long, return an error "
                        "(the question stays open; default 1h)")


def register(sub: SubParsers) -> None:
    """Add `marrow-tui mcp` to the CLI's subcommands."""
    p = sub.add_parser("mcp", help="serve hub tools to a coding agent over MCP (stdio)",
                       description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    level = str(getattr(args, "log_level", None) or os.environ.get("MARROW_LOG_LEVEL")
                or "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), stream=sys.stderr,
                        format="marrow-tui mcp %(levelname)s %(name)s: %(message)s")
    # Records quote the hub and the agent (names, ids, questions): each stays one line with no
    # escape sequence, whichever handler writes it.
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, SafeFormatter):
            handler.setFormatter(SafeFormatter(handler.formatter))
    try:
        context = ssl_context(args.cafile)
    except UsageError as exc:
        print(f"marrow-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from marrow_tui.mcp.server import Settings, serve

    settings = Settings.from_env(uri=args.uri, name=args.name, token=args.token, ssl=context,
                                 connect_timeout=args.connect_timeout,
                                 give_up_after=args.give_up_after)
    log.info("serving MCP on stdio for %s at %s", settings.name, settings.uri)
    return serve(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="marrow-tui mcp", description=DESCRIPTION)
    add_arguments(parser)
    parser.add_argument("--log-level", default=None,
                        help="diagnostics on stderr (default: $MARROW_LOG_LEVEL, else WARNING)")
    sys.exit(run(parser.parse_args(argv)))
