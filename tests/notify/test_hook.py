"""The [notify] hook, run for real (a Python script as the command) on a real runtime and hub:
what it is told, once per thing, never for a muted agent, and never holding the runtime up."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.config.model import NotifyConfig
from marrow_tui.core.events import Event
from marrow_tui.notify import Notifier
from marrow_tui.protocol.frames import Outcome

from tests.support.hub import Hub
from tests.support.waiting import gone, until

#: the hook: one JSON line per run with what it read on stdin and its environment
HOOK = """
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"stdin": sys.stdin.read(), "event": os.environ["MARROW_EVENT"],
                          "kind": os.environ["MARROW_EVENT_KIND"],
                          "name": os.environ["MARROW_EVENT_NAME"],
                          "title": os.environ["MARROW_EVENT_TITLE"]}) + "\\n")
"""


def told(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def emit(hub: Hub, *events: Event) -> None:
    """Events as a producer (the scheduler, the supervisor) emits them."""
    for event in events:
        hub.runtime.state.apply(event)
    hub.runtime.submit(Outcome(events=list(events)))


def run_failed(session: str, agent: str = "builder") -> list[Event]:
    return [Event("session_start", {"id": session, "agent": agent, "started": 1.0,
                                    "trigger": "heartbeat", "stdout": "", "stderr": "",
                                    "tasks": []}),
            Event("session_end", {"id": session, "agent": agent, "started": 1.0, "ended": 2.0,
                                  "state": "failed", "code": 2, "reason": "exit 2",
                                  "last_line": "tests failed"})]


def service(name: str, state: str, reason: str = "") -> Event:
    return Event("service_state", {"name": name, "state": state, "reason": reason, "at": 1.0})


@pytest.fixture
async def notifier(hub: Hub, tmp_path: Path) -> AsyncIterator[tuple[Notifier, Path, dict]]:
    """A notifier whose settings a test may change (`settings["now"]`)."""
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    out = tmp_path / "told.jsonl"
    settings = {"now": NotifyConfig(command=(sys.executable, str(script), str(out)))}
    notifier = Notifier(hub.runtime, lambda: settings["now"], hub.server.uri)
    notifier.start()
    try:
        yield notifier, out, settings
    finally:
        await notifier.stop()


async def test_each_question_failed_run_and_service_down_is_told_once(
        hub: Hub, notifier: tuple[Notifier, Path, dict]) -> None:
    _, out, _ = notifier
    alice = await hub.agent("demo/alice")
    await alice.send(type="steer_ask", question="Staging or\nmock?",
                     choices=["staging", "mock"], request_key="smtp")
    await alice.until("steer_opened")
    await alice.send(type="steer_ask", question="Staging or mock?", request_key="smtp")  # the same one
    await alice.until("steer_opened")
    emit(hub, *run_failed("builder-1"))
    emit(hub, run_failed("builder-1")[1])  # the same run's end, said again
    emit(hub, service("db", "unhealthy", "HTTP 500"), service("db", "failed", "gave up"))
    emit(hub, service("db", "healthy"), service("db", "backoff", "killed by SIGKILL"))
    assert await until(lambda: len(told(out)) >= 4, timeout=20)
    lines = told(out)
    assert [(t["name"], t["kind"]) for t in lines] == [
        ("request_waiting", "needs_you"), ("run_failed", "finished"),
        ("service_down", "finished"), ("service_down", "finished")]
    for line in lines:  # stdin and the environment carry the same event
        assert json.loads(line["stdin"]) == json.loads(line["event"])
    asked = json.loads(lines[0]["event"])
    assert asked["asker"] == "demo/alice" and asked["id"] == "S1"
    assert asked["choices"] == ["staging", "mock"] and asked["hub"] == hub.server.uri
    assert lines[0]["title"] == "demo/alice asks: Staging or mock?"
    failed = json.loads(lines[1]["event"])
    assert (failed["session"], failed["reason"], failed["last_line"]) == \
        ("builder-1", "exit 2", "tests failed")
    assert lines[2]["title"] == "service db unhealthy: HTTP 500"  # not again for "failed"
    assert lines[3]["title"] == "service db backoff: killed by SIGKILL"  # down again later


async def test_a_muted_agent_and_an_event_left_out_run_nothing(
        hub: Hub, notifier: tuple[Notifier, Path, dict]) -> None:
    _, out, settings = notifier
    settings["now"] = NotifyConfig(command=settings["now"].command, mute=("demo/bob",),
                                   events=("request_waiting",))
    bob = await hub.agent("demo/bob")
    await bob.send(type="steer_ask", question="Rename the route?")
    await bob.until("steer_opened")
    emit(hub, *run_failed("builder-2"))
    emit(hub, service("db", "failed"))
    carol = await hub.agent("demo/carol")
    await carol.send(type="steer_ask", question="Merge now?")
    await carol.until("steer_opened")
    # The command runs one notice at a time, in order: carol's comes after any before it.
    assert await until(lambda: told(out), timeout=20)
    assert [t["title"] for t in told(out)] == ["demo/carol asks: Merge now?"]


async def test_a_hung_command_is_killed_at_its_timeout_and_the_hub_goes_on(
        hub: Hub, notifier: tuple[Notifier, Path, dict], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    notifier_, _, settings = notifier
    pid_file = tmp_path / "hung.pid"
    hang = (f"import os, signal; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "signal.pause()")  # hangs until it is signalled
    settings["now"] = NotifyConfig(command=(sys.executable, "-c", hang), timeout=1.0)
    caplog.set_level(logging.WARNING, logger="marrow.notify")
    alice = await hub.agent("demo/alice")
    await alice.send(type="steer_ask", question="Still there?")
    await alice.until("steer_opened")
    assert await until(lambda: pid_file.exists() and pid_file.read_text(), timeout=20)
    # While the command hangs, the hub answers as ever.
    granted = await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    assert granted["type"] == "claim_granted"
    assert await until(lambda: "and was killed" in caplog.text, timeout=20)
    assert gone(int(pid_file.read_text()))
    killed = [r.getMessage() for r in caplog.records if "killed" in r.getMessage()]
    assert len(killed) == 1
    assert killed[0].endswith("ran past its 1s timeout for request:S1 and was killed")
    # A command that fails says so in one line, with the last thing it said.
    settings["now"] = NotifyConfig(command=(
        sys.executable, "-c", "import sys; print('no ntfy token', file=sys.stderr); sys.exit(3)"))
    emit(hub, *run_failed("builder-3"))
    assert await until(lambda: "failed for run:builder-3" in caplog.text, timeout=20)
    failed = [r.getMessage() for r in caplog.records if "run:builder-3" in r.getMessage()]
    assert len(failed) == 1 and failed[0].endswith("(exit 3): no ntfy token")
    assert "\n" not in failed[0]
    assert notifier_.runs == 2


async def test_a_conflict_is_told_as_a_permission_request_saying_who_blocks_whom(
        hub: Hub, notifier: tuple[Notifier, Path, dict], tmp_path: Path) -> None:
    from tests.support.conflicts import seed_conflict

    _, out, _ = notifier
    seed_conflict(hub.runtime, tmp_path / "logs")
    assert await until(lambda: told(out), timeout=20)
    [line] = told(out)
    assert line["name"] == "request_waiting"
    assert line["title"] == ("demo/bob's edit of src/auth/login.py is blocked by demo/alice "
                             "(AUTH-3)")
    asked = json.loads(line["event"])
    assert (asked["permission"], asked["conflict"], asked["asker"]) == (True, True, "demo/bob")
