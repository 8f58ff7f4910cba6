"""A real hub (runtime + WebSocket server on 127.0.0.1) in the test's loop, and wire-level agents."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from marrow_tui.hub.server import HubOptions, HubServer
from marrow_tui.runtime import Runtime, RuntimeOptions

WAIT = 5.0
#: Where a FakeClock starts. Session ids are made from the clock (`<name>-YYYYmmdd-HHMMSS-mmm`),
#: every agent carries its id as a tag (MARROW_SESSION), and a shutdown stops whatever carries
#: its runs' tags on the whole machine. Test processes running side by side (the same tests at
#: the same fake time) would make the same ids and stop each other's agents: each starts at a
#: millisecond of its own.
START = 1_800_000_000.0 + (os.getpid() % 1000) / 1000


class FakeClock:
    """Wall-clock time that only moves when a test says so."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Hub:
    runtime: Runtime
    server: HubServer
    clock: FakeClock
    state_dir: Path
    agents: list[Agent] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return self.server.uri

    async def agent(self, name: str, **registration: Any) -> Agent:
        agent = await Agent.join(self.uri, name, **registration)
        self.agents.append(agent)
        return agent

    async def stop(self) -> None:
        await asyncio.gather(*(agent.ws.close() for agent in self.agents))
        await self.server.stop()
        await self.runtime.stop()


async def start_hub(state_dir: Path, clock: FakeClock | None = None, **hub_options: Any) -> Hub:
    clock = clock or FakeClock()
    runtime = Runtime(RuntimeOptions(state_dir=state_dir), clock=clock)
    await runtime.start()
    server = HubServer(runtime, HubOptions(host="127.0.0.1", port=0, **hub_options))
    await server.start()
    return Hub(runtime, server, clock, state_dir)


class Agent:
    """A raw wire client: sends frames, reads until a frame of a wanted type arrives."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def join(cls, uri: str, name: str, expect_welcome: bool = True,
                   **registration: Any) -> Agent:
        ws = await connect(uri, compression=None, open_timeout=WAIT, max_queue=None)
        agent = cls(ws, name)
        await agent.send(type="heartbeat", payload="online", protocol_version=7, **registration)
        if expect_welcome:
            await agent.until("welcome")
            await agent.until("presence_update", agent=name)
        return agent

    async def send(self, **frame: Any) -> None:
        frame.setdefault("sender", self.name)
        frame.setdefault("timestamp", time.time())
        await self.ws.send(json.dumps(frame))

    async def until(self, *types: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """The next frame of one of `types` whose fields equal `match` (others are kept)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self.ws.recv(), max(left, 0.001))
            frame = json.loads(raw)
            self.seen.append(frame)
            if frame.get("type") in types and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def raw_until(self, *types: str, timeout: float = WAIT) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self.ws.recv(), max(left, 0.001))
            if json.loads(raw).get("type") in types:
                return str(raw)

    async def request(self, reply_types: tuple[str, ...], **frame: Any) -> dict[str, Any]:
        await self.send(**frame)
        return await self.until(*reply_types)

    async def closed(self, timeout: float = WAIT) -> tuple[int | None, str | None]:
        """Read until the hub closes the socket; return the close code and reason."""
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        except (ConnectionClosed, TimeoutError):
            pass
        await self.ws.wait_closed()
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, None)
