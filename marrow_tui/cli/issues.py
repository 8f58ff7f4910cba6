"""The issue orchestrator from a shell: `done` (an agent finishes its issue) and `issues`.

`done` is smol-symphony's `mark_done` for agents that run commands rather than MCP tools; it
acts as the run's agent and names the issue from `MARROW_ISSUE` unless `--issue` says
otherwise. `issues` lists what the orchestrator tracks; `issues --remove-workspace ID` is the
operator's confirmation (it presents the operator token) that a kept workspace may go.
Exit codes are the hub subcommands' (see cli/hub.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import SubParsers, add_hub_options, run, usage_error
from marrow_tui.cli.output import pick
from marrow_tui.core.text import ago, masked, table

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubClient

#: the order `issues` lists them in (the console's Issues pane sorts the same way)
_RANK = {"running": 0, "waiting": 0, "retrying": 1, "idle": 2, "parked": 3, "blocked": 4,
         "inactive": 5, "done": 6}


def register(sub: SubParsers) -> None:
    """Add `done` and `issues`; each parser sets ``func(args) -> exit code``."""
    p = sub.add_parser(
        "done", help="mark the issue you work on done (the orchestrator's mark_done)",
        description="Tell the issue orchestrator the work is complete: the issue moves to the "
                    "workflow's terminal state (Done) and no further turn is dispatched. Run "
                    "it from the agent's run: $MARROW_AGENT and $MARROW_ISSUE say who and "
                    "which issue.")
    p.add_argument("--title", required=True,
                   help="one line, imperative, at most ~72 characters (the commit's title)")
    p.add_argument("--summary", required=True,
                   help="what was done, for the reviewer ('-' reads it from stdin)")
    p.add_argument("--issue", default=os.environ.get("MARROW_ISSUE") or None, metavar="ID",
                   help="the issue (env MARROW_ISSUE; default: the run of --name)")
    p.add_argument("--session", default=os.environ.get("MARROW_SESSION") or None,
                   help=argparse.SUPPRESS)
    add_hub_options(p)
    p.set_defaults(func=cmd_done)

    p = sub.add_parser(
        "issues", help="list the orchestrator's issues and the workflow's status",
        description="List the issues the orchestrator tracks (running and waiting first, then "
                    "retries, then the rest by priority) and the status of its WORKFLOW.md.")
    p.add_argument("--remove-workspace", metavar="ID", default=None,
                   help="remove the workspace kept for issue ID (it had uncommitted or "
                        "unpushed git work): you confirm that work may be lost")
    add_hub_options(p)
    p.set_defaults(func=cmd_issues)


# ---- done ------------------------------------------------------------------------------------


def cmd_done(args: argparse.Namespace) -> int:
    if args.summary == "-":
        args.summary = sys.stdin.read()
    title, summary = args.title.strip(), args.summary.strip()
    problem = ("the title is empty" if not title
               else "the title must be a single line" if "\n" in title or "\r" in title
               else "the summary is empty" if not summary else "")
    if problem:
        return usage_error(args, problem)
    args.title, args.summary = title, summary
    return run(args, _do_done, render_done,
               lambda frame: {"issue": frame.get("identifier"),
                              **pick(frame, "state", "path")})


async def _do_done(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.issue_done(args.title, args.summary, issue=args.issue or "",
                                session=args.session or "")


def render_done(frame: Frame, args: argparse.Namespace) -> str:
    return f"marked {frame.get('identifier')} done (moved to {frame.get('state')})"


# ---- issues ----------------------------------------------------------------------------------


def cmd_issues(args: argparse.Namespace) -> int:
    if args.remove_workspace is not None:
        if not args.remove_workspace.strip():
            return usage_error(args, "--remove-workspace needs an issue id")
        return run(args, _do_remove, render_removing,
                   lambda frame: {"issue": frame.get("identifier"), "path": frame.get("path")})
    return run(args, _do_list, render_issues, issues_fields)


async def _do_remove(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.issue_remove_workspace(args.remove_workspace.strip())


def render_removing(frame: Frame, args: argparse.Namespace) -> str:
    return f"removing the workspace of {frame.get('identifier')}: {frame.get('path')}"


async def _do_list(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.issue_list()


def issues_fields(frame: Frame) -> dict[str, Any]:
    """The issues in the order `issues` prints them; each issue, refused file and kept
    workspace as the hub describes it (docs/orchestrator.md)."""
    return {"workflow": frame.get("workflow") or None,
            "issues": sorted(frame.get("issues") or [], key=_order),
            "refused": list(frame.get("refused") or []),
            "kept": list(frame.get("kept") or [])}


def render_issues(frame: Frame, args: argparse.Namespace) -> str:
    workflow = frame.get("workflow") or {}
    lines = [_workflow_line(workflow)]
    for error in workflow.get("errors") or []:
        lines.append(f"  error: {_diagnostic(error)}")
    for warning in workflow.get("warnings") or []:
        lines.append(f"  warning: {_diagnostic(warning)}")
    issues = sorted(frame.get("issues") or [], key=_order)
    if not issues:
        lines.append("no issues")
        lines += _kept_and_refused(frame)
        return "\n".join(lines)
    now = time.time()
    rows = [[i.get("identifier", ""), i.get("state", ""), _status(i, now),
             str(i.get("attempt") or "-"),
             "-" if i.get("priority") is None else str(i["priority"]),
             " ".join(str(i.get("title", "")).split())[:70]] for i in issues]
    lines.append("")
    lines.append(table(["ID", "STATE", "STATUS", "ATTEMPT", "PRIORITY", "TITLE"],
                               rows))
    lines += _kept_and_refused(frame)
    return "\n".join(lines)


def _kept_and_refused(frame: Frame) -> list[str]:
    """The workspaces kept for their unsaved work, and the tracker files not read as issues."""
    lines: list[str] = []
    kept = frame.get("kept") or []
    if kept:
        lines += ["", "kept workspaces (removing them would lose work; confirm with "
                      "`marrow-tui issues --remove-workspace ID`):"]
        lines += [f"  {k.get('identifier')}  {k.get('path')}: {_line(k.get('lost'))}"
                  for k in kept]
    refused = frame.get("refused") or []
    if refused:
        lines += ["", f"refused tracker files ({len(refused)}, not read as issues):"]
        lines += [f"  {_line(f.get('path'))}: {_line(f.get('reason'))}" for f in refused]
    return lines


def _line(text: Any) -> str:
    """One line with no control characters (a hostile file name must not drive the terminal)."""
    return " ".join(masked(str(text or "")).split())


def _workflow_line(workflow: dict[str, Any]) -> str:
    if not workflow:
        return "workflow: none loaded"
    path = workflow.get("path", "?")
    if not workflow.get("ok", True):
        count = len(workflow.get("errors") or [])
        return f"workflow: {path}: {count} error(s); no new dispatches until it is fixed"
    dispatching = "dispatching" if workflow.get("dispatching", True) else "not dispatching"
    return f"workflow: {path} (tracker {workflow.get('root', '?')}, {dispatching})"


def _diagnostic(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("message") or item)
    return " ".join(str(item).split())


def _order(issue: dict[str, Any]) -> tuple[int, int, int, str]:
    priority = issue.get("priority")
    return (_RANK.get(str(issue.get("status")), len(_RANK)), priority is None,
            priority if isinstance(priority, int) else 0, str(issue.get("identifier", "")))


def _status(issue: dict[str, Any], now: float) -> str:
    status = str(issue.get("status", ""))
    reason = " ".join(str(issue.get("reason") or "").split())
    if status == "retrying" and issue.get("next_at") is not None:
        return f"retrying in {ago(issue['next_at'] - now)}"
    if status in ("parked", "blocked") and reason:
        return reason if reason.startswith(status) else f"{status}: {reason}"
    return status


