"""What the issue orchestrator says about the tracker: one view per issue, and the workflow's
status. Pure data, rebuilt by the orchestrator when it starts (the files on disk are the truth;
the runs themselves are sessions, see sessions.py).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .steering import Request

#: finished issues remembered for the console (the log keeps every `issue_done`)
DONE_KEPT = 200


#: the prefix of a refused tracker file's row id (never an issue id: those have no `:`)
REFUSED = "refused:"


def refused_id(path: str) -> str:
    """A refused file's row id: stable, and safe whatever bytes its name holds."""
    return REFUSED + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def asks_for(request: Request, identifier: str) -> bool:
    """Whether a steering request comes from an issue's runs (its shell commands ask as the
    issue, its MCP server as `<issue>/mcp`, and both name the issue)."""
    return (request.asker == identifier or request.asker.startswith(identifier + "/")
            or request.task_id == identifier)


@dataclass(slots=True)
class IssueView:
    identifier: str
    title: str = ""
    #: the tracker state: the folder the file is in
    state: str = ""
    #: what the orchestrator does with it: idle, running, retrying, parked, blocked, done,
    #: waiting (on a human: an open steering request), inactive
    status: str = "idle"
    priority: int | None = None
    attempt: int = 0
    #: when a retry is due (epoch seconds)
    next_at: float | None = None
    reason: str = ""
    session: str = ""
    path: str = ""
    #: +N/-M of its worktree against the base: {"files", "added", "removed"}; None when it
    #: has no worktree (or it was not measured yet)
    diff: dict[str, int] | None = None


@dataclass(slots=True)
class IssueBook:
    issues: dict[str, IssueView] = field(default_factory=dict)
    #: path, ok, errors, warnings, root, dispatching
    workflow: dict[str, Any] = field(default_factory=dict)
    done: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DONE_KEPT))
    #: issue id -> why the operator stopped it (kept in the log: it outlives a restart)
    parked: dict[str, str] = field(default_factory=dict)
    #: the tracker files the last scan could not read as issues: {path, reason}, by path
    refused: list[dict[str, str]] = field(default_factory=list)
    #: identifier -> {identifier, path, lost}: a workspace kept because removing it would
    #: lose git work; it goes when the operator confirms (`issue_remove_workspace`)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)

    def issue_asking(self, request: Request) -> IssueView | None:
        """The tracked issue whose runs asked `request`, when there is one (cancelling it may
        park the issue, so its agent is not run again only to ask again)."""
        for view in self.issues.values():
            if asks_for(request, view.identifier):
                return view
        return None

    def apply(self, event: Event) -> None:
        d = event.data
        if event.kind == "issue_status":
            view = self.issues.get(d["identifier"]) or IssueView(d["identifier"])
            for key in ("title", "state", "status", "priority", "attempt", "next_at", "reason",
                        "session", "path"):
                if key in d:
                    setattr(view, key, d[key])
            self.issues[view.identifier] = view
        elif event.kind == "review_stat":
            view = self.issues.get(d["identifier"])
            if view is not None:  # null counts: it has no worktree (any more)
                view.diff = None if d.get("files") is None else {
                    key: int(d[key]) for key in ("files", "added", "removed")}
        elif event.kind == "issue_removed":
            self.issues.pop(d["identifier"], None)
        elif event.kind == "workflow_status":
            self.workflow = dict(d)
        elif event.kind == "issue_done":
            self.done.append(dict(d))
        elif event.kind == "tracker_refused":
            self.refused = [dict(f) for f in d.get("files", [])]
        elif event.kind == "workspace_kept":
            self.kept[d["identifier"]] = dict(d)
        elif event.kind == "workspace_removed":
            self.kept.pop(d["identifier"], None)
        elif event.kind == "issue_park":
            if d.get("reason"):
                self.parked[d["id"]] = d["reason"]
            else:
                self.parked.pop(d["id"], None)
