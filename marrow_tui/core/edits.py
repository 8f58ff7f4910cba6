"""Which files a coding agent's tool call is about to change, read before it runs. Pure: the
one look at the disk (where a symlink points) is a function the caller passes in.

An ACP tool call names its paths in three places: `locations[].path`, the `path` of its diff
content, and its `rawInput` (each agent has its own keys: `filePath` for opencode,
`file_path` for Claude Code and Gemini CLI, `path`, `paths`, a `changes` table keyed by path
for Codex). A shell command (`execute`) names them in its words: this module reads the few
commands whose writes can be told from their words (`rm`, `mv`, `touch`, `sed -i`, `tee`,
`git mv`, `> file`, ...) and the commands that write nothing (`ls`, `cat`, `grep`, ...);
any other command, or one with shell expansions, cannot be read, and is said to be so
(it is then decided by the permission policy alone: no guess is made).

Every path is then made relative to the worktree's root. A path outside it (absolute, or
reached by `..`, or through a symlink that leads out) is refused with one sentence.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .claims import ClaimBook, Overlap

#: tool kinds whose paths are checked against other agents' leases before they run
CHANGING_KINDS = frozenset({"edit", "delete", "move"})
#: rawInput keys that hold one path, as the agents send them
PATH_KEYS = ("path", "filePath", "file_path", "absolute_path", "filename", "target",
             "destination", "source", "new_path", "old_path", "notebook_path")
#: rawInput keys that hold a list of paths
PATHS_KEYS = ("paths", "files", "file_paths")
#: rawInput keys whose table is keyed by path (Codex's patch: path -> change)
TABLE_KEYS = ("changes",)
#: characters that make a shell change a word before it runs (we do not guess what it becomes)
EXPANDS = frozenset("$`*?[]{}~()!")
#: words that join commands on one line
JOINERS = frozenset({";", "&&", "||", "|", "&", "\n"})
#: redirections that write the file after them
WRITES = frozenset({">", ">>", ">|", "&>", "&>>"})
#: commands that change no file (their redirections still count)
READ_ONLY = frozenset({"ls", "cat", "head", "tail", "grep", "rg", "wc", "echo", "printf",
                       "pwd", "true", "false", "test", "[", "diff", "stat", "file", "which",
                       "less", "more", "tree", "du", "df", "env", "date", "whoami", "uname",
                       "sort", "uniq", "cut", "tr", "nl", "basename", "dirname", "realpath",
                       "readlink", "sleep", "exit"})
#: commands every non-option word of which is a path they change
ALL_ARGS = frozenset({"rm", "rmdir", "touch", "mkdir", "mv", "truncate", "chmod", "unlink",
                      "shred"})
#: git subcommands that change no file in the worktree
GIT_READ_ONLY = frozenset({"status", "diff", "log", "show", "blame", "branch", "rev-parse",
                           "ls-files", "grep"})
#: shells whose `-c` script is read as the command
SHELLS = frozenset({"sh", "bash", "zsh", "dash"})
#: files a redirection may name that are not files of the worktree
DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})


@dataclass(frozen=True, slots=True)
class Touched:
    """What a tool call will change: paths relative to the worktree root (sorted, distinct);
    `unreadable` says why a command's paths could not be read ("" when they could);
    `refused` is the sentence for a path outside the worktree ("" when none is)."""

    paths: tuple[str, ...] = ()
    unreadable: str = ""
    refused: str = ""
    #: the call names the worktree's root itself (`rm -r .`): it touches everything
    whole: bool = False


def checked_kind(kind: str) -> bool:
    """Whether a tool call of this kind has its paths checked (execute: when readable)."""
    return kind in CHANGING_KINDS or kind == "execute"


def named_paths(locations: Iterable[Any], content: Iterable[Any], raw_input: Any) -> list[str]:
    """Every path an edit, delete or move call names, in the order seen (duplicates kept)."""
    found: list[str] = []
    for location in locations:
        if isinstance(location, Mapping) and isinstance(location.get("path"), str):
            found.append(location["path"])
    for item in content:
        if isinstance(item, Mapping) and item.get("type") == "diff" \
                and isinstance(item.get("path"), str):
            found.append(item["path"])
    if isinstance(raw_input, Mapping):
        for key in PATH_KEYS:
            if isinstance(raw_input.get(key), str):
                found.append(raw_input[key])
        for key in PATHS_KEYS:
            value = raw_input.get(key)
            if isinstance(value, list):
                found.extend(v for v in value if isinstance(v, str))
        for key in TABLE_KEYS:
            value = raw_input.get(key)
            if isinstance(value, Mapping):
                found.extend(k for k in value if isinstance(k, str))
    return [p for p in found if p.strip()]


def command_of(raw_input: Any) -> str | list[str] | None:
    """The command an execute call runs, as its agent sent it (a line, or argv)."""
    if not isinstance(raw_input, Mapping):
        return None
    command = raw_input.get("command", raw_input.get("cmd"))
    if isinstance(command, str):
        return command
    if isinstance(command, list) and all(isinstance(word, str) for word in command):
        return list(command)
    return None


def command_paths(command: str | Sequence[str]) -> tuple[list[str], str]:
    """The paths a shell command changes, and "" ; or [] and why they cannot be read."""
    if not isinstance(command, str):
        words = list(command)
        if len(words) == 3 and posixpath.basename(words[0]) in SHELLS \
                and words[1] in ("-c", "-lc"):
            return command_paths(words[2])
        command = shlex.join(words)
    if any(c in EXPANDS for c in command):
        return [], "the command uses shell expansions (variables, globs, substitutions)"
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError as exc:
        return [], f"the command cannot be split into words ({exc})"
    found: list[str] = []
    for simple in _simple_commands(words):
        paths, why = _simple_paths(simple)
        if why:
            return [], why
        found.extend(paths)
    return found, ""


def _simple_commands(words: list[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    for word in words:
        if word in JOINERS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _simple_paths(words: list[str]) -> tuple[list[str], str]:
    """One simple command's changed paths (its redirections' targets too), or why not."""
    argv: list[str] = []
    found: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in WRITES or word in ("<", "<<", ">&", "<&"):
            target = words[i + 1] if i + 1 < len(words) else ""
            if word in WRITES and target and target not in DEVICES:
                found.append(target)
            if argv and argv[-1].isdigit() and word != "<<":  # `2>`: a file descriptor
                argv.pop()
            i += 2
            continue
        argv.append(word)
        i += 1
    while argv and "=" in argv[0] and not argv[0].startswith("="):  # `A=1 cmd`
        argv.pop(0)
    if not argv:
        return found, ""
    name = posixpath.basename(argv[0])
    operands = [w for w in argv[1:] if not w.startswith("-") or w == "-"]
    if name in READ_ONLY:
        return found, ""
    if name in ALL_ARGS:
        return found + operands, ""
    if name == "cp" or name == "ln" or name == "install":
        return (found + operands[-1:], "") if operands else (found, "")
    if name == "tee":
        return found + operands, ""
    if name == "sed":
        return _sed_paths(argv[1:], found)
    if name == "git":
        return _git_paths(argv[1:], found)
    if name == "cd":
        return [], "the command changes directory (`cd`), so its relative paths are unknown"
    return [], f"`{name}` can change any file; its paths cannot be read from the command"


def _sed_paths(args: list[str], found: list[str]) -> tuple[list[str], str]:
    in_place = any(a == "-i" or a.startswith("-i") or a == "--in-place"
                   or a.startswith("--in-place=") for a in args)
    if not in_place:
        return found, ""
    files: list[str] = []
    script_given = False
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("-e", "-f", "--expression", "--file"):
            script_given, skip = True, True
            continue
        if arg.startswith("-"):
            continue
        files.append(arg)
    return found + (files if script_given else files[1:]), ""


def _git_paths(args: list[str], found: list[str]) -> tuple[list[str], str]:
    if not args or args[0].startswith("-"):
        return [], "`git` with options before its subcommand cannot be read"
    sub, rest = args[0], [a for a in args[1:] if not a.startswith("-")]
    if sub in GIT_READ_ONLY:
        return found, ""
    if sub in ("mv", "rm"):
        return found + rest, ""
    return [], f"`git {sub}` can change any file; its paths cannot be read from the command"


def touched(kind: str, locations: Iterable[Any], content: Iterable[Any], raw_input: Any, *,
            cwd: str, root: str, realpath: Callable[[str], str]) -> Touched:
    """The worktree paths a tool call changes. `cwd` is the agent's folder and `root` the
    worktree's (both absolute); `realpath` says where a path leads (os.path.realpath)."""
    why = ""
    if kind == "execute":
        command = command_of(raw_input)
        if command is None:
            return Touched(unreadable="the call names no command")
        raw, why = command_paths(command)
        if why:
            return Touched(unreadable=why)
    else:
        raw = named_paths(locations, content, raw_input)
    return relative_paths(raw, cwd=cwd, root=root, realpath=realpath)


def relative_paths(raw: Iterable[str], *, cwd: str, root: str,
                   realpath: Callable[[str], str]) -> Touched:
    """`raw` paths as sorted, distinct paths relative to `root`; refused at the first that is
    outside it (lexically, or once symlinks are followed)."""
    root = posixpath.normpath(root)
    real_root = realpath(root)
    found: set[str] = set()
    whole = False
    for path in raw:
        text = path.strip()
        joined = posixpath.normpath(posixpath.join(cwd, text))
        if not _inside(joined, root):
            return Touched(refused=f"{text} is outside the worktree {root}")
        if not _inside(realpath(joined), real_root):
            return Touched(refused=f"{text} leads outside the worktree {root} through a "
                                   "symlink")
        relative = posixpath.relpath(joined, root)
        if relative == ".":
            whole = True
        else:
            found.add(relative)
    return Touched(paths=tuple(sorted(found)), whole=whole)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_edit(claims: ClaimBook, owner: str, worktree: str, kind: str, locations: Iterable[Any],
               content: Iterable[Any], raw_input: Any, *, cwd: str, realpath: Callable[[str], str],
               now: float) -> tuple[Touched, list[Overlap]]:
    """The decision before the policy's: what a tool call of `owner`'s run changes in the
    checkout `worktree` (its root), and every other agent's live lease in its way."""
    found = touched(kind, locations, content, raw_input, cwd=cwd, root=worktree,
                    realpath=realpath)
    if found.refused or found.unreadable or not (found.paths or found.whole):
        return found, []
    return found, claims.overlaps(owner, worktree, found.paths, now, whole=found.whole)
