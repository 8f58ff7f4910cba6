"""A runtime's run logs, transcripts and service logs, read over the wire: `file_read`.

A console attached to a runtime that runs elsewhere (attach/files.py) cannot open the files
the runtime writes: a run's stdout and stderr, an ACP run's transcript and its rotations, a
service's log. It asks for their bytes instead, a piece at a time. docs/protocol.md §6.9 is
the reference.

The client never names a path. It names what it wants (a run by its session id, or a service
by its name, and a stream), and the path is the one the runtime's own state records for it. As
a second fence, a recorded path is read only if it is the file the runtime writes for that run
(`<session id>.stdout.log`, `.stderr.log`, `.transcript.jsonl`; a service's log in the state
folder's `services/`), and only as a regular file, never through a symbolic link.

Deciding which file is done on the event loop (it reads the state); reading it is done in a
thread, and each reply carries the file's size and identity now, so a reader sees a rotation
(another file) or a truncation (a smaller one).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..core.state import State
from ..core.text import printable
from ..protocol.frames import Context, encode
from .defaults import MAX_FILE_READ

#: the highest rotation a request may name (`<name>.1` is the newest rotated file)
MAX_PART = 99
#: what each stream of a run is called on disk, after its session id
RUN_FILES = {"stdout": ".stdout.log", "stderr": ".stderr.log",
             "transcript": ".transcript.jsonl"}
SERVICE_STREAM = "log"
#: the longest request id echoed back
MAX_REQUEST_ID = 64


class Refusal(NamedTuple):
    """Why a `file_read` reads nothing: one sentence, and its `error_code`."""

    text: str
    code: str


@dataclass(frozen=True, slots=True)
class Wanted:
    """One piece of one file, as the runtime's state names it."""

    path: Path
    #: how sentences name the file ("run 'r-1' stdout", "service 'db' log")
    what: str
    part: int
    offset: int
    length: int


def _integer(frame: dict[str, Any], name: str, default: int) -> int | None:
    value = frame.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _malformed(text: str) -> Refusal:
    return Refusal(f"Malformed frame: {text}", "MALFORMED")


def _piece(frame: dict[str, Any]) -> tuple[int, int, int] | Refusal:
    """The request's part, offset and length, checked."""
    part = _integer(frame, "part", 0)
    if part is None or not 0 <= part <= MAX_PART:
        return _malformed(f"'part' must be an integer from 0 (the live file) to {MAX_PART} "
                          "(its oldest rotation).")
    offset = _integer(frame, "offset", 0)
    if offset is None or offset < 0:
        return _malformed("'offset' must be an integer, 0 or more (a byte of the file).")
    length = _integer(frame, "length", MAX_FILE_READ)
    if length is None or not 0 <= length <= MAX_FILE_READ:
        return _malformed(f"'length' must be an integer from 0 to {MAX_FILE_READ} "
                          f"({MAX_FILE_READ // 1024} KiB a reply).")
    return part, offset, length


def wanted(state: State, services_dir: Path, frame: dict[str, Any]) -> Wanted | Refusal:
    """The file piece a `file_read` asks for, from what the state records; or why not.
    On the event loop: it reads the state, and no file."""
    run, service = frame.get("run"), frame.get("service")
    if (run is None) == (service is None) or not isinstance(run or service, str):
        return _malformed("file_read names a run ('run': its session id) or a service "
                          "('service': its name), one of the two.")
    request_id = frame.get("request_id")
    if request_id is not None and (not isinstance(request_id, str)
                                   or len(request_id) > MAX_REQUEST_ID):
        return _malformed(f"'request_id' must be a string of at most {MAX_REQUEST_ID} "
                          "characters.")
    piece = _piece(frame)
    if isinstance(piece, Refusal):
        return piece
    stream = frame.get("stream", SERVICE_STREAM if service is not None else None)
    if isinstance(run, str):
        path = _run_file(state, run, stream)
        what = f"run '{printable(run)}' {stream}"
    else:
        assert isinstance(service, str)
        path = _service_log(state, services_dir, service, stream)
        what = f"service '{printable(service)}' log"
    if isinstance(path, Refusal):
        return path
    return Wanted(path, what, *piece)


def _run_file(state: State, run: str, stream: object) -> Path | Refusal:
    session = state.sessions.by_id.get(run)
    if session is None:
        return Refusal(f"No run '{printable(run)}' is known to this runtime.", "not_found")
    if not isinstance(stream, str) or stream not in RUN_FILES:
        return _malformed(f"a run's 'stream' is stdout, stderr or transcript, not "
                          f"{printable(repr(stream))}.")
    recorded = {"stdout": session.stdout, "stderr": session.stderr,
                "transcript": session.transcript}[stream]
    if not recorded:
        kept = " (an ACP run's output is in its transcript)" if stream == "stdout" else ""
        return Refusal(f"Run '{printable(run)}' has no {stream} file{kept}.", "not_found")
    path = Path(recorded)
    expected = f"{run}{RUN_FILES[stream]}"
    if not path.is_absolute() or path.name != expected:
        return Refusal(f"Run '{printable(run)}' records its {stream} as {printable(recorded)}, "
                       f"which is not the file the runtime writes for it ({expected}): "
                       "refused.", "refused")
    return path


def _service_log(state: State, services_dir: Path, service: str,
                 stream: object) -> Path | Refusal:
    view = state.services.services.get(service)
    if view is None:
        return Refusal(f"No service '{printable(service)}' is known to this runtime.",
                       "not_found")
    if stream != SERVICE_STREAM:
        return _malformed(f"a service's 'stream' is log, not {printable(repr(stream))}.")
    if not view.log:
        return Refusal(f"Service '{printable(service)}' has no log yet.", "not_found")
    path = Path(view.log)
    inside = (path.is_absolute() and path.suffix == ".log"
              and os.path.realpath(path.parent) == os.path.realpath(services_dir))
    if not inside:
        return Refusal(f"Service '{printable(service)}' records its log as "
                       f"{printable(view.log)}, outside the runtime's services folder "
                       f"{printable(str(services_dir))}: refused.", "refused")
    return path


def read(piece: Wanted) -> dict[str, Any] | Refusal:
    """The piece's bytes (base64), the file's size and identity now; or why not. Blocking:
    run it in a thread."""
    path = piece.path if piece.part == 0 else piece.path.with_name(
        f"{piece.path.name}.{piece.part}")
    shown = printable(str(path))
    try:
        # O_NONBLOCK: a FIFO put where a log should be must not hold the thread
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if piece.part:
            return Refusal(f"The {piece.what} has no rotation {piece.part} ({shown} does not "
                           "exist).", "not_found")
        return Refusal(f"The {piece.what} file {shown} does not exist (yet).", "not_found")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Refusal(f"The {piece.what} file {shown} is a symbolic link: refused.",
                           "refused")
        return Refusal(f"Cannot read the {piece.what} file {shown}: "
                       f"{exc.strerror or exc}.", "refused")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Refusal(f"The {piece.what} file {shown} is not a regular file: refused.",
                           "refused")
        data = (os.pread(fd, piece.length, piece.offset)
                if piece.length and piece.offset < info.st_size else b"")
    except OSError as exc:
        return Refusal(f"Cannot read the {piece.what} file {shown}: {exc.strerror or exc}.",
                       "refused")
    finally:
        os.close(fd)
    return {"offset": piece.offset,
            # it may have grown between the look at its size and the read
            "size": max(info.st_size, piece.offset + len(data)) if data else info.st_size,
            "identity": f"{info.st_dev:x}:{info.st_ino:x}",
            "data": base64.b64encode(data).decode("ascii")}


async def answer(context: Context, state: State, services_dir: Path, name: str,
                 frame: dict[str, Any], operator: bool) -> str:
    """The private reply to one `file_read` from `name`, encoded: `file_data`, or
    `file_refused` (an `error` for a connection that is not an operator's)."""
    echo: dict[str, Any] = {key: frame[key] for key in ("request_id", "run", "service",
                                                         "stream", "part")
                            if isinstance(frame.get(key), str | int)}
    if not operator:
        return encode(context.frame(
            "error", name, "Only an operator reads the runtime's files (file_read): connect "
            "with the operator token.", error_code="forbidden", **echo))
    piece = wanted(state, services_dir, frame)
    found = piece if isinstance(piece, Refusal) else await asyncio.to_thread(read, piece)
    if isinstance(found, Refusal):
        return encode(context.frame("file_refused", name, found.text, error_code=found.code,
                                    **echo))
    return encode(context.frame("file_data", name, "", **echo, **found))
