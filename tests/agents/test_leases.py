"""ACP runs that never collide: each run holds a lease on its checkout, and an edit is checked
against every other agent's live lease before it runs. Two scripted fake agents (real
subprocesses, tests/support/fake_acp_agent.py `editor`) run as AgentSessions on a real
runtime (SQLite event log, WebSocket hub on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.agent_session import AgentSession, Ending, Limits, live_sessions, \
    marrow_mcp_server
from marrow_tui.core.acp import PermissionPolicy
from marrow_tui.core.events import Event, describe
from marrow_tui.core.steering import Request
from marrow_tui.protocol.frames import Outcome
from tests.support.hubproc import REPO
from tests.support.hub import Hub, start_hub
from tests.support.orchestrator import FAKE_ACP_AGENT

#: each fake agent starts a Python that imports the ACP SDK
PATIENCE = 60.0
ALLOW = PermissionPolicy(mode="allow")


class Runs:
    """Runs on one hub, and every event its change feed told."""

    def __init__(self, hub: Hub, tmp: Path) -> None:
        self.hub = hub
        self.tmp = tmp
        self.events: list[Event] = []
        self.tasks: dict[str, asyncio.Task[Ending]] = {}
        self.sessions: dict[str, AgentSession] = {}
        self.changed = asyncio.Event()
        hub.runtime.subscribe(self._heard)

    def _heard(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.changed.set()

    def emit(self, event: Event) -> None:
        self.hub.runtime.state.apply(event)
        self.hub.runtime.submit(Outcome(events=[event]))

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e.data for e in self.events
                if e.kind == kind and all(e.data.get(k) == v for k, v in match.items())]

    async def until(self, test: Callable[[], Any], timeout: float = PATIENCE) -> Any:
        """Wait (bounded) until `test()` is true: on every event, and every 50 ms."""
        async with asyncio.timeout(timeout):
            while not (value := test()):
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)
        return value

    def start(self, agent: str, workspace: Path, edit: dict[str, Any], *,
              hold: Path | None = None, policy: PermissionPolicy = ALLOW,
              task_id: str = "", mcp: bool = False, scenario: str = "editor",
              lease_paths: tuple[str, ...] = ()) -> AgentSession:
        sid = f"{agent.replace('/', '-')}-run"
        identity = {"MARROW_AGENT": agent, "MARROW_SESSION": sid,
                    "MARROW_HUB_URI": self.hub.uri, "PYTHONPATH": str(REPO)}
        env = {**os.environ, "FAKE_EDIT": json.dumps(edit), **identity}
        if hold is not None:
            env["FAKE_HOLD"] = str(hold)
        session = AgentSession(
            self.hub.runtime, self.emit, session=sid, agent=agent, task_id=task_id,
            command=[sys.executable, str(FAKE_ACP_AGENT), scenario], workspace=workspace,
            env=env, stderr_log=self.tmp / "logs" / f"{sid}.stderr.log",
            transcript=self.tmp / "logs" / f"{sid}.jsonl",
            mcp_servers=[marrow_mcp_server(identity)] if mcp else [], policy=policy,
            limits=Limits(), read_timeout=PATIENCE, stop=asyncio.Event(),
            is_done=lambda: False, continuation=None, lease_paths=lease_paths)
        live_sessions(self.hub.runtime).add(session)
        self.sessions[agent] = session
        self.tasks[agent] = asyncio.ensure_future(session.run("Make the edit."))
        return session

    async def answer_of(self, agent: str) -> str:
        """What the agent said the permission's answer was, once its run ended."""
        async with asyncio.timeout(PATIENCE):
            ending = await self.tasks[agent]
        return ending.last_line

    def lease(self, agent: str) -> tuple[str, ...]:
        task = self.sessions[agent].lease
        claim = self.hub.runtime.state.claims.get(task or "")
        return claim.paths if claim is not None else ()

    async def grown(self, agent: str, path: str) -> None:
        await self.until(lambda: path in self.lease(agent))

    async def conflict(self) -> Request:
        book = self.hub.runtime.state.steering
        [request] = await self.until(lambda: [r for r in book.open.values()
                                              if r.kind == "conflict"])
        return request

    async def answer(self, request: Request, text: str) -> list[dict[str, Any]]:
        """The operator's answer, and the replies it got (once what it did is committed)."""
        replies: list[dict[str, Any]] = []
        self.hub.runtime.handle("operator/test", {"type": "steer_answer", "id": request.id,
                                                  "answer": text},
                                lambda text: replies.append(json.loads(text)), operator=True)
        await self.hub.runtime.settled()
        return replies

    async def stop(self) -> None:
        """Stop what still runs (a failed test's runs), each as the operator would."""
        for session in self.sessions.values():
            session.stop.set()
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)


@pytest.fixture
async def runs(tmp_path: Path) -> AsyncIterator[Runs]:
    hub = await start_hub(tmp_path / "state")
    running = Runs(hub, tmp_path)
    yield running
    await running.stop()
    await hub.stop()


def checkout(tmp_path: Path, name: str = "repo") -> Path:
    """A git checkout (its `.git` marks the root) with a `src` folder."""
    root = tmp_path / name
    (root / ".git").mkdir(parents=True)
    (root / "src").mkdir()
    return root


def edit(path: str) -> dict[str, Any]:
    return {"kind": "edit", "path": path}


async def test_disjoint_edits_in_one_checkout_both_go_on_and_grow_their_leases(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, edit("src/a.py"), hold=hold)
    await runs.grown("demo/alice", "src/a.py")
    runs.start("demo/bob", repo / "src", edit("b.py"))  # from a folder inside the checkout
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    [grow] = runs.of("claim_grow", owner="demo/bob")
    assert (grow["paths"], grow["tool_call_id"], grow["title"]) == (
        ["src/b.py"], "call-1", "Edit b.py")
    hold.touch()
    assert await runs.answer_of("demo/alice") == "answer=allow-once"
    claims = runs.hub.runtime.state.claims
    assert not runs.hub.runtime.state.steering.open
    await runs.until(lambda: len(claims) == 0)  # both released when their runs ended
    leases = runs.of("claim")
    assert {c["worktree"] for c in leases} == {str(repo.resolve())}
    assert {c["task_id"] for c in leases} == {"demo-alice-run", "demo-bob-run"}


@pytest.mark.parametrize("first,second", [("demo/alice", "demo/bob"),
                                          ("demo/bob", "demo/alice")])
async def test_an_overlapping_edit_becomes_a_conflict_naming_the_holder(
        runs: Runs, tmp_path: Path, first: str, second: str) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start(first, repo, edit("src/auth/login.py"), hold=hold, task_id="AUTH-3")
    await runs.grown(first, "src/auth/login.py")
    runs.start(second, repo, edit("src/auth/login.py"))
    request = await runs.conflict()
    assert request.asker == second and request.choices == ["Let it", "Wait", "Hand over",
                                                           "Reject"]
    assert f"held by {first} (AUTH-3) since " in request.question
    [asked] = await runs.until(lambda: [e for e in runs.events if e.kind == "steer_ask"])
    assert describe(asked) == (f"blocked   {request.id} {second}'s edit of src/auth/login.py: "
                               f"held by {first} (AUTH-3)")
    await runs.answer(request, "Reject")
    assert await runs.answer_of(second) == "answer=reject-once"
    assert "src/auth/login.py" not in runs.lease(second)
    hold.touch()
    assert await runs.answer_of(first) == "answer=allow-once"


async def conflict_over_a(runs: Runs, tmp_path: Path) -> tuple[Request, Path]:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, edit("src/a.py"), hold=hold, task_id="AUTH-3")
    await runs.grown("demo/alice", "src/a.py")
    runs.start("demo/bob", repo, edit("src/a.py"))
    return await runs.conflict(), hold


async def test_let_it_allows_the_edit_and_tells_the_holder_by_chat(runs: Runs,
                                                                    tmp_path: Path) -> None:
    request, hold = await conflict_over_a(runs, tmp_path)
    await runs.answer(request, "Let it")
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    [chat] = runs.of("chat", target="demo/alice")
    assert chat["sender"] == "demo/bob" and "src/a.py" in chat["payload"]
    assert runs.lease("demo/alice") == ("src/a.py",)  # the holder keeps its lease
    hold.touch()


async def test_hand_over_moves_the_holders_lease_to_the_editor(runs: Runs,
                                                               tmp_path: Path) -> None:
    request, hold = await conflict_over_a(runs, tmp_path)
    await runs.answer(request, "Hand over")
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    [handoff] = runs.of("handoff")
    assert (handoff["task_id"], handoff["previous_owner"], handoff["owner"]) == (
        "AUTH-3", "demo/alice", "demo/bob")
    assert runs.of("chat", target="demo/alice")
    hold.touch()
    await runs.answer_of("demo/alice")


async def test_wait_keeps_the_request_open_until_the_holder_releases(runs: Runs,
                                                                     tmp_path: Path) -> None:
    request, hold = await conflict_over_a(runs, tmp_path)
    [reply] = await runs.answer(request, "Wait")
    assert reply["type"] == "steer_answered" and reply["waiting"] is True
    book = runs.hub.runtime.state.steering
    assert book.get(request.id).open and book.get(request.id).waiting_by == "operator/test"
    hold.touch()  # alice's turn ends: its run releases its lease, and bob's edit goes on
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    ended = book.get(request.id)
    assert (ended.state, ended.answer, ended.answered_by) == ("answered", "Wait",
                                                              "hub:lease-ended")
    [grow] = runs.of("claim_grow", owner="demo/bob")
    assert grow["paths"] == ["src/a.py"]


async def test_a_wait_by_policy_times_out_to_its_default(runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, edit("src/a.py"), hold=hold)
    await runs.grown("demo/alice", "src/a.py")
    waits = PermissionPolicy(mode="allow", conflict="wait", conflict_timeout=90.0)
    runs.start("demo/bob", repo, edit("src/a.py"), policy=waits)
    request = await runs.conflict()
    assert request.waiting_by == "demo/bob" and request.default == "Reject"
    runs.hub.clock.advance(91)
    runs.hub.runtime.tick()
    assert await runs.answer_of("demo/bob") == "answer=reject-once"
    assert runs.hub.runtime.state.steering.get(request.id).default_used
    hold.touch()


async def test_a_holder_that_dies_lets_its_lease_expire_and_the_waiting_edit_goes_on(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    runtime = runs.hub.runtime
    runtime.handle("script", {"type": "claim", "task_id": "T9", "worktree": str(repo),
                              "paths": ["src/a.py"], "ttl_seconds": 30}, None)
    runs.start("demo/bob", repo, edit("src/a.py"))
    request = await runs.conflict()
    assert request.conflict["held"][0]["owner"] == "script"
    await runs.answer(request, "Wait")
    runs.hub.clock.advance(31)
    runtime.tick()
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    assert runs.of("expire", task_id="T9")


async def test_declared_paths_are_held_from_the_start(runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, {"kind": "execute", "command": "ls"}, hold=hold,
               lease_paths=("src/auth",))
    await runs.until(lambda: runs.lease("demo/alice") == ("src/auth",))
    runs.start("demo/bob", repo, edit("src/auth/login.py"))
    request = await runs.conflict()
    assert request.conflict["held"][0]["paths"] == ["src/auth"]
    await runs.answer(request, "Reject")
    assert await runs.answer_of("demo/bob") == "answer=reject-once"
    hold.touch()


async def test_a_retry_of_the_issue_gets_its_lease_back_with_the_checkpoint(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("AUTH-3", repo, edit("src/a.py"), hold=hold, task_id="AUTH-3")
    await runs.grown("AUTH-3", "src/a.py")
    runs.hub.runtime.handle("AUTH-3", {"type": "checkpoint", "task_id": "AUTH-3",
                                       "checkpoint": "login form half done"}, None)
    hold.touch()
    await runs.answer_of("AUTH-3")
    await runs.until(lambda: runs.of("release", task_id="AUTH-3"))
    hold.unlink()
    runs.start("AUTH-3", repo, edit("src/b.py"), hold=hold, task_id="AUTH-3")
    await runs.grown("AUTH-3", "src/b.py")
    again = runs.hub.runtime.state.claims.get("AUTH-3")
    assert again is not None and again.checkpoint == "login form half done"
    assert again.paths == ("src/b.py",)  # the new run's own edits; the last run's ended
    hold.touch()


async def test_a_different_worktree_never_contends(runs: Runs, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    runs.start("demo/alice", checkout(tmp_path, "one"), edit("src/a.py"), hold=hold)
    await runs.grown("demo/alice", "src/a.py")
    runs.start("demo/bob", checkout(tmp_path, "two"), edit("src/a.py"))
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    assert not runs.of("steer_ask")
    hold.touch()


async def test_an_execute_call_is_checked_when_its_paths_can_be_read(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, edit("src/a.py"), hold=hold)
    await runs.grown("demo/alice", "src/a.py")
    runs.start("demo/bob", repo, {"kind": "execute", "command": "rm -f src/a.py src/c.py"})
    request = await runs.conflict()
    assert request.conflict["paths"] == ["src/a.py", "src/c.py"]
    assert request.conflict["held"][0]["paths"] == ["src/a.py"]
    await runs.answer(request, "Reject")
    assert await runs.answer_of("demo/bob") == "answer=reject-once"
    hold.touch()


async def test_an_execute_call_that_cannot_be_read_is_left_to_the_policy(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    hold = tmp_path / "hold"
    runs.start("demo/alice", repo, edit("src/a.py"), hold=hold)
    await runs.grown("demo/alice", "src/a.py")
    runs.start("demo/bob", repo, {"kind": "execute", "command": "make clean"})
    assert await runs.answer_of("demo/bob") == "answer=allow-once"
    assert not runs.of("steer_ask") and not runs.of("claim_grow", owner="demo/bob")
    hold.touch()


@pytest.mark.parametrize("path,why", [
    ("../outside.txt", "is outside the worktree"),
    ("/etc/hosts", "is outside the worktree"),
    ("out/x.txt", "leads outside the worktree"),
])
async def test_a_path_outside_the_worktree_is_refused_in_one_sentence(
        runs: Runs, tmp_path: Path, path: str, why: str) -> None:
    repo = checkout(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (repo / "out").symlink_to(tmp_path / "elsewhere")
    runs.start("demo/bob", repo, edit(path))
    assert await runs.answer_of("demo/bob") == "answer=reject-once"
    [decided] = [t for t in runs.of("session_tool") if t.get("permission")]
    assert decided["permission"].startswith("refused: ") and why in decided["permission"]
    assert not runs.of("claim_grow")


async def test_claim_paths_over_mcp_grows_the_lease_or_names_the_holder(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    runtime = runs.hub.runtime
    runtime.handle("script", {"type": "claim", "task_id": "T9", "worktree": str(repo),
                              "paths": ["src/held.py"]}, None)
    runs.start("demo/bob", repo, {"paths": ["src/mine.py"]}, mcp=True, scenario="claimer")
    said = await runs.answer_of("demo/bob")
    assert "demo-bob-run now holds src/mine.py" in said
    [grow] = runs.of("claim_grow", owner="demo/bob")
    assert (grow["paths"], grow["title"]) == (["src/mine.py"], "claim_paths")


async def test_claim_paths_is_refused_naming_who_holds_them(runs: Runs,
                                                            tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    runs.hub.runtime.handle("script", {"type": "claim", "task_id": "T9",
                                       "worktree": str(repo), "paths": ["src"]}, None)
    runs.start("demo/bob", repo, {"paths": ["src/held.py"]}, mcp=True, scenario="claimer")
    said = await runs.answer_of("demo/bob")
    assert "src held by script (T9) since" in said
    assert not runs.of("claim_grow")


def copy_state(source: Path, target: Path) -> None:
    """The event log as a crash at this moment leaves it (every committed event)."""
    target.mkdir()
    with contextlib.closing(sqlite3.connect(source / "events.db")) as src, \
            contextlib.closing(sqlite3.connect(target / "events.db")) as dst:
        src.backup(dst)


async def test_a_restart_while_an_edit_waits_keeps_the_leases_and_the_request(
        runs: Runs, tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    runtime = runs.hub.runtime
    runtime.handle("script", {"type": "claim", "task_id": "T9", "worktree": str(repo),
                              "paths": ["src/a.py"]}, None)
    runs.start("demo/bob", repo, edit("src/a.py"))
    request = await runs.conflict()
    await runs.answer(request, "Wait")
    await runtime.settled()
    copy_state(tmp_path / "state", tmp_path / "after")
    again = await start_hub(tmp_path / "after", runs.hub.clock)
    try:
        state = again.runtime.state
        back = state.steering.get(request.id)
        assert back is not None and back.open and back.kind == "conflict"
        assert back.waiting_by == "operator/test" and back.conflict == request.conflict
        assert state.claims.get("T9").paths == ("src/a.py",)
        assert state.claims.get("demo-bob-run").session == "demo-bob-run"
        heard: list[Event] = []
        again.runtime.subscribe(heard.extend)
        again.runtime.handle("script", {"type": "release", "task_id": "T9"}, None)
        async with asyncio.timeout(PATIENCE):
            while not any(e.kind == "steer_end" for e in heard):
                await asyncio.sleep(0.05)
        ended = state.steering.get(request.id)
        assert (ended.state, ended.answer, ended.answered_by) == ("answered", "Wait",
                                                                  "hub:lease-ended")
    finally:
        await again.stop()
