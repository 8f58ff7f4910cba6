"""Reading marrow.toml: `load_config` and `Loaded`. The file is read with tomllib and checked
whole; problems are `Diagnostic`s that name the file, the key and the line.

A marrow-core runtime config loads as it is: every key of its schema is known, the ones we
have no use for are read and reported as ignored (docs/configuration.md lists them).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import userfile
from .agents import SECTIONS, AgentChecks
from .diagnostics import Diagnostic, Findings, by_line
from .model import Config
from .notify import NotifyChecks
from .schema import Spec
from .services import ServiceChecks
from .toml_lines import shape_problem

_TOP_KEYS = {
    "core_dir": Spec("str", ignored=True),
    "profile": Spec("table"),
    "service": Spec("table"),
    "agents": Spec("tables"),
    "plugins": Spec("tables"),
    "services": Spec("tables"),
    "ipc": Spec("table"),
    "sync": Spec("table"),
    "self_check": Spec("table"),
    # ours
    "keys": Spec("table"),
    "notify": Spec("table"),
}


@dataclass(slots=True)
class Loaded(Findings):
    """What `load_config` found. `config` is None when there is any error."""

    config: Config | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    def validate(self) -> list[Diagnostic]:
        """The diagnostics for `marrow-tui validate`: ours plus "no agents configured".

        Loading accepts a config without agents (the console runs without any); validating
        one, like marrow-core's `validate`, calls that an error.
        """
        found = list(self.diagnostics)
        if self.config is not None and not self.config.agents and not self.config.services:
            found.append(Diagnostic(self.config.path, "agents", None,
                                    "no agents or services configured (add an [[agents]] or "
                                    "[[services]] table)"))
        return by_line(found)


class _Checker(AgentChecks, ServiceChecks, NotifyChecks):
    """Walks the parsed document, collecting diagnostics and ignored keys."""

    def check(self, data: dict[str, Any]) -> Config | None:
        top = self.read(data, (), _TOP_KEYS, "")
        sections = {name: self.read(top[name], (name,), specs, name) if name in top else {}
                    for name, specs in SECTIONS}
        for index, plugin in enumerate(top.get("plugins", [])):
            if isinstance(plugin, dict):
                self._plugin(index, plugin)
        mode = self._mode(sections["service"])
        agents, names = self._agents(top.get("agents", []), mode)
        services = self._services(top.get("services", []))
        self._wake_agent(sections["self_check"], names)
        profile = sections["profile"]
        rules_path = self._rules_path(profile)
        profile_root, source_context_dir = self._profile_paths(profile)
        keys = self._keys(top.get("keys", {}))
        notify = self._notify(top.get("notify"))
        if self.error_count():
            return None
        return Config(
            path=self.path.absolute(),
            agents=tuple(agents),
            services=tuple(services),
            rules_path=rules_path,
            ignored=tuple(self.ignored),
            mode=mode,
            profile_root=profile_root,
            source_context_dir=source_context_dir,
            keys=keys,
            notify=notify,
            lines=self.lines,
        )

    def _keys(self, table: Mapping[str, Any]) -> dict[str, str]:
        """[keys]: action id -> key. Whether an id names an action, and whether two keys of
        one pane collide, the console's table of actions decides."""
        keys: dict[str, str] = {}
        for action, key in table.items():
            at = ("keys", action)
            if isinstance(key, dict):
                example = f"{action}.{next(iter(key))}" if key else "claims.handoff"
                self.report(at, f'expected a key such as "ctrl+h", found a table (write an '
                                f'action id that has a dot in quotes: "{example}" = "ctrl+h")')
            elif not isinstance(key, str):
                self._type_error(at, 'a key such as "ctrl+h"', key)
            elif not key.strip():
                self.report(at, "must not be empty (delete the line to keep the default key)")
            else:
                keys[action] = key.strip()
        return keys


def _syntax_error(path: Path, exc: tomllib.TOMLDecodeError, text: str) -> Diagnostic:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line: int | None = int(match.group(1))
        message = message[:match.start()].rstrip() + f" (column {match.group(2)})"
    elif "(at end of document)" in message:
        line = text.count("\n") + (0 if text.endswith("\n") else 1) or 1
        message = message.replace(" (at end of document)", " (at the end of the file)")
    else:
        line = None
    return Diagnostic(path, "", line, f"invalid TOML: {message}")


def load_config_text(text: str, path: Path, *, check_commands: bool = True) -> Loaded:
    """`load_config` for text that claims to be the file at `path` (which need not exist)."""
    problem = text_problem(path, text)
    if problem is not None:
        return Loaded(None, [problem])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Loaded(None, [_syntax_error(path, exc, text)])
    except RecursionError:  # shape_problem says no; kept so that nothing escapes
        return Loaded(None, [_too_complex(path, text)])
    checker = _Checker(path, text, check_commands=check_commands)
    config = checker.check(data)
    return Loaded(config, by_line(checker.diagnostics))


def text_problem(path: Path, text: str) -> Diagnostic | None:
    """A config over the size cap, nested too deeply or with a key of too many parts:
    refused before it is parsed."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > userfile.CONFIG_FILE_CAP:
        return Diagnostic(path, "", None, _too_large(size))
    shape = shape_problem(text)
    if shape is not None:
        return Diagnostic(path, "", shape[0], f"invalid TOML: {shape[1]}")
    return None


def _too_large(size: int | None) -> str:
    return userfile.too_large(size, userfile.CONFIG_FILE_CAP) + " for a config file"


def _too_complex(path: Path, text: str) -> Diagnostic:
    line = (shape_problem(text) or (1, ""))[0]
    return Diagnostic(path, "", line, "invalid TOML: nested too deeply to read")


def load_config(path: Path, *, check_commands: bool = True) -> Loaded:
    """Reads and checks the config at `path`. Never raises for a bad file: see `Loaded`.

    Only a regular file of at most CONFIG_FILE_CAP bytes is read (a FIFO is refused, never
    waited on). `check_commands=False` skips the "command not found" check (for tools that
    only want the structure, on a machine without the agents installed).
    """
    try:
        raw = userfile.read_bytes(path, userfile.CONFIG_FILE_CAP)
    except userfile.RefusedFile as exc:
        message = {"missing": "no such file", "large": _too_large(exc.size)}.get(
            exc.kind, exc.reason)
        return Loaded(None, [Diagnostic(path, "", None, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return Loaded(None, [Diagnostic(path, "", line, "not UTF-8 text")])
    return load_config_text(text, path, check_commands=check_commands)

