"""The Agents pane: who is online (or gone, still holding leases), and a message to one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ...core.text import ago
from ..actions import Hint
from ..modals.detail import DetailModal
from ..modals.form import Field, FormModal
from .base import Console, TablePane
from .table import KeyedTable


class AgentsTable(KeyedTable):
    COLUMNS = (("agent", "Agent"), ("state", "State"), ("since", "Since"), ("seen", "Seen"),
               ("claims", "Leases"), ("roles", "Roles"))
    TEXT = ("claims", "roles")

    def all_keys(self) -> Iterable[str]:
        presence = self.state.presence
        return sorted(set(presence.online) | set(self.state.claims.by_owner))

    def cells(self, key: str) -> tuple[Any, ...] | None:
        now = self.clock()
        agent = self.state.presence.online.get(key)
        held = self.state.claims.by_owner.get(key, ())
        if agent is None and not held:
            return None
        if agent is None:
            since = self.state.presence.offline_since.get(key, self.state.started_at)
            state = Text("offline", style="bold red")
            return (key, state, ago(now - since), "-", ", ".join(sorted(held)), "")
        state = Text("operator", style="bold magenta") if agent.operator else Text("online",
                                                                                    style="green")
        return (key, state, ago(now - agent.since), ago(now - agent.last_seen),
                ", ".join(sorted(held)), ", ".join(agent.roles))


class AgentsPane(TablePane):
    name = "agents"
    title = "Agents"

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = AgentsTable(self.state, console.runtime.clock, id="agents-table")

    def hint(self) -> Hint:
        return ("chat.send", "view.open") if self.table.selected_key else ()

    def message(self) -> None:
        to = self.selected() or "all"

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.send(type="chat", target=values["target"] or "all",
                          payload=values["text"])

        self.console.app.push_screen(FormModal("Send a message", [
            Field("target", "To", "all, a name, a project, or a glob", to),
            Field("text", "Message")], "Send", required=("text",), focus="text"), submitted)

    def open(self, key: str) -> None:
        state = self.state
        agent = state.presence.online.get(key)
        body = Text()
        body.append("online\n" if agent else "offline\n", style="bold")
        if agent:
            body.append(f"roles: {', '.join(agent.roles) or '-'}\n")
        body.append("\nLeases:\n", style="bold")
        for claim in state.claims.owned_by(key) or []:
            body.append(f"  {claim.task_id}  {claim.status}  epoch {claim.epoch}\n")
        self.console.app.push_screen(DetailModal(f"Agent {key}", body))
