"""The services inside the runtime: the supervisor's changes become events, and the hub serves
the verbs to list, start, stop and restart them (`marrow-tui services`, the console).

The supervisor does the work (processes, health, restarts); this module only connects it to
the command path, so a service's state is in the log like everything else, and the ports picked
for `port = "auto"` come back after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.model import Config
from ..core.events import Event, Refusal
from ..core.graph import render
from ..protocol.frames import Call, Outcome, text_field

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .supervisor import Supervisor

log = logging.getLogger("marrow.services")

#: the fields of a `service_state` event (and of each row `services_list` returns)
FIELDS = ("name", "state", "pid", "port", "url", "health", "restarts", "reason", "since",
          "log")
#: what makes a change worth the log (a health text alone is published, not logged)
LOGGED = ("state", "pid", "port", "restarts", "reason")


class Services:
    def __init__(self, runtime: Runtime, config: Config, logs: Path) -> None:
        self.runtime = runtime
        self.config = config
        self.logs = logs
        self.supervisor: Supervisor | None = None
        self._starting: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[None]] = set()
        self._ports_seen: dict[str, int] = dict(runtime.state.services.ports)
        self._last: dict[str, tuple[Any, ...]] = {}

    async def start(self) -> None:
        """Serve the verbs and start the services (in the background: a slow health check
        must not hold up the console or the hub)."""
        decider = self.runtime.decider
        assert decider is not None
        decider.register("services_list", self._verb_list)
        for verb, action in (("service_start", "start"), ("service_stop", "stop"),
                             ("service_restart", "restart")):
            decider.register(verb, self._verb_action(action))
        self._forget_the_last_run()
        services = [s for s in self.config.services if s.enabled]
        if not services:
            return
        from .supervisor import Supervisor

        self.supervisor = Supervisor(
            services, folder=self.config.path.parent, logs=self.logs,
            on_change=self._changed, clock=self.runtime.clock,
            ports=dict(self.runtime.state.services.ports))
        self._starting = asyncio.create_task(self._start_all(), name="services")

    def _forget_the_last_run(self) -> None:
        """What the log remembers of the last run's services is not true any more: every
        configured one starts out stopped (or disabled), and the others are gone."""
        configured = {s.name: s for s in self.config.services}
        events = [Event("service_removed", {"name": name})
                  for name in self.runtime.state.services.services if name not in configured]
        events += [Event("service_state", {
            "name": s.name, "state": "stopped" if s.enabled else "disabled", "pid": None,
            "health": "", "reason": "" if s.enabled else "disabled in the config",
            "since": self.runtime.clock(), "at": self.runtime.clock(), "order": index})
            for index, s in enumerate(self.config.services)]
        for event in events:
            self.runtime.state.apply(event)
        if events:
            self.runtime.submit(Outcome(events=events))

    async def _start_all(self) -> None:
        assert self.supervisor is not None
        try:
            await self.supervisor.start()
        except Exception:
            log.exception("starting the services failed")

    async def stop(self) -> None:
        """Stop every service, in reverse dependency order."""
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        for task in list(self._actions):
            task.cancel()
        if self.supervisor is not None:
            await self.supervisor.stop()

    # ---- the command path ----------------------------------------------------------------

    def _changed(self, data: dict[str, Any]) -> None:
        """One change from the supervisor: an event (and a remembered port)."""
        data = dict(data)
        if self.supervisor is not None:
            data["log"] = str(self.supervisor.log_path(data["name"]))
        fields = {k: data.get(k) for k in FIELDS if k in data} | {
            "at": data.get("at", self.runtime.clock())}
        key = tuple(data.get(k) for k in LOGGED)
        kind = "service_state" if self._last.get(data["name"]) != key else "service_health"
        self._last[data["name"]] = key
        events = [Event(kind, fields)]
        port = data.get("port")
        if port and self._ports_seen.get(data["name"]) != port:
            self._ports_seen[data["name"]] = port
            events.append(Event("service_port", {"name": data["name"], "port": port}))
        for event in events:
            self.runtime.state.apply(event)
        self.runtime.submit(Outcome(events=events))

    def _verb_list(self, call: Call) -> None:
        rows = [{k: getattr(v, k) for k in FIELDS if k != "log"}
                for v in self.runtime.state.services.services.values()]
        known = {r["name"] for r in rows}
        rows += [{"name": s.name, "state": "disabled" if not s.enabled else "stopped",
                  "pid": None, "port": s.port or None, "url": "", "health": "",
                  "restarts": 0, "reason": "", "since": 0.0}
                 for s in self.config.services if s.name not in known]
        order = {s.name: i for i, s in enumerate(self.config.services)}
        rows.sort(key=lambda r: order.get(r["name"], len(order)))
        call.reply("services", f"{len(rows)} service(s)", services=rows,
                   graph=render(list(self.config.services)))

    def _verb_action(self, action: str) -> Callable[[Call], None]:
        def serve(call: Call) -> None:
            name = text_field(call.frame, "name").strip()
            if not call.operator:
                call.deny("error", Refusal("forbidden", f"Only an operator may {action} "
                                                        "services."), name=name)
                return
            if self.config is None or all(s.name != name for s in self.config.services):
                call.deny("error", Refusal("unknown_service", f"No service named '{name}'."))
                return
            if self.supervisor is None:
                call.deny("error", Refusal("not_running",
                                           f"'{name}' is disabled in the config."))
                return
            refusal = getattr(self.supervisor, "refusal", lambda *_: None)(name, action)
            if refusal:  # said now, so `marrow-tui services` shows it too
                call.deny("error", Refusal("refused", refusal), name=name)
                return
            method: Callable[[str], Awaitable[None]] = getattr(
                self.supervisor, f"{action}_service")
            task = asyncio.create_task(self._act(method, name, call.sender),
                                       name=f"service {action} {name}")
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
            call.reply(f"service_{action}ing" if action != "stop" else "service_stopping",
                       f"{action.capitalize()}ing {name}." if action != "stop"
                       else f"Stopping {name}.", name=name)
        return serve

    async def _act(self, method: Callable[[str], Awaitable[None]], name: str,
                   by: str) -> None:
        try:
            await method(name)
        except Exception as exc:  # a refusal (its dependencies are not healthy), or a failure
            log.warning("service %s: %s", name, exc)
            session = self.runtime.local.get(by)
            if session is not None:
                session.on_frame({"type": "error", "payload": str(exc), "name": name,
                                  "error_code": "service_action_failed"})
