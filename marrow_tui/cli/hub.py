"""The hub verbs from a shell: who, state, claim, release, handoff, send, board.

Each opens one short session under ``--name``, sends one request and prints the reply: aligned
plain text for people, or with ``--json`` the command's fields (``{"ok": true, ...}``, picked
from the reply frame here) or ``{"ok": false, "code", "reason"}``. Exit codes (also in
docs/cli.md): 0 accepted; 1 refused (the hub's sentence and reason code on stderr); 2 bad
usage found before sending; 3 no usable session.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import SubParsers, duration, hub_command, run, usage_error
from marrow_tui.cli.output import pick
from marrow_tui.core.kinds import PROGRESS_KINDS, TASK_STATUSES
from marrow_tui.hub.render import (
    DEFAULT_NOTES,
    render_board,
    render_claim,
    render_declare,
    render_handoff,
    render_progress,
    render_release,
    render_send,
    render_state,
    render_update,
    render_who,
)

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubClient


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


def register(subparsers: SubParsers) -> None:
    """Add the hub subcommands; each parser sets ``func(args) -> exit code``."""
    _register_who(subparsers)
    _register_state(subparsers)
    _register_claim(subparsers)
    _register_release(subparsers)
    _register_handoff(subparsers)
    _register_send(subparsers)
    _register_board(subparsers)


def _parser(sub: SubParsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    return parser


def _register_who(sub: SubParsers) -> None:
    hub_command(_parser(sub, "who", "list the agents online on the hub"), _do_who, render_who,
                who_fields)


def _register_state(sub: SubParsers) -> None:
    hub_command(_parser(sub, "state", "list the live claims (leases) on the hub"),
                _do_state, render_state, state_fields)


def _register_claim(sub: SubParsers) -> None:
    parser = hub_command(_parser(sub, "claim", "lease a task over a set of paths"),
                         _do_claim, render_claim, claim_fields)
    parser.add_argument("task_id", metavar="TASK_ID")
    # a default makes the paths optional to argparse too (it would call them required)
    parser.add_argument("paths", metavar="PATH", nargs="*", default=[],
                        help="paths the work touches (none: the whole worktree)")
    parser.add_argument("--worktree", default="", help="worktree label (default: '')")
    parser.add_argument("--ttl", type=duration, default=None, metavar="DURATION",
                        help="lease length: 90s, 30m, 2h (hub default 1h, clamped to 30s .. "
                             "30d)")
    parser.add_argument("--note", default="", help="what the work is")
    parser.add_argument("--idem-key", default=None,
                        help="idempotency key: a retry with the same key is applied once")


def _register_release(sub: SubParsers) -> None:
    parser = hub_command(_parser(sub, "release", "drop a claim you hold"),
                         _do_release, render_release, release_fields)
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("--epoch", type=int, default=None,
                        help="fencing epoch from the grant; refused if stale")
    parser.add_argument("--force", action="store_true",
                        help="release another agent's lease (operators only)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="with --force: leave the lease's checkpoint for the next claimant")


def _register_handoff(sub: SubParsers) -> None:
    parser = hub_command(_parser(sub, "handoff", "move a claim you hold to an online agent"),
                         _do_handoff, render_handoff, handoff_fields)
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("to_agent", metavar="TO_AGENT")
    parser.add_argument("--note", default="", help="message for the recipient")
    parser.add_argument("--epoch", type=int, default=None,
                        help="fencing epoch from the grant; refused if stale")


def _register_send(sub: SubParsers) -> None:
    parser = hub_command(_parser(sub, "send", "post a chat message"), _do_send, render_send,
                         send_fields)
    parser.add_argument("text", metavar="TEXT")
    parser.add_argument("--to", dest="target", default="all",
                        help="recipient: a name, a comma list, a glob or a project (default all)")
    parser.set_defaults(func=_cmd_send)


def _cmd_send(args: argparse.Namespace) -> int:
    if not args.text.strip():
        return usage_error(args, "the message is empty; nothing was sent")
    return run(args, _do_send, render_send, send_fields)


def _register_board(sub: SubParsers) -> None:
    board = hub_command(_parser(sub, "board", "print the shared blackboard, or change it"),
                        _do_board, render_board, board_fields)
    board.add_argument("--notes", type=int, default=DEFAULT_NOTES, metavar="N",
                       help="how many recent progress notes to print (default 10)")
    nested = board.add_subparsers(dest="board_command", metavar="{declare,update,progress}",
                                  required=False)

    declare = hub_command(_parser(nested, "declare", "add or replace a task on the board"),
                          _do_declare, render_declare, task_fields, suppress=True)
    declare.add_argument("task_id", metavar="TASK_ID")
    declare.add_argument("title", metavar="TITLE")
    declare.add_argument("--description", default="")
    declare.add_argument("--depends-on", action="append", metavar="A,B",
                         help="prerequisite task ids (comma list, or repeat the option)")
    declare.add_argument("--suggested-owner", default="")
    declare.add_argument("--project", default="")
    declare.add_argument("--expected-version", type=int, default=None,
                         help="refuse unless the board still has this version (0: new task)")

    update = hub_command(
        _parser(nested, "update", "change a board task's status or suggested owner"),
        _do_update, render_update, task_fields, suppress=True)
    update.add_argument("task_id", metavar="TASK_ID")
    update.add_argument("--status", required=True, choices=TASK_STATUSES)
    update.add_argument("--suggested-owner", default=None)
    update.add_argument("--expected-version", type=int, default=None,
                        help="refuse unless the board still has this version")

    progress = hub_command(_parser(nested, "progress", "append a progress note to a board task"),
                           _do_progress, render_progress, progress_fields, suppress=True)
    progress.add_argument("task_id", metavar="TASK_ID")
    progress.add_argument("text", metavar="TEXT")
    progress.add_argument("--kind", default="note", choices=PROGRESS_KINDS)


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
        from marrow_tui.hub.client import Refused

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


# --------------------------------------------------------------------------- --json fields
#
# Each command's fields for {"ok": true, ...}: listed in docs/cli.md, picked by name so the
# shape stays whatever the hub adds to its frames.

#: a lease in `claim --json`; `state --json` adds when it was claimed and whether its holder
#: is online
CLAIM_KEYS = ("task_id", "owner", "status", "epoch", "worktree", "paths", "note", "checkpoint",
              "lease_expires_at")
LEASE_KEYS = (*CLAIM_KEYS, "claimed_at", "holder_online")
TASK_KEYS = ("task_id", "title", "description", "depends_on", "status", "suggested_owner",
             "project", "version", "created_by", "created_at", "updated_at")
NOTE_KEYS = ("task_id", "author", "kind", "text", "posted_at")


def who_fields(frame: Frame) -> dict[str, Any]:
    roles = frame.get("agent_roles") or {}
    return {**pick(frame, "hub_id", "hub_version"),
            "agents": [{"name": name, "roles": list(roles.get(name) or [])}
                       for name in frame.get("online_agents") or []]}


def state_fields(frame: Frame) -> dict[str, Any]:
    claims = (frame.get("snapshot") or {}).get("active_claims") or []
    return {"claims": [pick(claim, *LEASE_KEYS) for claim in claims]}


def claim_fields(frame: Frame) -> dict[str, Any]:
    return pick(frame, *CLAIM_KEYS)


def release_fields(frame: Frame) -> dict[str, Any]:
    return pick(frame, "task_id", "owner", "epoch")


def handoff_fields(frame: Frame) -> dict[str, Any]:
    return pick(frame, "task_id", "owner", "previous_owner", "epoch", "status")


def send_fields(frame: Frame) -> dict[str, Any]:
    return {"to": frame.get("target"), "msg_id": frame.get("msg_id")}


def board_fields(frame: Frame) -> dict[str, Any]:
    board = frame.get("board") or {}
    tasks = board.get("tasks") or []
    return {"tasks": [pick(task, *TASK_KEYS) for task in tasks],
            "ready": list(board.get("ready") or []),
            "progress": [pick(note, *NOTE_KEYS) for note in board.get("progress") or []],
            "total_tasks": board.get("total_tasks", len(tasks)),
            "truncated": bool(board.get("truncated"))}


def task_fields(frame: Frame) -> dict[str, Any]:
    return {"task": pick(frame.get("task") or {}, *TASK_KEYS)}


def progress_fields(frame: Frame) -> dict[str, Any]:
    return {"note": pick(frame.get("note") or {}, *NOTE_KEYS)}
