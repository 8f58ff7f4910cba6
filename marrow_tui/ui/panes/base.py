"""What every pane has: the screen it lives on, its widget, and the rules for its keys.

A pane shows; its actions read its selection, ask with a modal when they need an answer, and
send the operator's frame through the runtime's command path (the one agents use). The screen
runs an action on the pane the action table names, and only while that pane is shown (or, for
the few that work anywhere, always).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual.app import App
from textual.notifications import SeverityLevel
from textual.widget import Widget

from ...core.state import State
from ..source import ConsoleRuntime, OperatorSession
from ..actions import Hint
from ..review import Reviews
from .table import KeyedTable


class Console(Protocol):
    """The screen, as a pane sees it."""

    runtime: ConsoleRuntime
    session: OperatorSession
    #: the pane shown (all are, on a wide terminal, but keys act on this one)
    pane: str
    #: the review actions (the diff view, accept, request changes, discard)
    review: Reviews

    @property
    def app(self) -> App[Any]: ...

    def show_row(self, pane: str, key: str) -> None: ...

    def set_border_title(self, pane: str, title: str) -> None: ...

    def toast(self, text: str, *, severity: SeverityLevel = "information",
              timeout: float | None = None) -> None: ...


class Pane:
    name: ClassVar[str]
    title: ClassVar[str]

    def __init__(self, console: Console) -> None:
        self.console = console

    @property
    def widget(self) -> Widget:
        raise NotImplementedError

    @property
    def state(self) -> State:
        return self.console.runtime.state

    def send(self, **frame: Any) -> None:
        self.console.session.send(**frame)

    def allows(self, action: str) -> bool:
        """Whether one of this pane's actions can run now (it is only asked while shown)."""
        return True

    def hint(self) -> Hint:
        """The keys its border names: those that act on its selection, when they can."""
        return ()


class TablePane(Pane):
    table: KeyedTable

    @property
    def widget(self) -> Widget:
        return self.table

    def selected(self) -> str | None:
        """The selected row, while this pane is the one shown (keys act on it only then)."""
        return self.table.selected_key if self.console.pane == self.name else None

    def open(self, key: str) -> None:
        """Enter on a row."""


def fields(rows: Iterable[tuple[str, object]], width: int = 10) -> Text:
    """A detail view's body: one bold label and its value a line."""
    body = Text()
    for label, value in rows:
        body.append(f"{label:>{width}}  ", style="bold")
        body.append(f"{value}\n")
    return body


