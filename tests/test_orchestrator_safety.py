"""The orchestrator never deletes what it did not make, says which tracker files it refused,
and never runs an issue again once its run marked it done: real files, real git repositories,
real agent processes over the real hub."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.events import Event
from marrow_tui.orchestrator import dispatcher
from marrow_tui.orchestrator.tracker import scan as real_scan
from marrow_tui.orchestrator.workflow import load_workflow, validate_dispatch
from marrow_tui.orchestrator.workspaces import ensure_workspace, remove_workspace

from .conftest import WAIT
from .test_orchestrator import MARROW, issue, make, workflow  # noqa: F401 (make: a fixture)

DONE = f'{MARROW} done --title "did $SYMPHONY_ISSUE_IDENTIFIER" --summary "all good"\n'


def events_of(run: Any) -> list[Event]:
    """Every event the runtime commits from now on (the log's and the console's feed)."""
    seen: list[Event] = []
    run.hub.runtime.subscribe(seen.extend)
    return seen


# ---- 1. what we did not create is never removed ---------------------------------------------


async def test_a_folder_that_was_already_there_is_neither_used_nor_removed(
        tmp_path: Path, make: Any) -> None:
    keep = tmp_path / "ws" / "important" / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("mine")
    issue(tmp_path, "Todo", "important", "looks like a workspace")
    run = await make(workflow(tmp_path, DONE))
    await run.tick()
    [ended] = await run.until(lambda: run.ended("important"))
    assert keep.read_text() == "mine"
    assert sorted(p.name for p in keep.parent.iterdir()) == ["keep.txt"]  # no agent ran there
    assert ended.state != "ok" and "not created by marrow-tui" in ended.reason
    assert (tmp_path / "issues" / "Todo" / "important.md").exists()


async def test_a_workspace_root_holding_the_tracker_is_refused(tmp_path: Path,
                                                              make: Any) -> None:
    issue(tmp_path, "Todo", "issues", "named like the tracker")
    path = workflow(tmp_path, DONE)
    path.write_text(path.read_text().replace("  root: ws\n", "  root: .\n"))
    loaded = load_workflow(path)
    assert loaded.workflow is not None
    [problem] = [d for d in validate_dispatch(loaded.workflow) if d.key == "workspace.root"]
    assert "tracker" in problem.message and problem.severity == "error"
    run = await make(path)
    await run.tick()
    assert not run.orchestrator.dispatching and not run.orchestrator.running
    assert (tmp_path / "issues" / "Todo" / "issues.md").exists()


def test_remove_refuses_what_is_not_ours_or_is_protected(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "theirs").mkdir(parents=True)
    (root / "theirs" / "keep.txt").write_text("x")
    assert remove_workspace(root, "theirs").removed is False
    assert (root / "theirs" / "keep.txt").exists()
    ours = ensure_workspace(root, "ours").path
    # the same name, but a folder someone put there after ours went: not ours any more
    ours.rename(root / "gone")
    ours.mkdir()
    (root / "gone").rmdir()
    (ours / "new.txt").write_text("x")
    assert remove_workspace(root, "ours").removed is False and (ours / "new.txt").exists()
    made = ensure_workspace(root, "tracker").path
    outcome = remove_workspace(root, "tracker", protected=(made,))
    assert outcome.removed is False and made.is_dir()
    assert remove_workspace(root, "tracker").removed is True and not made.exists()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


GIT_AGENT = ("git -c user.name=a -c user.email=a@a commit -q --allow-empty -m work\n"
             "echo draft > draft.txt\n" + DONE)
GIT_HOOK = ("hooks:\n  after_create: |\n    git init -q\n"
            "    git -c user.name=t -c user.email=t@t commit -q --allow-empty -m base\n"
            "    echo prompt.txt >> .git/info/exclude\n")


async def test_unsaved_git_work_is_kept_until_the_operator_confirms(tmp_path: Path,
                                                                     make: Any) -> None:
    issue(tmp_path, "Todo", "G-1", "commits and leaves a draft")
    run = await make(workflow(tmp_path, GIT_AGENT, extra=GIT_HOOK))
    seen = events_of(run)
    frames: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", frames.append)
    await run.tick()
    [done] = await run.until(lambda: run.ended("G-1"))
    assert done.state == "ok"
    book = run.hub.runtime.state.issues
    kept = await run.until(lambda: book.kept.get("G-1"))
    space = tmp_path / "ws" / "G-1"
    assert space.is_dir() and (space / "draft.txt").exists()
    assert "1 uncommitted file (draft.txt)" in kept["lost"]
    assert "1 commit on no remote" in kept["lost"] and "work" in kept["lost"]
    assert any(e.kind == "workspace_kept" for e in seen)
    assert "workspace kept" in book.issues["G-1"].reason
    ops.send(type="issue_remove_workspace", identifier="G-1")
    await run.until(lambda: not space.exists())
    await run.until(lambda: "G-1" not in book.kept)
    assert any(e.kind == "workspace_removed" for e in seen)


async def test_a_clean_git_workspace_goes_once_done(tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "G-2", "nothing to lose")
    run = await make(workflow(tmp_path, DONE, extra=GIT_HOOK))
    await run.tick()
    await run.until(lambda: run.ended("G-2"))
    await run.until(lambda: not (tmp_path / "ws" / "G-2").exists())
    assert "G-2" not in run.hub.runtime.state.issues.kept


# ---- 10. refused tracker files are reported ---------------------------------------------------


def hostile(root: Path) -> dict[str, str]:
    """Files the scan refuses, and a word of why each one is refused."""
    todo = root / "issues" / "Todo"
    todo.mkdir(parents=True, exist_ok=True)
    (root / "outside.md").write_text("---\ntitle: secret\n---\n")
    (todo / "LINK.md").symlink_to(root / "outside.md")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True))
    (todo / "BOMB.md").write_text(f"---\ntitle: boom\n{bomb}---\n")
    (todo / "PY.md").write_text("---\ntitle: !!python/object/apply:os.system [id]\n---\n")
    (todo / "LATIN.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))
    (todo / "BIG.md").write_bytes(b"---\ntitle: big\n---\n" + b"x" * (1024 * 1024 + 1))
    os.mkfifo(todo / "FIFO.md")
    (todo / "a..b.md").write_text("---\ntitle: dots\n---\n")
    (todo / "ctl\x07.md").write_text("---\ntitle: bell\n---\n")
    (todo / "NOTITLE.md").write_text("---\npriority: 1\n---\nbody\n")
    (todo / "BARE.md").write_text("no front matter at all\n")
    return {"LINK.md": "symlink", "BOMB.md": "aliases", "PY.md": "python",
            "LATIN.md": "UTF-8", "BIG.md": "larger than", "FIFO.md": "regular file",
            "a..b.md": "unsafe", "ctl\x07.md": "unsafe", "NOTITLE.md": "title",
            "BARE.md": "front matter"}


def test_no_title_or_no_front_matter_is_refused(tmp_path: Path) -> None:
    todo = tmp_path / "Todo"
    todo.mkdir()
    (todo / "A-1.md").write_text("---\npriority: 1\n---\nbody\n")
    (todo / "A-2.md").write_text("just a body\n")
    (todo / "A-3.md").write_text("---\ntitle: fine\n---\n")
    result = real_scan(tmp_path)
    assert [i.id for i in result.issues] == ["A-3"]
    reasons = {p.path.name: p.message for p in result.errors}
    assert "title" in reasons["A-1.md"] and "front matter" in reasons["A-2.md"]


async def test_refused_files_are_said_once_and_listed(tmp_path: Path, make: Any) -> None:
    why = hostile(tmp_path)
    issue(tmp_path, "Todo", "OK-1", "fine")
    run = await make(workflow(tmp_path, "exec sleep 600\n"))
    seen = events_of(run)
    await run.tick()
    await run.until(lambda: run.orchestrator.running.get("OK-1"))
    assert set(run.orchestrator.running) == {"OK-1"}  # no refused file was dispatched
    said = [e for e in seen if e.kind == "tracker_refused"]
    assert len(said) == 1
    listed = {Path(f["path"]).name: f["reason"] for f in said[0].data["files"]}
    assert set(listed) == set(why)
    for name, word in why.items():
        assert word.lower() in listed[name].lower(), (name, listed[name])
    book = run.hub.runtime.state.issues
    assert {Path(f["path"]).name for f in book.refused} == set(why)
    from marrow_tui.core.events import describe
    line = describe(said[0]) or ""
    assert "BOMB.md" in line and "aliases" in line
    await run.tick()
    await run.tick()
    assert len([e for e in seen if e.kind == "tracker_refused"]) == 1  # not once per scan
    (tmp_path / "issues" / "Todo" / "BARE.md").unlink()
    await run.tick()
    said = [e for e in seen if e.kind == "tracker_refused"]
    assert len(said) == 2 and len(said[-1].data["files"]) == len(why) - 1
    frames: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", frames.append)
    ops.send(type="issue_list")
    reply = await run.until(lambda: [f for f in frames if f.get("type") == "issues"])
    assert len(reply[0]["refused"]) == len(why) - 1


# ---- 11. a done issue is never dispatched again ------------------------------------------------


async def test_a_scan_taken_before_done_does_not_dispatch_it_again(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "go"
    os.mkfifo(gate)
    issue(tmp_path, "Todo", "R-1", "done once")
    run = await make(workflow(tmp_path, f'cat "{gate}" >/dev/null\n' + DONE))
    scanned, release = threading.Event(), threading.Event()
    hold = {"next": False}

    def slow_scan(root: Path) -> Any:
        result = real_scan(root)
        if hold["next"]:
            hold["next"] = False
            scanned.set()
            release.wait(WAIT * 4)
        return result

    monkeypatch.setattr(dispatcher, "scan", slow_scan)
    await run.tick()
    await run.until(lambda: run.orchestrator.running.get("R-1"))
    hold["next"] = True
    ticking = asyncio.ensure_future(run.tick())
    assert await asyncio.to_thread(scanned.wait, WAIT * 2)  # R-1 read while still in Todo

    def open_gate() -> None:
        os.close(os.open(gate, os.O_WRONLY))

    await asyncio.to_thread(open_gate)
    await run.until(lambda: run.ended("R-1") and "R-1" not in run.orchestrator.running)
    assert (tmp_path / "issues" / "Done" / "R-1.md").exists()
    release.set()
    await ticking
    await run.tick()
    assert "R-1" not in run.orchestrator.running
    assert len([s for s in run.sessions if s.agent == "R-1"]) == 1
