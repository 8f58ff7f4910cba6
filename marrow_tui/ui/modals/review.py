"""Request changes on an issue's work: the operator's text, and the lines referenced."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Static, TextArea

from ..literal import literal
from .dialog import Body, Dialog, Note


class RequestChangesModal(Dialog[str | None]):
    """The text that becomes the agent's next prompt; says what sending it does, and lists
    the `path:line` references picked in the diff view (sent with it)."""

    BINDINGS = [
        Binding("escape", "cancel", "Go back", id="request.cancel"),
        Binding("ctrl+s,f2", "send", "Send", id="request.send"),
    ]

    def __init__(self, identifier: str, what: str, refs: list[str]) -> None:
        super().__init__()
        self.identifier, self.what, self.refs = identifier, what, refs

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide answer"):
            yield Label(literal(f"Request changes on {self.identifier}"), classes="title")
            with Body():
                yield Static(literal(self.what, lines=True), classes="body")
                if self.refs:
                    yield Label(literal(f"References ({len(self.refs)}, sent with the text)"),
                                classes="field-label")
                    yield Static(literal("\n".join(self.refs), lines=True), id="request-refs",
                                 classes="context")
                else:
                    yield Label("No references: r on a line in the diff view (v) adds one.",
                                id="request-refs", classes="hint")
                yield Label("What should change", classes="field-label")
                yield TextArea(id="request-text", soft_wrap=True, show_line_numbers=False)
            with Vertical(classes="foot"):
                yield Note("request-error")
                with Horizontal(classes="buttons"):
                    yield Button("Send (ctrl+s)", variant="primary", id="send")
                    yield Button("Go back (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_send(self) -> None:
        text = self.query_one(TextArea).text.strip()
        if not text:
            self.query_one("#request-error", Note).say("Type what should change.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self.action_send()
        else:
            self.dismiss(None)
