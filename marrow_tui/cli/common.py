"""What every subcommand shares: exit codes, the hub connection options, the one way to run a
request against a hub and print its reply, and aligned tables.

Kept cheap to import: the WebSocket client loads only when a command talks to a hub.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from marrow_tui.core.text import parse_duration, printable
from marrow_tui.hub.defaults import default_uri

if TYPE_CHECKING:
    import ssl

    from marrow_tui.hub.client import Frame, HubClient

EXIT_OK: Final = 0
#: the hub refused the request
EXIT_REFUSED: Final = 1
#: a run, a check or a write failed
EXIT_FAILED: Final = 1
#: bad usage or input, found before anything was sent (argparse's own code)
EXIT_USAGE: Final = 2
#: the config (or a setting) cannot work
EXIT_CONFIG: Final = 2
#: no usable session: the hub cannot be reached, refused the connection, or did not answer
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

PROG: Final = "marrow-tui"
DEFAULT_TIMEOUT: Final = 10.0

Action = Callable[["HubClient", argparse.Namespace], Awaitable["Frame"]]
Render = Callable[["Frame", argparse.Namespace], str]
SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


# --------------------------------------------------------------------------- defaults


def default_name() -> str:
    """``MARROW_AGENT``, else ``cli/<login>``: stable, so later calls own earlier claims."""
    name = os.environ.get("MARROW_AGENT")
    if name:
        return name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return f"cli/{user or 'operator'}"


def operator_token(args: argparse.Namespace) -> str | None:
    """The operator token to present: ``--operator-token``, else ``$MARROW_OPERATOR_TOKEN``,
    else the one the local marrow-tui keeps in its state dir (``--state-dir``,
    ``$MARROW_STATE_DIR``, else ``.marrow`` beside ``$MARROW_CONFIG`` or ``./marrow.toml``,
    else ``./.marrow``). A run the runtime started (it has ``$MARROW_AGENT_KEY``) is an
    agent, never an operator: it does not go looking in the state dir."""
    given = getattr(args, "operator_token", None) or os.environ.get("MARROW_OPERATOR_TOKEN")
    if given:
        return str(given)
    if os.environ.get("MARROW_AGENT_KEY"):
        return None
    from marrow_tui.hub.secrets import read_operator_token

    return read_operator_token(local_state_dir(getattr(args, "state_dir", None)))


def local_state_dir(given: str | None = None) -> Path:
    """Where the marrow-tui started from here keeps its state (as `marrow-tui` decides)."""
    given = given or os.environ.get("MARROW_STATE_DIR")
    if given:
        return Path(given).expanduser()
    config = os.environ.get("MARROW_CONFIG")
    if config:
        return Path(config).expanduser().parent / ".marrow"
    return Path(".marrow")


def agent_key(name: str) -> str | None:
    """``$MARROW_AGENT_KEY`` when we act as the agent it was made for (``$MARROW_AGENT``), or
    under a name below it (``<agent>/helper``: the hub takes the agent's key for those, and
    once the agent has proven itself they need it)."""
    key = os.environ.get("MARROW_AGENT_KEY")
    agent = os.environ.get("MARROW_AGENT")
    if not key or not agent:
        return None
    return key if name == agent or name.startswith(agent + "/") else None


# --------------------------------------------------------------------------- argument types


def positive_float(text: str) -> float:
    """argparse type: a finite number above zero (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def duration(text: str) -> float:
    """argparse type: `90`, `90s`, `30m`, `2h`, `1d`, `1h30m`."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- hub commands


def add_hub_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Options every hub subcommand takes.

    ``suppress`` is for nested parsers (``board declare``): their defaults
    must not overwrite a value given before the nested word (``board --json
    declare ...``), so they leave unset options to the outer ``board`` parser.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("hub connection")
    group.add_argument("--uri", default=default(default_uri()),
                       help="hub address (env MARROW_HUB_URI; default %(default)s)"
                       if not suppress else "hub address (env MARROW_HUB_URI)")
    group.add_argument("--name", default=default(default_name()),
                       help="agent name to act as (env MARROW_AGENT; default cli/<user>)")
    group.add_argument("--token", default=default(os.environ.get("MARROW_TOKEN")),
                       help="connect token of a secured hub (env MARROW_TOKEN)")
    group.add_argument("--operator-token", default=default(None),
                       help="act as an operator (env MARROW_OPERATOR_TOKEN; default: the "
                            "token in the local marrow-tui's state dir, when readable)")
    group.add_argument("--state-dir", default=default(None),
                       help="the local marrow-tui's state dir, to read its operator token "
                            "(env MARROW_STATE_DIR; default .marrow beside ./marrow.toml)")
    group.add_argument("--cafile", default=default(None),
                       help="CA bundle to verify a wss:// hub (default: system trust)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print the hub's reply frame as one JSON line")
    group.add_argument("--timeout", type=positive_float, default=default(DEFAULT_TIMEOUT),
                       help="seconds to wait for the connection and for the reply (default 10)")


def hub_command(parser: argparse.ArgumentParser, action: Action, render: Render,
                suppress: bool = False) -> argparse.ArgumentParser:
    """Make `parser` a command that sends one request to the hub and prints the reply."""
    add_hub_options(parser, suppress)
    parser.set_defaults(func=lambda args: run(args, action, render))
    return parser


class UsageError(Exception):
    """Bad input found before connecting; exit code 2."""


def run(args: argparse.Namespace, action: Action, render: Render,
        stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Open a session, run one request, print the outcome, return the exit code.

    Every error a user can cause ends here as one sentence on stderr and a
    documented exit code; only programming errors escape as tracebacks.
    """
    import json

    from marrow_tui.hub.client import HubConnectionError, Refused, run_request

    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        _check_input(args)
        context = ssl_context(args.cafile)
        frame = run_request(
            args.uri, args.name, lambda hub: action(hub, args), token=args.token,
            timeout=args.timeout, ssl=context, operator_token=operator_token(args),
            agent_key=agent_key(args.name),
        )
    except HubConnectionError as exc:
        print(printable(f"{PROG}: {exc.message}"), file=err)
        return EXIT_UNREACHABLE
    except Refused as exc:
        if args.json:
            print(json.dumps(exc.frame), file=out)
        print(printable(f"{PROG}: refused: {exc.text} [{exc.code or exc.type}]"), file=err)
        return EXIT_REFUSED
    except UsageError as exc:
        print(printable(f"{PROG}: {exc}"), file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    print_reply(frame, args, render, out)
    return EXIT_OK


def print_reply(frame: Frame, args: argparse.Namespace, render: Render,
                out: TextIO | None = None) -> None:
    """The reply as one JSON line with ``--json``, else rendered for people."""
    import json

    # JSON is escaped by json.dumps (ASCII only: controls and lone surrogates as \uXXXX);
    # text for people goes through `printable`, whatever the hub (or an old log) sent.
    print(json.dumps(frame) if args.json else printable(render(frame, args), lines=True),
          file=out or sys.stdout)


def _check_input(args: argparse.Namespace) -> None:
    """Refuse a malformed URI or an empty name before opening any socket."""
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    try:
        parse_uri(args.uri)
    except (InvalidURI, ValueError) as exc:
        raise UsageError(
            f"--uri {args.uri!r} is not a hub address like ws://127.0.0.1:8876 ({exc})"
        ) from None
    if not args.name.strip():
        raise UsageError("--name must not be empty (or set MARROW_AGENT)")


def ssl_context(cafile: str | None) -> ssl.SSLContext | None:
    """A verifying context for a private CA; None means the system's trust store."""
    if not cafile:
        return None
    import ssl

    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the CA file {cafile!r}: {exc}") from None


