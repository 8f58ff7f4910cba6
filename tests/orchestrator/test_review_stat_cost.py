"""The +N/-M of a worktree (worktrees.stat_of) runs for every change of every running issue,
so what it costs is part of its contract (benchmarks/review): two git commands, and the same
numbers as the diff. Real git repositories in temp folders."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.orchestrator import worktrees
from marrow_tui.orchestrator.worktrees import GitError, diff_of, stat_of


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
