"""Client-side wire machinery shared by every scenario: frames, one agent connection, matching.

The protocol has no request ids: a reply is matched by ``type`` plus ``task_id``. Grants are
broadcast to every socket, so each agent sees every other agent's traffic too. To keep the
client from becoming the bottleneck, :meth:`Agent.expect` never decodes a frame unless a cheap
substring test says it may concern the pending operation (the quoted task id, or an ``error``).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

PROTOCOL_VERSION = 7

JSONDict = dict[str, Any]


def frame(sender: str, type_: str, *, target: str = "all", payload: str = "", **fields: Any) -> str:
    """One compact envelope ``{sender, target, type, payload, timestamp, ...}`` as JSON text."""
    body: JSONDict = {
        "sender": sender,
        "target": target,
        "type": type_,
        "payload": payload,
        "timestamp": time.time(),
    }
    body.update(fields)
    return json.dumps(body, separators=(",", ":"))


class WireError(Exception):
    """The hub answered with something that is not the expected reply (kept for the report)."""

    def __init__(self, message: str, frame_obj: JSONDict | None = None) -> None:
        super().__init__(message)
        self.frame = frame_obj


class Agent:
    """One registered WebSocket connection with a frame counter.

    Connections are opened with ``compression=None`` (machine-limits.md: deflate costs a third
    to a half of throughput on small frames) and no client-side pings (the hub pings; the
    library answers pongs by itself), so the client adds as little work as possible.
    """

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.frames = 0
        self.welcome: JSONDict | None = None
        self._error_target = f'"{name}"'

    @classmethod
    async def open(cls, uri: str, name: str, *, open_timeout: float = 10.0) -> Agent:
        ws = await connect(
            uri,
            compression=None,
            max_size=None,
            open_timeout=open_timeout,
            ping_interval=None,
            close_timeout=2,
        )
        return cls(name, ws)

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(frame(self.name, type_, **fields))

    async def register(self) -> JSONDict:
        """Send the registration heartbeat and wait for ``welcome``.

        An open synapse hub sends ``welcome`` on connect, before our first frame; another hub may
        send it after. Either way the welcome is the first frame of type welcome we see.
        """
        await self.ws.send(
            frame(
                self.name,
                "heartbeat",
                target="System",
                payload="online",
                protocol_version=PROTOCOL_VERSION,
            )
        )
        self.welcome = await self.expect(
            '"welcome"', ("welcome",), ("name_conflict", "auth_denied")
        )
        return self.welcome

    async def expect(
        self, key: str, ok_types: tuple[str, ...], fail_types: tuple[str, ...] = ()
    ) -> JSONDict:
        """Read frames until one containing ``key`` has a type in ``ok_types``.

        A frame containing ``key`` whose type is in ``fail_types``, or a plain ``error`` frame
        addressed to this agent, raises :class:`WireError` with the decoded frame.
        Everything else is drained and dropped after one or two substring tests.
        """
        recv = self.ws.recv
        while True:
            raw = await recv()
            self.frames += 1
            if not isinstance(raw, str):
                continue
            if key in raw:
                obj: JSONDict = json.loads(raw)
                kind = obj.get("type")
                if kind in ok_types:
                    return obj
                if kind in fail_types or (kind == "error" and obj.get("target") == self.name):
                    raise WireError(f"{kind} for {key}", obj)
            elif '"error"' in raw and self._error_target in raw:
                obj = json.loads(raw)
                if obj.get("type") == "error" and obj.get("target") == self.name:
                    raise WireError("error frame", obj)

    async def request(
        self,
        type_: str,
        reply_key: str,
        ok_types: tuple[str, ...],
        fail_types: tuple[str, ...] = (),
        **fields: Any,
    ) -> JSONDict:
        """Send one frame and wait for its reply (see :meth:`expect`)."""
        await self.ws.send(frame(self.name, type_, **fields))
        return await self.expect(reply_key, ok_types, fail_types)

    async def drain_forever(self) -> None:
        """Read and drop frames until the socket closes (idle agents must still read)."""
        try:
            async for _ in self.ws:
                self.frames += 1
        except Exception:  # noqa: BLE001 - a closed socket ends the drain, whatever the reason
            return

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket is not an error here
            await self.ws.close()


async def open_registered(uri: str, name: str, *, open_timeout: float = 10.0) -> Agent:
    """Connect and register one agent; closes the socket if registration fails."""
    agent = await Agent.open(uri, name, open_timeout=open_timeout)
    try:
        await agent.register()
    except BaseException:
        await agent.close()
        raise
    return agent
