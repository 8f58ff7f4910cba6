"""Per-issue workspaces: a safe, collision-free folder under `workspace.root` for each issue.

The agent's working directory is the one thing an identifier turns into a path, so the rules are
strict (spec §9.5): the folder name (the *workspace key*) is the identifier with every character
outside `[A-Za-z0-9._-]` replaced by `_`, and when that changed anything, `--` plus the first 16
hex digits of sha256(identifier) is appended, so `a/b` and `a_b` never share a folder (smol 0.1.0
has no suffix and they do). Keys longer than 120 characters are cut and always get the suffix.
`.`, `..` and the empty key are refused. Every path is checked to sit directly inside the
resolved root, including when the workspace itself is a symlink.

Nothing a user made is ever removed: a workspace is used and removed only when marrow-tui
created it. Creating one writes a record beside the workspaces,
`<root>/.marrow-workspaces/<key>.json` (a random nonce, the folder's device and inode, its state
and base), and a marker inside the folder: the nonce in its extended attribute
`user.marrow-workspace`. No file goes inside: after_create hooks clone into `.`, which needs an
empty folder, and a file would end up in the agent's commits. Record and marker must both
match; a folder made in place of ours has no marker, even if it got our inode back. Where the
file system keeps no extended attributes, the record alone lets a workspace be used, but it is
never removed.

The record is written before the folder is made and is `making` until the dispatcher calls
`mark_ready` after after_create succeeded, which also records the base (the commit HEAD is at,
or none): so a kill at any point leaves nothing unrecognised, and a half-made workspace is made
again rather than reused. Removal also refuses the tracker root, the WORKFLOW.md folder and
their parents, and keeps a workspace whose git repository holds work that would be lost
(uncommitted changes, stashes, commits on no remote after the base) until the operator
confirms (`force`).

Also here: where mark_done writes `mark_done.md` (smol's staging folder, which the after_run hook
reads to title the patch or PR), the environment hooks get (the variables smol documents but
never set, plus the ones its patch-bundle hook reads) and the workspace's git HEAD for the
circuit breaker's progress check (read from files, no subprocess).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.text import plural
from .tracker import Issue
from .worktrees import git_dir_of

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: the longest key kept as it is (a file name stops at 255 bytes; leave room for the suffix)
MAX_KEY_CHARS = 120
MARK_DONE_FILE = "mark_done.md"
#: the folder, inside the workspace root, that records which workspaces marrow-tui created
LEDGER = ".marrow-workspaces"
#: the extended attribute on a workspace folder holding the nonce its record names
MARKER_ATTR = "user.marrow-workspace"
#: a record's states: the folder is being made (after_create has not finished), or whole
MAKING, READY = "making", "ready"
#: how long a git command asked "what would be lost" may take
GIT_TIMEOUT = 30.0
#: the most file names or commits named in a "what would be lost" sentence
NAMED = 3


class WorkspaceError(Exception):
    """A workspace path cannot be used. `code` is a stable category (spec §9 / Elixir names)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def workspace_key(identifier: str) -> str:
    """The folder name for `identifier` (see the module docstring)."""
    safe = _UNSAFE.sub("_", identifier)
    if safe != identifier or len(safe) > MAX_KEY_CHARS:
        digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        safe = f"{safe[:MAX_KEY_CHARS]}--{digest}"
    if safe in ("", ".", ".."):
        raise WorkspaceError("invalid_workspace_key", f"identifier {identifier!r} cannot name "
                                                      "a workspace")
    return safe


def workspace_path(root: Path | str, identifier: str) -> Path:
    """`<root>/<key>` with the root resolved; raises WorkspaceError if it would leave the root.

    The root need not exist yet. A workspace that is a symlink is refused, never followed:
    `workspace_symlink_escape` when it points outside the root, else `workspace_path_is_symlink`.
    """
    real_root = Path(os.path.abspath(Path(root).expanduser())).resolve()
    candidate = real_root / workspace_key(identifier)
    if candidate.parent != real_root or candidate == real_root:
        raise WorkspaceError("workspace_outside_root", f"{candidate} is not inside {real_root}")
    if candidate.is_symlink():
        target = candidate.resolve()
        if target != real_root and real_root not in target.parents:
            raise WorkspaceError("workspace_symlink_escape",
                                 f"{candidate} is a symlink to {target}, outside {real_root}")
        raise WorkspaceError("workspace_path_is_symlink", f"{candidate} is a symlink to {target}")
    return candidate


@dataclass(slots=True, frozen=True)
class Workspace:
    path: Path
    key: str
    #: True only when this call created the folder (after_create runs only then)
    created_now: bool


def _ledger_file(path: Path) -> Path:
    return path.parent / LEDGER / f"{path.name}.json"


def _write_record(path: Path, data: dict[str, object]) -> None:
    """Replace the workspace's record at once (a reader sees the old one or the new one)."""
    ledger = path.parent / LEDGER
    ledger.mkdir(exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=ledger, prefix=".rec-", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, _ledger_file(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _read_record(path: Path) -> dict[str, object] | None:
    try:
        with open(_ledger_file(path), encoding="utf-8") as handle:
            data = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _drop_record(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _ledger_file(path).unlink()


#: what `_marker` says when the file system keeps no extended attributes
UNSUPPORTED = object()


def _set_marker(path: Path, nonce: str) -> bool:
    """Write the nonce into the folder itself (an extended attribute: no file, so a clone into
    `.` works and no commit can hold it). False where the file system has none."""
    try:
        os.setxattr(path, MARKER_ATTR, nonce.encode(), follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True


def _marker(path: Path) -> object:
    """The nonce in the folder; None if it has none; UNSUPPORTED if it cannot have one."""
    try:
        value = os.getxattr(path, MARKER_ATTR, follow_symlinks=False)
    except OSError as exc:
        return UNSUPPORTED if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) else None
    return value.decode(errors="replace")


def _ownership(path: Path, record: dict[str, object] | None) -> tuple[bool, bool, str]:
    """(usable, removable, why not) for the folder at `path` as `record` describes it.

    Ours means the record (beside the folder) and the marker (in it) both match: the record's
    nonce is the folder's, and its (device, inode) too. Where the file system keeps no
    extended attributes the record alone lets the workspace be used, but never removed."""
    try:
        info = os.lstat(path)
    except OSError:
        return False, False, f"{path} is not there"
    if record is None or not stat.S_ISDIR(info.st_mode):
        return False, False, f"{path} was not created by marrow-tui"
    nonce = record.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        return False, False, (f"{path} was not created by marrow-tui (or by a version that "
                              "left no marker in it; move it away by hand)")
    if "ino" in record and (record.get("dev"), record.get("ino")) != (info.st_dev,
                                                                        info.st_ino):
        return False, False, f"{path} was not created by marrow-tui (it replaced ours)"
    found = _marker(path)
    if found == nonce:
        return True, True, ""
    if found is UNSUPPORTED and record.get("marker") is False and "ino" in record:
        return True, False, (f"{path} cannot be proved to be marrow-tui's: its file system "
                             "keeps no extended attributes, so it holds no marker; remove it "
                             "by hand")
    return False, False, (f"{path} was not created by marrow-tui (its marker is missing: the "
                          "folder was replaced)")


def is_ours(path: Path) -> bool:
    """Whether marrow-tui provably created this very folder (not merely one of the same
    name): its record and the marker inside it match. Only such a folder is ever removed."""
    return _ownership(path, _read_record(path))[1]


def mark_ready(path: Path) -> None:
    """after_create finished: the workspace is whole, and what is in it now is where it
    started. The commit HEAD is at (or "no repository") is its base, recorded once: only
    commits after it are the agent's work, and with no base every commit is."""
    record = _read_record(path)
    if record is None or not _ownership(path, record)[0]:
        raise WorkspaceError("workspace_not_ours", f"{path} is no longer the workspace "
                                                   "marrow-tui made")
    if record.get("state") == READY:
        return
    record.update(state=READY, base=git_head(path))
    _write_record(path, record)


def record_worktree(path: Path, repo: Path, branch: str, base: str) -> None:
    """The workspace is a git worktree of `repo` on `branch`, made from the branch `base`:
    said in its record (the record, not the folder, is what removal trusts)."""
    record = _read_record(path)
    if record is None or not _ownership(path, record)[0]:
        raise WorkspaceError("workspace_not_ours", f"{path} is no longer the workspace "
                                                   "marrow-tui made")
    record["git"] = {"repo": str(repo), "branch": branch, "base": base}
    _write_record(path, record)


@dataclass(slots=True, frozen=True)
class WorktreeRecord:
    path: Path
    repo: Path
    branch: str
    base: str


def worktree_of(root: Path | str, identifier: str) -> WorktreeRecord | None:
    """The issue's workspace as a worktree, when it is one marrow-tui made and uses (its
    record says so and the folder is ours); None otherwise."""
    try:
        path = workspace_path(root, identifier)
    except WorkspaceError:
        return None
    record = _read_record(path)
    info = record.get("git") if record is not None else None
    if not isinstance(info, dict) or not _ownership(path, record)[0]:
        return None
    try:
        return WorktreeRecord(path, Path(str(info["repo"])), str(info["branch"]),
                              str(info["base"]))
    except KeyError:
        return None


def _empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def ensure_workspace(root: Path | str, identifier: str) -> Workspace:
    """Create or reuse the issue's workspace (smol's `ensureFor`, minus the hook).

    A symlink or a non-folder at the path is refused (`workspace_path_is_symlink`,
    `workspace_path_not_directory`), and so is a folder marrow-tui did not create
    (`workspace_not_ours`): someone's files are never handed to an agent, nor removed later.
    The dispatcher runs after_create when `created_now`, then `mark_ready`.

    The record is written before the folder is made (its intent, with the nonce), so a kill
    at any point leaves a record to recognise the folder by. A workspace whose after_create
    never finished (no `mark_ready`: marrow-tui was killed during it) is half-made: it is
    removed and made afresh, so after_create runs again on an empty folder.
    """
    path = workspace_path(root, identifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return _create(path)
        if stat.S_ISLNK(info.st_mode):
            raise WorkspaceError("workspace_path_is_symlink", f"{path} is a symlink")
        if not stat.S_ISDIR(info.st_mode):
            raise WorkspaceError("workspace_path_not_directory", f"{path} is not a folder")
        record = _read_record(path)
        usable, removable, why = _ownership(path, record)
        if record is not None and record.get("state") != READY and \
                isinstance(record.get("nonce"), str):
            # Half-made. An empty folder holds nobody's work, whoever made it.
            if _empty(path):
                os.rmdir(path)
            elif removable:
                shutil.rmtree(path)
            else:
                raise WorkspaceError("workspace_not_ours",
                                     f"{path} is a half-made workspace (after_create did not "
                                     f"finish) and not provably ours: {why}")
            continue
        if not usable:
            raise WorkspaceError("workspace_not_ours",
                                 f"{path} already exists and was not created by marrow-tui; "
                                 "it is neither used nor removed (move it away to run this "
                                 "issue)")
        return Workspace(path, path.name, False)
    raise WorkspaceError("workspace_busy", f"{path} keeps changing; try again")


def _create(path: Path) -> Workspace:
    nonce = secrets.token_hex(16)
    record: dict[str, object] = {"key": path.name, "nonce": nonce, "state": MAKING}
    _write_record(path, record)  # the intent first: a kill after mkdir leaves no stranger
    try:
        os.mkdir(path)
    except FileExistsError:
        _drop_record(path)
        raise WorkspaceError("workspace_not_ours",
                             f"{path} was made by someone else just now; it is neither used "
                             "nor removed") from None
    try:
        record["marker"] = _set_marker(path, nonce)
        info = os.lstat(path)
        record.update(dev=info.st_dev, ino=info.st_ino)
        _write_record(path, record)
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        _drop_record(path)
        raise
    return Workspace(path, path.name, True)


@dataclass(slots=True, frozen=True)
class Removal:
    """What became of a workspace asked to go: removed, or kept and why."""

    path: Path | None
    removed: bool = False
    #: why it was kept ("" when removed or when there was nothing to remove)
    reason: str = ""
    #: the unsaved git work that kept it, as a sentence ("" if none)
    lost: str = ""


def check_removal(root: Path | str, identifier: str, *,
                  protected: Iterable[Path] = ()) -> Removal:
    """Whether the workspace may go, without touching it. `removed` stays False: a Removal
    with no `reason` means "go ahead"; one without a `path` means nothing is there."""
    try:
        path = workspace_path(root, identifier)
    except WorkspaceError as exc:
        return Removal(None, reason=exc.message)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Removal(None)
    if not stat.S_ISDIR(info.st_mode):
        return Removal(None)
    _usable, removable, why = _ownership(path, _read_record(path))
    if not removable:
        return Removal(path, reason=why)
    for keep in protected:
        target = Path(os.path.abspath(keep))
        if target == path or path in target.parents:
            return Removal(path, reason=f"{path} holds {target}")
    return Removal(path)


def remove_workspace(root: Path | str, identifier: str, *, protected: Iterable[Path] = (),
                     force: bool = False) -> Removal:
    """Delete the issue's workspace (after the before_remove hook), only if it is ours.

    A symlink, a non-folder, a folder marrow-tui did not create, one that is (or holds) a
    `protected` path, is left alone. So is one with unsaved git work (see `unsaved_work`)
    unless `force` (the operator confirmed).
    """
    protected = tuple(protected)
    verdict = check_removal(root, identifier, protected=protected)
    if verdict.path is None or verdict.reason:
        return verdict
    path = verdict.path
    record = _read_record(path) or {}
    tree = worktree_of(root, identifier)
    if not force:
        if tree is not None:
            lost = _worktree_loss(tree)
        else:
            base = record.get("base")
            lost = unsaved_work(path, base if isinstance(base, str) else None)
        if lost:
            return Removal(path, reason="unsaved work", lost=lost)
    if tree is not None:
        from .worktrees import GitError, remove_worktree

        try:
            remove_worktree(tree.repo, path, tree.branch)
        except GitError as exc:
            raise WorkspaceError("worktree_not_removed", exc.message) from None
    else:
        shutil.rmtree(path)
    _drop_record(path)
    return Removal(path, removed=True)


def _worktree_loss(tree: WorktreeRecord) -> str:
    """What removing a worktree and its branch would lose: commits in neither the base nor
    any remote-tracking branch (a pushed branch is not lost), and uncommitted files."""
    from .worktrees import GitError, unmerged_work

    try:
        return unmerged_work(tree.repo, tree.path, tree.branch, tree.base,
                             remotes_keep=True).sentence()
    except GitError:
        return "git could not say what would be lost"


def _git(path: Path, *args: str) -> str:
    """A read-only git command in the workspace; its hooks and fsmonitor are off."""
    done = subprocess.run(
        ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", *args],
        cwd=path, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=True,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    return done.stdout


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED])
    return shown + (f", +{len(names) - NAMED} more" if len(names) > NAMED else "")


def unsaved_work(path: Path, base: str | None = None) -> str:
    """What removing the workspace would lose from its own git repository, as a sentence:
    changes not committed (untracked files that are not ignored count), stashes, and commits
    that no remote-tracking branch has, reachable from any ref (every branch, tag, a detached
    HEAD ...) but not from `base`, the commit the workspace started from. "" when nothing (or
    no repository of its own)."""
    if not os.path.lexists(path / ".git"):
        return ""
    try:
        status = _git(path, "status", "--porcelain=v1", "-z", "--untracked-files=all")
        files = [entry[3:] for entry in status.split("\0") if len(entry) > 3]
        stashes = _git(path, "stash", "list", "--format=%gd %gs").splitlines()
        exclude = []
        if base and _SHA.fullmatch(base):
            # A base the repository no longer has (the agent made a new one): all is theirs.
            with contextlib.suppress(subprocess.CalledProcessError):
                _git(path, "cat-file", "-e", f"{base}^{{commit}}")
                exclude.append(f"^{base}")
        commits = _git(path, "log", "--format=%h %s", "--exclude=refs/stash", "--all",
                       *exclude, "--not", "--remotes", "--").splitlines()
    except (OSError, subprocess.SubprocessError):
        return "git could not say what would be lost"
    parts = []
    if files:
        parts.append(f"{plural(len(files), 'uncommitted file')} "
                     f"({_some(files)})")
    if stashes:
        parts.append(f"{len(stashes)} stash{'es' * (len(stashes) != 1)} ({_some(stashes)})")
    if commits:
        parts.append(f"{plural(len(commits), 'commit')} on no remote "
                     f"({_some(commits)})")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# mark_done.md


def mark_done_staging(workspace: Path | str) -> Path:
    """`<ws>/.git/symphony-runtime` if `<ws>/.git` is a real folder, else `<ws>/.symphony-runtime`.

    Inside `.git` the file can never be committed by the agent; a linked worktree's `.git`
    file (or a symlink) does not count as a folder.
    """
    ws = Path(workspace)
    git = ws / ".git"
    try:
        is_dir = stat.S_ISDIR(os.lstat(git).st_mode)
    except OSError:
        is_dir = False
    return git / "symphony-runtime" if is_dir else ws / ".symphony-runtime"


def write_mark_done(workspace: Path | str, title: str, summary: str) -> Path:
    """Write `# <title>\\n\\n<summary>\\n` (mode 0644) where the after_run hook looks for it.

    `title` must be one non-empty line and `summary` non-empty (both trimmed), as smol's
    mark_done tool demands; ValueError otherwise. A symlinked staging folder is refused.
    Written to a temporary file and renamed, so a reader never sees half of it.
    """
    title = title.strip()
    summary = summary.strip()
    if not title or "\n" in title or "\r" in title:
        raise ValueError("title must be one non-empty line")
    if not summary:
        raise ValueError("summary must not be empty")
    staging = mark_done_staging(workspace)
    if staging.is_symlink():
        raise ValueError(f"{staging} is a symlink (refused)")
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / MARK_DONE_FILE
    fd, temp = tempfile.mkstemp(dir=staging, prefix=".mark_done-", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(f"# {title}\n\n{summary}\n")
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return target


# --------------------------------------------------------------------------------------------
# Hook environment


def hook_env(
    *,
    issue: Issue,
    attempt: int | None,
    workflow_path: Path | str,
    workspace: Path | str,
    tracker_root: Path | str | None = None,
    done_state: str | None = None,
    hook: str | None = None,
) -> dict[str, str]:
    """The variables a hook (and the agent) gets on top of the inherited environment.

    SYMPHONY_ISSUE_ID, SYMPHONY_ISSUE_IDENTIFIER, SYMPHONY_ISSUE_STATE, SYMPHONY_ISSUE_TITLE,
    SYMPHONY_ATTEMPT ("0" on the first run, then 1, 2, ...), SYMPHONY_WORKFLOW (the file),
    SYMPHONY_WORKFLOW_DIR, SYMPHONY_WORKSPACE, SYMPHONY_WORKSPACE_KEY, and when given
    SYMPHONY_TRACKER_ROOT (read by smol's after_run hook), SYMPHONY_DONE_STATE (so a hook
    need not hard-code `Done/`) and SYMPHONY_HOOK. Operator settings that smol's hooks
    read (SYMPHONY_SOURCE_REPO, SYMPHONY_BASE_BRANCH, SYMPHONY_REPO, SYMPHONY_PATCHES_DIR) are
    left to the inherited environment. NUL characters are dropped (they cannot be in a variable).

    There is deliberately no variable for mark_done.md: its folder depends on whether `.git`
    exists, which after_create may change; hooks look in both places, as smol's do.
    """
    ws = Path(workspace)
    flow = Path(workflow_path)
    env = {
        "SYMPHONY_ISSUE_ID": issue.id,
        "SYMPHONY_ISSUE_IDENTIFIER": issue.identifier,
        "SYMPHONY_ISSUE_STATE": issue.state,
        "SYMPHONY_ISSUE_TITLE": issue.title,
        "SYMPHONY_ATTEMPT": str(attempt or 0),
        "SYMPHONY_WORKFLOW": str(flow),
        "SYMPHONY_WORKFLOW_DIR": str(flow.parent),
        "SYMPHONY_WORKSPACE": str(ws),
        "SYMPHONY_WORKSPACE_KEY": ws.name,
    }
    if tracker_root is not None:
        env["SYMPHONY_TRACKER_ROOT"] = str(tracker_root)
    if done_state is not None:
        env["SYMPHONY_DONE_STATE"] = done_state
    if hook is not None:
        env["SYMPHONY_HOOK"] = hook
    return {key: value.replace("\0", "") for key, value in env.items()}


# --------------------------------------------------------------------------------------------
# Progress: the workspace's git HEAD


def git_head(workspace: Path | str) -> str | None:
    """The commit the workspace's HEAD points to, read from `.git` files; None if unknown.

    Follows a symbolic HEAD through loose refs and packed-refs, and a linked worktree's
    `.git` file. Anything unexpected gives None (progress is then judged on the issue file).
    """
    git = git_dir_of(Path(workspace))
    if git is None:
        return None
    try:
        head = (git / "HEAD").read_text(encoding="utf-8", errors="replace")[:4096].strip()
    except OSError:
        return None
    if _SHA.fullmatch(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[len("ref:"):].strip()
    if ".." in ref or ref.startswith("/"):
        return None
    common = git
    with contextlib.suppress(OSError):
        pointer = (git / "commondir").read_text(encoding="utf-8").strip()
        common = (git / pointer) if pointer else git
    for base in dict.fromkeys((git, common)):
        with contextlib.suppress(OSError):
            value = (base / ref).read_text(encoding="utf-8", errors="replace")[:200].strip()
            if _SHA.fullmatch(value):
                return value
    for base in dict.fromkeys((git, common)):
        with contextlib.suppress(OSError):
            for line in (base / "packed-refs").read_text(encoding="utf-8",
                                                         errors="replace").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _SHA.fullmatch(sha):
                    return sha
    return None

