"""`marrow-tui attach [URI]`: the console on a runtime that runs elsewhere.

The runtime keeps running when the console quits; several consoles attach at once. Without a
URI it attaches to the runtime of the state folder here (its `hub.json` says where it listens),
else to the default hub address. An operator token is needed: the runtime gives its state to
operators only.

Exit codes: 0 after detaching; 2 for bad usage; 3 when no usable connection could be made (no
runtime there, a wrong or missing operator token, a runtime of another version).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from marrow_tui.cli.common import (
    DEFAULT_CONNECT_TIMEOUT,
    EXIT_UNREACHABLE,
    SubParsers,
    UsageError,
    duration,
    local_state_dir,
    operator_token,
    ssl_context,
)
from marrow_tui.cli.output import PROG
from marrow_tui.hub.address import running_address
from marrow_tui.hub.defaults import default_operator, default_uri


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "attach", help="open the console on a runtime that is already running",
        description="Open the console on a running marrow-tui runtime (one started with "
                    "--no-ui, as a service, or by another console), here or on another "
                    "machine (wss:// with the operator token). Every pane, key and dialog "
                    "works as in the embedded console; quitting detaches and leaves the "
                    "runtime and its agents running. Several consoles may attach at once.")
    parser.add_argument("uri", nargs="?", default=None,
                        help="the runtime's hub (default: the runtime of the state folder "
                             "here, else $MARROW_HUB_URI, else ws://127.0.0.1:8876)")
    parser.add_argument("--state-dir", default=None,
                        help="the state folder whose runtime to attach to, and whose operator "
                             "token to present (default: $MARROW_STATE_DIR, else .marrow "
                             "beside $MARROW_CONFIG, else ./.marrow)")
    parser.add_argument("--operator-token", default=None,
                        help="the runtime's operator token (default: $MARROW_OPERATOR_TOKEN, "
                             "else the state folder's)")
    parser.add_argument("--token", default=os.environ.get("MARROW_TOKEN"),
                        help="the hub's connect token, when it has one (env MARROW_TOKEN)")
    parser.add_argument("--cafile", default=None,
                        help="CA bundle to verify a wss:// hub (default: system trust)")
    parser.add_argument("--operator", default=os.environ.get("MARROW_OPERATOR"),
                        help="the console's name on the hub (default: operator/<your user>; "
                             "/2, /3... when another console has it)")
    parser.add_argument("--no-bell", action="store_true",
                        default=os.environ.get("MARROW_BELL", "1") == "0",
                        help="toasts only, no terminal bell on alerts")
    parser.add_argument("--connect-timeout", type=duration, metavar="DURATION",
                        default=DEFAULT_CONNECT_TIMEOUT,
                        help="how long to wait for the runtime (default 10s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = local_state_dir(args.state_dir)
    uri, how = args.uri, ""
    if uri is None:
        found = running_address(state_dir)
        uri = found.uri if found is not None else default_uri()
    return attach(args, uri, state_dir, how)


def attach(args: argparse.Namespace, uri: str, state_dir: Path, how: str = "") -> int:
    """Attach the console to the runtime at `uri`; `how` says why, when not asked to."""
    import asyncio

    from marrow_tui.attach.mirror import MirroredRuntime
    from marrow_tui.hub.client import HubConnectionError, HubRefused
    from marrow_tui.ui.app import run_attached

    secret = operator_token(args)
    if not secret:
        return _cannot(uri, f"the runtime gives its state to operators only, and no operator "
                            f"token was found (--operator-token, $MARROW_OPERATOR_TOKEN, or "
                            f"{state_dir / 'operator_token'} of a runtime on this machine)")
    try:
        context = ssl_context(args.cafile)
    except UsageError as exc:
        return _cannot(uri, str(exc))
    mirror = MirroredRuntime(uri, args.operator or default_operator(), secret,
                             token=args.token, open_timeout=args.connect_timeout, ssl=context)
    # The console's own files (its log, the theme, screenshots): the state folder when the
    # runtime is this folder's, else a folder of this user's.
    local = running_address(state_dir)
    own = state_dir if local is not None and local.uri == uri else console_dir()

    async def attached() -> int:
        try:
            await mirror.start()
        except HubRefused as exc:
            await mirror.stop()
            return _cannot(uri, f"the runtime refused this console: {exc.reason}")
        except HubConnectionError as exc:
            await mirror.stop()
            return _cannot(uri, exc.message)
        return await run_attached(mirror, state_dir=own, how=how, bell=not args.no_bell)

    try:
        return asyncio.run(attached())
    except KeyboardInterrupt:
        return 0


def console_dir() -> Path:
    """Where an attached console keeps its own files on this machine."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "marrow-tui"


def _cannot(uri: str, why: str) -> int:
    print(f"{PROG}: cannot attach to {uri}: {why}", file=sys.stderr)
    return EXIT_UNREACHABLE
