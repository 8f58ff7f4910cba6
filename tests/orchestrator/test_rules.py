"""The orchestrator's pure rules (backoff, order, eligibility, slots, circuit breaker) and the
workspace helpers (keys, containment, mark_done.md, hook environment, git HEAD)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from marrow_tui.orchestrator import rules
from marrow_tui.orchestrator.rules import (
    BLOCKED,
    CLAIMED,
    CONTINUATION_DELAY_MS,
    DISPATCH,
    KEEP,
    MISSING_FIELDS,
    MISSING_LABELS,
    NO_GLOBAL_SLOT,
    NO_SLOTS_ERROR,
    NO_STATE_SLOT,
    NOT_ACTIVE,
    PARKED,
    RELEASE,
    RELEASE_AND_CLEAN,
    REQUEUE,
    RUNNING,
    STOP,
    STOP_AND_CLEAN,
    TERMINAL,
    ContinuationBreaker,
    Fingerprint,
    Policy,
    eligibility,
    eligible,
    failure_backoff_ms,
    is_stalled,
    next_retry,
    plan_dispatch,
    reconcile_action,
    requeue,
    retry_action,
    sort_candidates,
)
from marrow_tui.orchestrator.tracker import Blocker, Issue
from marrow_tui.orchestrator.workspaces import (
    WorkspaceError,
    ensure_workspace,
    git_head,
    hook_env,
    mark_done_staging,
    mark_ready,
    remove_workspace,
    workspace_key,
    workspace_path,
    write_mark_done,
)


def make(
    ident: str,
    state: str = "Todo",
    *,
    priority: int | None = None,
    created: dt.datetime | None = None,
    labels: tuple[str, ...] = (),
    blocked_by: tuple[Blocker, ...] = (),
    title: str = "t",
    updated: float = 0.0,
) -> Issue:
    return Issue(
        id=ident, identifier=ident, title=title, description=None, priority=priority,
        labels=labels, blocked_by=blocked_by, state=state, created_at=created, updated_at=None,
        branch_name=None, url=None, path=Path(f"/t/{state}/{ident}.md"), updated=updated,
    )


def day(n: int) -> dt.datetime:
    return dt.datetime(2026, 1, n, tzinfo=dt.UTC)


# ---------------------------------------------------------------------------- retries


def test_backoff_at_the_defaults() -> None:
    seconds = [failure_backoff_ms(n) // 1000 for n in range(1, 8)]
    assert seconds == [10, 20, 40, 80, 160, 300, 300]


def test_backoff_with_a_120s_cap() -> None:
    assert [failure_backoff_ms(n, 120_000) for n in range(1, 6)] == [
        10_000, 20_000, 40_000, 80_000, 120_000]


def test_backoff_edges() -> None:
    assert failure_backoff_ms(0) == failure_backoff_ms(-5) == 10_000
    assert failure_backoff_ms(10**18) == 300_000  # the exponent stops at 10: no overflow
    assert failure_backoff_ms(11, cap=10**12) == 10_000 * 2**10
    assert failure_backoff_ms(50, cap=10**12) == 10_000 * 2**10
    assert failure_backoff_ms(3, cap=0) == 0


def test_next_retry() -> None:
    assert next_retry(None, normal_exit=True) == rules.Retry(1, CONTINUATION_DELAY_MS,
                                                             "continuation")
    assert next_retry(4, normal_exit=True).attempt == 1  # a continuation resets the count
    first = next_retry(None, normal_exit=False, error="worker exited: boom")
    assert (first.attempt, first.delay_ms, first.kind, first.error) == (
        1, 10_000, "failure", "worker exited: boom")
    assert next_retry(1, normal_exit=False).delay_ms == 20_000
    assert next_retry(3, normal_exit=False, cap=30_000).delay_ms == 30_000
    again = requeue(2, error=NO_SLOTS_ERROR)
    assert (again.attempt, again.delay_ms, again.error) == (3, 40_000, NO_SLOTS_ERROR)


def test_stall() -> None:
    assert is_stalled(1000 + 300_001, 1000, None, 300_000)
    assert not is_stalled(1000 + 300_000, 1000, None, 300_000)
    assert not is_stalled(10_000_000, 1000, 9_900_000, 300_000)
    assert not is_stalled(10**12, 0, None, 0) and not is_stalled(10**12, 0, None, -1)


# ---------------------------------------------------------------------------- order


def test_sort_order() -> None:
    issues = [
        make("Z-1", priority=None, created=day(1)),
        make("B-1", priority=2, created=day(5)),
        make("A-2", priority=2, created=None),
        make("A-1", priority=2, created=day(5)),
        make("C-1", priority=0, created=day(1)),
        make("D-1", priority=1, created=day(9)),
        make("E-1", priority=7, created=day(2)),
        make("F-1", priority=4, created=day(3)),
        make("G-1", priority=-1, created=None),
    ]
    assert [i.id for i in sort_candidates(issues)] == [
        "D-1", "A-1", "B-1", "A-2", "F-1",  # 1..4 first; created_at, then None, then id
        "C-1", "Z-1", "E-1", "G-1",  # everything else as equals: by created_at, then id
    ]


# ---------------------------------------------------------------------------- eligibility


POLICY = Policy(max_concurrent_agents=3, max_by_state={"in progress": 1})


@pytest.mark.parametrize("issue, kwargs, code", [
    (make("A-1", title=""), {}, MISSING_FIELDS),
    (make("A-1", state="Done"), {}, TERMINAL),
    (make("A-1", state="DONE"), {}, TERMINAL),
    (make("A-1", state="Backlog"), {}, NOT_ACTIVE),
    (make("A-1"), {"running": {"A-1": "Todo"}}, RUNNING),
    (make("A-1"), {"claimed": {"A-1"}}, CLAIMED),
    (make("A-1"), {"parked": {"A-1"}}, PARKED),
    (make("A-1"), {"running": {"X": "Todo", "Y": "Todo", "Z": "Todo"}}, NO_GLOBAL_SLOT),
    (make("A-1", state="in progress"), {"running": {"X": "In Progress"}}, NO_STATE_SLOT),
])
def test_ineligible(issue: Issue, kwargs: dict, code: str) -> None:
    args = {"running": {}, **kwargs}
    reason = eligibility(issue, POLICY, **args)
    assert reason is not None and reason.code == code, reason


def test_eligible_and_states_are_normalised() -> None:
    assert eligible(make("A-1", state=" todo "), POLICY, running={})
    assert eligible(make("A-1", state="In Progress"), POLICY, running={"X": "Todo"})
    # the issue's own claim is ignored on the retry path
    assert eligible(make("A-1"), POLICY, running={}, claimed={"A-1"}, ignore_claim=True)


def test_required_labels() -> None:
    policy = Policy(required_labels=("agent", "ready"))
    assert eligible(make("A-1", labels=("agent", "ready", "x")), policy, running={})
    reason = eligibility(make("A-1", labels=("agent",)), policy, running={})
    assert reason is not None and reason.code == MISSING_LABELS and "ready" in reason.message
    blank = Policy(required_labels=(" ",))
    assert not eligible(make("A-1", labels=("agent",)), blank, running={})


def test_blocked_todo_and_reasons() -> None:
    blocker = make("B-1", state="In Progress")
    done = make("B-2", state="Done")
    index = {"B-1": blocker, "B-2": done}
    todo = make("A-1", blocked_by=(Blocker("B-1", None, "B-1", None),
                                   Blocker("NOPE", None, "NOPE", None)))
    reason = eligibility(todo, POLICY, running={}, issues_by_id=index)
    assert reason is not None and reason.code == BLOCKED
    assert reason.message == "blocked by B-1 (In Progress), NOPE (not found)"
    assert eligible(todo, POLICY, running={})  # without an index blockers are not checked
    clear = make("A-2", blocked_by=(Blocker("B-2", None, "B-2", None),))
    assert eligible(clear, POLICY, running={}, issues_by_id=index)
    started = make("A-3", state="In Progress", blocked_by=(Blocker("B-1", None, "B-1", None),))
    assert eligible(started, POLICY, running={}, issues_by_id=index)


def test_plan_dispatch_accounts_for_slots() -> None:
    policy = Policy(max_concurrent_agents=4, max_by_state={"in progress": 1})
    candidates = [
        make("P-3", state="In Progress", priority=3),
        make("P-1", state="In Progress", priority=1),
        make("T-2", priority=2),
        make("T-4", priority=4),
        make("T-9"),
        make("C-1", priority=1),
    ]
    plan = plan_dispatch(candidates, policy, running={"R-1": "Todo"}, claimed={"R-1", "C-1"})
    assert [i.id for i in plan.dispatch] == ["P-1", "T-2", "T-4"]
    assert [(i.id, r.code) for i, r in plan.skipped] == [
        ("C-1", CLAIMED), ("P-3", NO_STATE_SLOT), ("T-9", NO_GLOBAL_SLOT)]


def test_plan_dispatch_with_zero_agents() -> None:
    plan = plan_dispatch([make("A-1")], Policy(max_concurrent_agents=0), running={})
    assert plan.dispatch == [] and plan.skipped[0][1].code == NO_GLOBAL_SLOT


def test_policy_from_workflow(tmp_path: Path) -> None:
    from marrow_tui.orchestrator.workflow import load_workflow

    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\ntracker:\n  kind: local\n  required_labels: [x]\nagent:\n"
                    "  max_concurrent_agents: 2\n  max_concurrent_agents_by_state: {Todo: 1}\n"
                    "---\n")
    workflow = load_workflow(path).workflow
    policy = Policy.from_workflow(workflow)
    assert policy.required_labels == ("x",) and policy.max_concurrent_agents == 2
    assert policy.state_limit("TODO") == 1 and policy.state_limit("In Progress") == 2


# ---------------------------------------------------------------------------- reconcile, retry


def test_reconcile_action() -> None:
    policy = Policy(required_labels=("agent",))
    assert reconcile_action(None, policy) == STOP
    assert reconcile_action(make("A-1", state="Done"), policy) == STOP_AND_CLEAN
    assert reconcile_action(make("A-1", labels=("agent",)), policy) == KEEP
    assert reconcile_action(make("A-1"), policy) == STOP  # active but not routable
    assert reconcile_action(make("A-1", state="Backlog", labels=("agent",)), policy) == STOP


def test_retry_action() -> None:
    policy = Policy(max_concurrent_agents=1)
    assert retry_action(None, policy, running={}) == (RELEASE, None)
    assert retry_action(make("A-1", state="Done"), policy, running={})[0] == RELEASE_AND_CLEAN
    assert retry_action(make("A-1", state="Backlog"), policy, running={})[0] == RELEASE
    assert retry_action(make("A-1"), policy, running={}) == (DISPATCH, None)
    action, reason = retry_action(make("A-1"), policy, running={"X": "Todo"})
    assert action == REQUEUE and reason is not None and reason.code == NO_GLOBAL_SLOT
    assert retry_action(make("A-1"), policy, running={}, parked={"A-1"})[0] == RELEASE


# ---------------------------------------------------------------------------- circuit breaker


def test_breaker_parks_after_k_idle_cycles() -> None:
    breaker = ContinuationBreaker(limit=3)
    same = Fingerprint("todo", 100.0, "abc")
    assert breaker.observe("A-1", same, same) is None
    assert breaker.observe("A-1", same, same) is None
    parked = breaker.observe("A-1", same, same)
    assert parked is not None and parked.idle_cycles == 3 and "3 continuation" in parked.reason
    assert breaker.is_parked("A-1") and breaker.is_parked("A-1", same)
    # someone edits the issue: unparked, counting starts again
    assert not breaker.is_parked("A-1", Fingerprint("todo", 101.0, "abc"))
    assert breaker.streaks == {}


def test_breaker_progress_resets_the_streak() -> None:
    breaker = ContinuationBreaker(limit=2)
    a = Fingerprint("todo", 1.0, "h1")
    assert breaker.observe("A-1", a, a) is None
    assert breaker.observe("A-1", a, Fingerprint("todo", 1.0, "h2")) is None  # new commit
    assert breaker.observe("A-1", a, a) is None
    assert breaker.observe("A-1", a, Fingerprint("in progress", 1.0, "h1")) is None
    assert breaker.observe("A-1", a, a) is None
    assert breaker.observe("A-1", a, a) is not None


def test_breaker_unknown_head_is_no_progress_and_zero_disables() -> None:
    breaker = ContinuationBreaker(limit=1)
    assert breaker.observe("A-1", Fingerprint("todo", 1.0, None),
                           Fingerprint("todo", 1.0, "h")) is not None
    off = ContinuationBreaker(limit=0)
    same = Fingerprint.of(make("A-1", updated=5.0), "h")
    assert same == Fingerprint("todo", 5.0, "h")
    assert all(off.observe("A-1", same, same) is None for _ in range(20))
    off.resume("A-1")
    assert off.streaks == {} and not off.is_parked("A-1")
    assert Fingerprint.of(None) == Fingerprint("", None, None)


# ---------------------------------------------------------------------------- workspaces


def suffix(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_workspace_keys() -> None:
    assert workspace_key("ABC-1") == "ABC-1"
    assert workspace_key("a.b_c-D") == "a.b_c-D"
    assert workspace_key("a/b") == f"a_b--{suffix('a/b')}"
    assert workspace_key("a_b") == "a_b"
    assert workspace_key("a/b") != workspace_key("a:b") != workspace_key("a_b")
    assert workspace_key("héllo") == f"h_llo--{suffix('héllo')}"
    assert workspace_key("../x") == f".._x--{suffix('../x')}"
    assert workspace_key("..fix") == "..fix"
    long = "x" * 300
    assert workspace_key(long) == "x" * 120 + f"--{suffix(long)}"
    for bad in ("", ".", ".."):
        with pytest.raises(WorkspaceError) as caught:
            workspace_key(bad)
        assert caught.value.code == "invalid_workspace_key"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", workspace_key("🙂 / \x00 \n"))


def test_workspace_path_is_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert workspace_path(root, "ABC-1") == root / "ABC-1"
    for ident in ("../../etc", "/etc/passwd", "a/../../b", "..\\x"):
        path = workspace_path(root, ident)
        assert path.parent == root and "/" not in path.name
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert workspace_path(tmp_path / "link", "A") == tmp_path / "real" / "A"


def test_workspace_symlinks_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "OUT-1").symlink_to(tmp_path / "elsewhere")
    (root / "other").mkdir()
    (root / "IN-1").symlink_to(root / "other")
    with pytest.raises(WorkspaceError) as caught:
        workspace_path(root, "OUT-1")
    assert caught.value.code == "workspace_symlink_escape"
    with pytest.raises(WorkspaceError) as caught:
        ensure_workspace(root, "IN-1")
    assert caught.value.code == "workspace_path_is_symlink"
    assert remove_workspace(root, "OUT-1").removed is False
    assert (tmp_path / "elsewhere").is_dir()


def test_ensure_and_remove_workspace(tmp_path: Path) -> None:
    root = tmp_path / "a" / "ws"
    first = ensure_workspace(root, "web/1")
    assert first.created_now and first.path.is_dir() and first.key == workspace_key("web/1")
    mark_ready(first.path)  # after_create finished: the workspace is whole
    (first.path / "keep.txt").write_text("x")
    again = ensure_workspace(root, "web/1")
    assert not again.created_now and (again.path / "keep.txt").exists()
    (root / "FILE-1").write_text("not a folder")
    with pytest.raises(WorkspaceError) as caught:
        ensure_workspace(root, "FILE-1")
    assert caught.value.code == "workspace_path_not_directory"
    assert remove_workspace(root, "web/1").removed is True and not first.path.exists()
    assert remove_workspace(root, "web/1").removed is False
    assert remove_workspace(root, "FILE-1").removed is False and (root / "FILE-1").exists()


def test_mark_done_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert mark_done_staging(plain) == plain / ".symphony-runtime"
    path = write_mark_done(plain, "  Add the thing ", "\n  Did it.\n\nAll of it.  \n")
    assert path == plain / ".symphony-runtime" / "mark_done.md"
    assert path.read_bytes() == b"# Add the thing\n\nDid it.\n\nAll of it.\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["mark_done.md"]

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert mark_done_staging(repo) == repo / ".git" / "symphony-runtime"
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: /somewhere\n")
    assert mark_done_staging(worktree) == worktree / ".symphony-runtime"

    for title, summary in (("", "s"), ("two\nlines", "s"), ("t", "  ")):
        with pytest.raises(ValueError):
            write_mark_done(plain, title, summary)


def test_mark_done_refuses_a_symlinked_staging_folder(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "evil").mkdir()
    (ws / ".symphony-runtime").symlink_to(tmp_path / "evil")
    with pytest.raises(ValueError):
        write_mark_done(ws, "t", "s")
    assert list((tmp_path / "evil").iterdir()) == []


def test_hook_env(tmp_path: Path) -> None:
    issue = make("ABC-1", state="In Progress", title="Fix\x00 it")
    env = hook_env(issue=issue, attempt=None, workflow_path=tmp_path / "WORKFLOW.md",
                   workspace=tmp_path / "ws" / "ABC-1")
    assert env == {
        "SYMPHONY_ISSUE_ID": "ABC-1",
        "SYMPHONY_ISSUE_IDENTIFIER": "ABC-1",
        "SYMPHONY_ISSUE_STATE": "In Progress",
        "SYMPHONY_ISSUE_TITLE": "Fix it",
        "SYMPHONY_ATTEMPT": "0",
        "SYMPHONY_WORKFLOW": str(tmp_path / "WORKFLOW.md"),
        "SYMPHONY_WORKFLOW_DIR": str(tmp_path),
        "SYMPHONY_WORKSPACE": str(tmp_path / "ws" / "ABC-1"),
        "SYMPHONY_WORKSPACE_KEY": "ABC-1",
    }
    more = hook_env(issue=issue, attempt=3, workflow_path="W.md", workspace="ws",
                    tracker_root="issues", done_state="Done", hook="after_run")
    assert more["SYMPHONY_ATTEMPT"] == "3" and more["SYMPHONY_TRACKER_ROOT"] == "issues"
    assert more["SYMPHONY_DONE_STATE"] == "Done" and more["SYMPHONY_HOOK"] == "after_run"


def test_git_head_from_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    git = ws / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    assert git_head(ws) is None
    sha1, sha2 = "a" * 40, "b" * 40
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_head(ws) is None  # unborn branch
    (git / "packed-refs").write_text(f"# pack-refs\n{sha1} refs/heads/main\n")
    assert git_head(ws) == sha1
    (git / "refs" / "heads" / "main").write_text(sha2 + "\n")
    assert git_head(ws) == sha2
    (git / "HEAD").write_text(sha1 + "\n")
    assert git_head(ws) == sha1
    (git / "HEAD").write_text("ref: ../../../etc/passwd\n")
    assert git_head(ws) is None
    assert git_head(tmp_path / "nowhere") is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_head_matches_git(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    assert git_head(tmp_path) == git("rev-parse", "HEAD")
    git("worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"))
    assert git_head(tmp_path / "wt") == git("rev-parse", "HEAD")


def test_the_orchestrator_modules_import_no_textual() -> None:
    # (asyncio does get imported: python-liquid needs it for its async rendering API)
    import sys

    code = (
        "import sys\n"
        "import marrow_tui.orchestrator.tracker, marrow_tui.orchestrator.workflow\n"
        "import marrow_tui.orchestrator.workspaces, marrow_tui.orchestrator.rules\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'textual')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
