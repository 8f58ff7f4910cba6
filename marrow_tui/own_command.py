"""The `marrow-tui` that runs this process, for the runs it starts to call.

A run's scripts call `marrow-tui ask`, `done`, `claim`. Which program answers must not depend
on the shell in between: an issue's `agent.command` runs under `bash -lc`, and a login shell
sets PATH afresh from the profile files, which drops a virtualenv's folder (every call then
exits 127) or finds another marrow-tui first. So the state folder holds `bin/marrow-tui`, a
script that starts this very interpreter on this very package; every run gets that folder
first on its PATH and the script's path as `$MARROW_TUI`, and a shell marrow-tui starts puts
the folder first again once its profile has run.
"""

from __future__ import annotations

import logging
import os
import shlex
import site
import sys
from pathlib import Path

log = logging.getLogger("marrow.runs")

#: the folder, inside the state folder, that holds the script
FOLDER = "bin"
NAME = "marrow-tui"


def package_root() -> Path:
    """The folder this package is imported from (a checkout, or site-packages)."""
    return Path(__file__).resolve().parent.parent


def script_text(python: str, root: Path) -> str:
    """The script: this Python on this package. `-P` keeps the run's working folder off the
    module path (a workspace holding a marrow_tui of its own must not be what starts)."""
    lines = ["#!/bin/sh",
             "# The marrow-tui that started this run (written by it at each start; the runs it",
             "# starts have this folder first on PATH and this file as $MARROW_TUI).",
             ]
    site_dirs = {Path(p).resolve() for p in (*site.getsitepackages(),
                                              site.getusersitepackages())}
    if root not in site_dirs:
        lines += [f'PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:"$PYTHONPATH"}}',
                  "export PYTHONPATH"]
    lines.append(f'exec {shlex.quote(python)} -P -m marrow_tui "$@"')
    return "\n".join(lines) + "\n"


def write_own_command(state_dir: Path) -> Path | None:
    """Write `<state_dir>/bin/marrow-tui` (when it differs) and return its path; None, said in
    the log, when the folder cannot be written (the runs then find a marrow-tui on their
    PATH, if any)."""
    folder = state_dir.resolve() / FOLDER
    script = folder / NAME
    text = script_text(sys.executable, package_root())
    try:
        if script.is_file() and script.read_text(encoding="utf-8") == text \
                and os.access(script, os.X_OK):
            return script
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{NAME}.{os.getpid()}"
        partial.write_text(text, encoding="utf-8")
        partial.chmod(0o755)
        os.replace(partial, script)
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot write %s for the runs to call: %s", script, exc)
        return None
    return script


def run_environment(script: Path, path: str) -> dict[str, str]:
    """`$MARROW_TUI` and a PATH with the script's folder first (once), for a run whose PATH
    would otherwise be `path`. A folder with `:` in its name cannot be a PATH entry: then only
    `$MARROW_TUI` says where it is."""
    folder = str(script.parent)
    env = {"MARROW_TUI": str(script)}
    if os.pathsep not in folder:
        rest = [p for p in path.split(os.pathsep) if p and p != folder]
        env["PATH"] = os.pathsep.join([folder, *rest])
    return env


def after_profile(command: str, script: Path | None) -> str:
    """`command` as a login shell's line that first puts `script`'s folder back in front of
    PATH, whatever the profile files did to it (no script: `command` as it is)."""
    folder = str(script.parent) if script is not None else ""
    if not folder or os.pathsep in folder:
        return command
    return f'export PATH={shlex.quote(folder)}:"$PATH"; {command}'
