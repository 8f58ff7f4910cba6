"""Answer an agent's question (its choices as buttons, or any text) or permission request (the
tool call in Markdown, its options as buttons and nothing else: the answer must be one)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Markdown, Static, TextArea

from ..literal import literal


class AnswerModal(ModalScreen[str | None]):
    """Answer an agent's question: its choices as buttons, or any text (several lines).

    A permission request (`kind="permission"`) shows what the agent wants to do (its detail is
    Markdown: the command, the paths, the diff) and its options as buttons, with no text box:
    only one of the options is an answer.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="answer.cancel"),
        Binding("ctrl+s,f2", "send", "Send", id="answer.send"),
    ]

    def __init__(self, asker: str, question: str, *, context: str = "", about: str = "",
                 waited: str = "", choices: list[str] | None = None,
                 default: str | None = None, kind: str = "question") -> None:
        super().__init__(classes="dialog")
        self.asker, self.question, self.context = asker, question, context
        self.about, self.waited = about, waited
        self.choices = choices or []
        self.default = default
        #: a permission request takes only one of its choices
        self.permission = kind == "permission" and bool(self.choices)

    def compose(self) -> ComposeResult:
        if self.permission:
            yield from self._compose_permission()
            return
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

    def _compose_permission(self) -> ComposeResult:
        with Vertical(classes="box wide answer permission"):
            where = f" for {self.about}" if self.about and self.about != self.asker else ""
            yield Label(literal(f"{self.asker} asks permission{where} (waiting "
                                f"{self.waited})"), classes="title")
            yield Static(literal(self.question, lines=True), classes="body question")
            if self.context:
                with VerticalScroll(classes="detail"):
                    # Markdown, not Rich markup: the agent's text cannot style the console.
                    yield Markdown(self.context)
            with Horizontal(classes="choices"):
                for index, choice in enumerate(self.choices):
                    yield Button(literal(choice), id=f"choice-{index}", classes="choice")
            hint = "Enter picks · Tab moves on · Esc closes"
            if self.default is not None:
                hint += f" · no answer in time: {self.default}"
            yield Label(literal(hint), classes="hint")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "send":
            return not self.permission  # no text to send: a button is the answer
        return True

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
