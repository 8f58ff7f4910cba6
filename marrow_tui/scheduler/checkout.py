"""An agent's checkout: with `workspace_git`, each [[agents]] entry runs in a git worktree of
its repository, `<workspace>/checkout` on the branch `<branch_prefix>/<name>` made from the
base, so agents working on one repository never edit the same files, and what each changed is
reviewed (`marrow-tui diff NAME`) and accepted like an issue's work.

The worktree is made by the first run that needs it and kept between runs (the branch carries
the agent's work forward); it is made through the orchestrator's workspace records, so it is
removed only as the orchestrator's are: by `discard`, and never with unmerged work unless the
operator confirmed.
"""

from __future__ import annotations

from ..config.model import CHECKOUT, AgentConfig
from ..orchestrator.workspaces import (
    WorkspaceError,
    ensure_workspace,
    mark_ready,
    record_worktree,
    remove_workspace,
    worktree_of,
)
from ..orchestrator.worktrees import GitError, add_worktree


class CheckoutError(Exception):
    """Why the agent's checkout cannot be used (one sentence: the run cannot start)."""


def ensure_checkout(agent: AgentConfig) -> bool:
    """Make the agent's worktree when it has none; True when this call made it. Blocking
    (git): run it in a thread."""
    git = agent.git
    if git is None:
        return False
    branch = git.branch(agent.name)
    tree = worktree_of(agent.workspace, CHECKOUT)
    if tree is not None and tree.path.is_dir():
        if tree.repo != git.repo or tree.branch != branch:
            raise CheckoutError(
                f"{tree.path} is a worktree of {tree.repo} on {tree.branch}, but workspace_git "
                f"now says {git.repo} on {branch}; discard it (marrow-tui discard "
                f"{agent.name}) or set workspace_git back")
        return False
    try:
        made = ensure_workspace(agent.workspace, CHECKOUT)
    except WorkspaceError as exc:
        raise CheckoutError(exc.message) from None
    if not made.created_now:
        raise CheckoutError(f"{made.path} is not a git worktree marrow-tui made; move it away "
                            "so the agent's worktree can be made there")
    try:
        add_worktree(git.repo, made.path, branch, git.base)
        record_worktree(made.path, git.repo, branch, git.base)
        mark_ready(made.path)
    except (GitError, WorkspaceError) as exc:
        # ours, made this minute, empty of anyone's work: it goes, and the next run tries again
        remove_workspace(agent.workspace, CHECKOUT, force=True)
        raise CheckoutError(f"no worktree for {agent.name}: {exc.message}") from None
    return True
