"""A file appended to and capped in bytes: when the next write would not fit, `<name>` becomes
`<name>.1` (`.1` becomes `.2`, …; the oldest beyond `backups` goes). A service's log and an
agent's transcript are both one; they differ only in how they cut what they write."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class RotatingFile:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, int(max_bytes))
        self.backups = max(0, int(backups))
        #: how many times the file was rotated
        self.rotations = 0
        #: the last write error ("" when all went well): a full disk never stops a writer
        self.error = ""
        self._fd: int | None = None
        self._size = 0

    def files(self) -> list[Path]:
        """The file and its rotated copies that exist, newest first."""
        found = [self.path] + [self._backup(i) for i in range(1, self.backups + 1)]
        return [p for p in found if p.exists()]

    def close(self) -> None:
        self._close_fd()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _failed(self, exc: OSError) -> None:
        self.error = f"{self.path}: {exc.strerror or exc}"
        self._close_fd()

    def _rotate(self) -> None:
        """Start a new, empty file (the next `_open` opens it)."""
        self._close_fd()
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.path, 0)
        else:
            for index in range(self.backups, 0, -1):
                source = self.path if index == 1 else self._backup(index - 1)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(source, self._backup(index))
        self.rotations += 1
