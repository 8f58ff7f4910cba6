"""The blackboard: declarations, the DAG rule, the ready set, CAS, progress and its retention."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marrow_tui.core.board import (
    FINISHED,
    MAX_PROGRESS,
    MAX_PROGRESS_PER_AUTHOR,
    MAX_PROGRESS_PER_TASK,
    PROGRESS_KINDS,
    TASK_STATUSES,
    Board,
    _Ledger,
)
from marrow_tui.core.events import Event, Refusal

T0 = 1_800_000_000.0


def ok(result: Event | Refusal) -> Event:
    assert isinstance(result, Event), result
    return result


def refused(result: Event | Refusal, reason: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    return result


def declare(board: Board, task: str, title: str = "title", who: str = "alice",
            now: float = T0, **kw: Any) -> dict[str, Any]:
    event = ok(board.decide_declare(who, task, title, now=now, **kw))
    assert event.kind == "board_task" and event.durable
    board.apply_task(event.data)
    return board.tasks[event.data["task"]["task_id"]]


def set_status(board: Board, task: str, status: str, who: str = "alice", **kw: Any) -> dict:
    event = ok(board.decide_update(who, task, status=status, now=T0 + 1, **kw))
    board.apply_task(event.data)
    return board.tasks[task]


# ---- declare ---------------------------------------------------------------------------------


def test_first_declaration() -> None:
    board = Board()
    event = ok(
        board.decide_declare(
            "alice", " P1 ", " Build it ", description="d", depends_on=[" P0", "P0", "", "P1"],
            suggested_owner="bob", project="proj", now=T0,
        )
    )
    assert event.data == {
        "op": "posted",
        "by": "alice",
        "task": {
            "task_id": "P1",
            "title": "Build it",
            "description": "d",
            "depends_on": ["P0"],  # stripped; blanks, duplicates and self-references dropped
            "status": "open",
            "suggested_owner": "bob",
            "project": "proj",
            "version": 1,
            "created_by": "alice",
            "created_at": T0,
            "updated_at": T0,
        },
    }
    assert board.tasks == {}  # deciding changes nothing
    board.apply_task(event.data)
    assert board.tasks["P1"]["version"] == 1


@pytest.mark.parametrize(("task", "title"), [("", "t"), ("  ", "t"), ("P", ""), ("P", "   ")])
def test_declare_needs_id_and_title(task: str, title: str) -> None:
    refused(Board().decide_declare("a", task, title, now=T0), "MALFORMED")


def test_redeclare_replaces_fields_and_keeps_status_and_creator() -> None:
    board = Board()
    declare(board, "D", "dep")
    declare(board, "P", "first", who="alice", description="d1", depends_on=["D"],
            suggested_owner="bob", project="proj")
    set_status(board, "P", "in_progress")
    again = declare(board, "P", "second", who="carol", now=T0 + 50, description="d2",
                    depends_on=[], suggested_owner="")
    assert again["title"] == "second" and again["description"] == "d2"
    assert again["depends_on"] == [] and again["suggested_owner"] == ""
    assert again["status"] == "in_progress"  # status kept
    assert again["created_by"] == "alice" and again["created_at"] == T0  # creator kept
    assert again["updated_at"] == T0 + 50
    assert again["project"] == "proj"  # an empty project keeps the existing one
    assert again["version"] == 3  # declare 1, update 2, redeclare 3


def test_project_conflict_on_declare_and_update() -> None:
    board = Board()
    declare(board, "P", project="one")
    refused(board.decide_declare("a", "P", "t", project="two", now=T0), "PROJECT_CONFLICT")
    refused(board.decide_update("a", "P", project="two", now=T0), "PROJECT_CONFLICT")
    declare(board, "P", project="one")  # the same project is fine
    declare(board, "Q")
    assert declare(board, "Q", project="late")["project"] == "late"  # set when it had none
    assert set_status(board, "Q", "open", project="")["project"] == "late"
    declare(board, "R")
    assert ok(board.decide_update("a", "R", project="p", now=T0)).data["task"]["project"] == "p"


def test_cycles_are_refused_direct_and_indirect() -> None:
    board = Board()
    declare(board, "A", depends_on=["B"])  # B is unknown for now: allowed
    text = refused(board.decide_declare("x", "B", "t", depends_on=["A"], now=T0), "CYCLE").text
    assert text == "Task 'B' dependencies would form a cycle."
    declare(board, "B", depends_on=["C"])
    declare(board, "C", depends_on=["D"])
    refused(board.decide_declare("x", "D", "t", depends_on=["A"], now=T0), "CYCLE")
    refused(board.decide_declare("x", "C", "t", depends_on=["D", "A"], now=T0), "CYCLE")
    # redeclaring with the same or fewer dependencies is not a cycle
    declare(board, "C", depends_on=["D"])
    declare(board, "D", depends_on=["E"])
    assert board.chain("A") == ["B", "C", "D", "E"]


def test_self_dependency_is_dropped_not_a_cycle() -> None:
    board = Board()
    assert declare(board, "A", depends_on=["A", " A "])["depends_on"] == []


def test_ready_rules() -> None:
    board = Board()
    declare(board, "A")
    declare(board, "B", depends_on=["A"])
    declare(board, "C", depends_on=["A", "GHOST"])  # unknown dependency: unmet
    declare(board, "D", depends_on=["B"])
    assert board.ready() == ["A"]
    set_status(board, "A", "done")
    assert board.ready() == ["B"]  # A is done, so no longer open; C waits for GHOST
    set_status(board, "B", "cancelled")
    assert board.ready() == ["D"]
    declare(board, "GHOST")  # present but open: still unmet
    assert board.ready() == ["D", "GHOST"]
    set_status(board, "GHOST", "done")
    assert board.ready() == ["C", "D"]
    for status in ("in_progress", "blocked", "done", "cancelled"):
        set_status(board, "D", status)
        assert board.ready() == ["C"]
    set_status(board, "D", "open")
    set_status(board, "A", "in_progress")  # a dependency that reopens unreadies its dependents
    assert board.ready() == ["D"]
    assert FINISHED == {"done", "cancelled"}


def test_snapshot_shape() -> None:
    board = Board()
    declare(board, "b")
    declare(board, "a", depends_on=["b"])
    board.apply_progress(ok(board.decide_progress("x", "a", "hi", now=T0)).data)
    snap = board.snapshot()
    assert [t["task_id"] for t in snap["tasks"]] == ["a", "b"]
    assert snap["ready"] == ["b"]
    assert snap["progress"] == [
        {"task_id": "a", "author": "x", "kind": "note", "text": "hi", "posted_at": T0}
    ]


def test_chain_is_nearest_first_and_handles_unknown_and_shared_deps() -> None:
    board = Board()
    declare(board, "D")
    declare(board, "B", depends_on=["D"])
    declare(board, "C", depends_on=["D", "X"])
    declare(board, "A", depends_on=["B", "C"])
    assert board.chain("A") == ["B", "C", "D", "X"]
    assert board.chain("D") == []
    assert board.chain("nope") == []


# ---- compare-and-set ----------------------------------------------------------------------------


def test_cas_on_declare() -> None:
    board = Board()
    refused(board.decide_declare("a", "P", "t", expected_version=1, now=T0), "VERSION_CONFLICT")
    declare(board, "P", expected_version=0)  # an absent task counts as version 0
    text = refused(
        board.decide_declare("a", "P", "t", expected_version=0, now=T0), "VERSION_CONFLICT"
    ).text
    assert text == "Task 'P' version conflict: expected v0, board has v1."
    assert declare(board, "P", expected_version=1)["version"] == 2


@pytest.mark.parametrize("bad", [True, False, "1", 1.0, [1]])
def test_non_integer_expected_version_is_malformed(bad: object) -> None:
    board = Board()
    declare(board, "P")
    refused(board.decide_declare("a", "P", "t", expected_version=bad, now=T0), "MALFORMED")
    refused(board.decide_update("a", "P", status="done", expected_version=bad, now=T0),
            "MALFORMED")
    assert board.tasks["P"]["version"] == 1


def test_cas_on_update() -> None:
    board = Board()
    refused(board.decide_update("a", "P", expected_version=3, now=T0), "VERSION_CONFLICT")
    refused(board.decide_update("a", "P", expected_version=0, now=T0), "UNKNOWN_TASK")
    refused(board.decide_update("a", "P", now=T0), "UNKNOWN_TASK")
    declare(board, "P")
    text = refused(
        board.decide_update("a", "P", status="done", expected_version=2, now=T0),
        "VERSION_CONFLICT",
    ).text
    assert text == "Task 'P' version conflict: expected v2, board has v1."
    assert set_status(board, "P", "done", expected_version=1)["version"] == 2


def test_update_fields_and_status_validation() -> None:
    board = Board()
    declare(board, "P", suggested_owner="bob")
    for status in TASK_STATUSES:
        assert set_status(board, "P", status)["status"] == status
    for bad in ("bogus", "", "claimed", "DONE"):
        refused(board.decide_update("a", "P", status=bad, now=T0), "BAD_STATUS")
    event = ok(board.decide_update("carol", "P", suggested_owner="dave", now=T0 + 9))
    assert event.data["op"] == "updated" and event.data["by"] == "carol"
    task = event.data["task"]
    assert task["status"] == "cancelled" and task["suggested_owner"] == "dave"
    assert task["updated_at"] == T0 + 9
    assert board.tasks["P"]["suggested_owner"] == "bob"  # not applied yet
    board.apply_task(event.data)
    assert board.tasks["P"]["suggested_owner"] == "dave"
    assert board.tasks["P"]["version"] == len(TASK_STATUSES) + 2


# ---- progress --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROGRESS_KINDS)
def test_progress_kinds(kind: str) -> None:
    board = Board()
    event = ok(board.decide_progress("a", " P ", "text", kind=kind, now=T0))
    assert event.kind == "progress" and not event.durable
    assert event.data == {"task_id": "P", "author": "a", "kind": kind, "text": "text",
                          "posted_at": T0}


def test_progress_refusals() -> None:
    board = Board()
    for bad in ("bogus", "", "Note"):
        refused(board.decide_progress("a", "P", "x", kind=bad, now=T0), "BAD_KIND")
    refused(board.decide_progress("a", "  ", "x", now=T0), "MALFORMED")
    # one note is bounded, so the ledger's count bound is a bound on its memory too
    ok(board.decide_progress("a", "P", "x" * 16 * 1024, now=T0))
    refused(board.decide_progress("a", "P", "x" * (16 * 1024 + 1), now=T0), "too_long")
    assert PROGRESS_KINDS == ("note", "blocked", "assessment", "usage", "approval")


def note(author: str, task: str, i: int) -> dict[str, Any]:
    return {"task_id": task, "author": author, "kind": "note", "text": str(i), "posted_at": i}


def texts(ledger: _Ledger) -> list[str]:
    return [n["text"] for n in ledger]


def test_ledger_per_author_bound() -> None:
    ledger = _Ledger(limit=100, per_author=3, per_task=100)
    for i in range(5):
        ledger.add(note("a", f"t{i}", i))
    ledger.add(note("b", "t0", 5))
    assert texts(ledger) == ["2", "3", "4", "5"]  # a's oldest two went; b untouched
    assert ledger.for_task("t0") == [note("b", "t0", 5)]
    assert ledger.for_task("t1") == []
    assert len(ledger) == 4
    assert set(ledger._by_task) == {"t0", "t2", "t3", "t4"}  # emptied queues are dropped


def test_ledger_per_task_bound() -> None:
    ledger = _Ledger(limit=100, per_author=100, per_task=2)
    for i in range(4):
        ledger.add(note(f"w{i}", "T", i))
    ledger.add(note("w0", "U", 4))
    assert texts(ledger) == ["2", "3", "4"]
    assert [n["text"] for n in ledger.for_task("T")] == ["2", "3"]
    assert set(ledger._by_author) == {"w0", "w2", "w3"}


def test_ledger_total_bound() -> None:
    ledger = _Ledger(limit=3, per_author=100, per_task=100)
    for i in range(6):
        ledger.add(note(f"a{i % 2}", f"t{i % 3}", i))
    assert texts(ledger) == ["3", "4", "5"]
    assert len(ledger) == 3
    assert sorted(ledger._by_task) == ["t0", "t1", "t2"]
    assert all(len(q) == 1 for q in ledger._by_task.values())


def test_ledger_bounds_interact() -> None:
    ledger = _Ledger(limit=4, per_author=2, per_task=2)
    ledger.add(note("a", "x", 0))
    ledger.add(note("a", "y", 1))
    ledger.add(note("b", "x", 2))
    ledger.add(note("b", "x", 3))  # x now has 3 notes: the oldest on x (a's #0) goes
    assert texts(ledger) == ["1", "2", "3"]
    ledger.add(note("a", "z", 4))
    ledger.add(note("c", "w", 5))  # total 5 > 4: the oldest (#1) goes
    assert texts(ledger) == ["2", "3", "4", "5"]
    assert [n["text"] for n in ledger.for_task("x")] == ["2", "3"]
    assert "y" not in ledger._by_task
    assert list(ledger._by_author["a"]) == [4]


def test_ledger_default_bounds() -> None:
    assert (MAX_PROGRESS, MAX_PROGRESS_PER_AUTHOR, MAX_PROGRESS_PER_TASK) == (5000, 1000, 1000)
    board = Board()
    ledger = board.progress
    # one author on one task: both 1000 bounds bite
    for i in range(1500):
        board.apply_progress(note("solo", "T", i))
    assert len(ledger) == 1000
    assert texts(ledger)[0] == "500"
    # many authors on many tasks: only the 5000 total bites
    for i in range(8000):
        board.apply_progress(note(f"a{i % 10}", f"t{i % 10}", 10_000 + i))
    assert len(ledger) == 5000
    assert texts(ledger)[0] == str(10_000 + 3000) and texts(ledger)[-1] == str(10_000 + 7999)
    assert "solo" not in ledger._by_author and ledger.for_task("T") == []
    assert all(len(q) == 500 for q in ledger._by_author.values())
    # one noisy author cannot push the others out beyond its own 1000
    for i in range(3000):
        board.apply_progress(note("noisy", f"n{i % 50}", 20_000 + i))
    assert len(ledger._by_author["noisy"]) == 1000
    assert len(ledger) == 5000
    assert sum(len(q) for q in ledger._by_author.values()) == 5000
    assert sum(len(q) for q in ledger._by_task.values()) == 5000


def test_ledger_bounds_its_bytes_as_well_as_its_notes() -> None:
    """Notes of the largest size fill the ledger's byte budget long before its 5,000 notes:
    the oldest go first, and one author's big notes push out only its own."""
    from marrow_tui.core.board import MAX_NOTE, MAX_PROGRESS_BYTES, MAX_PROGRESS_BYTES_PER_AUTHOR

    assert (MAX_PROGRESS_BYTES, MAX_PROGRESS_BYTES_PER_AUTHOR) == (8 << 20, 2 << 20)
    board = Board()
    ledger = board.progress
    quiet = {"task_id": "q", "author": "quiet", "kind": "note", "text": "small", "posted_at": 0}
    board.apply_progress(quiet)
    big = "\u00e9" * MAX_NOTE  # two bytes a character in UTF-8, six in ASCII JSON
    for i in range(200):
        board.apply_progress({"task_id": "t", "author": "noisy", "kind": "note", "text": big,
                              "posted_at": i})
    assert ledger.bytes <= MAX_PROGRESS_BYTES_PER_AUTHOR + 1024
    assert quiet in list(ledger)
    for i in range(2000):
        board.apply_progress({"task_id": f"t{i}", "author": f"a{i % 20}", "kind": "note",
                              "text": big, "posted_at": i})
    assert ledger.bytes <= MAX_PROGRESS_BYTES
    assert ledger.bytes == sum(ledger.size(n) for n in ledger)
    assert len(ledger) < 200


# ---- property: the board stays a DAG and ready() is right ----------------------------------------

IDS = ["A", "B", "C", "D", "E", "F"]

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("declare"),
            st.sampled_from(IDS),
            st.lists(st.sampled_from([*IDS, "GHOST"]), max_size=3),
        ),
        st.tuples(st.just("status"), st.sampled_from(IDS), st.sampled_from(TASK_STATUSES)),
    ),
    max_size=30,
)


def acyclic(tasks: dict[str, dict[str, Any]]) -> bool:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return False
        if state.get(node) == 2 or node not in tasks:
            return True
        state[node] = 1
        if not all(visit(dep) for dep in tasks[node]["depends_on"]):
            return False
        state[node] = 2
        return True

    return all(visit(node) for node in tasks)


def would_cycle(tasks: dict[str, dict[str, Any]], task: str, deps: list[str]) -> bool:
    trial = {k: dict(v) for k, v in tasks.items()}
    trial[task] = {"depends_on": [d for d in deps if d != task]}
    return not acyclic(trial)


@settings(max_examples=200, deadline=None)
@given(steps=steps)
def test_board_stays_acyclic_and_ready_matches_brute_force(steps: list[tuple]) -> None:
    board = Board()
    for op, task, arg in steps:
        if op == "declare":
            expect_cycle = would_cycle(board.tasks, task, arg)
            result = board.decide_declare("x", task, f"title {task}", depends_on=arg, now=T0)
            if expect_cycle:
                refused(result, "CYCLE")
                continue
            board.apply_task(ok(result).data)
            expected_deps = list(dict.fromkeys(d for d in arg if d != task))
            assert board.tasks[task]["depends_on"] == expected_deps
        else:
            result = board.decide_update("x", task, status=arg, now=T0)
            if task not in board.tasks:
                refused(result, "UNKNOWN_TASK")
                continue
            board.apply_task(ok(result).data)
        assert acyclic(board.tasks)
        expected = sorted(
            tid
            for tid, t in board.tasks.items()
            if t["status"] == "open"
            and all(
                dep in board.tasks and board.tasks[dep]["status"] in ("done", "cancelled")
                for dep in t["depends_on"]
            )
        )
        assert board.ready() == expected
        for tid in board.tasks:
            # chain() is exactly the set of tasks reachable through depends_on
            reach: set[str] = set()
            stack = list(board.tasks[tid]["depends_on"])
            while stack:
                dep = stack.pop()
                if dep not in reach:
                    reach.add(dep)
                    stack.extend(board.tasks.get(dep, {}).get("depends_on", ()))
            chain = board.chain(tid)
            assert set(chain) == reach and len(chain) == len(reach) and tid not in chain
