"""Where keys are in a TOML text: tomllib gives values, not positions, so a small scanner over
the raw text records the line of every key, table header and array element."""

from __future__ import annotations

import contextlib
import re
import tomllib

from .diagnostics import BARE_KEY, KeyPath

#: the deepest nesting of arrays and inline tables a config may have (tomlkit's own limit;
#: tomllib would recurse until Python gives up). A real config needs three or four.
MAX_NESTING = 100
#: the most parts a dotted key may have (a.b.c has three)
MAX_KEY_PARTS = 100

# A string's body up to its closing quote, found by a regular expression rather than one
# character at a time (a 50 MB string took that walk 20 s). Escapes count in basic strings.
_STRING_BODY = {
    '"""': re.compile(r'[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*'),
    "'''": re.compile(r"[^']*(?:'(?!'')[^']*)*"),
    '"': re.compile(r'[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*'),
    "'": re.compile(r"[^'\n]*"),
}
_QUOTES = ('"""', "'''", '"', "'")
_WS = re.compile(r"[ \t]*")
#: blank lines and comments, in one step
_BLANKS = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
_BARE_VALUE = re.compile(r"[^,\]}\n\r#]*")
_SHAPE_TOKENS = re.compile(r"""[\[\]{}#"'\n.=,]""")
#: the locator records key paths up to this length (no check asks about deeper ones)
_RECORD_DEPTH = 8


def _string_end(text: str, start: int) -> int | None:
    """Just past the closing quote of the string that opens at `start`; None if it is not
    closed (a one-line string at the end of its line, any string at the end of the text)."""
    quote = next(q for q in _QUOTES if text.startswith(q, start))
    body = _STRING_BODY[quote].match(text, start + len(quote))
    assert body is not None  # each pattern matches the empty string
    end = body.end()
    if not text.startswith(quote, end):
        return None
    end += len(quote)
    if len(quote) == 3:  # up to two more quotes belong to the string
        for _ in range(2):
            if text.startswith(quote[0], end):
                end += 1
    return end


def shape_problem(text: str, *, nesting: int = MAX_NESTING,
                  key_parts: int = MAX_KEY_PARTS) -> tuple[int, str] | None:
    """(line, why) when arrays and inline tables nest deeper than `nesting`, or a dotted key
    has more than `key_parts` parts; else None. Run before parsing: tomllib recurses once per
    level until Python gives up, and its time and memory grow with the square of a key's parts.

    Brackets in strings and comments do not count; a table header counts one or two and
    closes on its line. Dots count from one separator (= , a bracket, a new line) to the
    next, so the dots of two floats never add up.
    """
    depth, dots, line, i = 0, 0, 1, 0
    while match := _SHAPE_TOKENS.search(text, i):
        c, i = match.group(), match.end()
        if c == ".":
            dots += 1
            if dots >= key_parts:
                return line, f"a dotted key with more than {key_parts} parts"
            continue
        if c in "\"'":  # a quoted part of a key, or a string value: skipped whole
            end = _string_end(text, match.start())
            if end is None:  # the parser will say where; go on after this line
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
            line += text.count("\n", i, end)
            i = end
            continue
        dots = 0
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in "[{":
            depth += 1
            if depth > nesting:
                return line, f"arrays or inline tables nested more than {nesting} levels deep"
        elif c in "]}":
            depth = max(0, depth - 1)
    return None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Key paths such as ("agents", 1, "name") -> the line the key is written on, for a text
    that tomllib has parsed. Paths deeper than a check asks about are cut short."""
    return _Locator(text).lines


class _Locator:

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        self._text = text
        self._i = 0
        self._line = 1
        # The text has already parsed with tomllib; a surprise here only loses positions.
        with contextlib.suppress(ValueError, IndexError, RecursionError):
            self._document()

    # -- low level --

    def _peek(self, n: int = 0) -> str:
        i = self._i + n
        return self._text[i] if i < len(self._text) else ""

    def _at(self, s: str) -> bool:
        return self._text.startswith(s, self._i)

    def _advance(self, n: int = 1) -> None:
        self._line += self._text.count("\n", self._i, self._i + n)
        self._i += n

    def _skip_ws(self) -> None:
        match = _WS.match(self._text, self._i)
        assert match is not None
        self._i = match.end()

    def _skip_blank(self) -> None:
        """Whitespace, newlines and comments (inside arrays and inline tables)."""
        match = _BLANKS.match(self._text, self._i)
        assert match is not None
        self._advance(match.end() - self._i)

    def _record(self, path: KeyPath, line: int) -> None:
        for n in range(1, min(len(path), _RECORD_DEPTH) + 1):
            self.lines.setdefault(path[:n], line)

    # -- grammar --

    def _document(self) -> None:
        table: KeyPath = ()
        while self._i < len(self._text):
            start = self._i
            self._skip_ws()
            c = self._peek()
            if c in ("\n", "\r", "#"):
                self._skip_blank()
            elif self._at("[["):
                line = self._line
                self._advance(2)
                table = self._array_header(self._key(), line)
                self._skip_ws()
                self._advance(2)
            elif c == "[":
                line = self._line
                self._advance()
                table = self._resolve(self._key())
                self._record(table, line)
                self._skip_ws()
                self._advance()
            elif c:
                self._key_value(table)
            if self._i == start:  # never loop on something unexpected
                self._advance()

    def _key_value(self, table: KeyPath) -> None:
        line = self._line
        path = table + self._key()
        self._skip_ws()
        if self._peek() != "=":
            raise ValueError("expected '='")
        self._advance()
        self._skip_ws()
        self._record(path, line)
        self._value(path)

    def _resolve(self, segments: tuple[str, ...]) -> KeyPath:
        path: list[str | int] = []
        for segment in segments[:_RECORD_DEPTH]:  # a key of 100,000 parts stays linear
            path.append(segment)
            count = self._arrays.get(tuple(path))
            if count is not None:
                path.append(count - 1)
        return (*path, *segments[_RECORD_DEPTH:])

    def _array_header(self, segments: tuple[str, ...], line: int) -> KeyPath:
        base = self._resolve(segments[:-1]) + (segments[-1],)
        count = self._arrays.get(base, 0)
        self._arrays[base] = count + 1
        path = base + (count,)
        self._record(path, line)
        return path

    def _key(self) -> tuple[str, ...]:
        segments: list[str] = []
        while True:
            self._skip_ws()
            c = self._peek()
            if c in ('"', "'"):
                start = self._i
                self._string()
                quoted = self._text[start:self._i]
                if c == "'" or "\\" not in quoted:
                    segments.append(quoted[1:-1])
                else:  # escapes: tomllib reads them
                    segments.append(tomllib.loads("k = " + quoted)["k"])
            else:
                match = BARE_KEY.match(self._text, self._i)
                if match is None:
                    raise ValueError("expected a key")
                segments.append(match.group())
                self._advance(match.end() - self._i)
            self._skip_ws()
            if self._peek() != ".":
                return tuple(segments)
            self._advance()

    def _string(self) -> None:
        end = _string_end(self._text, self._i)
        if end is None:
            raise ValueError("unterminated string")
        self._advance(end - self._i)

    def _value(self, path: KeyPath) -> None:
        c = self._peek()
        if c in ('"', "'"):
            self._string()
        elif c == "[":
            self._array(path)
        elif c == "{":
            self._inline_table(path)
        else:
            match = _BARE_VALUE.match(self._text, self._i)
            assert match is not None
            self._advance(match.end() - self._i)

    def _array(self, path: KeyPath) -> None:
        self._advance()
        index = 0
        while True:
            self._skip_blank()
            c = self._peek()
            if not c:
                raise ValueError("unterminated array")
            if c == "]":
                self._advance()
                return
            if c == ",":
                self._advance()
                index += 1
                continue
            self._record(path + (index,), self._line)
            self._value(path + (index,))

    def _inline_table(self, path: KeyPath) -> None:
        self._advance()
        while True:
            self._skip_blank()
            c = self._peek()
            if not c:
                raise ValueError("unterminated inline table")
            if c == "}":
                self._advance()
                return
            if c == ",":
                self._advance()
                continue
            self._key_value(path)


