"""Real processes that try to outlive their run, and a teardown that ends them if they do.

`escape.py` becomes a `sleep 600` after leaving the run's process group (`setsid`), or moving
to its own group in the same session (`setpgid`, as a shell with job control does), or staying
put, with the run's environment ("kept") or with none at all ("wiped"). It writes its pid to a
file first. The `leftovers` fixture kills, at teardown, every such sleep still running, so a
failing test leaks nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import gone, until

SLEEP = shutil.which("sleep") or "/bin/sleep"

ESCAPE = f"""\
import os, sys
how, pidfile, env = sys.argv[1], sys.argv[2], sys.argv[3]
if how == "setsid":
    os.setsid()
elif how == "setpgid":
    os.setpgid(0, 0)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
os.execve({SLEEP!r}, ["sleep", "600"], dict(os.environ) if env == "kept" else {{}})
"""


def escaper(root: Path) -> Path:
    path = root / "escape.py"
    path.write_text(ESCAPE)
    return path


def escape_line(root: Path, how: str, name: str, env: str) -> str:
    """A shell line that starts one escapee in the background; its pid lands in `name`."""
    return (f"{shlex.quote(sys.executable)} {shlex.quote(str(escaper(root)))} {how} "
            f"{shlex.quote(str(root / name))} {env} </dev/null >/dev/null 2>&1 &\n")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


class Leftovers:
    """Pid files a test's processes write; whatever is still running at teardown is killed."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.pids: list[int] = []

    def watch(self, *files: Path) -> list[Path]:
        self.files += files
        return list(files)

    async def pids_of(self, *files: Path) -> list[int]:
        assert await until(lambda: all(read_pid(f) for f in files), timeout=10)
        return [read_pid(f) or 0 for f in files]

    def kill_all(self) -> None:
        for pid in self.pids + [p for f in self.files if (p := read_pid(f))]:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == b"sleep\x00600\x00" and not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    left = Leftovers()
    yield left
    left.kill_all()


