"""The project on this machine: find, load and report on its config file; where its state
lives and whether a marrow-tui holds it. `validate` and `scaffold` are here too.

Exit codes: 0 done; 1 a write failed; 2 the config has an error (every problem is printed with
file, line and key).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, PROG, SubParsers
from marrow_tui.core.text import plural

if TYPE_CHECKING:
    from marrow_tui.config.diagnostics import Diagnostic
    from marrow_tui.config.load import Loaded
    from marrow_tui.config.model import Config


def config_path(args: argparse.Namespace, required: bool = False) -> Path | None:
    """`--config`, else $MARROW_CONFIG, else ./marrow.toml when it exists."""
    from marrow_tui.config.model import DEFAULT_CONFIG

    given = getattr(args, "config", None) or os.environ.get("MARROW_CONFIG")
    if given:
        return Path(given).expanduser()
    default = Path(DEFAULT_CONFIG)
    if default.exists() or required:
        return default
    return None


def load_or_report(path: Path, err: Any = None, *, check_commands: bool = True,
                   what: str = "nothing was started") -> Config | None:
    """The config, with its warnings on stderr; None (and every problem printed) if invalid."""
    from marrow_tui.config.load import load_config

    err = err or sys.stderr
    loaded = load_config(path, check_commands=check_commands)
    if not report(loaded, path, err, what, loaded.diagnostics + key_problems(loaded, path)):
        return None
    return loaded.config


def key_problems(loaded: Loaded, path: Path) -> list[Diagnostic]:
    """The `[keys]` table checked against the console's actions, each on its line."""
    from marrow_tui.config.diagnostics import Diagnostic, by_line, dotted
    from marrow_tui.ui.actions import keymap_problems

    config = loaded.config
    if config is None or not config.keys:
        return []
    return by_line([Diagnostic(path, dotted(("keys", action_id)),
                               config.line(("keys", action_id)), message)
                    for action_id, message in keymap_problems(config.keys)])


def report(loaded: Loaded, path: Path, err: Any, what: str,
            diagnostics: list[Diagnostic] | None = None) -> bool:
    """Print the diagnostics and a closing line; False when there is an error.

    A file that cannot be read at all (missing, a folder, unreadable) is one line, not a
    diagnostic plus a count.
    """
    problems = loaded.diagnostics if diagnostics is None else diagnostics
    why = unreadable(loaded, path)
    if why is not None:
        print(f"{PROG}: {why}", file=err)
        return False
    for diagnostic in problems:
        print(diagnostic, file=err)
    errors = sum(d.severity == "error" for d in problems)
    if errors or loaded.config is None:
        warnings = len(problems) - errors
        counted = plural(errors, "error") + (f", {plural(warnings, 'warning')}"
                                             if warnings else "")
        print(f"{PROG}: {path}: {counted}; {what}", file=err)
        return False
    return True


def unreadable(loaded: Loaded, path: Path) -> str | None:
    """One sentence when the config file itself could not be read, else None."""
    if loaded.config is not None or len(loaded.diagnostics) != 1:
        return None
    only = loaded.diagnostics[0]
    if only.key or only.line is not None or only.message.startswith("invalid TOML"):
        return None
    if not path.exists():
        return (f"no config file at {path} (pass --config PATH, set MARROW_CONFIG, or "
                f"create one with `{PROG} scaffold DIR`)")
    return f"cannot use the config {path}: {only.message}"


def config_state_dir(args: argparse.Namespace, config: Config) -> Path:
    """--state-dir, else $MARROW_STATE_DIR, else .marrow beside the config (as the runtime)."""
    given = getattr(args, "state_dir", None) or os.environ.get("MARROW_STATE_DIR")
    return Path(given).expanduser() if given else config.folder / ".marrow"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    # The default's name is written out: the config module is too heavy to load for a --help.
    parser.add_argument("--config", "-c", default=argparse.SUPPRESS, metavar="PATH",
                        help="the scheduler config (default: $MARROW_CONFIG, else "
                             "./marrow.toml)")


def lock_holder(state_dir: Path) -> str | None:
    """The pid of the marrow-tui holding `state_dir`, or None when it is free (or absent)."""
    import errno
    import fcntl

    from marrow_tui.store.eventlog import StateLock

    lock = StateLock(state_dir)
    try:
        fd = os.open(lock.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # closing drops a lock we took
    return None


def register(sub: SubParsers) -> None:
    p = sub.add_parser("validate", help="check the config: a summary, or every problem",
                       description="Check the scheduler config. Prints a summary and exits 0, "
                                   "or names every problem with file, line and key and exits 2.")
    add_config_option(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("scaffold", help="write a starter config and workspace into DIR",
                       description="Write a starter marrow.toml, workspace, rules, context "
                                   "script and agent script into DIR. Existing files are "
                                   "never overwritten.")
    p.add_argument("directory", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_scaffold)


def cmd_validate(args: argparse.Namespace) -> int:
    from marrow_tui.config.load import load_config
    from marrow_tui.config.summary import format_summary

    path = config_path(args, required=True)
    assert path is not None
    loaded = load_config(path)
    if not report(loaded, path, sys.stderr, "the config is not valid",
                  loaded.validate() + key_problems(loaded, path)):
        return EXIT_CONFIG
    assert loaded.config is not None
    print(format_summary(loaded.config))
    return EXIT_OK


def cmd_scaffold(args: argparse.Namespace) -> int:
    from marrow_tui.config.model import DEFAULT_CONFIG
    from marrow_tui.scaffold import KEPT, scaffold

    try:
        written = scaffold(args.directory)
    except OSError as exc:
        why = ("a file is in the way of a folder" if isinstance(exc, FileExistsError)
               else exc.strerror or str(exc))
        print(f"{PROG}: cannot scaffold {args.directory}: {exc.filename or args.directory}: "
              f"{why}", file=sys.stderr)
        return EXIT_FAILED
    for path, what in written:
        print(f"{what:<16} {path}")
    config = shlex.quote(str(args.directory / DEFAULT_CONFIG))
    if all(what == KEPT for _path, what in written):
        print("\nnothing written: every file already exists and was kept")
    print(f"\nnext: {PROG} --config {config} validate, then "
          f"{PROG} --config {config} run-once")
    return EXIT_OK
