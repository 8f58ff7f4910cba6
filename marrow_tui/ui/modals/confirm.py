"""Ask before something that cannot be undone, or pick one of a list."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from ..literal import literal


class ConfirmModal(ModalScreen[bool]):
    """Ask before something that cannot be undone; says what is lost."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, yes: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.title_text, self.body, self.yes = title, body, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            yield Static(literal(self.body, lines=True), classes="body")
            with Horizontal(classes="buttons"):
                yield Button(literal(f"{self.yes} (y)"), variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ChoiceModal(ModalScreen[str | None]):
    """Pick one of a list (an agent to hand a lease to, a status)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], empty: str = "") -> None:
        super().__init__(classes="dialog")
        self.title_text, self.choices, self.empty = title, choices, empty

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            if self.choices:
                yield OptionList(*(Option(literal(label), id=value)
                                   for value, label in self.choices))
            else:
                yield Static(literal(self.empty, lines=True), classes="body")
            yield Label("Enter to choose, Esc to cancel", classes="hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
