"""The markdown task queue: one file per task under `<workspace>/tasks/{queue,delegated,done}/`.

The file contract is marrow-core's, so its agents and profile scripts (which list
`tasks/queue/*.md` and move files to `delegated/` or `done/`) keep working: the name is
`<timestamp>-<safe title>.md`, the content `# {title}\\n\\n{body}\\n` (or `# {title}\\n`).

Two things differ from marrow-core on purpose:

* the timestamp has milliseconds (`YYYYmmdd-HHMMSS-mmm`), and
* a file is never overwritten: it is written to a hidden temp file and then hard-linked to its
  final name, which fails instead of replacing; on a collision `-2`, `-3`... is appended. A
  reader never sees a half-written task either.

Titles come from operators and from the wire, so the file name keeps only letters, digits,
`-`, `_` and spaces: a title can never name a path outside the folder.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import userfile

#: the three folders under `tasks_dir`, in the order a task normally moves through them
TASK_STATES = ("queue", "delegated", "done")

#: a task file's body is read up to this many bytes (a prompt is no place for a huge file)
READ_CAP = 64 * 1024

#: the longest title a task may have (it is a file name, a prompt heading and a table cell)
MAX_TITLE = 200

_MAX_SUFFIX = 10_000
_TRUNCATED = "\n\n[task file truncated at 64 KiB]"


@dataclass(frozen=True, slots=True)
class Task:
    path: Path
    title: str
    body: str
    #: the file's mtime (epoch seconds)
    created: float
    #: "queue", "delegated" or "done"
    state: str


def safe_name(title: str) -> str:
    """marrow-core's file-name rule: keep alnum, `-`, `_`, space; 50 chars; spaces to `-`."""
    kept = "".join(c for c in title if (c.isascii() and c.isalnum()) or c in "-_ ")
    return kept[:50].strip().replace(" ", "-") or "task"


def check_title(title: str) -> str:
    """The stripped title, or ValueError saying why it cannot be one."""
    if not isinstance(title, str):  # ValueError: wire handlers catch one type only
        raise ValueError(  # noqa: TRY004
            f"task title must be text, not {type(title).__name__}"
        )
    title = title.strip()
    if not title:
        raise ValueError("task title is empty")
    if len(title.splitlines()) > 1:
        raise ValueError("task title must be a single line")
    if "\x00" in title:
        raise ValueError("task title contains a NUL character")
    if not title.isprintable():
        raise ValueError("task title contains control characters")
    if len(title) > MAX_TITLE:
        raise ValueError(f"task title is longer than {MAX_TITLE} characters")
    return title


def task_text(title: str, body: str = "") -> str:
    """A task file's content, exactly as marrow-core writes it."""
    return f"# {title}\n\n{body}\n" if body else f"# {title}\n"


def add_task(tasks_dir: Path, title: str, body: str = "", *, now: datetime | None = None) -> Path:
    """Create a task in `<tasks_dir>/queue/` and return its path. Never overwrites a file."""
    title = check_title(title)
    now = now or datetime.now()
    stamp = now.strftime("%Y%m%d-%H%M%S") + f"-{now.microsecond // 1000:03d}"
    folder = tasks_dir / "queue"
    folder.mkdir(parents=True, exist_ok=True)
    data = task_text(title, body).encode("utf-8", errors="replace")
    return _create_new(folder, f"{stamp}-{safe_name(title)}", data)


def list_tasks(tasks_dir: Path, state: str = "queue") -> list[Task]:
    """The tasks in one folder, oldest first (by file name). A missing folder has none."""
    _check_state(state)
    folder = tasks_dir / state
    try:
        entries = [e for e in os.scandir(folder) if _is_task_file(e)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    tasks = []
    for entry in sorted(entries, key=lambda e: _natural_key(Path(e.name).stem)):
        task = _read_task(Path(entry.path), state)
        if task is not None:
            tasks.append(task)
    return tasks


def move_tasks(paths: Iterable[Path], to: str) -> list[Path]:
    """Move task files to the sibling folder `to`; returns the new paths.

    A file that vanished meanwhile (an agent moved it first) is skipped. A name already taken
    in the target folder gets a `-2`, `-3`... suffix rather than replacing that file.
    """
    _check_state(to)
    moved = []
    for path in paths:
        path = Path(path)
        if path.parent.name not in TASK_STATES:
            raise ValueError(f"not in a task folder ({'/'.join(TASK_STATES)}): {path}")
        target = path.parent.parent / to
        if path.parent.name == to:
            if path.exists():
                moved.append(path)
            continue
        target.mkdir(parents=True, exist_ok=True)
        new = _move_new(path, target)
        if new is not None:
            moved.append(new)
    return moved


# ---- helpers ----------------------------------------------------------------------------------


def _check_state(state: str) -> None:
    if state not in TASK_STATES:
        raise ValueError(f"task state must be one of {', '.join(TASK_STATES)}, not {state!r}")


def _is_task_file(entry: os.DirEntry[str]) -> bool:
    # Hidden files are our temp files (and editors'); symlinks could point anywhere.
    return (
        entry.name.endswith(".md")
        and not entry.name.startswith(".")
        and entry.is_file(follow_symlinks=False)
    )


def _natural_key(stem: str) -> tuple[tuple[int, int, str], ...]:
    """Digits compare as numbers, so `x-2` sorts before `x-10`; `x` before `x-2`."""
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in re.split(r"([0-9]+)", stem)
        if part
    )


def _read_task(path: Path, state: str) -> Task | None:
    """The task in `path`; None when it is gone or not a regular file (a FIFO or a symlink
    put there after the folder was listed is never opened for good, never followed)."""
    try:
        raw = userfile.read_head(path, READ_CAP + 1, follow_symlinks=False)
        created = os.stat(path, follow_symlinks=False).st_mtime
    except (userfile.RefusedFile, OSError):
        return None
    text = raw[:READ_CAP].decode("utf-8", errors="replace")
    first, _, rest = text.partition("\n")
    if first.startswith("#"):
        title = first.lstrip("# ").strip() or path.stem
        body = rest.strip()
    else:
        title = path.stem
        body = text.strip()
    if len(raw) > READ_CAP:
        body += _TRUNCATED
    return Task(path=path, title=title, body=body, created=created, state=state)


def _candidates(stem: str) -> Iterable[str]:
    yield f"{stem}.md"
    for n in range(2, _MAX_SUFFIX):
        yield f"{stem}-{n}.md"


def _create_new(folder: Path, stem: str, data: bytes) -> Path:
    """Write `data` under the first free name `<stem>.md`, `<stem>-2.md`...; atomic, no clobber."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".new-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        for name in _candidates(stem):
            path = folder / name
            try:
                if not _link(Path(tmp), path):
                    _write_exclusive(path, data)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"no free task file name for {stem!r} in {folder}")
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _move_new(src: Path, folder: Path) -> Path | None:
    """Move `src` into `folder` under its name or the first free suffixed one; None if gone."""
    for name in _candidates(src.stem):
        dst = folder / name
        try:
            if _link(src, dst):
                try:
                    os.unlink(src)
                except FileNotFoundError:  # someone else moved it meanwhile: theirs wins
                    os.unlink(dst)
                    return None
            elif dst.exists():
                continue
            else:
                os.replace(src, dst)  # no hard links here: a small race, never a lost source
            return dst
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
    raise FileExistsError(f"no free task file name for {src.name} in {folder}")


def _link(src: Path, dst: Path) -> bool:
    """Hard-link `src` to `dst` (FileExistsError if taken); False where links are unsupported."""
    try:
        os.link(src, dst)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError:
        return False
    return True


def _write_exclusive(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
