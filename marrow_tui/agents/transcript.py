"""A session's transcript: every `session/update`, one JSON object a line with the time it was
received, in a file capped in bytes. When the next line would not fit, the file becomes
`<name>.1` (`.1` becomes `.2`, …; the oldest beyond `backups` goes). A line is never split
across files, so each file reads on its own.

services/logs.py's RotatingLog rotates byte streams and splits a chunk where the cap falls; a
transcript needs whole lines, and this layer may not import services/.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: rotate before the current file would grow past this
MAX_BYTES = 8 * 1024 * 1024
#: old files kept
BACKUPS = 2


class Transcript:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_bytes = max(256, int(max_bytes))
        self.backups = max(0, int(backups))
        self.clock = clock
        #: the last write error ("" when all went well); a full disk never stops a turn
        self.error = ""
        self._fd: int | None = None
        self._size = 0

    def write(self, update: Mapping[str, Any]) -> None:
        line = self._line({"at": self.clock(), "update": update})
        if len(line) > self.max_bytes:  # kept whole it would break the cap: say what it was
            line = self._line({"at": self.clock(), "dropped": len(line), "update": {
                "sessionUpdate": update.get("sessionUpdate"),
                **({"toolCallId": update["toolCallId"]} if "toolCallId" in update else {})}})
        try:
            fd = self._open()
            if self._size + len(line) > self.max_bytes and self._size:
                self._rotate()
                fd = self._open()
            os.write(fd, line)
            self._size += len(line)
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            self.close()

    def files(self) -> list[Path]:
        """The transcript and its rotated copies that exist, newest first."""
        found = [self.path] + [self._backup(i) for i in range(1, self.backups + 1)]
        return [p for p in found if p.exists()]

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @staticmethod
    def _line(record: Mapping[str, Any]) -> bytes:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.path, 0)
            return
        for index in range(self.backups, 0, -1):
            source = self.path if index == 1 else self._backup(index - 1)
            with contextlib.suppress(FileNotFoundError):
                os.replace(source, self._backup(index))
