"""What every dialog shares, so that none can hide its buttons in a small terminal.

A dialog's box has three parts (styles/modals.tcss lays them out): its title on top
(`.title`), its body in a `Body` that scrolls when the terminal is too short for it
(`.content`), and its foot at the bottom (`.foot`: hints, errors and buttons), which stays in
sight whatever the body holds. Below `SHORT` rows the box drops its padding and its buttons
their borders (the `-short` class), so an 80x24 terminal keeps the body readable.
"""

from __future__ import annotations

from typing import TypeVar

from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label

from ..literal import literal

#: a terminal with fewer rows than this gets the compact dialogs
SHORT = 30

ResultType = TypeVar("ResultType")


class Dialog(ModalScreen[ResultType]):
    """A modal screen with the dialog layout's classes."""

    VERTICAL_BREAKPOINTS = [
        (0, "-short"), (SHORT, "-tall")]

    def __init__(self) -> None:
        super().__init__(classes="dialog")


class Body(VerticalScroll):
    """A dialog's body: it scrolls when the terminal is too short for it.

    It takes the focus (for the arrow keys) only where it holds text alone; in a form, the
    field that gets the focus is scrolled into view instead.
    """

    def __init__(self, *, focusable: bool = False) -> None:
        super().__init__(classes="content", can_focus=focusable)


class Note(Label):
    """A line in a dialog's foot that is there only while it has something to say: an error
    (a refusal) or a warning, in Label's own colours for each."""

    def __init__(self, id: str) -> None:  # noqa: A002 (Textual's name)
        super().__init__("", id=id, classes="note", markup=False)

    def say(self, text: str, *, warning: bool = False) -> None:
        self.update(literal(text))
        self.set_class(bool(text), "-shown")
        self.set_class(not warning, "error")
        self.set_class(warning, "warning")
