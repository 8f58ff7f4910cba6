"""The +N/-M of a worktree runs for every change of every running issue, and its look for
every shown issue every STAT_EVERY seconds, so what they cost is part of their contract
(benchmarks/review): two git commands per measure (with the same numbers as the diff), and a
look that only stat()s files it found once. Real git repositories in temp folders."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from marrow_tui import reviews as reviews_module
from marrow_tui.orchestrator import worktrees
from marrow_tui.orchestrator.workspaces import (
    ensure_workspace,
    mark_ready,
    record_worktree,
    worktree_of,
)
from marrow_tui.reviews import StatWatch
from marrow_tui.orchestrator.worktrees import GitError, add_worktree, diff_of, stat_of


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=Reviewer", "-c",
                           "user.email=reviewer@example.com", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def worked_worktree(root: Path) -> Path:
    """A worktree on marrow/W-1 from main with a commit, a staged, a changed, an untracked
    and an ignored file; main has moved on since (its change is not the worktree's)."""
    repo, space = root / "repo", root / "ws"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "src" / "a.py").write_text("one\ntwo\nthree\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "worktree", "add", "-q", "-b", "marrow/W-1", str(space), "main")
    (space / "src" / "b.py").write_text("b\n")
    git(space, "add", "-A")
    git(space, "commit", "-qm", "agent work")
    (space / "src" / "staged.py").write_text("s\ns\n")
    git(space, "add", "src/staged.py")
    (space / "src" / "a.py").write_text("one\n2\nthree\nfour\n")
    (space / "notes.txt").write_text("draft\n")
    (space / "run.log").write_text("ignored\n")
    (repo / "later.txt").write_text("on main after the branch\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main moves on")
    return space


def test_stat_of_counts_all_the_work_with_two_git_commands(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    space = worked_worktree(tmp_path)
    index_before = (tmp_path / "repo" / ".git" / "worktrees" / "ws" / "index").read_bytes()
    commands: list[str] = []
    real_git = worktrees.git

    def counted(cwd: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(args[0])
        return real_git(cwd, *args, **kwargs)

    monkeypatch.setattr(worktrees, "git", counted)
    stat = stat_of(space, "main")
    assert commands == ["add", "diff"]
    assert stat == {"files": 4, "added": 6, "removed": 1}
    monkeypatch.undo()
    assert diff_of(space, "main", "marrow/W-1").stat == stat
    # the agent's own index is untouched: notes.txt is still untracked, a.py unstaged
    assert (tmp_path / "repo" / ".git" / "worktrees" / "ws" / "index").read_bytes() \
        == index_before


def test_stat_of_a_worktree_with_no_history_in_common_says_so(tmp_path: Path) -> None:
    space = worked_worktree(tmp_path)
    git(space, "checkout", "-q", "--orphan", "alone")
    git(space, "commit", "-qm", "a new root")
    with pytest.raises(GitError, match=r"shares no history with main$"):
        stat_of(space, "main")


# ---- the look every STAT_EVERY seconds ------------------------------------------------------


def marrow_worktree(root: Path) -> Path:
    """The workspace of W-1 as the dispatcher makes it with workspace.git: a worktree of
    root/repo on marrow/W-1 from main, recorded as marrow-tui's."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    space = ensure_workspace(root / "ws", "W-1").path
    add_worktree(repo, space, "marrow/W-1", "main")
    record_worktree(space, repo, "marrow/W-1", "main")
    mark_ready(space)
    return space


def watch_of(root: Path) -> StatWatch:
    """The +N/-M watch of the issues' worktrees under root/ws (the orchestrator's)."""
    return StatWatch(lambda: {}, lambda name: worktree_of(root / "ws", name),
                     lambda name, counts: None)


def commit_a_line(space: Path, text: str) -> None:
    with (space / "a.txt").open("a") as out:
        out.write(text + "\n")
    git(space, "commit", "-qam", text)


def test_a_quiet_look_only_stats_files_it_found_once(tmp_path: Path, monkeypatch: Any) -> None:
    space = marrow_worktree(tmp_path)
    review = watch_of(tmp_path)
    found: list[Path] = []
    real_watched_files = reviews_module.watched_files

    def counted(workspace: Path, branch: str) -> tuple[Path, ...]:
        found.append(workspace)
        return real_watched_files(workspace, branch)

    monkeypatch.setattr(reviews_module, "watched_files", counted)
    assert review._look(["W-1"], set()) == [
        ("W-1", {"files": 0, "added": 0, "removed": 0})]
    for _ in range(3):
        assert review._look(["W-1"], set()) == []  # nothing changed
    commit_a_line(space, "one more")
    assert review._look(["W-1"], set()) == [
        ("W-1", {"files": 1, "added": 1, "removed": 0})]
    assert found == [space]


def test_a_moved_repository_is_followed_by_the_look(tmp_path: Path) -> None:
    space = marrow_worktree(tmp_path)
    review = watch_of(tmp_path)
    assert review._look(["W-1"], set())
    (tmp_path / "repo").rename(tmp_path / "moved")
    git(tmp_path / "moved", "worktree", "repair", str(space))
    commit_a_line(space, "after the move")
    assert review._look(["W-1"], set()) == [
        ("W-1", {"files": 1, "added": 1, "removed": 0})]


def test_the_done_marker_is_never_the_agents_work(tmp_path: Path) -> None:
    # In a linked worktree `marrow-tui done` writes .symphony-runtime/mark_done.md in the
    # worktree itself: it is not counted, not committed at accept, so never merged.
    from marrow_tui.orchestrator.workspaces import write_mark_done
    from marrow_tui.orchestrator.worktrees import commit_leftovers, uncommitted_files

    space = worked_worktree(tmp_path)
    before = stat_of(space, "main")
    marker = write_mark_done(space, "Done", "All of it.")
    assert marker.parent.name == ".symphony-runtime"
    assert stat_of(space, "main") == before
    assert not any(".symphony-runtime" in name for name in uncommitted_files(space))
    assert ".symphony-runtime" not in diff_of(space, "main", "marrow/W-1").text
    assert commit_leftovers(space, "leftovers")
    assert ".symphony-runtime" not in git(space, "show", "--stat", "HEAD")
    assert marker.is_file()  # still there for the after_run hook
