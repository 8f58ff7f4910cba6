"""What every subcommand shares: exit codes, the hub connection options, the argument types
(durations, ports), and the one way to run a request against a hub and print its reply.

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

from marrow_tui.cli.output import (
    INTERRUPTED,
    PROG,
    USAGE,
    Fields,
    connection_code,
    fail,
    print_json,
    refusal,
    succeeded,
)
from marrow_tui.core.text import parse_duration, printable
from marrow_tui.hub.defaults import default_uri

if TYPE_CHECKING:
    import ssl

    from marrow_tui.hub.client import Frame, HubClient, Refused

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

#: seconds to wait for a session to open and for the hub's reply
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

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


def find_hub(args: argparse.Namespace) -> None:
    """A hub command given no --uri: $MARROW_HUB_URI, else where the marrow-tui of the local
    state dir listens (its hub.json: any port, `--port 0` too), else the default address."""
    if not getattr(args, "find_hub", False) or args.uri is not None:
        return
    if os.environ.get("MARROW_HUB_URI"):
        args.uri = default_uri()
        return
    from marrow_tui.hub.address import running_address

    found = running_address(local_state_dir(getattr(args, "state_dir", None)))
    args.uri = found.uri if found is not None else default_uri()


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


def duration(text: str) -> float:
    """argparse type for every time the command line takes: `90` (seconds), `90s`, `30m`,
    `2h`, `1d`, `1h30m`."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_or_zero(text: str) -> float:
    """argparse type: a duration, or `0` for none."""
    try:
        if float(text.strip().removesuffix("s")) == 0:
            return 0.0
    except ValueError:
        pass  # not a plain number: a duration like 2s or 1m
    return duration(text)


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


class _OldTimeout(argparse.Action):
    """`--timeout` on a hub command, from before it was called `--connect-timeout`: it still
    works (scripts have it), and says its new name on stderr, since `ask --timeout` is the
    question's deadline."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{PROG}: --timeout here is the connect timeout; it is called --connect-timeout "
              "now", file=sys.stderr)
        setattr(namespace, self.dest, values)


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
    group.add_argument("--uri", default=default(None),
                       help="hub address (env MARROW_HUB_URI; default: where the marrow-tui "
                            "of the state dir listens, else ws://127.0.0.1:8876)"
                       if not suppress else "hub address (env MARROW_HUB_URI)")
    parser.set_defaults(find_hub=True)
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
                       help="print the outcome as one JSON object: {\"ok\": true, ...} or "
                            "{\"ok\": false, \"code\": ..., \"reason\": ...}")
    group.add_argument("--connect-timeout", type=duration, metavar="DURATION",
                       default=default(DEFAULT_CONNECT_TIMEOUT),
                       help="how long to wait for the connection and for the reply "
                            "(90s, 2m; default 10s)")
    group.add_argument("--timeout", dest="connect_timeout", type=duration, action=_OldTimeout,
                       default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def hub_command(parser: argparse.ArgumentParser, action: Action, render: Render,
                fields: Fields, suppress: bool = False) -> argparse.ArgumentParser:
    """Make `parser` a command that sends one request to the hub and prints the reply."""
    add_hub_options(parser, suppress)
    parser.set_defaults(func=lambda args: run(args, action, render, fields))
    return parser


class UsageError(Exception):
    """Bad input found before connecting; exit code 2."""


def run(args: argparse.Namespace, action: Action, render: Render, fields: Fields,
        stdout: TextIO | None = None, stderr: TextIO | None = None,
        refused: Callable[[Refused], tuple[str, dict[str, Any]]] | None = None) -> int:
    """Open a session, run one request, print the outcome, return the exit code.

    Every error a user can cause ends here as one sentence on stderr (and the failure object
    on stdout with ``--json``) and a documented exit code; only programming errors escape as
    tracebacks. `refused` gives a refusal's sentence and its extra ``--json`` fields, for a
    command whose refusals carry data (the commits a discard would lose).
    """
    from marrow_tui.hub.client import HubConnectionError, Refused, run_request

    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        _check_input(args)
        context = ssl_context(args.cafile)
        frame = run_request(
            args.uri, args.name, lambda hub: action(hub, args), token=args.token,
            timeout=args.connect_timeout, ssl=context, operator_token=operator_token(args),
            agent_key=agent_key(args.name),
        )
    except HubConnectionError as exc:
        return fail(args.json, EXIT_UNREACHABLE, connection_code(exc), exc.message,
                    out=out, err=err)
    except Refused as exc:
        code, reason, said = refusal(exc, args.uri)
        extra: dict[str, Any] = {}
        if refused is not None:
            said, extra = refused(exc)
        return fail(args.json, EXIT_REFUSED, code, reason, said, out=out, err=err,
                    extra=extra)
    except UsageError as exc:
        return fail(args.json, EXIT_USAGE, USAGE, str(exc), out=out, err=err)
    except KeyboardInterrupt:
        return fail(args.json, EXIT_INTERRUPTED, INTERRUPTED, "interrupted", out=out, err=err)
    print_reply(frame, args, render, fields, out)
    return EXIT_OK


def print_reply(frame: Frame, args: argparse.Namespace, render: Render, fields: Fields,
                out: TextIO | None = None) -> None:
    """The command's fields as ``{"ok": true, ...}`` with ``--json``, else rendered for
    people."""
    if args.json:
        print_json(succeeded(fields(frame)), out)
    else:
        # text for people goes through `printable`, whatever the hub (or an old log) sent
        print(printable(render(frame, args), lines=True), file=out or sys.stdout)


def usage_error(args: argparse.Namespace, sentence: str) -> int:
    """Bad input found before anything was sent: the sentence, exit 2."""
    return fail(getattr(args, "json", False), EXIT_USAGE, USAGE, sentence)


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


