"""The hub's replies as text for people: the CLI prints them, the MCP server returns them."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from marrow_tui.core.text import format_duration, indent, one_line, plural, table

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame

#: board notes shown unless asked for more or fewer
DEFAULT_NOTES: Final = 10


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
    return format_duration(expires - now)


def _joined(values: Any, empty: str = "-") -> str:
    if isinstance(values, (list, tuple)) and values:
        return ", ".join(str(v) for v in values)
    return empty


def render_who(frame: Frame, args: argparse.Namespace) -> str:
    agents = [str(a) for a in frame.get("online_agents") or []]
    roles = frame.get("agent_roles") or {}
    version = frame.get("hub_version")
    head = f"{plural(len(agents), 'agent')} online"
    about = [f"hub {frame['hub_id']}"] if frame.get("hub_id") else []
    if version:
        about.append(f"version {version}" if str(version)[:1].isdigit() else str(version))
    if about:
        head += f" ({', '.join(about)})"
    if not agents:
        return head
    rows = [[name, _joined(roles.get(name), "")] for name in agents]
    return head + "\n" + indent(table(["AGENT", "ROLES"], rows))


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
            one_line(str(claim.get("note") or ""), 40),
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
        parts.append("\nrecent progress:\n" + indent(notes))
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
             str(n.get("kind", "")), one_line(str(n.get("text", "")), 100)] for n in notes]
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
    text = one_line(str(note.get("text", "")), 100)
    return f"noted on {note.get('task_id')} [{note.get('kind')}]: {text}"
