"""The merged view of a session and its transcript file, on plain updates: no agent."""

from __future__ import annotations

import json
from pathlib import Path

from marrow_tui.agents.transcript import Transcript
from marrow_tui.agents.view import SessionView, Tokens

UPDATES = [
    {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "in_progress"},
    {"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "make", "kind": "execute",
     "status": "pending"},
    {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed",
     "rawOutput": "ok"},
    {"sessionUpdate": "tool_call", "toolCallId": "t1", "status": "pending"},
    {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "done"}},
    {"sessionUpdate": "plan", "entries": [{"content": "a", "priority": "high",
                                           "status": "pending"}]},
    {"sessionUpdate": "usage_update", "used": 10, "size": 100},
]


def test_a_status_only_moves_forward_whatever_order_the_updates_come_in() -> None:
    view = SessionView()
    for update in UPDATES:
        view.apply(update)
    call = view.tool_calls["t1"]
    assert (call.title, call.kind, call.status, call.raw_output) == (
        "make", "execute", "completed", "ok")
    assert call.over and view.message == "done" and view.plan[0].content == "a"


def test_turns_add_their_tokens_and_a_turn_without_usage_adds_none() -> None:
    view = SessionView()
    assert view.turn_ended({"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}) == Tokens(
        5, 2, 7)
    assert view.turn_ended(None) is None
    view.turn_ended({"inputTokens": 1, "outputTokens": 1, "totalTokens": 2})
    assert view.tokens == Tokens(6, 3, 9)


def test_a_transcript_read_back_gives_the_same_view(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path / "s.jsonl", clock=lambda: 12.5)
    live = SessionView()
    for update in UPDATES:
        transcript.write(update)
        live.apply(update)
    transcript.close()
    again = SessionView()
    for line in (tmp_path / "s.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["at"] == 12.5
        again.apply(record["update"])
    assert again == live


def test_an_update_larger_than_the_cap_is_noted_not_written(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path / "s.jsonl", max_bytes=300, backups=1)
    transcript.write({"sessionUpdate": "tool_call_update", "toolCallId": "t9",
                      "rawOutput": "x" * 1000})
    transcript.close()
    [line] = (tmp_path / "s.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["update"] == {"sessionUpdate": "tool_call_update", "toolCallId": "t9"}
    assert record["dropped"] > 1000
