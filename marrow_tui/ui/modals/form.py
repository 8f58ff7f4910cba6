"""A few text fields to fill in (a task to declare, a message, an issue)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from ..literal import literal


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    placeholder: str = ""
    value: str = ""


class FormModal(ModalScreen[dict[str, str] | None]):
    """A few text fields; Enter in the last one (or the button) submits."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, title: str, fields: list[Field], submit: str = "OK",
                 required: tuple[str, ...] = ()) -> None:
        super().__init__(classes="dialog")
        self.title_text, self.fields, self.submit, self.required = title, fields, submit, required

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            for field in self.fields:
                yield Label(literal(field.label), classes="field-label")
                yield Input(value=field.value, placeholder=field.placeholder, id=field.name)
            yield Label("", id="form-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.submit, variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def _values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#{f.name}", Input).value.strip() for f in self.fields}

    def _submit(self) -> None:
        values = self._values()
        missing = [f.label for f in self.fields if f.name in self.required and not values[f.name]]
        if missing:
            self.query_one("#form-error", Label).update(f"Needed: {', '.join(missing)}")
            return
        self.dismiss(values)

    @on(Input.Submitted)
    def _entered(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            self._submit()
        else:
            inputs[inputs.index(event.input) + 1].focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
