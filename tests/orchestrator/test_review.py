"""Reviewing what agents changed: each issue's workspace a git worktree on a base branch, its
diff and +N/-M, and accept / request changes / discard. Real git repositories in temp
folders, real agent processes (a shell script, the fake ACP agent) over the real hub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.events import Event
from marrow_tui.orchestrator.workflow import load_workflow, validate_dispatch
from marrow_tui.orchestrator.workspaces import worktree_of
from tests.support.hub import WAIT
from tests.support.orchestrator import acp_workflow, issue, make, workflow  # noqa: F401
from tests.support.review import Operator

#: the plain-command agent: it commits a change and leaves a file uncommitted
AGENT = ('printf "def b():\\n    return 2\\n" >> src/a.py\n'
         'git commit -qam "agent work"\n'
         "echo draft > notes.txt\n")
GIT = "  git:\n    repo: repo\n    base: main\n    merge: {merge}\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Reviewer")
    git(repo, "config", "user.email", "reviewer@example.com")
    (repo / "src" / "a.py").write_text("def a():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    # the test agent's script saves its prompt in the workspace: not part of the work
    (repo / ".git" / "info" / "exclude").write_text("prompt.txt\n")
    return repo


def with_git(path: Path, merge: str = "merge") -> Path:
    path.write_text(path.read_text().replace("  root: ws\n",
                                             "  root: ws\n" + GIT.format(merge=merge), 1))
    return path


def git_workflow(root: Path, body: str = AGENT, merge: str = "merge", extra: str = "") -> Path:
    return with_git(workflow(root, body, extra=extra), merge)


def events_of(run: Any) -> list[Event]:
    seen: list[Event] = []
    run.hub.runtime.subscribe(seen.extend)
    return seen


async def worked(tmp_path: Path, make: Any, merge: str = "merge", extra: str = "") -> Any:
    """An issue W-1 whose agent ran once in its worktree (committed, left notes.txt)."""
    make_repo(tmp_path)
    issue(tmp_path, "Todo", "W-1", "add b")
    run = await make(git_workflow(tmp_path, merge=merge, extra=extra))
    await run.tick()
    [ended] = await run.until(lambda: run.ended("W-1"))
    assert ended.state == "ok", ended.reason
    return run


# ---- 1. worktrees as a workspace kind -------------------------------------------------------


HOOK = ("hooks:\n  after_create: |\n"
        "    git rev-parse --abbrev-ref HEAD > ../branch-seen-by-hook\n")


async def test_each_issue_gets_a_worktree_on_the_base_and_hooks_run_in_it(
        tmp_path: Path, make: Any) -> None:
    run = await worked(tmp_path, make, extra=HOOK)
    repo, space = tmp_path / "repo", tmp_path / "ws" / "W-1"
    assert (space / ".git").is_file()  # a linked worktree, not a clone
    assert (tmp_path / "ws" / "branch-seen-by-hook").read_text().strip() == "marrow/W-1"
    assert git(repo, "rev-parse", "marrow/W-1~1") == git(repo, "rev-parse", "main")
    assert git(space, "log", "-1", "--format=%s") == "agent work"
    tree = worktree_of(tmp_path / "ws", "W-1")
    assert tree is not None and (tree.branch, tree.base) == ("marrow/W-1", "main")
    assert "W-1" in run.hub.runtime.state.issues.issues


async def test_a_plain_workspace_still_works_without_workspace_git(tmp_path: Path,
                                                                  make: Any) -> None:
    issue(tmp_path, "Todo", "P-1", "no git")
    run = await make(workflow(tmp_path, "echo hi > out.txt\n"))
    await run.tick()
    await run.until(lambda: run.ended("P-1"))
    assert (tmp_path / "ws" / "P-1" / "out.txt").read_text() == "hi\n"
    assert worktree_of(tmp_path / "ws", "P-1") is None
    ops = Operator(run)
    refused = await ops.ask("review_diff", type="review_diff", identifier="P-1")
    assert refused["error_code"] == "no_worktree" and "P-1" in refused["payload"]
    refused = await ops.ask("review_diff", type="review_diff", identifier="NOPE-9")
    assert refused["error_code"] == "unknown_issue"


@pytest.mark.parametrize(("git_lines", "key", "words"), [
    ("  git:\n    repo: nowhere\n    base: main\n", "workspace.git.repo",
     "is not a git repository"),
    ("  git:\n    repo: repo\n    base: trunk\n", "workspace.git.base", "has no branch 'trunk'"),
    ("  git:\n    repo: repo\n    base: ../main\n", "workspace.git.base", "not a branch name"),
    ("  git:\n    repo: repo\n    base: main\n    branch_prefix: -x\n",
     "workspace.git.branch_prefix", "not a branch name"),
    ("  git:\n    repo: repo\n    base: main\n    merge: rebase\n", "workspace.git.merge",
     "must be one of merge, squash, after_run"),
    ("  git:\n    repo: ws/inner\n    base: main\n", "workspace.git.repo",
     "inside the workspace root"),
    ("  git:\n    base: main\n", "workspace.git", "workspace.git.repo is required"),
])
def test_a_bad_workspace_git_is_one_sentence_with_its_line(
        tmp_path: Path, git_lines: str, key: str, words: str) -> None:
    make_repo(tmp_path)
    (tmp_path / "issues" / "Todo").mkdir(parents=True)
    path = workflow(tmp_path, AGENT)
    text = path.read_text().replace("  root: ws\n", "  root: ws\n" + git_lines, 1)
    path.write_text(text)
    loaded = load_workflow(path)
    problems = list(loaded.errors)
    if loaded.workflow is not None:
        problems += validate_dispatch(loaded.workflow)
    [problem] = problems
    line = text.splitlines().index(next(li for li in text.splitlines()
                                        if li.strip().startswith(key.rsplit(".", 1)[-1] + ":")
                                        or (key == "workspace.git" and li == "  git:"))) + 1
    assert problem.key == key and words in problem.message
    assert str(problem).startswith(f"{path}:{line}:")


async def test_nothing_is_dispatched_while_the_base_branch_is_missing(
        tmp_path: Path, make: Any) -> None:
    make_repo(tmp_path)
    issue(tmp_path, "Todo", "W-1", "add b")
    path = workflow(tmp_path, AGENT)
    path.write_text(path.read_text().replace(
        "  root: ws\n", "  root: ws\n  git:\n    repo: repo\n    base: trunk\n", 1))
    run = await make(path)
    await run.tick()
    assert run.orchestrator.dispatching is False and run.sessions == []
    status = run.hub.runtime.state.issues.workflow
    assert any("has no branch 'trunk'" in e for e in status["errors"])


# ---- 2. the diff and its +N/-M -------------------------------------------------------------


async def test_the_diff_holds_committed_and_uncommitted_work(tmp_path: Path,
                                                             make: Any) -> None:
    run = await worked(tmp_path, make)
    space = tmp_path / "ws" / "W-1"
    index_before = (Path(git(space, "rev-parse", "--path-format=absolute", "--git-path",
                             "index"))).read_bytes()
    stranger = await run.hub.agent("someone")  # any participant may look
    await stranger.send(type="review_diff", identifier="W-1")
    reply = await stranger.until("review_diff")
    assert reply["type"] == "review_diff", reply
    assert reply["base"] == "main" and reply["against"] == "base"
    assert reply["base_commit"] == git(tmp_path / "repo", "rev-parse", "main")
    assert reply["head_commit"] == git(space, "rev-parse", "HEAD")
    assert reply["stat"] == {"files": 2, "added": 3, "removed": 0}
    assert reply["uncommitted"] is True and reply["truncated"] is False
    assert "+def b():" in reply["diff"] and "+++ b/notes.txt" in reply["diff"]
    assert "prompt.txt" not in reply["diff"]  # ignored files are no work
    # looking changed nothing in the agent's worktree
    assert git(space, "status", "--porcelain") == "?? notes.txt"
    assert Path(git(space, "rev-parse", "--path-format=absolute", "--git-path",
                    "index")).read_bytes() == index_before


async def test_review_stat_is_emitted_once_per_change(tmp_path: Path, make: Any) -> None:
    run = await worked(tmp_path, make)
    seen = events_of(run)
    review = run.orchestrator.review
    await review.measure()
    await run.hub.runtime.settled()
    stats = [e.data for e in seen if e.kind == "review_stat"]
    assert [(s["identifier"], s["files"], s["added"], s["removed"]) for s in stats] == \
        [("W-1", 2, 3, 0)]
    assert run.hub.runtime.state.issues.issues["W-1"].diff == {"files": 2, "added": 3,
                                                               "removed": 0}
    await review.measure()  # nothing changed: nothing said
    review.touch("W-1")  # asked again (a turn ended): same numbers, nothing said
    await review.measure()
    await run.hub.runtime.settled()
    assert len([e for e in seen if e.kind == "review_stat"]) == 1
    space = tmp_path / "ws" / "W-1"
    (space / "src" / "c.py").write_text("x = 1\n")
    git(space, "add", "src/c.py")  # the index changed
    await review.measure()
    await run.hub.runtime.settled()
    stats = [e.data for e in seen if e.kind == "review_stat"]
    assert [(s["files"], s["added"]) for s in stats] == [(2, 3), (3, 4)]
    assert run.hub.runtime.state.issues.issues["W-1"].diff == {"files": 3, "added": 4,
                                                               "removed": 0}


# ---- 3. accept ------------------------------------------------------------------------------


@pytest.mark.parametrize(("merge", "checked_out"), [("merge", True), ("squash", False),
                                                    ("merge", False), ("squash", True)])
async def test_accept_merges_into_the_base_and_the_issue_is_done(
        tmp_path: Path, make: Any, merge: str, checked_out: bool) -> None:
    run = await worked(tmp_path, make, merge=merge)
    repo = tmp_path / "repo"
    if not checked_out:
        git(repo, "checkout", "-q", "--detach")  # main is checked out nowhere
    before = git(repo, "rev-parse", "main")
    seen = events_of(run)
    ops = Operator(run)
    parked = run.hub.runtime.state.issues.parked
    ops.session.send(type="issue_cancel", identifier="W-1")  # cancelled, then accepted
    await run.until(lambda: parked)
    reply = await ops.ask("review_accepted", type="review_accept", identifier="W-1")
    assert reply["type"] == "review_accepted", reply
    assert reply["how"] == merge and reply["commit"] == git(repo, "rev-parse", "main")
    assert not parked  # done, not "Done · parked"
    parents = git(repo, "log", "-1", "--format=%P", "main").split()
    assert parents[0] == before and len(parents) == (2 if merge == "merge" else 1)
    # what was reviewed is what was merged: the uncommitted file too
    assert git(repo, "show", "main:notes.txt") == "draft"
    assert "def b():" in git(repo, "show", "main:src/a.py")
    if checked_out:
        assert git(repo, "status", "--porcelain") == ""
        assert (repo / "notes.txt").read_text() == "draft\n"
    assert (tmp_path / "issues" / "Done" / "W-1.md").is_file()
    await run.until(lambda: not (tmp_path / "ws" / "W-1").exists()
                    and git(repo, "branch", "--list", "marrow/W-1") == "")
    await run.until(lambda: [e.data["identifier"] for e in seen if e.kind == "issue_done"])
    [accepted] = [e.data for e in seen if e.kind == "review_accepted"]
    assert accepted["how"] == merge and accepted["by"] == "operator/test"


PUSH = ("hooks:\n  after_run: |\n"
        "    if [ \"$SYMPHONY_REVIEW\" = accept ]; then git push -q origin HEAD; fi\n")


async def test_accept_by_after_run_publishes_the_branch_instead_of_merging(
        tmp_path: Path, make: Any) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    make_repo(tmp_path)
    repo = tmp_path / "repo"
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    issue(tmp_path, "Todo", "W-1", "add b")
    run = await make(git_workflow(tmp_path, merge="after_run", extra=PUSH))
    await run.tick()
    await run.until(lambda: run.ended("W-1"))
    before = git(repo, "rev-parse", "main")
    reply = await Operator(run).ask("review_accepted", type="review_accept", identifier="W-1")
    assert reply["type"] == "review_accepted", reply
    assert reply["how"] == "after_run"
    assert git(remote, "rev-parse", "marrow/W-1") == reply["commit"]
    assert git(remote, "show", "marrow/W-1:notes.txt") == "draft"  # left uncommitted: now in
    assert git(repo, "rev-parse", "main") == before  # nothing merged here
    assert (tmp_path / "issues" / "Done" / "W-1.md").is_file()
    # its commits are on the remote: nothing is lost with the worktree
    await run.until(lambda: not (tmp_path / "ws" / "W-1").exists())


async def test_accept_is_refused_while_the_bases_checkout_is_dirty(tmp_path: Path,
                                                                   make: Any) -> None:
    run = await worked(tmp_path, make)
    repo = tmp_path / "repo"
    (repo / "src" / "a.py").write_text("def a():\n    return 'mine'\n")
    before = git(repo, "rev-parse", "main")
    reply = await Operator(run).ask("review_accepted", type="review_accept", identifier="W-1")
    assert reply["type"] == "error" and reply["error_code"] == "not_accepted"
    assert "main is checked out in" in reply["payload"] and "src/a.py" in reply["payload"]
    assert "Nothing was merged" in reply["payload"]
    assert git(repo, "rev-parse", "main") == before
    assert (repo / "src" / "a.py").read_text() == "def a():\n    return 'mine'\n"
    assert (tmp_path / "ws" / "W-1").is_dir() and (tmp_path / "issues" / "Todo" /
                                                   "W-1.md").is_file()


@pytest.mark.parametrize("checked_out", [True, False])
async def test_a_conflict_leaves_the_base_untouched_and_names_the_files(
        tmp_path: Path, make: Any, checked_out: bool) -> None:
    run = await worked(tmp_path, make)
    repo = tmp_path / "repo"
    (repo / "src" / "a.py").write_text("def a():\n    return 1\ndef b():\n    return 3\n")
    git(repo, "commit", "-qam", "meanwhile on main")
    if not checked_out:
        git(repo, "checkout", "-q", "--detach")
    before = git(repo, "rev-parse", "main")
    reply = await Operator(run).ask("review_accepted", type="review_accept", identifier="W-1")
    assert reply["type"] == "error" and reply["error_code"] == "conflict", reply
    assert reply["files"] == ["src/a.py"]
    assert reply["payload"] == ("W-1 does not merge into main: 1 file conflicts (src/a.py); "
                                "main is untouched.")
    assert git(repo, "rev-parse", "main") == before
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2
    assert (tmp_path / "ws" / "W-1").is_dir()


# ---- 4. request changes -----------------------------------------------------------------------


async def test_requested_changes_start_a_plain_agents_next_run_with_the_text(
        tmp_path: Path, make: Any) -> None:
    run = await worked(tmp_path, make)
    seen = events_of(run)
    reply = await Operator(run).ask(
        "review_requested", type="review_request_changes", identifier="W-1",
        text="Name it b2, please.", refs=[{"path": "src/a.py", "line": 3}])
    assert reply["type"] == "review_requested", reply
    assert "A new run starts with it" in reply["payload"]
    await run.until(lambda: len(run.ended("W-1")) == 2)
    prompt = (tmp_path / "ws" / "W-1" / "prompt.txt").read_text()
    assert prompt.startswith("Work on W-1.")
    assert "The reviewer asks for changes:\n\nName it b2, please." in prompt
    assert "- src/a.py:3" in prompt
    assert (tmp_path / "issues" / "In Progress" / "W-1.md").is_file()
    [requested] = [e.data for e in seen if e.kind == "review_requested"]
    assert requested["how"] == "next_run" and requested["refs"] == [{"path": "src/a.py",
                                                                     "line": 3}]
    # the request is the review point: against it, only what came after shows
    await run.until(lambda: git(tmp_path / "repo", "for-each-ref",
                                "refs/marrow-review/marrow/W-1"))


async def test_requested_changes_reach_a_live_acp_session_as_its_next_turn(
        tmp_path: Path, make: Any) -> None:
    make_repo(tmp_path)
    issue(tmp_path, "Todo", "A-1", "acp work")
    run = await make(with_git(acp_workflow(tmp_path, "reviewee",
                                           agent="  max_turns: 3\n")))
    seen = events_of(run)
    await run.tick()
    # its second turn (a continuation) is under way, the first one's work committed
    await run.until(lambda: any(e.kind == "session_turn" and e.data["phase"] == "start"
                                and e.data["turn"] == 2 for e in seen))
    assert (tmp_path / "ws" / "A-1" / "notes.txt").exists()
    seen = events_of(run)
    reply = await Operator(run).ask(
        "review_requested", type="review_request_changes", identifier="A-1",
        text="Return 3 instead.", refs=[{"path": "src/a.py", "line": 4}])
    assert reply["type"] == "review_requested", reply
    assert "as its next prompt" in reply["payload"]
    (tmp_path / "ws" / "release").touch()  # the turn under way may end now
    changes = tmp_path / "ws" / "changes.txt"
    await run.until(changes.exists)
    said = changes.read_text()
    assert "The reviewer asks for changes:\n\nReturn 3 instead." in said
    assert "- src/a.py:4" in said
    prompts = [e.data for e in seen if e.kind == "session_prompt"]
    assert prompts and prompts[0]["agent"] == "A-1" and "Return 3 instead." in \
        prompts[0]["text"]
    [requested] = [e.data for e in seen if e.kind == "review_requested"]
    assert requested["how"] == "prompt" and requested["session"] == prompts[0]["id"]
    assert (tmp_path / "issues" / "In Progress" / "A-1.md").is_file()
    assert len(run.sessions) == 1  # the same session: no new run


# ---- 5. discard, and nothing lost by accident ------------------------------------------------


async def test_discard_lists_unmerged_work_and_goes_only_when_confirmed(
        tmp_path: Path, make: Any) -> None:
    run = await worked(tmp_path, make)
    repo, space = tmp_path / "repo", tmp_path / "ws" / "W-1"
    ops = Operator(run)
    refused = await ops.ask("review_discarded", type="review_discard", identifier="W-1")
    assert refused["type"] == "error" and refused["error_code"] == "unmerged_work"
    [commit] = refused["commits"]
    assert commit == {"sha": git(repo, "rev-parse", "marrow/W-1"), "subject": "agent work"}
    assert refused["files"] == ["notes.txt"]
    assert "1 commit not merged into the base" in refused["payload"], refused
    assert "agent work" in refused["payload"] and "notes.txt" in refused["payload"]
    assert space.is_dir() and git(repo, "branch", "--list", "marrow/W-1")
    seen = events_of(run)
    done = await ops.ask("review_discarded", type="review_discard", identifier="W-1",
                         confirm=True)
    assert done["type"] == "review_discarded", done
    assert not space.exists() and git(repo, "branch", "--list", "marrow/W-1") == ""
    assert "ws/W-1" not in git(repo, "worktree", "list")
    await run.hub.runtime.settled()
    assert [e.data["identifier"] for e in seen if e.kind == "review_discarded"] == ["W-1"]
    # discarded work is not run again by itself
    assert run.hub.runtime.state.issues.issues["W-1"].status == "parked"
    await run.orchestrator.review.measure()  # no worktree: no +N/-M any more
    assert run.hub.runtime.state.issues.issues["W-1"].diff is None
    assert git(repo, "log", "-1", "--format=%s", "main") == "base"


async def test_a_worktree_marrow_did_not_make_is_never_removed(tmp_path: Path,
                                                               make: Any) -> None:
    run = await worked(tmp_path, make)
    repo, space = tmp_path / "repo", tmp_path / "ws" / "W-1"
    # someone swaps the folder for a worktree of their own, on the same branch name
    space.rename(tmp_path / "moved-away")
    git(repo, "worktree", "prune")
    git(repo, "branch", "-m", "marrow/W-1", "theirs")
    git(repo, "worktree", "add", "-q", "-b", "marrow/W-1", str(space), "main")
    (space / "mine.txt").write_text("precious\n")
    ops = Operator(run)
    for verb, answer in (("review_discard", "review_discarded"),
                         ("review_accept", "review_accepted"),
                         ("review_diff", "review_diff")):
        refused = await ops.ask(answer, type=verb, identifier="W-1", confirm=True)
        assert refused["type"] == "error" and refused["error_code"] == "no_worktree", refused
    await run.orchestrator._remove_workspace("W-1", force=True)
    assert (space / "mine.txt").read_text() == "precious\n"
    assert git(repo, "branch", "--list", "marrow/W-1")


async def test_only_an_operator_accepts_requests_changes_or_discards(tmp_path: Path,
                                                                    make: Any) -> None:
    run = await worked(tmp_path, make)
    stranger = await run.hub.agent("someone")
    for verb in ("review_accept", "review_discard", "review_request_changes"):
        await stranger.send(type=verb, identifier="W-1", text="x", confirm=True)
        refused = await stranger.until("error")
        assert refused["error_code"] == "forbidden"
    assert (tmp_path / "ws" / "W-1").is_dir()


# ---- 6. the command line ----------------------------------------------------------------------


async def cli(run: Any, *words: str) -> tuple[int, str, str]:
    """`marrow-tui WORDS --uri ... --state-dir ...` as a user runs it (the operator token is
    read from the hub's state dir)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MARROW_") and not k.startswith("SYMPHONY_")}
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", *words, "--uri", run.hub.uri,
        "--state-dir", str(run.hub.state_dir), "--name", "cli/test",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(done.communicate(), WAIT * 4)
    assert done.returncode is not None
    return done.returncode, out.decode(), err.decode()


async def test_the_command_line_diffs_discards_and_says_why_not(tmp_path: Path,
                                                                 make: Any) -> None:
    run = await worked(tmp_path, make)
    code, out, err = await cli(run, "diff", "W-1", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["ok"] is True and shown["issue"] == "W-1" and shown["base"] == "main"
    assert shown["stat"] == {"files": 2, "added": 3, "removed": 0}
    assert "+def b():" in shown["diff"] and shown["uncommitted"] is True
    code, out, err = await cli(run, "diff", "W-1", "--stat")
    assert code == 0, err
    assert out.splitlines() == ["notes.txt  +1 -0", "src/a.py  +2 -0",
                                "2 file(s), +3 -0 against main (with uncommitted work)"]
    code, out, err = await cli(run, "diff", "W-1", "--stat", "--json")
    assert [f["path"] for f in json.loads(out)["files"]] == ["notes.txt", "src/a.py"]
    code, out, err = await cli(run, "discard", "W-1", "--json")
    refused = json.loads(out)
    assert code == 1 and refused["ok"] is False and refused["code"] == "unmerged_work"
    assert [c["subject"] for c in refused["commits"]] == ["agent work"]
    assert refused["files"] == ["notes.txt"] and "--yes" in err
    assert (tmp_path / "ws" / "W-1").is_dir()
    code, out, err = await cli(run, "accept", "NOPE-1", "--json")
    assert code == 1 and json.loads(out)["code"] == "unknown_issue"
    code, out, err = await cli(run, "request-changes", "W-1", "  ")
    assert code == 2 and "TEXT is empty" in err
    code, out, err = await cli(run, "discard", "W-1", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "issue": "W-1"}
    assert not (tmp_path / "ws" / "W-1").exists()


async def test_the_command_line_requests_changes_and_accepts(tmp_path: Path,
                                                             make: Any) -> None:
    run = await worked(tmp_path, make)
    code, out, err = await cli(run, "request-changes", "W-1", "Name it b2.", "--ref",
                               "src/a.py:3", "--json")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "issue": "W-1"}
    await run.until(lambda: len(run.ended("W-1")) == 2)
    assert "- src/a.py:3" in (tmp_path / "ws" / "W-1" / "prompt.txt").read_text()
    code, out, err = await cli(run, "accept", "W-1")
    assert code == 0, err
    assert out.startswith("Accepted W-1 into main (merge, ")
    assert (tmp_path / "issues" / "Done" / "W-1.md").is_file()


def test_the_cheap_stat_counts_what_a_diff_of_the_snapshot_counts(tmp_path: Path) -> None:
    from marrow_tui.orchestrator.worktrees import numstat, snapshot, stat_of

    repo = make_repo(tmp_path)
    (repo / "src" / "gone.py").write_text("a\nb\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-qb", "work")
    (repo / "src" / "a.py").write_text("def a():\n    return 2\n\n# more\n")
    git(repo, "commit", "-qam", "committed")
    (repo / "src" / "staged.py").write_text("s = 1\n")
    git(repo, "add", "src/staged.py")
    (repo / "src" / "a.py").write_text("def a():\n    return 3\n")  # changed, not staged
    (repo / "src" / "gone.py").unlink()
    (repo / "notes").mkdir()
    (repo / "notes" / "todo.md").write_text("one\ntwo\nno newline")
    (repo / "logo.bin").write_bytes(b"\x89PNG\0\0data")
    (repo / "run.log").write_text("ignored\n")
    expected = numstat(repo, base, snapshot(repo))
    assert stat_of(repo, "main") == expected
    assert expected == {"files": 5, "added": 5, "removed": 3}
