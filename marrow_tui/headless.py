"""`marrow-tui --no-ui`: the runtime and hub with no screen, for servers and scripts.

A line per meaningful event goes to stdout; diagnostics go to stderr. SIGINT and SIGTERM stop
it cleanly: the server closes its connections, everything queued is committed, a snapshot is
written, and the state directory is unlocked.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from .config import Config
from .core.events import Event, describe
from .host import Hosted, hosted
from .hub.server import HubOptions
from .runtime import RuntimeOptions


class EventPrinter:
    """Writes one timestamped line per event, flushed per batch so `tail -f` keeps up."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, events: list[Event]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        lines = [f"{stamp} {text}\n" for e in events if (text := describe(e)) is not None]
        if lines:
            self.out.write("".join(lines))
            self.out.flush()


async def serve(runtime_options: RuntimeOptions, hub_options: HubOptions,
                out: TextIO = sys.stdout, *, demo: bool = False,
                config: Config | None = None, workflow: Path | None = None) -> int:
    def ready(unit: Hosted) -> None:
        state = unit.runtime.state
        out.write(
            f"marrow-tui: hub {unit.runtime.log.hub_id} listening on {unit.server.uri} "
            f"(state {runtime_options.state_dir}, {len(state.claims)} live claims, "
            f"{len(state.board.tasks)} board tasks, "
            f"{unit.runtime.restored_events} events replayed)\n"
        )
        if config is not None:
            enabled = sum(1 for agent in config.agents if agent.enabled)
            out.write(f"marrow-tui: scheduling {enabled} of {len(config.agents)} agent(s) "
                      f"from {config.path}\n")
        if workflow is not None:
            out.write(f"marrow-tui: orchestrating the issues of {workflow}\n")
        out.flush()
        unit.runtime.subscribe(EventPrinter(out))

    async with hosted(runtime_options, hub_options, demo=demo, config=config,
                      workflow=workflow, on_ready=ready) as unit:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(unit.runtime.failed.wait())
        await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        failing.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if unit.runtime.failed.is_set():
        print("marrow-tui: stopped because the event log failed (see above)", file=sys.stderr)
        return 1
    out.write("marrow-tui: stopped; state saved\n")
    out.flush()
    return 0
