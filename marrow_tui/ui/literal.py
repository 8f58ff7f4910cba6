"""Agent text as the console shows it: literally, never as markup, controls made visible.

Names, task ids, questions, choices, chat, notes, output lines and file errors come from
agents, files and other programs. Textual reads a plain `str` as content markup in most places
(a Label, a Button, a toast, a border title), where `[/x]` raises a MarkupError and
`[link=...]` makes a hyperlink; and an escape sequence would reach the operator's terminal.
So agent text reaches a widget only as `Content`/`Text` built here (or through a widget with
`markup=False`), after `printable` (core/text.py) has written its controls out as `\\x1b`.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

from ..core.text import printable


def literal(text: object, *, lines: bool = False) -> Content:
    """`text` as content that is shown as it is: no markup; with `lines`, line breaks kept."""
    return Content(printable(str(text), lines=lines))


def safe_text(text: Text, *, lines: bool = False) -> Text:
    """A styled `Text` with its controls escaped (`printable`) and its styles kept.

    Text built in code (`Text.append`) is never read as markup, but the agent text in it may
    still hold escape sequences. The common case, nothing to escape, returns `text` itself.
    """
    plain = text.plain
    if printable(plain, lines=lines) == plain:
        return text
    # Cut at every span edge: each piece then has one set of styles, and can be escaped whole.
    cuts = sorted({edge for span in text.spans for edge in (span.start, span.end)
                   if 0 < edge < len(plain)})
    out = Text(style=text.style, justify=text.justify, overflow=text.overflow,
               no_wrap=text.no_wrap, end=text.end)
    for piece in text.divide(cuts):
        shown = Text(printable(piece.plain, lines=lines))
        for span in piece.spans:
            if span.start < span.end:
                shown.stylize(span.style)
        out.append_text(shown)
    return out
