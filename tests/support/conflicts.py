"""Conflicts for console tests: an ACP run's edit blocked by another agent's lease.

`Editors` makes one arise for real: two scripted fake ACP agents (real subprocesses,
tests/support/fake_acp_agent.py `editor`) run as AgentSessions on the console's own runtime,
on one checkout, started as the scheduler starts a run (its `session_start` names the
transcript). `seed_conflict` writes the same state with fixed data for pictures: each event
made by the runtime's own deciders (the claim book, the steering book), as AgentSession makes
them, and transcripts written by the real writer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from marrow_tui.agent_session import AgentSession, Ending, Limits, live_sessions
from marrow_tui.core.acp import PermissionPolicy
from marrow_tui.core.events import Event
from marrow_tui.core.steering import CONFLICT_CHOICES, REJECT, Request
from marrow_tui.protocol.frames import Outcome
from marrow_tui.runtime import Runtime

from tests.support.orchestrator import FAKE_ACP_AGENT
from tests.support.transcripts import tool, write_transcript

#: each fake agent starts a Python that imports the ACP SDK
PATIENCE = 60.0


def emit(runtime: Runtime, event: Event) -> None:
    """An event as a run's are: in the state at once, and in the log."""
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))


def checkout(root: Path) -> Path:
    """A git checkout (its `.git` marks the root) with a `src` folder."""
    (root / ".git").mkdir(parents=True)
    (root / "src").mkdir()
    return root


class Editors:
    """Fake editor agents on one checkout, run as AgentSessions on a console's runtime."""

    def __init__(self, runtime: Runtime, tmp: Path) -> None:
        self.runtime = runtime
        self.tmp = tmp
        self.repo = checkout(tmp / "repo")
        self.tasks: dict[str, asyncio.Task[Ending]] = {}
        self.sessions: dict[str, AgentSession] = {}
        self.holds: list[Path] = []

    def start(self, agent: str, path: str, *, task_id: str = "", history: int = 0,
              hold: bool = False) -> AgentSession:
        """Run `agent`'s editor on `path`; its transcript starts with `history` updates of an
        earlier turn (so the lines in question are not simply the last ones); `hold` keeps
        the run (and its lease) until `release`."""
        sid = f"{agent.replace('/', '-')}-run"
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        transcript = logs / f"{sid}.transcript.jsonl"
        if history:
            write_transcript(transcript, history)
        env = {**os.environ, "FAKE_EDIT": json.dumps({"kind": "edit", "path": path}),
               "MARROW_AGENT": agent, "MARROW_SESSION": sid}
        if hold:
            env["FAKE_HOLD"] = str(self.tmp / f"{sid}.hold")
            self.holds.append(self.tmp / f"{sid}.hold")
        emit(self.runtime, Event("session_start", {
            "id": sid, "agent": agent, "started": self.runtime.clock(), "trigger": "heartbeat",
            "stdout": "", "stderr": str(logs / f"{sid}.stderr.log"), "tasks": [],
            "transcript": str(transcript)}))
        session = AgentSession(
            self.runtime, lambda event: emit(self.runtime, event), session=sid, agent=agent,
            task_id=task_id, command=[sys.executable, str(FAKE_ACP_AGENT), "editor"],
            workspace=self.repo, env=env, stderr_log=logs / f"{sid}.stderr.log",
            transcript=transcript, mcp_servers=[], policy=PermissionPolicy(mode="allow"),
            limits=Limits(), read_timeout=PATIENCE, stop=asyncio.Event(),
            is_done=lambda: False, continuation=None)
        live_sessions(self.runtime).add(session)
        self.sessions[agent] = session
        self.tasks[agent] = asyncio.ensure_future(session.run("Make the edit."))
        return session

    def lease(self, agent: str) -> tuple[str, ...]:
        claim = self.runtime.state.claims.get(self.sessions[agent].lease or "")
        return claim.paths if claim is not None else ()

    def conflict(self) -> Request | None:
        return next((r for r in self.runtime.state.steering.open.values()
                     if r.kind == "conflict"), None)

    async def answer_of(self, agent: str) -> str:
        """What the agent said the permission's answer was, once its run ended."""
        async with asyncio.timeout(PATIENCE):
            ending = await self.tasks[agent]
        return ending.last_line

    def release(self) -> None:
        """Let the held runs end (each releases its lease)."""
        for hold in self.holds:
            hold.touch()

    async def stop(self) -> None:
        """End every run (as the operator would stop it), before the console closes."""
        self.release()
        for session in self.sessions.values():
            session.stop.set()
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)


# ---- fixed data, for pictures ------------------------------------------------------------------

WORKTREE = "/srv/demo/repo"
ALICE_RUN, BOB_RUN = "demo-alice-20270115-074000-000", "demo-bob-20270115-075800-000"
HELD = "src/auth/login.py"


def _calls(ident: str, title: str, path: str) -> list[dict[str, Any]]:
    """A tool call as agents play it: pending with its location and diff, then done."""
    return [tool("tool_call", ident, title=title, kind="edit", status="pending",
                 locations=[{"path": f"{WORKTREE}/{path}"}],
                 content=[{"type": "diff", "path": f"{WORKTREE}/{path}",
                           "oldText": "def login(user):\n    return check(user)\n",
                           "newText": "def login(user):\n    return check(user, fresh=True)\n"}]),
            tool("tool_call_update", ident, status="completed")]


def seed_conflict(runtime: Runtime, logs: Path) -> Request:
    """demo/alice's run (AUTH-3) grew its lease over src/auth/login.py by an edit 4 minutes
    ago; demo/bob's run now asks to edit it, and waits on the operator. Both runs have a
    transcript with an earlier turn before the lines in question."""
    logs.mkdir(parents=True, exist_ok=True)
    claims, steering, now = runtime.state.claims, runtime.state.steering, runtime.clock()
    alice = write_transcript(logs / f"{ALICE_RUN}.transcript.jsonl", 40, extra=[
        *_calls("call_alice_7", "Edit src/auth/login.py", HELD),
        {"sessionUpdate": "agent_message_chunk",
         "content": {"type": "text", "text": "Login now asks for a fresh session."}}])
    bob = write_transcript(logs / f"{BOB_RUN}.transcript.jsonl", 40, extra=[
        _calls("call_bob_3", "Edit src/auth/login.py", HELD)[0] | {"_meta": {
            "marrow": "permission request"}}])
    for sid, agent, started, transcript in ((ALICE_RUN, "demo/alice", now - 600, alice),
                                            (BOB_RUN, "demo/bob", now - 60, bob)):
        emit(runtime, Event("session_start", {
            "id": sid, "agent": agent, "started": started, "trigger": "heartbeat",
            "stdout": "", "stderr": "", "tasks": [], "transcript": str(transcript)}))
    for agent, task, sid, at in (("demo/alice", "AUTH-3", ALICE_RUN, now - 600),
                                 ("demo/bob", BOB_RUN, BOB_RUN, now - 60)):
        emit(runtime, _event(claims.decide_claim(agent, task, worktree=WORKTREE, ttl=3600,
                                                 note=f"run {sid}", session=sid, now=at)))
    emit(runtime, _event(claims.decide_grow("AUTH-3", (HELD,), tool_call_id="call_alice_7",
                                            title="Edit src/auth/login.py", now=now - 240)))
    [held] = claims.overlaps("demo/bob", WORKTREE, (HELD,), now)
    facts = {"worktree": WORKTREE, "owner": "demo/bob", "task_id": BOB_RUN,
             "session": BOB_RUN, "paths": [HELD], "whole": False,
             "tool_call_id": "call_bob_3", "title": "Edit src/auth/login.py", "kind": "edit",
             "held": [held.to_dict()]}
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(held.since))
    context = (f"{HELD} held by demo/alice (AUTH-3) since {since}\n\nHand over moves each of "
               f"these whole leases to demo/bob.\n\nedit: Edit src/auth/login.py\n\n--- "
               f"{WORKTREE}/{HELD}\n-def login(user):\n-    return check(user)\n"
               f"+def login(user):\n+    return check(user, fresh=True)\n\nPaths: "
               f"{WORKTREE}/{HELD}")
    asked = steering.decide_ask(
        "demo/bob", now - 30, question=f"demo/bob's edit of {HELD} is blocked: {HELD} held by "
        f"demo/alice (AUTH-3) since {since}", context=context, choices=list(CONFLICT_CHOICES),
        default=REJECT, timeout=600, session=BOB_RUN, kind="conflict", conflict=facts,
        key=f"conflict:{BOB_RUN}:call_bob_3:1")
    emit(runtime, _event(asked))
    request = steering.get(str(_event(asked).data["id"]))
    assert request is not None
    return request


def _event(decided: object) -> Event:
    assert isinstance(decided, Event), decided
    return decided

