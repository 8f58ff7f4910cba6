"""Reading a file a user named: marrow.toml, the rules, a role file, WORKFLOW.md.

Such a path can name anything. Opening a FIFO for reading waits for a writer (forever, and on
the event loop that froze the whole hub); /dev/zero never ends; a huge file fills the memory.
`read_bytes` reads regular files only (a symlink is followed to one), never waits on open,
and reads at most `cap` bytes; anything else is a `RefusedFile` whose `reason` completes a
sentence: "the role file /x/role.md" + " is a named pipe (FIFO), not a regular file".

Callers on the event loop run these through `asyncio.to_thread`: a regular file on a slow
disk is still a blocking read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MIB = 1024 * 1024

#: the largest rules or role file that goes into a prompt
PROMPT_FILE_CAP = MIB
#: the largest marrow.toml (a real one is a few KiB)
CONFIG_FILE_CAP = MIB

_FLAGS = (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0))


class RefusedFile(Exception):
    """A file that cannot be used. `kind` is "missing", "folder", "special", "large",
    "unreadable" or "encoding"; `size` is set for "large" when known, `line` for
    "encoding"."""

    def __init__(self, path: Path, kind: str, reason: str, *, line: int | None = None,
                 size: int | None = None) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.kind = kind
        self.reason = reason
        self.line = line
        self.size = size


def size_text(size: int) -> str:
    """1048576 -> '1 MiB', 1536 -> '1.5 KiB', 12 -> '12 bytes'."""
    for unit, scale in (("GiB", MIB * 1024), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def too_large(size: int | None, cap: int) -> str:
    """'is 50 MiB, more than the 1 MiB allowed' (without a size when it is not known)."""
    shown = size_text(size) if size is not None else ""
    if not shown or shown == size_text(cap):
        return f"is more than the {size_text(cap)} allowed"
    return f"is {shown}, more than the {size_text(cap)} allowed"


def _kind_of(mode: int) -> tuple[str, str] | None:
    """(kind, reason) for anything but a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "folder", "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "special", "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "special", "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "special", "is a socket, not a regular file"
    if stat.S_ISLNK(mode):  # only seen when not following symlinks
        return "special", "is a symlink, not a regular file"
    return "special", "is not a regular file"


def _os_refusal(path: Path, exc: OSError) -> RefusedFile:
    if isinstance(exc, FileNotFoundError):
        return RefusedFile(path, "missing", "does not exist")
    if isinstance(exc, IsADirectoryError):
        return RefusedFile(path, "folder", "is a folder, not a file")
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
        return RefusedFile(path, "special", "is a symlink, not a regular file")
    return RefusedFile(path, "unreadable", f"cannot be read: {exc.strerror or exc}")


def _regular(path: Path, follow_symlinks: bool = True) -> os.stat_result:
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise _os_refusal(path, exc) from None
    refused = _kind_of(info.st_mode)
    if refused is not None:
        raise RefusedFile(path, *refused)
    return info


def check(path: Path, cap: int) -> None:
    """Raise RefusedFile if `path` is not a regular file of at most `cap` bytes (stat only:
    nothing is opened)."""
    info = _regular(path)
    if info.st_size > cap:
        raise RefusedFile(path, "large", too_large(info.st_size, cap), size=info.st_size)


def read_bytes(path: Path, cap: int) -> bytes:
    """The content of the regular file at `path` (at most `cap` bytes), or RefusedFile."""
    check(path, cap)
    data = read_head(path, cap + 1)  # a file can grow, and /proc files say size 0
    if len(data) > cap:
        raise RefusedFile(path, "large", too_large(None, cap))
    return data


def read_head(path: Path, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """Up to `limit` bytes from the start of the regular file at `path`, or RefusedFile. A
    device is refused before it is opened (some opens do things), and the open never waits,
    should the path have become a FIFO since. Without `follow_symlinks` a symlink is
    refused."""
    _regular(path, follow_symlinks)
    flags = _FLAGS if follow_symlinks else _FLAGS | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_refusal(path, exc) from None
    try:
        refused = _kind_of(os.fstat(fd).st_mode)  # what was opened, whatever the path is now
        if refused is not None:
            raise RefusedFile(path, *refused)
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            try:
                chunk = os.read(fd, min(MIB, limit - size))
            except OSError as exc:
                raise _os_refusal(path, exc) from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode(path: Path, data: bytes) -> str:
    """`data` as UTF-8, or RefusedFile naming the first bad line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RefusedFile(path, "encoding", f"is not UTF-8 text (line {line})",
                          line=line) from None


def read_text(path: Path, cap: int) -> str:
    """`read_bytes`, decoded as UTF-8 (strictly: a wrong byte is a RefusedFile)."""
    return decode(path, read_bytes(path, cap))
