"""A small Textual app that stands in for the attached console behind `marrow-tui web`: it
shows a fixed line and whether it was given the operator token, and writes its process id to
the file named by its first argument (so a test can look at its command line and its end)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Input, Label

#: what the page shows once the console runs
SHOWN = "tiny console ready"


class TinyConsole(App[None]):
    def compose(self) -> ComposeResult:
        given = "yes" if os.environ.get("MARROW_OPERATOR_TOKEN") else "no"
        yield Label(f"{SHOWN}; operator token given: {given}")
        yield Input(id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        Path(sys.argv[2]).write_text(event.value, encoding="utf-8")
        self.exit()


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(str(os.getpid()), encoding="utf-8")
    TinyConsole().run()
