"""Answer an agent's question: its choices as buttons, or any text; a permission request
with one of its choices only."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Label, Static, TextArea

from ..literal import literal, safe_text
from .dialog import Body, Dialog, Note

#: how a permission request's detail lines read, by how they start (AgentSession writes them:
#: "kind: title", "$ command", "--- path" before a diff's "-old" and "+new" lines, "Paths: ...")
DETAIL_STYLES = (("$ ", "bold"), ("--- ", "bold underline"), ("+", "green"), ("-", "red"),
                 ("Paths: ", "dim"))


def permission_detail(context: str) -> Text:
    """What a permission request asks, its command bold and its diff coloured, read as
    plain text: nothing in it is markup."""
    out = Text()
    for number, line in enumerate(context.split("\n")):
        style = "bold" if number == 0 else next(
            (style for start, style in DETAIL_STYLES if line.startswith(start)), "")
        out.append(line + "\n", style=style)
    out.rstrip()
    return safe_text(out, lines=True)


class AnswerModal(Dialog[str | None]):
    """Answer an agent's question: its choices as buttons, or any text (several lines)."""

    BINDINGS = [
        Binding("escape", "cancel", "Answer later", id="answer.cancel"),
        Binding("ctrl+s,f2", "send", "Send", id="answer.send"),
    ]

    def __init__(self, asker: str, question: str, *, context: str = "", about: str = "",
                 waited: str = "", choices: list[str] | None = None,
                 default: str | None = None, permission: bool = False) -> None:
        super().__init__()
        #: an agent asks leave to run a tool call: only its choices answer it, no free text
        self.permission = permission and bool(choices)
        self.asker, self.question, self.context = asker, question, context
        self.about, self.waited = about, waited
        self.choices = choices or []
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide answer"):
            where = f" about {self.about}" if self.about and self.about != self.asker else ""
            what = "asks permission" if self.permission else f"asks{where}"
            yield Label(literal(f"{self.asker} {what} (waiting {self.waited})"),
                        classes="title")
            with Body():
                yield Static(literal(self.question, lines=True), classes="body question")
                if self.context and self.permission:  # what it would run or change, in sight
                    with VerticalScroll(classes="detail"):
                        yield Static(permission_detail(self.context))
                elif self.context:
                    yield Label("Context", classes="field-label")
                    with VerticalScroll(classes="context"):
                        yield Static(literal(self.context, lines=True))
                if self.choices and not self.permission:
                    yield from self._choices()
                if not self.permission:
                    yield Label("Answer" + (" (or pick one above: Enter picks, Tab moves on)"
                                            if self.choices else ""), classes="field-label")
                    yield TextArea(id="answer-text", soft_wrap=True, show_line_numbers=False)
            # What happens without an answer, and the buttons, stay in sight whatever the
            # terminal's size: the body above scrolls instead.
            with Vertical(classes="foot"):
                if self.permission:
                    hint = "Pick one: Enter picks, Tab moves on"
                    if self.default is not None:
                        hint += f"; if nobody answers in time: {self.default}"
                    yield Label(literal(hint), classes="hint")
                    yield from self._choices()
                elif self.default is not None:
                    yield Label(literal(f"If nobody answers in time: {self.default}"),
                                classes="hint")
                yield Note("answer-error")
                with Horizontal(classes="buttons"):
                    if not self.permission:
                        yield Button("Send (ctrl+s)", variant="primary", id="send")
                    # Not "Cancel": that would read as cancelling the question itself.
                    yield Button("Answer later (esc)", id="cancel")

    def _choices(self) -> ComposeResult:
        with Horizontal(classes="choices"):
            for index, choice in enumerate(self.choices):
                yield Button(literal(choice), id=f"choice-{index}", classes="choice")

    def on_mount(self) -> None:
        # With choices, the first one has the focus (Enter picks it, Tab moves on to
        # the others and to the text box); without, the text box.
        if self.choices:
            self.query_one("#choice-0", Button).focus()
        else:
            self.query_one(TextArea).focus()

    def action_send(self) -> None:
        if self.permission:  # answered by a choice's button
            return
        text = self.query_one(TextArea).text.strip()
        if not text:
            self.query_one("#answer-error", Note).say("Type an answer, or pick a choice.")
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
