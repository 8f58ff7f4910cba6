"""Short texts for people, shared by the console and the command line."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any


def ago(seconds: float) -> str:
    """A short, stable duration: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def seconds_text(value: float) -> str:
    """0.5 -> "0.5s", 10.0 -> "10s"."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value:g}s"


def format_duration(seconds: float) -> str:
    """A compact span that keeps the next unit: 45s, 12m, 1h05m, 3d04h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `30m`, `2h`, `1d`, `1h30m`; ValueError, in a sentence, if not."""
    if re.fullmatch(r"\s*((?:\d+(?:\.\d+)?[smhd]?\s*)+)", text) is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m or 2h")
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text):
        total += float(number) * _DURATION_UNITS[unit or "s"]
    if total <= 0:
        raise ValueError("a duration must be more than 0")
    return total


def masked(text: str) -> str:
    """`text` with every character that is not printable shown as `?`: for file names, where an
    escape such as `\\x1b` would read as part of the name."""
    return "".join(c if c.isprintable() else "?" for c in text)


def short_path(path: str, limit: int = 28) -> str:
    """A folder for a narrow column: the home folder as `~`, and when still longer than
    `limit`, `…/` and its last two parts (which tell checkouts apart: `alice/checkout`)."""
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + "/")):
        path = "~" + path[len(home):]
    if len(path) <= limit:
        return path
    parts = [p for p in path.split("/") if p]
    return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else path


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 error`, `2 errors`; `many` for a noun that does not just take an s (`processes`)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def one_line(text: str, limit: int = 160) -> str:
    """`text` on one line (runs of white space become one space), capped at `limit` characters
    with an ellipsis, its control characters escaped as `printable` escapes them: a line break,
    an ESC or a bidi control from an agent neither splits the line nor reaches a terminal."""
    flat = " ".join(text.split())
    cut = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return printable(cut)


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


#: zero-width non-joiner and joiner: they change how the characters beside them are drawn (a
#: Persian word, an emoji sequence), so a file name may hold them between visible characters
JOINERS = frozenset("\u200c\u200d")


def identifier_problem(value: str, *, joiners: bool = False) -> str | None:
    """What makes `value` unfit to be an identifier (a task id, a worktree, a path, a name),
    as a phrase, or None. Identifiers are one line of visible text: no control character
    (line breaks, tabs and ESC included), no unpaired surrogate, no bidi control, no invisible
    format character. With `joiners` (paths), a joiner between two visible characters is
    allowed."""
    found = _UNSAFE.search(value)
    if found is None:
        if value.isascii():
            return None
        # invisible format characters (a zero-width space, a byte-order mark, a word joiner):
        # two identifiers that look the same must be the same
        hidden = next((c for i, c in enumerate(value) if unicodedata.category(c) == "Cf"
                       and not (joiners and c in JOINERS and _between_visible(value, i))),
                      None)
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


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded.

    Each cell is one line, made safe to print (a line break or ESC in a cell is escaped)."""
    cells_of = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells_of) for i in range(len(headers))]
    lines = []
    for row in cells_of:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _between_visible(value: str, index: int) -> bool:
    return (0 < index < len(value) - 1
            and unicodedata.category(value[index - 1]) != "Cf"
            and unicodedata.category(value[index + 1]) != "Cf")


def without_joiners(value: str) -> str:
    """`value` without the joiners that sit between two visible characters (for a check that
    would otherwise count them as unprintable)."""
    if not JOINERS.intersection(value):
        return value
    return "".join(c for i, c in enumerate(value)
                   if not (c in JOINERS and _between_visible(value, i)))


def compact_count(count: int) -> str:
    """950, 12.3k, 4.5M."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def tokens_text(usage: Mapping[str, Any]) -> str:
    """"12.3k tok" (the total, else input plus output); "" when nothing was reported."""
    total = usage.get("total") or (usage.get("input") or 0) + (usage.get("output") or 0)
    return f"{compact_count(int(total))} tok" if total else ""


def cost_text(usage: Mapping[str, Any]) -> str:
    """"$0.42", "0.42 EUR"; "" when the agent gave none."""
    cost = usage.get("cost")
    if not isinstance(cost, int | float) or isinstance(cost, bool):
        return ""
    currency = str(usage.get("currency") or "USD")
    amount = f"{cost:,.2f}" if cost >= 0.01 or cost == 0 else f"{cost:.4f}"  # not "$0.00"
    return f"${amount}" if currency.upper() == "USD" else f"{amount} {currency}"
