"""The merged view of a session and its transcript file, on plain updates: no agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.agents.transcript import Transcript
from marrow_tui.agents.view import (
    ENDED_KEPT,
    SUMMARY_PATHS,
    SessionView,
    context_usage,
    token_usage,
)

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
    assert call.over and view.message_tail == "done" and view.plan[0].content == "a"


def test_what_changed_is_a_tool_calls_first_sighting_and_end_and_a_new_plan() -> None:
    view = SessionView()
    changes = [view.apply(update) for update in UPDATES]
    assert changes == [
        ("tool", {"tool_call_id": "t1", "title": "", "kind": "other", "status": "in_progress",
                  "paths": []}),
        None,
        ("tool", {"tool_call_id": "t1", "title": "make", "kind": "execute",
                  "status": "completed", "paths": []}),
        None, None,
        ("plan", {"entries": [{"content": "a", "status": "pending"}]}),
        None]
    # the same plan again, or with only a priority changed, says nothing new
    assert view.apply(UPDATES[5]) is None
    assert view.apply({"sessionUpdate": "plan", "entries": [
        {"content": "a", "priority": "low", "status": "pending"}]}) is None
    assert view.apply({"sessionUpdate": "plan", "entries": []}) == ("plan", {"entries": []})


def test_a_tool_call_first_seen_already_over_is_reported_once() -> None:
    view = SessionView()
    first = view.apply({"sessionUpdate": "tool_call", "toolCallId": "t2", "title": "ls",
                        "status": "completed"})
    assert first is not None and first[1]["status"] == "completed"
    assert view.apply({"sessionUpdate": "tool_call_update", "toolCallId": "t2",
                       "status": "failed"}) is None


def test_a_summary_names_locations_and_diff_paths_once_and_at_most_twenty() -> None:
    view = SessionView()
    call, _ = view.merge_tool_call({
        "toolCallId": "e1",
        "locations": [{"path": "a.py", "line": 3}, {"path": "a.py"}, {"line": 9}],
        "content": [{"type": "diff", "path": "b.py", "oldText": "", "newText": "x"},
                    {"type": "diff", "path": "a.py", "newText": "y"},
                    {"type": "content", "content": {"type": "text", "text": "c.py"}}]})
    assert call.summary()["paths"] == ["a.py", "b.py"]
    call, _ = view.merge_tool_call({"toolCallId": "e2", "content": [
        {"type": "diff", "path": f"f{i}.py", "newText": ""} for i in range(50)]})
    assert call.paths == [f"f{i}.py" for i in range(SUMMARY_PATHS)]


@pytest.mark.parametrize("result, usage", [
    ({"stopReason": "end_turn"}, {}),
    ({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 8,
                "cachedReadTokens": 4}}, {"input": 5, "output": 2, "total": 8}),
    ({"usage": {"inputTokens": 5, "outputTokens": 2}}, {"input": 5, "output": 2, "total": 7}),
    ({"usage": {"inputTokens": 5}}, {"input": 5}),
    ({"_meta": {"quota": {"token_count": {"input_tokens": 30, "output_tokens": 4},
                          "model_usage": []}}}, {"input": 30, "output": 4, "total": 34}),
    # the protocol's own field wins over gemini's
    ({"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
      "_meta": {"quota": {"token_count": {"input_tokens": 30, "output_tokens": 4}}}},
     {"input": 1, "output": 1, "total": 2}),
    # what is not a count is not taken
    ({"usage": {"inputTokens": True, "outputTokens": -1, "totalTokens": "9"},
      "_meta": {"quota": "none"}}, {}),
])
def test_a_prompt_results_tokens_are_normalised(result: dict[str, Any],
                                                usage: dict[str, Any]) -> None:
    assert token_usage(result) == usage


@pytest.mark.parametrize("update, usage", [
    ({"used": 10, "size": 100}, {"context_used": 10, "context_size": 100}),
    ({"used": 10, "size": 100, "cost": {"amount": 1, "currency": "EUR"}},
     {"context_used": 10, "context_size": 100, "cost": 1.0, "currency": "EUR"}),
    ({"used": None, "cost": {"amount": "free"}}, {}),
])
def test_a_usage_update_is_normalised(update: dict[str, Any], usage: dict[str, Any]) -> None:
    assert context_usage(update) == usage


def test_turns_add_their_tokens_and_keep_the_latest_occupancy_and_cost() -> None:
    view = SessionView()
    view.turn_started()
    view.apply({"sessionUpdate": "usage_update", "used": 50, "size": 100,
                "cost": {"amount": 0.5, "currency": "USD"}})
    assert view.usage == {"context_used": 50, "context_size": 100, "cost": 0.5,
                          "currency": "USD"}  # live, before the turn ends
    view.apply({"sessionUpdate": "usage_update", "used": 20, "size": 100})  # a compaction
    assert view.turn_ended({"usage": {"inputTokens": 5, "outputTokens": 2,
                                      "totalTokens": 7}}) == {
        "input": 5, "output": 2, "total": 7, "context_used": 20, "context_size": 100,
        "cost": 0.5, "currency": "USD"}
    view.turn_started()
    assert view.turn_ended({"stopReason": "cancelled"}) == {}
    view.turn_started()
    view.turn_ended({"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}})
    assert view.usage == {"input": 6, "output": 3, "total": 9, "context_used": 20,
                          "context_size": 100, "cost": 0.5, "currency": "USD"}


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


def test_a_long_run_keeps_its_open_tool_calls_and_only_the_latest_ended_ones() -> None:
    view = SessionView()
    view.apply({"sessionUpdate": "tool_call", "toolCallId": "long", "status": "in_progress"})
    for n in range(ENDED_KEPT + 10):
        view.apply({"sessionUpdate": "tool_call", "toolCallId": f"c{n}", "title": f"Read {n}",
                    "status": "pending"})
        view.apply({"sessionUpdate": "tool_call_update", "toolCallId": f"c{n}",
                    "status": "completed"})
    kept = list(view.tool_calls)
    assert kept[0] == "long" and len(kept) == ENDED_KEPT + 1
    assert kept[1:] == [f"c{n}" for n in range(10, ENDED_KEPT + 10)]
