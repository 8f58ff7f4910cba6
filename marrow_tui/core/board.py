"""The blackboard: a plan of tasks with dependencies, and a bounded ledger of progress notes.

It is independent of claims (the two only share the task-id namespace). A task is *ready* when it
is `open` and every dependency is on the board and `done` or `cancelled`; a dependency on a task
nobody has declared yet counts as unmet. A declaration that would close a dependency cycle is
refused, so the plan is always a DAG.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .events import Event, Refusal
from .kinds import PROGRESS_KINDS, TASK_STATUSES

FINISHED = frozenset({"done", "cancelled"})
MAX_PROGRESS = 5000
MAX_PROGRESS_PER_AUTHOR = 1000
MAX_PROGRESS_PER_TASK = 1000
#: one note's text, in characters: the ledger holds at most MAX_PROGRESS of them
MAX_NOTE = 16 * 1024
#: the ledger's notes, as the hub encodes them (ASCII JSON), in bytes: in all and per author,
#: so notes of the largest size cannot pin 5,000 x 16 KiB, and one author's push out its own
MAX_PROGRESS_BYTES = 8 << 20
MAX_PROGRESS_BYTES_PER_AUTHOR = 2 << 20


def _version_guard(expected: object, current: int, task_id: str) -> Refusal | None:
    if expected is None:
        return None
    if isinstance(expected, bool) or not isinstance(expected, int):
        return Refusal("MALFORMED", "expected_version must be an integer.")
    if expected != current:
        return Refusal(
            "VERSION_CONFLICT",
            f"Task '{task_id}' version conflict: expected v{expected}, board has v{current}.",
        )
    return None


class _Ledger:
    """Progress notes with retention bounds: in all, per author and per task, by count; in
    all and per author, by bytes. The oldest note that breaks a bound goes first (never the
    note just added: one note is at most MAX_NOTE, far below either byte bound)."""

    def __init__(
        self,
        limit: int = MAX_PROGRESS,
        per_author: int = MAX_PROGRESS_PER_AUTHOR,
        per_task: int = MAX_PROGRESS_PER_TASK,
        limit_bytes: int = MAX_PROGRESS_BYTES,
        per_author_bytes: int = MAX_PROGRESS_BYTES_PER_AUTHOR,
    ) -> None:
        self.limit, self.per_author, self.per_task = limit, per_author, per_task
        self.limit_bytes, self.per_author_bytes = limit_bytes, per_author_bytes
        self._notes: dict[int, dict[str, Any]] = {}
        self._by_author: dict[str, deque[int]] = {}
        self._by_task: dict[str, deque[int]] = {}
        self._sizes: dict[int, int] = {}
        self._author_bytes: dict[str, int] = {}
        #: the encoded size of every note held
        self.bytes = 0
        self._next = 0

    @staticmethod
    def size(note: dict[str, Any]) -> int:
        """A note's bytes as the hub sends and snapshots it (ASCII JSON)."""
        return len(json.dumps(note, separators=(",", ":")))

    def add(self, note: dict[str, Any]) -> None:
        number = self._next
        self._next += 1
        self._notes[number] = note
        size = self._sizes[number] = self.size(note)
        self.bytes += size
        who = note["author"]
        self._author_bytes[who] = self._author_bytes.get(who, 0) + size
        author = self._by_author.setdefault(who, deque())
        task = self._by_task.setdefault(note["task_id"], deque())
        author.append(number)
        task.append(number)
        while len(author) > self.per_author or (
                self._author_bytes[who] > self.per_author_bytes and len(author) > 1):
            self._evict(author[0])
        while len(task) > self.per_task:
            self._evict(task[0])
        while len(self._notes) > self.limit or (
                self.bytes > self.limit_bytes and len(self._notes) > 1):
            self._evict(next(iter(self._notes)))

    def _evict(self, number: int) -> None:
        note = self._notes.pop(number)
        size = self._sizes.pop(number)
        self.bytes -= size
        left = self._author_bytes[note["author"]] - size
        if left:
            self._author_bytes[note["author"]] = left
        else:
            del self._author_bytes[note["author"]]
        for index, key in ((self._by_author, note["author"]), (self._by_task, note["task_id"])):
            queue = index[key]
            if queue and queue[0] == number:
                queue.popleft()
            else:
                queue.remove(number)
            if not queue:
                del index[key]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._notes.values())

    def __len__(self) -> int:
        return len(self._notes)

    def for_task(self, task_id: str) -> list[dict[str, Any]]:
        return [self._notes[n] for n in self._by_task.get(task_id, ())]


class Board:
    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.progress = _Ledger()

    # ---- queries -------------------------------------------------------------------------

    def is_ready(self, task: dict[str, Any]) -> bool:
        if task["status"] != "open":
            return False
        for dep in task["depends_on"]:
            other = self.tasks.get(dep)
            if other is None or other["status"] not in FINISHED:
                return False
        return True

    def ready(self) -> list[str]:
        return sorted(tid for tid, task in self.tasks.items() if self.is_ready(task))

    def chain(self, task_id: str) -> list[str]:
        """Every task `task_id` depends on, directly or not, nearest first."""
        order: list[str] = []
        seen = {task_id}
        queue = deque(self.tasks.get(task_id, {}).get("depends_on", ()))
        while queue:
            dep = queue.popleft()
            if dep in seen:
                continue
            seen.add(dep)
            order.append(dep)
            queue.extend(self.tasks.get(dep, {}).get("depends_on", ()))
        return order

    def _reaches(self, start: Iterable[str], target: str) -> bool:
        stack = list(start)
        seen: set[str] = set()
        while stack:
            current = stack.pop()
            if current == target:
                return True
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.tasks.get(current, {}).get("depends_on", ()))
        return False

    def snapshot(self) -> dict[str, Any]:
        return {
            "tasks": [self.tasks[tid] for tid in sorted(self.tasks)],
            "ready": self.ready(),
            "progress": list(self.progress),
        }

    # ---- decisions -----------------------------------------------------------------------

    def decide_declare(
        self,
        who: str,
        task_id: str,
        title: str,
        *,
        description: str = "",
        depends_on: Iterable[str] = (),
        suggested_owner: str = "",
        project: str = "",
        expected_version: object = None,
        now: float,
    ) -> Event | Refusal:
        task_id, title = task_id.strip(), title.strip()
        if not task_id or not title:
            return Refusal("MALFORMED", "A board task needs a task_id and a title.")
        current = self.tasks.get(task_id)
        refusal = _version_guard(expected_version, current["version"] if current else 0, task_id)
        if refusal:
            return refusal
        deps: list[str] = []
        for dep in depends_on:
            dep = dep.strip()
            if dep and dep != task_id and dep not in deps:
                deps.append(dep)
        if current and project and current["project"] and project != current["project"]:
            return Refusal(
                "PROJECT_CONFLICT",
                f"Task '{task_id}' belongs to project '{current['project']}', not '{project}'.",
            )
        if self._reaches(deps, task_id):
            return Refusal("CYCLE", f"Task '{task_id}' dependencies would form a cycle.")
        task = {
            "task_id": task_id,
            "title": title,
            "description": description.strip(),
            "depends_on": deps,
            "status": current["status"] if current else "open",
            "suggested_owner": suggested_owner.strip(),
            "project": project or (current["project"] if current else ""),
            "version": (current["version"] if current else 0) + 1,
            "created_by": current["created_by"] if current else who,
            "created_at": current["created_at"] if current else now,
            "updated_at": now,
        }
        return Event("board_task", {"op": "posted", "by": who, "task": task})

    def decide_update(
        self,
        who: str,
        task_id: str,
        *,
        status: str | None = None,
        suggested_owner: str | None = None,
        project: str | None = None,
        expected_version: object = None,
        now: float,
    ) -> Event | Refusal:
        current = self.tasks.get(task_id)
        refusal = _version_guard(expected_version, current["version"] if current else 0, task_id)
        if refusal:
            return refusal
        if current is None:
            return Refusal("UNKNOWN_TASK", f"Task '{task_id}' is not on the board.")
        if status is not None and status not in TASK_STATUSES:
            return Refusal(
                "BAD_STATUS",
                f"Unknown board status '{status}' (use one of {', '.join(TASK_STATUSES)}).",
            )
        if project and current["project"] and project != current["project"]:
            return Refusal(
                "PROJECT_CONFLICT",
                f"Task '{task_id}' belongs to project '{current['project']}', not '{project}'.",
            )
        task = dict(current)
        if status is not None:
            task["status"] = status
        if suggested_owner is not None:
            task["suggested_owner"] = suggested_owner.strip()
        if project:
            task["project"] = project
        task["version"] = current["version"] + 1
        task["updated_at"] = now
        return Event("board_task", {"op": "updated", "by": who, "task": task})

    def decide_progress(
        self, who: str, task_id: str, text: str, *, kind: str = "note", now: float
    ) -> Event | Refusal:
        task_id = task_id.strip()
        if not task_id:
            return Refusal("MALFORMED", "A progress note needs a task_id.")
        if kind not in PROGRESS_KINDS:
            return Refusal(
                "BAD_KIND",
                f"Unknown progress kind '{kind}' (use one of {', '.join(PROGRESS_KINDS)}).",
            )
        if len(text) > MAX_NOTE:
            return Refusal("too_long", f"A progress note is at most {MAX_NOTE:,} characters; "
                                       f"this one is {len(text):,} (post a summary, or a path).")
        note = {"task_id": task_id, "author": who, "kind": kind, "text": text, "posted_at": now}
        return Event("progress", note)

    # ---- applying events -----------------------------------------------------------------

    def apply_task(self, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self.tasks[task["task_id"]] = task
        return task

    def apply_progress(self, data: dict[str, Any]) -> None:
        self.progress.add(data)
