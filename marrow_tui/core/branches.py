"""Branch names marrow-tui makes or merges into, and how a worktree's branch is merged: the
rules both `workspace.git` (WORKFLOW.md) and `workspace_git` (marrow.toml) are read by."""

from __future__ import annotations

import re

#: how an accepted worktree's branch reaches its base: a `--no-ff` merge, one squashed
#: commit, or the after_run hook (which pushes the branch or opens a pull request)
MERGE_MODES = ("merge", "squash", "after_run")
#: the keys of a `workspace.git` / `workspace_git` table
GIT_KEYS = ("repo", "base", "branch_prefix", "merge")
#: a branch name part we accept: git's rules, narrowed (no `..`, no leading `-` or `.`, no
#: `@{`, no control characters, no `~^:?*[\\` or spaces, no `.lock` ending)
_BRANCH = re.compile(r"(?!.*\.\.)(?!.*@\{)(?!.*//)(?![-./])[A-Za-z0-9._/-]+(?<![./])")


def branch_name_problem(name: str) -> str | None:
    """Why `name` cannot be a branch (name) we make or merge into; None when it can."""
    if not _BRANCH.fullmatch(name) or name.endswith(".lock") or "/." in name:
        return (f"{name!r} is not a branch name marrow-tui uses (letters, digits, `._/-`; "
                "no `..`, no leading `-`, `.` or `/`)")
    return None
