"""Start and stop the runtime, its hub and (for the demo) the scripted team, as one unit.

Headless mode and the console both run exactly this, and both must stop everything on every
way out: a clean quit, a signal, a failure half-way through starting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config.model import Config
from .aio import within
from .hub.address import clear_address, write_address
from .hub.server import HubOptions, HubServer
from .runtime import Runtime, RuntimeOptions
from .scheduler.heartbeat import Scheduler


#: the most seconds the way out waits for the log to take the last events
SETTLE_WAIT = 10.0


@dataclass(slots=True)
class Hosted:
    runtime: Runtime
    server: HubServer
    scheduler: Scheduler
    #: the parts that run work, besides the scheduler (each has `async stop()`)
    notifier: Any = None
    services: Any = None
    orchestrator: Any = None
    team: Any = None
    _wound_down: bool = False

    async def wind_down(self) -> None:
        """Stop everything that runs work, once: the demo team, the orchestrator's and the
        scheduler's runs (each ended, TERM then KILL), the helper services, then [notify];
        and let the log take the events that wrote. The hub and the log stay open."""
        if self._wound_down:
            return
        self._wound_down = True
        for part in (self.team, self.orchestrator, self.scheduler, self.services,
                     self.notifier):
            if part is not None:
                await part.stop()
        if not self.runtime.failed.is_set():  # a failed log takes nothing more
            await within(self.runtime.settled(), SETTLE_WAIT)


@asynccontextmanager
async def hosted(
    runtime_options: RuntimeOptions,
    hub_options: HubOptions,
    *,
    demo: bool = False,
    config: Config | None = None,
    workflow: Path | None = None,
    heartbeats: bool = True,
    on_ready: Callable[[Hosted], None] | None = None,
) -> AsyncIterator[Hosted]:
    """The runtime started, the hub listening and the scheduler serving `config`.

    `on_ready` runs before the first heartbeat and before the demo team joins, so a listener
    it subscribes hears everything. Without `heartbeats` the scheduler only serves its verbs
    (for `run-once`, which starts its runs itself).
    """
    runtime = Runtime(runtime_options)
    await runtime.start()
    try:
        server = HubServer(runtime, hub_options)
    except BaseException:  # its settings cannot work: the log is closed before the error is said
        await runtime.stop()
        raise
    unit: Hosted | None = None
    try:
        await server.start()
        _say_address(runtime_options.state_dir, server.uri)
        unit = Hosted(runtime, server, Scheduler(runtime, config, hub_uri=server.uri,
                                                 token=hub_options.token))
        if on_ready is not None:
            on_ready(unit)
        if config is not None and heartbeats:
            from .notify import Notifier

            # The config as the scheduler holds it: a reloaded [notify] applies at once.
            held = unit.scheduler
            unit.notifier = Notifier(runtime,
                                     lambda: held.config.notify if held.config else None,
                                     server.uri)
            unit.notifier.start()
        if config is not None and config.services and heartbeats:
            from .services.hosting import Services

            # Helpers first: agents may need them (they start in the background; a slow
            # health check holds up nothing).
            unit.services = Services(runtime, config, runtime_options.state_dir / "services")
            await unit.services.start()
        await unit.scheduler.start(loop=heartbeats)
        if workflow is not None:
            from .orchestrator.dispatcher import Orchestrator

            unit.orchestrator = Orchestrator(runtime, workflow, hub_uri=server.uri,
                                             token=hub_options.token)
            await unit.orchestrator.start()
        if demo:
            from .demo import DemoTeam

            unit.team = DemoTeam(server.uri, token=hub_options.token,
                                 workdir=runtime_options.state_dir / "demo")
            await unit.team.start()
        yield unit
    finally:
        if unit is not None:
            await unit.wind_down()
        await server.stop()
        clear_address(runtime_options.state_dir)
        await runtime.stop()


def _say_address(state_dir: Path, uri: str) -> None:
    """Where the hub listens, for consoles that attach (hub/address.py): a state folder we
    cannot write this in still runs, it is only not found by `marrow-tui attach`."""
    try:
        write_address(state_dir, uri, __version__)
    except OSError as exc:
        logging.getLogger("marrow.host").warning(
            "cannot write the hub's address in %s (%s): `marrow-tui attach` will not find "
            "this runtime by its state folder", state_dir, exc)
