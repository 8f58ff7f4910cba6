"""Read-only views: one row's details, and the keys (`?`).

Titles and bodies often quote agents (a name, a task id, a question), so every one is shown
literally (`literal`): never read as markup, controls written out.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from ..literal import literal, safe_text
from .dialog import Body, Dialog

#: the foot's hint, with the keys that scroll while the body is longer than the box
CLOSE_HINT = "Esc closes"
SCROLL_HINT = "↑ ↓ PgUp PgDn Home End scroll · Esc closes"


class DetailModal(Dialog[None]):
    """A read-only view of one row: everything the table had no room for."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="detail.close")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label(literal(self.title_text), classes="title")
            with Body(focusable=True):  # the arrow keys scroll it
                body = self.body
                yield Static(safe_text(body, lines=True) if isinstance(body, Text)
                             else literal(body, lines=True), classes="body")
            with Vertical(classes="foot"):
                yield Label(CLOSE_HINT, id="detail-hint", classes="hint")

    def on_resize(self) -> None:
        self.call_after_refresh(self._say_how_to_scroll)

    def _say_how_to_scroll(self) -> None:
        scrolls = self.query_one(Body).max_scroll_y > 0
        self.query_one("#detail-hint", Label).update(SCROLL_HINT if scrolls else CLOSE_HINT)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpModal(DetailModal):
    """`?`: every key and what it does, from the live bindings."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in rows), default=4)
        body = Text()
        for key, text in rows:
            body.append(f"{key:>{width}}  ", style="bold")
            body.append(f"{text}\n")
        body.append("\nctrl+p opens the command palette: every action is there too.", style="dim")
        super().__init__("Keys", body)
