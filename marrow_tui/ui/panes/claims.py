"""The Claims pane: every lease, and handing off, releasing or extending one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ...core.claims import Claim
from ...core.text import ago, plural, short_path
from ..actions import Hint
from ..modals.confirm import ChoiceModal, ConfirmModal
from ..modals.detail import DetailModal
from .base import Console, TablePane, fields
from .table import KeyedTable

#: a lease with less left than this is shown in red (and counted as expiring)
EXPIRING_SOON = 300.0
EXTEND_SECONDS = 3600


class ClaimsTable(KeyedTable):
    # Fixed-width facts first; the scope, which can be long, last.
    COLUMNS = (("task", "Task"), ("owner", "Owner"), ("status", "Status"), ("left", "Left"),
               ("epoch", "Epoch"), ("ckpt", "Ckpt"), ("scope", "Scope"))
    TEXT = ("scope", "status")

    def all_keys(self) -> Iterable[str]:
        return sorted(self.state.claims.claims)

    def cells(self, key: str) -> tuple[Any, ...] | None:
        claim = self.state.claims.get(key)
        if claim is None:
            return None
        return (claim.task_id, self._owner(claim), claim.status, self._left(claim), claim.epoch,
                "yes" if claim.checkpoint else "", _scope(claim))

    def _owner(self, claim: Claim) -> Text | str:
        if claim.owner in self.state.presence.online:
            return claim.owner
        return Text(f"{claim.owner} (offline)", style="red")

    def _left(self, claim: Claim) -> Text:
        left = claim.lease_expires_at - self.clock()
        style = "bold red" if left < EXPIRING_SOON else ""
        return Text(ago(left), style=style)

def grown_lines(claim: Claim, now: float) -> str:
    """Each path a lease grew by: the tool call that added it (title and id), and when."""
    lines = []
    for grown in claim.grown:
        call = grown.get("title") or "claim_paths"
        ident = f" [{grown['tool_call_id']}]" if grown.get("tool_call_id") else ""
        lines.append(f"{grown.get('path', '?')}  by {call}{ident}, "
                     f"{ago(now - float(grown.get('at') or now))} ago")
    return "\n        ".join(lines)


def _nothing(claim: Claim) -> str:
    """A lease with no paths: a run's holds nothing until its edits grow it."""
    return "(no paths yet: grows by its edits)" if claim.session else "(whole worktree)"


def _scope(claim: Claim) -> str:
    """Its worktree (shortened: the detail view has it whole) and paths; a path an edit added
    says by which tool call (a column would not fit beside the agents: the detail view lists
    each with its id and time)."""
    by = {g.get("path"): g.get("title") or g.get("tool_call_id") or "claim_paths"
          for g in claim.grown}
    paths = ", ".join(f"{p} ({by[p]})" if p in by else p for p in claim.paths) \
        if claim.paths else _nothing(claim)
    return f"{short_path(claim.worktree)}: {paths}" if claim.worktree else paths


class ClaimsPane(TablePane):
    name = "claims"
    title = "Claims"

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = ClaimsTable(self.state, console.runtime.clock, id="claims-table")

    def _claim(self) -> Claim | None:
        return self.state.claims.get(self.selected() or "")

    def allows(self, action: str) -> bool:
        return self._claim() is not None

    def hint(self) -> Hint:
        key = self.table.selected_key
        if key is None or self.state.claims.get(key) is None:
            return ()
        return ("claims.handoff", "claims.release", "claims.force_release", "claims.extend",
                "view.open")

    def handoff(self) -> None:
        claim = self._claim()
        if claim is None:
            return
        claims = self.state.claims
        choices = [(name, f"{name}  ({plural(len(claims.by_owner.get(name, ())), 'lease')})")
                   for name, agent in sorted(self.state.presence.online.items())
                   if name != claim.owner and not agent.operator]

        def chosen(name: str | None) -> None:
            if name:
                self.send(type="handoff", task_id=claim.task_id, to_agent=name,
                          note="handed over from the console")

        self.console.app.push_screen(
            ChoiceModal(f"Hand {claim.task_id} (held by {claim.owner}) to…", choices,
                        empty="Nobody else is online to take it."), chosen)

    def _release(self, force: bool) -> None:
        claim = self._claim()
        if claim is None:
            return
        lost = (f"{claim.owner} loses the lease on {claim.task_id} (epoch {claim.epoch}); its "
                f"next update, checkpoint or release for it will be refused.")
        if claim.checkpoint:
            lost += (f"\nIts checkpoint ({len(claim.checkpoint)} chars) is "
                     + ("DROPPED." if force else "kept for whoever claims the task next."))
        title = ("Force-release" if force else "Release") + f" {claim.task_id}?"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type="release", task_id=claim.task_id, keep_checkpoint=not force)

        self.console.app.push_screen(
            ConfirmModal(title, lost, "Force-release" if force else "Release", "Keep the lease"),
            confirmed)

    def release(self) -> None:
        self._release(force=False)

    def force_release(self) -> None:
        self._release(force=True)

    def extend(self) -> None:
        key = self.selected()
        if key:
            self.send(type="extend", task_id=key, ttl_seconds=EXTEND_SECONDS)
            self.console.toast(f"Extending {key} by {ago(EXTEND_SECONDS)}", timeout=3)

    def open(self, key: str) -> None:
        claim = self.state.claims.get(key)
        if claim is None:
            return
        now = self.console.runtime.clock()
        body = fields((
            ("owner", claim.owner), ("status", claim.status), ("epoch", claim.epoch),
            ("version", claim.version), ("worktree", claim.worktree or "(default)"),
            ("paths", "\n        ".join(claim.paths) or _nothing(claim)),
            ("note", claim.note), ("data_ref", claim.data_ref),
            ("claimed", f"{ago(now - claim.claimed_at)} ago"),
            ("expires", f"in {ago(claim.lease_expires_at - now)}"),
            ("checkpoint", claim.checkpoint or "(none)"),
            *((("run", claim.session),) if claim.session else ()),
            *((("grown", grown_lines(claim, now)),) if claim.grown else ()),
        ))
        self.console.app.push_screen(DetailModal(f"Lease {key}", body))
