"""A console built on a real runtime with fixed data and a fake clock, for Pilot and snapshots.

The runtime is started inside the app's own event loop (snapshot tests run the app in a loop of
their own), in a temporary state directory, and seeded through the normal command path: the
agents' frames are handled exactly as if they had come over the wire.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from marrow_tui.runtime import Runtime, RuntimeOptions
from marrow_tui.ui.app import MarrowApp

from tests.support.hub import FakeClock

HUB_URI = "ws://127.0.0.1:8876"
T0 = 1_800_000_000.0


def utc() -> None:
    """Timestamps in the activity pane are local time: make that UTC for stable snapshots."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def seed(runtime: Runtime) -> None:
    decider = runtime.decider
    assert decider is not None

    def join(name: str, *roles: str) -> None:
        runtime.submit(decider.joined(name, tuple(roles)))

    def say(name: str, **frame: Any) -> None:
        runtime.handle(name, frame, None)

    join("demo/alice", "demo/builder")
    join("demo/bob", "demo/builder")
    join("demo/carol", "demo/reviewer")
    say("demo/alice", type="ledger_task", task_id="P1", title="design the login flow",
        suggested_owner="demo/alice")
    say("demo/alice", type="ledger_task", task_id="P2", title="build the login API",
        depends_on=["P1"], suggested_owner="demo/bob")
    say("demo/alice", type="ledger_task", task_id="P3", title="review and ship",
        depends_on=["P2"], suggested_owner="demo/carol")
    say("demo/alice", type="ledger_task_update", task_id="P1", status="done")
    say("demo/alice", type="ledger_progress", task_id="P1", text="flow agreed", kind="note")
    say("demo/alice", type="claim", task_id="T1", worktree="main",
        paths=["src/auth/login.py", "src/auth/session.py"], note="login", ttl_seconds=3600)
    say("demo/alice", type="task_update", task_id="T1", status="working")
    say("demo/alice", type="checkpoint", task_id="T1", checkpoint="step=2 tests written")
    say("demo/bob", type="claim", task_id="T2", worktree="main", paths=["src/api/"],
        ttl_seconds=120)
    say("demo/carol", type="claim", task_id="T3", paths=["docs/login.md"], ttl_seconds=1800)
    say("demo/bob", type="ledger_progress", task_id="P2", text="waiting on T1", kind="blocked")
    say("demo/alice", type="chat", target="all", payload="login flow is in review")


class ConsoleApp(MarrowApp):
    """The real console over a real runtime, started in this app's loop."""

    def __init__(self, *, seeded: bool = True, clock: FakeClock | None = None,
                 sessions: bool = False, config: Any = None, asks: bool = False,
                 issues: bool = False, services: bool = False, hub: bool = False,
                 seed_with: Any = None, state_dir: Path | None = None,
                 **kwargs: Any) -> None:
        #: a test's own seed, `seed_with(runtime)`, after the others
        self.seed_with = seed_with
        self.sessions = sessions
        #: a real hub on 127.0.0.1 (a free port), as `run_console` embeds one: agents then
        #: join over WebSockets (`app.server.uri`)
        self.hub = hub
        self.server: Any = None
        #: helper services' states (no supervisor runs)
        self.services = services
        #: an orchestrator's issues and workflow status (no orchestrator runs)
        self.issues = issues
        #: agents waiting on answers (steering requests) when the console opens
        self.asks = asks
        #: a scheduler config: the console then runs its agents for real
        self.config = config
        self.scheduler: Any = None
        self.clock = clock or FakeClock(T0)
        #: a state folder an earlier runtime used (a restart), else a new one
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="marrow-console-")) / "state"
        self.seeded = seeded
        runtime = Runtime(RuntimeOptions(state_dir=self.state_dir), clock=self.clock)
        super().__init__(runtime, hub_uri=HUB_URI, operator="operator/test", bell=False,
                         **kwargs)

    # Textual runs each class's handler along the MRO, this one first: the runtime is up and
    # seeded before MarrowApp.on_mount joins the operator, and stopped after it left.
    async def on_mount(self) -> None:  # type: ignore[override]
        await self.runtime.start()
        if self.seeded:
            seed(self.runtime)
        if self.sessions:
            seed_sessions(self.runtime, self.state_dir.parent / "logs")
        if self.asks:
            seed_asks(self.runtime)
        if self.issues:
            seed_issues(self.runtime)
        if self.services:
            seed_services(self.runtime)
        if self.seed_with is not None:
            self.seed_with(self.runtime)
        if self.hub:
            from marrow_tui.hub.server import HubOptions, HubServer

            self.server = HubServer(self.runtime, HubOptions(host="127.0.0.1", port=0))
            await self.server.start()
            self.hub_uri = self.server.uri
        if self.config is not None:
            from marrow_tui.scheduler.heartbeat import Scheduler

            self.scheduler = Scheduler(self.runtime, self.config, hub_uri=HUB_URI, watch=False)
            await self.scheduler.start()
        await self.runtime.settled()  # the screen starts after the seed is history

    async def on_unmount(self) -> None:  # type: ignore[override]
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.server is not None:
            await self.server.stop()
        await self.runtime.stop()


async def until(pilot: Any, test: Any, timeout: float = 10.0) -> Any:
    """Let the app run until `test()` is truthy (at most `timeout` seconds); its value."""
    async with asyncio.timeout(timeout):
        while not (value := test()):
            await pilot.pause(0.02)
    return value


async def filled(pilot: Any, app: MarrowApp) -> None:
    """Wait (bounded) until the main screen is up and its tables have filled."""
    async with asyncio.timeout(10):
        while app.main is None or any(t.filling for t in app.main.tables.values()):
            await pilot.pause()


def seed_sessions(runtime: Runtime, logs: Path) -> None:
    """Two scheduled agents with a history: runs that went well, one that failed, one running.

    Written as the scheduler would write them (events through the runtime), with log files
    whose content is fixed, so the Sessions pane and the output view are stable pictures.
    """
    from marrow_tui.core.events import Event
    from marrow_tui.protocol.frames import Outcome

    logs.mkdir(parents=True, exist_ok=True)
    events = [Event("config_status", {"path": "/srv/agents/marrow.toml", "ok": True, "at": T0,
                                      "agents": ["builder", "scout"], "errors": [],
                                      "warnings": []})]

    def run(agent: str, start: float, took: float | None, state: str, code: int | None,
            reason: str, lines: list[str]) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start))
        sid = f"{agent}-{stamp}-000"
        out = logs / f"{sid}.stdout.log"
        out.write_text("".join(f"{line}\n" for line in lines))
        (logs / f"{sid}.stderr.log").write_text("")
        events.append(Event("session_start", {
            "id": sid, "agent": agent, "started": start, "trigger": "heartbeat",
            "stdout": str(out), "stderr": str(logs / f"{sid}.stderr.log"), "tasks": []}))
        if took is None:
            events.append(Event("session_progress", {"id": sid, "agent": agent,
                                                     "last_line": lines[-1]}))
        else:
            events.append(Event("session_end", {
                "id": sid, "agent": agent, "started": start, "ended": start + took,
                "state": state, "code": code, "reason": reason, "last_line": lines[-1]}))

    run("scout", T0 - 3600, 12, "ok", 0, "exit 0",
        ["looking around (1/5)", "done: 41 files seen"])
    run("scout", T0 - 1800, 9, "ok", 0, "exit 0",
        ["looking around (1/5)", "done: 42 files seen"])
    run("scout", T0 - 40, None, "running", None, "",
        [f"looking around ({n}/5)" for n in range(1, 4)])
    run("builder", T0 - 7200, 95, "failed", 2, "exit 2",
        ["[1/1] fix the login bug: step 1/3", "error: tests failed in src/auth"])
    run("builder", T0 - 600, 184, "ok", 0, "exit 0",
        ["[1/2] fix the login bug: step 3/3", "built 2 task(s): fix the login bug, docs"])
    running = f"scout-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(T0 - 40))}-000"
    events.append(Event("agent_schedule", {"agent": "scout", "interval": 1800, "enabled": True,
                                           "running": running,
                                           "next_at": None, "failures": 0,
                                           "wake_pending": False, "queued": 0}))
    events.append(Event("agent_schedule", {"agent": "builder", "interval": 900,
                                           "enabled": True, "running": None,
                                           "next_at": T0 + 416, "failures": 0,
                                           "wake_pending": False, "queued": 2}))
    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=events))


def SessionsConsoleApp(**kwargs: Any) -> ConsoleApp:  # noqa: N802 (reads like a class)
    """The console with a scheduling history (no live scheduler): for pictures."""
    return ConsoleApp(sessions=True, **kwargs)


def seed_asks(runtime: Runtime) -> None:
    """Two agents waiting on the operator, one of them with choices and a deadline."""

    def say(name: str, **frame: Any) -> None:
        runtime.handle(name, frame, None)

    say("demo/alice", type="steer_ask", question="The login tests need a real SMTP server. "
        "Use the staging one, or mock it?", choices=["staging", "mock"], task_id="T1",
        context="tests/test_login.py sends a confirmation mail.\nStaging: smtp.staging.local",
        timeout_seconds=1800, default="mock")
    say("demo/bob", type="steer_ask", question="Is it fine to rename /api/v1/session to "
        "/api/v1/sessions?", task_id="T2")


WORKFLOW = "/srv/tracker/WORKFLOW.md"


def seed_issues(runtime: Runtime, ok: bool = True) -> None:
    """What an orchestrator says about its tracker: one issue in each status, and the workflow.

    Written as the orchestrator writes them (transient events through the runtime); DEMO-1's
    run is a session named after it, as the orchestrator's runs are.
    """
    from marrow_tui.core.events import Event
    from marrow_tui.protocol.frames import Outcome

    errors = [] if ok else [f"{WORKFLOW}:19: agent.command: error: must be a non-empty string"]
    run = "DEMO-1-20270115-075800-000"
    events = [
        Event("workflow_status", {"path": WORKFLOW, "ok": ok, "errors": errors, "warnings": [],
                                  "root": "/srv/tracker/issues", "dispatching": ok}),
        Event("session_start", {"id": run, "agent": "DEMO-1", "started": T0 - 95,
                                "trigger": "issue", "stdout": "", "stderr": "", "tasks": []}),
        Event("session_progress", {"id": run, "agent": "DEMO-1",
                                   "last_line": "writing hello.txt"}),
    ]

    def issue(identifier: str, title: str, state: str, status: str, **fields: Any) -> None:
        data = {"identifier": identifier, "title": title, "state": state, "status": status,
                "priority": None, "attempt": 0, "next_at": None, "reason": "", "session": "",
                "path": f"/srv/tracker/issues/{state}/{identifier}.md"}
        events.append(Event("issue_status", {**data, **fields}))

    issue("DEMO-1", "Add a greeting file", "In Progress", "running", priority=2, attempt=1,
          session=run)
    issue("DEMO-2", "Add a farewell file", "Todo", "blocked", priority=3,
          reason="blocked by DEMO-1")
    issue("DEMO-10", "Document the tracker", "Todo", "idle", priority=1)
    issue("DEMO-4", "Tidy the README", "Todo", "idle")
    issue("OPS-3", "Rotate the deploy key", "In Progress", "retrying", priority=1, attempt=2,
          next_at=T0 + 8, reason="exit 1")
    issue("OPS-7", "Bump the base image", "In Progress", "parked", priority=2, attempt=3,
          reason="cancelled by operator/test")
    issue("OPS-9", "Ask before migrating", "In Progress", "waiting", priority=4, attempt=1)
    issue("OPS-1", "Pin the toolchain", "Done", "done", priority=2, attempt=1)
    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=events))



def seed_services(runtime: Runtime) -> None:
    """Three helper services as the supervisor would report them: two well, one restarting."""
    from marrow_tui.core.events import Event
    from marrow_tui.protocol.frames import Outcome

    rows = [
        {"name": "db", "state": "healthy", "pid": 4101, "port": 42359, "health": "HTTP 200",
         "restarts": 1, "reason": "", "since": T0 - 125},
        {"name": "cache", "state": "backoff", "pid": None, "port": 44637,
         "health": "connection refused", "restarts": 2,
         "reason": "killed by SIGKILL; restart 2 of 5 in 2s", "since": T0 - 1},
        {"name": "api", "state": "healthy", "pid": 4188, "port": 33795, "health": "HTTP 200",
         "restarts": 0, "reason": "cache is backoff: killed by SIGKILL", "since": T0 - 3600},
    ]
    # in config order, as the runtime states them when it starts
    events = [Event("service_state", row | {"url": f"http://127.0.0.1:{row['port']}",
                                            "at": T0, "order": order})
              for order, row in enumerate(rows)]
    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=events))
