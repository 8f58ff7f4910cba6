"""Reading the paths a tool call will change (core/edits.py), run leases in the claim book,
and conflicts in the steering book."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marrow_tui.core.claims import ClaimBook
from marrow_tui.core.edits import command_paths, named_paths, relative_paths, touched
from marrow_tui.core.events import Event
from marrow_tui.core.state import State
from marrow_tui.core.steering import LEASE_ENDED, SteeringBook

ROOT = "/repo"


def same(path: str) -> str:
    return path


@pytest.mark.parametrize("command,paths", [
    ("rm a b", ["a", "b"]),
    ("rm -rf build", ["build"]),
    ("mv old.py new.py", ["old.py", "new.py"]),
    ("touch x && mkdir -p d/e", ["x", "d/e"]),
    ("sed -i 's/a/b/' f.txt", ["f.txt"]),
    ("sed -i.bak -e 's/a/b/' f.txt g.txt", ["f.txt", "g.txt"]),
    ("sed 's/a/b/' f.txt", []),
    ("echo hi > out.txt", ["out.txt"]),
    ("printf made >> log.txt 2>/dev/null", ["log.txt"]),
    ("cat a | tee b", ["b"]),
    ("git mv a.py b.py", ["a.py", "b.py"]),
    ("git status", []),
    ("ls -la; grep -rn TODO src", []),
    ("cp src/a.py src/b.py", ["src/b.py"]),
    ("FOO=1 rm a", ["a"]),
])
def test_a_command_whose_writes_can_be_read_names_them(command: str,
                                                       paths: list[str]) -> None:
    assert command_paths(command) == (paths, "")


@pytest.mark.parametrize("command,why", [
    ("make clean", "`make` can change any file"),
    ("rm $FILE", "shell expansions"),
    ("rm *.pyc", "shell expansions"),
    ("cd src && rm a", "changes directory"),
    ("git checkout -- a.py", "`git checkout` can change any file"),
    ("python script.py", "`python` can change any file"),
    ("echo 'unclosed", "cannot be split"),
])
def test_a_command_that_cannot_be_read_says_why_and_names_nothing(command: str,
                                                                  why: str) -> None:
    paths, said = command_paths(command)
    assert paths == [] and why in said


def test_an_argv_command_under_a_shell_is_read_as_its_script() -> None:
    assert command_paths(["bash", "-lc", "rm a.py"]) == (["a.py"], "")
    assert command_paths(["rm", "a b.py"]) == (["a b.py"], "")


def test_every_agents_way_of_naming_paths_is_read() -> None:
    locations = [{"path": "/repo/a.py", "line": 3}]
    content = [{"type": "diff", "path": "/repo/b.py", "oldText": "", "newText": "x"},
               {"type": "content", "content": {"type": "text", "text": "c.py"}}]
    raw = {"filePath": "/repo/c.py", "file_path": "/repo/d.py", "paths": ["e.py"],
           "changes": {"/repo/f.py": {"add": {}}}}
    assert named_paths(locations, content, raw) == [
        "/repo/a.py", "/repo/b.py", "/repo/c.py", "/repo/d.py", "e.py", "/repo/f.py"]


def test_paths_are_made_relative_to_the_root_and_outside_ones_refused() -> None:
    found = relative_paths(["/repo/src/a.py", "b.py", "./src/../c.py"], cwd="/repo/src",
                           root=ROOT, realpath=same)
    assert found.paths == ("src/a.py", "src/b.py", "src/c.py") and not found.refused
    assert relative_paths(["../../etc/passwd"], cwd="/repo/src", root=ROOT,
                          realpath=same).refused == \
        "../../etc/passwd is outside the worktree /repo"
    assert relative_paths(["/repository/x"], cwd=ROOT, root=ROOT,
                          realpath=same).refused == "/repository/x is outside the worktree /repo"
    assert relative_paths(["."], cwd=ROOT, root=ROOT, realpath=same).whole


def test_a_symlink_that_leads_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "out").mkdir()
    (root / "link").symlink_to(tmp_path / "out")
    found = relative_paths(["link/x.py"], cwd=str(root), root=str(root),
                           realpath=os.path.realpath)
    assert found.refused == f"link/x.py leads outside the worktree {root} through a symlink"


def test_an_execute_call_says_when_it_cannot_be_read() -> None:
    found = touched("execute", [], [], {"command": "npm test"}, cwd=ROOT, root=ROOT,
                    realpath=same)
    assert found.paths == () and "`npm` can change any file" in found.unreadable
    assert touched("execute", [], [], {}, cwd=ROOT, root=ROOT,
                   realpath=same).unreadable == "the call names no command"


def grant(book: ClaimBook, owner: str, task: str, paths: tuple[str, ...] = (),
          session: str = "", worktree: str = ROOT) -> None:
    decided = book.decide_claim(owner, task, worktree=worktree, paths=paths,
                                session=session, now=0.0)
    assert isinstance(decided, Event), decided
    book.apply_claim(decided.data)


def test_a_runs_lease_with_no_paths_holds_nothing_and_grows_by_its_edits() -> None:
    book = ClaimBook()
    grant(book, "bob", "bob-run", session="bob-run")
    grant(book, "alice", "T1")  # the whole worktree: bob's empty run lease is not in its way
    book.apply_release({"task_id": "T1"})
    grow = book.decide_grow("bob-run", ("src/a.py",), tool_call_id="c1", title="Edit",
                            now=5.0)
    assert isinstance(grow, Event)
    book.apply_grow(grow.data)
    claim = book.get("bob-run")
    assert claim is not None and claim.paths == ("src/a.py",)
    assert claim.grown == ({"path": "src/a.py", "tool_call_id": "c1", "title": "Edit",
                            "at": 5.0},)
    [overlap] = book.overlaps("alice", ROOT, ("src",), now=1.0)
    assert (overlap.task_id, overlap.owner, overlap.paths) == ("bob-run", "bob",
                                                               ("src/a.py",))
    assert book.overlaps("alice", "/other", ("src",), now=1.0) == []
    assert book.overlaps("bob", ROOT, ("src",), now=1.0) == []  # its own never overlaps
    assert book.decide_grow("bob-run", ("src/a.py",), now=6.0) is None


def test_a_conflict_that_waits_and_one_that_would_deadlock() -> None:
    book = SteeringBook()
    facts_bob = {"owner": "bob", "held": [{"owner": "alice", "task_id": "T1"}]}
    facts_alice = {"owner": "alice", "held": [{"owner": "bob", "task_id": "T2"}]}
    for asker, facts in (("bob", facts_bob), ("alice", facts_alice)):
        opened = book.decide_ask(asker, 0.0, question="q", choices=["Let it", "Wait",
                                                                   "Hand over", "Reject"],
                                 kind="conflict", conflict=facts)
        assert isinstance(opened, Event)
        book.apply(opened)
    wait = book.decide_answer("S1", "Wait", "ops", 1.0, operator=True)
    assert isinstance(wait, Event) and wait.kind == "steer_wait"
    book.apply(wait)
    assert book.get("S1").open and book.get("S1").waiting_by == "ops"
    refused = book.decide_answer("S2", "Wait", "ops", 2.0, operator=True)
    assert not isinstance(refused, Event) and refused.reason == "deadlock"
    assert "bob's edit already waits for alice" in refused.text


def conflict_of(asker: str, *holders: str) -> dict[str, object]:
    return {"owner": asker, "held": [{"owner": h, "task_id": f"{h}-run"} for h in holders]}


def test_runs_whose_policy_waits_never_wait_in_a_circle() -> None:
    # alice waits for bob, bob for carol (their policies say wait); carol's edit now blocked
    # by alice would close the circle: it is asked of a person instead, who is told why.
    book = SteeringBook()
    choices = ["Let it", "Wait", "Hand over", "Reject"]
    for asker, holder in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
        opened = book.decide_ask(asker, 0.0, question=f"{asker} blocked", choices=choices,
                                 kind="conflict", conflict=conflict_of(asker, holder),
                                 context="the edit", waiting=True)
        assert isinstance(opened, Event)
        book.apply(opened)
    alice, bob, carol = (book.get(f"S{n}") for n in (1, 2, 3))
    assert alice.waiting_by == "alice" and bob.waiting_by == "bob"
    assert not carol.waiting_by
    assert carol.context == ("Waiting would deadlock: bob's edit already waits for carol "
                             "(S2).\n\nthe edit")
    # and the operator's Wait on it is refused for the same reason
    refused = book.decide_answer("S3", "Wait", "ops", 1.0, operator=True)
    assert not isinstance(refused, Event) and refused.reason == "deadlock"
    # a wait that ends some day is kept: dave waits for alice, who waits for bob
    opened = book.decide_ask("dave", 0.0, question="q", choices=choices, kind="conflict",
                             conflict=conflict_of("dave", "alice"), waiting=True)
    assert isinstance(opened, Event) and opened.data["waiting_by"] == "dave"


def test_a_conflict_answers_itself_once_the_lease_in_its_way_ends() -> None:
    state = State()
    grant(state.claims, "alice", "T1", ("src/a.py",))
    opened = state.steering.decide_ask(
        "bob", 0.0, question="q", choices=["Wait"], kind="conflict",
        conflict={"owner": "bob", "worktree": ROOT, "paths": ["src/a.py"], "held": []})
    assert isinstance(opened, Event)
    state.apply(opened)
    assert state.settled_conflicts(1.0) == []
    state.apply(Event("release", {"task_id": "T1", "owner": "alice", "epoch": 1,
                                  "by": "alice"}))
    [settled] = state.settled_conflicts(2.0)
    assert (settled.data["answer"], settled.data["by"]) == ("Wait", LEASE_ENDED)


def test_a_runs_lease_is_not_released_for_its_agent_being_offline() -> None:
    state = State(offline_ttl=60.0)
    grant(state.claims, "bob", "bob-run", session="bob-run")
    grant(state.claims, "bob", "T1", ("docs",))
    state.after_restore()  # every holder is offline until it connects: bob never does
    swept = state.sweep(61.0)
    assert [(e.kind, e.data["task_id"]) for e in swept] == [("release", "T1")]
