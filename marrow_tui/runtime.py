"""The runtime: state, the wire protocol, the event log and the timers, wired together.

This is the one object the console and headless mode use. It imports nothing from Textual.

The flow for every mutation, whoever asks: the protocol decides and applies events to the
in-memory state at once (so the next decision sees them, with no lock and no copy), the events
are queued in the log, and the replies and broadcasts wait in `_pending` until the log says
their events are committed. Subscribers to the change feed hear about events in the same order,
also only once they are durable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol

from .core.chat import MAX_HISTORY_BYTES
from .core.events import Event
from .core.kinds import LEASE_END_KINDS
from .core.state import OFFLINE_TTL, State
from .proc import stop_left_behind, tail_line
from .protocol.decider import Decider
from .protocol.frames import ALL, Call, Delivery, Outcome
from .store.eventlog import EventLog, StoreError

log = logging.getLogger("marrow.runtime")

SNAPSHOT_EVERY = 10_000
#: a background task is cancelled up to STOP_ATTEMPTS times, STOP_WAIT seconds apart, at stop
STOP_ATTEMPTS = 5
STOP_WAIT = 2.0


class Transport(Protocol):
    """Where deliveries go: the WebSocket server (and later, in-process sessions)."""

    def begin(self) -> None: ...

    def flush(self) -> None: ...

    def send_all(self, text: str) -> None: ...

    def send_to(self, names: frozenset[str], text: str) -> None: ...


Reply = Callable[[str], None]
Listener = Callable[[list[Event]], None]


@dataclass(slots=True)
class RuntimeOptions:
    state_dir: Path
    offline_ttl: float = OFFLINE_TTL
    snapshot_every: int = SNAPSHOT_EVERY
    max_claims_per_agent: int = 128
    #: the chat history's bound in bytes (as well as its 10,000 frames); one chat is capped at
    #: the smaller of this and 256 KiB
    chat_history_bytes: int = MAX_HISTORY_BYTES


class Runtime:
    def __init__(self, options: RuntimeOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.log = EventLog(options.state_dir, on_commit=self._committed)
        self.state = State(started_at=clock(), offline_ttl=options.offline_ttl,
                           chat_history_bytes=options.chat_history_bytes)
        self.state.claims.max_claims_per_agent = options.max_claims_per_agent
        self.decider: Decider | None = None
        self.transport: Transport | None = None
        self.restored_events = 0
        #: sessions found running in the log at start, ended as interrupted
        self.interrupted: list[dict[str, Any]] = []
        self._pending: deque[tuple[int, Outcome, Reply | None]] = deque()
        self._listeners: list[Listener] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._since_snapshot = 0
        self.failed = asyncio.Event()
        #: in-process participants by name (the console's operator)
        self.local: dict[str, LocalSession] = {}
        self._settle_waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: where the change feed is, for readers that number its events (hub/feed.py): how
        #: many events were submitted and how many told (transient ones too: both count every
        #: event, so a state read between two submits is exactly the first `submitted`
        #: events), and the sequence of the last logged event told
        self.submitted = 0
        self.told = 0
        self.told_seq = 0

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.log.open()
        try:
            snapshot, tail = await self.log.load()
            if snapshot is not None:
                self.state.load_snapshot(snapshot)
            count = 0
            async for event in tail:
                self.state.apply(event)
                count += 1
        except (KeyError, TypeError, ValueError) as exc:
            await self.log.close()
            raise StoreError(f"cannot rebuild state from {self.log.path}: {exc!r}") from None
        except BaseException:
            await self.log.close()
            raise
        self.restored_events = count
        self._since_snapshot = count
        self.told_seq = self.log.durable_seq
        self.state.after_restore()
        self.decider = Decider(self.state, self.log.hub_id, self.clock)
        self.log.start()
        self.subscribe(self._settle_conflicts)
        # Runs the last process left running ended with it; say so in the log at once, and
        # stop whatever processes they left behind (by their tag, and in the process groups
        # and sessions the log recorded for them).
        running = self.state.sessions.running()
        stopped = await stop_left_behind(running) if running else {}
        for session in running:  # what it said last, from its log (progress is not logged)
            if session.stdout and not session.last_line:
                session.last_line = tail_line(Path(session.stdout))
        ended = self.state.sessions.interrupt(self.clock(), stopped)
        for event in ended:
            self.state.apply(event)
        self.interrupted = [event.data for event in ended]
        self.submit(Outcome(events=ended))
        self.submit(self.decider.sweep())
        self._schedule()  # restored leases end on time even if nothing else happens

    @property
    def restored(self) -> str:
        """What the start rebuilt the state from, for people: "restored the snapshot at event
        10,000 + 42 events replayed", "42 events replayed", or "no events yet"."""
        replayed = f"{self.restored_events:,} event{'' if self.restored_events == 1 else 's'}"
        if self.log.snapshot_seq:
            return (f"restored the snapshot at event {self.log.snapshot_seq:,} + {replayed} "
                    "replayed")
        return f"{replayed} replayed" if self.restored_events else "no events yet"

    def history(self, limit: int,
                upto: int | None = None) -> Coroutine[Any, Any, list[tuple[float, Event]]]:
        """The last `limit` logged events the change feed has already told of (up to `upto`,
        when given), with when each was written: what a listener that subscribed just now
        missed (before a restart too).

        Called in the same step as `subscribe`, nothing is missed and nothing told twice: every
        event up to the log's durable sequence has been told, and none after it."""
        durable = self.log.durable_seq
        return self.log.recent(limit, durable if upto is None else min(upto, durable))

    def logged(self, after: int, upto: int,
               limit: int) -> Coroutine[Any, Any, list[tuple[int, str, str]]]:
        """The logged events with sequence in (after, upto] as (seq, kind, data as JSON), at
        most `limit` of them: what a reader of the change feed missed while it was away."""
        return self.log.between(after, upto, limit)

    async def stop(self) -> None:
        """Commit what is queued, write a snapshot, and close the log."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.decider is not None and not self.failed.is_set():
            self.log.request_snapshot(self.state.to_snapshot())
        await self.log.close()

    # ---- the command path ----------------------------------------------------------------

    def submit(self, outcome: Outcome, reply: Reply | None = None) -> None:
        """Persist `outcome`'s events and deliver its frames once they are durable."""
        durable = [event for event in outcome.events if not event.transient]
        if durable:
            watermark = self.log.append(durable, self.clock())
            self._since_snapshot += len(durable)
        else:
            watermark = self.log.last_seq
        self.submitted += len(outcome.events)
        if watermark <= self.log.durable_seq and not self._pending:
            self._release([(outcome, reply)])
        else:
            self._pending.append((watermark, outcome, reply))
        if outcome.events:
            self._schedule()
        if self._since_snapshot >= self.options.snapshot_every:
            self._since_snapshot = 0
            self.log.request_snapshot(self.state.to_snapshot())

    def handle(self, sender: str, frame: dict[str, Any], reply: Reply | None,
               operator: bool = False, proven: bool = False) -> None:
        assert self.decider is not None
        self.submit(self.decider.handle(sender, frame, operator, proven), reply)

    def join(self, name: str, on_frame: Callable[[dict[str, Any]], None],
             roles: tuple[str, ...] = ("operator",)) -> LocalSession:
        """Put an in-process participant (the console's operator) on the hub under `name`."""
        assert self.decider is not None
        if name in self.state.presence.online:
            raise ValueError(f"{name} is already online")
        session = LocalSession(self, name, on_frame)
        self.local[name] = session
        self.submit(self.decider.joined(name, roles, operator=True))
        return session

    def _leave(self, session: LocalSession) -> None:
        if self.local.get(session.name) is session and self.decider is not None:
            del self.local[session.name]
            self.submit(self.decider.left(session.name))

    def _committed(self, seq: int) -> None:
        if seq < 0:
            log.error("the event log failed; no further change can be acknowledged")
            self.failed.set()
            return
        pending = self._pending
        ready = []
        while pending and pending[0][0] <= seq:
            _, outcome, reply = pending.popleft()
            ready.append((outcome, reply))
        if ready:
            self._release(ready)
        if self._settle_waiters:
            waiting = []
            for watermark, future in self._settle_waiters:
                if watermark <= seq:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((watermark, future))
            self._settle_waiters = waiting

    async def settled(self) -> None:
        """Return once everything submitted so far is committed and its frames are sent."""
        target = self.log.last_seq
        if target <= self.log.durable_seq and not self._pending:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settle_waiters.append((target, future))
        await future

    def _release(self, ready: list[tuple[Outcome, Reply | None]]) -> None:
        """Send what a commit made true, then tell the change feed, in one batch each."""
        transport = self.transport
        if transport is not None:
            transport.begin()
        events: list[Event] = []
        try:
            for outcome, reply in ready:
                for delivery in outcome.deliveries:
                    self._deliver(transport, delivery, reply)
                events.extend(outcome.events)
        finally:
            if transport is not None:
                transport.flush()
        if events:
            self.told += len(events)
            self.told_seq += sum(1 for event in events if not event.transient)
            for listener in self._listeners:
                try:
                    listener(events)
                except Exception:
                    log.exception("a change-feed listener failed")

    def _deliver(self, transport: Transport | None, delivery: Delivery,
                 reply: Reply | None) -> None:
        audience = delivery.audience
        if audience is None:
            if reply is not None:
                reply(delivery.text)
            return
        if audience == ALL:
            # In-process sessions learn about state from the change feed, not from broadcasts.
            if transport is not None:
                transport.send_all(delivery.text)
            return
        assert isinstance(audience, frozenset)
        if transport is not None:
            transport.send_to(audience, delivery.text)
        for name in audience & self.local.keys():
            self.local[name].receive(delivery.text)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every event once it is durable (transient ones in order with them)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _settle_conflicts(self, events: list[Event]) -> None:
        """A lease ended: the conflicts that waited on it answer themselves (one place for
        every way a lease ends: a verb, the sweep, a run's own release; also after a restart)."""
        if not any(event.kind in LEASE_END_KINDS for event in events):
            return
        settled = self.state.settled_conflicts(self.clock())
        for event in settled:
            self.state.apply(event)
        if settled:
            self.submit(Outcome(events=settled))

    # ---- timers --------------------------------------------------------------------------

    def _schedule(self) -> None:
        deadline = self.state.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.clock())
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.decider is not None and not self.failed.is_set():
            self.submit(self.decider.sweep())
        self._schedule()

    def tick(self) -> None:
        """Sweep now (tests with a fake clock call this instead of waiting)."""
        self._fire()


class LocalSession:
    """An in-process participant on the hub: the console's operator.

    Its frames take the same command path as any socket's, with operator rights (it may
    release, hand off and extend anyone's lease). It hears its private replies and the chats
    addressed to it; what changes in the state it learns from the change feed.
    """

    def __init__(self, runtime: Runtime, name: str,
                 on_frame: Callable[[dict[str, Any]], None]) -> None:
        self.runtime = runtime
        self.name = name
        self.on_frame = on_frame

    def send(self, **frame: Any) -> None:
        frame.setdefault("sender", self.name)
        self.runtime.handle(self.name, frame, self.receive, operator=True)

    def receive(self, text: str) -> None:
        self.on_frame(json.loads(text))

    def close(self) -> None:
        self.runtime._leave(self)


class Producer:
    """A part of the runtime that makes events itself and serves verbs (the scheduler, the
    orchestrator). Its events take the command path like everyone's: applied to the state,
    then submitted, so the log has them before anyone hears of them. While it serves a verb
    they go into that verb's outcome instead, so the reply follows them."""

    runtime: Runtime

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        #: the verb being served, if any
        self._call: Call | None = None
        #: its background tasks (loops, watches), stopped by _stop_tasks
        self._tasks: list[asyncio.Task[Any]] = []

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A background task that is stopped with its producer and never fails silently."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)

        def done(task: asyncio.Task[None]) -> None:
            if task in self._tasks:
                self._tasks.remove(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: the %s task failed", type(self).__name__, name,
                          exc_info=task.exception())

        task.add_done_callback(done)

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = list(self._tasks), []
        for task in tasks:
            task.cancel()
        # A task that swallows its cancellation (in a library, say) is cancelled again rather
        # than waited on for ever, and named.
        for attempt in range(STOP_ATTEMPTS):
            _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT) if tasks else ((), ())
            if not pending:
                break
            for task in pending:
                task.cancel()
        else:
            log.error("%s: %s did not stop when cancelled", type(self).__name__,
                      ", ".join(sorted(task.get_name() for task in pending)))

    def _emit(self, event: Event) -> None:
        if self._call is not None:
            self._call.emit(event)
            return
        self.runtime.state.apply(event)
        self.runtime.submit(Outcome(events=[event]))

    def _serving(self, handler: Callable[[Call], None]) -> Callable[[Call], None]:
        """`handler` as a verb: the events it emits go with its reply."""
        def serve(call: Call) -> None:
            self._call = call
            try:
                handler(call)
            finally:
                self._call = None
        return serve
