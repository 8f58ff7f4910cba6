"""The git side of reviewing an issue's work: worktrees on a base branch, their diff, and the
three actions (accept, request changes, discard) an operator takes on them.

Every function here is synchronous and bounded by GIT_TIMEOUT per git command: the
orchestrator calls them with `asyncio.to_thread`, never on the event loop. git runs with its
hooks and fsmonitor off and none of the caller's GIT_DIR / GIT_INDEX_FILE / GIT_WORK_TREE (a
hook's environment must not point these commands at another repository).

What the agent changed is read without touching its worktree: the worktree's files are hashed
into a *temporary* index (a copy of its own, so unchanged files are not read again) and that
index is compared (the +N/-M) or written as a tree (the diff), so untracked files count and
the agent's index is never changed. The only writes to the repository are the ones an
operator asked for: the merge (in the base's own checkout when it is clean, else in a
temporary worktree and then the branch is moved with a compare-and-swap `git update-ref`),
the commit of work left uncommitted at accept, the review point (`refs/marrow-review/<branch>`)
and, on discard or once the work is merged, the removal of the worktree and its branch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.text import plural

#: the longest one git command may take
GIT_TIMEOUT = 60.0
#: the largest diff text handed out (then `truncated`)
MAX_DIFF = 8 * 1024 * 1024
#: the worktree's files that are the agent's work: all but `.symphony-runtime/`, where
#: `marrow-tui done` leaves mark_done.md for the after_run hook (a linked worktree's `.git` is a
#: file, so it cannot go inside it); never diffed, counted, committed at accept or merged
WORK = (".", ":(exclude).symphony-runtime")
#: where the commit an operator last reviewed is kept (so gc keeps it too)
REVIEW_REFS = "refs/marrow-review/"
#: the most names listed in one sentence
NAMED = 5
_DROPPED = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
            "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE")


class GitError(Exception):
    """A git step failed; `message` is one sentence for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Conflict(GitError):
    """The merge conflicts; nothing was changed. `files` are the conflicting paths."""

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    env.update(extra or {})
    return env


def git(cwd: Path, *args: str, extra_env: Mapping[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one git command in `cwd` (hooks off), bounded by GIT_TIMEOUT."""
    try:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=",
             "-c", "core.quotepath=off", *args],
            cwd=cwd, capture_output=True, text=True, errors="surrogateescape",
            timeout=GIT_TIMEOUT, env=_env(extra_env), stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT:g} s in {cwd}") from None
    except OSError as exc:
        raise GitError(f"cannot run git in {cwd}: {exc.strerror or exc}") from None
    if check and done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise GitError(f"git {args[0]} failed in {cwd}: {said}")
    return done


def _out(cwd: Path, *args: str) -> str:
    return git(cwd, *args).stdout.strip()


# ---- reading a repository from its files (cheap: the dispatch checks run on the loop) ---------


def git_dir_of(path: Path) -> Path | None:
    """The git directory of the repository or worktree at `path`, or None."""
    dot_git = path / ".git"
    if dot_git.is_dir():
        return dot_git
    try:
        text = dot_git.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return path if (path / "HEAD").is_file() and (path / "objects").is_dir() else None
    if text.startswith("gitdir:"):
        target = Path(text[len("gitdir:"):].strip())
        return target if target.is_absolute() else path / target
    return None


def _common_dir(git_dir: Path) -> Path:
    with contextlib.suppress(OSError):
        pointer = (git_dir / "commondir").read_text(encoding="utf-8").strip()
        if pointer:
            return (git_dir / pointer).resolve()
    return git_dir


def branch_exists(repo: Path, branch: str) -> bool:
    """Whether `refs/heads/<branch>` is in the repository (loose or packed)."""
    git_dir = git_dir_of(repo)
    if git_dir is None:
        return False
    common = _common_dir(git_dir)
    ref = f"refs/heads/{branch}"
    if (common / ref).is_file():
        return True
    with contextlib.suppress(OSError):
        for line in (common / "packed-refs").read_text(encoding="utf-8",
                                                       errors="replace").splitlines():
            if line.partition(" ")[2].strip() == ref:
                return True
    return False


def watched_files(workspace: Path, branch: str) -> tuple[Path, ...]:
    """The files whose change means the worktree's commits or index changed: its HEAD, its
    index, and its branch's ref (loose; packed-refs too)."""
    git_dir = git_dir_of(workspace)
    if git_dir is None:
        return ()
    common = _common_dir(git_dir)
    return (git_dir / "HEAD", git_dir / "index", common / "refs" / "heads" / branch,
            common / "packed-refs")


# ---- worktrees ------------------------------------------------------------------------------


def add_worktree(repo: Path, path: Path, branch: str, base: str) -> str:
    """Make the (empty) folder `path` a worktree of `repo` on `branch`, a new branch from
    `base`; a branch of that name already there (work of an earlier workspace) is checked out
    as it is, never reset. Returns "new" or "existing"."""
    git(repo, "worktree", "prune")  # a worktree removed by hand no longer holds its branch
    if branch_exists(repo, branch):
        git(repo, "worktree", "add", str(path), branch)
        return "existing"
    git(repo, "worktree", "add", "-b", branch, str(path), f"refs/heads/{base}")
    return "new"


def remove_worktree(repo: Path, path: Path, branch: str) -> None:
    """Remove the worktree, its branch and its review point. The caller checked everything:
    that it is marrow-tui's, and that nothing would be lost or the operator confirmed."""
    if path.exists():
        removed = git(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
        if removed.returncode != 0 and path.exists():
            # git no longer knows it (its repository moved): the folder is still ours to drop
            shutil.rmtree(path)
    git(repo, "worktree", "prune", check=False)
    if branch_exists(repo, branch):
        git(repo, "branch", "-D", branch)
    git(repo, "update-ref", "-d", REVIEW_REFS + branch, check=False)


def checkout_of(repo: Path, branch: str) -> Path | None:
    """The worktree (the main one included) where `branch` is checked out, if any."""
    listing = _out(repo, "worktree", "list", "--porcelain")
    for block in listing.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines())
        if fields.get("branch") == f"refs/heads/{branch}" and "worktree" in fields:
            return Path(fields["worktree"])
    return None


# ---- what changed ---------------------------------------------------------------------------


@contextlib.contextmanager
def _everything_indexed(workspace: Path) -> Iterator[dict[str, str]]:
    """The environment of a temporary copy of the worktree's index with everything in the
    worktree added to it (committed, staged, changed, untracked and not ignored): the agent's
    own index is not touched, and unchanged files are not read again."""
    git_dir = git_dir_of(workspace)
    if git_dir is None:
        raise GitError(f"{workspace} is no git worktree")
    index = git_dir / "index"
    with tempfile.TemporaryDirectory(prefix="marrow-index-") as folder:
        temp = Path(folder) / "index"
        env = {"GIT_INDEX_FILE": str(temp)}
        if index.is_file():
            shutil.copyfile(index, temp)
        else:
            git(workspace, "read-tree", "HEAD", extra_env=env)
        git(workspace, "add", "-A", "--", *WORK, extra_env=env)
        yield env


def snapshot(workspace: Path) -> str:
    """The tree of everything in the worktree now (see _everything_indexed)."""
    with _everything_indexed(workspace) as env:
        return _out_env(workspace, env, "write-tree")


def _out_env(cwd: Path, env: Mapping[str, str], *args: str) -> str:
    return git(cwd, *args, extra_env=env).stdout.strip()


@dataclass(slots=True)
class Diff:
    base_commit: str
    head_commit: str
    against: str
    text: str
    truncated: bool
    uncommitted: bool
    stat: dict[str, int] = field(default_factory=dict)


def _merge_base(workspace: Path, base: str) -> str:
    found = git(workspace, "merge-base", "HEAD", f"refs/heads/{base}", check=False)
    if found.returncode != 0:
        raise GitError(f"the worktree {workspace} shares no history with {base}")
    return found.stdout.strip()


def numstat(workspace: Path, start: str, tree: str) -> dict[str, int]:
    """{files, added, removed} between two trees (a binary file counts, with 0 lines)."""
    return _counted(_out(workspace, "diff", "--numstat", "-z", "--no-renames", start, tree))


def _counted(listing: str) -> dict[str, int]:
    files = added = removed = 0
    for entry in listing.split("\0"):
        parts = entry.split("\t")
        if len(parts) < 3:
            continue
        files += 1
        added += int(parts[0]) if parts[0].isdigit() else 0
        removed += int(parts[1]) if parts[1].isdigit() else 0
    return {"files": files, "added": added, "removed": removed}


def stat_of(workspace: Path, base: str) -> dict[str, int]:
    """+N/-M of the worktree against its merge base with `base` (what review_stat says).

    Two git commands, as it runs for every change of every running issue: the worktree added
    to a temporary index, and that index against the merge base (`diff --cached
    --merge-base`, which finds the merge base itself; no tree is written)."""
    with _everything_indexed(workspace) as env:
        done = git(workspace, "diff", "--cached", "--merge-base", "--numstat", "-z",
                   "--no-renames", f"refs/heads/{base}", "--", extra_env=env, check=False)
    if done.returncode != 0:
        if "no merge base" in done.stderr:
            raise GitError(f"the worktree {workspace} shares no history with {base}")
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise GitError(f"git diff failed in {workspace}: {said}")
    return _counted(done.stdout)


def diff_of(workspace: Path, base: str, branch: str, against: str = "base") -> Diff:
    """The worktree's work as a unified diff: against the merge base with `base`, or
    (`against="review"`) against what the operator last reviewed (else the base)."""
    head = _out(workspace, "rev-parse", "HEAD")
    start = _merge_base(workspace, base)
    if against == "review":
        reviewed = git(workspace, "rev-parse", "--verify", "-q", REVIEW_REFS + branch,
                       check=False).stdout.strip()
        if reviewed:
            start = reviewed
        else:
            against = "base"
    tree = snapshot(workspace)
    uncommitted = tree != _out(workspace, "rev-parse", "HEAD^{tree}")
    text, truncated = _bounded(workspace, "diff", "--no-color", "--no-ext-diff",
                               "--find-renames", start, tree)
    return Diff(start, head, against, text, truncated, uncommitted,
                numstat(workspace, start, tree))


def _bounded(cwd: Path, *args: str) -> tuple[str, bool]:
    """A git command's output, at most MAX_DIFF bytes (then True: it was cut)."""
    with subprocess.Popen(["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=",
                           *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          env=_env()) as proc:
        assert proc.stdout is not None
        data = proc.stdout.read(MAX_DIFF + 1)
        if len(data) > MAX_DIFF:
            proc.kill()
        try:
            proc.wait(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT:g} s") from None
    truncated = len(data) > MAX_DIFF
    return data[:MAX_DIFF].decode("utf-8", errors="replace"), truncated


def mark_reviewed(workspace: Path, branch: str) -> str:
    """Keep what the worktree holds now as the point the next `against="review"` diff starts
    from (a commit on no branch, under REVIEW_REFS). Returns its sha."""
    tree = snapshot(workspace)
    commit = _out(workspace, "commit-tree", tree, "-p", "HEAD", "-m", "marrow-tui review point")
    git(workspace, "update-ref", REVIEW_REFS + branch, commit)
    return commit


def restart_from_base(workspace: Path, base: str) -> None:
    """After a squash: the worktree's branch starts again from the base, which now holds all
    it did (its leftovers were committed first). `--keep` refuses, and changes nothing, if a
    file changed since."""
    git(workspace, "reset", "--keep", f"refs/heads/{base}")
    git(workspace, "update-ref", "-d", REVIEW_REFS + _current_branch(workspace), check=False)


def _current_branch(workspace: Path) -> str:
    return _out(workspace, "symbolic-ref", "--short", "HEAD")


# ---- what would be lost ---------------------------------------------------------------------


@dataclass(slots=True)
class Unmerged:
    commits: list[dict[str, str]]
    files: list[str]

    def __bool__(self) -> bool:
        return bool(self.commits or self.files)

    def sentence(self) -> str:
        parts = []
        if self.commits:
            shown = ", ".join(f"{c['sha'][:8]} {c['subject']}" for c in self.commits[:NAMED])
            more = f", +{len(self.commits) - NAMED} more" if len(self.commits) > NAMED else ""
            parts.append(f"{plural(len(self.commits), 'commit')} not merged into the base "
                         f"({shown}{more})")
        if self.files:
            more = f", +{len(self.files) - NAMED} more" if len(self.files) > NAMED else ""
            parts.append(f"{plural(len(self.files), 'uncommitted file')} "
                         f"({', '.join(self.files[:NAMED])}{more})")
        return "; ".join(parts)


def uncommitted_files(workspace: Path) -> list[str]:
    """Changed, staged and untracked (not ignored) files of the worktree."""
    status = git(workspace, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
                 *WORK).stdout
    entries = status.split("\0")
    files: list[str] = []
    skip = False
    for entry in entries:
        if skip:
            skip = False
            continue
        if len(entry) > 3:
            files.append(entry[3:])
            skip = entry[0] in "RC"  # a rename's source follows
    return files


def unmerged_work(repo: Path, workspace: Path | None, branch: str, base: str, *,
                  remotes_keep: bool = False) -> Unmerged:
    """The commits of `branch` not in `base` (with `remotes_keep`, not on any remote-tracking
    branch either) and the worktree's uncommitted files."""
    commits: list[dict[str, str]] = []
    if branch_exists(repo, branch):
        args = ["log", "--format=%H%x1f%s", f"refs/heads/{branch}", "--not",
                f"refs/heads/{base}"]
        if remotes_keep:
            args.append("--remotes")
        for line in _out(repo, *args, "--").splitlines():
            sha, _, subject = line.partition("\x1f")
            commits.append({"sha": sha, "subject": subject})
    files = uncommitted_files(workspace) if workspace is not None and workspace.exists() else []
    return Unmerged(commits, files)


# ---- accept ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Accepted:
    commit: str
    #: False when the branch had nothing the base lacked
    merged: bool


def commit_leftovers(workspace: Path, message: str) -> bool:
    """Commit what the agent left uncommitted (the diff the operator accepted showed it).
    False when there was nothing."""
    if not uncommitted_files(workspace):
        return False
    git(workspace, "add", "-A", "--", *WORK)
    git(workspace, "commit", "--no-verify", "-q", "-m", message)
    return True


def accept(repo: Path, branch: str, base: str, how: str, message: str) -> Accepted:
    """Take `branch` into `base` (`how`: "merge" = --no-ff, "squash" = one commit). In the
    base's checkout when it has one (it must be clean), else in a temporary worktree, then
    `base` moves with a compare-and-swap. A conflict raises Conflict; the base is untouched."""
    tip = _out(repo, "rev-parse", "--verify", f"refs/heads/{branch}")
    old = _out(repo, "rev-parse", "--verify", f"refs/heads/{base}")
    if git(repo, "merge-base", "--is-ancestor", tip, old, check=False).returncode == 0:
        return Accepted(old, merged=False)
    checkout = checkout_of(repo, base)
    if checkout is not None:
        dirty = [line[3:] for line in git(checkout, "status", "--porcelain=v1",
                                          "--untracked-files=no").stdout.splitlines()]
        if dirty:
            shown = ", ".join(dirty[:NAMED]) + (f", +{len(dirty) - NAMED} more"
                                                if len(dirty) > NAMED else "")
            raise GitError(f"{base} is checked out in {checkout} with uncommitted changes "
                           f"({shown}); commit or stash them, then accept again. Nothing "
                           "was merged.")
        return Accepted(_merge_in(checkout, branch, base, how, message, old), merged=True)
    with tempfile.TemporaryDirectory(prefix="marrow-accept-") as folder:
        place = Path(folder) / "merge"
        git(repo, "worktree", "add", "--detach", str(place), old)
        try:
            new = _merge_in(place, branch, base, how, message, old)
        finally:
            git(repo, "worktree", "remove", "--force", "--force", str(place), check=False)
            git(repo, "worktree", "prune", check=False)
    moved = git(repo, "update-ref", "-m", message.splitlines()[0], f"refs/heads/{base}", new,
                old, check=False)
    if moved.returncode != 0:
        raise GitError(f"{base} moved while the merge was made; nothing was changed, accept "
                       "again.")
    return Accepted(new, merged=True)


def _merge_in(place: Path, branch: str, base: str, how: str, message: str, old: str) -> str:
    """Merge `branch` into what is checked out at `place` (which is at `old`); the new head."""
    if how == "squash":
        tried = git(place, "merge", "--squash", branch, check=False)
        if tried.returncode == 0:
            git(place, "commit", "--no-verify", "-q", "-m", message)
    else:
        tried = git(place, "merge", "--no-ff", "--no-edit", "-m", message, branch,
                    check=False)
    if tried.returncode != 0:
        files = [f for f in _out(place, "diff", "--name-only", "--diff-filter=U",
                                 "-z").split("\0") if f]
        # Back to where it was, whatever kind of merge stopped half-way.
        if how == "squash":
            git(place, "reset", "--merge", check=False)
        else:
            git(place, "merge", "--abort", check=False)
        if _out(place, "rev-parse", "HEAD") != old:
            git(place, "reset", "--keep", old, check=False)
        if not files:
            said = (tried.stderr.strip().splitlines() or ["it failed"])[-1]
            raise GitError(f"the merge into {base} failed: {said}; {base} is untouched.")
        raise Conflict("", files)
    return _out(place, "rev-parse", "HEAD")
