"""Start and stop the runtime, its hub and (for the demo) the scripted team, as one unit.

Headless mode and the console both run exactly this, and both must stop everything on every
way out: a clean quit, a signal, a failure half-way through starting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .hub.server import HubOptions, HubServer
from .runtime import Runtime, RuntimeOptions


@dataclass(slots=True)
class Hosted:
    runtime: Runtime
    server: HubServer


@asynccontextmanager
async def hosted(
    runtime_options: RuntimeOptions,
    hub_options: HubOptions,
    *,
    demo: bool = False,
    on_ready: Callable[[Hosted], None] | None = None,
) -> AsyncIterator[Hosted]:
    """The runtime started and the hub listening; `on_ready` runs before the demo team joins."""
    runtime = Runtime(runtime_options)
    await runtime.start()
    server = HubServer(runtime, hub_options)
    team = None
    try:
        await server.start()
        unit = Hosted(runtime, server)
        if on_ready is not None:
            on_ready(unit)
        if demo:
            from .demo import DemoTeam

            team = DemoTeam(server.uri, token=hub_options.token,
                            workdir=runtime_options.state_dir / "demo")
            await team.start()
        yield unit
    finally:
        if team is not None:
            await team.stop()
        await server.stop()
        await runtime.stop()
