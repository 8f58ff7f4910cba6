"""Answer an agent's question: its choices as buttons, or any text; a permission request
or a conflict (an edit blocked by another agent's lease) with one of its choices only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ConflictShown:
    """What the dialog shows of a conflict (ui/conflict.py makes it)."""

    #: who holds which paths since when on which task
    held: Text
    #: what each choice does
    meanings: Text
    #: the blocked tool call: its kind and title, command or diff, paths
    detail: str
    #: opens both agents' transcripts side by side (the `t` key), when there is a way to
    side_by_side: Callable[[], None] | None = None


class AnswerModal(Dialog[str | None]):
    """Answer an agent's question: its choices as buttons, or any text (several lines)."""

    BINDINGS = [
        Binding("escape", "cancel", "Answer later", id="answer.cancel"),
        Binding("ctrl+s,f2", "send", "Send", id="answer.send"),
        Binding("t", "side_by_side", "Both transcripts", id="answer.side_by_side"),
    ]

    def __init__(self, asker: str, question: str, *, context: str = "", about: str = "",
                 waited: str = "", choices: list[str] | None = None,
                 default: str | None = None, permission: bool = False,
                 conflict: ConflictShown | None = None) -> None:
        super().__init__()
        self.conflict = conflict if choices else None
        #: an agent asks leave to run a tool call (or its edit is blocked by a lease): only
        #: its choices answer it, no free text
        self.permission = (permission or conflict is not None) and bool(choices)
        self.asker, self.question, self.context = asker, question, context
        self.about, self.waited = about, waited
        self.choices = choices or []
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide answer"):
            where = f" about {self.about}" if self.about and self.about != self.asker else ""
            what = "asks permission" if self.permission else f"asks{where}"
            if self.conflict is not None:
                what = "is blocked by another agent's lease"
            yield Label(literal(f"{self.asker} {what} (waiting {self.waited})"),
                        classes="title")
            with Body():
                yield Static(literal(self.question, lines=True), classes="body question")
                if self.conflict is not None:
                    yield from self._conflict(self.conflict)
                elif self.context and self.permission:  # what it would run or change, in sight
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
                    if self.conflict is not None and self.conflict.side_by_side is not None:
                        hint += "; t shows both transcripts"
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
                    if self.conflict is not None and self.conflict.side_by_side is not None:
                        yield Button("Both transcripts (t)", id="both")
                    # Not "Cancel": that would read as cancelling the question itself.
                    yield Button("Answer later (esc)", id="cancel")

    def _conflict(self, shown: ConflictShown) -> ComposeResult:
        yield Label("Held", classes="field-label")
        yield Static(shown.held, classes="held")
        yield Label("Choices", classes="field-label")
        yield Static(shown.meanings, classes="meanings")
        if shown.detail:
            yield Label("The edit", classes="field-label")
            with VerticalScroll(classes="detail"):
                yield Static(permission_detail(shown.detail))

    def _choices(self) -> ComposeResult:
        with Horizontal(classes="choices"):
            for index, choice in enumerate(self.choices):
                yield Button(literal(choice), id=f"choice-{index}", classes="choice")

    def on_mount(self) -> None:
        # With choices, the first one has the focus (Enter picks it, Tab moves on to
        # the others and to the text box); without, the text box.
        if self.choices:
            self.query_one("#choice-0", Button).focus()
            # the question and who holds what come first: the body opens at its top
            body = self.query_one(Body)
            self.call_after_refresh(body.scroll_home, animate=False)
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "side_by_side":
            return self.conflict is not None and self.conflict.side_by_side is not None
        return True

    def action_side_by_side(self) -> None:
        """Both agents' transcripts over this dialog; closing them comes back to it."""
        if self.conflict is not None and self.conflict.side_by_side is not None:
            self.conflict.side_by_side()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        button = event.button
        if button.id == "send":
            self.action_send()
        elif button.id == "cancel":
            self.dismiss(None)
        elif button.id == "both":
            self.action_side_by_side()
        elif button.id and button.id.startswith("choice-"):
            self.dismiss(self.choices[int(button.id.removeprefix("choice-"))])
