"""The runtime's files a console's views read: where they are, or copied from a runtime elsewhere.

The console's views of a run's output, an ACP run's transcript and a service's log read a file
and follow it as it grows, and take a replaced file for a rotation (ui/screens/log.py,
ui/transcript/reader.py). A console that embeds the runtime reads the runtime's files where
they are (`LocalFiles`). A console attached to a runtime on another machine cannot, so
`RemoteFiles` keeps a local copy of each file a view has open, in a cache folder, and keeps it
following over the wire (`file_read`, docs/protocol.md §6.9); the same readers read the copy:

- on opening, the last `TAIL_BYTES` of the runtime's file, from the start of a line; when that
  is the whole file, its newest rotated files too (`<name>.1`, …) up to `EARLIER_BYTES`, so the
  view can scroll back into them;
- then, every `POLL_EVERY` seconds, what was appended;
- when the runtime's file was replaced (a rotation: another identity) or cut (smaller than what
  was copied, or other bytes where the copy ends), or grew by more than `TAIL_BYTES` since the
  last look, the copy starts afresh: a
  new file put in its place, which the readers see as the rotation it is;
- a look that fails (the connection dropped while the mirror reconnects, the file is not there
  yet) is tried again at the next one.

A view says when it opens a file and when it is done with it (`open`/`local_path`, `close`):
a copy is followed only while a view has it open, and removed after.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..hub.client import Frame, HubError, Refused
from ..hub.defaults import MAX_FILE_READ
from .mirror import MirroredRuntime

log = logging.getLogger("marrow.attach.files")

#: how much of the runtime's live file a copy starts with
TAIL_BYTES = 4 * 1024 * 1024
#: how much of its rotated files a copy takes besides, when the live file is copied whole
EARLIER_BYTES = 4 * 1024 * 1024
#: the rotated files a copy looks for (`<name>.1` … ); the runtime keeps two or three
EARLIER_PARTS = 9
POLL_EVERY = 0.25
#: the last bytes copied, read again at each look: the same size and identity with other bytes
#: there means the file was cut and written again since the last look
OVERLAP = 64
#: how long `local_path` waits for the first copy before it hands the path over anyway (the
#: readers take a file that appears later)
FIRST_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class RuntimeFile:
    """A file of the runtime's that a view reads: a run's `stdout`, `stderr` or `transcript`
    (`run`: its session id), or a service's `log` (`service`: its name); `path` is where the
    runtime keeps it (what the runtime's state records)."""

    path: str
    run: str = ""
    service: str = ""
    stream: str = "log"

    @property
    def key(self) -> tuple[str, str, str]:
        return self.run, self.service, self.stream


class Files(Protocol):
    """Where a view reads the runtime's files."""

    def open(self, file: RuntimeFile) -> Path:
        """The path to read `file` at, from now until `close`; it may appear a moment later."""
        ...

    async def local_path(self, file: RuntimeFile) -> Path:
        """`open`, once the file is there to read (or it is clear it is not there yet)."""
        ...

    def close(self, file: RuntimeFile) -> None:
        """The view is done with `file` (one `close` for each `open`)."""
        ...

    def problem(self, file: RuntimeFile) -> str:
        """Why `file` could not be read lately ("" when it could, or is not there yet)."""
        ...


class LocalFiles:
    """The files of the runtime this console embeds: read where they are."""

    def open(self, file: RuntimeFile) -> Path:
        return Path(file.path)

    async def local_path(self, file: RuntimeFile) -> Path:
        return Path(file.path)

    def close(self, file: RuntimeFile) -> None:
        pass

    def problem(self, file: RuntimeFile) -> str:
        return ""  # the view itself sees what the file system says


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/marrow-tui/attach` (`~/.cache/…` when it is not set)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "marrow-tui" / "attach"


def safe_name(text: str) -> str:
    """`text` as one file name: letters, digits, `-`, `_` and `.`, no leading dot."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text)
    return safe.lstrip(".")[:100] or "_"


class RemoteFiles:
    """Local copies of the files of a runtime that `mirror` follows, kept in `folder`
    (default: `cache_home()`) under `<hub id>/<pid>/`: two consoles never share a copy."""

    def __init__(self, mirror: MirroredRuntime, folder: Path | None = None, *,
                 poll_every: float = POLL_EVERY, tail_bytes: int = TAIL_BYTES,
                 earlier_bytes: int = EARLIER_BYTES, first_wait: float = FIRST_WAIT) -> None:
        self.mirror = mirror
        self.base = folder if folder is not None else cache_home()
        self.poll_every = poll_every
        self.tail_bytes = max(1, tail_bytes)
        self.earlier_bytes = max(0, earlier_bytes)
        self.first_wait = first_wait
        self._folder: Path | None = None
        self._copies: dict[tuple[str, str, str], Copy] = {}
        self._serial = itertools.count(1)

    @property
    def folder(self) -> Path:
        """This console's copies (named once the mirror knows the runtime's hub id)."""
        if self._folder is None:
            self._folder = self.base / safe_name(self.mirror.hub_id or "hub") / str(os.getpid())
            # copies left by consoles that ended without cleaning up (killed)
            task = asyncio.get_running_loop().run_in_executor(None, sweep, self._folder)
            task.add_done_callback(_quiet)
        return self._folder

    def copy(self, file: RuntimeFile) -> Copy | None:
        """The copy of `file` kept now, if a view has it open."""
        return self._copies.get(file.key)

    def problem(self, file: RuntimeFile) -> str:
        copy = self._copies.get(file.key)
        return copy.problem if copy is not None else ""

    def open(self, file: RuntimeFile) -> Path:
        copy = self._copies.get(file.key)
        if copy is None:
            kind, name = ("service", file.service) if file.service else ("run", file.run)
            leaf = "log" if file.service else (
                "transcript.jsonl" if file.stream == "transcript" else f"{file.stream}.log")
            where = self.folder / f"{next(self._serial)}-{kind}-{safe_name(name)}" / leaf
            copy = self._copies[file.key] = Copy(self, file, where)
            copy.start()
        copy.users += 1
        return copy.path

    async def local_path(self, file: RuntimeFile) -> Path:
        path = self.open(file)
        copy = self._copies[file.key]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.first_wait):
                await copy.looked.wait()
        return path

    def close(self, file: RuntimeFile) -> None:
        copy = self._copies.get(file.key)
        if copy is None:
            return
        copy.users -= 1
        if copy.users <= 0:
            del self._copies[file.key]
            copy.stop()

    async def aclose(self) -> None:
        """Stop following every copy and remove this console's folder (the console ends)."""
        copies, self._copies = list(self._copies.values()), {}
        for copy in copies:
            copy.stop()
        await asyncio.gather(*(copy.stopped() for copy in copies))
        if self._folder is not None:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)


class Replaced(Exception):
    """The runtime's file changed while a copy was read from it: start afresh."""


class Copy:
    """One runtime file's local copy, following it while a view has it open."""

    def __init__(self, owner: RemoteFiles, file: RuntimeFile, path: Path) -> None:
        self.owner = owner
        self.file = file
        self.path = path
        self.users = 0
        #: the runtime's file the copy is of ("" before the first copy) and how far it reaches
        self.identity = ""
        self.offset = 0
        #: the copy's last bytes (up to `OVERLAP`), to see the file was cut and written again
        self.last = b""
        #: how many times the copy started afresh (the first copy counts)
        self.fresh = 0
        #: why the last look failed ("" when it went well)
        self.problem = ""
        #: the first look is done: the copy is there, or it is clear it is not yet
        self.looked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"marrow-files {self.path}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stopped(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def part(self, number: int) -> Path:
        """The local copy of the runtime's rotated file `number` (named as the readers look)."""
        return self.path.with_name(f"{self.path.name}.{number}")

    async def _follow(self) -> None:
        try:
            while True:
                try:
                    await self.look()
                    self.problem = ""
                except (HubError, Replaced, OSError, ValueError) as exc:
                    # a refusal is the hub's own sentence; anything else, as it says itself
                    problem = exc.text if isinstance(exc, Refused) else str(exc)
                    if problem != self.problem:
                        log.info("copying %s: %s", self.path, problem)
                    self.problem = problem
                self.looked.set()
                await asyncio.sleep(self.owner.poll_every)
        finally:
            # a few small files: removed here, so a copy closed is gone when its task is
            shutil.rmtree(self.path.parent, ignore_errors=True)

    async def look(self) -> None:
        """Take what the runtime's file gained, or copy it afresh."""
        if not self.identity:
            await self.afresh()
            return
        copied = 0
        while copied < self.owner.tail_bytes:
            seen = len(self.last)
            reply = await self._read(0, self.offset - seen, MAX_FILE_READ)
            size = int(reply["size"])
            got = base64.b64decode(reply["data"])
            if (reply["identity"] != self.identity or size < self.offset
                    or size - self.offset > self.owner.tail_bytes or got[:seen] != self.last):
                await self.afresh()
                return
            data = got[seen:]
            if data:
                await asyncio.to_thread(_append, self.path, data)
                self.offset += len(data)
                self.last = got[-OVERLAP:]
                copied += len(data)
            if not data or self.offset >= size:
                return

    async def afresh(self) -> None:
        """Copy the tail of the runtime's live file into a new file in the copy's place (and
        its rotated files, when that tail is the whole file)."""
        head = await self._read(0, 0, 0)
        identity, size = str(head["identity"]), int(head["size"])
        start = max(0, size - self.owner.tail_bytes)
        data = await self._range(0, identity, start, size)
        offset = start + len(data)
        await asyncio.to_thread(_replace, self.path, _from_line(data) if start else data,
                                [self.part(n) for n in range(1, EARLIER_PARTS + 1)])
        self.identity, self.offset, self.last = identity, offset, data[-OVERLAP:]
        self.fresh += 1
        self.looked.set()
        if start == 0:
            await self._earlier()

    async def _earlier(self) -> None:
        """The newest rotated files, as much as `EARLIER_BYTES` holds, with no gap."""
        left = self.owner.earlier_bytes
        for number in range(1, EARLIER_PARTS + 1):
            if left <= 0:
                return
            try:
                head = await self._read(number, 0, 0)
            except Refused:
                return  # no such rotation
            size = int(head["size"])
            start = max(0, size - left)
            data = await self._range(number, str(head["identity"]), start, size)
            data = _from_line(data) if start else data
            await asyncio.to_thread(_replace, self.part(number), data, [])
            left -= len(data)
            if start:
                return  # only part of it: anything older would leave a gap

    async def _range(self, part: int, identity: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` of the runtime's file `part`, while it stays the same file."""
        pieces = []
        at = start
        while at < end:
            reply = await self._read(part, at, min(MAX_FILE_READ, end - at))
            if reply["identity"] != identity:
                raise Replaced(f"{self.file.path} was replaced while it was copied")
            data = base64.b64decode(reply["data"])
            if not data:
                break  # it was cut meanwhile: the next look sees it
            pieces.append(data)
            at += len(data)
        return b"".join(pieces)

    async def _read(self, part: int, offset: int, length: int) -> Frame:
        file = self.file
        fields: dict[str, Any] = {"part": part, "offset": offset, "length": length}
        if file.service:
            fields["service"] = file.service
        else:
            fields.update(run=file.run, stream=file.stream)
        return await self.owner.mirror.request(lambda hub: hub.file_read(**fields))


def _from_line(data: bytes) -> bytes:
    """`data` from its first whole line (it was cut out of the middle of a file)."""
    cut = data.find(b"\n")
    return data[cut + 1:] if cut >= 0 else data


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def _replace(path: Path, data: bytes, stale: list[Path]) -> None:
    """`data` as a new file at `path` (a new identity, as a rotation makes), after the
    `stale` files go (so a reader never pairs the new file with old rotations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def sweep(mine: Path) -> None:
    """Remove the folders beside `mine` of consoles (process ids) that no longer run."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(mine.parent):
            if entry.name.isdigit() and entry.path != str(mine) and not _alive(int(entry.name)):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def _quiet(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("sweeping old copies failed: %s", future.exception())
