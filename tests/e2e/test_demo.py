"""The demo team end to end: real agent processes against a real hub on 127.0.0.1.

The agents run at pace 0, so a whole round takes well under a second; every wait below is for a
condition on what the hub committed, with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.config.load import load_config
from marrow_tui.core.events import Event
from marrow_tui.demo import (
    ACP_EXAMPLE,
    AGENT_SCRIPT,
    DEFAULT_NAMES,
    PACE_ENV,
    REPORTER_EXAMPLE,
    DemoTeam,
    DemoUnavailable,
    demo_config,
    demo_workflow,
)
from marrow_tui.hub.client import HubClient
from marrow_tui.runtime import Runtime

from tests.support.hub import Hub, start_hub
from tests.support.hubproc import REPO, clean_env
from tests.support.orchestrator import make  # noqa: F401 (a fixture)
from tests.support.waiting import until

WAIT = 30.0
BUILDERS = DEFAULT_NAMES[1:]

Check = Callable[[list[Event]], bool]


class Seen:
    """Every event the runtime commits, and a bounded wait for a condition on them."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        runtime.subscribe(self._add)

    def _add(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.changed.set()

    async def until(self, checks: dict[str, Check], timeout: float = WAIT) -> None:
        """Wait until every named check holds; fail naming the ones that never did."""
        deadline = time.monotonic() + timeout
        while missing := [name for name, check in checks.items() if not check(self.events)]:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"not seen within {timeout:g} s: {', '.join(missing)}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


def kind(name: str, **fields: object) -> Check:
    """Some event of this kind has these data fields (a callable value is a predicate)."""

    def matches(value: object, wanted: object) -> bool:
        return bool(wanted(value)) if callable(wanted) else value == wanted

    return lambda events: any(
        e.kind == name and all(matches(e.data.get(k), v) for k, v in fields.items())
        for e in events
    )


def board(predicate: Callable[[dict[str, object]], bool]) -> Check:
    return kind("board_task", task=predicate)


@pytest.fixture
def seen(hub: Hub) -> Seen:
    """Subscribed before the team starts, so no early event is missed."""
    return Seen(hub.runtime)


@pytest.fixture
async def team(hub: Hub, seen: Seen, tmp_path: Path) -> AsyncIterator[DemoTeam]:
    """The default team of four at pace 0; stopped (and checked) after the test."""
    demo = DemoTeam(hub.uri, workdir=tmp_path / "demo", pace=0, seed=7)
    await demo.start()
    try:
        await seen.until({"the team online": lambda _: set(DEFAULT_NAMES) <= set(
            hub.runtime.state.presence.online)})
        yield demo
    finally:
        await demo.stop()
    logs = "\n".join(f"--- {a.name}\n{a.log_path.read_text()[-2000:]}" for a in demo.processes)
    assert [a.returncode for a in demo.processes] == [0] * len(DEFAULT_NAMES), logs
    for name in DEFAULT_NAMES:
        assert hub.runtime.state.claims.owned_by(name) == [], f"{name} still holds claims"


async def test_a_round_shows_every_kind_of_coordination(seen: Seen, team: DemoTeam) -> None:
    await seen.until({
        "tasks declared with dependencies": board(lambda t: bool(t.get("depends_on"))),
        "a claim granted": kind("claim", owner=lambda o: o in BUILDERS),
        "a SCOPE_CONFLICT reported as blocked": kind(
            "progress", kind="blocked", text=lambda t: "SCOPE_CONFLICT" in str(t)),
        "a wait_request on the holder": kind("wait", holder=lambda h: h in BUILDERS),
        "a handoff between builders": kind(
            "handoff", previous_owner=lambda p: p in BUILDERS, owner=lambda o: o in BUILDERS),
        "the receiver picking it up": kind("progress", text=lambda t: "picked up" in str(t)),
        "progress notes": kind("progress", kind="note", author=lambda a: a in BUILDERS),
        "usage notes": kind("progress", kind="usage"),
        "input_required": kind("task_update", status="input_required"),
        "a checkpoint": kind("checkpoint"),
        "a task done on the board": board(lambda t: t.get("status") == "done"),
        "a release with evidence": kind("release"),
        "the planner's summary": kind(
            "chat", sender=DEFAULT_NAMES[0], payload=lambda p: str(p).startswith("Round 1 done")),
    })
    done = [e.data["task"] for e in seen.events if e.kind == "board_task"
            and e.data["task"]["status"] == "done" and e.data["task"]["task_id"].endswith("-r1")]
    assert {t["task_id"] for t in done} == {
        f"{k}-r1" for k in ("schema", "login", "refresh", "routes", "tests", "notes")}


async def test_an_operator_handoff_and_chat_get_a_reaction(hub: Hub, seen: Seen,
                                                           team: DemoTeam) -> None:
    async with HubClient(hub.uri, "test/operator") as operator:
        await operator.claim("op-1", ["ops/runbook.md"], "main")
        await operator.handoff("op-1", "demo/bob", note="please finish the runbook")
        await operator.send("status?", target="demo/bob")
        await seen.until({
            "bob picks it up": kind("progress", task_id="op-1", author="demo/bob",
                                    text=lambda t: "picked up op-1 from test/operator" in str(t)),
            "bob finishes it": kind("release", task_id="op-1", owner="demo/bob"),
            "bob answers": kind("chat", sender="demo/bob", target="test/operator",
                                payload=lambda p: str(p).startswith("re:")),
        })
    statuses = [e.data["status"] for e in seen.events
                if e.kind == "task_update" and e.data["task_id"] == "op-1"]
    assert statuses[:1] == ["working"] and statuses[-1] == "done"


async def test_a_secured_hub_gets_the_token_through_the_environment(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state", token="s3cret-demo")
    seen = Seen(hub.runtime)
    team = DemoTeam(hub.uri, token="s3cret-demo", workdir=tmp_path / "demo", pace=0)
    try:
        await team.start()
        command_lines = [Path(f"/proc/{a.pid}/cmdline").read_bytes() for a in team.processes]
        assert not any(b"s3cret-demo" in line for line in command_lines)
        await seen.until({"a claim on the secured hub": kind("claim")})
    finally:
        await team.stop()
        await hub.stop()
    assert [a.returncode for a in team.processes] == [0] * len(DEFAULT_NAMES)


async def test_agents_exit_when_the_hub_goes_away(tmp_path: Path) -> None:
    """No orphans: if the console dies without stopping the team, the agents end by themselves."""
    hub = await start_hub(tmp_path / "state")
    seen = Seen(hub.runtime)
    team = DemoTeam(hub.uri, workdir=tmp_path / "demo", pace=0)
    try:
        await team.start()
        await seen.until({"the team online": lambda _: set(DEFAULT_NAMES) <= set(
            hub.runtime.state.presence.online)})
        # Online at the hub is not yet joined for the agent (it still loads the board): the hub
        # goes away once every agent has said it joined, or the log would say "cannot join".
        assert await until(lambda: all(
            a.log_path.is_file() and " joined " in a.log_path.read_text()
            for a in team.processes), timeout=WAIT)
        await hub.stop()
        exits = asyncio.gather(*(a.process.wait() for a in team.processes))
        codes = await asyncio.wait_for(exits, WAIT)
    finally:
        await team.stop()
    assert codes == [1] * len(DEFAULT_NAMES)
    assert "lost the hub" in team.processes[1].log_path.read_text()


async def test_start_without_the_agent_script_says_what_is_missing(tmp_path: Path) -> None:
    team = DemoTeam("ws://127.0.0.1:9", workdir=tmp_path, script=tmp_path / "agent.py")
    with pytest.raises(DemoUnavailable, match="source checkout"):
        await team.start()
    await team.stop()
    assert team.processes == []


def test_pace_comes_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv(PACE_ENV, "0.25")
    assert DemoTeam("ws://x", workdir=tmp_path).pace == 0.25
    assert DemoTeam("ws://x", workdir=tmp_path, pace=2).pace == 2


# --------------------------------------------------------------------------- the CLI


def _read(stream: object, lines: queue.Queue[str | None]) -> None:
    """Drain the child's output for its whole life, so a full pipe never blocks it."""
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


def _wait_for_lines(lines: queue.Queue[str | None], output: list[str],
                    patterns: dict[str, str], timeout: float = WAIT) -> None:
    """Read lines until each pattern has matched one; fail with what was printed."""
    wanted = {name: re.compile(p) for name, p in patterns.items()}
    deadline = time.monotonic() + timeout
    while wanted:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            pytest.fail(f"never printed {', '.join(wanted)}:\n" + "".join(output[-60:]))
        output.append(line)
        wanted = {n: p for n, p in wanted.items() if not p.search(line)}


def test_marrow_tui_demo_no_ui_prints_the_team_at_work(tmp_path: Path) -> None:
    state = tmp_path / "state"
    command = [sys.executable, "-m", "marrow_tui", "demo", "--no-ui", "--port", "0",
               "--state-dir", str(state)]
    env = {**clean_env(), PACE_ENV: "0"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=tmp_path, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    threading.Thread(target=_read, args=(process.stdout, lines), daemon=True).start()
    try:
        _wait_for_lines(lines, output, {
            "the listening line": r"listening on ws://127\.0\.0\.1:\d+",
            "a claim": r" claim +\S+ by demo/",
            "a blocked note": r" progress +refresh-r\d+ \[blocked\] demo/",
            "a handoff": r" handoff +routes-r\d+ demo/\w+ -> demo/",
            "the ACP agent asking permission": r" ask +S\d+ ACP-1 .*Allow execute: python -m "
                                               r"unittest -q\?",
            "the scheduled agent's run": r" run +reporter-\S+ started \(heartbeat\)",
            "the scheduled agent asking": r" ask +S\d+ reporter: Post the board summary to "
                                          r"the team's chat\?",
        })
        [asked] = [line.split()[2] for line in output if " ask " in line and " reporter:" in line]
        answered = subprocess.run(
            [sys.executable, "-m", "marrow_tui", "answer", asked, "post it", "--uri",
             _uri(output), "--state-dir", str(state)], env=clean_env(), capture_output=True,
            text=True, timeout=WAIT)
        assert answered.returncode == 0, answered.stderr
        _wait_for_lines(lines, output, {
            "the summary posted": r" chat +#\d+ reporter -> all: reporter: ",
            "the run over": r" run +reporter-\S+ ok \(exit 0\): \[reporter\] posted to the team",
        })
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0, "".join(output[-60:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    while (line := lines.get(timeout=WAIT)) is not None:
        output.append(line)
    assert output[-1].startswith("marrow-tui: stopped"), "".join(output[-20:])
    logs = sorted(p.name for p in (state / "demo").glob("*.log"))
    assert logs == ["demo-alice.log", "demo-bob.log", "demo-carol.log", "demo-planner.log"]
    assert "stopping; released" in (state / "demo" / "demo-bob.log").read_text()


def _uri(output: list[str]) -> str:
    found = next(m for line in output if (m := re.search(r"listening on (ws://\S+)", line)))
    return found.group(1)


def _demo(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """`marrow-tui demo --no-ui` with no --state-dir, its temporary folder in tmp_path."""
    command = [sys.executable, "-m", "marrow_tui", "demo", "--no-ui", "--port", "0", *extra]
    env = {**clean_env(), PACE_ENV: "0", "TMPDIR": str(tmp_path)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path, env=env)


@pytest.mark.parametrize("keep", [False, True])
def test_the_demo_says_where_its_state_is_and_removes_it_unless_kept(tmp_path: Path,
                                                                     keep: bool) -> None:
    process = _demo(tmp_path, *(["--keep"] if keep else []))
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    threading.Thread(target=_read, args=(process.stdout, lines), daemon=True).start()
    try:
        _wait_for_lines(lines, output, {
            "where the state is": r"^marrow-tui: the demo's state folder is /\S+ \(",
            "the scheduled agent's run": r" run +reporter-\S+ started \(heartbeat\)",
        })
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0, "".join(output[-60:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    while (line := lines.get(timeout=WAIT)) is not None:
        output.append(line)
    folder = Path(re.search(r"state folder is (\S+) \(", output[0]).group(1))  # type: ignore[union-attr]
    assert folder.parent == tmp_path and folder.name.startswith("marrow-demo-")
    if keep:
        assert output[0].endswith("(kept at exit)\n")
        assert output[-1] == f"marrow-tui: the demo's state is kept in {folder}\n"
        assert (folder / "events.db").is_file()
    else:
        assert output[0].endswith("(removed at exit; --keep keeps it)\n")
        assert output[-1] == f"marrow-tui: removed the demo's state folder {folder}\n"
        assert not folder.exists()
    assert [p.name for p in tmp_path.iterdir()] == ([folder.name] if keep else [])


# --------------------------------------------------------------------------- the ACP issue


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_the_demo_runs_a_copy_of_its_acp_workflow_made_once(tmp_path: Path) -> None:
    example = _tree(ACP_EXAMPLE)
    path = demo_workflow(tmp_path / "state")
    assert path == tmp_path / "state" / "acp-demo" / "WORKFLOW.md"
    assert _tree(path.parent) == example
    # a demo started again on the same state finds its issue where it left it
    (path.parent / "issues" / "Todo" / "ACP-1.md").rename(
        path.parent / "issues" / "Done" / "ACP-1.md")
    assert demo_workflow(tmp_path / "state") == path
    assert (path.parent / "issues" / "Done" / "ACP-1.md").is_file()
    assert not (path.parent / "issues" / "Todo" / "ACP-1.md").exists()
    assert _tree(ACP_EXAMPLE) == example  # the example itself is only read
    with pytest.raises(DemoUnavailable, match="source checkout"):
        demo_workflow(tmp_path / "other", example=tmp_path / "missing")
    # the scheduled agent's config likewise, and it loads as it is
    reporter = _tree(REPORTER_EXAMPLE)
    config = demo_config(tmp_path / "state")
    assert config == tmp_path / "state" / "reporter-demo" / "marrow.toml"
    assert _tree(config.parent) == reporter
    loaded = load_config(config)
    assert loaded.errors == [] and loaded.config is not None, loaded.diagnostics
    assert [a.name for a in loaded.config.agents] == ["reporter"]
    with pytest.raises(DemoUnavailable, match="source checkout"):
        demo_config(tmp_path / "other", example=tmp_path / "missing")


@pytest.mark.parametrize(("answer", "tested"), [("Allow once", "the tests pass"),
                                                ("Reject", "tests not run (not allowed)")])
async def test_the_demos_acp_issue_waits_for_the_operator_then_is_done(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch, answer: str,
        tested: str) -> None:
    monkeypatch.setenv(PACE_ENV, "0")
    path = demo_workflow(tmp_path / "demo")
    run = await make(path)
    run.patience = 60.0  # the agent and our MCP server: a Python start each on a busy machine
    await run.tick()
    book = run.hub.runtime.state.steering
    [asked] = await run.until(lambda: list(book.open.values()))
    assert (asked.kind, asked.question, asked.choices) == (
        "permission", "Allow execute: python -m unittest -q?",
        ["Allow once", "Always allow", "Reject"])
    assert "python -m unittest -q" in asked.context
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": asked.id, "answer": answer},
                           None, operator=True)
    [ended] = await run.until(lambda: run.ended("ACP-1"))
    assert ended.reason == "marked done: slugify(): collapse runs of separators"
    assert (ended.usage["total"], ended.usage["cost"]) == (19683, 0.0731)
    assert (path.parent / "issues" / "Done" / "ACP-1.md").is_file()
    transcript = Path(ended.transcript).read_text()
    assert tested in transcript  # the summary it gave mark_done
    # the agent read only what it was given: every read, search and edit was allowed by
    # the policy, and the one command was the operator's call
    assert [r.kind for r in (*book.open.values(), *book.ended.values())] == ["permission"]


def test_the_agent_script_runs_from_a_checkout_without_installing(tmp_path: Path) -> None:
    """`python examples/demo_team/agent.py --help` works as the README says."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(REPO / "examples/demo_team/agent.py"), "--help"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    assert "--pace" in out.stdout


def test_the_demo_module_imports_no_console_library() -> None:
    """Headless mode imports marrow_tui.demo; it must not pull in Textual or Rich."""
    code = ("import sys, marrow_tui.demo\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_lease_handed_over_while_an_agent_starts_is_not_released_as_a_leftover(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent asks the hub what it holds when it starts, and releases what an earlier
    session of its name left. A lease handed to it while that question is on its way is
    already its own: it is kept (and picked up), never released as a leftover."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_agent", AGENT_SCRIPT)
    assert spec is not None and spec.loader is not None
    demo_agent = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, demo_agent)  # its dataclasses look it up
    spec.loader.exec_module(demo_agent)
    async with HubClient(hub.uri, "test/operator") as operator, \
            demo_agent.DemoClient(hub.uri, "demo/bob") as bob_client:
        agent = demo_agent.Agent(bob_client, demo_agent.Pace(0, demo_agent.random.Random(7)))
        await operator.claim("old-1", ["old/"], "main")
        await operator.handoff("old-1", "demo/bob")  # before it starts: a leftover
        asking = bob_client.state
        arrived = bob_client.subscribe()

        async def state_after_a_handoff(**kwargs: Any) -> Any:
            await operator.claim("op-1", ["ops/runbook.md"], "main")
            await operator.handoff("op-1", "demo/bob")  # lands while the agent asks
            await bob_client.next_matching(arrived, lambda f: f.get("type") == "handoff_granted"
                                           and f.get("task_id") == "op-1", 10)
            return await asking(**kwargs)

        bob_client.state = state_after_a_handoff  # type: ignore[method-assign]
        await agent.release_leftovers()
        claims = hub.runtime.state.claims
        assert claims.get("old-1") is None  # an earlier session's: released
        held = claims.get("op-1")
        assert held is not None and held.owner == "demo/bob"  # handed in this one: kept
