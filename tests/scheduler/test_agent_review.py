"""Reviewing an agent's worktree (`workspace_git` in marrow.toml) with the same verbs as an
issue's: a real git repository, a real scheduler running the agent's script, the operator on
the hub. Accepting or discarding never ends the agent: it goes on, or starts afresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.review import COMMITTING_AGENT, Operator, main_repo
from tests.support.review import run_git as git
from tests.support.scheduler import make, write_config  # noqa: F401 (make: a fixture)

async def start(tmp_path: Path, make: Any, merge: str = "merge") -> tuple[Any, Operator, Path]:
    repo = main_repo(tmp_path)
    (repo / ".git" / "info" / "exclude").write_text("prompt.txt\n")
    config = write_config(tmp_path, {"alice": COMMITTING_AGENT}, extra=(
        f'[agents.workspace_git]\nrepo = "{repo}"\nbase = "main"\nmerge = "{merge}"\n'))
    run = await make(config)
    [end] = await run.ended(1)
    assert end["state"] == "ok", end["reason"]
    return run, Operator(run), repo


async def test_an_agents_work_is_diffed_and_accepted_and_it_goes_on(tmp_path: Path,
                                                                   make: Any) -> None:
    run, operator, repo = await start(tmp_path, make)
    views = run.hub.runtime.state.sessions.agents
    # its +N/-M, measured off the loop after the run ended (the Sessions pane shows it)
    await run.until(lambda: views["alice"].diff == {"files": 2, "added": 2, "removed": 0})
    diff = await operator.ask("review_diff", type="review_diff", identifier="alice")
    assert diff["type"] == "review_diff", diff
    assert diff["stat"] == {"files": 2, "added": 2, "removed": 0} and diff["uncommitted"]
    assert "+draft" in diff["diff"] and diff["base"] == "main"
    accepted = await operator.ask("review_accepted", type="review_accept", identifier="alice")
    assert accepted["type"] == "review_accepted" and accepted["how"] == "merge", accepted
    assert "alice goes on in its worktree" in accepted["payload"]
    # merged with the draft it left (committed first); the operator's checkout is main, clean
    assert git(repo, "show", "main:draft.txt") == "draft"
    assert git(repo, "status", "--porcelain") == ""
    assert run.of("review_accepted", agent="alice", how="merge")
    await run.until(lambda: views["alice"].diff == {"files": 0, "added": 0, "removed": 0})
    run.scheduler.wake("alice", "again")
    [_, second] = await run.ended(2)
    assert second["state"] == "ok"
    diff = await operator.ask("review_diff", type="review_diff", identifier="alice")
    assert diff["stat"]["files"] == 1  # only the new run's file: the rest is in main


async def test_a_squash_starts_the_agents_branch_again_from_the_base(tmp_path: Path,
                                                                     make: Any) -> None:
    _run, operator, repo = await start(tmp_path, make, merge="squash")
    accepted = await operator.ask("review_accepted", type="review_accept", identifier="alice")
    assert accepted["how"] == "squash", accepted
    assert git(repo, "rev-list", "--count", "main..marrow/alice") == "0"
    assert git(repo, "rev-list", "--count", "marrow/alice..main") == "0"
    assert git(repo, "show", "main:draft.txt") == "draft"
    diff = await operator.ask("review_diff", type="review_diff", identifier="alice")
    assert diff["stat"] == {"files": 0, "added": 0, "removed": 0}


async def test_requested_changes_are_a_task_its_next_run_gets_at_once(tmp_path: Path,
                                                                      make: Any) -> None:
    run, operator, _repo = await start(tmp_path, make)
    said = await operator.ask("review_requested", type="review_request_changes",
                              identifier="alice", text="Name the draft notes.md",
                              refs=[{"path": "draft.txt", "line": 1}])
    assert said["type"] == "review_requested", said
    assert "A task in its queue; it runs now." in said["payload"]
    await run.ended(2)
    prompt = (tmp_path / "ws" / "alice" / "prompt.txt").read_text()
    assert "The reviewer asks for changes:" in prompt and "Name the draft notes.md" in prompt
    assert "- draft.txt:1" in prompt
    assert run.of("review_requested", agent="alice", how="task")


async def test_discard_lists_what_would_be_lost_then_the_next_run_starts_afresh(
        tmp_path: Path, make: Any) -> None:
    run, operator, repo = await start(tmp_path, make)
    checkout = tmp_path / "ws" / "alice" / "checkout"
    refused = await operator.ask("review_discarded", type="review_discard", identifier="alice")
    assert refused["error_code"] == "unmerged_work", refused
    assert refused["files"] == ["draft.txt"] and len(refused["commits"]) == 1
    assert checkout.is_dir()  # nothing removed
    done = await operator.ask("review_discarded", type="review_discard", identifier="alice",
                              confirm=True)
    assert done["type"] == "review_discarded", done
    assert not checkout.exists()
    assert git(repo, "branch", "--list", "marrow/alice") == ""
    run.scheduler.wake("alice", "afresh")
    [_, second] = await run.ended(2)
    assert second["state"] == "ok"
    assert git(repo, "rev-list", "--count", "main..marrow/alice") == "1"


async def test_a_name_nobody_reviews_is_refused_in_one_sentence(tmp_path: Path,
                                                                make: Any) -> None:
    _run, operator, _repo = await start(tmp_path, make)
    refused = await operator.ask("review_diff", type="review_diff", identifier="zed")
    assert refused["error_code"] == "unknown_issue"
    assert refused["payload"] == "No issue or agent 'zed' has work to review."
