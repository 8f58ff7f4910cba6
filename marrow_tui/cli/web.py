"""`marrow-tui web [URI]`: the console in a browser. Each browser tab runs one attached console
(`marrow-tui attach [URI]`) through textual-serve; a browser logs in once with the operator
token and keeps a session cookie.

Exit codes: 0 after Ctrl-C; 2 for settings that cannot work (a non-loopback bind without TLS
and the operator token, half of TLS, a port in use, a malformed URI, textual-serve missing);
3 when there is no operator token to ask the browser for.

textual-serve and aiohttp load only when this command runs (marrow_tui/web/server.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from marrow_tui.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNREACHABLE,
    SubParsers,
    operator_token,
    port_number,
)
from marrow_tui.cli.output import PROG

#: as in marrow_tui/web/server.py, repeated so `--help` does not load the server
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8877


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "web", help="the console in a browser: each tab is a console attached to the runtime",
        description="Serve the console to browsers with textual-serve: each browser tab runs "
                    "its own `marrow-tui attach [URI]`. A browser logs in once with the "
                    "operator token and keeps a cookie (HttpOnly, SameSite=Strict). Loopback "
                    "only, unless TLS and the operator token are both set.")
    parser.add_argument("uri", nargs="?", default=None, metavar="URI",
                        help="the runtime to attach to (default: what `marrow-tui attach` "
                             "picks: the runtime of the state folder here, else "
                             "ws://127.0.0.1:8876)")
    parser.add_argument("--host", default=os.environ.get("MARROW_WEB_HOST", DEFAULT_WEB_HOST),
                        help=f"address to serve browsers on (env MARROW_WEB_HOST; default "
                             f"{DEFAULT_WEB_HOST}); any other than loopback needs --tls-cert, "
                             "--tls-key and the operator token")
    parser.add_argument("--port", type=port_number,
                        default=os.environ.get("MARROW_WEB_PORT", str(DEFAULT_WEB_PORT)),
                        help=f"port for browsers; 0 picks a free one (env MARROW_WEB_PORT; "
                             f"default {DEFAULT_WEB_PORT})")
    parser.add_argument("--operator-token", default=None,
                        help="the token a browser must give, and each console uses (env "
                             "MARROW_OPERATOR_TOKEN; default: the token in the local "
                             "marrow-tui's state dir)")
    parser.add_argument("--state-dir", default=None,
                        help="the local marrow-tui's state dir, for its operator token and "
                             "for the consoles (env MARROW_STATE_DIR)")
    parser.add_argument("--cafile", default=None,
                        help="CA bundle the consoles verify a wss:// runtime with (default: "
                             "system trust)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate, to serve https://")
    parser.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    parser.set_defaults(func=run)


def say(sentence: str) -> None:
    print(f"{PROG} web: {sentence}", file=sys.stderr, flush=True)


def child_environment(args: argparse.Namespace, token: str) -> dict[str, str]:
    """What each console process gets besides this process's environment: the operator token
    (never on its command line: `ps` shows command lines to every user), and the state dir
    it was given here."""
    environment = {"MARROW_OPERATOR_TOKEN": token}
    if args.state_dir:
        environment["MARROW_STATE_DIR"] = os.path.abspath(os.path.expanduser(args.state_dir))
    return environment


def uri_problem(uri: str | None) -> str | None:
    if uri is None:
        return None
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    try:
        parse_uri(uri)
    except (InvalidURI, ValueError) as exc:
        return f"{uri!r} is not a runtime's address like ws://127.0.0.1:8876 ({exc})"
    return None


def run(args: argparse.Namespace) -> int:
    import asyncio

    from marrow_tui.web.bind import bind_refusal

    token = operator_token(args)
    tls = bool(args.tls_cert and args.tls_key)
    problem = bind_refusal(args.host, tls, token) or uri_problem(args.uri)
    if problem is not None:
        say(problem)
        return EXIT_CONFIG
    if not token:
        say("no operator token to ask browsers for: pass --operator-token, set "
            "MARROW_OPERATOR_TOKEN, or run it where the runtime's state folder is "
            "(--state-dir)")
        return EXIT_UNREACHABLE
    try:
        from marrow_tui.web.server import WebConfigError, WebOptions, console_command, serve
    except ImportError as exc:
        say(f"needs textual-serve, which is not installed ({exc}); install marrow-tui with "
            "its dependencies (pip install -e .)")
        return EXIT_CONFIG
    options = WebOptions(operator_token=token, command=console_command(args.uri, args.cafile),
                         host=args.host, port=args.port, tls_cert=args.tls_cert,
                         tls_key=args.tls_key, environment=child_environment(args, token))

    def listening(url: str) -> None:
        say(f"serving the console on {url} (log in with the operator token; Ctrl-C stops)")

    try:
        asyncio.run(serve(options, listening))
    except WebConfigError as exc:
        say(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK
