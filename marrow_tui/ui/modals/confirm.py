"""Ask before something that cannot be undone, or pick one of a list."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from ..literal import literal
from .dialog import Body, Dialog


class ConfirmModal(Dialog[bool]):
    """Ask before something that cannot be undone; says what is lost. Both buttons say what
    they do ("Cancel request" / "Keep it"), never a bare "Cancel" that could mean either."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, yes: str, no: str = "Go back") -> None:
        super().__init__()
        self.title_text, self.body, self.yes, self.no = title, body, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            with Body():
                yield Static(literal(self.body, lines=True), classes="body")
            with Vertical(classes="foot"), Horizontal(classes="buttons"):
                yield Button(literal(f"{self.yes} (y)"), variant="error", id="yes")
                yield Button(literal(f"{self.no} (n)"), id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ChoiceModal(Dialog[str | None]):
    """Pick one of a list (an agent to hand a lease to, a status)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], empty: str = "") -> None:
        super().__init__()
        self.title_text, self.choices, self.empty = title, choices, empty

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            if self.choices:  # the list scrolls by itself
                yield OptionList(*(Option(literal(label), id=value)
                                   for value, label in self.choices), classes="content")
            else:
                with Body():
                    yield Static(literal(self.empty, lines=True), classes="body")
            with Vertical(classes="foot"):
                yield Label("Enter to choose, Esc to cancel" if self.choices
                            else "Esc to go back", classes="hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
