"""Typed reading of TOML tables against a schema of `Spec`s: unknown keys, wrong types and
values out of range become diagnostics on their lines; what is well-typed comes back."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.acp import parse_policy
from .diagnostics import KeyPath, Reporter
from .toml_lines import key_lines


@dataclass(slots=True, frozen=True)
class Spec:
    #: str | int | float | bool | strs (a string or an array of strings) | env (str values)
    #: | anyenv (scalar values, stringified: plugins) | table | tables (array of tables)
    #: | command (a string or an array of strings) | port (an integer or "auto")
    #: | deps (names, or { name, env } tables)
    kind: str
    lo: float | None = None
    hi: float | None = None
    #: read for compatibility, no effect: listed in Config.ignored
    ignored: bool = False


def _toml_type(value: object) -> str:
    checks: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "boolean"), (str, "string"), (int, "integer"), (float, "float"),
        (list, "array"), (dict, "table"), (dt.datetime, "datetime"), (dt.date, "date"),
        (dt.time, "time"),
    )
    for kind, name in checks:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _found(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    shown = repr(value) if isinstance(value, (str, int, float)) else ""
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{_toml_type(value)} {shown}".rstrip()


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def unknown_key_message(key: str, specs: Mapping[str, Spec]) -> str:
    close = difflib.get_close_matches(key, list(specs), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def command_exists(program: str, path_env: str | None) -> bool:
    """Whether exec would find `program`: an absolute path, or a name on PATH."""
    if "/" in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program, path=path_env) is not None


class TableReader(Reporter):
    """Reads a parsed document's tables; the checks of agents and services build on it."""

    def __init__(self, path: Path, text: str, *, check_commands: bool) -> None:
        super().__init__(path, key_lines(text))
        self.check_commands = check_commands
        self.base = path.absolute().parent
        self.ignored: list[str] = []

    def resolve(self, raw: str, base: Path | None = None) -> Path:
        """A path from the file: `~` expanded, relative ones joined to the config's folder."""
        expanded = os.path.expanduser(raw)
        return Path(os.path.normpath((base or self.base) / expanded))

    # -- typed reading --

    def read(self, table: Mapping[str, Any], at: KeyPath, specs: Mapping[str, Spec],
             ignored_prefix: str) -> dict[str, Any]:
        """Checks every key of `table` against `specs`; returns the well-typed values."""
        values: dict[str, Any] = {}
        for key, raw in table.items():
            where = at + (key,)
            spec = specs.get(key)
            if spec is None:
                self.report(where, unknown_key_message(key, specs))
                continue
            ok, value = self._convert(where, spec, raw)
            if not ok:
                continue
            values[key] = value
            if spec.ignored:
                name = f"{ignored_prefix}.{key}" if ignored_prefix else key
                if name not in self.ignored:
                    self.ignored.append(name)
        return values

    def _type_error(self, at: KeyPath, expected: str, raw: object) -> tuple[bool, Any]:
        self.report(at, f"expected {expected}, found {_found(raw)}")
        return False, None

    def _convert(self, at: KeyPath, spec: Spec, raw: object) -> tuple[bool, Any]:
        converter = getattr(self, f"_as_{spec.kind}")
        ok, value = converter(at, raw)
        if ok and spec.kind in ("int", "float"):
            value = self._clamp(at, spec, value)
        return ok, value

    def _as_str(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, str):
            return True, raw
        return self._type_error(at, "string", raw)

    def _as_int(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return True, raw
        return self._type_error(at, "integer", raw)

    def _as_float(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return True, float(raw)
        return self._type_error(at, "number", raw)

    def _as_bool(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, bool):
            return True, raw
        return self._type_error(at, "boolean (true or false)", raw)

    def _as_table(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, dict):
            return True, raw
        return self._type_error(at, "table", raw)

    def _as_policy(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        """A permission policy: ask, allow, deny, or a table (core/acp.py's parse_policy)."""
        policy, problems = parse_policy(raw, "")
        for problem in problems:
            where, _, message = problem.partition(": ")
            self.report(at + tuple(part for part in where.split(".") if part), message)
        return not problems, policy

    def _as_tables(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if not isinstance(raw, list):
            return self._type_error(at, "array of tables", raw)
        ok = True
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                ok = self._type_error(at + (index,), "table", item)[0]
        return ok, raw

    def _as_strs(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        if isinstance(raw, str):
            return True, [raw.strip()] if raw.strip() else []
        if not isinstance(raw, list):
            return self._type_error(at, "string or array of strings", raw)
        ok = True
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                ok = self._type_error(at + (index,), "string", item)[0]
        return ok, [item.strip() for item in raw if ok and item.strip()]

    def _as_env(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        return self._env(at, raw, stringify=False)

    def _as_anyenv(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        return self._env(at, raw, stringify=True)

    def _env(self, at: KeyPath, raw: object, *, stringify: bool) -> tuple[bool, Any]:
        if not isinstance(raw, dict):
            return self._type_error(at, "table of strings", raw)
        ok = True
        pairs: list[tuple[str, str]] = []
        for name, value in raw.items():
            where = at + (name,)
            if not name or "=" in name or "\0" in name:
                self.report(where, "an environment variable name must be non-empty, "
                                   "without '=' or NUL")
                ok = False
            elif isinstance(value, str) or (
                    stringify and isinstance(value, (int, float, bool))):
                pairs.append((name, value if isinstance(value, str) else str(value)))
            else:
                ok = self._type_error(where, "string", value)[0]
        return ok, tuple(pairs)

    def _clamp(self, at: KeyPath, spec: Spec, value: float) -> float:
        lo = spec.lo if spec.lo is not None else value
        hi = spec.hi if spec.hi is not None else value
        used = max(lo, min(hi, value))
        if used != value:
            used = type(value)(used)
            span = (f"[{number_text(lo)}, {number_text(hi)}]" if spec.hi is not None
                    else f">= {number_text(lo)}")
            self.warn(at, f"{number_text(value)} is outside {span}, using {number_text(used)}")
        return used

    def _required(self, at: KeyPath, raw: Mapping[str, Any], values: Mapping[str, Any],
                  key: str) -> str:
        if key not in raw:
            self.report(at + (key,), f"missing required key {key!r}")
            return ""
        value = values.get(key, "").strip()
        if key in values and not value:
            self.report(at + (key,), f"{key} must not be empty")
        return str(value)

