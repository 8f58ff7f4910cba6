"""What the event log keeps of a run's tool calls and plans (agent_session.ToolLog,
plan_summary): quick calls as one line, long ones as a start and an end, nothing lost at the
end of a turn."""

from __future__ import annotations

import asyncio
from typing import Any

from marrow_tui.agent_session import ToolLog, plan_summary


def call(ident: str, status: str, title: str = "Read src/a.py") -> dict[str, Any]:
    return {"tool_call_id": ident, "title": title, "kind": "read", "status": status,
            "paths": ["src/a.py"]}


async def test_a_call_that_ends_within_the_settle_time_is_one_line_with_its_last_title() -> None:
    lines: list[dict[str, Any]] = []
    tools = ToolLog(lines.append, settle=60.0)
    tools.changed(call("c1", "pending", "Terminal"))
    assert lines == []
    tools.changed(call("c1", "completed", "pytest -q"))
    assert lines == [call("c1", "completed", "pytest -q")]


async def test_a_call_still_running_after_the_settle_time_logs_its_start_then_its_end() -> None:
    lines: list[dict[str, Any]] = []
    tools = ToolLog(lines.append, settle=0.01)
    tools.changed(call("c2", "in_progress"))
    async with asyncio.timeout(5):
        while not lines:
            await asyncio.sleep(0.01)
    assert lines == [call("c2", "in_progress")]
    tools.changed(call("c2", "failed"))
    assert lines[1:] == [{"tool_call_id": "c2", "status": "failed"}]


async def test_the_turn_end_logs_calls_not_logged_yet_and_their_timers_log_nothing_more() -> None:
    lines: list[dict[str, Any]] = []
    tools = ToolLog(lines.append, settle=0.01)
    tools.changed(call("c3", "pending"))
    tools.changed(call("c4", "completed"))
    tools.flush()
    assert lines == [call("c4", "completed"), call("c3", "pending")]
    await asyncio.sleep(0.05)  # past the settle time: the cancelled timer stays quiet
    assert len(lines) == 2


async def test_a_permission_request_logs_its_call_at_once() -> None:
    lines: list[dict[str, Any]] = []
    tools = ToolLog(lines.append, settle=60.0)
    tools.changed(call("c5", "pending"))
    tools.announce("c5")
    tools.announce("c5")
    tools.changed(call("c5", "completed"))
    assert lines == [call("c5", "pending"), {"tool_call_id": "c5", "status": "completed"}]


def test_a_plan_is_logged_as_its_counts_and_the_step_under_way() -> None:
    entries = [{"content": "Read", "status": "completed"},
               {"content": "Fix the parser", "status": "in_progress"},
               {"content": "Test", "status": "pending"}]
    assert plan_summary(entries) == {"steps": 3, "done": 1, "now": "Fix the parser"}
    assert plan_summary([]) == {"steps": 0, "done": 0, "now": ""}


async def test_a_start_logged_late_says_what_the_call_has_become_by_then() -> None:
    lines: list[dict[str, Any]] = []
    now = {"c6": call("c6", "in_progress", "pytest -q")}
    tools = ToolLog(lines.append, settle=60.0, latest=now.get)
    tools.changed(call("c6", "pending", "Terminal"))
    tools.flush()
    assert lines == [call("c6", "in_progress", "pytest -q")]
