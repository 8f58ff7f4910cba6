"""The local Markdown issue tracker: `<root>/<State>/<ID>.md`, as smol-symphony 0.1.0 reads it.

The tracker is a folder people edit by hand, so reading it must never take the orchestrator
down: everything that can be wrong with a file becomes one `Problem` for that file and the scan
goes on. Nothing is read outside the root: state folders and files are opened relative to
directory descriptors with O_NOFOLLOW, so a folder swapped for a symlink between listing and
reading cannot redirect us. The front matter fields and where we differ from smol are in
docs/orchestrator.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

#: the largest issue file read (front matter and body)
MAX_ISSUE_BYTES = 1024 * 1024
#: the largest front matter parsed (pure-Python YAML: about 0.3 s per 64 KiB at worst)
MAX_FRONT_MATTER_BYTES = 64 * 1024
#: YAML nesting deeper than this is refused (the composer recurses; libyaml's would segfault)
MAX_YAML_DEPTH = 64
#: YAML whose aliases would expand past this many nodes is refused ("billion laughs")
MAX_YAML_NODES = 100_000
#: the longest identifier, in UTF-8 bytes (file names stop at 255)
MAX_ID_BYTES = 200

#: smol's Todo blocker rule applies to the state whose normalised name is this
TODO_STATE = "todo"

ERROR = "error"
WARNING = "warning"

_FENCE = re.compile(r"---[ \t]*\r?")
_DIGITS = re.compile(r"-?\d{1,18}")
_AUTO_ID = re.compile(r"([A-Za-z][A-Za-z0-9_]*)-(\d{1,9})")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?"
)


class TrackerError(Exception):
    """A tracker operation failed. `code` is one of smol's codes (`local_issue_*`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class YamlError(ValueError):
    """YAML that we refuse or cannot read. `line` is 0-based within the YAML text, if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


# --------------------------------------------------------------------------------------------
# Small shared helpers (workflow.py uses the front matter and YAML ones too)


def norm_state(state: str | None) -> str:
    """States compare after trim + lowercase (spec §4.2)."""
    return (state or "").strip().lower()


def state_in(state: str | None, states: Iterable[str]) -> bool:
    key = norm_state(state)
    return bool(key) and any(norm_state(s) == key for s in states)


def is_safe_name(name: str) -> bool:
    """True for a name that is one harmless file-name component (see the module docstring)."""
    return (
        bool(name)
        and name == name.strip()
        and not name.startswith(".")
        and ".." not in name
        and "/" not in name
        and "\\" not in name
        and name.isprintable()
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
    )


@dataclass(slots=True, frozen=True)
class FrontMatter:
    """A file split at its `---` fences. `yaml` is None when there is no front matter."""

    yaml: str | None
    body: str
    #: 1-based line of the file where the YAML text starts (the line after the first fence)
    yaml_line: int
    #: 1-based line of the file where the body starts
    body_line: int
    #: the file opened a fence and never closed it (the tracker then reads it all as body)
    unterminated: bool = False


def split_front_matter(text: str) -> FrontMatter:
    """Split at `---` fences: exactly `---` at the start of a line, trailing blanks allowed."""
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if not lines or not _FENCE.fullmatch(lines[0]):
        return FrontMatter(None, text, 1, 1)
    for index in range(1, len(lines)):
        if _FENCE.fullmatch(lines[index]):
            return FrontMatter(
                "\n".join(line.rstrip("\r") for line in lines[1:index]),
                "\n".join(lines[index + 1:]),
                2,
                index + 2,
            )
    return FrontMatter(None, text, 1, 1, unterminated=True)


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader (no Python tags) that refuses deep nesting; see `load_yaml`.

    Timestamps are not resolved implicitly: `created_at: 2026-05-19` stays a string, as in
    YAML 1.2 and smol's parser, and `parse_timestamp` judges it (a bad date is then one
    warning, not an unreadable file).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_GuardedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: Node, limit: int = MAX_YAML_NODES) -> None:
    """Refuse alias graphs that expand past `limit` nodes, and recursive aliases."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > limit:
                raise YamlError(
                    f"aliases expand to more than {limit} nodes (refused)",
                    node.start_mark.line,
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlError("recursive alias (refused)", node.start_mark.line)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def load_yaml(text: str, *, max_bytes: int = MAX_FRONT_MATTER_BYTES) -> tuple[Any, Node | None]:
    """Parse one YAML document safely: `(value, node)`; `node` keeps positions for messages.

    Only the safe tags (no `!!python/...`), at most `max_bytes` of UTF-8, nesting at most
    MAX_YAML_DEPTH, aliases expanding to at most MAX_YAML_NODES nodes. Any refusal or parse
    error is a YamlError; nothing else escapes.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlError(f"YAML is {size} bytes, more than the {max_bytes} allowed")
    loader = _GuardedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return loader.construct_document(node), node
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise YamlError(message or "invalid YAML", mark.line if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc) or "invalid YAML") from None
    except RecursionError:
        raise YamlError("YAML nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - hostile input must never escape as a crash
        raise YamlError(f"unreadable YAML: {exc}") from None
    finally:
        loader.dispose()


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An RFC 3339 instant as an aware datetime. None for None; ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        text = value.strip()
        if _RFC3339.fullmatch(text):
            if text[-1] in "zZ":
                text = text[:-1] + "+00:00"
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise ValueError(f"not an RFC 3339 timestamp: {value!r}")


def format_timestamp(value: dt.datetime) -> str:
    """`2026-05-19T08:49:32.774Z` style (UTC, milliseconds), as smol and JavaScript write it."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------
# Issues


@dataclass(slots=True, frozen=True)
class Blocker:
    """One `blocked_by` entry. Unresolved: `id` and `state` are None, `identifier` is the text."""

    ref: str
    id: str | None
    identifier: str | None
    state: str | None

    @property
    def resolved(self) -> bool:
        return self.id is not None

    def to_template(self) -> dict[str, Any]:
        return {"id": self.id, "identifier": self.identifier, "state": self.state}


@dataclass(slots=True, frozen=True)
class Issue:
    id: str
    identifier: str
    title: str
    #: the body, trimmed; None when empty
    description: str | None
    #: as written (an int or None); sorting ranks 1..4 first (rules.priority_rank)
    priority: int | None
    labels: tuple[str, ...]
    blocked_by: tuple[Blocker, ...]
    #: the state folder's name, as on disk
    state: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    branch_name: str | None
    url: str | None
    path: Path
    #: the file's mtime (epoch seconds)
    updated: float

    @property
    def basename(self) -> str:
        return self.path.name[: -len(".md")]

    @property
    def norm_state(self) -> str:
        return norm_state(self.state)

    def to_template(self) -> dict[str, Any]:
        """The spec's normalised issue as plain data for the prompt template (`issue.*`).

        smol's fields plus the spec's `native_ref` and `assignee_id` (always null here).
        Timestamps are RFC 3339 strings.
        """
        return {
            "id": self.id,
            "identifier": self.identifier,
            "title": self.title,
            "description": self.description,
            "priority": self.priority,
            "state": self.state,
            "branch_name": self.branch_name,
            "url": self.url,
            "labels": list(self.labels),
            "blocked_by": [b.to_template() for b in self.blocked_by],
            "created_at": format_timestamp(self.created_at) if self.created_at else None,
            "updated_at": format_timestamp(self.updated_at) if self.updated_at else None,
            "native_ref": None,
            "assignee_id": None,
        }


@dataclass(slots=True, frozen=True)
class Problem:
    """Something wrong with one file or folder. Errors skip the file; warnings keep it."""

    path: Path
    message: str
    severity: str = ERROR
    #: the file name without `.md`, when the problem is about an issue file
    ref: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.severity}: {self.message}"


@dataclass(slots=True)
class ScanResult:
    root: Path
    issues: list[Issue] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def by_id(self) -> dict[str, Issue]:
        """Every issue under its id, identifier and file name (ids win, then the first file)."""
        index: dict[str, Issue] = {}
        for getter in (lambda i: i.id, lambda i: i.identifier, lambda i: i.basename):
            for issue in self.issues:
                index.setdefault(getter(issue), issue)
        return index

    def in_states(self, states: Iterable[str]) -> list[Issue]:
        """`fetch_issues_by_states`: the issues whose state is one of `states` (normalised)."""
        wanted = {norm_state(s) for s in states} - {""}
        return [issue for issue in self.issues if issue.norm_state in wanted] if wanted else []

    def by_ids(self, ids: Iterable[str]) -> dict[str, Issue]:
        """`fetch_issues_by_ids`: found issues by requested id; missing ids are left out.

        A requested id that names a broken file raises TrackerError("local_issue_malformed")
        rather than looking missing (spec §11.1: an id refresh must fail, not omit).
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        found: dict[str, Issue] = {}
        for issue in self.issues:
            if issue.id in wanted and issue.id not in found:
                found[issue.id] = issue
        broken = {p.ref: p for p in self.errors if p.ref}
        for ref in wanted:
            if ref not in found and ref in broken:
                raise TrackerError("local_issue_malformed", str(broken[ref]))
        return found


def parse_issue(
    text: str, *, path: Path, state: str, mtime: float = 0.0
) -> tuple[Issue | None, list[Problem]]:
    """One issue file's text. `(None, problems)` when the file cannot be an issue."""
    basename = path.name.removesuffix(".md")
    problems: list[Problem] = []

    def problem(message: str, severity: str = ERROR) -> None:
        problems.append(Problem(path, message, severity, basename))

    if not is_safe_name(basename):
        problem(f"unsafe file name {basename!r} (skipped)")
        return None, problems
    parts = split_front_matter(text)
    if parts.yaml is None:
        # An issue needs a title, which lives in the front matter: a stray note in a state
        # folder is not work to hand to an agent.
        problem("front matter never closed (skipped)" if parts.unterminated
                else "no front matter (skipped): an issue starts with `---`, its title, `---`")
        return None, problems
    try:
        meta, _ = load_yaml(parts.yaml)
    except YamlError as exc:
        where = f" (line {exc.line + parts.yaml_line})" if exc.line is not None else ""
        problem(f"invalid front matter{where}: {exc.message} (skipped)")
        return None, problems
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        problem(f"front matter is a {type(meta).__name__}, not a map (skipped)")
        return None, problems

    def text_field(key: str) -> str | None:
        value = meta.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            problem(f"{key}: expected a string, got {type(value).__name__} (ignored)", WARNING)
            return None
        value = str(value).strip()
        return value or None

    issue_id = text_field("id") or basename
    identifier = text_field("identifier") or basename
    for key, value in (("id", issue_id), ("identifier", identifier)):
        if not is_safe_name(value):
            problem(f"{key} {value!r} is not a safe name (skipped)")
            return None, problems
    title = text_field("title")
    if title is None:
        problem("no title in the front matter (skipped)")
        return None, problems
    body = parts.body.strip()

    stamps: dict[str, dt.datetime | None] = {}
    for key in ("created_at", "updated_at"):
        try:
            stamps[key] = parse_timestamp(meta.get(key))
        except ValueError as exc:
            stamps[key] = None
            problem(f"{key}: {exc} (ignored)", WARNING)
    created_at, updated_at = stamps["created_at"], stamps["updated_at"]

    issue = Issue(
        id=issue_id,
        identifier=identifier,
        title=title,
        description=body or None,
        priority=_priority(meta.get("priority")),
        labels=_labels(meta.get("labels"), problem),
        blocked_by=tuple(
            Blocker(ref, None, ref, None) for ref in _refs(meta.get("blocked_by"), problem)
        ),
        state=state,
        created_at=created_at,
        updated_at=updated_at,
        branch_name=text_field("branch_name"),
        url=text_field("url"),
        path=path,
        updated=mtime,
    )
    if any(b.ref in (issue.id, issue.identifier) for b in issue.blocked_by):
        problem("blocked_by lists the issue itself", WARNING)
    return issue, problems


def _priority(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _labels(value: Any, problem: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problem(f"labels: expected a list, got {type(value).__name__} (ignored)", WARNING)
        return ()
    seen: dict[str, None] = {}
    for item in value:
        if isinstance(item, str) and item.strip():
            seen.setdefault(item.strip().lower(), None)
    return tuple(seen)


def _refs(value: Any, problem: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        problem(f"blocked_by: expected a list, got {type(value).__name__} (ignored)", WARNING)
        return []
    refs: list[str] = []
    for item in value:
        if isinstance(item, str | int) and not isinstance(item, bool) and str(item).strip():
            ref = str(item).strip()
            if ref not in refs:
                refs.append(ref)
        else:
            problem(f"blocked_by: entry {item!r} is not an issue reference (ignored)", WARNING)
    return refs


# --------------------------------------------------------------------------------------------
# Scanning

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _symlink_problem(path: Path, root: Path, what: str) -> str:
    try:
        target = path.resolve()
    except (OSError, RuntimeError):
        return f"{what} is a broken or looping symlink (not followed)"
    if not _inside(target, root):
        return f"{what} is a symlink pointing outside the tracker root (not followed)"
    return f"{what} is a symlink (not followed; issues must be regular files in state folders)"


def _read_capped(name: str, dir_fd: int, limit: int) -> tuple[bytes, float]:
    """Read a regular file opened relative to `dir_fd` without following a symlink.

    Returns the bytes and the mtime. O_NONBLOCK keeps a FIFO from hanging the open.
    """
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TrackerError("local_issue_malformed", "not a regular file")
        if info.st_size > limit:
            raise TrackerError("local_issue_malformed", f"larger than {limit} bytes (skipped)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise TrackerError("local_issue_malformed", f"larger than {limit} bytes (skipped)")
        return b"".join(chunks), info.st_mtime
    finally:
        os.close(fd)


def _decode(data: bytes) -> str:
    if b"\0" in data:
        raise ValueError("binary content (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None


def scan(root: Path | str) -> ScanResult:
    """Read every issue under `root`. Never raises for bad content; see the module docstring."""
    given = Path(root).expanduser()
    result = ScanResult(given)
    try:
        real_root = given.resolve(strict=True)
    except (OSError, RuntimeError):
        result.problems.append(Problem(given, "tracker root does not exist"))
        return result
    result.root = real_root
    try:
        root_fd = os.open(real_root, _DIR_FLAGS)
    except OSError as exc:
        result.problems.append(Problem(real_root, f"tracker root is not a readable folder: "
                                                  f"{exc.strerror}"))
        return result
    try:
        with os.scandir(root_fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = real_root / entry.name
            if entry.is_symlink():
                if path.is_dir():
                    result.problems.append(
                        Problem(path, _symlink_problem(path, real_root, "state folder"))
                    )
                continue
            if entry.is_dir(follow_symlinks=False):
                _scan_state(result, root_fd, entry.name, path)
    finally:
        os.close(root_fd)
    _resolve(result)
    return result


def _scan_state(result: ScanResult, root_fd: int, state: str, folder: Path) -> None:
    try:
        state_fd = os.open(state, _DIR_FLAGS, dir_fd=root_fd)
    except OSError as exc:
        result.problems.append(Problem(folder, f"state folder unreadable: {exc.strerror}"))
        return
    try:
        with os.scandir(state_fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if not entry.name.endswith(".md"):
                continue
            path = folder / entry.name
            ref = entry.name[: -len(".md")]
            if entry.name.startswith("."):
                result.problems.append(Problem(path, "hidden file (skipped)", WARNING, ref))
                continue
            if entry.is_symlink():
                result.problems.append(
                    Problem(path, _symlink_problem(path, result.root, "issue file"), ERROR, ref)
                )
                continue
            try:
                data, mtime = _read_capped(entry.name, state_fd, MAX_ISSUE_BYTES)
                text = _decode(data)
            except TrackerError as exc:
                result.problems.append(Problem(path, exc.message, ERROR, ref))
                continue
            except ValueError as exc:
                result.problems.append(Problem(path, f"{exc} (skipped)", ERROR, ref))
                continue
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if exc.errno == errno.ELOOP:
                    reason = "is a symlink (not followed)"
                result.problems.append(Problem(path, f"unreadable: {reason}", ERROR, ref))
                continue
            issue, problems = parse_issue(text, path=path, state=state, mtime=mtime)
            result.problems.extend(problems)
            if issue is not None:
                result.issues.append(issue)
    finally:
        os.close(state_fd)


def _resolve(result: ScanResult) -> None:
    """Duplicate warnings, then blockers resolved against every issue in every state."""
    first: dict[str, Issue] = {}
    for issue in result.issues:
        for key in dict.fromkeys((issue.id, issue.identifier)):
            other = first.setdefault(key, issue)
            if other is not issue:
                result.problems.append(Problem(
                    issue.path, f"duplicate id {key!r} (also {other.path})", WARNING,
                    issue.basename,
                ))
    index = result.by_id()
    resolved: list[Issue] = []
    for issue in result.issues:
        if issue.blocked_by:
            blockers = []
            for blocker in issue.blocked_by:
                target = index.get(blocker.ref)
                blockers.append(
                    Blocker(blocker.ref, target.id, target.identifier, target.state)
                    if target else blocker
                )
            issue = replace(issue, blocked_by=tuple(blockers))
        resolved.append(issue)
    result.issues = resolved


# --------------------------------------------------------------------------------------------
# Rules that need the tracker


def open_blockers(
    issue: Issue, issues_by_id: Mapping[str, Issue], terminal_states: Iterable[str]
) -> list[Blocker]:
    """The blockers that are unresolved or not in a terminal state, looked up afresh."""
    terminal = {norm_state(s) for s in terminal_states}
    still: list[Blocker] = []
    for blocker in issue.blocked_by:
        target = issues_by_id.get(blocker.ref)
        if target is None:
            still.append(Blocker(blocker.ref, None, blocker.ref, None))
        elif target.norm_state not in terminal:
            still.append(Blocker(blocker.ref, target.id, target.identifier, target.state))
    return still


def is_blocked(
    issue: Issue, issues_by_id: Mapping[str, Issue], terminal_states: Iterable[str]
) -> bool:
    """smol's Todo rule: a `Todo` issue with any unresolved or non-terminal blocker waits."""
    return issue.norm_state == TODO_STATE and bool(
        open_blockers(issue, issues_by_id, terminal_states)
    )


# --------------------------------------------------------------------------------------------
# Writing: moves and new issues


def _state_folder(root: Path, state: str, code: str = "local_issue_move_error") -> Path:
    """The existing folder for `state` (case-insensitive), else `root/state` (not created)."""
    if not is_safe_name(state):
        raise TrackerError(code, f"invalid state name {state!r}")
    key = norm_state(state)
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if norm_state(entry.name) == key and not entry.name.startswith("."):
                if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                    raise TrackerError(code, f"state folder {entry.name!r} is not a real folder")
                return root / entry.name
    return root / state


def _existing_root(root: Path | str) -> Path:
    try:
        real = Path(root).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise TrackerError(
            "local_issue_move_error", f"tracker root {root} does not exist"
        ) from None
    if not real.is_dir():
        raise TrackerError("local_issue_move_error", f"tracker root {root} is not a folder")
    return real


def move_issue(root: Path | str, identifier: str, from_state: str | None, to_state: str) -> Path:
    """Move an issue file into `to_state` (smol's `moveIssueToState`); returns the new path.

    Matches the issue by id or identifier across every state. Several matches are narrowed to
    the one in `from_state`; still several (or none of them there) is `local_issue_ambiguous`.
    Already in `to_state`: nothing happens. Otherwise the state folder is created if needed (an
    existing folder spelled differently is reused), an existing file of the same name there is
    never overwritten (`local_issue_target_exists`) and the move is one atomic os.rename.
    """
    real = _existing_root(root)
    matches = [i for i in scan(real).issues if identifier in (i.id, i.identifier)]
    if not matches:
        raise TrackerError("local_issue_not_found", f"no issue {identifier!r} under {real}")
    if len(matches) > 1:
        narrowed = [i for i in matches if from_state and i.norm_state == norm_state(from_state)]
        if len(narrowed) != 1:
            where = ", ".join(str(i.path) for i in matches)
            raise TrackerError("local_issue_ambiguous", f"{identifier!r} matches {where}")
        matches = narrowed
    issue = matches[0]
    if issue.norm_state == norm_state(to_state):
        return issue.path
    folder = _state_folder(real, to_state)
    target = folder / issue.path.name
    try:
        folder.mkdir(exist_ok=True)
        if os.path.lexists(target):
            raise TrackerError("local_issue_target_exists", f"{target} already exists")
        os.rename(issue.path, target)
    except TrackerError:
        raise
    except OSError as exc:
        raise TrackerError(
            "local_issue_move_error", f"moving {issue.path} to {target}: {exc.strerror or exc}"
        ) from None
    return target


def sanitize_identifier(text: str) -> str:
    """smol's creation rule: every character outside `[A-Za-z0-9._-]` becomes `_`."""
    return _UNSAFE_ID_CHARS.sub("_", text.strip())


def next_identifier(result: ScanResult, prefix: str | None = None) -> str:
    """`<PREFIX>-<N>`: N one past the highest number used with that prefix, in any state.

    Without a prefix, the one most issues already use (ties: alphabetical), else `ISSUE`.
    """
    numbers: dict[str, int] = {}
    counts: Counter[str] = Counter()
    names = [name for issue in result.issues for name in (issue.id, issue.identifier)]
    names += [p.ref for p in result.problems if p.ref]
    for name in names:
        match = _AUTO_ID.fullmatch(name)
        if match:
            numbers[match[1]] = max(numbers.get(match[1], 0), int(match[2]))
            counts[match[1]] += 1
    if prefix is None:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        prefix = ranked[0][0] if ranked else "ISSUE"
    return f"{prefix}-{numbers.get(prefix, 0) + 1}"


def render_issue(
    identifier: str,
    title: str,
    body: str = "",
    *,
    priority: int | None = None,
    labels: Iterable[str] = (),
    blocked_by: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> str:
    """The text of a new issue file, with smol's front matter fields and order."""
    stamp = format_timestamp(now or dt.datetime.now(dt.UTC))
    meta: dict[str, Any] = {
        "id": identifier,
        "identifier": identifier,
        "title": title,
        "created_at": stamp,
        "updated_at": stamp,
    }
    if priority is not None:
        meta["priority"] = priority
    if labels := list(labels):
        meta["labels"] = labels
    if blocked := list(blocked_by):
        meta["blocked_by"] = blocked
    front = yaml.safe_dump(
        meta, sort_keys=False, allow_unicode=True, default_flow_style=None, width=1_000_000
    )
    body = body.strip()
    return f"---\n{front}---\n{body}\n" if body else f"---\n{front}---\n"


def create_issue(
    root: Path | str,
    state: str,
    title: str,
    body: str = "",
    priority: int | None = None,
    labels: Iterable[str] = (),
    *,
    identifier: str | None = None,
    prefix: str | None = None,
    blocked_by: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> Issue:
    """Write `<root>/<state>/<ID>.md` and return it parsed. Never overwrites anything.

    Without `identifier`, a fresh `next_identifier` (retried past names taken meanwhile). With
    one, it is sanitised like smol does and must not exist in any state
    (`local_issue_target_exists`). The file is written to a hidden temporary name and
    hard-linked into place, which fails instead of replacing an existing file.
    """
    real = _existing_root(root)
    title = title.strip()
    if not title or "\n" in title or "\r" in title:
        raise TrackerError("local_issue_invalid", "title must be one non-empty line")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise TrackerError("local_issue_invalid", "priority must be an integer")
    if prefix is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", prefix):
        raise TrackerError("local_issue_invalid", f"invalid id prefix {prefix!r}")
    labels = [str(label) for label in labels]
    blocked = [str(ref) for ref in blocked_by]
    folder = _state_folder(real, state, "local_issue_invalid")
    folder.mkdir(exist_ok=True)
    current = scan(real)
    taken = {n for i in current.issues for n in (i.id, i.identifier, i.basename)}
    taken |= {p.ref for p in current.problems if p.ref}
    if identifier is not None:
        wanted = sanitize_identifier(identifier)
        if not is_safe_name(wanted):
            raise TrackerError("local_issue_invalid", f"invalid identifier {identifier!r}")
        if wanted in taken:
            raise TrackerError("local_issue_target_exists", f"issue {wanted!r} already exists")
        candidates: Iterable[str] = [wanted]
    else:
        first = next_identifier(current, prefix)
        stem, _, number = first.rpartition("-")
        candidates = (f"{stem}-{int(number) + step}" for step in range(1000))

    for candidate in candidates:
        if candidate in taken:
            continue
        text = render_issue(candidate, title, body, priority=priority, labels=labels,
                            blocked_by=blocked, now=now)
        target = folder / f"{candidate}.md"
        if _link_new(folder, target, text.encode("utf-8")):
            info = target.stat()
            issue, _ = parse_issue(text, path=target, state=folder.name, mtime=info.st_mtime)
            assert issue is not None
            return issue
        if identifier is not None:
            raise TrackerError("local_issue_target_exists", f"{target} already exists")
    raise TrackerError("local_issue_target_exists", "no free identifier found")


def _link_new(folder: Path, target: Path, data: bytes) -> bool:
    """Write `data` to a temporary file in `folder` and link it to `target`. False if taken."""
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".new-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
