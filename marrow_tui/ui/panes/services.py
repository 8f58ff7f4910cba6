"""The Services pane: the helper services; starting, stopping, restarting, their logs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ...core.services import ServiceView
from ...core.sessions import Session
from ...core.text import format_duration
from ..actions import Hint
from ..modals.confirm import ConfirmModal
from ..modals.detail import DetailModal
from ..screens.log import LogScreen
from .base import Console, TablePane
from .table import KeyedTable

_SERVICE_STYLES = {"healthy": "green", "starting": "cyan", "stopping": "yellow",
                   "backoff": "yellow", "unhealthy": "bold red", "failed": "bold red",
                   "blocked": "red", "stopped": "dim", "disabled": "dim"}


def service_key(view: ServiceView) -> str:
    """A service's row key: rows sort by key, so its place in the config comes first (the
    order `marrow-tui services` lists them in); the name is the key's last part."""
    return f"{view.order:05d}\x1f{view.name}"


def service_name(key: str) -> str:
    return key.rpartition("\x1f")[2]


class ServicesTable(KeyedTable):
    """The helper services: state, health, pid, port, uptime, restarts, and why."""

    COLUMNS = (("name", "Service"), ("state", "State"), ("health", "Health"), ("pid", "PID"),
               ("port", "Port"), ("up", "Up"), ("restarts", "Restarts"), ("reason", "Reason"))
    TEXT = ("reason",)

    def all_keys(self) -> Iterable[str]:
        return [service_key(view) for view in self.state.services.in_config_order()]

    def keys_of(self, names: Iterable[str]) -> list[str]:
        """The row keys for services named (or keyed): the one each has now, and the one it
        is shown under (the same, unless its place in the config changed)."""
        wanted = {service_name(name) for name in names}
        book = self.state.services.services
        keys = {key for key in self._shown if service_name(key) in wanted}
        keys.update(service_key(book[name]) for name in wanted if name in book)
        return sorted(keys)

    def sync(self, keys: Iterable[str]) -> None:
        super().sync(self.keys_of(keys))

    def later(self, keys: Iterable[str]) -> None:
        super().later(self.keys_of(keys))

    def cells(self, key: str) -> tuple[Any, ...] | None:
        view = self.state.services.services.get(service_name(key))
        if view is None or service_key(view) != key:
            return None
        # `marrow-tui services` says it the same way
        up = (format_duration(self.clock() - view.since)
              if view.state == "healthy" and view.since else "")
        return (view.name, Text(view.state, style=_SERVICE_STYLES.get(view.state, "")),
                view.health or "", view.pid or "", view.port or "", up, view.restarts or "",
                view.reason[:120])


class ServicesPane(TablePane):
    name = "services"
    title = "Services"

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = ServicesTable(self.state, console.runtime.clock, id="services-table")
        #: the graph was asked for: the next services list is shown as one
        self.want_graph = False

    def selected(self) -> str | None:
        """The selected service's name."""
        key = super().selected()
        return None if key is None else service_name(key)

    def allows(self, action: str) -> bool:
        return action == "service_graph" or self.selected() is not None

    def hint(self) -> Hint:
        if not self.table.selected_key:
            return ()
        return ("services.start", "services.stop", "services.restart", "services.log",
                "services.graph")

    def _act(self, verb: str, confirm: str | None = None) -> None:
        name = self.selected()
        if not name:
            return
        if confirm is None:
            self.send(type=verb, name=name)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type=verb, name=name)

        self.console.app.push_screen(ConfirmModal(
            f"{confirm} {name}?",
            f"{name} gets SIGTERM (its whole process group), then SIGKILL after its "
            "stop_grace. Services that depend on it are told.",
            f"{confirm} {name}", "Keep it running"), confirmed)

    def start_service(self) -> None:
        self._act("service_start")

    def stop_service(self) -> None:
        self._act("service_stop", "Stop")

    def restart_service(self) -> None:
        self._act("service_restart", "Restart")

    def open_service_log(self) -> None:
        name = self.selected()
        if name is not None:
            self.open(name)

    def open(self, key: str) -> None:
        view = self.state.services.services.get(service_name(key))
        if view is None:
            return
        log = view.log or str(self.console.runtime.options.state_dir / "services"
                              / f"{view.name}.log")
        self.console.app.push_screen(LogScreen(Session(
            id=f"service {view.name}", agent=view.name, started=view.since, stdout=str(log),
            stderr=str(log), state=view.state), service=view.name))

    def service_graph(self) -> None:
        self.want_graph = True  # before sending: the reply may come back at once
        self.send(type="services_list")  # it carries the graph (the screen's operator_reply)

    def show_graph(self, frame: dict[str, Any]) -> bool:
        """Shows the graph a `services` reply carries, if one was asked for."""
        if not self.want_graph:
            return False
        self.want_graph = False
        self.console.app.push_screen(DetailModal("Services: start order and dependencies",
                                                 Text(str(frame.get("graph", "")))))
        return True
