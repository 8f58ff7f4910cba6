"""Helper services as the runtime remembers them: each one's latest state, and the ports
picked for `port = "auto"` (kept across restarts, so a service keeps its address).
Pure data; the supervisor (services/supervisor.py) does the work and reports each change as a
`service_state` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .kinds import SERVICE_STATE_KINDS


@dataclass(slots=True)
class ServiceView:
    name: str
    #: stopped, starting, healthy, unhealthy, backoff, failed, blocked, stopping
    state: str = "stopped"
    pid: int | None = None
    port: int | None = None
    url: str = ""
    health: str = ""
    restarts: int = 0
    reason: str = ""
    #: when it entered this state
    since: float = 0.0
    #: its log file
    log: str = ""
    #: its place in the config's [[services]]: the order users wrote, dependencies first
    order: int = 0


@dataclass(slots=True)
class ServiceBook:
    services: dict[str, ServiceView] = field(default_factory=dict)
    #: name -> the port picked for it (port = "auto")
    ports: dict[str, int] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        d = event.data
        if event.kind in SERVICE_STATE_KINDS:
            view = self.services.get(d["name"]) or ServiceView(d["name"])
            for key in ("state", "pid", "port", "url", "health", "restarts", "reason",
                        "since", "log", "order"):
                if key in d:
                    setattr(view, key, d[key])
            self.services[view.name] = view
        elif event.kind == "service_removed":
            self.services.pop(d["name"], None)
        elif event.kind == "service_port":
            self.ports[d["name"]] = int(d["port"])

    def in_config_order(self) -> list[ServiceView]:
        """The services as the config lists them (the CLI's `services` and the console's
        pane show them so)."""
        return sorted(self.services.values(), key=lambda view: view.order)

    def to_snapshot(self) -> dict[str, Any]:
        return {"ports": dict(self.ports)}

    def load_snapshot(self, snap: dict[str, Any]) -> None:
        self.ports.update({k: int(v) for k, v in snap.get("ports", {}).items()})
