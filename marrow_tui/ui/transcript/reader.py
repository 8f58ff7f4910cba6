"""A transcript file read lazily: from its end backwards in chunks, and forwards as it grows.

A transcript (agents/transcript.py) is JSONL, one `{"at", "update"}` a line, rotated into
`<name>.1`, `<name>.2` (older first further back). A long session's transcript holds
100,000 updates and more: the view opens on the last chunk only, reads further back when the
operator scrolls there, and reads only what was appended while it follows the live file. Only
the lines read are parsed. When the file is replaced (a rotation) or shrinks, `poll` says so
and the caller reloads from the new file's end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: bytes read per step backwards (grows while one line does not fit)
CHUNK_BYTES = 128 * 1024
#: the most read per poll while following (a burst beyond it is read on the next polls)
STEP_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    """One transcript line: when it came and the update as sent; or why it cannot be read."""

    at: float
    update: dict[str, Any]
    #: a sentence saying what is wrong with the line ("" when it read well)
    problem: str = ""
    #: the line was too big to keep: its size in bytes (the update then only names its kind)
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Poll:
    """What a look at the live file found."""

    records: list[Record]
    #: the file was replaced or cut: what was read before no longer matches it
    reset: bool = False


def parse(line: bytes, where: str) -> Record:
    """A transcript line as a record; a line that does not read says so, and where."""
    try:
        data = json.loads(line)
    except ValueError:
        return Record(0.0, {}, f"{where} is not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("update"), dict):
        return Record(0.0, {}, f"{where} has no update object")
    at = data.get("at")
    dropped = data.get("dropped")
    return Record(float(at) if isinstance(at, int | float) else 0.0, data["update"],
                  dropped=dropped if isinstance(dropped, int) else 0)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class TranscriptReader:
    """The lines of one transcript, its rotated files included, read on demand.

    Files are numbered as on disk: 0 is the live file, 1 is `<name>.1`, and so on. What has
    been read is one stretch: from `(first_file, first_offset)` to the live file's `end`.
    """

    def __init__(self, path: Path, chunk_bytes: int = CHUNK_BYTES,
                 step_bytes: int = STEP_BYTES) -> None:
        self.path = path
        self.chunk_bytes = max(1, chunk_bytes)
        self.step_bytes = max(1, step_bytes)
        self.first_file = 0
        self.first_offset = 0
        self.end = 0
        self._identity: tuple[int, int] | None = None
        self._partial = b""

    def file(self, number: int) -> Path:
        return self.path if number == 0 else self.path.with_name(f"{self.path.name}.{number}")

    @property
    def at_start(self) -> bool:
        """Nothing earlier is left to read."""
        return self.first_offset == 0 and not self.file(self.first_file + 1).exists()

    def open_tail(self) -> list[Record]:
        """Start again at the live file's end: read its last chunk (whole lines only)."""
        self._identity = _identity(self.path)
        self._partial = b""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        self.first_file, self.first_offset, self.end = 0, size, size
        # the last line may still be being written: only complete lines count
        records = self._read_back(0, size, complete_end=False)
        return records

    def earlier(self) -> list[Record]:
        """The chunk before what was read (crossing into the rotated files); [] at the start."""
        number, offset = self.first_file, self.first_offset
        while offset == 0:
            older = self.file(number + 1)
            try:
                offset = os.path.getsize(older)
            except OSError:
                return []
            number += 1
            self.first_file, self.first_offset = number, offset
        return self._read_back(number, offset, complete_end=True)

    def _read_back(self, number: int, offset: int, *, complete_end: bool) -> list[Record]:
        """Whole lines ending at or before `offset` of file `number`, a chunk of them."""
        path = self.file(number)
        chunk = self.chunk_bytes
        partial = b""
        try:
            with open(path, "rb") as handle:
                while True:
                    start = max(0, offset - chunk)
                    handle.seek(start)
                    data = handle.read(offset - start)
                    if not complete_end:  # the live file's last line may be half written
                        cut = data.rfind(b"\n") + 1
                        partial, data = data[cut:], data[:cut]
                    first = 0 if start == 0 else data.find(b"\n") + 1
                    if start == 0 or 0 < first < len(data):
                        break
                    chunk *= 2  # no whole line in the chunk: read further back
        except OSError:
            return []
        if not complete_end:
            self._partial = partial
            self.end = offset - len(partial)
        self.first_file, self.first_offset = number, start + first
        return self._records(data[first:], path, start + first)

    def _records(self, data: bytes, path: Path, offset: int) -> list[Record]:
        records = []
        for line in data.split(b"\n"):
            if line.strip():
                records.append(parse(line, f"the line at byte {offset} of {path}"))
            offset += len(line) + 1
        return records

    def poll(self) -> Poll:
        """What was appended to the live file since the last look (whole lines only)."""
        identity = _identity(self.path)
        if identity is None:
            return Poll([], reset=self._identity is not None)
        if identity != self._identity:
            return Poll([], reset=True)
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.end:
                    return Poll([], reset=True)
                if size == self.end:
                    return Poll([])
                handle.seek(self.end + len(self._partial))
                data = handle.read(min(size - self.end - len(self._partial), self.step_bytes))
        except OSError:
            return Poll([])
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        start = self.end
        self._partial = data[cut:]
        self.end += cut
        return Poll(self._records(data[:cut], self.path, start))
