"""A few text fields to fill in (a task to declare, a message, an issue).

The focus goes where the typing belongs (`focus`: the message, not the recipient the dialog
already filled in). A field the dialog refuses is said in the dialog and gets the focus back,
with everything typed kept; a warning is said the same way, and the submit button then reads
"… anyway": a second press goes ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from ..literal import literal
from .dialog import Body, Dialog, Note


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    placeholder: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with what was typed, and in which field. A warning can be overridden (the
    button then reads "… anyway"); a refusal cannot."""

    field: str
    text: str
    warning: bool = False


#: looks at the values before they are sent: a problem, or None when they can go
Check = Callable[[dict[str, str]], Problem | None]


class FormModal(Dialog[dict[str, str] | None]):
    """A few text fields; Enter in the last one (or the button) submits."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]
    #: the dialog picks its field itself (`focus`), and brings it into sight with its label
    AUTO_FOCUS = ""

    def __init__(self, title: str, fields: list[Field], submit: str = "OK",
                 required: tuple[str, ...] = (), *, focus: str | None = None,
                 check: Check | None = None) -> None:
        super().__init__()
        self.title_text, self.fields, self.submit, self.required = title, fields, submit, required
        #: the field that has the focus when the dialog opens (else the first)
        self.focus_field = focus or fields[0].name
        self.check = check
        #: the values a warning was shown for: submitting them again goes ahead
        self._warned: dict[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(self.title_text), classes="title")
            with Body():
                for field in self.fields:
                    yield Label(literal(field.label), id=f"{field.name}-label",
                                classes="field-label")
                    yield Input(value=field.value, placeholder=field.placeholder, id=field.name)
            with Vertical(classes="foot"):
                yield Note("form-error")
                with Horizontal(classes="buttons"):
                    yield Button(literal(self.submit), variant="primary", id="submit")
                    yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._focus(self.focus_field)

    def _focus(self, name: str) -> None:
        """Focus a field and bring it into sight with its label (focusing alone would scroll
        the label away)."""
        self.query_one(f"#{name}", Input).focus(scroll_visible=False)
        self.call_after_refresh(self._reveal, name)

    def _reveal(self, name: str) -> None:
        label = self.query_one(f"#{name}-label", Label).virtual_region_with_margin
        field = self.query_one(f"#{name}", Input).virtual_region_with_margin
        self.query_one(Body).scroll_to_region(label.union(field), animate=False)

    def _values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#{f.name}", Input).value.strip() for f in self.fields}

    def _problem(self, values: dict[str, str]) -> Problem | None:
        missing = [f for f in self.fields if f.name in self.required and not values[f.name]]
        if missing:
            return Problem(missing[0].name, f"Needed: {', '.join(f.label for f in missing)}")
        return self.check(values) if self.check is not None else None

    def _submit(self) -> None:
        values = self._values()
        problem = self._problem(values)
        if problem is None or (problem.warning and values == self._warned):
            self.dismiss(values)
            return
        self._warned = values if problem.warning else None
        self.query_one("#form-error", Note).say(problem.text, warning=problem.warning)
        submit = self.query_one("#submit", Button)
        submit.label = literal(f"{self.submit} anyway" if problem.warning else self.submit)
        submit.refresh(layout=True)  # a label's width is not laid out again by itself
        self._focus(problem.field)

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
