"""Cancelling a question an issue's run asked: the question alone, or the issue's work too."""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ..literal import literal

#: what the operator chose: the question only, the question and the issue, or neither
CancelChoice = Literal["cancel", "park"] | None


class CancelQuestionModal(ModalScreen[CancelChoice]):
    """Cancel a question of an orchestrated issue. Cancelled alone, the agent's run usually
    fails on it and the issue runs again (asking again); parking stops the work until the
    operator retries the issue. The dialog says both, so the choice is an informed one."""

    BINDINGS = [
        Binding("y", "choose('cancel')", "Cancel the question", id="cancel_question.cancel"),
        Binding("p", "choose('park')", "Cancel and park", id="cancel_question.park"),
        Binding("n,escape", "choose(None)", "Keep it", id="cancel_question.keep"),
    ]

    def __init__(self, request_id: str, asker: str, issue: str) -> None:
        super().__init__(classes="dialog")
        self.request_id, self.asker, self.issue = request_id, asker, issue

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(literal(f"Cancel {self.request_id}?"), classes="title")
            yield Static(literal(
                f"{self.asker} stops waiting and is told the question was cancelled, with "
                "no answer. An agent that cannot go on without it fails, and issue "
                f"{self.issue} runs again after the backoff and asks again.\n\n"
                f"Park (p) also stops issue {self.issue}'s run: it is not run again until "
                "you retry it (R in Issues).", lines=True), classes="body")
            with Horizontal(classes="buttons"):
                yield Button("Cancel it (y)", variant="warning", id="cancel")
                yield Button(literal(f"Park {self.issue} (p)"), variant="error", id="park")
                yield Button("Keep (n)", id="keep")

    def action_choose(self, choice: CancelChoice) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        chosen = event.button.id
        self.dismiss("cancel" if chosen == "cancel" else "park" if chosen == "park" else None)
