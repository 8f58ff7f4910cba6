"""The change feed over the wire: what `feed_request` gives an operator's connection.

An attached console holds a copy of the runtime's state. It asks once with `feed_request` and
gets, on that connection, the whole state at one point (`feed_snapshot`), or, when it names the
last event it has (`since`) and the log still has what came after, only the missed events
(`feed_resume`); then every change from that point on, in `feed_events` frames of many events
each. docs/protocol.md §6.8 is the reference.

The cost to the runtime stays flat however many events flow: one listener on the change feed
numbers and encodes each event once for every reading connection; each connection sends at
most `FEEDS_PER_SECOND` frames, whatever the rate of events; and a connection that cannot keep
up (its socket does not drain) has its waiting events dropped, past `MAX_WAITING_EVENTS`, for a
fresh snapshot once it drains, so no memory grows without bound.

"The point" a snapshot stands for is exact: the state is read between two submits, so it holds
exactly the first `Runtime.submitted` events of the feed, and the events told after it are
numbered by their place in the feed (`Runtime.told`): those at or before that place are left
out, nothing is missed or sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from websockets.asyncio.server import ServerConnection

from .. import __version__
from ..core.events import Event
from ..core.state import LIVE_FORMAT, SNAPSHOT_FORMAT
from ..protocol.frames import encode
from ..runtime import Runtime

log = logging.getLogger("marrow.hub.feed")

#: frames of events a connection gets per second at most (the console repaints at about this)
FEEDS_PER_SECOND = 15
#: events waiting for one connection; past that it gets a fresh snapshot instead
MAX_WAITING_EVENTS = 20_000
#: unsent bytes on a socket past which its feed holds its frames until the peer reads
HOLD_BYTES = 1024 * 1024
#: a `feed_events` frame ends once it holds this many bytes of events (more go in the next)
FRAME_BYTES = 1024 * 1024
#: a resume carries at most this many missed events, and this many bytes of them; a reader
#: that missed more gets a fresh snapshot, which is smaller
MAX_RESUME_EVENTS = 50_000
MAX_RESUME_BYTES = 8 * 1024 * 1024
#: kinds whose data stays on the hub: the idempotency cache holds the replies to other agents'
#: requests, which no console shows (the event still comes, with its `seq`, so none is missed)
WITHHELD_KINDS = frozenset({"idem"})
#: the verbs a connection asks of its feed (intercepted by the hub: they change no state)
FEED_VERBS = frozenset({"feed_request", "feed_history"})
#: the shape of the feed's frames and events: a console of another shape cannot follow them
FEED_FORMAT = 1
#: the most past events `feed_history` gives (the Activity pane shows a thousand)
MAX_HISTORY = 5_000


def about(runtime: Runtime) -> dict[str, Any]:
    """What a console needs to know of the runtime it attaches to: its version and the
    formats of what it sends (a console of another format refuses to follow, saying which),
    what its start restored, and where its state folder is."""
    return {
        "version": __version__,
        "formats": {"snapshot": SNAPSHOT_FORMAT, "live": LIVE_FORMAT, "feed": FEED_FORMAT},
        "restored": runtime.restored,
        "state_dir": str(runtime.options.state_dir),
    }


class Item(NamedTuple):
    """One event of the feed: its place among every event told, its log sequence (None for
    a transient event, which is not logged), and the event as the wire carries it."""

    place: int
    seq: int | None
    text: str


def event_text(seq: int | None, kind: str, data: str) -> str:
    """An event as JSON, built from its data already encoded: `{"seq", "kind", "data"}`."""
    number = "" if seq is None else f'"seq":{seq},'
    head = f'{{{number}"kind":{json.dumps(kind)}'
    if kind in WITHHELD_KINDS:
        return head + "}"
    return f'{head},"data":{data}}}'


def _data(event: Event) -> str:
    if event.encoded is not None:
        return event.encoded
    try:
        return json.dumps(event.data, separators=(",", ":"))
    except (TypeError, ValueError):  # a transient event with a value JSON lacks: say it as text
        return json.dumps(event.data, separators=(",", ":"), default=str)


def with_events(head: dict[str, Any], texts: list[str]) -> str:
    """`head` as JSON with an `events` list of events already encoded: each is encoded once,
    however many frames and connections carry it."""
    return encode(head)[:-1] + ',"events":[' + ",".join(texts) + "]}"


def chunks(items: list[Item], limit: int) -> Iterator[list[Item]]:
    """`items` in runs of at most `limit` bytes (a run holds at least one item)."""
    run: list[Item] = []
    size = 0
    for item in items:
        if run and size + len(item.text) > limit:
            yield run
            run, size = [], 0
        run.append(item)
        size += len(item.text) + 1
    if run:
        yield run


class FeedHub:
    """Every connection that reads the change feed, and the one listener that feeds them."""

    def __init__(self, runtime: Runtime,
                 write: Callable[[ServerConnection, str], None]) -> None:
        self.runtime = runtime
        self.write = write
        self.feeds: dict[ServerConnection, Feed] = {}
        self._unsubscribe: Callable[[], None] | None = None

    def request(self, conn: ServerConnection, name: str, frame: dict[str, Any],
                operator: bool) -> str | None:
        """Start (or start again) `conn`'s feed; or the sentence that refuses the request."""
        if not operator:
            return ("Only an operator reads the change feed (feed_request): connect with the "
                    "operator token.")
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)
                                  or since < 0):
            return ("Malformed frame: 'since' must be an integer (an event's sequence number, "
                    "0 or more).")
        hub_id = frame.get("hub_id")
        if hub_id is not None and not isinstance(hub_id, str):
            return "Malformed frame: 'hub_id' must be a string."
        if self._unsubscribe is None:
            self._unsubscribe = self.runtime.subscribe(self._told)
        feed = self.feeds.get(conn)
        if feed is None:
            feed = self.feeds[conn] = Feed(self, conn, name)
        decider = self.runtime.decider
        same_log = hub_id is None or decider is None or hub_id == decider.hub_id
        feed.begin(since if same_log else None)
        return None

    def history(self, conn: ServerConnection, name: str, frame: dict[str, Any],
                operator: bool) -> str | None:
        """Send `conn` the logged events up to `upto` (the last its feed applied), at most
        `limit`, with when each was written: the console's Activity past. Or the sentence that
        refuses the request."""
        if not operator:
            return ("Only an operator reads the event history (feed_history): connect with the "
                    "operator token.")
        limit, upto = frame.get("limit"), frame.get("upto")
        for field, value in (("limit", limit), ("upto", upto)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return f"Malformed frame: '{field}' must be an integer, 0 or more."
        task = asyncio.create_task(self._history(conn, name, min(limit, MAX_HISTORY),
                                                 min(upto, self.runtime.told_seq)),
                                   name=f"marrow-history-{name}")
        task.add_done_callback(_logged_failure)
        return None

    async def _history(self, conn: ServerConnection, name: str, limit: int, upto: int) -> None:
        # Every logged event the feed has told is durable (the runtime tells after the
        # commit), so the log holds all of them up to `upto`.
        rows = await self.runtime.history(limit, upto) if limit else []
        decider = self.runtime.decider
        assert decider is not None
        head = decider.frame("feed_history", name, f"{len(rows)} past events up to {upto}.",
                             upto=upto)
        texts = [f'{{"at":{json.dumps(at)},"kind":{json.dumps(event.kind)},'
                 f'"data":{_data(event)}}}' for at, event in rows]
        self.write(conn, with_events(head, texts))

    def close(self, conn: ServerConnection) -> None:
        feed = self.feeds.pop(conn, None)
        if feed is not None:
            feed.stop()
        if not self.feeds and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _told(self, events: list[Event]) -> None:
        """Number and encode a batch of the change feed once, and offer it to every reader.
        The runtime has counted the batch already, so its places end at `Runtime.told`."""
        runtime = self.runtime
        place = runtime.told - len(events)
        seq = runtime.told_seq - sum(1 for event in events if not event.transient)
        items = []
        for event in events:
            place += 1
            if event.transient:
                items.append(Item(place, None, event_text(None, event.kind, _data(event))))
            else:
                seq += 1
                items.append(Item(place, seq, event_text(seq, event.kind, _data(event))))
        for feed in list(self.feeds.values()):
            feed.offer(items)


class Feed:
    """One connection's feed: its first frame (a snapshot or a resume), then its events."""

    def __init__(self, hub: FeedHub, conn: ServerConnection, name: str) -> None:
        self.hub = hub
        self.conn = conn
        self.name = name
        #: the feed's events after the first frame's point, not sent yet
        self.waiting: list[Item] = []
        #: the first frame covers the feed's events up to this place
        self.cut = 0
        #: a resume: the logged events up to `cut` told since the request (they go in it)
        self.held: list[Item] | None = None
        #: whether the first frame has gone (events go only after it)
        self.ready = False
        #: the sequence of the last logged event this connection has been sent
        self.seq = 0
        #: fell too far behind: nothing is kept for it until its socket drains, and then it
        #: gets a fresh snapshot
        self.behind = False
        self._covered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent_at = 0.0

    # ---- the first frame -----------------------------------------------------------------

    def begin(self, since: int | None) -> None:
        """Read the state (or, resuming, where the log is) now, between two submits, and
        send the first frame as soon as it is ready."""
        self.stop()
        runtime = self.hub.runtime
        self.ready = False
        self.behind = False
        self.waiting = []
        self.cut = runtime.submitted
        self._covered = asyncio.Event()
        if runtime.told >= self.cut:
            self._covered.set()
        upto = runtime.told_seq
        if since is not None and since <= upto and upto - since <= MAX_RESUME_EVENTS:
            self.held = []
            work = self._resume(since, upto, runtime.log.last_seq, runtime.state.live_part())
        else:
            self.held = None
            state = runtime.state.to_snapshot()
            state["idem"] = []  # WITHHELD_KINDS
            work = self._snapshot(state, runtime.state.live_part(), runtime.log.last_seq)
        self._task = asyncio.create_task(work, name=f"marrow-feed-{self.name}")
        self._task.add_done_callback(self._first_done)

    def _first_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the change feed for %s failed", self.name, exc_info=task.exception())
            self.hub.close(self.conn)

    async def _snapshot(self, state: dict[str, Any], live: dict[str, Any], seq: int) -> None:
        decider = self.hub.runtime.decider
        assert decider is not None
        frame = decider.frame("feed_snapshot", self.name, f"The state at event {seq}.",
                              seq=seq, state=state, live=live, runtime=about(self.hub.runtime))
        # The snapshot holds copies (State.to_snapshot), so it is encoded away from the loop.
        self._first(await asyncio.to_thread(encode, frame), seq)

    async def _resume(self, since: int, upto: int, seq: int, live: dict[str, Any]) -> None:
        rows = await self.hub.runtime.logged(since, upto, MAX_RESUME_EVENTS)
        if len(rows) != upto - since or sum(len(data) for _, _, data in rows) > MAX_RESUME_BYTES:
            self._restart()  # too much to resume (or a hole in the log): a snapshot is smaller
            return
        await self._covered.wait()  # the logged events submitted before the request, told
        texts = [event_text(n, kind, data) for n, kind, data in rows]
        texts += [item.text for item in self.held or ()]
        decider = self.hub.runtime.decider
        assert decider is not None
        head = decider.frame("feed_resume", self.name,
                             f"The events after {since}, up to {seq}.", since=since, seq=seq,
                             live=live, runtime=about(self.hub.runtime))
        self._first(with_events(head, texts), seq)

    def _restart(self) -> None:
        """Start over with a fresh snapshot (called from the task that gives up)."""
        self._task = None
        self.begin(None)

    def _first(self, text: str, seq: int) -> None:
        # The first frame may be far larger than the hub lets a socket queue (a big state):
        # the allowance keeps the hub from taking it for a peer that stopped reading.
        self.conn.marrow_feed_allowance = len(text)  # type: ignore[attr-defined]
        self.hub.write(self.conn, text)
        self._sent_at = asyncio.get_running_loop().time()
        self.seq = seq
        self.held = None
        self.ready = True
        self._schedule()

    # ---- the events after it -------------------------------------------------------------

    def offer(self, items: list[Item]) -> None:
        if self.behind:
            return  # the fresh snapshot it gets once it drains holds these
        for item in items:
            if item.place > self.cut:
                self.waiting.append(item)
            elif self.held is not None and item.seq is not None:
                self.held.append(item)  # logged after the resume's log read: it goes in it
            # else: in the snapshot (or, resuming, a transient event the live part holds)
        if self.hub.runtime.told >= self.cut:
            self._covered.set()
        if len(self.waiting) > MAX_WAITING_EVENTS:
            log.warning("the change feed for %s fell %d events behind; it gets a fresh "
                        "snapshot once it reads what it has", self.name, len(self.waiting))
            self.stop()
            self.waiting = []
            self.held = None
            self.ready = False
            self.behind = True
            self._timer = asyncio.get_running_loop().call_later(1 / FEEDS_PER_SECOND,
                                                                self._catch_up)
        elif self.ready:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self.waiting:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._sent_at + 1 / FEEDS_PER_SECOND - loop.time())
        self._timer = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        transport = self.conn.transport
        if not self.ready or not self.waiting or transport is None or transport.is_closing():
            return
        self._sent_at = asyncio.get_running_loop().time()
        if transport.get_write_buffer_size() > HOLD_BYTES:
            self._schedule()  # the peer has not read what it has: look again next time
            return
        self.conn.marrow_feed_allowance = 0  # type: ignore[attr-defined]
        items, self.waiting = self.waiting, []
        decider = self.hub.runtime.decider
        assert decider is not None
        for run in chunks(items, FRAME_BYTES):
            self.seq = max((item.seq for item in run if item.seq is not None), default=self.seq)
            head = decider.frame("feed_events", self.name, f"{len(run)} events.", seq=self.seq)
            self.hub.write(self.conn, with_events(head, [item.text for item in run]))

    def _catch_up(self) -> None:
        """Once a connection that fell behind has read what it has, start it afresh."""
        self._timer = None
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > HOLD_BYTES:
            self._timer = asyncio.get_running_loop().call_later(1 / FEEDS_PER_SECOND,
                                                                self._catch_up)
            return
        self.begin(None)

    def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _logged_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reading the event history failed", exc_info=task.exception())
