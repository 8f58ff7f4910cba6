"""`marrow-tui --no-ui`: the runtime and hub with no screen, for servers and scripts.

A line per meaningful event goes to stdout; diagnostics go to stderr. SIGINT and SIGTERM stop
it cleanly: the server closes its connections, everything queued is committed, a snapshot is
written, and the state directory is unlocked.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from .config.model import Config
from .core.events import Event, describe
from .core.text import SafeFormatter, printable
from .host import Hosted, hosted
from .hub.server import HubOptions
from .runtime import RuntimeOptions

log = logging.getLogger("marrow.headless")


class EventPrinter:
    """Writes one timestamped line per event, flushed per batch so `tail -f` keeps up.

    Each line is made safe on its own (`printable`: no escape sequence, no line break that
    would forge a line, nothing a UTF-8 stream cannot take) and written on its own, so an
    event that cannot be described or a line the stream cannot encode costs that one line
    (reported through `logging`), never the rest of its commit group.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, events: list[Event]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        wrote = False
        for event in events:
            try:
                text = describe(event)
                if text is None:
                    continue
                self._write(f"{stamp} {printable(text)}\n")
                wrote = True
            except Exception:
                log.exception("could not print a %s event", printable(str(event.kind)))
        if wrote:
            try:
                self.out.flush()
            except Exception:
                log.exception("could not flush the event lines")

    def _write(self, line: str) -> None:
        try:
            self.out.write(line)
        except UnicodeEncodeError:
            # A stream that is not UTF-8 (LANG=C on an old system, a latin-1 pipe): the
            # characters it cannot take are written as escapes, like controls are.
            encoding = getattr(self.out, "encoding", None) or "ascii"
            self.out.write(line.encode(encoding, "backslashreplace").decode(encoding))


def _safe_logging() -> None:
    """Every log record the runtime writes from here on is safe for a terminal and a log
    file: the message on one line, no escape sequence (names and ids come from agents)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        if not isinstance(current, SafeFormatter):
            handler.setFormatter(SafeFormatter(current))


async def serve(runtime_options: RuntimeOptions, hub_options: HubOptions,
                out: TextIO = sys.stdout, *, demo: bool = False,
                config: Config | None = None, workflow: Path | None = None) -> int:
    _safe_logging()

    def ready(unit: Hosted) -> None:
        state = unit.runtime.state
        out.write(
            f"marrow-tui: hub {unit.runtime.log.hub_id} listening on {unit.server.uri} "
            f"(state {printable(str(runtime_options.state_dir))}, {len(state.claims)} live claims, "
            f"{len(state.board.tasks)} board tasks, "
            f"{unit.runtime.restored})\n"
        )
        if config is not None:
            paused = state.sessions.paused
            enabled = sum(1 for agent in config.agents
                          if agent.enabled and agent.name not in paused)
            held = sum(1 for agent in config.agents if agent.name in paused)
            out.write(f"marrow-tui: scheduling {enabled} of {len(config.agents)} agent(s) "
                      f"from {printable(str(config.path))}"
                      + (f" ({held} paused)" if held else "") + "\n")
        if workflow is not None:
            out.write(f"marrow-tui: orchestrating the issues of {printable(str(workflow))}\n")
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
