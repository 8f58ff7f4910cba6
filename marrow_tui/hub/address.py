"""Where a running runtime's hub listens, kept in its state folder for consoles to find.

A runtime writes `<state folder>/hub.json` once its hub listens, and removes it when it stops.
`marrow-tui attach` and `marrow-tui` itself read it: a state folder whose runtime runs is
attached to, never opened a second time. A file left by a runtime that was killed names a
process that is gone, and is taken for what it is: nobody there.

A leaf (the standard library only): the command line reads it without loading the client.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ADDRESS_FILE = "hub.json"
#: what a wildcard bind is reached through from this machine
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


@dataclass(frozen=True, slots=True)
class Address:
    uri: str
    pid: int
    version: str


def write_address(state_dir: Path, uri: str, version: str) -> None:
    """Say where this process's hub listens (replacing what an earlier run left)."""
    for wildcard, local in _WILDCARDS.items():
        uri = uri.replace(f"//{wildcard}:", f"//{local}:")
    path = state_dir / ADDRESS_FILE
    partial = path.with_name(f".{ADDRESS_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({"uri": uri, "pid": os.getpid(), "version": version}) + "\n",
                       encoding="utf-8")
    os.replace(partial, path)


def clear_address(state_dir: Path) -> None:
    """Remove the address file if it is this process's (never another runtime's)."""
    path = state_dir / ADDRESS_FILE
    found = read_address(state_dir)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_address(state_dir: Path) -> Address | None:
    """The address file as written, or None when there is none or it does not read."""
    try:
        data = json.loads((state_dir / ADDRESS_FILE).read_text(encoding="utf-8"))
        return Address(str(data["uri"]), int(data["pid"]), str(data.get("version", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_address(state_dir: Path) -> Address | None:
    """Where the runtime of `state_dir` listens, if one runs there now."""
    found = read_address(state_dir)
    if found is None or found.pid == os.getpid() or not _alive(found.pid):
        return None
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return True
