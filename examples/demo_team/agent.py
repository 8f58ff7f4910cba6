#!/usr/bin/env python3
"""One scripted agent of the marrow-tui demo team, as a separate process on the wire.

Why a script and not a mock inside the console: a new user should see the console driven by
the same frames a real coding agent sends (register, claim, progress, handoff, release), over
a real socket, so whatever the demo shows is what they will see with their own agents. It
talks to the hub only through :class:`marrow_tui.hub.client.HubClient`, so it works against
any hub that speaks the synapse-channel vocabulary, marrow-tui's or synapse-channel's own.

Run it by hand::

    python examples/demo_team/agent.py --uri ws://127.0.0.1:8876 --name demo/planner --role planner
    python examples/demo_team/agent.py --uri ws://127.0.0.1:8876 --name demo/alice --role builder

The story of one round (task ids end in ``-r<round>``; three builders make it complete):

* the planner declares six tasks with dependencies and suggested owners on the blackboard,
  and chats the plan;
* builders claim the ready tasks suggested to them, with file scopes in worktree ``main``,
  post progress notes (note, usage), move the claim through working, save a checkpoint and
  finish (board done, release with evidence);
* ``refresh`` (scope ``src/auth/``) is claimed while ``login`` (``src/auth/login.py``) is held,
  on purpose: the hub refuses it with SCOPE_CONFLICT, and its builder says so in chat, posts a
  ``blocked`` note, sends ``wait_request`` for ``login`` and retries once ``login`` is released;
* ``routes`` is handed off half-way to the builder who is blocked, who picks it up and
  finishes it; ``login`` goes through ``input_required`` while its builder asks the planner;
* the planner reviews each release, marks what is finished done, and chats a summary.

Whatever happens, each agent also reacts to the operator: a lease handed to it is picked up,
a lease released or expired under it is dropped, a chat addressed to it gets a short reply.
SIGTERM or SIGINT releases what it holds and exits 0; a lost hub exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import os
import random
import re
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final


def _stop_before_joining(signum: int, frame: object) -> None:
    """SIGTERM before the event loop handles it: nothing is held yet, so exit cleanly."""
    raise SystemExit(0)


signal.signal(signal.SIGTERM, _stop_before_joining)

try:
    from marrow_tui.hub.client import (
        DEFAULT_URI,
        Frame,
        HubClient,
        HubConnectionError,
        HubTimeout,
        HubUnreachable,
        Matcher,
        Refused,
        build_matcher,
    )
except ImportError:  # run from a checkout without installing: the package is two levels up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from marrow_tui.hub.client import (
        DEFAULT_URI,
        Frame,
        HubClient,
        HubConnectionError,
        HubTimeout,
        HubUnreachable,
        Matcher,
        Refused,
        build_matcher,
    )

WORKTREE: Final = "main"
PROJECT: Final = "demo"
LEASE_SECONDS: Final = 900.0
"""A realistic lease for a task of a few minutes; the demo finishes long before it ends."""

CONNECT_PATIENCE: Final = 10.0
"""How long to keep trying to reach a hub that is still starting."""

SHUTDOWN_BUDGET: Final = 3.0
"""Time allowed to release leases on SIGTERM (DemoTeam waits longer before SIGKILL)."""

MAX_RETRIES: Final = 6
"""Claim attempts on a scope-blocked task before it is put back on the board for later."""

RATE_LIMITED: Final = "Rate limit exceeded."
RATE_LIMIT_RETRIES: Final = 4
LEASE_ENDED: Final = frozenset({"NOT_CLAIMED", "NOT_OWNER", "STALE_EPOCH"})
"""Refusal codes that mean the lease is no longer ours (``*_denied`` frames carry none)."""

DONE_STATUSES: Final = frozenset({"done", "cancelled"})
TASK_ID = re.compile(r"^(?P<key>[a-z]+)-r(?P<round>\d+)$")
SCOPE = re.compile(r"[Ss]cope:\s*(?:(?P<worktree>[\w.-]+):)?(?P<paths>\S+)")
CONFLICT = re.compile(r"conflicts with '(?P<task>[^']+)' held by (?P<owner>\S+?)[.,]?(?:\s|$)")


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedTask:
    """One task of the round template; every agent runs this file, so all share the plan."""

    key: str
    title: str
    paths: tuple[str, ...]
    after: tuple[str, ...]
    slot: int
    """Which builder (by sorted name) the planner suggests; modulo the team size."""
    notes: tuple[str, str]
    evidence: str

    def task_id(self, round_no: int) -> str:
        return f"{self.key}-r{round_no}"

    def description(self) -> str:
        return f"{self.title}. Scope: {WORKTREE}:{','.join(self.paths)}"


PLAN: Final = (
    PlannedTask("schema", "Session schema and migration",
                ("src/models/session.py", "migrations/0007_sessions.sql"), (), 0,
                ("read src/models/user.py: sessions hang off users.id",
                 "migration adds sessions(id, user_id, expires_at, revoked)"),
                "alembic upgrade head: ok; 14 model tests pass"),
    PlannedTask("login", "Login endpoint with rate limiting",
                ("src/auth/login.py", "src/auth/session.py"), ("schema",), 0,
                ("POST /login issues a session cookie; 5 attempts/min per IP",
                 "lockout after 10 failures; timing-safe password compare"),
                "pytest tests/auth -q: 23 passed"),
    PlannedTask("refresh", "Refresh-token rotation",
                ("src/auth/",), ("schema",), 2,
                ("refresh tokens are single-use; reuse revokes the family",
                 "rotation wired into src/auth/session.py"),
                "pytest tests/auth/test_refresh.py -q: 9 passed"),
    PlannedTask("routes", "REST routes for sessions",
                ("src/api/",), ("schema",), 1,
                ("GET/DELETE /sessions and /sessions/{id} stubbed",
                 "handlers return 404 for other users' sessions"),
                "pytest tests/api -q: 17 passed"),
    PlannedTask("tests", "Integration tests for sign-in",
                ("tests/integration/test_sessions.py",), ("login", "refresh", "routes"), 1,
                ("login -> refresh -> logout journey against a live app",
                 "covers lockout, token reuse and session listing"),
                "pytest tests/integration -q: 6 passed in 3.1s"),
    PlannedTask("notes", "Changelog and API docs",
                ("CHANGELOG.md", "docs/api/sessions.md"), ("tests",), 0,
                ("CHANGELOG: sessions, refresh rotation, lockout",
                 "docs/api/sessions.md lists the new routes with examples"),
                "mkdocs build --strict: ok"),
)
BY_KEY: Final = {task.key: task for task in PLAN}
SLOTS: Final = 1 + max(task.slot for task in PLAN)

HOLDER, COLLIDER = "login", "refresh"
"""COLLIDER's scope covers HOLDER's: it is claimed while HOLDER is held, to collide on purpose."""
HANDED: Final = "routes"
"""Handed off half-way to the builder who is blocked on COLLIDER."""
ASKER: Final = "login"
"""Goes through input_required while its builder asks the planner a question."""

DECISIONS: Final = (
    "24h sessions; refresh tokens rotate every 20h. Note it in the changelog.",
    "7 days, but revoke every session on a password change.",
    "12h for admins, 7 days for everyone else; keep it configurable.",
)


def round_of(task_id: str) -> tuple[str, int]:
    """(plan key, round) of a demo task id; ("", 0) for a task someone else declared."""
    match = TASK_ID.match(task_id)
    if match is None or match["key"] not in BY_KEY:
        return "", 0
    return match["key"], int(match["round"])


def scope_of(task: Frame) -> tuple[str, list[str]]:
    """The worktree and paths written in a board task's description, or a private sandbox.

    Tasks an operator declares get ``sandbox/<id>/`` so they never collide by accident.
    """
    match = SCOPE.search(str(task.get("description") or ""))
    if match is None:
        return WORKTREE, [f"sandbox/{task.get('task_id')}/"]
    paths = [p for p in match["paths"].split(",") if p]
    return match["worktree"] or WORKTREE, paths


def addressing(frame: Frame, name: str, roles: Sequence[str]) -> str | None:
    """How a chat concerns us: "direct" (the hub's addressing rules), "mention" (an @name in a
    broadcast) or None."""
    target = str(frame.get("target") or "all")
    patterns = [p.strip() for p in target.split(",") if p.strip()]
    if not patterns or any(p in ("all", "*") for p in patterns):
        return "mention" if f"@{name}" in str(frame.get("payload", "")) else None
    return "direct" if any(_reaches(p, who) for p in patterns for who in (name, *roles)) else None


def _reaches(pattern: str, who: str) -> bool:
    if pattern == who or who.startswith(pattern + "/"):
        return True
    return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(who, pattern)


# --------------------------------------------------------------------------- small parts


class Recent:
    """A set (or map) that forgets its oldest entries: the demo runs for hours."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._items: OrderedDict[str, str] = OrderedDict()

    def add(self, key: str, value: str = "") -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def get(self, key: str) -> str | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class BoardMirror:
    """The blackboard as this agent knows it: one snapshot, then every broadcast.

    Kept locally (and bounded) so agents never poll ``board_request``, whose reply grows with
    every round the demo has run.
    """

    LIMIT: Final = 400

    def __init__(self) -> None:
        self.tasks: OrderedDict[str, Frame] = OrderedDict()
        self.finished = Recent(4000)

    def update(self, task: Frame) -> None:
        task_id = str(task.get("task_id", ""))
        old = self.tasks.get(task_id)
        if not task_id or (old and _version(old) > _version(task)):
            return  # a broadcast older than the snapshot we already hold
        self.tasks[task_id] = task
        if task.get("status") in DONE_STATUSES:
            self.finished.add(task_id)
        else:
            self.finished.discard(task_id)
        while len(self.tasks) > self.LIMIT:
            self.tasks.popitem(last=False)

    def status(self, task_id: str) -> str | None:
        task = self.tasks.get(task_id)
        return str(task.get("status")) if task else None

    def is_done(self, task_id: str) -> bool:
        status = self.status(task_id)
        return status in DONE_STATUSES if status is not None else task_id in self.finished

    def ready(self, task: Frame) -> bool:
        deps = task.get("depends_on") or []
        return task.get("status") == "open" and all(self.is_done(str(d)) for d in deps)

    def ready_for(self, name: str, skip: Callable[[str], bool]) -> Frame | None:
        """The first ready task suggested to us (or to nobody) that we are not skipping."""
        for task_id, task in self.tasks.items():
            owner = str(task.get("suggested_owner") or "")
            if owner in ("", name) and not skip(task_id) and self.ready(task):
                return task
        return None


def _version(task: Frame) -> int:
    version = task.get("version")
    return version if isinstance(version, int) else 0


class Pace:
    """Pauses between steps, so a person can follow; ``--pace 0`` for tests."""

    def __init__(self, seconds: float, rng: random.Random) -> None:
        self.seconds = seconds
        self.rng = rng

    async def step(self) -> None:
        await asyncio.sleep(self.seconds * self.rng.uniform(0.5, 2.0) if self.seconds else 0)

    def bound(self, floor: float, steps: float) -> float:
        """How long to wait for a teammate: `steps` paces, never less than `floor` seconds."""
        return max(floor, steps * self.seconds)

    @property
    def idle(self) -> float:
        """How long an idle loop sleeps when nothing wakes it."""
        return max(0.25, self.seconds)


class DemoClient(HubClient):
    """HubClient plus a release that carries receipt lists, and retries when rate-limited.

    ``HubClient.release`` cannot send ``evidence``/``changed_files`` yet; this builds the same
    request and reply matcher with them added, rather than speaking the wire by hand.
    """

    async def _request(self, fields: Frame, match: Matcher, timeout: float | None) -> Frame:
        """A rate-limited frame was dropped by the hub, so sending it again is safe."""
        for attempt in range(RATE_LIMIT_RETRIES):
            try:
                return await super()._request(fields, match, timeout)
            except Refused as exc:
                if exc.code or exc.text != RATE_LIMITED or attempt == RATE_LIMIT_RETRIES - 1:
                    raise
            await asyncio.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    async def release_with_receipt(
        self, task_id: str, *, epoch: int | None = None, evidence: Sequence[str] = (),
        changed_files: Sequence[str] = (), timeout: float | None = None,
    ) -> Frame:
        fields: Frame = {"type": "release", "task_id": task_id, "evidence": list(evidence),
                         "changed_files": list(changed_files)}
        if epoch is not None:
            fields["epoch"] = epoch
        match = build_matcher(self._owned("release_granted", task_id), ["release_denied"], task_id)
        return await self._request(fields, match, timeout)


class TaskLost(Exception):
    """Our lease on a task ended under us (released, expired, handed away, fenced): move on."""


@dataclass
class Deferred:
    """A task refused for its scope, waiting for the task that holds the overlap."""

    task: Frame
    blocker: str
    retry_at: float
    attempts: int = 1


@dataclass
class Handed:
    """A lease someone handed to us, acknowledged and waiting to be finished."""

    task_id: str
    epoch: int | None
    giver: str
    checkpoint: str
    paths: list[str] = field(default_factory=list)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that lands as the event fires, and a SIGTERM must always stop the loops.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def log(name: str, text: str) -> None:
    """One line per notable step on stderr (DemoTeam sends it to a per-agent log file)."""
    print(f"{time.strftime('%H:%M:%S')} {name} {text}", file=sys.stderr, flush=True)


def _note(frame: Frame) -> Frame:
    """The note a ledger_progress_posted frame carries."""
    note = frame.get("note")
    return note if isinstance(note, dict) else {}


def _epoch(frame: Frame) -> int | None:
    epoch = frame.get("epoch")
    return epoch if isinstance(epoch, int) else None


# --------------------------------------------------------------------------- the agent


class Agent:
    """What every demo agent does: watch the hub, react to the operator, release on exit."""

    role = "agent"

    def __init__(self, hub: DemoClient, pace: Pace) -> None:
        self.hub = hub
        self.name = hub.name
        self.pace = pace
        self.rng = pace.rng
        self.board = BoardMirror()
        self.held: dict[str, int | None] = {}
        self.leaving = Recent()
        self.lost = Recent()
        self.claimed = Recent()
        self.released = Recent()
        self.blocked_by = Recent()
        self.wake = asyncio.Event()
        self.answered = asyncio.Event()
        self.reactions: asyncio.Queue[Frame] = asyncio.Queue(maxsize=32)
        self.doing = ""
        self.stopping = False

    def say(self, text: str) -> None:
        log(self.name, text)

    # ----------------------------------------------------------------- life cycle

    async def run(self) -> None:
        """Watch, react and work until cancelled or the hub goes away."""
        queue = self.hub.subscribe(maxsize=4096)
        await self.release_leftovers()
        await self.load_board()
        jobs = (self.watch(queue), self.react(), self.main())
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)

    async def main(self) -> None:
        raise NotImplementedError

    async def release_leftovers(self) -> None:
        """Leases this name still holds from an earlier session are not ours to finish. One
        granted or handed to us since we joined is ours: the hub says so in a frame that
        comes before its answer to our `state`, so those frames are read first."""
        recent = self.hub.subscribe(maxsize=0)
        try:
            snapshot = (await self.hub.state()).get("snapshot") or {}
        finally:
            self.hub.unsubscribe(recent)
        ours_now = set()
        while not recent.empty():
            frame = recent.get_nowait()
            if (frame.get("type") in ("claim_granted", "handoff_granted")
                    and frame.get("owner") == self.name):
                ours_now.add(str(frame.get("task_id")))
        for claim in snapshot.get("active_claims") or []:
            if claim.get("owner") == self.name and str(claim.get("task_id")) not in ours_now:
                task_id = str(claim.get("task_id"))
                self.leaving.add(task_id)
                with contextlib.suppress(Refused):
                    await self.hub.release(task_id)
                    self.say(f"released {task_id}, left over from an earlier session")

    async def load_board(self) -> None:
        board = (await self.hub.board()).get("board") or {}
        for task in board.get("tasks") or []:
            self.board.update(task)

    async def shutdown(self) -> None:
        """Release every lease the hub says we hold, and reopen its board task."""
        snapshot = (await self.hub.state(timeout=SHUTDOWN_BUDGET)).get("snapshot") or {}
        mine = [str(c.get("task_id")) for c in snapshot.get("active_claims") or []
                if c.get("owner") == self.name]
        for task_id in mine:
            self.leaving.add(task_id)
            with contextlib.suppress(Refused):
                await self.hub.release(task_id, timeout=SHUTDOWN_BUDGET)
            if self.board.status(task_id) not in (None, *DONE_STATUSES):
                with contextlib.suppress(Refused):
                    await self.hub.board_update(task_id, status="open", timeout=SHUTDOWN_BUDGET)
        self.say(f"stopping; released {len(mine)} lease(s)")

    # ----------------------------------------------------------------- watching

    async def watch(self, queue: asyncio.Queue[Frame]) -> None:
        """Fold every broadcast into what we know; the only reader of the subscription."""
        while not self.stopping:
            try:
                async with asyncio.timeout(1.0):
                    frame = await queue.get()
            except TimeoutError:
                if not self.hub.connected:
                    await self.hub.who()  # raises the reason the session ended
                continue
            self.observe(frame)

    def observe(self, frame: Frame) -> None:
        handler = {
            "ledger_task_posted": self.on_board,
            "ledger_task_updated": self.on_board,
            "claim_granted": self.on_claim,
            "release_granted": self.on_release,
            "lease_expired": self.on_release,
            "handoff_granted": self.on_handoff,
            "ledger_progress_posted": self.on_progress,
            "chat": self.on_chat,
        }.get(str(frame.get("type")))
        if handler is not None:
            handler(frame)
            self.wake.set()

    def on_board(self, frame: Frame) -> None:
        task = frame.get("task")
        if isinstance(task, dict):
            self.board.update(task)

    def on_claim(self, frame: Frame) -> None:
        task_id, owner = str(frame.get("task_id")), str(frame.get("owner"))
        self.claimed.add(task_id, owner)
        if owner == self.name:
            self.held[task_id] = _epoch(frame)
            self.leaving.discard(task_id)

    def on_release(self, frame: Frame) -> None:
        task_id = str(frame.get("task_id"))
        self.released.add(task_id)
        if frame.get("owner") == self.name:
            by = frame.get("released_by") or ("expiry" if frame.get("type") == "lease_expired"
                                               else "someone")
            self.drop(task_id, f"{task_id} was released under me ({by}); moving on")

    def on_handoff(self, frame: Frame) -> None:
        task_id = str(frame.get("task_id"))
        owner, giver = frame.get("owner"), frame.get("previous_owner")
        if owner == self.name and giver != self.name:
            self.held[task_id] = _epoch(frame)
            self.leaving.discard(task_id)
            self.lost.discard(task_id)
            self.queue_reaction(frame)
        elif giver == self.name:
            self.drop(task_id, f"{task_id} was handed from me to {owner}; moving on")

    def on_progress(self, frame: Frame) -> None:
        note = _note(frame)
        if note.get("kind") == "blocked":
            self.blocked_by.add(str(note.get("task_id")), str(note.get("author")))

    def on_chat(self, frame: Frame) -> None:
        """Reply to what is sent to us, and to questions that @mention us; never to a reply."""
        how = addressing(frame, self.name, [self.role])
        payload = str(frame.get("payload", ""))
        if frame.get("sender") == self.name or how is None:
            return
        if payload.startswith("re:"):
            self.answered.set()  # answers are never answered, so agents cannot loop
        elif how == "direct" or "?" in payload:
            self.queue_reaction(frame)

    def queue_reaction(self, frame: Frame) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.reactions.put_nowait(frame)

    def drop(self, task_id: str, why: str) -> None:
        """Forget a lease; say so only when its end was not our own doing."""
        if task_id not in self.held:
            return
        del self.held[task_id]
        if task_id not in self.leaving:
            self.lost.add(task_id)
            self.say(why)

    # ----------------------------------------------------------------- reacting

    async def react(self) -> None:
        """Answer chat and pick up handed leases, in arrival order, one at a time."""
        while not self.stopping:
            frame = await self.reactions.get()
            try:
                if frame.get("type") == "handoff_granted":
                    await self.pick_up(frame)
                else:
                    await self.reply(frame)
            except (HubTimeout, Refused) as exc:
                self.say(f"could not react to a {frame.get('type')}: {exc}")

    async def reply(self, frame: Frame) -> None:
        sender = str(frame.get("sender"))
        await self.pace.step()
        text = f"re: @{sender} {self.answer(str(frame.get('payload', '')))}"
        broadcast = frame.get("target") in ("all", "*", "", None)
        await self.hub.send(text, target="all" if broadcast else sender)
        self.say(f"answered {sender}")

    def answer(self, question: str) -> str:
        if self.doing:
            return f"{self.doing}; a few more steps, I'll release it as soon as it's done"
        return "nothing in hand; watching the board for ready tasks"

    async def pick_up(self, frame: Frame) -> None:
        """Acknowledge a handed lease at once (status, note, chat); finishing comes later."""
        task_id, giver = str(frame.get("task_id")), str(frame.get("previous_owner"))
        epoch, note = _epoch(frame), str(frame.get("note") or "")
        self.say(f"picked up {task_id} from {giver}")
        # A claim already done or failed cannot move back to working; it is finished anyway.
        with contextlib.suppress(TaskLost, Refused):
            await self.check(task_id, self.hub.task_update(
                task_id, "working", note=f"picked up from {giver}", epoch=epoch))
        await self.hub.progress(task_id, f"picked up {task_id} from {giver}"
                                + (f": {note}" if note else ""))
        await self.hub.send(f"@{giver} got {task_id}, I'll take it from here")
        handed = Handed(task_id, epoch, giver, str(frame.get("checkpoint") or ""),
                        [str(p) for p in frame.get("paths") or []])
        await self.on_handed(handed)

    async def on_handed(self, handed: Handed) -> None:
        await self.finish_handed(handed)

    async def finish_handed(self, handed: Handed) -> None:
        task_id, epoch = handed.task_id, handed.epoch
        try:
            self.ensure(task_id)
            self.doing = f"finishing {task_id} (handed over by {handed.giver})"
            start = f"resuming from checkpoint: {handed.checkpoint}" if handed.checkpoint \
                else f"read {handed.giver}'s notes on {task_id}"
            await self.hub.progress(task_id, start)
            await self.pace.step()
            await self.check(task_id, self.hub.checkpoint(task_id, "step 3/3: finishing", epoch))
            await self.pace.step()
            await self.report_usage(task_id)
            plan = BY_KEY.get(round_of(task_id)[0])
            evidence = plan.evidence if plan else "checked by hand"
            await self.complete(task_id, epoch, evidence, handed.paths)
        except TaskLost:
            self.say(f"lost {task_id} while finishing it; moving on")
        except (HubTimeout, Refused) as exc:
            await self.abandon(task_id, exc)
        finally:
            self.doing = ""

    # ----------------------------------------------------------------- steps on a lease

    def ensure(self, task_id: str) -> None:
        """Stop working on a task the moment its lease is no longer ours."""
        if task_id in self.lost or task_id not in self.held:
            raise TaskLost(task_id)

    async def check(self, task_id: str, call: Coroutine[Any, Any, Frame]) -> Frame:
        """A request on our lease; a refusal means it ended under us (released, fenced)."""
        try:
            self.ensure(task_id)
        except TaskLost:
            call.close()
            raise
        try:
            return await call
        except Refused as exc:
            if exc.code not in LEASE_ENDED and not exc.type.endswith("_denied"):
                raise
            self.say(f"hub refused a step on {task_id}: {exc}")
            raise TaskLost(task_id) from None

    async def report_usage(self, task_id: str) -> None:
        tokens_in = self.rng.uniform(6, 40)
        tokens_out = tokens_in * self.rng.uniform(0.1, 0.3)
        cost = (tokens_in * 3 + tokens_out * 15) / 1000
        await self.hub.progress(
            task_id, f"tokens in={tokens_in:.1f}k out={tokens_out:.1f}k, cost ${cost:.2f}", "usage")

    async def complete(self, task_id: str, epoch: int | None, evidence: str,
                       paths: Sequence[str]) -> None:
        """Claim done, board done, then release with evidence (so reviewers see it done)."""
        await self.check(task_id, self.hub.task_update(task_id, "done", note=evidence,
                                                       epoch=epoch))
        await self.pace.step()
        await self.set_board(task_id, "done")
        self.leaving.add(task_id)
        try:
            await self.check(task_id, self.hub.release_with_receipt(
                task_id, epoch=epoch, evidence=[evidence], changed_files=list(paths)))
        finally:
            self.held.pop(task_id, None)
        self.say(f"finished {task_id}")

    async def abandon(self, task_id: str, exc: Exception) -> None:
        """A step failed for another reason (rate limit, no answer): never keep a lease idle."""
        self.say(f"giving up {task_id}: {exc}")
        self.leaving.add(task_id)
        with contextlib.suppress(Refused, HubTimeout):
            await self.hub.release(task_id)
            await self.set_board(task_id, "open")
        self.held.pop(task_id, None)

    async def set_board(self, task_id: str, status: str) -> None:
        """Board status for a task on the board (leases and board tasks are separate)."""
        if self.board.status(task_id) in (None, status):
            return
        try:
            await self.hub.board_update(task_id, status=status)
        except Refused as exc:
            self.say(f"board update of {task_id} refused: {exc}")


# --------------------------------------------------------------------------- builder


class Builder(Agent):
    """Takes ready tasks suggested to it, collides on purpose, hands off, finishes."""

    role = "builder"

    def __init__(self, hub: DemoClient, pace: Pace) -> None:
        super().__init__(hub, pace)
        self.inbox: deque[Handed] = deque(maxlen=16)
        self.deferred: dict[str, Deferred] = {}
        self.not_before = Recent()
        self.retry_after = pace.bound(3.0, 10)

    async def main(self) -> None:
        while not self.stopping:
            self.wake.clear()
            try:
                worked = await self.work_once()
            except (HubTimeout, Refused) as exc:
                self.say(f"skipping a step the hub did not accept: {exc}")
                worked = False
            if not worked:
                await wait_event(self.wake, self.pace.idle)

    async def work_once(self) -> bool:
        """Do the most urgent job: a handed lease, a scope-blocked retry, then a ready task."""
        if self.inbox:
            await self.finish_handed(self.inbox.popleft())
            return True
        due = self.due_retry()
        if due is not None:
            await self.retry(due)
            return True
        task = self.board.ready_for(self.name, self.skipping)
        if task is not None:
            await self.take(task)
            return True
        return False

    async def on_handed(self, handed: Handed) -> None:
        self.inbox.append(handed)
        self.wake.set()

    def skipping(self, task_id: str) -> bool:
        until = self.not_before.get(task_id)
        return task_id in self.deferred or (until is not None and time.monotonic() < float(until))

    def due_retry(self) -> Deferred | None:
        now = time.monotonic()
        for deferred in self.deferred.values():
            if deferred.blocker in self.released or now >= deferred.retry_at:
                return deferred
        return None

    async def take(self, task: Frame) -> None:
        task_id = str(task["task_id"])
        key, round_no = round_of(task_id)
        if key == COLLIDER:  # race the holder on purpose: claim only once it holds its scope
            holder = BY_KEY[HOLDER].task_id(round_no)
            await self.until(lambda: holder in self.claimed, self.pace.bound(5.0, 10))
        worktree, paths = scope_of(task)
        try:
            granted = await self.hub.claim(task_id, paths, worktree, ttl_seconds=LEASE_SECONDS,
                                           note=str(task.get("title", "")))
        except Refused as exc:
            await self.refused(task, exc)
            return
        self.say(f"claimed {task_id} {worktree}:{','.join(paths)}")
        self.held[task_id] = _epoch(granted)
        await self.work(task, _epoch(granted), paths)

    async def refused(self, task: Frame, exc: Refused) -> None:
        task_id = str(task["task_id"])
        if exc.code == "SCOPE_CONFLICT":
            await self.collide(task, exc)
            return
        self.say(f"claim of {task_id} refused ({exc.code}); will look again later")
        self.not_before.add(task_id, str(time.monotonic() + self.retry_after))

    async def collide(self, task: Frame, exc: Refused) -> None:
        """Say so in chat, post a blocked note, wait for the holder's task, retry later."""
        task_id = str(task["task_id"])
        match = CONFLICT.search(exc.text)
        other, holder = (match["task"], match["owner"]) if match else ("", "another agent")
        worktree, paths = scope_of(task)
        scope = f"{worktree}:{','.join(paths)}"
        previous = self.deferred.get(task_id)
        if previous is None:  # say it once; a retry that finds it still held stays quiet
            self.say(f"SCOPE_CONFLICT on {task_id}: {other} held by {holder}")
            await self.hub.send(f"@{holder} {task_id} needs {scope}, which overlaps your "
                                f"{other} (SCOPE_CONFLICT). How long will you hold it?")
            await self.hub.progress(task_id, f"SCOPE_CONFLICT: {scope} overlaps {other} held by "
                                             f"{holder}; waiting for it", "blocked")
            await self.set_board(task_id, "blocked")
        else:
            await self.hub.progress(task_id, f"still blocked by {other} ({holder})", "blocked")
        retry_at = time.monotonic() + self.retry_after
        self.released.discard(other)  # it is held right now: only a later release counts
        if other:
            try:
                await self.hub.wait(other)
            except Refused as denied:  # released meanwhile, or waiting would deadlock
                self.say(f"wait for {other} refused ({denied.code})")
                retry_at = time.monotonic() if denied.code == "NOT_CLAIMED" else retry_at
        attempts = previous.attempts + 1 if previous else 1
        self.deferred[task_id] = Deferred(task, other, retry_at, attempts)

    async def retry(self, deferred: Deferred) -> None:
        task = deferred.task
        task_id = str(task["task_id"])
        worktree, paths = scope_of(task)
        try:
            granted = await self.hub.claim(task_id, paths, worktree, ttl_seconds=LEASE_SECONDS,
                                           note=str(task.get("title", "")))
        except Refused as exc:
            await self.still_blocked(deferred, exc)
            return
        del self.deferred[task_id]
        self.held[task_id] = _epoch(granted)
        self.say(f"claimed {task_id} after {deferred.blocker or 'the conflict'} cleared")
        await self.hub.progress(task_id, f"unblocked: {deferred.blocker} is released, starting")
        await self.work(task, _epoch(granted), paths)

    async def still_blocked(self, deferred: Deferred, exc: Refused) -> None:
        task_id = str(deferred.task["task_id"])
        if exc.code == "SCOPE_CONFLICT" and deferred.attempts < MAX_RETRIES:
            await self.collide(deferred.task, exc)
            return
        del self.deferred[task_id]
        self.say(f"giving up on {task_id} for now ({exc.code})")
        await self.hub.progress(task_id, f"still refused ({exc.code}); back on the board")
        await self.set_board(task_id, "open")
        self.not_before.add(task_id, str(time.monotonic() + self.retry_after))

    async def work(self, task: Frame, epoch: int | None, paths: list[str]) -> None:
        """The life of one lease, from working to released (or handed off)."""
        task_id = str(task["task_id"])
        key, round_no = round_of(task_id)
        plan = BY_KEY.get(key)
        notes = plan.notes if plan else (f"reading {paths[0]}", "change made, tests added")
        self.doing = f"working on {task_id} ({WORKTREE}:{','.join(paths)})"
        try:
            await self.set_board(task_id, "in_progress")
            await self.pace.step()
            await self.check(task_id, self.hub.task_update(task_id, "working", note=notes[0],
                                                           epoch=epoch))
            await self.pace.step()
            await self.hub.progress(task_id, notes[0])
            await self.pace.step()
            if key == ASKER:
                await self.ask(task_id, epoch)
            if key == HANDED and await self.hand_off(task_id, epoch):
                return
            await self.check(task_id, self.hub.checkpoint(task_id, f"step 2/3: {notes[0]}",
                                                          epoch))
            await self.pace.step()
            await self.hub.progress(task_id, notes[1])
            await self.pace.step()
            await self.report_usage(task_id)
            await self.pace.step()
            if key == HOLDER:  # let the collision happen before the overlap goes away
                collider = BY_KEY[COLLIDER].task_id(round_no)
                await self.until(lambda: collider in self.blocked_by, self.pace.bound(5.0, 10))
            await self.complete(task_id, epoch, plan.evidence if plan else "done", paths)
        except TaskLost:
            self.say(f"lost {task_id}; moving on")
        except (HubTimeout, Refused) as exc:
            await self.abandon(task_id, exc)
        finally:
            self.doing = ""

    async def ask(self, task_id: str, epoch: int | None) -> None:
        """input_required while a question goes to the planner; working again on the answer."""
        await self.check(task_id, self.hub.task_update(
            task_id, "input_required", note="needs a decision on session lifetime", epoch=epoch))
        self.answered.clear()
        await self.hub.send(f"{task_id}: session lifetime, 24h or 7 days?", target="planner")
        self.say(f"{task_id} needs input; asked the planner")
        await wait_event(self.answered, self.pace.bound(3.0, 5))
        await self.pace.step()
        await self.check(task_id, self.hub.task_update(
            task_id, "working", note="decision in, carrying on", epoch=epoch))

    async def hand_off(self, task_id: str, epoch: int | None) -> bool:
        """Hand the lease to the builder blocked on the collision (or any other builder)."""
        round_no = round_of(task_id)[1]
        collider = BY_KEY[COLLIDER].task_id(round_no)
        await self.until(lambda: collider in self.blocked_by, self.pace.bound(5.0, 10))
        blocked = self.blocked_by.get(collider)
        to = blocked if blocked and blocked != self.name else await self.other_builder()
        if not to:
            return False
        await self.check(task_id, self.hub.checkpoint(
            task_id, "step 1/3: routes stubbed, handlers next", epoch))
        self.leaving.add(task_id)
        try:
            await self.hub.handoff(task_id, to, epoch=epoch, note=(
                f"you're blocked on {collider}; can you finish the handlers? "
                "the checkpoint says where I stopped"))
        except Refused as exc:
            self.leaving.discard(task_id)
            self.say(f"handoff of {task_id} to {to} refused: {exc}")
            return False
        self.held.pop(task_id, None)
        self.say(f"handed {task_id} to {to}")
        await self.hub.send(f"handed {task_id} to @{to} while they wait on {collider}; "
                            "I'll take the integration tests next")
        return True

    async def other_builder(self) -> str | None:
        """The next online builder after us in name order, for a handoff with no obvious taker."""
        roles = (await self.hub.who()).get("agent_roles") or {}
        builders = sorted(n for n, r in roles.items() if "builder" in (r or []) and n != self.name)
        later = [n for n in builders if n > self.name]
        return (later or builders)[0] if builders else None

    async def until(self, condition: Callable[[], bool], bound: float) -> bool:
        """Wait, woken by broadcasts, until `condition` holds or `bound` seconds pass."""
        deadline = time.monotonic() + bound
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wake.clear()
            if condition():
                break
            await wait_event(self.wake, min(left, self.pace.idle))
        return True


# --------------------------------------------------------------------------- planner


@dataclass
class RoundStats:
    number: int
    started: float = field(default_factory=time.monotonic)
    collisions: int = 0
    handoffs: int = 0
    reviewed: int = 0


class Planner(Agent):
    """Declares a round of work, reviews what builders release, and sums the round up."""

    role = "planner"

    def __init__(self, hub: DemoClient, pace: Pace) -> None:
        super().__init__(hub, pace)
        self.stats = RoundStats(0)
        self.reviews: deque[Frame] = deque(maxlen=64)

    async def main(self) -> None:
        round_no = await self.first_round()
        while not self.stopping:
            try:
                await self.play_round(round_no)
            except (HubTimeout, Refused) as exc:
                self.say(f"round {round_no} cut short, the hub did not accept a step: {exc}")
            round_no += 1
            await asyncio.sleep(self.pace.bound(0.5, 3))

    async def play_round(self, round_no: int) -> None:
        builders = await self.gather_builders()
        self.stats = RoundStats(round_no)
        await self.declare_round(round_no, builders)
        await self.watch_round(round_no)
        await self.sum_up(round_no)

    async def first_round(self) -> int:
        """After the newest round already on the board, so a kept hub gets fresh ids."""
        latest = max((round_of(t)[1] for t in self.board.tasks), default=0)
        stale = [t for t, task in self.board.tasks.items()
                 if round_of(t)[1] and task.get("status") not in DONE_STATUSES]
        for task_id in stale[:60]:
            await self.set_board(task_id, "cancelled")
        if stale:
            self.say(f"cancelled {len(stale)} unfinished task(s) of an earlier demo")
        return latest + 1

    async def gather_builders(self) -> list[str]:
        """Online builders by name; waits a little for the whole team, then takes who is there."""
        deadline = time.monotonic() + self.pace.bound(3.0, 3)
        while not self.stopping:
            who = await self.hub.who()
            online = set(who.get("online_agents") or [])
            roles = who.get("agent_roles") or {}
            builders = sorted(n for n in online if "builder" in (roles.get(n) or []))
            if len(builders) >= SLOTS or (builders and time.monotonic() > deadline):
                return builders
            await asyncio.sleep(self.pace.idle)
        raise asyncio.CancelledError

    async def declare_round(self, round_no: int, builders: list[str]) -> None:
        owners = {task.key: builders[task.slot % len(builders)] for task in PLAN}
        for task in PLAN:  # in one go, as a planner writes a plan, so builders see it whole
            await self.hub.declare(
                task.task_id(round_no), task.title, task.description(),
                depends_on=[BY_KEY[k].task_id(round_no) for k in task.after],
                suggested_owner=owners[task.key], project=PROJECT)
        self.say(f"declared round {round_no} for {', '.join(builders)}")
        shares = "; ".join(f"{b.split('/')[-1]}: "
                           + ", ".join(k for k, o in owners.items() if o == b) for b in builders)
        await self.hub.send(f"Round {round_no}: {len(PLAN)} tasks on the board "
                            f"(schema first, then login/refresh/routes, tests, notes). {shares}")

    async def watch_round(self, round_no: int) -> None:
        """Review releases as they come, until every task is done or the round runs too long."""
        ids = [task.task_id(round_no) for task in PLAN]
        deadline = time.monotonic() + self.pace.bound(60.0, 150)
        while not all(self.settled(t) for t in ids):
            self.wake.clear()
            if self.reviews:
                await self.review(self.reviews.popleft())
                continue
            if time.monotonic() > deadline:
                await self.cancel_rest(ids)
                return
            await wait_event(self.wake, self.pace.idle)
        while self.reviews:
            await self.review(self.reviews.popleft())

    def settled(self, task_id: str) -> bool:
        """Cancelled, or done and released (so its review is not left for the next round)."""
        status = self.board.status(task_id)
        return status == "cancelled" or (status == "done" and task_id in self.released)

    def observe(self, frame: Frame) -> None:
        super().observe(frame)
        kind, task_id = frame.get("type"), str(frame.get("task_id", ""))
        if round_of(task_id)[1] != self.stats.number:
            return
        if kind in ("release_granted", "lease_expired"):
            self.reviews.append(frame)
        elif kind == "handoff_granted":
            self.stats.handoffs += 1
        elif kind == "ledger_progress_posted" and _note(frame).get("kind") == "blocked":
            first = str(_note(frame).get("text", "")).startswith("SCOPE_CONFLICT")
            self.stats.collisions += 1 if first else 0

    async def review(self, frame: Frame) -> None:
        """Mark a released task done when it came with evidence, or put it back on the board."""
        task_id = str(frame.get("task_id"))
        receipt = frame.get("receipt") or {}
        evidence = [str(e) for e in receipt.get("evidence") or []]
        if evidence:
            self.stats.reviewed += 1
            await self.set_board(task_id, "done")
            await self.hub.progress(task_id, f"reviewed: {evidence[0]}", "assessment")
            return
        if not self.board.is_done(task_id):
            await self.set_board(task_id, "open")
            why = ("its lease expired" if frame.get("type") == "lease_expired"
                   else f"released by {frame.get('released_by') or 'its owner'}")
            await self.hub.progress(task_id, f"{why} with no evidence; reopened")

    async def cancel_rest(self, ids: Iterable[str]) -> None:
        rest = [t for t in ids if not self.board.is_done(t)]
        for task_id in rest:
            await self.set_board(task_id, "cancelled")
        self.say(f"round ran long; cancelled {', '.join(rest)}")
        await self.hub.send(f"Round {self.stats.number} ran long: cancelled {', '.join(rest)}.")

    async def sum_up(self, round_no: int) -> None:
        s = self.stats
        ids = [task.task_id(round_no) for task in PLAN]
        done = sum(self.board.status(t) == "done" for t in ids)
        seconds = time.monotonic() - s.started
        self.say(f"round {round_no} over: {done}/{len(ids)} done")
        await self.hub.send(
            f"Round {round_no} done in {seconds:.0f}s: {done}/{len(ids)} tasks done, "
            f"{s.reviewed} reviewed, {s.collisions} scope collision(s), {s.handoffs} handoff(s). "
            f"Next round in a moment.")

    def answer(self, question: str) -> str:
        if "lifetime" in question.lower():
            return self.rng.choice(DECISIONS)
        s = self.stats
        ids = [task.task_id(s.number) for task in PLAN]
        done = sum(self.board.is_done(t) for t in ids)
        return (f"round {s.number}: {done}/{len(ids)} tasks done, {s.collisions} collision(s), "
                f"{s.handoffs} handoff(s) so far")


# --------------------------------------------------------------------------- the process


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="One scripted agent of the marrow-tui demo team (see README.md beside me).")
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"hub address (default {DEFAULT_URI})")
    parser.add_argument("--name", required=True, help="agent name, e.g. demo/alice")
    parser.add_argument("--role", choices=("planner", "builder"), default="builder")
    parser.add_argument("--token", default=os.environ.get("MARROW_TOKEN") or None,
                        help="hub token (default: $MARROW_TOKEN)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the small randomness")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="seconds between steps, jittered x0.5-2 (default 1; 0 for tests)")
    args = parser.parse_args(argv)
    if not args.pace >= 0:
        parser.error("--pace must be 0 or more seconds")
    return args


async def connect(client: DemoClient, stop: asyncio.Event) -> bool:
    """Connect, retrying for a little while in case the hub is still starting."""
    deadline = time.monotonic() + CONNECT_PATIENCE
    while not stop.is_set():
        try:
            await client.connect()
            return True
        except HubUnreachable:
            if time.monotonic() > deadline:
                raise
        await wait_event(stop, 0.5)
    return False


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = DemoClient(args.uri, args.name, token=args.token, roles=[args.role])
    try:
        if not await connect(client, stop):
            return 0
    except HubConnectionError as exc:
        log(args.name, f"cannot join: {exc.message}")
        return 1
    pace = Pace(args.pace, random.Random(args.seed))
    agent: Agent = Planner(client, pace) if args.role == "planner" else Builder(client, pace)
    agent.say(f"joined {args.uri} as {args.role}")
    try:
        return await serve(agent, stop)
    finally:
        await client.close()


async def serve(agent: Agent, stop: asyncio.Event) -> int:
    """Run until SIGTERM/SIGINT (release, exit 0) or until the hub goes away (exit 1)."""
    running = asyncio.create_task(agent.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not running.done():
        agent.stopping = True
        running.cancel()
        await asyncio.wait({running}, timeout=1.0)
        if running.done() and not running.cancelled():
            running.exception()  # retrieved: we are stopping whatever it was
        try:
            async with asyncio.timeout(SHUTDOWN_BUDGET):
                await agent.shutdown()
        except (TimeoutError, HubConnectionError) as exc:
            agent.say(f"stopping without releasing everything: {exc or 'out of time'}")
        return 0
    try:
        running.result()
    except HubConnectionError as exc:
        agent.say(f"lost the hub: {exc.message}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
