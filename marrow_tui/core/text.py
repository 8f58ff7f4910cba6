"""Short texts for people, shared by the console and the command line."""

from __future__ import annotations

import logging
import re
import unicodedata


def ago(seconds: float) -> str:
    """A short, stable duration: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---- safe to print ---------------------------------------------------------------------------
#
# Whatever reaches a terminal or a log goes through `printable` (the `--no-ui` printer, the
# hub subcommands' output, `logging` through `SafeFormatter`). Agents send the text, so it
# may hold escape sequences (a window title, clear screen, a hyperlink), line breaks that
# forge log lines, bidi overrides that make a line read differently than it is, or lone
# surrogates that no UTF-8 stream can encode. Identifiers with any of these are refused at
# the wire (`identifier_problem`); free text keeps them and is escaped where it is shown.

#: C0 controls, DEL and C1 controls; lone surrogates; bidi controls; the Unicode line and
#: paragraph separators (U+2028/U+2029, line breaks to some terminals and editors)
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\\ud800-\\udfff\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
_UNSAFE_IN_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\\ud800-\\udfff\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    point = ord(char)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """`text` safe for a terminal or a log: every control character (ESC, DEL, C1, and line
    breaks and tabs unless `lines`), lone surrogate and bidi control is written as a visible
    escape (`\\x1b`, `\\ud800`, `\\n`). With `lines`, line breaks and tabs are kept (CRLF
    becomes LF); a lone CR, which would overwrite its line, is escaped. The result always
    encodes as UTF-8. Ordinary text, any script, emoji, is left as it is."""
    if lines:
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
        pattern = _UNSAFE_IN_LINES
    else:
        pattern = _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def identifier_problem(value: str) -> str | None:
    """What makes `value` unfit to be an identifier (a task id, a worktree, a path, a name),
    as a phrase, or None. Identifiers are one line of visible text: no control character
    (line breaks, tabs and ESC included), no unpaired surrogate, no bidi control, no invisible
    format character."""
    found = _UNSAFE.search(value)
    if found is None:
        if value.isascii():
            return None
        # invisible format characters (a zero-width space, a byte-order mark, a word joiner):
        # two identifiers that look the same must be the same
        hidden = next((c for c in value if unicodedata.category(c) == "Cf"), None)
        if hidden is None:
            return None
        return f"an invisible format character (U+{ord(hidden):04X})"
    char = found.group()
    point = ord(char)
    if 0xD800 <= point <= 0xDFFF:
        what = "an unpaired surrogate"
    elif char in _BIDI:
        what = "a bidirectional control"
    else:
        what = "a control character"  # C0, DEL, C1, or U+2028/U+2029
    return f"{what} (U+{point:04X})"


class SafeFormatter(logging.Formatter):
    """Wraps a formatter so every record stays a record: the message on one line with its
    controls escaped, a traceback on its own lines but with no escape sequence in them."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format is the logging module's to report, as before
            return printable(self.inner.format(record), lines=True)
        safe.msg, safe.args = printable(message), None
        return printable(self.inner.format(safe), lines=True)
