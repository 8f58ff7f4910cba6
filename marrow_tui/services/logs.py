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

from ..rotating import RotatingFile

#: rotate when the current file would grow past this
MAX_BYTES = 1024 * 1024
#: old files kept: <name>.log.1 (newest) .. <name>.log.<BACKUPS>
BACKUPS = 3
#: bytes read from the pipe at a time
CHUNK = 64 * 1024


class RotatingLog(RotatingFile):
    """An append-only byte log that rotates by size. Safe to write from several threads."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        super().__init__(path, max_bytes, backups)
        #: bytes accepted since this object was made (written or dropped on a write error)
        self.written = 0
        self._lock = threading.Lock()
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
                    self._failed(exc)
                    return

    def note(self, text: str) -> None:
        """One line of our own (started, exited, ...), in the same stream as the output."""
        line = text.rstrip("\n").encode("utf-8", errors="replace") + b"\n"
        self.write(line if self._line_start else b"\n" + line)

    def close(self) -> None:
        with self._lock:
            self._close_fd()


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
