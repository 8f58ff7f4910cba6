"""A copy of a running runtime's state, kept over the wire: what an attached console reads.

`MirroredRuntime` connects to a hub with the operator token, asks for the change feed
(`feed_request`, docs/protocol.md §6.8), loads the snapshot into a `State` and applies every
event that follows with the same `State.apply` the runtime uses, so `.state` holds what the
runtime holds (all but the idempotency cache, which the hub keeps to itself). Its listeners
hear each batch of events as the runtime's do (`subscribe`).

When the connection drops it says so (`status` becomes "reconnecting"), connects again with a
growing pause, and asks for the events after the last one it has (`since`): none is lost and
none applied twice. A hub that cannot resume from there (its log is another, or it is too far
behind) sends a fresh snapshot instead, loaded into the same `State` object, and the status
listeners hear "connected" again: read everything anew.

It never changes the state itself: an operator's command goes to the hub (`send`) and its
effect comes back in the feed, as for the in-process console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from ..core.events import Event
from ..core.state import State
from ..hub.client import (ConnectionLost, Frame, HubClient, HubConnectionError, HubRefused,
                          HubTimeout)

log = logging.getLogger("marrow.attach")

Status = Literal["connecting", "connected", "reconnecting", "closed"]
Listener = Callable[[list[Event]], None]
StatusListener = Callable[[Status], None]
T = TypeVar("T")

FEED_TYPES = frozenset({"feed_snapshot", "feed_resume", "feed_events"})
#: the pause before the first reconnect, doubled after each failed one up to the last
FIRST_PAUSE = 0.25
LONGEST_PAUSE = 5.0
#: how long a read waits before it looks again whether the connection still stands
READ_WAIT = 30.0


class FeedGap(Exception):
    """The feed skipped an event, or a resume does not start where we are: load anew."""


class FeedRefused(HubConnectionError):
    """The hub will not give this connection the feed (not an operator): trying again would
    not help."""


class MirroredRuntime:
    """The runtime's state, its change feed and its status, read over a hub connection."""

    def __init__(self, uri: str, name: str, operator_token: str, *, token: str | None = None,
                 on_frame: Callable[[Frame], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 open_timeout: float = 10.0) -> None:
        self.uri = uri
        self.name = name
        self.operator_token = operator_token
        self.token = token
        self.clock = clock
        self.open_timeout = open_timeout
        #: the frames addressed to us that are not the feed: replies to our commands
        self.on_frame = on_frame
        self.state = State()
        #: the sequence number of the last logged event applied, and the log it is from
        self.seq = 0
        self.hub_id = ""
        self.status: Status = "connecting"
        #: why the mirror stopped following, once `status` is "closed" by the hub
        self.error = ""
        #: how many snapshots were loaded (the first, then one per fresh start)
        self.loads = 0
        self._fresh = True
        self._listeners: list[Listener] = []
        self._status_listeners: list[StatusListener] = []
        self._client: HubClient | None = None
        #: every frame the current connection receives
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        #: whether the current connection has given us the feed yet
        self._fed = False
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    # ---- reading -------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every batch of events applied to `.state`, as `Runtime.subscribe` does."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def subscribe_status(self, listener: StatusListener) -> Callable[[], None]:
        """Hear each change of `status`, and "connected" after every snapshot loaded (the
        whole state is new: read it all again)."""
        self._status_listeners.append(listener)
        return lambda: self._status_listeners.remove(listener)

    @property
    def connected(self) -> bool:
        return self.status == "connected"

    @property
    def reconnecting(self) -> bool:
        return self.status == "reconnecting"

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and load the state. The first connection's failure is raised (a wrong
        operator token: `HubRefused`; no hub there: `HubUnreachable`); later drops are
        followed by reconnects."""
        client = await self._connect()
        self._task = asyncio.create_task(self._follow_always(client), name="marrow-mirror")
        loaded = asyncio.ensure_future(self._loaded.wait())
        try:
            await asyncio.wait({loaded, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loaded.cancel()
        if not self._loaded.is_set():
            await self.stop()
            raise HubConnectionError(self.uri, self.error or "the hub closed the feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_client()
        self._set_status("closed")

    async def send(self, **frame: Any) -> None:
        """Send an operator's command to the hub (with this session's operator rights); its
        private replies reach `on_frame`, its effect comes back in the feed."""
        client = self._client
        if client is None or not client.connected:
            raise ConnectionLost(self.uri, None, "not connected to the hub (reconnecting)")
        frame.setdefault("sender", self.name)
        await client.send_frame(frame)

    # ---- the connection ------------------------------------------------------------------

    async def _connect(self) -> HubClient:
        """A registered session that has asked for the feed (from where we are, if we can)."""
        # takeover: after a drop the hub may not yet know that our last connection is gone
        client = HubClient(self.uri, self.name, token=self.token,
                           operator_token=self.operator_token, takeover=True, max_size=None,
                           open_timeout=self.open_timeout)
        frames = client.subscribe(maxsize=0)  # unbounded: the feed is never dropped here
        await client.connect()
        request: Frame = {"type": "feed_request", "target": "System"}
        if not self._fresh and self.hub_id:
            request.update(since=self.seq, hub_id=self.hub_id)
        try:
            await client.send_frame(request)
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._frames = frames
        self._fed = False
        return client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _follow_always(self, client: HubClient | None) -> None:
        """Follow the feed; after a drop, connect again with a growing pause."""
        pause = FIRST_PAUSE
        while True:
            try:
                if client is None:
                    client = await self._connect()
                await self._follow(client)
            except (FeedRefused, HubRefused) as exc:
                # Refused (the token is wrong now, or the hub says no): trying again would not
                # help, and the console says why.
                self.error = str(exc)
                await self._drop_client()
                self._set_status("closed")
                return
            except (HubConnectionError, FeedGap, OSError) as exc:
                log.info("the change feed from %s stopped: %s", self.uri, exc)
                if isinstance(exc, FeedGap):
                    self._fresh = True
            await self._drop_client()
            client = None
            if self._fed:
                pause = FIRST_PAUSE
            self._set_status("reconnecting")
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def _follow(self, client: HubClient) -> None:
        """Read the connection's frames until it ends (raising why): feed frames go into
        the state, the frames addressed to us (replies to our commands) to `on_frame`."""
        while True:
            try:
                frame = await client.next_matching(self._frames, _any, READ_WAIT)
            except HubTimeout:
                continue
            kind = frame.get("type")
            if kind in FEED_TYPES:
                self._take(frame)
                self._fed = True
            elif kind == "error" and not self._fed:
                raise FeedRefused(self.uri, str(frame.get("payload", "")))
            elif (self.on_frame is not None and frame.get("target") == self.name
                  and kind != "who_snapshot"):  # the registration's own barrier
                self.on_frame(frame)

    # ---- applying the feed ---------------------------------------------------------------

    def _take(self, frame: Frame) -> None:
        kind = frame["type"]
        if kind == "feed_snapshot":
            self.state.reset()
            self.state.load_live_part(frame["live"])  # first: it sets the chat budget
            self.state.load_snapshot(frame["state"])
            self.seq = int(frame["seq"])
            self.hub_id = str(frame.get("hub_id", ""))
            self._fresh = False
            self.loads += 1
            self._loaded.set()
            self._set_status("connected", always=True)
            return
        if kind == "feed_resume" and frame.get("since") != self.seq:
            raise FeedGap(f"the hub resumed after event {frame.get('since')}, not {self.seq}")
        events = self._apply(frame.get("events", []))
        if kind == "feed_resume":
            self.state.load_live_part(frame["live"])
            self._loaded.set()
            self._set_status("connected")
        self._tell(events)

    def _apply(self, rows: list[dict[str, Any]]) -> list[Event]:
        """Apply each event once, in order; a skipped sequence number means a gap."""
        applied = []
        for row in rows:
            seq = row.get("seq")
            if seq is not None:
                if seq <= self.seq:
                    continue  # already applied (never twice)
                if seq != self.seq + 1:
                    raise FeedGap(f"the feed went from event {self.seq} to {seq}")
                self.seq = seq
            if "data" not in row:
                continue  # withheld by the hub (the idempotency cache): nothing to show
            event = Event(row["kind"], row["data"])
            self.state.apply(event)
            applied.append(event)
        return applied

    def _tell(self, events: list[Event]) -> None:
        if not events:
            return
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("a change-feed listener failed")

    def _set_status(self, status: Status, always: bool = False) -> None:
        if status == self.status and not always:
            return
        self.status = status
        for listener in list(self._status_listeners):
            try:
                listener(status)
            except Exception:
                log.exception("a status listener failed")

    async def request(self, call: Callable[[HubClient], Awaitable[T]]) -> T:
        """Run one of the hub client's requests (`lambda hub: hub.file_read(...)`) on the
        current connection, with its operator rights, and return its private reply. While
        the mirror reconnects it raises `ConnectionLost`: try again later."""
        client = self._client
        if client is None or not client.connected:
            raise ConnectionLost(self.uri, None, "not connected to the hub (reconnecting)")
        return await call(client)


def _any(frame: Frame) -> bool:
    return True
