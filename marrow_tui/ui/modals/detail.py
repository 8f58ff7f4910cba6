"""Read-only views: one row's details, and the keys (`?`).

Titles and bodies often quote agents (a name, a task id, a question), so every one is shown
literally (`literal`): never read as markup, controls written out.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..literal import literal, safe_text


class DetailModal(ModalScreen[None]):
    """A read-only view of one row: everything the table had no room for."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="detail.close")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__(classes="dialog")
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label(literal(self.title_text), classes="title")
            with VerticalScroll():
                body = self.body
                yield Static(safe_text(body, lines=True) if isinstance(body, Text)
                             else literal(body, lines=True), classes="body")
            yield Label("Esc to close", classes="hint")

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
