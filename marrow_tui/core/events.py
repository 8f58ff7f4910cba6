"""Events: the only way state changes, live or on replay.

Every decision returns events; `State.apply` folds them in. The same events go to the log, so
replaying the log rebuilds exactly the state that was acknowledged. An event's `data` is plain
JSON-ready data and carries the *result* (the whole claim, the whole task), so applying it never
has to decide anything again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .kinds import DURABLE_KINDS, TRANSIENT_KINDS
from .text import one_line


@dataclass(slots=True, frozen=True)
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    #: `data` already serialised, when the producer had to encode it anyway (a chat frame)
    encoded: str | None = field(default=None, compare=False, repr=False)

    @property
    def durable(self) -> bool:
        return self.kind in DURABLE_KINDS

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS


@dataclass(slots=True, frozen=True)
class Refusal:
    """A command that was not carried out: a machine reason and one human sentence."""

    reason: str
    text: str


def describe(event: Event) -> str | None:
    """One line for a person reading the log, or None for bookkeeping events."""
    d = event.data
    kind = event.kind
    if kind == "claim":
        # a run's lease with no paths holds nothing until its edits grow it
        empty = f"(no paths yet: run {d['session']})" if d.get("session") else "(whole worktree)"
        scope = ",".join(d["paths"]) or empty
        where = f"{d['worktree']}:" if d["worktree"] else ""
        return f"claim     {d['task_id']} by {d['owner']} epoch={d['epoch']} scope={where}{scope}"
    if kind == "release":
        by = d.get("by", d["owner"])
        why = f" (by {by})" if by != d["owner"] else ""
        return f"release   {d['task_id']} held by {d['owner']}{why}"
    if kind == "expire":
        kept = ", checkpoint kept" if d.get("checkpoint_retained") else ""
        return f"expire    {d['task_id']} held by {d['owner']}{kept}"
    if kind == "task_update":
        return f"status    {d['task_id']} -> {d['status']} v{d['version']}"
    if kind == "checkpoint":
        return f"checkpt   {d['task_id']} v{d['version']} ({len(d['checkpoint'])} chars)"
    if kind == "extend":
        return f"extend    {d['task_id']} held by {d['owner']} (by {d['by']})"
    if kind == "handoff":
        return f"handoff   {d['task_id']} {d['previous_owner']} -> {d['owner']} epoch={d['epoch']}"
    if kind == "board_task":
        t = d["task"]
        deps = f" after {','.join(t['depends_on'])}" if t["depends_on"] else ""
        return f"board     {t['task_id']} {t['status']} v{t['version']} by {d['by']}{deps}"
    if kind == "progress":
        return f"progress  {d['task_id']} [{d['kind']}] {d['author']}: {one_line(d['text'])}"
    if kind == "chat":
        return (f"chat      #{d['msg_id']} {d['sender']} -> {d['target']}: "
                f"{one_line(str(d['payload']))}")
    if kind == "presence":
        return f"{d['event']:<9} {d['agent']}"
    if kind == "wait":
        return f"wait      {d['waiter']} waits for {d['task_id']} held by {d['holder']}"
    if kind == "session_start":
        tasks = f" with {len(d['tasks'])} task(s)" if d.get("tasks") else ""
        return f"run       {d['id']} started ({one_line(d.get('trigger', 'heartbeat'), 80)}){tasks}"
    if kind == "session_end":
        line = f": {one_line(d['last_line'], 80)}" if d.get("last_line") else ""
        return f"run       {d['id']} {d['state']} ({one_line(d.get('reason', ''), 120)}){line}"
    if kind == "agent_paused":
        return f"{'pause' if d['paused'] else 'resume':<9} {d['agent']} by {d.get('by', '?')}"
    if kind == "wake":
        why = f": {one_line(d['reason'], 80)}" if d.get("reason") else ""
        return f"wake      {d['agent']} by {d['by']}{why}"
    if kind == "claim_grow":
        by = f" by {d['title'] or d['tool_call_id']}" if d.get("title") or d.get("tool_call_id") \
            else ""
        return f"grow      {d['task_id']} of {d['owner']} +{','.join(d['paths'])}{by}"
    if kind == "steer_ask" and d.get("kind") == "conflict" and d.get("conflict"):
        return f"blocked   {d['id']} {_blocked(d['conflict'])}"
    if kind == "steer_wait":
        return f"waits     {d['id']} until the leases in its way end (chosen by {d['by']})"
    if kind == "steer_ask":
        about = f" [{d['task_id']}]" if d.get("task_id") else ""
        return f"ask       {d['id']} {d['asker']}{about}: {one_line(d['question'], 120)}"
    if kind == "steer_end":
        said = f": {one_line(d['answer'], 100)}" if d.get("answer") else ""
        how = {"answered": f"answered by {d.get('by')}", "cancelled": f"cancelled by {d.get('by')}",
               "timed_out": "timed out" + (", default used" if d.get("default_used") else "")}
        return f"steer     {d['id']} {how.get(d['state'], d['state'])}{said}"
    if kind == "service_state":
        extra = []
        if d.get("port"):
            extra.append(f"port {d['port']}")
        if d.get("pid"):
            extra.append(f"pid {d['pid']}")
        why = f": {one_line(d['reason'], 100)}" if d.get("reason") else ""
        more = f" ({', '.join(extra)})" if extra else ""
        return f"service   {d['name']} {d['state']}{more}{why}"
    if kind == "issue_park":
        if d.get("reason"):
            return f"park      {d['identifier']}: {one_line(d['reason'], 100)}"
        return f"unpark    {d['identifier']}"
    if kind == "issue_done":
        return f"done      {d['identifier']} -> {d['to_state']}: {one_line(d['title'], 100)}"
    if kind == "tracker_refused":
        return _refused_line(d)
    if kind == "workspace_kept":
        return (f"kept      {d['identifier']} workspace {d['path']}: removing it would lose "
                f"{one_line(d['lost'], 200)} (the operator may remove it)")
    if kind == "workspace_removed":
        return f"removed   {d['identifier']} workspace {d['path']} (by {d.get('by', '?')})"
    if kind == "review_accepted":
        return (f"accepted  {d['identifier']} into {d['base']} ({d['how']}, "
                f"{str(d.get('commit') or '')[:12]}) by {d.get('by', '?')}")
    if kind == "review_requested":
        return (f"changes   {d['identifier']} by {d.get('by', '?')}: "
                f"{one_line(d['text'], 120)}")
    if kind == "review_discarded":
        return (f"discarded {d['identifier']} worktree {d['path']} and branch {d['branch']} "
                f"(by {d.get('by', '?')})")
    if kind == "workflow_status":
        if d.get("ok"):
            return f"workflow  {d['path']}: tracker {d.get('root', '')}"
        return (f"workflow  {d['path']}: {len(d.get('errors', []))} error(s); "
                "no new dispatches until it is fixed")
    if kind == "task_queued":
        return f"task      {d['agent']} <- {one_line(d['title'], 80)} by {d['by']}"
    if kind == "config_status":
        if d.get("ok"):
            return f"config    {d['path']}: {len(d.get('agents', []))} agent(s)"
        return f"config    {d['path']}: {len(d.get('errors', []))} error(s), last good kept"
    return None


def _blocked(facts: dict[str, Any]) -> str:
    """"demo/bob's edit of src/auth/login.py: held by demo/alice (AUTH-3)"."""
    edited = ", ".join(facts.get("paths", ())) or "the whole worktree"
    held = "; ".join(f"{h['owner']} ({h['task_id']})" for h in facts.get("held", ()))
    return one_line(f"{facts.get('owner', '?')}'s {facts.get('kind', 'edit')} of {edited}: "
                    f"held by {held}", 300)


def _refused_line(d: dict[str, Any]) -> str:
    """The tracker files newly refused (each with why), or that none are any more."""
    files = d.get("files", [])
    new = set(d.get("new", []))
    listed = "; ".join(f"{f['path']}: {one_line(f['reason'], 120)}" for f in files
                       if f["path"] in new)
    gone = len(d.get("gone", []))
    head = f"refused   {len(files)} tracker file(s) not read as issues"
    tail = f" ({gone} fixed or gone)" if gone else ""
    return one_line(f"{head}{tail}" + (f": {listed}" if listed else ""), 4000)
