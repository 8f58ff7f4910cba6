"""Per-issue workspaces: a safe, collision-free folder under `workspace.root` for each issue.

The agent's working directory is the one thing an identifier turns into a path, so the rules are
strict (spec §9.5): the folder name (the *workspace key*) is the identifier with every character
outside `[A-Za-z0-9._-]` replaced by `_`, and when that changed anything, `--` plus the first 16
hex digits of sha256(identifier) is appended, so `a/b` and `a_b` never share a folder (smol 0.1.0
has no suffix and they do). Keys longer than 120 characters are cut and always get the suffix.
`.`, `..` and the empty key are refused. Every path is checked to sit directly inside the
resolved root, including when the workspace itself is a symlink.

Also here: where mark_done writes `mark_done.md` (smol's staging folder, which the after_run hook
reads to title the patch or PR), the environment hooks get (the variables smol documents but
never set, plus the ones its patch-bundle hook reads) and the workspace's git HEAD for the
circuit breaker's progress check (read from files, no subprocess).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .tracker import Issue

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: the longest key kept as it is (a file name stops at 255 bytes; leave room for the suffix)
MAX_KEY_CHARS = 120
MARK_DONE_FILE = "mark_done.md"


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


def ensure_workspace(root: Path | str, identifier: str) -> Workspace:
    """Create or reuse the issue's workspace (smol's `ensureFor`, minus the hook).

    A symlink or a non-folder at the path is refused (`workspace_path_is_symlink`,
    `workspace_path_not_directory`); the dispatcher runs after_create when `created_now`.
    """
    path = workspace_path(root, identifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            path.mkdir()
        except FileExistsError:
            return ensure_workspace(root, identifier)
        return Workspace(path, path.name, True)
    if stat.S_ISLNK(info.st_mode):
        raise WorkspaceError("workspace_path_is_symlink", f"{path} is a symlink")
    if not stat.S_ISDIR(info.st_mode):
        raise WorkspaceError("workspace_path_not_directory", f"{path} is not a folder")
    return Workspace(path, path.name, False)


def remove_workspace(root: Path | str, identifier: str) -> bool:
    """Delete the issue's workspace (after the before_remove hook). False if nothing to do.

    A symlink or a non-folder is left alone (smol's `remove`), never followed.
    """
    try:
        path = workspace_path(root, identifier)
    except WorkspaceError as exc:
        if exc.code in ("workspace_symlink_escape", "workspace_path_is_symlink"):
            return False
        raise
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    shutil.rmtree(path)
    return True


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


def _git_dir(workspace: Path) -> Path | None:
    dot_git = workspace / ".git"
    if dot_git.is_dir():
        return dot_git
    try:
        text = dot_git.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return None
    if text.startswith("gitdir:"):
        target = Path(text[len("gitdir:"):].strip())
        return target if target.is_absolute() else (workspace / target)
    return None


def git_head(workspace: Path | str) -> str | None:
    """The commit the workspace's HEAD points to, read from `.git` files; None if unknown.

    Follows a symbolic HEAD through loose refs and packed-refs, and a linked worktree's
    `.git` file. Anything unexpected gives None (progress is then judged on the issue file).
    """
    git = _git_dir(Path(workspace))
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
