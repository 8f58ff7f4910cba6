"""[notify] (ours): the command run for events worth a person's attention; its schema and
checks."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any

from .diagnostics import KeyPath
from .model import NOTIFY_EVENTS, NOTIFY_TIMEOUT, NotifyConfig
from .schema import Spec, TableReader, command_exists

NOTIFY_KEYS = {
    "command": Spec("command"),
    "events": Spec("strs"),
    "mute": Spec("strs"),
    "timeout": Spec("float", 1, 300),
}


class NotifyChecks(TableReader):
    """The checks of [notify]. Its command is read as [[services]] read theirs (the checker
    that uses this has `_as_command`)."""

    def _notify(self, table: Mapping[str, Any] | None) -> NotifyConfig | None:
        if table is None:
            return None
        at: KeyPath = ("notify",)
        values = self.read(table, at, NOTIFY_KEYS, "notify")
        command, shell = self._notify_command(table, values)
        events = self._notify_events(values.get("events"))
        return NotifyConfig(command=command, shell=shell, events=events,
                            mute=tuple(dict.fromkeys(values.get("mute", ()))),
                            timeout=values.get("timeout", NOTIFY_TIMEOUT), cwd=self.base)

    def _notify_command(self, table: Mapping[str, Any],
                        values: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
        where: KeyPath = ("notify", "command")
        if "command" not in table:
            self.report(where, "missing required key 'command' (the program to run, e.g. "
                               'command = ["notify-send", "marrow-tui"])')
            return (), ""
        if "command" not in values:  # a wrong type, said
            return (), ""
        form, value = values["command"]
        if form == "shell":
            if not value:
                self.report(where, "command must not be empty")
            return (), value
        if not value or not value[0].strip():
            self.report(where, "command must not be empty" if not value
                        else "the first word must name a program")
            return (), ""
        program = value[0]
        if "/" in program and not os.path.isabs(program):
            program = str(self.resolve(program))
        if self.check_commands and not command_exists(program, None):
            self.report(where, f"command not found: {program}")
        return (program, *value[1:]), ""

    def _notify_events(self, events: list[str] | None) -> tuple[str, ...]:
        if events is None:
            return tuple(NOTIFY_EVENTS)
        if not events:
            self.warn(("notify", "events"), "no events: the command never runs")
        for index, name in enumerate(events):
            if name not in NOTIFY_EVENTS:
                close = difflib.get_close_matches(name, list(NOTIFY_EVENTS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.report(("notify", "events", index),
                            f"unknown event {name!r}{hint}; the events are "
                            + ", ".join(NOTIFY_EVENTS))
        return tuple(dict.fromkeys(name for name in events if name in NOTIFY_EVENTS))
