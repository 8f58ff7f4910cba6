"""Reviewing an issue's work, or an agent's (`workspace_git` in marrow.toml), from a shell:
`diff`, `accept`, `request-changes`, `discard`.

Each sends one `review_*` verb to the running marrow-tui (docs/protocol.md §6.6) and prints
its answer. `accept`, `request-changes` and `discard` present the operator token (like
`issues --remove-workspace`); `diff` does not need it. `discard` without `--yes` is refused
when the worktree holds work not merged into the base: the refusal lists it (`--json`:
`commits` and `files`), and the same command with `--yes` is the confirmation.
Exit codes are the hub subcommands' (see cli/hub.py).
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import SubParsers, add_hub_options, hub_command, run, usage_error
from marrow_tui.cli.output import pick

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubClient, Refused

#: how long a review verb may take to answer (git merges, diffs of big worktrees)
REVIEW_TIMEOUT = 300.0
#: what ID names
WHO = "the issue, or an agent of marrow.toml with workspace_git"
_REF = re.compile(r"(?P<path>.+?)(?::(?P<line>[0-9]+))?")


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "diff", help="show what an issue's (or an agent's) worktree changed against the base",
        description="The issue's worktree (committed and uncommitted work) as a unified diff "
                    "against its merge base with the base branch, or against what you last "
                    "reviewed (--against review: the point of your last request-changes).")
    p.add_argument("identifier", metavar="ID", help=WHO)
    p.add_argument("--stat", action="store_true",
                   help="files changed with +N/-M instead of the diff")
    p.add_argument("--against", choices=("base", "review"), default="base",
                   help="base (default) or review")
    p.set_defaults(func=cmd_diff)
    add_hub_options(p)

    p = sub.add_parser(
        "accept", help="merge an issue's work into its base branch; the issue moves to Done",
        description="Merge the issue's branch into the base (workspace.git.merge: a --no-ff "
                    "merge, a squash, or the after_run hook); work left uncommitted is "
                    "committed first. A conflict merges nothing and names the files. An "
                    "agent's worktree stays, and the agent goes on in it.")
    p.add_argument("identifier", metavar="ID", help=WHO)
    hub_command(p, _do_accept, _payload,
                lambda f: {"issue": f.get("identifier"), **pick(f, "how", "commit")})

    p = sub.add_parser(
        "request-changes", help="send an issue's agent back to work with your review",
        description="TEXT (and the --ref places) becomes the next prompt of the issue's live "
                    "ACP session, else of its next run; the issue goes back to In Progress. "
                    "For an agent: its live ACP run's next prompt, else a task in its queue, "
                    "and it is woken.")
    p.add_argument("identifier", metavar="ID", help=WHO)
    p.add_argument("text", metavar="TEXT", help="what to change")
    p.add_argument("--ref", action="append", default=[], metavar="PATH:LINE",
                   help="a place in the diff (repeatable)")
    p.set_defaults(func=cmd_request_changes)
    add_hub_options(p)

    p = sub.add_parser(
        "discard", help="throw an issue's work away: remove its worktree and branch",
        description="Remove the issue's worktree and its branch. Work not merged into the base "
                    "(commits, uncommitted files) is listed and kept unless --yes.")
    p.add_argument("identifier", metavar="ID", help=WHO)
    p.add_argument("--yes", action="store_true",
                   help="you confirm that the listed work may be lost")
    p.set_defaults(func=cmd_discard)
    add_hub_options(p)


# ---- diff -----------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    return run(args, _do_diff, render_diff, lambda frame: diff_fields(frame, args.stat))


async def _do_diff(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.review_diff(args.identifier, args.against,
                                 timeout=max(args.connect_timeout, REVIEW_TIMEOUT))


def _files(frame: Frame) -> list[dict[str, Any]]:
    from marrow_tui.core.diff import parse

    return [{"path": f.path, "old_path": f.old_path, "status": f.status, "binary": f.binary,
             "added": f.added, "removed": f.removed} for f in parse(str(frame.get("diff", "")))]


def diff_fields(frame: Frame, stat_only: bool) -> dict[str, Any]:
    """The reply's fields; with --stat the files (path, +N/-M) instead of the diff text."""
    fields = {"issue": frame.get("identifier"),
              **pick(frame, "base", "base_commit", "head_commit", "against", "stat",
                     "truncated", "uncommitted")}
    return fields | ({"files": _files(frame)} if stat_only else {"diff": frame.get("diff", "")})


def render_diff(frame: Frame, args: argparse.Namespace) -> str:
    if not args.stat:
        text = str(frame.get("diff") or "")
        return text.rstrip("\n") if text else f"{frame.get('identifier')}: no changes"
    stat = frame.get("stat") or {}
    lines = [f"{f['path']}  +{f['added']} -{f['removed']}" + ("  (binary)" if f["binary"]
                                                               else "")
             for f in _files(frame)]
    lines.append(f"{stat.get('files', 0)} file(s), +{stat.get('added', 0)} "
                 f"-{stat.get('removed', 0)} against "
                 f"{frame.get('base') if frame.get('against') == 'base' else 'the last review'}"
                 + (" (with uncommitted work)" if frame.get("uncommitted") else "")
                 + (" (diff truncated)" if frame.get("truncated") else ""))
    return "\n".join(lines)


# ---- accept -----------------------------------------------------------------------------------


async def _do_accept(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.review_accept(args.identifier,
                                   timeout=max(args.connect_timeout, REVIEW_TIMEOUT))


def _payload(frame: Frame, args: argparse.Namespace) -> str:
    return str(frame.get("payload", ""))


# ---- request-changes --------------------------------------------------------------------------


def cmd_request_changes(args: argparse.Namespace) -> int:
    if not args.text.strip():
        return usage_error(args, "request-changes: TEXT is empty")
    refs = []
    for given in args.ref:
        found = _REF.fullmatch(given.strip())
        if found is None or not found["path"].strip():
            return usage_error(args, f"--ref {given!r} is not PATH or PATH:LINE")
        line = int(found["line"]) if found["line"] else None
        if line == 0:
            return usage_error(args, f"--ref {given!r}: lines count from 1")
        refs.append({"path": found["path"].strip(), "line": line})
    args.refs = refs
    return run(args, _do_request, _payload, lambda f: {"issue": f.get("identifier")})


async def _do_request(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.review_request_changes(args.identifier, args.text, args.refs)


# ---- discard ------------------------------------------------------------------------------------


def cmd_discard(args: argparse.Namespace) -> int:
    return run(args, _do_discard, _payload, lambda f: {"issue": f.get("identifier")},
               refused=_discard_refused)


async def _do_discard(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.review_discard(args.identifier, confirm=args.yes,
                                    timeout=max(args.connect_timeout, REVIEW_TIMEOUT))


def _discard_refused(exc: Refused) -> tuple[str, dict[str, Any]]:
    """Unmerged work: the list, and how to confirm; other refusals as every command says."""
    if exc.code != "unmerged_work":
        return f"refused: {exc.text} [{exc.code or exc.type}]", {}
    commits = list(exc.frame.get("commits") or [])
    files = list(exc.frame.get("files") or [])
    return (f"refused: {exc.text} Run it again with --yes to discard it. [{exc.code}]",
            {"commits": commits, "files": files})
