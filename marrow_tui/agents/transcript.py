"""A session's transcript: every `session/update`, one JSON object a line with the time it was
received, in a file capped in bytes. When the next line would not fit, the file becomes
`<name>.1` (`.1` becomes `.2`, …; the oldest beyond `backups` goes). A line is never split
across files, so each file reads on its own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..rotating import RotatingFile

#: rotate before the current file would grow past this
MAX_BYTES = 8 * 1024 * 1024
#: old files kept
BACKUPS = 2


class Transcript(RotatingFile):
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(path, max(256, int(max_bytes)), backups)
        self.clock = clock

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
            self._failed(exc)

    @staticmethod
    def _line(record: Mapping[str, Any]) -> bytes:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
