"""A home whose login shell sets PATH afresh, as many do: the runs' `bash -lc` reads it."""

from __future__ import annotations

import stat
from pathlib import Path

#: what the other `marrow-tui` on that PATH says before it exits 9
DECOY = "this is another marrow-tui"


def profile_resets_path(home: Path) -> Path:
    """Make `home` a HOME whose login profiles (.bash_profile, .profile) set PATH to a folder
    holding another `marrow-tui`, then /usr/bin:/bin: nothing of the caller's PATH is left.
    Returns that folder."""
    other = home / "other-bin"
    other.mkdir(parents=True)
    decoy = other / "marrow-tui"
    decoy.write_text(f"#!/bin/sh\necho '{DECOY}' >&2\nexit 9\n")
    decoy.chmod(decoy.stat().st_mode | stat.S_IXUSR)
    for profile in (".bash_profile", ".profile"):
        (home / profile).write_text(f'PATH="{other}:/usr/bin:/bin"\nexport PATH\n')
    return other
