"""What the console reads, in process or attached, and how an attached console shows its link.

The console reads a `ConsoleRuntime`: the embedded `Runtime`, or a `MirroredRuntime` that
keeps a copy of a runtime running elsewhere (attach/mirror.py). Both have the same state, the
same change feed and one command path; only an attached console has a link that can drop.
`Link` follows that link: its part of the status line ("reconnecting…"), a fresh paint of
every pane after the state was loaded anew, and a dialog when the runtime has gone away that
offers to wait for it or quit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Static

from ..attach.mirror import MirroredRuntime, Status
from ..core.text import ago, plural, printable
from .literal import literal
from .modals.dialog import Body, Dialog
from .status import ATTENTION, Part

#: the link's rank in the status line: kept longer than any count (status.py ranks them 3-7)
LINK_RANK = 8
#: the link has been down this long before the console asks whether to wait or quit
GONE_AFTER = 5.0


class LinkedScreen(Protocol):
    """What the link asks of the screen that shows it (screens/main.py's `MainScreen`)."""

    @property
    def app(self) -> Any: ...

    def set_interval(self, interval: float, callback: Callable[[], object]) -> Any: ...

    def call_later(self, callback: Callable[..., Any], *args: Any) -> bool: ...

    def repaint_all(self) -> None: ...

    def refresh_status(self) -> None: ...

    def toast(self, text: str, *, timeout: float | None = None) -> None: ...


class Link:
    """An attached console's connection to its runtime, as the screen shows it."""

    def __init__(self, mirror: MirroredRuntime, how: str = "") -> None:
        self.mirror = mirror
        #: why this console is attached rather than embedded, when it was not asked to be
        #: ("a runtime already runs here"); said in the status line
        self.how = how
        self.status: Status = mirror.status
        #: when the link last went down (monotonic), while it is down
        self.down_since: float | None = None
        self._screen: LinkedScreen | None = None
        self._dialog: GoneModal | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: the snapshots loaded so far: one more means every pane is read anew
        self._loads = mirror.loads

    def start(self, screen: LinkedScreen) -> None:
        self._screen = screen
        self._unsubscribe = self.mirror.subscribe_status(self._changed)
        screen.set_interval(1.0, self._check)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ---- the status line -----------------------------------------------------------------

    def part(self) -> Part:
        """The link's part of the status line: where it is attached, or why it is not."""
        uri = printable(self.mirror.uri)
        if self.status == "closed":
            return Part(ATTENTION + 2, " ✖ detached: ",
                        printable(self.mirror.error or f"{uri} ended the feed"), " ",
                        "bold reverse red", short=" ✖ detached ")
        if self.status in ("reconnecting", "connecting"):
            since = "" if self.down_since is None else \
                f" ({ago(time.monotonic() - self.down_since)})"
            return Part(ATTENTION + 2, " ⟳ reconnecting to ", uri, f"…{since} ",
                        "bold reverse yellow", short=" ⟳ reconnecting… ")
        head = f"attached ({self.how}): " if self.how else "attached to "
        # Above every count: whether `q` detaches or stops everything depends on it.
        return Part(LINK_RANK, head + uri, style="bold")

    # ---- following the link ----------------------------------------------------------------

    def _changed(self, status: Status) -> None:
        """Heard from the mirror's task: the screen handles it in its own turn (and context)."""
        if self._screen is not None:
            self._screen.call_later(self._take, status)

    def _take(self, status: Status) -> None:
        screen = self._screen
        if screen is None:
            return
        was, self.status = self.status, status
        if status == "connected":
            self.down_since = None
            if self._dialog is not None:
                self._dialog.dismiss(True)
            # A snapshot was loaded (the first, or a fresh one after a long drop): every pane
            # is read anew. A resume told its events through the feed: no more to do.
            if self.mirror.loads != self._loads:
                self._loads = self.mirror.loads
                screen.repaint_all()
            if was != "connected":
                screen.toast(f"Attached again to {self.mirror.uri}", timeout=4)
        elif self.down_since is None:
            self.down_since = time.monotonic()
        if status == "closed":
            self._offer(closed=True)
        screen.refresh_status()

    def _check(self) -> None:
        """Once a second: a link down for GONE_AFTER asks the operator what to do."""
        if (self.status == "reconnecting" and self.down_since is not None
                and time.monotonic() - self.down_since >= GONE_AFTER):
            self._offer(closed=False)

    def _offer(self, closed: bool) -> None:
        screen = self._screen
        if screen is None or self._dialog is not None:
            return
        self._dialog = GoneModal(self.mirror.uri, self.mirror.error if closed else "",
                                 self.down_since)

        def chosen(wait: bool | None) -> None:
            self._dialog = None
            if wait is False:
                screen.app.exit()

        screen.app.push_screen(self._dialog, chosen)

    # ---- quitting ----------------------------------------------------------------------------

    def quit_text(self) -> str:
        """What quitting an attached console does: nothing to the runtime."""
        state = self.mirror.state
        runs = len(state.sessions.running())
        up = sum(1 for service in state.services.services.values()
                 if service.state not in ("stopped", "disabled", "failed"))
        connected = sum(1 for agent in state.presence.online.values() if not agent.operator)
        kept = [plural(runs, "agent run"), plural(up, "service"),
                plural(connected, "connected agent")]
        return (f"This console detaches from the runtime at {self.mirror.uri}. Everything "
                f"keeps running there: {', '.join(kept)}; nothing is stopped.\n"
                f"Attach again with: marrow-tui attach {self.mirror.uri}")


class GoneModal(Dialog[bool]):
    """The runtime went away: wait for it (the console goes on trying, and resumes where it
    was) or quit. A refusal (the token changed, another version) cannot be waited out."""

    BINDINGS = [
        Binding("w", "choose(True)", "Wait"),
        Binding("q", "choose(False)", "Quit"),
        Binding("escape", "choose(True)", "Wait", show=False),
    ]

    def __init__(self, uri: str, error: str, down_since: float | None) -> None:
        super().__init__()
        self.uri, self.error, self.down_since = uri, error, down_since

    def compose(self) -> ComposeResult:
        if self.error:
            title = "The runtime closed this console's connection"
            body = (f"{self.error}.\nThe panes show the state as it was when the "
                    "connection ended; nothing more comes. Quit, then attach again.")
        else:
            since = "" if self.down_since is None else \
                f" {ago(time.monotonic() - self.down_since)} ago"
            title = "The runtime cannot be reached"
            body = (f"The connection to {self.uri} dropped{since} and has not come back: the "
                    "runtime stopped, or the network is down. The console keeps trying; when "
                    "the runtime is back it goes on where it left off, with nothing missed.")
        with Vertical(classes="box"):
            yield Label(literal(title), classes="title")
            with Body():
                yield Static(literal(body, lines=True), classes="body")
            with Vertical(classes="foot"), Horizontal(classes="buttons"):
                yield Button(literal("Stay (w)" if self.error else "Wait (w)"),
                             id="wait")
                yield Button(literal("Quit (q)"), variant="error", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "wait")

    def action_choose(self, wait: bool) -> None:
        self.dismiss(wait)
