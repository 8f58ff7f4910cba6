"""The Blackboard pane: declared tasks, their order and progress; declaring one, its status."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ...core.events import Refusal
from ...core.kinds import TASK_STATUSES
from ..actions import Hint
from ..modals.confirm import ChoiceModal
from ..modals.detail import DetailModal
from ..modals.form import Field, FormModal, Problem
from .base import Console, TablePane, fields
from .table import KeyedTable


def dependencies(values: dict[str, str]) -> list[str]:
    """The task ids of the Declare dialog's "Depends on" field."""
    return [dep.strip() for dep in values["depends_on"].split(",") if dep.strip()]


class BoardTable(KeyedTable):
    COLUMNS = (("task", "Task"), ("status", "Status"), ("ready", "Ready"), ("deps", "After"),
               ("owner", "Suggested"), ("title", "Title"), ("note", "Latest note"))
    TEXT = ("title", "deps", "note")

    def all_keys(self) -> Iterable[str]:
        return sorted(self.state.board.tasks)

    def cells(self, key: str) -> tuple[Any, ...] | None:
        board = self.state.board
        task = board.tasks.get(key)
        if task is None:
            return None
        notes = board.progress.for_task(key)
        note = f"[{notes[-1]['kind']}] {notes[-1]['text']}" if notes else ""
        ready = Text("ready", style="bold green") if board.is_ready(task) else ""
        return (key, task["status"], ready, ", ".join(task["depends_on"]),
                task["suggested_owner"], task["title"], note[:60])


class BoardPane(TablePane):
    name = "board"
    title = "Blackboard"

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = BoardTable(self.state, console.runtime.clock, id="board-table")

    def allows(self, action: str) -> bool:
        return action == "declare" or self.selected() is not None

    def hint(self) -> Hint:
        return ("board.status", "view.open") if self.table.selected_key is not None else ()

    def declare(self) -> None:
        form = [Field("task_id", "Task id", "e.g. P7"), Field("title", "Title"),
                Field("depends_on", "Depends on", "comma-separated task ids"),
                Field("suggested_owner", "Suggested owner", "an agent name"),
                Field("description", "Description")]

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.send(type="ledger_task", task_id=values["task_id"],
                          title=values["title"], depends_on=dependencies(values),
                          suggested_owner=values["suggested_owner"],
                          description=values["description"])

        self.console.app.push_screen(FormModal("Declare a blackboard task", form, "Declare",
                                               required=("task_id", "title"),
                                               check=self._declare_problem), submitted)

    def _declare_problem(self, values: dict[str, str]) -> Problem | None:
        """What the board would refuse (asked of the board itself, nothing sent), then what
        it would take but the operator may not mean: a dependency nobody declared (the task
        waits for it), a task id already on the board (declaring replaces it)."""
        board = self.state.board
        deps = dependencies(values)
        decided = board.decide_declare(
            self.console.session.name, values["task_id"], values["title"], depends_on=deps,
            suggested_owner=values["suggested_owner"], description=values["description"],
            now=self.console.runtime.clock())
        if isinstance(decided, Refusal):
            field = "depends_on" if decided.reason == "CYCLE" else "task_id"
            return Problem(field, decided.text)
        unknown = [dep for dep in deps if dep not in board.tasks and dep != values["task_id"]]
        if unknown:
            one = len(unknown) == 1
            return Problem("depends_on", f"{', '.join(unknown)} {'is' if one else 'are'} not on "
                           f"the board: the task is not ready until {'it is' if one else 'they are'}"
                           " declared and done.", warning=True)
        current = board.tasks.get(values["task_id"])
        if current is not None:
            return Problem("task_id", f"{values['task_id']} is already on the board "
                           f"({current['title']!r}): declaring replaces its title, "
                           "dependencies, owner and description.", warning=True)
        return None

    def status(self) -> None:
        task = self.state.board.tasks.get(self.selected() or "")
        if task is None:
            return
        choices = [(s, f"{s}{'  (now)' if s == task['status'] else ''}") for s in TASK_STATUSES]

        def chosen(status: str | None) -> None:
            if status and status != task["status"]:
                self.send(type="ledger_task_update", task_id=task["task_id"], status=status)

        self.console.app.push_screen(ChoiceModal(f"Status of {task['task_id']}", choices),
                                     chosen)

    def open(self, key: str) -> None:
        board = self.state.board
        task = board.tasks.get(key)
        if task is None:
            return
        body = fields(((label, task[label]) for label in (
            "title", "status", "suggested_owner", "project", "created_by", "version",
            "description")), width=15)
        body.append("\nDepends on (nearest first):\n", style="bold")
        for dep in board.chain(key):
            other = board.tasks.get(dep)
            status = other["status"] if other else "not declared"
            body.append(f"  {dep}  [{status}]\n")
        if not board.chain(key):
            body.append("  nothing\n", style="dim")
        body.append("\nProgress:\n", style="bold")
        for note in board.progress.for_task(key)[-20:]:
            body.append(f"  [{note['kind']}] {note['author']}: {note['text']}\n")
        if not board.progress.for_task(key):
            body.append("  no notes yet\n", style="dim")
        self.console.app.push_screen(DetailModal(f"Task {key}", body))
