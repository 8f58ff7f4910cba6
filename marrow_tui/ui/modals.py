"""Dialogs: each a typed ModalScreen that returns its answer through `dismiss`.

Titles, bodies, choices and questions often quote agents (a name, a task id, a question), so
every one is shown literally (`literal`): never read as markup, controls written out.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from .literal import literal, safe_text


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


class AnswerModal(ModalScreen[str | None]):
    """Answer an agent's question: its choices as buttons, or any text (several lines)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="answer.cancel"),
        Binding("ctrl+s,f2", "send", "Send", id="answer.send"),
    ]

    def __init__(self, asker: str, question: str, *, context: str = "", about: str = "",
                 waited: str = "", choices: list[str] | None = None,
                 default: str | None = None) -> None:
        super().__init__(classes="dialog")
        self.asker, self.question, self.context = asker, question, context
        self.about, self.waited = about, waited
        self.choices = choices or []
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide answer"):
            where = f" about {self.about}" if self.about else ""
            yield Label(literal(f"{self.asker} asks{where} (waiting {self.waited})"),
                        classes="title")
            yield Static(literal(self.question, lines=True), classes="body question")
            if self.context:
                yield Label("Context", classes="field-label")
                with VerticalScroll(classes="context"):
                    yield Static(literal(self.context, lines=True))
            if self.choices:
                with Horizontal(classes="choices"):
                    for index, choice in enumerate(self.choices):
                        yield Button(literal(choice), id=f"choice-{index}", classes="choice")
            yield Label("Answer" + (" (or pick one above: Enter picks, Tab moves on)"
                                    if self.choices else ""), classes="field-label")
            yield TextArea(id="answer-text", soft_wrap=True, show_line_numbers=False)
            if self.default is not None:
                yield Label(literal(f"If nobody answers in time: {self.default}"),
                            classes="hint")
            yield Label("", id="answer-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Send (ctrl+s)", variant="primary", id="send")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        # With choices, the first one has the focus (Enter picks it, Tab moves on to
        # the others and to the text box); without, the text box.
        if self.choices:
            self.query_one("#choice-0", Button).focus()
        else:
            self.query_one(TextArea).focus()

    def action_send(self) -> None:
        text = self.query_one(TextArea).text.strip()
        if not text:
            self.query_one("#answer-error", Label).update("Type an answer, or pick a choice.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        button = event.button
        if button.id == "send":
            self.action_send()
        elif button.id == "cancel":
            self.dismiss(None)
        elif button.id and button.id.startswith("choice-"):
            self.dismiss(self.choices[int(button.id.removeprefix("choice-"))])
