"""A session's output, live: the log file's tail, followed as it grows.

Agent logs can be huge, so the view never reads a whole file: it opens on the last
`TAIL_BYTES`, then reads only what was appended, a bounded amount per look. Textual's `Log`
widget draws only the lines on screen and keeps at most `MAX_LINES`. Output may hold escape
sequences (colours, a window title, clear screen): each line is shown with its controls
written out (`printable`), and the title (a run id) is never read as markup.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Label, Log

from ...attach.files import Files, RuntimeFile
from ...core.sessions import Session
from ...core.text import printable
from ..literal import literal

#: how much of an existing log is shown on opening
TAIL_BYTES = 256 * 1024
#: the most read per look while following (a burst beyond it skips ahead, and says so)
STEP_BYTES = 1024 * 1024
MAX_LINES = 10_000
#: a line longer than this is shown in pieces (output that never ends a line still shows)
MAX_PARTIAL = 64 * 1024
FOLLOW_EVERY = 0.25


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class LogScreen(Screen[None]):
    """Full-screen view of one session's stdout or stderr, following the file."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="log.close"),
        Binding("e", "toggle_stream", "stdout/stderr", id="log.stream"),
        Binding("f", "toggle_follow", "Follow", id="log.follow"),
        Binding("home", "top", "Top", show=False, id="log.top"),
        Binding("end", "bottom", "End", show=False, id="log.bottom"),
    ]

    def __init__(self, session: Session, stream: str = "stdout", *, service: str = "") -> None:
        super().__init__()
        self.session = session
        self.stream = stream
        #: a service's log (`session` then only stands for the service)
        self.service = service
        self.file = self._runtime_file()
        #: where the file is read (where the runtime keeps it, or a copy); set on mounting
        self._local: Path | None = None
        self._pos = 0
        self._partial = ""
        self._follow = True
        self._skipped = 0
        self._shown_state = ""

    def _runtime_file(self) -> RuntimeFile:
        path = self.session.stdout if self.stream == "stdout" else self.session.stderr
        if self.service:
            return RuntimeFile(path, service=self.service)
        return RuntimeFile(path, run=self.session.id, stream=self.stream)

    @property
    def files(self) -> Files:
        """Where the runtime's files are read: where it keeps them, or copies."""
        return self.app.files  # type: ignore[attr-defined,no-any-return]

    @property
    def path(self) -> Path:
        return self._local or Path(self.file.path)

    def compose(self) -> ComposeResult:
        yield Label("", id="log-title")
        yield Log(max_lines=MAX_LINES, auto_scroll=True, id="log-lines")
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        self._local = await self.files.local_path(self.file)
        self._open()
        self.set_interval(FOLLOW_EVERY, self._read_more)

    def on_unmount(self) -> None:
        self.files.close(self.file)

    def _open(self) -> None:
        log = self.query_one(Log)
        log.clear()
        self._partial = ""
        self._skipped = 0
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
            problem = self.files.problem(self.file)
            log.write_line(printable(f"({self.file.path} cannot be read from the runtime: "
                                     f"{problem})" if problem else
                                     f"({self.file.path} does not exist yet)"))
        self._pos = max(0, size - TAIL_BYTES)
        if self._pos:
            self._skipped = self._pos
        self._read_more(first=True)
        self._title()

    def _title(self) -> None:
        s = self.session
        try:
            size = _size(os.path.getsize(self.path))
        except OSError:
            size = "no file yet"
        self._shown_state = s.state
        parts = [f" {s.id} · {self.stream} · {s.state} · {size}"]
        if self._skipped:
            parts.append(f" · earlier {_size(self._skipped)} not shown")
        parts.append("" if self._follow else " · paused")
        self.query_one("#log-title", Label).update(literal("".join(parts)))

    def _read_more(self, first: bool = False) -> None:
        if not first and self.session.state != self._shown_state:
            self._title()  # the run ended while we watched
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self._pos:  # truncated or replaced: start again at its tail
                    self._pos = max(0, size - TAIL_BYTES)
                    self._partial = ""
                if size - self._pos > STEP_BYTES:
                    self._skipped += size - self._pos - STEP_BYTES
                    self._pos = size - STEP_BYTES
                    self._partial = ""
                    first = True
                handle.seek(self._pos)
                data = handle.read(size - self._pos)
        except OSError:
            return
        if not data:
            return
        self._pos += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        # A progress bar redraws with \r: each redraw is a line here.
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = ""
        if first and self._skipped and lines:
            lines = lines[1:]  # the first line was cut by the seek
        if lines:
            self.query_one(Log).write_lines([printable(line, lines=True) for line in lines],
                                            scroll_end=self._follow)
        self._title()

    def action_close(self) -> None:
        self.dismiss(None)

    async def action_toggle_stream(self) -> None:
        self.files.close(self.file)
        self.stream = "stderr" if self.stream == "stdout" else "stdout"
        self.file = self._runtime_file()
        self._local = await self.files.local_path(self.file)
        self._open()

    def action_toggle_follow(self) -> None:
        self._follow = not self._follow
        self.query_one(Log).auto_scroll = self._follow
        self._title()

    def action_top(self) -> None:
        self._follow = False
        self.query_one(Log).auto_scroll = False
        self.query_one(Log).scroll_home(animate=False)
        self._title()

    def action_bottom(self) -> None:
        self.query_one(Log).scroll_end(animate=False)
