"""The [notify] hook: a command run for each event a person away from the screen wants to hear
of (a question waiting, a run failed, a service down), with the event as JSON on stdin and in
the environment.

It listens to the change feed like the console does, and never holds the runtime up: the
feed only notes what to say (once per thing: a question, a run, a service's time down), and
one task runs the command for each in turn, for at most its timeout, after which its process
group is killed. A command that fails or hangs costs one log line, never an event or a reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config.model import NOTIFY_EVENTS, NotifyConfig
from .core.events import Event
from .core.state import State
from .core.steering import blocked_line
from .core.text import one_line
from .proc import Capture, describe_exit, run_bounded
from .runtime import Runtime

log = logging.getLogger("marrow.notify")

#: notices waiting for the command; past this the newest are dropped (and that is logged)
QUEUE_MAX = 100
#: things already notified, remembered so that each is said once
REMEMBERED = 10_000
#: a run's end states and a service's states that are worth a notice
RUN_FAILED = ("failed", "timeout", "error")
SERVICE_DOWN = ("failed", "unhealthy", "backoff")
#: the command's output kept for the log line when it fails
OUTPUT_CAP = 2048


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell: `key` names the thing, so it is told once."""

    key: str
    #: one of NOTIFY_EVENTS
    event: str
    #: who it is about (an asker, a run's agent), for `mute`; "" for a service
    agent: str
    title: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """"needs_you" or "finished"."""
        return NOTIFY_EVENTS[self.event]

    def payload(self, at: float, hub_uri: str) -> dict[str, Any]:
        return {"event": self.event, "kind": self.kind, "title": self.title, "at": at,
                "hub": hub_uri, **self.data}


def notice_of(event: Event, state: State) -> Notice | None:
    """The notice an event makes, if any (the state has the event applied)."""
    d = event.data
    if event.kind == "steer_ask":
        question = " ".join(d["question"].split())
        conflict = d.get("kind") == "conflict"
        # A conflict is answered as a permission is: by one of its choices, for a run.
        permission = d.get("kind") == "permission" or conflict
        verb = "asks permission" if permission else "asks"
        title = (blocked_line(d["conflict"]) if conflict and d.get("conflict")
                 else f"{d['asker']} {verb}: {question}")
        return Notice(f"request:{d['id']}", "request_waiting", d["asker"], one_line(title, 200),
                      {"id": d["id"], "asker": d["asker"], "question": d["question"],
                       "choices": d.get("choices", []), "default": d.get("default"),
                       "timeout_at": d.get("timeout_at"), "about": d.get("task_id", ""),
                       "session": d.get("session", ""), "permission": permission,
                       "conflict": conflict})
    if event.kind == "session_end" and d.get("state") in RUN_FAILED:
        reason = d.get("reason") or d["state"]
        return Notice(f"run:{d['id']}", "run_failed", d["agent"],
                      one_line(f"{d['agent']}: run {d['state']} ({reason})", 200),
                      {"agent": d["agent"], "session": d["id"], "state": d["state"],
                       "code": d.get("code"), "reason": d.get("reason", ""),
                       "last_line": d.get("last_line", "")})
    if event.kind == "service_state" and d.get("state") in SERVICE_DOWN:
        view = state.services.services.get(d["name"])
        reason = d.get("reason") or (view.reason if view is not None else "")
        return Notice(f"service:{d['name']}", "service_down", "",
                      one_line(f"service {d['name']} {d['state']}"
                               + (f": {reason}" if reason else ""), 200),
                      {"service": d["name"], "state": d["state"], "reason": reason,
                       "restarts": view.restarts if view is not None else 0})
    return None


class Notifier:
    """Runs the [notify] command for what the change feed says; `settings` gives the config's
    [notify] as it is now (a reloaded config applies to the next notice)."""

    def __init__(self, runtime: Runtime, settings: Callable[[], NotifyConfig | None],
                 hub_uri: str) -> None:
        self.runtime = runtime
        self.settings = settings
        self.hub_uri = hub_uri
        self._told: OrderedDict[str, None] = OrderedDict()
        self._queue: asyncio.Queue[tuple[NotifyConfig, Notice, float]] = asyncio.Queue(
            QUEUE_MAX)
        self._dropped = 0
        self._worker: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: how many times the command ran (tests and benchmarks read it)
        self.runs = 0

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="marrow-notify")
        self._unsubscribe = self.runtime.subscribe(self.feed)

    async def stop(self) -> None:
        """Stop listening; a command still running is killed (its group, by `run_bounded`)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def feed(self, events: list[Event]) -> None:
        settings = self.settings()
        state = self.runtime.state
        for event in events:
            if event.kind == "service_state" and event.data.get("state") == "healthy":
                self._told.pop(f"service:{event.data['name']}", None)  # up again: new episode
            if settings is None:
                continue
            notice = notice_of(event, state)
            if (notice is None or notice.event not in settings.events
                    or notice.agent in settings.mute or notice.key in self._told):
                continue
            self._remember(notice.key)
            try:
                self._queue.put_nowait((settings, notice, self.runtime.clock()))
            except asyncio.QueueFull:
                self._dropped += 1
                if self._dropped == 1:
                    log.warning("notify: %d notices are waiting for the command, so new ones "
                                "are dropped until it catches up", QUEUE_MAX)

    def _remember(self, key: str) -> None:
        self._told[key] = None
        while len(self._told) > REMEMBERED:
            self._told.popitem(last=False)

    async def _work(self) -> None:
        while True:
            settings, notice, at = await self._queue.get()
            self._dropped = 0
            try:
                await self._run(settings, notice, at)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the notices that follow
                log.exception("notify: the command for %s could not be run", notice.key)

    async def _run(self, settings: NotifyConfig, notice: Notice, at: float) -> None:
        payload = json.dumps(notice.payload(at, self.hub_uri), ensure_ascii=False)
        env = {**os.environ, "MARROW_EVENT": payload, "MARROW_EVENT_KIND": notice.kind,
               "MARROW_EVENT_NAME": notice.event, "MARROW_EVENT_TITLE": notice.title,
               "MARROW_HUB_URI": self.hub_uri}
        err = Capture(OUTPUT_CAP, tail=True)
        # The event on stdin from a file: a command that never reads it cannot block us.
        with tempfile.TemporaryFile() as stdin:
            stdin.write(payload.encode() + b"\n")
            stdin.seek(0)
            self.runs += 1
            try:
                run = await run_bounded(settings.argv(), out=Capture(OUTPUT_CAP, tail=True),
                                        err=err, cwd=settings.cwd, env=env,
                                        timeout=settings.timeout,
                                        stdin=stdin)
            except (OSError, ValueError) as exc:
                log.warning("notify: the command %s could not start for %s: %s",
                            settings.shown, notice.key, getattr(exc, "strerror", None) or exc)
                return
        if run.ended_by == "timeout":
            log.warning("notify: the command %s ran past its %gs timeout for %s and was "
                        "killed", settings.shown, settings.timeout, notice.key)
        elif run.code != 0:
            said = err.text().splitlines()
            log.warning("notify: the command %s failed for %s (%s)%s", settings.shown,
                        notice.key, describe_exit(run.code),
                        f": {one_line(said[-1], 200)}" if said else "")
