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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any, Literal

from .. import __version__
from ..core.events import Event
from ..core.state import LIVE_FORMAT, SNAPSHOT_FORMAT, State
from ..hub.client import (ConnectionLost, Frame, HubClient, HubConnectionError, HubRefused,
                          HubTimeout)

log = logging.getLogger("marrow.attach")

Status = Literal["connecting", "connected", "reconnecting", "closed"]
Listener = Callable[[list[Event]], None]
StatusListener = Callable[[Status], None]

FEED_TYPES = frozenset({"feed_snapshot", "feed_resume", "feed_events"})
#: the formats this console reads (hub/feed.py says the runtime's in every first frame)
FORMATS = {"snapshot": SNAPSHOT_FORMAT, "live": LIVE_FORMAT, "feed": 1}
#: the names tried after the one asked for, when it is online already (another console)
MORE_NAMES = 8
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


class OtherVersion(FeedRefused):
    """The runtime sends its state in formats this console does not read."""


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """The attached runtime's settings a console shows: where its state folder is (on its
    machine, which may not be this one)."""

    state_dir: Path


class RemoteSession:
    """The console's operator on an attached runtime: `send` is the one command path, as
    `LocalSession.send` is in process. Frames go out in the order they were sent; one that
    cannot go (the connection is down) comes back as an error frame, saying it was not sent."""

    def __init__(self, mirror: MirroredRuntime, on_frame: Callable[[Frame], None]) -> None:
        self.mirror = mirror
        self.name = mirror.name
        self.on_frame = on_frame
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def send(self, **frame: Any) -> None:
        self._outbox.put_nowait(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="marrow-attach-send")

    async def _send_all(self) -> None:
        while True:
            frame = await self._outbox.get()
            try:
                await self.mirror.send(**frame)
            except HubConnectionError as exc:
                self.on_frame({"type": "error", "target": self.name, "payload":
                               f"Not sent ({frame.get('type', 'chat')}): {exc.message}"})

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self.mirror.on_frame is self.on_frame:
            self.mirror.on_frame = None


class MirroredRuntime:
    """The runtime's state, its change feed and its status, read over a hub connection."""

    def __init__(self, uri: str, name: str, operator_token: str, *, token: str | None = None,
                 on_frame: Callable[[Frame], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 open_timeout: float = 10.0, ssl: SSLContext | None = None) -> None:
        self.uri = uri
        self.ssl = ssl
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
        #: why the hub turned us away for good (raised by `start` when it was the first time)
        self._refused: HubConnectionError | None = None
        #: what the runtime says of itself in its first frame (hub/feed.py `about`)
        self.about: dict[str, Any] = {}
        #: `history` calls waiting for their reply, oldest first
        self._histories: list[asyncio.Future[list[Frame]]] = []

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

    @property
    def version(self) -> str:
        """The runtime's marrow-tui version ("" until the first frame)."""
        return str(self.about.get("version", ""))

    @property
    def restored(self) -> str:
        """What the runtime's start restored, as it says it."""
        return str(self.about.get("restored", "unknown"))

    @property
    def options(self) -> RemoteOptions:
        return RemoteOptions(Path(str(self.about.get("state_dir", "."))))

    def join(self, name: str, on_frame: Callable[[Frame], None]) -> RemoteSession:
        """The console's operator session: it acts under the name this mirror connected
        with (`name` is the one asked for; another console may hold it already)."""
        self.on_frame = on_frame
        return RemoteSession(self, on_frame)

    async def history(self, limit: int) -> list[tuple[float, Event]]:
        """The last `limit` logged events up to the last one applied here, with when each was
        written: what the console shows as the recent past (as `Runtime.history`). Empty
        when the connection drops before the answer."""
        waiting: asyncio.Future[list[Frame]] = asyncio.get_running_loop().create_future()
        self._histories.append(waiting)
        try:
            await self.send(type="feed_history", target="System", limit=limit, upto=self.seq)
            rows = await waiting
        except HubConnectionError as exc:
            log.info("no event history from %s: %s", self.uri, exc)
            return []
        finally:
            if waiting in self._histories:
                self._histories.remove(waiting)
        past = []
        for row in rows:
            try:
                past.append((float(row["at"]), Event(str(row["kind"]), row["data"])))
            except (KeyError, TypeError, ValueError):
                continue  # a row of another shape is left out, never the rest
        return past

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and load the state. The first connection's failure is raised (a wrong
        operator token: `HubRefused`; no hub there: `HubUnreachable`); later drops are
        followed by reconnects."""
        client = await self._connect(first=True)
        self._task = asyncio.create_task(self._follow_always(client), name="marrow-mirror")
        loaded = asyncio.ensure_future(self._loaded.wait())
        try:
            await asyncio.wait({loaded, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loaded.cancel()
        if not self._loaded.is_set():
            await self.stop()
            if self._refused is not None:
                raise self._refused
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

    async def _connect(self, first: bool = False) -> HubClient:
        """A registered session that has asked for the feed (from where we are, if we can).

        The first connection takes the name asked for, or the next free `<name>/2`... when
        another console holds it; later ones take our own name back over: after a drop the
        hub may not yet know that our last connection is gone."""
        asked = self.name
        for number in range(1, MORE_NAMES + 2 if first else 2):
            name = asked if number == 1 else f"{asked}/{number}"
            client = HubClient(self.uri, name, token=self.token,
                               operator_token=self.operator_token, takeover=not first,
                               max_size=None, open_timeout=self.open_timeout, ssl=self.ssl)
            frames = client.subscribe(maxsize=0)  # unbounded: the feed is never dropped here
            try:
                await client.connect()
            except HubRefused as exc:
                if first and "already online" in exc.message and number <= MORE_NAMES:
                    continue
                raise
            self.name = name
            break
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
                self._refused = exc
                await self._drop_client()
                self._set_status("closed")
                return
            except (HubConnectionError, FeedGap, OSError) as exc:
                log.info("the change feed from %s stopped: %s", self.uri, exc)
                if isinstance(exc, FeedGap):
                    self._fresh = True
            await self._drop_client()
            for waiting in self._histories:
                if not waiting.done():
                    waiting.set_exception(ConnectionLost(self.uri, None, "the connection "
                                                                         "dropped"))
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
            elif kind == "feed_history":
                waiting = next((f for f in self._histories if not f.done()), None)
                if waiting is not None:
                    waiting.set_result(list(frame.get("events") or ()))
            elif kind == "error" and not self._fed:
                raise FeedRefused(self.uri, str(frame.get("payload", "")))
            elif (self.on_frame is not None and frame.get("target") == self.name
                  and kind != "who_snapshot"):  # the registration's own barrier
                self.on_frame(frame)

    # ---- applying the feed ---------------------------------------------------------------

    def _take(self, frame: Frame) -> None:
        kind = frame["type"]
        if kind in ("feed_snapshot", "feed_resume"):
            self._know(frame.get("runtime"))
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

    def _know(self, about: Any) -> None:
        """Take what the runtime says of itself; refuse to follow one whose formats differ
        from ours, saying both versions and what differs."""
        about = about if isinstance(about, dict) else {}
        theirs = about.get("formats") if isinstance(about.get("formats"), dict) else {}
        differ = [f"{name} format {theirs.get(name, '?')} (this console reads {ours})"
                  for name, ours in FORMATS.items() if theirs.get(name) != ours]
        if differ:
            raise OtherVersion(self.uri, (
                f"the runtime is marrow-tui {about.get('version') or 'of an unknown version'} "
                f"and this console is {__version__}: they differ in the state they exchange "
                f"({'; '.join(differ)}); attach with the runtime's version"))
        self.about = about

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


def _any(frame: Frame) -> bool:
    return True
