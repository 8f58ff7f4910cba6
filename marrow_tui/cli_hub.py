"""Operator and script subcommands that talk to a running hub over WebSocket.

Why a separate module: ``cli.py`` only parses and dispatches; the hub verbs
(who, state, claim, release, handoff, send, board ...) are one coherent group
that only needs :mod:`marrow_tui.hub.client`, so they live here and are added
with ``cli_hub.register(subparsers)``. Nothing here imports textual or rich.

Every subcommand opens one short session under ``--name``, sends one request
and prints the reply: aligned plain text for people, or the hub's reply frame
as one JSON line on stdout with ``--json`` for scripts.

Exit codes (also in docs/cli.md):

* ``0``: the hub accepted the request.
* ``1``: the hub refused it (a scope conflict, a stale epoch, a cycle on the
  board ...). The hub's sentence and its reason code go to stderr; with
  ``--json`` the refusal frame is also printed on stdout.
* ``2``: bad usage or input, found before anything was sent (argparse's own code).
* ``3``: no usable session: the hub cannot be reached, refused the connection,
  the name or the token, or did not answer within ``--timeout``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from marrow_tui.core.text import printable
from marrow_tui.hub.client import (
    BOARD_STATUSES,
    DEFAULT_URI,
    PROGRESS_KINDS,
    Frame,
    HubClient,
    HubConnectionError,
    Refused,
    run_request,
)

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

PROG: Final = "marrow-tui"
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_NOTES: Final = 10

Action = Callable[[HubClient, argparse.Namespace], Awaitable[Frame]]
Render = Callable[[Frame, argparse.Namespace], str]


# --------------------------------------------------------------------------- defaults


def default_uri() -> str:
    """``MARROW_HUB_URI``, else the hub's default loopback address."""
    return os.environ.get("MARROW_HUB_URI") or DEFAULT_URI


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
    from .hub.secrets import read_operator_token

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


def _positive_float(text: str) -> float:
    """argparse type: a finite number above zero (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _add_common(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
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
    group.add_argument("--timeout", type=_positive_float, default=default(DEFAULT_TIMEOUT),
                       help="seconds to wait for the connection and for the reply (default 10)")


def _depends(values: Sequence[str] | None) -> list[str]:
    """``--depends-on A,B --depends-on C`` → ``[A, B, C]`` (blanks and repeats dropped)."""
    seen: list[str] = []
    for value in values or ():
        for raw in value.split(","):
            item = raw.strip()
            if item and item not in seen:
                seen.append(item)
    return seen


# --------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the hub subcommands; each parser sets ``func(args) -> exit code``."""
    _register_who(subparsers)
    _register_state(subparsers)
    _register_claim(subparsers)
    _register_release(subparsers)
    _register_handoff(subparsers)
    _register_send(subparsers)
    _register_board(subparsers)


def _command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    action: Action,
    render: Render,
    suppress: bool = False,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    _add_common(parser, suppress)
    parser.set_defaults(func=lambda args: run(args, action, render))
    return parser


def _register_who(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(sub, "who", "list the agents online on the hub", _do_who, render_who)


def _register_state(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(sub, "state", "list the live claims (leases) on the hub", _do_state, render_state)


def _register_claim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(sub, "claim", "lease a task over a set of paths", _do_claim, render_claim)
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("paths", metavar="PATH", nargs="*",
                        help="paths the work touches (none: the whole worktree)")
    parser.add_argument("--worktree", default="", help="worktree label (default: '')")
    parser.add_argument("--ttl", type=_positive_float, default=None, metavar="SECONDS",
                        help="lease length (hub default 3600, clamped to 30 s .. 30 days)")
    parser.add_argument("--note", default="", help="what the work is")
    parser.add_argument("--idem-key", default=None,
                        help="idempotency key: a retry with the same key is applied once")


def _register_release(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(sub, "release", "drop a claim you hold", _do_release, render_release)
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("--epoch", type=int, default=None,
                        help="fencing epoch from the grant; refused if stale")
    parser.add_argument("--force", action="store_true",
                        help="release another agent's lease (operators only)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="with --force: leave the lease's checkpoint for the next claimant")


def _register_handoff(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(sub, "handoff", "move a claim you hold to an online agent",
                      _do_handoff, render_handoff)
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("to_agent", metavar="TO_AGENT")
    parser.add_argument("--note", default="", help="message for the recipient")
    parser.add_argument("--epoch", type=int, default=None,
                        help="fencing epoch from the grant; refused if stale")


def _register_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(sub, "send", "post a chat message", _do_send, render_send)
    parser.add_argument("text", metavar="TEXT")
    parser.add_argument("--to", dest="target", default="all",
                        help="recipient: a name, a comma list, a glob or a project (default all)")


def _register_board(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    board = _command(sub, "board", "print the shared blackboard, or change it",
                     _do_board, render_board)
    board.add_argument("--notes", type=int, default=DEFAULT_NOTES, metavar="N",
                       help="how many recent progress notes to print (default 10)")
    nested = board.add_subparsers(dest="board_command", metavar="{declare,update,progress}",
                                  required=False)

    declare = _command(nested, "declare", "add or replace a task on the board",
                       _do_declare, render_declare, suppress=True)
    declare.add_argument("task_id", metavar="TASK_ID")
    declare.add_argument("title", metavar="TITLE")
    declare.add_argument("--description", default="")
    declare.add_argument("--depends-on", action="append", metavar="A,B",
                         help="prerequisite task ids (comma list, or repeat the option)")
    declare.add_argument("--suggested-owner", default="")
    declare.add_argument("--project", default="")
    declare.add_argument("--expected-version", type=int, default=None,
                         help="refuse unless the board still has this version (0: new task)")

    update = _command(nested, "update", "change a board task's status or suggested owner",
                      _do_update, render_update, suppress=True)
    update.add_argument("task_id", metavar="TASK_ID")
    update.add_argument("--status", required=True, choices=BOARD_STATUSES)
    update.add_argument("--suggested-owner", default=None)
    update.add_argument("--expected-version", type=int, default=None,
                        help="refuse unless the board still has this version")

    progress = _command(nested, "progress", "append a progress note to a board task",
                        _do_progress, render_progress, suppress=True)
    progress.add_argument("task_id", metavar="TASK_ID")
    progress.add_argument("text", metavar="TEXT")
    progress.add_argument("--kind", default="note", choices=PROGRESS_KINDS)


# --------------------------------------------------------------------------- running


def run(args: argparse.Namespace, action: Action, render: Render,
        stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Open a session, run one request, print the outcome, return the exit code.

    Every error a user can cause ends here as one sentence on stderr and a
    documented exit code; only programming errors escape as tracebacks.
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        _check_input(args)
        context = _ssl_context(args.cafile)
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
    # JSON is escaped by json.dumps (ASCII only: controls and lone surrogates as \uXXXX);
    # text for people goes through `printable`, whatever the hub (or an old log) sent.
    print(json.dumps(frame) if args.json else printable(render(frame, args), lines=True),
          file=out)
    return EXIT_OK


class UsageError(Exception):
    """Bad input found before connecting; exit code 2."""


def _check_input(args: argparse.Namespace) -> None:
    """Refuse a malformed URI or an empty name before opening any socket."""
    try:
        parse_uri(args.uri)
    except (InvalidURI, ValueError) as exc:
        raise UsageError(
            f"--uri {args.uri!r} is not a hub address like ws://127.0.0.1:8876 ({exc})"
        ) from None
    if not args.name.strip():
        raise UsageError("--name must not be empty (or set MARROW_AGENT)")


def _ssl_context(cafile: str | None) -> ssl.SSLContext | None:
    """A verifying context for a private CA; None means the system's trust store."""
    if not cafile:
        return None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the CA file {cafile!r}: {exc}") from None


# --------------------------------------------------------------------------- actions


async def _do_who(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.who()


async def _do_state(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.state()


async def _do_claim(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.claim(args.task_id, args.paths, worktree=args.worktree,
                           ttl_seconds=args.ttl, note=args.note, idem_key=args.idem_key)


async def _do_release(hub: HubClient, args: argparse.Namespace) -> Frame:
    if args.force:
        return await hub.force_release(args.task_id, keep_checkpoint=args.keep_checkpoint)
    if not hub.operator_token:  # the hub itself refuses another agent's lease
        return await hub.release(args.task_id, epoch=args.epoch)
    # An operator's session may end anyone's lease: without --force, only our own.
    state = await hub.state()
    claims = state.get("snapshot", {}).get("active_claims") or []
    owner = next((c.get("owner") for c in claims if c.get("task_id") == args.task_id), None)
    if owner is not None and owner != hub.name:
        raise Refused({"type": "release_denied", "task_id": args.task_id,
                       "reason_code": "NOT_OWNER",
                       "payload": f"Task '{args.task_id}' is held by {owner}, not "
                                  f"{hub.name}; --force releases another agent's lease "
                                  "(operators only)."})
    return await hub.release(args.task_id, epoch=args.epoch)


async def _do_handoff(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.handoff(args.task_id, args.to_agent, note=args.note, epoch=args.epoch)


async def _do_send(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.send(args.text, target=args.target)


async def _do_board(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.board()


async def _do_declare(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.declare(
        args.task_id, args.title, description=args.description,
        depends_on=_depends(args.depends_on), suggested_owner=args.suggested_owner,
        project=args.project, expected_version=args.expected_version,
    )


async def _do_update(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.board_update(args.task_id, status=args.status,
                                  suggested_owner=args.suggested_owner,
                                  expected_version=args.expected_version)


async def _do_progress(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.progress(args.task_id, args.text, kind=args.kind)


# --------------------------------------------------------------------------- rendering


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded.

    Each cell is one line, made safe to print (a line break or ESC in a cell is escaped)."""
    cells_of = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells_of) for i in range(len(headers))]
    lines = []
    for row in cells_of:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """Compact, human span: 45s, 12m, 1h05m, 3d04h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _clock(stamp: Any) -> str:
    """Local wall-clock time of a hub timestamp, or '-' if absent."""
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def _expires(frame: Frame) -> str:
    """Time left on a lease, measured against the hub's own clock when it sent it."""
    expires = frame.get("lease_expires_at")
    if not isinstance(expires, (int, float)):
        return "-"
    now = frame.get("_now") or time.time()
    return duration(expires - now)


def _joined(values: Any, empty: str = "-") -> str:
    if isinstance(values, (list, tuple)) and values:
        return ", ".join(str(v) for v in values)
    return empty


def render_who(frame: Frame, args: argparse.Namespace) -> str:
    agents = [str(a) for a in frame.get("online_agents") or []]
    roles = frame.get("agent_roles") or {}
    version = frame.get("hub_version")
    head = f"{len(agents)} agent{'s' if len(agents) != 1 else ''} online"
    about = [f"hub {frame['hub_id']}"] if frame.get("hub_id") else []
    if version:
        about.append(f"version {version}" if str(version)[:1].isdigit() else str(version))
    if about:
        head += f" ({', '.join(about)})"
    if not agents:
        return head
    rows = [[name, _joined(roles.get(name), "")] for name in agents]
    return head + "\n" + _indent(table(["AGENT", "ROLES"], rows))


def render_state(frame: Frame, args: argparse.Namespace) -> str:
    snapshot = frame.get("snapshot") or {}
    claims = snapshot.get("active_claims") or []
    if not claims:
        return "no active claims"
    now = snapshot.get("generated_at") or frame.get("timestamp")
    rows = []
    for claim in sorted(claims, key=lambda c: str(c.get("task_id", ""))):
        owner = str(claim.get("owner", "?"))
        if claim.get("holder_online") is False:
            owner += " (offline)"
        rows.append([
            str(claim.get("task_id", "?")), owner, str(claim.get("status", "")),
            str(claim.get("epoch", "")), _expires({**claim, "_now": now}),
            str(claim.get("worktree") or "''"), _joined(claim.get("paths"), "(whole worktree)"),
            _one_line(str(claim.get("note") or ""), 40),
        ])
    headers = ["TASK", "OWNER", "STATUS", "EPOCH", "EXPIRES", "WORKTREE", "PATHS", "NOTE"]
    return table(headers, rows)


def render_claim(frame: Frame, args: argparse.Namespace) -> str:
    return (
        f"claimed {frame.get('task_id')} as {frame.get('owner')}: epoch {frame.get('epoch')}, "
        f"expires in {_expires({**frame, '_now': frame.get('timestamp')})}, "
        f"worktree {frame.get('worktree') or chr(39) * 2}, "
        f"paths {_joined(frame.get('paths'), '(whole worktree)')}"
    )


def render_release(frame: Frame, args: argparse.Namespace) -> str:
    return f"released {frame.get('task_id')} (held by {frame.get('owner')})"


def render_handoff(frame: Frame, args: argparse.Namespace) -> str:
    return (f"handed {frame.get('task_id')} from {frame.get('previous_owner')} to "
            f"{frame.get('owner')}: new epoch {frame.get('epoch')}, status {frame.get('status')}")


def render_send(frame: Frame, args: argparse.Namespace) -> str:
    msg = frame.get("msg_id")
    suffix = f" (message {msg})" if msg is not None else ""
    return f"sent to {frame.get('target', 'all')}{suffix}"


def render_board(frame: Frame, args: argparse.Namespace) -> str:
    board = frame.get("board") or {}
    tasks = board.get("tasks") or []
    ready = set(board.get("ready") or [])
    parts: list[str] = []
    if not tasks:
        parts.append("the board is empty")
    else:
        rows = [_board_row(task, ready) for task in tasks]
        headers = ["TASK", "STATUS", "READY", "DEPENDS ON", "SUGGESTED", "VER", "TITLE"]
        parts.append(table(headers, rows))
        total = board.get("total_tasks")
        if board.get("truncated") and total:
            parts.append(f"(showing {len(tasks)} of {total} tasks)")
    notes = _recent_notes(board.get("progress") or [], getattr(args, "notes", DEFAULT_NOTES))
    if notes:
        parts.append("\nrecent progress:\n" + _indent(notes))
    return "\n".join(parts)


def _board_row(task: Frame, ready: set[Any]) -> list[str]:
    task_id = task.get("task_id", "?")
    return [
        str(task_id), str(task.get("status", "")), "ready" if task_id in ready else "",
        _joined(task.get("depends_on")), str(task.get("suggested_owner") or "-"),
        str(task.get("version", "")), str(task.get("title", "")),
    ]


def _recent_notes(progress: Sequence[Frame], count: int) -> str:
    """The newest ``count`` notes, oldest first, one aligned line each."""
    if count <= 0:
        return ""
    notes = sorted(progress, key=lambda n: n.get("posted_at") or 0)[-count:]
    rows = [[_clock(n.get("posted_at")), str(n.get("task_id", "")), str(n.get("author", "")),
             str(n.get("kind", "")), _one_line(str(n.get("text", "")))] for n in notes]
    return table(["TIME", "TASK", "AUTHOR", "KIND", "TEXT"], rows) if rows else ""


def render_declare(frame: Frame, args: argparse.Namespace) -> str:
    task = frame.get("task") or {}
    deps = _joined(task.get("depends_on"), "")
    return (f"declared {task.get('task_id')} (v{task.get('version')}, {task.get('status')})"
            + (f", depends on {deps}" if deps else ""))


def render_update(frame: Frame, args: argparse.Namespace) -> str:
    task = frame.get("task") or {}
    owner = task.get("suggested_owner")
    return (f"{task.get('task_id')} is now {task.get('status')} (v{task.get('version')})"
            + (f", suggested owner {owner}" if owner else ""))


def render_progress(frame: Frame, args: argparse.Namespace) -> str:
    note = frame.get("note") or {}
    text = _one_line(str(note.get("text", "")))
    return f"noted on {note.get('task_id')} [{note.get('kind')}]: {text}"


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _one_line(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
