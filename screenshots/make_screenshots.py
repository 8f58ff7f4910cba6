"""Make the SVG screenshots in this folder from a live demo.

    python screenshots/make_screenshots.py

It starts the runtime and hub in a temporary state directory, with the scheduler running a
copy of examples/scheduled, lets the scripted demo team (examples/demo_team) and the scheduled
agents work until every pane has something to show, then drives the console
headless with Textual's Pilot and saves the main screen, each pane, a wide layout and every
dialog. The team keeps working while the pictures are taken, so each run looks a little
different.

Then it does what `marrow-tui demo` does (a second runtime: one orchestrator per runtime): the
team, and a copy of examples/demo_team/acp, whose scripted agent speaks ACP. Once that agent
waits for permission to run the tests, it saves the agent view (the live transcript: the plan,
tool calls, diffs) and the answer dialog open on the permission request.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from marrow_tui.config.load import load_config
from marrow_tui.demo import PACE_ENV, DemoTeam, demo_workflow
from marrow_tui.hub.server import HubOptions, HubServer
from marrow_tui.orchestrator.dispatcher import Orchestrator
from marrow_tui.runtime import Runtime, RuntimeOptions
from marrow_tui.scheduler.heartbeat import Scheduler
from marrow_tui.services.hosting import Services
from marrow_tui.scheduler.tasks import add_task
from marrow_tui.ui.app import MarrowApp

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "scheduled"
TRACKER = HERE.parent / "examples" / "tracker"
SERVICES = HERE.parent / "examples" / "services"
WAIT = 60.0


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.1)
    print(f"  {what}", file=sys.stderr)


async def shoot(runtime: Runtime, uri: str, size: tuple[int, int],
                shots: list[tuple[str, Callable[..., Awaitable[None]]]]) -> None:
    app = MarrowApp(runtime, hub_uri=uri, operator="operator/you", bell=False)
    async with app.run_test(size=size) as pilot:
        async with asyncio.timeout(WAIT):
            while app.main is None or any(t.filling for t in app.main.tables.values()):
                await pilot.pause()
        for name, steps in shots:
            await steps(pilot, app)
            await pilot.pause(0.3)
            app.save_screenshot(str(HERE / f"{name}.svg"))
            print(f"  {name}.svg", file=sys.stderr)
            while app.screen is not app.main:
                await pilot.press("escape")
                await pilot.pause()


def keys(*pressed: str, pane: str | None = None) -> Callable[..., Awaitable[None]]:
    async def steps(pilot, app) -> None:  # type: ignore[no-untyped-def]
        if pane:
            await pilot.press(pane)
            await pilot.pause()
            table = app.main.tables.get({"0": "steering", "1": "agents", "2": "claims",
                                         "3": "board", "5": "sessions"}.get(pane, ""))
            if table is not None and table.row_count:
                table.move_cursor(row=0)
        for key in pressed:
            await pilot.press(key)
            await pilot.pause()

    return steps


async def main() -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="marrow-shots-"))
    runtime = Runtime(RuntimeOptions(state_dir=state_dir / "state"))
    await runtime.start()
    server = HubServer(runtime, HubOptions(port=0))
    await server.start()
    team = DemoTeam(server.uri, workdir=state_dir / "demo", pace=0.4)
    await team.start()
    scheduled = state_dir / "scheduled"
    shutil.copytree(EXAMPLE, scheduled, ignore=shutil.ignore_patterns(".marrow", "runtime",
                                                                        "tasks"))
    loaded = load_config(scheduled / "marrow.toml")
    assert loaded.config is not None, loaded.diagnostics
    builder = loaded.config.agent("builder")
    assert builder is not None
    add_task(builder.tasks_dir, "update the README", "say how the scheduler works")
    add_task(builder.tasks_dir, "write the changelog")
    scheduler = Scheduler(runtime, loaded.config, hub_uri=server.uri, watch=False)
    await scheduler.start()
    tracker = state_dir / "tracker"
    shutil.copytree(TRACKER, tracker, ignore=shutil.ignore_patterns(".symphony", ".marrow"))
    orchestrator = Orchestrator(runtime, tracker / "WORKFLOW.md", hub_uri=server.uri,
                                watch=False)
    await orchestrator.start()
    helpers = state_dir / "services"
    shutil.copytree(SERVICES, helpers, ignore=shutil.ignore_patterns(".marrow"))
    config = helpers / "marrow.toml"
    config.write_text(config.read_text().replace('"python3"', f'"{sys.executable}"'))
    services_config = load_config(config).config
    assert services_config is not None
    services = Services(runtime, services_config, state_dir / "state" / "services")
    await services.start()
    state = runtime.state
    try:
        print("waiting for the demo team:", file=sys.stderr)
        await until(lambda: len(state.presence.online) >= 4, "agents online")
        await until(lambda: len(state.board.tasks) >= 4, "a plan on the blackboard")
        await until(lambda: len(state.claims) >= 2, "leases held")
        await until(lambda: len(state.board.progress) >= 3, "progress notes")
        await until(lambda: any(s.agent == "builder" and not s.running
                                for s in state.sessions.by_id.values()), "a finished run")
        scheduler.wake("scout", "for the screenshot")
        await until(lambda: any(s.agent == "scout" and s.running and s.last_line
                                for s in state.sessions.by_id.values()), "a run in progress")
        await until(lambda: bool(state.steering.open), "an issue's agent asking a question")
        await until(lambda: sum(v.state == "healthy" for v in state.services.services.values())
                    == 3, "three healthy services")
        print("taking screenshots:", file=sys.stderr)
        await shoot(runtime, server.uri, (100, 30), [
            ("main-claims", keys(pane="2")),
            ("pane-agents", keys(pane="1")),
            ("pane-blackboard", keys(pane="3")),
            ("pane-activity", keys(pane="4")),
            ("pane-sessions", keys(pane="5")),
            ("session-output", keys("end", "enter", pane="5")),
            ("dialog-add-task", keys("t", pane="5")),
            ("pane-steering", keys(pane="0")),
            ("dialog-answer", keys("a")),
            ("pane-issues", keys(pane="6")),
            ("pane-services", keys(pane="7")),
            ("dialog-handoff", keys("h", pane="2")),
            ("dialog-release", keys("r", pane="2")),
            ("dialog-force-release", keys("R", pane="2")),
            ("dialog-declare", keys("d")),
            ("dialog-status", keys("s", pane="3")),
            ("dialog-message", keys("m", pane="1")),
            ("detail-task", keys("enter", pane="3")),
            ("detail-lease", keys("enter", pane="2")),
            ("help", keys("question_mark")),
            ("dialog-quit", keys("q")),
        ])
        await shoot(runtime, server.uri, (80, 24), [
            ("tmux-80x24", keys(pane="2")),
            ("dialog-answer-80x24", keys("a")),
            ("help-80x24", keys("question_mark")),
        ])
        await shoot(runtime, server.uri, (120, 40), [("console-120x40", keys(pane="5"))])
        await shoot(runtime, server.uri, (170, 46), [("wide", keys())])
        await shoot(runtime, server.uri, (200, 50), [("wide-200x50", keys())])
    finally:
        await services.stop()
        await orchestrator.stop()
        await scheduler.stop()
        await team.stop()
        await server.stop()
        await runtime.stop()
    await acp_shots(state_dir)


async def acp_shots(state_dir: Path) -> None:
    """What `marrow-tui demo` shows of its coding agent over ACP (examples/demo_team/acp, in a
    runtime of its own, with the team): its agent view while it waits for permission, and the
    permission request being answered."""
    os.environ[PACE_ENV] = "0.2"  # the ACP agent's pace (it inherits our environment)
    runtime = Runtime(RuntimeOptions(state_dir=state_dir / "acp-state"))
    await runtime.start()
    server = HubServer(runtime, HubOptions(port=0))
    await server.start()
    team = DemoTeam(server.uri, workdir=state_dir / "acp-team", pace=0.4)
    await team.start()
    orchestrator = Orchestrator(runtime, demo_workflow(state_dir), hub_uri=server.uri,
                                watch=False)
    await orchestrator.start()
    try:
        print("waiting for the ACP agent:", file=sys.stderr)
        await until(lambda: any(r.kind == "permission"
                                for r in runtime.state.steering.open.values()),
                    "a permission request")
        await until(lambda: len(runtime.state.claims) >= 1, "the team at work")
        print("taking screenshots:", file=sys.stderr)
        # Tall enough for the whole turn so far: the plan on top, the pending command below.
        await shoot(runtime, server.uri, (100, 60), [("agent-view", keys("enter", pane="5"))])
        await shoot(runtime, server.uri, (100, 30), [("dialog-permission", keys("a"))])
    finally:
        await orchestrator.stop()
        await team.stop()
        await server.stop()
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(main())
