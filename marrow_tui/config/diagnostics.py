"""Problems found in a config file (marrow.toml or WORKFLOW.md): the file, the key as a dotted
name (`agents[1].heartbeat_interval`, indexes count from 0), its line, how bad, and why."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: a key's place in a document: ("agents", 1, "name") is agents[1].name
KeyPath = tuple[str | int, ...]

#: a TOML key that needs no quotes
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(slots=True, frozen=True)
class Diagnostic:
    path: Path
    key: str
    line: int | None
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.severity}: {self.message}"


class Findings:
    """`errors` and `warnings` of something that has `diagnostics` (a loaded file)."""

    __slots__ = ()
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def dotted(path: Iterable[str | int], *, quote: bool = True) -> str:
    """("agents", 0, "env", "A B") -> 'agents[0].env."A B"'; without `quote` (YAML keys,
    which are not written in TOML's syntax) -> 'agents[0].env.A B'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if not quote or BARE_KEY.fullmatch(part) else (
            '"' + part.replace('"', '\\"') + '"')
        out += f".{text}" if out else text
    return out


def line_of(lines: Mapping[KeyPath, int], path: Iterable[str | int]) -> int | None:
    """The line of `path`, else of its closest recorded parent (a table header, a section)."""
    key = tuple(path)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def by_line(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """In file order; the ones without a line first, each group in the order found."""
    return sorted(diagnostics, key=lambda d: d.line or 0)


class Reporter:
    """Collects the diagnostics of one file, each placed on its key's line."""

    #: whether `dotted` quotes keys that are not bare TOML keys
    quote_keys = True

    def __init__(self, path: Path, lines: Mapping[KeyPath, int]) -> None:
        self.path = path
        self.lines = lines
        self.diagnostics: list[Diagnostic] = []
        self._errors = 0  # counted as reported: a file of 90,000 tables asks per table

    def line(self, at: Iterable[str | int]) -> int | None:
        return line_of(self.lines, at)

    def report(self, at: KeyPath, message: str, severity: str = "error") -> None:
        self.diagnostics.append(Diagnostic(
            self.path, dotted(at, quote=self.quote_keys), self.line(at), message, severity))
        self._errors += severity == "error"

    def warn(self, at: KeyPath, message: str) -> None:
        self.report(at, message, "warning")

    def error_count(self) -> int:
        return self._errors
