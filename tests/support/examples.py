"""A pristine copy of an example, for tests that read one: someone may have run the example in
place (a run moves its issue files and writes workspaces and state beside it), and what a test
reads must be the example as the repository holds it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.hubproc import REPO

#: what a run of an example leaves beside it (each example's .gitignore names them)
RUN_LEFTOVERS = (".symphony", ".marrow")


def pristine_example(name: str, into: Path, repo: Path = REPO) -> Path:
    """Copy examples/<name> into `into` and return the copy: its tracked files (as they are
    in the working tree, edits and all; one a run moved away comes back from git's index),
    and nothing else. Outside a git checkout, the folder less what runs leave beside it."""
    source = repo / "examples" / name
    target = into / name
    listed = subprocess.run(["git", "ls-files", "-z", "--stage", "--", str(source)], cwd=repo,
                            capture_output=True, check=False)
    if listed.returncode != 0 or not listed.stdout:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*RUN_LEFTOVERS))
        return target
    for entry in listed.stdout.decode().split("\0"):
        if not entry:
            continue
        info, path = entry.split("\t", 1)
        mode, blob, _stage = info.split()
        copy = target / Path(path).relative_to(Path("examples") / name)
        copy.parent.mkdir(parents=True, exist_ok=True)
        working = repo / path
        if working.is_file():
            shutil.copy2(working, copy)
        else:
            copy.write_bytes(subprocess.run(["git", "cat-file", "blob", blob], cwd=repo,
                                            capture_output=True, check=True).stdout)
            copy.chmod(int(mode[-3:], 8))
    return target
