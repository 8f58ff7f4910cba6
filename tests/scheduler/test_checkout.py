"""`workspace_git` for [[agents]]: each agent runs in its own git worktree of the repository,
made by its first run and kept (with its branch) for the next; a folder that is not one
marrow-tui made is never used nor removed; a broken table is one line with FILE:LINE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marrow_tui.config.load import load_config

from tests.support.review import main_repo
from tests.support.review import run_git as git
from tests.support.scheduler import PATIENCE, acp_config, make, said, write_config  # noqa: F401

# The agent notes where it ran, adds a file named after its run and commits it.
AGENT = ('pwd > "$MARROW_WORKSPACE/ran-in.txt"\n'
         'echo "run $MARROW_SESSION" > "work-$(date +%s%N).txt"\n'
         "git add -A && git -c user.name=a -c user.email=a@a commit -qm work\n")


def git_config(root: Path, table: str | None = None) -> Path:
    repo = main_repo(root)
    table = table if table is not None else f'repo = "{repo}"\nbase = "main"\n'
    return write_config(root, {"alice": AGENT}, extra=f"[agents.workspace_git]\n{table}")


async def test_an_agent_runs_in_its_own_worktree_kept_between_runs(tmp_path: Path,
                                                                   make: Any) -> None:
    run = await make(git_config(tmp_path))
    [end] = await run.ended(1)
    assert end["state"] == "ok", end["reason"]
    checkout = tmp_path / "ws" / "alice" / "checkout"
    assert (tmp_path / "ws" / "alice" / "ran-in.txt").read_text().strip() == str(checkout)
    repo = tmp_path / "repo"
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "marrow/alice"
    assert git(repo, "rev-list", "--count", "main..marrow/alice") == "1"
    assert git(repo, "status", "--porcelain") == ""  # the operator's checkout is untouched
    run.scheduler.wake("alice", "again")
    await run.ended(2)
    assert git(repo, "rev-list", "--count", "main..marrow/alice") == "2"


async def test_a_folder_not_made_by_marrow_is_neither_used_nor_removed(tmp_path: Path,
                                                                       make: Any) -> None:
    config = git_config(tmp_path)
    mine = tmp_path / "ws" / "alice" / "checkout"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    run = await make(config)
    [end] = await run.ended(1)
    assert end["state"] == "error"
    assert "not created by marrow-tui" in end["reason"] and str(mine) in end["reason"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert git(tmp_path / "repo", "branch", "--list", "marrow/*") == ""


def test_a_broken_workspace_git_is_one_line_each_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    config = git_config(tmp_path, f'repo = "{tmp_path / "plain"}"\nmerge = "after_run"\n'
                                  'branch_prefix = "-x"\n')
    result = load_config(config)
    assert result.config is None
    lines = [str(e) for e in result.errors]
    assert len(lines) == 4, lines
    assert "marrow.toml:8:" in lines[0] and "workspace_git.base is required" in lines[0]
    assert "marrow.toml:9:" in lines[1] and "plain is not a git repository" in lines[1]
    assert "marrow.toml:10:" in lines[2] and "must be merge or squash" in lines[2]
    assert "marrow.toml:11:" in lines[3] and "'-x/alice' is not a branch name" in lines[3]


async def test_an_acp_agent_gets_its_worktree_as_its_session_folder(tmp_path: Path,
                                                                    make: Any) -> None:
    repo = main_repo(tmp_path)
    run = await make(acp_config(tmp_path, "echo", "[agents.workspace_git]\n"
                                                  f'repo = "{repo}"\nbase = "main"\n'))
    [end] = await run.until(lambda: run.of("session_end"), PATIENCE)
    assert end["state"] == "ok", end["reason"]
    text = said(run.of("session_start")[0]["transcript"])
    assert f"cwd={tmp_path / 'ws' / 'checkout'} mcp=marrow " in text
    assert git(tmp_path / "ws" / "checkout", "branch", "--show-current") == "marrow/coder"
