"""The blackboard verbs: declare and update tasks on the shared board, post progress notes,
and read the board."""

from __future__ import annotations

from ..core.events import Event, Refusal
from .frames import Call, integer_field, optional_text_field, strings_field, task_id_field, \
    text_field


def ledger_task(call: Call) -> None:
    f = call.frame
    result = call.context.state.board.decide_declare(
        call.sender,
        task_id_field(f),
        text_field(f, "title"),
        description=text_field(f, "description"),
        depends_on=strings_field(f, "depends_on"),
        suggested_owner=text_field(f, "suggested_owner"),
        project=text_field(f, "project"),
        expected_version=integer_field(f, "expected_version"),
        now=call.context.clock(),
    )
    _announce(call, result, "ledger_task_posted", "declared")


def ledger_task_update(call: Call) -> None:
    f = call.frame
    result = call.context.state.board.decide_update(
        call.sender,
        task_id_field(f),
        status=optional_text_field(f, "status"),
        suggested_owner=optional_text_field(f, "suggested_owner"),
        project=optional_text_field(f, "project"),
        expected_version=integer_field(f, "expected_version"),
        now=call.context.clock(),
    )
    _announce(call, result, "ledger_task_updated", "updated")


def _announce(call: Call, result: Event | Refusal, kind: str, verb: str) -> None:
    if isinstance(result, Refusal):
        call.deny("error", result, task_id=task_id_field(call.frame))
        return
    call.emit(result)
    task = result.data["task"]
    call.broadcast(
        kind,
        f"Task '{task['task_id']}' {verb} by {call.sender}.",
        primary=True,
        task=task,
    )


def ledger_progress(call: Call) -> None:
    f = call.frame
    text = text_field(f, "text") or text_field(f, "note") or text_field(f, "payload")
    result = call.context.state.board.decide_progress(
        call.sender, task_id_field(f), text, kind=text_field(f, "kind", "note") or "note",
        now=call.context.clock(),
    )
    if isinstance(result, Refusal):
        call.deny("error", result, task_id=task_id_field(f))
        return
    call.emit(result)
    call.broadcast(
        "ledger_progress_posted",
        f"Progress on '{result.data['task_id']}' by {call.sender}.",
        primary=True,
        task_id=result.data["task_id"],
        note=result.data,
    )


def board_request(call: Call) -> None:
    call.reply("board_snapshot", "Board snapshot", board=call.context.state.board.snapshot())
