"""The services' side of marrow.toml ([[services]], ours: helper processes; not marrow-core's
[service]): its schema and checks, including the checks that need every service at once."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.graph import cycle_in, cycle_text
from .diagnostics import KeyPath
from .model import HEALTH_KINDS, RESTART_POLICIES, Dependency, HealthCheck, ServiceConfig
from .schema import Spec, TableReader, command_exists, number_text

#: [[services]] (ours: helper processes; not to be confused with marrow-core's [service])
SERVICES_KEYS = {
    "name": Spec("str"),
    "command": Spec("command"),
    "cwd": Spec("str"),
    "env": Spec("env"),
    "port": Spec("port"),
    "depends_on": Spec("deps"),
    "health": Spec("table"),
    "start_timeout": Spec("float", 1, 3600),
    "restart": Spec("str"),
    "max_restarts": Spec("int", 0),
    "backoff_initial": Spec("float", 0.1, 3600),
    "backoff_max": Spec("float", 1, 86400),
    "stop_grace": Spec("float", 0, 600),
    "enabled": Spec("bool"),
}
HEALTH_KEYS = {
    "http": Spec("str"),
    "expect": Spec("int"),
    "tcp": Spec("bool"),
    "command": Spec("command"),
    "interval": Spec("float", 0.5, 3600),
    "timeout": Spec("float", 0.1, 600),
    "failures": Spec("int", 1, 100),
}
DEPENDENCY_KEYS = {
    "name": Spec("str"),
    "env": Spec("str"),
}
_NO_PORT = ('uses {port} but the service has no port (set port = N, or "auto" to pick a free '
            'one)')


@dataclass(slots=True)
class _ServiceDraft:
    """One [[services]] table while the checks that need every service run."""

    index: int
    name: str
    enabled: bool
    port: int | None
    deps: list[tuple[KeyPath, Dependency]]
    config: ServiceConfig | None


class ServiceChecks(TableReader):
    """The checks of [[services]]."""

    def _as_command(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        """("shell", line) for a string; ("argv", words) for an array of strings."""
        if isinstance(raw, str):
            return True, ("shell", raw.strip())
        if not isinstance(raw, list):
            return self._type_error(at, "string (a shell line) or array of strings (argv)", raw)
        ok = True
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                ok = self._type_error(at + (index,), "string", item)[0]
        return ok, ("argv", tuple(raw))

    def _as_port(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        """A port 1..65535, or 0 for "auto"."""
        if isinstance(raw, str) and raw.strip() == "auto":
            return True, 0
        if isinstance(raw, int) and not isinstance(raw, bool):
            if 1 <= raw <= 65535:
                return True, raw
            self.report(at, f'a port must be 1..65535 (or "auto" to pick a free one), '
                            f"not {raw}")
            return False, None
        return self._type_error(at, 'integer port or "auto"', raw)

    def _as_deps(self, at: KeyPath, raw: object) -> tuple[bool, Any]:
        """[(where, Dependency)] from a name, an array of names, or of { name, env } tables."""
        items: list[tuple[KeyPath, object]]
        if isinstance(raw, str):
            items = [(at, raw)]
        elif isinstance(raw, list):
            items = [(at + (index,), item) for index, item in enumerate(raw)]
        else:
            return self._type_error(at, "array of service names or { name, env } tables", raw)
        errors_before = self.error_count()
        found: list[tuple[KeyPath, Dependency]] = []
        for where, item in items:
            values: dict[str, Any] = {}
            if isinstance(item, str):
                name, env, name_at = item.strip(), "", where
            elif isinstance(item, dict):
                values = self.read(item, where, DEPENDENCY_KEYS, "services.depends_on")
                name_at = where + ("name",)
                if "name" not in item:
                    self.report(name_at, "missing required key 'name'")
                    continue
                name, env = values.get("name", "").strip(), values.get("env", "").strip()
                if "env" in values and (not env or "=" in env or "\0" in env):
                    self.report(where + ("env",), "an environment variable name must be "
                                                  "non-empty, without '=' or NUL")
            else:
                self._type_error(where, "service name or { name, env } table", item)
                continue
            if not name:
                if isinstance(item, str) or "name" in values:  # else: a type error, said
                    self.report(name_at, "must name a service")
                continue
            found.append((name_at, Dependency(name, env)))
        return self.error_count() == errors_before, found

    def _services(self, raw: list[Any]) -> list[ServiceConfig]:
        drafts: list[_ServiceDraft] = []
        by_name: dict[str, _ServiceDraft] = {}
        by_prefix: dict[str, _ServiceDraft] = {}
        for index, table in enumerate(raw):
            if not isinstance(table, dict):
                continue
            draft = self._service(index, table)
            if not draft.name:
                continue
            first = by_name.get(draft.name)
            if first is not None:
                self.report(("services", index, "name"),
                            f"duplicate service name {draft.name!r} "
                            f"(also {self._where('services', first.index, 'name')})")
                continue
            by_name[draft.name] = draft
            prefix = ServiceConfig(draft.name).env_name
            other = by_prefix.setdefault(prefix, draft)
            if other is not draft:
                self.report(("services", index, "name"),
                            f"{draft.name!r} and {other.name!r} "
                            f"({self._where('services', other.index, 'name')}) give the same "
                            f"variable names ({prefix}_URL, {prefix}_HOST, {prefix}_PORT): "
                            f"rename one")
            drafts.append(draft)
        self._service_ports(drafts)
        self._service_dependencies(drafts)
        return [draft.config for draft in drafts if draft.config is not None]

    def _where(self, table: str, index: int, key: str) -> str:
        """`services[0], line 3`: where another table's key is, for messages."""
        line = self.line((table, index, key))
        return f"{table}[{index}]" + (f", line {line}" if line else "")

    def _service_ports(self, drafts: list[_ServiceDraft]) -> None:
        """Two enabled services with the same fixed port cannot both start."""
        taken: dict[int, _ServiceDraft] = {}
        for draft in drafts:
            if not draft.port or not draft.enabled:
                continue
            first = taken.setdefault(draft.port, draft)
            if first is not draft:
                self.report(("services", draft.index, "port"),
                            f"{draft.name!r} and {first.name!r} "
                            f"({self._where('services', first.index, 'port')}) both use port "
                            f"{draft.port}")

    def _service_dependencies(self, drafts: list[_ServiceDraft]) -> None:
        """Unknown, repeated, disabled and self dependencies; then one cycle, if any."""
        by_name = {draft.name: draft for draft in drafts}
        graph: dict[str, list[str]] = {}
        for draft in drafts:
            kept: list[str] = []
            for where, dependency in draft.deps:
                target = by_name.get(dependency.name)
                if dependency.name == draft.name:
                    self.report(where, f"{draft.name!r} cannot depend on itself")
                elif dependency.name in kept:
                    self.report(where, f"{dependency.name!r} is listed twice")
                elif target is None:
                    close = difflib.get_close_matches(dependency.name, list(by_name), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    known = ", ".join(by_name) if by_name else "none"
                    self.report(where, f"unknown service {dependency.name!r}{hint} "
                                       f"(services: {known})")
                else:
                    if draft.enabled and not target.enabled:
                        self.report(where, f"{dependency.name!r} is disabled, so "
                                           f"{draft.name!r} could never start: enable "
                                           f"{dependency.name!r} or disable {draft.name!r}")
                    kept.append(dependency.name)
            graph[draft.name] = kept
        path = cycle_in(graph)
        if path is not None:
            self.report(("services", by_name[path[0]].index, "depends_on"),
                        f"dependency cycle: {cycle_text(path)} (each depends on the next)")

    def _service(self, index: int, raw: dict[str, Any]) -> _ServiceDraft:
        at: KeyPath = ("services", index)
        errors_before = self.error_count()
        values = self.read(raw, at, SERVICES_KEYS, "services")
        name = self._required(at, raw, values, "name")
        bad = [c for c in name if c == "/" or not c.isprintable()]
        if bad:
            self.report(at + ("name",), f"a service name cannot contain {bad[0]!r}: {name!r}")
        enabled = bool(values.get("enabled", True))
        port: int | None = values.get("port")
        has_port = "port" in raw  # a port with a wrong type is one error, not two
        cwd_raw = values.get("cwd", "").strip()
        cwd = self.resolve(cwd_raw) if cwd_raw else self.base
        if cwd_raw and not cwd.is_dir():
            self.warn(at + ("cwd",), f"{'not a folder' if cwd.exists() else 'folder not found'}"
                                     f": {cwd}")
        argv, shell = self._service_command(at, raw, values, cwd, has_port, enabled)
        health = self._health(at + ("health",), values.get("health"), has_port)
        restart = values.get("restart", "on-failure").strip()
        if restart not in RESTART_POLICIES:
            close = difflib.get_close_matches(restart, RESTART_POLICIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.report(at + ("restart",), f"must be 'no', 'on-failure' or 'always', "
                                           f"not {restart!r}{hint}")
        backoff_initial = values.get("backoff_initial", 1.0)
        backoff_max = values.get("backoff_max", 60.0)
        if backoff_initial > backoff_max:
            self.warn(at + ("backoff_initial",),
                      f"{number_text(backoff_initial)} is more than backoff_max "
                      f"({number_text(backoff_max)}), using {number_text(backoff_max)}")
            backoff_initial = backoff_max
        deps: list[tuple[KeyPath, Dependency]] = values.get("depends_on", [])
        config = None
        if self.error_count() == errors_before:
            optional = {key: values[key] for key in (
                "env", "start_timeout", "max_restarts", "stop_grace", "enabled") if key in values}
            config = ServiceConfig(
                name=name,
                command=argv,
                shell=shell,
                cwd=cwd,
                port=port,
                depends_on=tuple(dependency for _, dependency in deps),
                health=health,
                restart=restart,
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
                **optional,
            )
        return _ServiceDraft(index, name, enabled, port, deps, config)

    def _service_command(self, at: KeyPath, raw: Mapping[str, Any], values: Mapping[str, Any],
                         cwd: Path, has_port: bool,
                         enabled: bool) -> tuple[tuple[str, ...], str]:
        """(argv, "") or ((), shell line); a relative program is resolved against `cwd`."""
        where = at + ("command",)
        if "command" not in raw:
            self.report(where, "missing required key 'command'")
            return (), ""
        if "command" not in values:  # a wrong type, said
            return (), ""
        form, value = values["command"]
        argv: tuple[str, ...] = value if form == "argv" else ()
        shell: str = value if form == "shell" else ""
        if not argv and not shell:
            self.report(where, "command must not be empty")
            return (), ""
        if not has_port and any("{port}" in part for part in (shell, *argv)):
            self.report(where, _NO_PORT)
        if not has_port:
            for name, value in values.get("env", ()):
                if "{port}" in value:
                    self.report(at + ("env", name), _NO_PORT)
        if not argv:
            return argv, shell
        program = argv[0]
        if not program.strip():
            self.report(where + (0,), "the first word must name a program")
            return argv, shell
        if "{port}" in program:
            return argv, shell
        if "/" in program and not os.path.isabs(program):
            program = str(self.resolve(program, cwd))
            argv = (program, *argv[1:])
        env = dict(values.get("env", ()))
        if self.check_commands and not command_exists(program, env.get("PATH")):
            self.report(where, f"command not found: {program}", "error" if enabled else "warning")
        return argv, shell

    def _health(self, at: KeyPath, raw: Mapping[str, Any] | None, has_port: bool) -> HealthCheck:
        if not raw:
            return HealthCheck()
        values = self.read(raw, at, HEALTH_KEYS, "services.health")
        kinds = [key for key in HEALTH_KINDS if key in values and values[key] is not False]
        if len(kinds) > 1:
            self.report(at + (kinds[1],), f"give only one of http, tcp or command "
                                          f"(found {kinds[0]} and {kinds[1]})")
            return HealthCheck()
        kind = kinds[0] if kinds else "none"
        if not kinds and not any(key in raw for key in HEALTH_KINDS) and all(
                key in HEALTH_KEYS for key in raw):  # (an unknown key is error enough)
            self.report(at, "a health check needs http, tcp or command")
        found: dict[str, Any] = {key: values[key] for key in (
            "interval", "timeout", "failures") if key in values}
        if "expect" in values:
            if kind != "http":
                self.report(at + ("expect",), "expect goes with an http check")
            elif not 100 <= values["expect"] <= 599:
                self.report(at + ("expect",),
                            f"must be an HTTP status, 100..599, not {values['expect']}")
            found["expect"] = values["expect"]
        if kind == "http":
            found["path"] = values["http"].strip()
            if not found["path"].startswith("/"):
                self.report(at + ("http",), f"must be a path starting with '/', like "
                                            f"\"/health\", not {found['path']!r}")
        if kind == "command":
            form, value = values["command"]
            found["command"] = ("/bin/sh", "-c", value) if form == "shell" and value else value
            if not value or not found["command"][0].strip():
                self.report(at + ("command",), "command must name a program")
        if kind in ("http", "tcp") and not has_port:
            article = "an HTTP" if kind == "http" else "a TCP"
            self.report(at + (kind,), f'{article} health check needs a port (set port = N, or '
                                      f'"auto" to pick a free one)')
        return HealthCheck(kind=kind, **found)

