"""Realistic ACP transcripts for tests and benchmarks, written by the real writer
(agents/transcript.py), and ACP runs seeded into a runtime as the runner's events say them.

`updates(n)` plays turns the way agents do: the operator's prompt, thoughts, the agent's text in
small chunks, tool calls that start pending (or, like codex, in_progress), carry a diff or some
output and end completed or failed, a plan updated as steps get done, and usage reports.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from marrow_tui.agents.transcript import Transcript

T0 = 1_800_000_000.0

SENTENCE = ("the login flow reads the session cookie and checks its signature before it "
            "looks the user up; a missing cookie sends the browser to the sign-in page")
WORDS = SENTENCE.split(" ")
FILES = ("src/auth/login.py", "src/auth/session.py", "tests/test_login.py", "README.md")


def text(kind: str, words: str) -> dict[str, Any]:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": words}}


def tool(update: str, ident: str, **fields: Any) -> dict[str, Any]:
    return {"sessionUpdate": update, "toolCallId": ident, **fields}


def diff(path: str, number: int) -> dict[str, Any]:
    old = "".join(f"line {i}\n" for i in range(20))
    new = old.replace("line 7\n", f"line 7 changed by call {number}\n").replace(
        "line 12\n", "")
    return {"type": "diff", "path": path, "oldText": old, "newText": new}


def plan(done: int) -> dict[str, Any]:
    steps = ["read the login code", "write the failing test", "fix the check", "run the tests"]
    return {"sessionUpdate": "plan", "entries": [
        {"content": step, "priority": "high",
         "status": "completed" if i < done else "in_progress" if i == done else "pending"}
        for i, step in enumerate(steps)]}


def turn(number: int) -> Iterator[dict[str, Any]]:
    """One turn: about 30 updates of every kind."""
    yield text("user_message_chunk", f"Turn {number}: fix the login bug")
    yield text("agent_thought_chunk", "I should read the session code first.")
    yield plan(number % 4)
    for call in range(2):
        ident = f"call-{number}-{call}"
        path = FILES[(number + call) % len(FILES)]
        edit = call == 1
        first = "pending" if number % 2 else "in_progress"
        yield tool("tool_call", ident, title=f"{'Edit' if edit else 'Read'} {path}",
                   kind="edit" if edit else "read", status=first,
                   locations=[{"path": path}])
        yield tool("tool_call_update", ident, status="in_progress")
        content = ([diff(path, number)] if edit else
                   [{"type": "content", "content": {"type": "text",
                                                    "text": "def login():\n    ...\n"}}])
        yield tool("tool_call_update", ident, content=content,
                   status="failed" if number % 7 == 6 and edit else "completed")
    for index in range(18):
        yield text("agent_message_chunk",
                   " ".join(WORDS[(index * 3) % len(WORDS):][:3]) + " ")
    yield text("agent_message_chunk", f"\nDone with turn {number}.\n")
    yield {"sessionUpdate": "usage_update", "used": 1000 * number, "size": 200_000,
           "cost": {"amount": 0.01 * number, "currency": "USD"}}


#: how many updates `turn` plays
UPDATES_PER_TURN = 29


def updates(count: int) -> list[dict[str, Any]]:
    """`count` updates: whole turns, the last one cut where the count ends."""
    plays = itertools.chain.from_iterable(turn(n) for n in itertools.count(1))
    return list(itertools.islice(plays, count))


def write_transcript(path: Path, count: int = 0, *, extra: list[dict[str, Any]] | None = None,
                     max_bytes: int = 1 << 40, start: float = T0) -> Path:
    """Write `count` updates (then `extra`) as the runner does, one second apart."""
    clock = itertools.count(start)
    transcript = Transcript(path, max_bytes=max_bytes, clock=lambda: float(next(clock)))
    try:
        for update in updates(count) + list(extra or ()):
            transcript.write(update)
    finally:
        transcript.close()
    return path


def append(path: Path, *more: dict[str, Any], at: float = T0) -> None:
    """More updates on a live transcript (as the runner appends them)."""
    transcript = Transcript(path, max_bytes=1 << 40, clock=lambda: at)
    try:
        for update in more:
            transcript.write(update)
    finally:
        transcript.close()


def acp_run_events(sid: str, agent: str, transcript: Path, *, started: float = T0 - 60,
                   turns: int = 1, doing: str = "", usage: dict[str, Any] | None = None,
                   ended: str | None = None) -> list[Any]:
    """The events an ACP run leaves: its start (with the transcript), its turns, the current
    tool call, and its end when `ended` names a state."""
    from marrow_tui.core.events import Event

    events = [Event("session_start", {"id": sid, "agent": agent, "started": started,
                                      "trigger": "issue", "stdout": "", "stderr": "",
                                      "tasks": [], "transcript": str(transcript)})]
    for number in range(1, turns + 1):
        events.append(Event("session_turn", {"id": sid, "agent": agent, "phase": "start",
                                             "turn": number}))
        if number < turns or ended:  # `usage` is the session's: all of it on one turn
            said = (usage or {}) if number == (turns if ended else turns - 1) else {}
            events.append(Event("session_turn", {"id": sid, "agent": agent, "phase": "end",
                                                 "turn": number, "usage": said}))
    if doing and not ended:
        events.append(Event("session_tool", {"id": sid, "agent": agent, "title": doing,
                                             "status": "in_progress"}))
    if ended:
        events.append(Event("session_end", {"id": sid, "agent": agent, "started": started,
                                            "ended": started + 50, "state": ended, "code": 0,
                                            "reason": "end_turn", "last_line": "Done."}))
    return events


def seed_acp_run(runtime: Any, events: list[Any]) -> None:
    """Apply events to the runtime as the runner's are (the state and the log)."""
    from marrow_tui.protocol.frames import Outcome

    for event in events:
        runtime.state.apply(event)
    runtime.submit(Outcome(events=events))
