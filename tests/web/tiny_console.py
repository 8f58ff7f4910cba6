"""A small Textual app that stands in for the attached console behind `marrow-tui web`.

    tiny_console.py PIDFILE ANSWERFILE [URI]

It writes its process id to PIDFILE (so a test can read its command line and see it end);
with URI it first reads the runtime's state over the wire as an operator, with the operator
token from its environment, as the attached console does; it shows one line saying what it
found, and writes what is typed into its input to ANSWERFILE.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Input, Label

#: the start of the line the page shows once the console runs
SHOWN = "tiny console ready"


async def attached(uri: str) -> str:
    from marrow_tui.attach.mirror import MirroredRuntime

    mirror = MirroredRuntime(uri, "operator/web-test", os.environ["MARROW_OPERATOR_TOKEN"])
    await mirror.start()
    try:
        return f"attached to {mirror.hub_id} as the operator"
    finally:
        await mirror.stop()


class TinyConsole(App[None]):
    def __init__(self, line: str, answers: Path) -> None:
        super().__init__()
        self.line = line
        self.answers = answers

    def compose(self) -> ComposeResult:
        yield Label(self.line)
        yield Input(id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.answers.write_text(event.value, encoding="utf-8")


def main() -> None:
    Path(sys.argv[1]).write_text(str(os.getpid()), encoding="utf-8")
    given = "yes" if os.environ.get("MARROW_OPERATOR_TOKEN") else "no"
    line = f"{SHOWN}; operator token given: {given}"
    if len(sys.argv) > 3:
        line += "; " + asyncio.run(attached(sys.argv[3]))
    TinyConsole(line, Path(sys.argv[2])).run()


if __name__ == "__main__":
    main()
