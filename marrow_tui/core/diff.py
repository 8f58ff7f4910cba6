"""A unified diff (what `git diff` prints) as data: files, their hunks, lines and +N/-M.

Pure: it reads text and builds values, so the diff view, the CLI's `diff --json` and the
panes' +N/-M columns all read one model. Paths come as git quotes them (C-style, in double
quotes, when they hold unusual bytes) and are unquoted here. Nothing in the text is trusted:
a line that does not fit the format is kept as a note of its file, never an error, and a
hunk header that does not read starts no hunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

LineKind = Literal["context", "added", "removed", "note"]
FileStatus = Literal["added", "deleted", "modified", "renamed", "copied", "mode"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    text: str
    #: the line's number in the old file and in the new one (None where it has none)
    old: int | None = None
    new: int | None = None


@dataclass(slots=True)
class Hunk:
    header: str
    old_start: int
    new_start: int
    lines: list[Line] = field(default_factory=list)


@dataclass(slots=True)
class FileDiff:
    #: the path after the change (before it, for a deleted file)
    path: str
    #: the path before the change, when it was renamed or copied
    old_path: str | None = None
    status: FileStatus = "modified"
    binary: bool = False
    added: int = 0
    removed: int = 0
    hunks: list[Hunk] = field(default_factory=list)
    #: lines of the file's header that say more than the paths (mode changes, similarity)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stat:
    files: int = 0
    added: int = 0
    removed: int = 0

    def text(self) -> str:
        """`+12 −3` (no files: an empty string)."""
        return f"+{self.added} −{self.removed}" if self.files else ""


def stat(files: list[FileDiff]) -> Stat:
    return Stat(len(files), sum(f.added for f in files), sum(f.removed for f in files))


def unquote(path: str) -> str:
    """A path as git prints it: bare, or C-quoted ("a\\tb", octal bytes for UTF-8)."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 == len(body):
            out += char.encode()
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif body[i + 1:i + 4].isdigit() and len(body[i + 1:i + 4]) == 3:
            out.append(int(body[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out += char.encode()
            i += 1
    return out.decode("utf-8", errors="replace")


def _side(text: str, prefix: str) -> str | None:
    """`a/x` of a `--- a/x` line without its prefix; None for /dev/null."""
    text = unquote(text.split("\t", 1)[0] if not text.startswith('"') else text)
    if text == "/dev/null":
        return None
    return text[len(prefix):] if text.startswith(prefix) else text


def _header_paths(rest: str) -> tuple[str, str]:
    """The two paths of `diff --git a/x b/y`: split where the second `b/` begins (a path may
    hold spaces; for an unrenamed file both halves are the same)."""
    if rest.startswith('"'):
        end = rest.find('"', 1)
        while end > 0 and rest[end - 1] == "\\":
            end = rest.find('"', end + 1)
        return _side(rest[:end + 1], "a/") or "", _side(rest[end + 2:], "b/") or ""
    half = (len(rest) - 1) // 2
    if rest[half] == " " and rest[:half][2:] == rest[half + 1:][2:]:
        return rest[2:half], rest[half + 3:]
    at = rest.find(" b/")
    return (rest[2:at], rest[at + 3:]) if at > 0 else (rest, rest)


def parse(text: str) -> list[FileDiff]:
    """Every file of a unified diff, in order. A hunk takes exactly the lines its header
    counts, so a removed line that reads `--- x` is a line, not a file's header."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: Hunk | None = None
    old = new = old_left = new_left = 0
    for raw in text.splitlines():
        kind = raw[:1]
        if hunk is not None and (old_left or new_left) and kind in (" ", "+", "-"):
            assert current is not None
            if kind == "+":
                new, new_left = new + 1, new_left - 1
                current.added += 1
                hunk.lines.append(Line("added", raw[1:], None, new))
            elif kind == "-":
                old, old_left = old + 1, old_left - 1
                current.removed += 1
                hunk.lines.append(Line("removed", raw[1:], old, None))
            else:
                old, new, old_left, new_left = old + 1, new + 1, old_left - 1, new_left - 1
                hunk.lines.append(Line("context", raw[1:], old, new))
            continue
        if hunk is not None and kind == "\\":  # "\ No newline at end of file"
            hunk.lines.append(Line("note", raw[2:]))
            continue
        hunk = None
        if raw.startswith("diff --git "):
            old_path, new_path = _header_paths(raw[len("diff --git "):])
            current = FileDiff(new_path or old_path)
            if old_path and new_path and old_path != new_path:
                current.old_path = old_path
            files.append(current)
            continue
        if current is None:
            continue  # text before the first file (a commit message, a warning)
        match = _HUNK.match(raw)
        if match:
            old, new = int(match.group(1)) - 1, int(match.group(3)) - 1
            old_left = 1 if match.group(2) is None else int(match.group(2))
            new_left = 1 if match.group(4) is None else int(match.group(4))
            hunk = Hunk(raw, old + 1, new + 1)
            current.hunks.append(hunk)
            continue
        _file_header(raw, current)
    return files


def _file_header(raw: str, current: FileDiff) -> None:
    if raw.startswith("new file mode"):
        current.status = "added"
    elif raw.startswith("deleted file mode"):
        current.status = "deleted"
    elif raw.startswith("rename from "):
        current.status = "renamed"
        current.old_path = unquote(raw[len("rename from "):])
    elif raw.startswith("rename to "):
        current.path = unquote(raw[len("rename to "):])
    elif raw.startswith("copy from "):
        current.status = "copied"
        current.old_path = unquote(raw[len("copy from "):])
    elif raw.startswith("copy to "):
        current.path = unquote(raw[len("copy to "):])
    elif raw.startswith("Binary files ") or raw == "GIT binary patch":
        current.binary = True
    elif raw.startswith("--- "):
        before = _side(raw[4:], "a/")
        if before is None:
            current.status = "added"
    elif raw.startswith("+++ "):
        after = _side(raw[4:], "b/")
        if after is None:
            current.status = "deleted"
        else:
            current.path = after
    elif raw.startswith(("old mode", "new mode")):
        if current.status == "modified":
            current.status = "mode"
        current.notes.append(raw)
    elif raw.startswith(("similarity index", "dissimilarity index", "index ")):
        if not raw.startswith("index "):
            current.notes.append(raw)
    elif raw:
        current.notes.append(raw)
