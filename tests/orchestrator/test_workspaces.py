"""The orchestrator never deletes what it did not make, says which tracker files it refused,
and never runs an issue again once its run marked it done: real files, real git repositories,
real agent processes over the real hub."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.events import Event
from marrow_tui.orchestrator import dispatcher
from marrow_tui.orchestrator.tracker import scan as real_scan
from marrow_tui.orchestrator.workflow import load_workflow, validate_dispatch
from marrow_tui.orchestrator.workspaces import (
    LEDGER,
    WorkspaceError,
    check_removal,
    ensure_workspace,
    is_ours,
    mark_ready,
    remove_workspace,
)

from tests.support.hub import WAIT, FakeClock
from tests.support.orchestrator import MARROW, issue, make, workflow  # noqa: F401 (make: a fixture)

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
    # listeners hear an event once it is durable, after the state has applied it
    await run.until(lambda: any(e.kind == "workspace_kept" for e in seen))
    await run.until(lambda: "workspace kept" in book.issues["G-1"].reason)
    ops.send(type="issue_remove_workspace", identifier="G-1")
    await run.until(lambda: not space.exists())
    await run.until(lambda: "G-1" not in book.kept)
    # listeners hear an event once it is durable, after the state has applied it
    await run.until(lambda: any(e.kind == "workspace_removed" for e in seen))


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


# ---- review findings: who may remove, what counts as ours, what would be lost ------------------


async def test_only_an_operator_may_force_the_removal_of_a_kept_workspace(
        tmp_path: Path, make: Any) -> None:
    """Any participant that is not the operator is refused (not only one named like an issue);
    the CLI presents the operator token (here read from the hub's state dir) and succeeds."""
    issue(tmp_path, "Todo", "G-1", "commits and leaves a draft")
    run = await make(workflow(tmp_path, GIT_AGENT, extra=GIT_HOOK))
    await run.tick()
    await run.until(lambda: run.ended("G-1"))
    book = run.hub.runtime.state.issues
    await run.until(lambda: book.kept.get("G-1"))
    space = tmp_path / "ws" / "G-1"
    stranger = await run.hub.agent("someone")
    await stranger.send(type="issue_remove_workspace", identifier="G-1")
    refused = await stranger.until("error", "workspace_removing")
    assert refused["type"] == "error" and refused.get("error_code") == "forbidden"
    assert space.is_dir() and (space / "draft.txt").exists()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MARROW_") and k != "SYMPHONY_WORKSPACE"}
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", "issues", "--remove-workspace", "G-1",
        "--uri", run.hub.uri, "--state-dir", str(run.hub.state_dir), "--name", "cli/test",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(done.communicate(), WAIT * 4)
    assert done.returncode == 0, err.decode()
    assert "removing the workspace of G-1" in out.decode()
    await run.until(lambda: not space.exists())


async def test_commits_of_an_agent_that_made_the_repository_are_never_its_base(
        tmp_path: Path, make: Any) -> None:
    """No repository when the workspace was made: whatever repository appears later is the
    agent's, all of it; a later run must not record the agent's commit as where it began."""
    issue(tmp_path, "Todo", "N-1", "starts from nothing")
    body = ('if [ "$SYMPHONY_ATTEMPT" = 0 ] && [ ! -d .git ]; then\n'
            "  git init -q && echo x > a && git add a\n"
            "  git -c user.name=a -c user.email=a@a commit -qm 'agent work run 1'\n"
            "  exit 0\nfi\n" + DONE)
    clock = FakeClock()
    run = await make(workflow(tmp_path, body), clock)
    await run.tick()
    await run.until(lambda: len(run.ended("N-1")) == 1)
    clock.advance(1.0)
    await run.tick()
    await run.until(lambda: len(run.ended("N-1")) == 2)
    book = run.hub.runtime.state.issues
    kept = await run.until(lambda: book.kept.get("N-1"))
    assert "1 commit on no remote" in kept["lost"] and "agent work run 1" in kept["lost"]
    assert (tmp_path / "ws" / "N-1" / "a").exists()


def _reuse_same_inode(root: Path, key: str) -> Path:
    """Our workspace is deleted by hand and someone makes their own folder of that name, with
    the freed inode handed straight back (ext4 does; where it did not, the record is made to
    name the new folder's inode, which is what reuse looks like to marrow-tui)."""
    path = ensure_workspace(root, key).path
    mark_ready(path)
    before = os.stat(path)
    os.rmdir(path)
    os.mkdir(path)
    after = os.stat(path)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        ledger = root / LEDGER / f"{key}.json"
        record = json.loads(ledger.read_text())
        record.update(dev=after.st_dev, ino=after.st_ino)
        ledger.write_text(json.dumps(record))
    (path / "thesis.tex").write_text("my work")
    return path


def test_a_folder_made_again_in_the_same_inode_is_not_ours(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    path = _reuse_same_inode(root, "FOO-1")
    assert not is_ours(path)
    outcome = remove_workspace(root, "FOO-1", force=True)
    assert outcome.removed is False and (path / "thesis.tex").read_text() == "my work"
    with pytest.raises(WorkspaceError) as caught:
        ensure_workspace(root, "FOO-1")
    assert caught.value.code == "workspace_not_ours"


def test_the_marker_survives_a_clone_into_the_workspace(tmp_path: Path) -> None:
    """The in-folder marker is no file: `git clone … .` into the new workspace works, and the
    marker is in none of the agent's commits."""
    source = tmp_path / "src"
    source.mkdir()
    git(source, "init", "-q")
    git(source, "commit", "-q", "--allow-empty", "-m", "base")
    root = tmp_path / "ws"
    path = ensure_workspace(root, "C-1").path
    git(path, "clone", "-q", str(source), ".")
    mark_ready(path)
    assert is_ours(path) and git(path, "status", "--porcelain", "--untracked-files=all") == ""
    assert remove_workspace(root, "C-1").removed is True


def test_without_extended_attributes_a_workspace_is_used_but_never_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system keeps no extended attributes there is no in-folder marker: the
    workspace is still used, but nothing proves it is ours, so it is never removed (and the
    reason says so)."""
    def unsupported(*_args: Any, **_kw: Any) -> Any:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    monkeypatch.setattr(os, "getxattr", unsupported)
    root = tmp_path / "ws"
    path = ensure_workspace(root, "X-1").path
    mark_ready(path)
    assert ensure_workspace(root, "X-1").created_now is False
    outcome = remove_workspace(root, "X-1", force=True)
    assert outcome.removed is False and path.is_dir()
    assert "extended attributes" in outcome.reason


def _cloned(tmp_path: Path, key: str) -> tuple[Path, Path]:
    """A workspace cloned from a source repository (its commits are on origin)."""
    source = tmp_path / "src"
    if not source.exists():
        source.mkdir()
        git(source, "init", "-q")
        (source / "file.txt").write_text("one\n")
        git(source, "add", "file.txt")
        git(source, "commit", "-q", "-m", "base")
    root = tmp_path / "ws"
    path = ensure_workspace(root, key).path
    git(path, "clone", "-q", str(source), ".")
    mark_ready(path)
    return root, path


def test_a_stash_tags_and_untracked_files_count_as_unsaved_work(tmp_path: Path) -> None:
    root, stashed = _cloned(tmp_path, "S-1")
    (stashed / "file.txt").write_text("two\n")
    git(stashed, "stash", "-q")
    assert git(stashed, "status", "--porcelain") == ""
    outcome = remove_workspace(root, "S-1")
    assert outcome.removed is False and stashed.is_dir()
    assert "1 stash" in outcome.lost, outcome.lost

    root, tagged = _cloned(tmp_path, "T-1")
    git(tagged, "checkout", "-q", "--detach")
    git(tagged, "commit", "-q", "--allow-empty", "-m", "only a tag has me")
    git(tagged, "tag", "keepme")
    git(tagged, "checkout", "-q", "-")
    outcome = remove_workspace(root, "T-1")
    assert outcome.removed is False and "1 commit on no remote" in outcome.lost
    assert "only a tag has me" in outcome.lost

    root, untracked = _cloned(tmp_path, "U-1")
    (untracked / "notes.txt").write_text("draft")
    (untracked / ".git" / "info" / "exclude").write_text("*.log\n")
    (untracked / "build.log").write_text("ignored")
    outcome = remove_workspace(root, "U-1")
    assert outcome.removed is False and outcome.lost == "1 uncommitted file (notes.txt)"

    root, clean = _cloned(tmp_path, "K-1")
    (clean / "build.log").write_text("ignored")
    (clean / ".git" / "info" / "exclude").write_text("*.log\n")
    assert remove_workspace(root, "K-1").removed is True


DIE = """\
import os, signal, sys
from marrow_tui.orchestrator import workspaces
root, when = sys.argv[1], sys.argv[2]
if when == "after mkdir":
    real = os.mkdir
    def mkdir(path, *args, **kw):
        real(path, *args, **kw)
        if os.path.basename(path) == "K-1":
            os.kill(os.getpid(), signal.SIGKILL)
    os.mkdir = mkdir
    workspaces.ensure_workspace(root, "K-1")
else:  # during after_create: half a clone is there
    made = workspaces.ensure_workspace(root, "K-1")
    (made.path / "partial").write_text("half a clone")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed(tmp_path: Path, root: Path, when: str) -> None:
    script = tmp_path / "die.py"
    script.write_text(DIE)
    done = subprocess.run([sys.executable, str(script), str(root), when], timeout=WAIT * 4,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_killed_between_mkdir_and_the_record_nothing_leaks(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _killed(tmp_path, root, "after mkdir")
    assert (root / "K-1").is_dir()
    made = ensure_workspace(root, "K-1")
    assert made.created_now and list(made.path.iterdir()) == []
    assert check_removal(root, "K-1").reason == ""


def test_killed_during_after_create_the_half_made_workspace_is_made_again(
        tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _killed(tmp_path, root, "during after_create")
    assert (root / "K-1" / "partial").exists()
    made = ensure_workspace(root, "K-1")
    assert made.created_now, "after_create must run again on a half-made workspace"
    assert list(made.path.iterdir()) == []
    mark_ready(made.path)
    (made.path / "whole").write_text("x")
    again = ensure_workspace(root, "K-1")
    assert not again.created_now and (again.path / "whole").exists()


async def test_a_dispatch_waits_while_the_workspace_is_being_removed(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator removes a failed issue's workspace; its retry falls due while the removal
    runs (held at a gate): the retry waits, and runs in a fresh workspace once it is gone."""
    issue(tmp_path, "Todo", "W-1", "fails once")
    body = ('if [ "$SYMPHONY_ATTEMPT" = 0 ]; then echo first > first.txt; exit 3; fi\n'
            "ls -A > seen.txt\nexec sleep 600\n")
    clock = FakeClock()
    run = await make(workflow(tmp_path, body), clock)
    await run.tick()
    await run.until(lambda: run.ended("W-1"))
    # the retry is booked after the run's end is logged: wait for it, or a busy machine books
    # it after the clock below moved on, and it is not due at the last tick
    await run.until(lambda: run.orchestrator.retries)
    space = tmp_path / "ws" / "W-1"
    assert (space / "first.txt").exists()
    entered, release = threading.Event(), threading.Event()
    real_remove = dispatcher.remove_workspace

    def held(*args: Any, **kw: Any) -> Any:
        entered.set()
        release.wait(WAIT * 4)
        return real_remove(*args, **kw)

    monkeypatch.setattr(dispatcher, "remove_workspace", held)
    frames: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", frames.append)
    try:
        ops.send(type="issue_remove_workspace", identifier="W-1")
        assert await asyncio.to_thread(entered.wait, WAIT * 2)
        clock.advance(3600)
        await run.tick()
        assert "W-1" not in run.orchestrator.running, "dispatched into a workspace going away"
    finally:
        release.set()
    await run.until(lambda: not space.exists())
    await run.until(lambda: "W-1" not in run.orchestrator.removing)
    await run.tick()
    await run.until(lambda: (space / "seen.txt").exists()
                    and (space / "seen.txt").read_text().strip())
    assert "first.txt" not in (space / "seen.txt").read_text()


async def test_only_the_issues_own_run_or_an_operator_marks_it_done(tmp_path: Path,
                                                                    make: Any) -> None:
    """A stranger naming the issue (or its session) is told no run of its own matches, and the
    issue file stays where it is; the operator may mark it done."""
    issue(tmp_path, "Todo", "A-1", "waits")
    run = await make(workflow(tmp_path, "exec sleep 600\n"))
    await run.tick()
    [entry] = await run.until(lambda: list(run.orchestrator.running.values()))
    todo = tmp_path / "issues" / "Todo" / "A-1.md"
    for name in ("evil", "B-1", "A-10"):
        stranger = await run.hub.agent(name)
        for target in ({"issue": "A-1"}, {"session": entry.session}):
            await stranger.send(type="issue_done", title="x", summary="y", **target)
            refused = await stranger.until("error", "issue_done_ok")
            assert refused["type"] == "error" and refused.get("error_code") == "not_running"
    assert todo.exists() and entry.done is None
    frames: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", frames.append)
    ops.send(type="issue_done", issue="A-1", title="done by hand", summary="checked")
    await run.until(lambda: any(f.get("type") == "issue_done_ok" for f in frames))
    await run.until(lambda: not todo.exists())


async def test_marking_done_needs_the_runs_proof_not_just_its_name(tmp_path: Path,
                                                                   make: Any) -> None:
    """A connection without the run's agent key may not mark the issue done, even under the
    issue's own name (taken before the run ever connected) or a name under it; with the key
    (as `marrow-tui done` and the MCP server send it) the run may, under `<issue>/mcp` too."""
    from marrow_tui.hub.secrets import agent_key

    issue(tmp_path, "Todo", "A-1", "waits")
    run = await make(workflow(tmp_path, "exec sleep 600\n"))
    await run.tick()
    [entry] = await run.until(lambda: list(run.orchestrator.running.values()))
    todo = tmp_path / "issues" / "Todo" / "A-1.md"
    for name in ("A-1", "A-1/x"):
        squatter = await run.hub.agent(name)
        for target in ({}, {"issue": "A-1"}, {"session": entry.session}):
            await squatter.send(type="issue_done", title="x", summary="y", **target)
            refused = await squatter.until("error", "issue_done_ok")
            assert refused["type"] == "error" and refused.get("error_code") == "not_running"
        await squatter.ws.close()
    assert todo.exists() and entry.done is None
    key = agent_key(run.hub.state_dir, "A-1")
    mcp = await run.hub.agent("A-1/mcp", agent_key=key)
    await mcp.send(type="issue_done", title="did it", summary="all of it")
    assert (await mcp.until("error", "issue_done_ok"))["type"] == "issue_done_ok"
    await run.until(lambda: not todo.exists())
