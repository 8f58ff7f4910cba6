"""A service's output, drained from its pipe into size-rotated log files.

pactown never reads its services' pipes, so a chatty service blocks as soon
as the pipe buffer fills. Here a service's stdout and stderr share one pipe, and a thread per
running service reads it to the end and writes it to `<logs>/<name>.log`:

* the file rotates before a write would take it past `max_bytes`: `<name>.log` becomes
  `<name>.log.1`, `.1` becomes `.2` and so on, the oldest beyond `backups` is dropped. A
  service can never hold more than `(backups + 1) * max_bytes` bytes of disk, however fast it
  writes;
* memory is one read buffer (`CHUNK`) per service;
* the event loop never sees the output: the thread blocks in read(2) and write(2), both of which
  let go of the GIL. A service writing faster than the disk takes it is slowed down by the full
  pipe (back-pressure), never deadlocked, because the thread always reads again;
* a write that fails (disk full) drops that chunk and keeps draining.

Why not hand the child the log file itself and rotate by copy-truncate from a timer (as
logrotate does)? Between two timer ticks a flooding service writes without any limit, so the
disk bound would depend on the flood rate; and copy-truncate loses whatever is written during
the copy. With the pipe, every byte passes through `RotatingLog.write`, which is what makes the
bound exact.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from pathlib import Path

#: rotate when the current file would grow past this
MAX_BYTES = 1024 * 1024
#: old files kept: <name>.log.1 (newest) .. <name>.log.<BACKUPS>
BACKUPS = 3
#: bytes read from the pipe at a time
CHUNK = 64 * 1024


class RotatingLog:
    """An append-only byte log that rotates by size. Safe to write from several threads."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, int(max_bytes))
        self.backups = max(0, int(backups))
        #: bytes accepted since this object was made (written or dropped on a write error)
        self.written = 0
        #: how many times the file was rotated
        self.rotations = 0
        #: the last write error, if any ("" when all went well)
        self.error = ""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._line_start = True

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first whenever it would not fit (a chunk larger than
        `max_bytes` is split, so no file ever exceeds it)."""
        if not data:
            return
        view = memoryview(data)
        with self._lock:
            self.written += len(data)
            self._line_start = data.endswith(b"\n")
            while view:
                try:
                    fd = self._open()
                    room = self.max_bytes - self._size
                    if room <= 0:
                        self._rotate()
                        continue
                    part = view[:room]
                    done = os.write(fd, part)
                    self._size += done
                    view = view[done:]
                except OSError as exc:
                    self.error = f"{self.path}: {exc.strerror or exc}"
                    self._close()
                    return

    def note(self, text: str) -> None:
        """One line of our own (started, exited, ...), in the same stream as the output."""
        line = text.rstrip("\n").encode("utf-8", errors="replace") + b"\n"
        self.write(line if self._line_start else b"\n" + line)

    def close(self) -> None:
        with self._lock:
            self._close()

    def files(self) -> list[Path]:
        """The log and its rotated copies that exist, newest first."""
        found = [self.path] + [self._backup(i) for i in range(1, self.backups + 1)]
        return [p for p in found if p.exists()]

    # ---- internals (called with the lock held) --------------------------------------------

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        self._close()
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.path, 0)
        else:
            for index in range(self.backups, 0, -1):
                source = self.path if index == 1 else self._backup(index - 1)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(source, self._backup(index))
        self.rotations += 1
        self._open()


class Drainer:
    """The thread that drains one pipe into a log: it reads the pipe's read end until end of
    file, or until `stop()` (then it takes what is already there and goes), and closes the
    read end itself, so the fd is never closed under a blocked read."""

    #: milliseconds between looks at the stop flag while the pipe is quiet
    POLL_MS = 200
    #: chunks still read after `stop()` (a writer that never pauses must not keep it)
    LAST_CHUNKS = 16

    def __init__(self, fd: int, log: RotatingLog, name: str) -> None:
        self._fd = fd
        self._log = log
        self._quit = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._quit.set()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        left = self.LAST_CHUNKS
        try:
            while True:
                quitting = self._quit.is_set()
                if quitting:
                    left -= 1
                    if left < 0:
                        break
                try:
                    ready = poller.poll(0 if quitting else self.POLL_MS)
                except InterruptedError:
                    continue
                if not ready:
                    if quitting:
                        break
                    continue
                try:
                    data = os.read(self._fd, CHUNK)
                except InterruptedError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._log.write(data)
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
