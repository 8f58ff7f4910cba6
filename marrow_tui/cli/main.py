"""The `marrow-tui` command: builds the parser from each command group and runs the one asked
for. Without a subcommand it runs the runtime with the console (see cli/console.py).

Each group registers its options with cheap imports only and loads what it needs (the hub
client, the runtime, Textual, the MCP SDK) when its command runs, so `marrow-tui who` does not
pay for the console or the server.
"""

from __future__ import annotations

import os
import sys

from marrow_tui import __version__
from marrow_tui.cli import (
    agents,
    attach,
    console,
    doctor,
    hub,
    issues,
    mcp,
    project,
    review,
    services,
    steer,
    tasks,
    units,
    web,
)
from marrow_tui.cli.common import EXIT_USAGE, find_hub
from marrow_tui.cli.output import USAGE, fail
from marrow_tui.cli.parser import BadUsage, Parser


def build_parser() -> Parser:
    parser = Parser(
        prog="marrow-tui",
        description="An operator console and coordination hub for people who run several "
                    "coding agents at once.",
    )
    parser.add_argument("--version", action="version", version=f"marrow-tui {__version__}")
    console.add_runtime_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    console.register(sub)
    attach.register(sub)
    hub.register(sub)
    project.register(sub)
    agents.register_runs(sub)
    doctor.register(sub)
    units.register(sub)
    tasks.register(sub)
    agents.register_operations(sub)
    steer.register(sub)
    mcp.register(sub)
    issues.register(sub)
    review.register(sub)
    services.register(sub)
    services.register_graph(sub)
    web.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(words)
    except BadUsage as exc:
        sys.exit(fail("--json" in words, EXIT_USAGE, USAGE, exc.sentence()))
    if args.command is None:
        sys.exit(console.run(args))
    find_hub(args)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`marrow-tui state --json | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
