"""The agents' side of marrow.toml: marrow-core's schema ([[agents]], [profile], [service] and
the sections read only for compatibility) and its checks."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import userfile
from ..core.acp import PRESETS, PROTOCOLS
from ..core.branches import GIT_KEYS, branch_name_problem
from .diagnostics import KeyPath
from .model import PLUGIN_KINDS, PROMPT_MODES, SERVICE_MODES, AgentConfig, GitSettings
from .schema import Spec, TableReader, command_exists

try:
    import pwd
except ImportError:  # pragma: no cover - not on Unix
    pwd = None  # type: ignore[assignment]

_PROFILE_KEYS = {
    "root_dir": Spec("str", ignored=True),
    "rules_path": Spec("str"),
    "source_context_dir": Spec("str", ignored=True),
}
_SERVICE_KEYS = {
    "mode": Spec("str"),
    "runtime_root": Spec("str", ignored=True),
    "log_dir": Spec("str", ignored=True),
    "config_path": Spec("str", ignored=True),
}
_IPC_KEYS = {
    "enabled": Spec("bool", ignored=True),
    "socket_path": Spec("str", ignored=True),
    "task_dir": Spec("str", ignored=True),
}
_SYNC_KEYS = {
    "enabled": Spec("bool", ignored=True),
    "interval_seconds": Spec("int", 60, 604800, ignored=True),
    "failure_backoff_seconds": Spec("int", 5, 86400, ignored=True),
    "state_file": Spec("str", ignored=True),
    "lock_file": Spec("str", ignored=True),
}
_SELF_CHECK_KEYS = {
    "enabled": Spec("bool", ignored=True),
    "interval_seconds": Spec("int", 60, 604800, ignored=True),
    "wake_agent": Spec("str", ignored=True),
    "extra_commands": Spec("strs", ignored=True),
}
_PLUGIN_KEYS = {
    "name": Spec("str", ignored=True),
    "kind": Spec("str", ignored=True),
    "command": Spec("str", ignored=True),
    "args": Spec("strs", ignored=True),
    "enabled": Spec("bool", ignored=True),
    "auto_start": Spec("bool", ignored=True),
    "cwd": Spec("str", ignored=True),
    "workspace": Spec("str", ignored=True),
    "config_path": Spec("str", ignored=True),
    "capabilities": Spec("strs", ignored=True),
    "env": Spec("anyenv", ignored=True),
}
AGENT_KEYS = {
    "name": Spec("str"),
    "agent_command": Spec("str"),
    "heartbeat_interval": Spec("int", 60, 604800),
    "heartbeat_timeout": Spec("int", 5, 86400),
    "workspace": Spec("str"),
    "user": Spec("str", ignored=True),
    "run_as_user": Spec("str", ignored=True),
    "run_as_group": Spec("str", ignored=True),
    "home": Spec("str", ignored=True),
    "context_dirs": Spec("strs"),
    "log_retention_days": Spec("int", 0),
    "log_max_count": Spec("int", 0),
    # ours
    "prompt": Spec("str"),
    "env": Spec("env"),
    "enabled": Spec("bool"),
    "role": Spec("str"),
    "role_file": Spec("str"),
    "context_timeout": Spec("float", 1, 3600),
    "stop_grace": Spec("float", 0, 600),
    "protocol": Spec("str"),
    "preset": Spec("str"),
    "permissions": Spec("policy"),
    "lease_paths": Spec("strs"),
    "workspace_git": Spec("table"),
}


#: `workspace_git` (ours): the agent's checkout is a git worktree
_GIT_SPECS = {key: Spec("str") for key in GIT_KEYS}

#: the marrow-core sections besides [[agents]] and [[plugins]], read in this order
SECTIONS = (("profile", _PROFILE_KEYS), ("service", _SERVICE_KEYS), ("ipc", _IPC_KEYS),
            ("sync", _SYNC_KEYS), ("self_check", _SELF_CHECK_KEYS))


def _default_home(user: str) -> str:
    if pwd is not None:
        with contextlib.suppress(KeyError, ValueError):
            return pwd.getpwnam(user).pw_dir
    base = "/Users" if sys.platform == "darwin" else "/home"
    return f"{base}/{user}"


def _replace_program(command: str, argv: list[str], program: str) -> str:
    """`command` with its first word replaced by `program`, the rest kept as written."""
    stream = io.StringIO(command)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.get_token()
    rest = command[stream.tell():].lstrip()
    replaced = shlex.quote(program) + (" " + rest if rest else "")
    if shlex.split(replaced) != [program, *argv[1:]]:  # never change what runs
        replaced = shlex.join([program, *argv[1:]])
    return replaced


class AgentChecks(TableReader):
    """The checks of [[agents]], [[plugins]] and marrow-core's sections."""

    def _mode(self, service: dict[str, Any]) -> str:
        mode = service.get("mode", "single_user").strip() or "single_user"
        if mode not in SERVICE_MODES:
            self.report(("service", "mode"),
                        f"must be 'single_user' or 'supervisor', not {mode!r}")
            return "single_user"
        if mode == "supervisor":
            self.warn(("service", "mode"),
                      "supervisor mode is not implemented: every agent runs as the current "
                      "user, in this one process")
        return mode

    def _plugin(self, index: int, raw: dict[str, Any]) -> None:
        at: KeyPath = ("plugins", index)
        values = self.read(raw, at, _PLUGIN_KEYS, "plugins")
        for key in ("name", "command"):
            if key not in raw:
                self.report(at + (key,), f"missing required key {key!r}")
            elif key in values and not values[key].strip():
                self.report(at + (key,), f"{key} must not be empty")
        kind = values.get("kind", "background_service")
        if kind not in PLUGIN_KINDS:
            self.report(at + ("kind",), f"must be 'dashboard' or 'background_service', "
                                        f"not {kind!r}")

    def _agents(self, raw: list[Any], mode: str) -> tuple[list[AgentConfig], list[str]]:
        """The agents that are fine, and the names of all agents that have one."""
        agents: list[AgentConfig] = []
        first_seen: dict[str, int] = {}
        for index, table in enumerate(raw):
            if not isinstance(table, dict):
                continue
            name, agent = self._agent(index, table, mode)
            if name and name in first_seen:
                first = first_seen[name]
                line = self.line(("agents", first, "name"))
                self.report(("agents", index, "name"),
                            f"duplicate agent name {name!r} (also agents[{first}]"
                            + (f", line {line})" if line else ")"))
                continue
            if name:
                first_seen[name] = index
            if agent is not None:
                agents.append(agent)
        self._shared_workspaces(agents, first_seen)
        return agents, list(first_seen)

    def _shared_workspaces(self, agents: list[AgentConfig], index: dict[str, int]) -> None:
        """Agents in one workspace share its task queue and run logs: allowed, but said."""
        seen: dict[Path, str] = {}
        for agent in agents:
            other = seen.setdefault(agent.workspace, agent.name)
            if other != agent.name:
                self.warn(("agents", index[agent.name], "workspace"),
                          f"same workspace as {other!r}: they share its tasks/queue (a task "
                          f"goes to whichever runs first) and runtime/logs/exec")

    def _agent(self, index: int, raw: dict[str, Any],
               mode: str) -> tuple[str, AgentConfig | None]:
        at: KeyPath = ("agents", index)
        errors_before = self.error_count()
        values = self.read(raw, at, AGENT_KEYS, "agents")
        name = self._required(at, raw, values, "name")
        protocol, preset = self._protocol(at, raw, values)
        command = self._agent_command(at, raw, values, protocol, preset)
        user = self._user(at, values)
        if mode == "supervisor" and not user:
            self.report(at + ("user",),
                        f"supervisor mode requires user for agent {name or index!r}")
        home = values.get("home", "").strip()
        if not home and user:
            home = _default_home(user)
        home_path = self.resolve(home) if home else None
        workspace = self._workspace(at, values, home_path)
        prompt = values.get("prompt", "stdin")
        if prompt not in PROMPT_MODES:
            self.report(at + ("prompt",), f"must be one of {', '.join(PROMPT_MODES)}, "
                                          f"not {prompt!r}")
        role_file = None
        if values.get("role_file", "").strip():
            role_file = self.resolve(values["role_file"].strip())
            self._prompt_file(at + ("role_file",), role_file, "role file")
        git = self._git(at, values.get("workspace_git"), name)
        if self.error_count() > errors_before or workspace is None:
            return name, None
        dirs = [self.resolve(d) for d in values.get("context_dirs", [])]
        for folder in dirs:
            if folder.exists() and not folder.is_dir():
                self.warn(at + ("context_dirs",), f"context dir {folder} is not a folder "
                                                  f"(no context scripts from it)")
        optional = {key: values[key] for key in (
            "heartbeat_interval", "heartbeat_timeout", "log_retention_days", "log_max_count",
            "env", "enabled", "role", "context_timeout", "stop_grace", "protocol",
            "preset", "permissions") if key in values}
        if "lease_paths" in values:
            optional["lease_paths"] = tuple(values["lease_paths"])
        return name, AgentConfig(
            name=name,
            agent_command=command,
            workspace=workspace,
            context_dirs=tuple(dirs) or (workspace / "context.d",),
            user=user,
            run_as_group=values.get("run_as_group", "").strip(),
            home=str(home_path) if home_path else "",
            prompt=prompt,
            role_file=role_file,
            git=git,
            **optional,
        )

    def _protocol(self, at: KeyPath, raw: Mapping[str, Any],
                  values: Mapping[str, Any]) -> tuple[str, str | None]:
        """(protocol, preset); the protocol is "" when it is wrong (said already). preset and
        permissions belong to ACP agents, and prompt to the others."""
        protocol = values.get("protocol", "" if "protocol" in raw else "command").strip()
        if protocol and protocol not in PROTOCOLS:
            self.report(at + ("protocol",), f"must be one of {', '.join(PROTOCOLS)}, "
                                            f"not {protocol!r}")
            protocol = ""
        preset = values.get("preset")
        if preset is not None and preset not in PRESETS:
            self.report(at + ("preset",), f"unknown agent preset {preset!r} (known: "
                                          f"{', '.join(PRESETS)}; or set agent_command)")
            preset = None
        elif preset is not None and protocol == "command":
            self.report(at + ("preset",), 'a preset starts an ACP agent: set protocol = "acp"')
        if "permissions" in raw and protocol == "command":
            self.report(at + ("permissions",), "permissions are for an ACP agent's requests: "
                                               'set protocol = "acp"')
        if "prompt" in values and protocol == "acp":
            self.warn(at + ("prompt",), "has no effect on an ACP agent (its prompt is sent "
                                        "over ACP)")
        return protocol, preset

    def _agent_command(self, at: KeyPath, raw: Mapping[str, Any], values: Mapping[str, Any],
                       protocol: str, preset: str | None) -> str:
        """agent_command, checked; an ACP agent's may come from its preset instead, whose
        program is looked up the same way."""
        env, enabled = dict(values.get("env", ())), values.get("enabled", True)
        if "agent_command" in raw or protocol == "command":
            command = self._required(at, raw, values, "agent_command")
            if command:
                command = self._command(at + ("agent_command",), command, env, enabled)
            return command
        if preset is None:
            if protocol == "acp" and "preset" not in raw:  # (else an error says enough)
                self.report(at + ("protocol",), "an ACP agent needs a preset (one of "
                                                f"{', '.join(PRESETS)}) or agent_command")
            return ""
        argv = PRESETS[preset]
        if self.check_commands and not command_exists(argv[0], env.get("PATH")):
            self.report(at + ("preset",), f"command not found: {argv[0]} (preset {preset!r} "
                                          f"runs `{shlex.join(argv)}`; install it, or set "
                                          "agent_command)", "error" if enabled else "warning")
        return shlex.join(argv)

    def _user(self, at: KeyPath, values: Mapping[str, Any]) -> str:
        if "user" in values and "run_as_user" in values:
            self.report(at + ("run_as_user",),
                        "run_as_user is another name for user: give only one of them")
        user = str(values.get("user", values.get("run_as_user", ""))).strip()
        if "/" in user:
            key = "user" if "user" in values else "run_as_user"
            self.report(at + (key,), f"must be an account name, not a path: {user!r}")
            return ""
        return user

    def _git(self, at: KeyPath, table: Mapping[str, Any] | None,
             name: str) -> GitSettings | None:
        """`workspace_git = {repo, base, branch_prefix, merge}`: the agent's checkout is a
        worktree of repo on `<branch_prefix>/<name>`, made from base."""
        if table is None:
            return None
        where = at + ("workspace_git",)
        before = self.error_count()
        values = self.read(table, where, _GIT_SPECS, "")
        repo_text, base = (str(values.get(key, "")).strip() for key in ("repo", "base"))
        for key, given in (("repo", repo_text), ("base", base)):
            if not given:
                self.report(where, f"workspace_git.{key} is required")
        prefix = values.get("branch_prefix", "marrow").strip()
        merge = values.get("merge", "merge")
        if merge not in ("merge", "squash"):
            self.report(where + ("merge",), f"must be merge or squash, not {merge!r} (an "
                                            "agent has no after_run hook)")
        for key, branch in (("base", base), ("branch_prefix", f"{prefix}/{name}")):
            problem = branch_name_problem(branch) if branch else None
            if problem:
                self.report(where + (key,), problem)
        repo = self.resolve(repo_text) if repo_text else None
        if repo is not None and not (repo / ".git").exists():
            self.report(where + ("repo",), f"{repo} is not a git repository (no .git in it)")
        if self.error_count() > before or repo is None:
            return None
        return GitSettings(repo=repo, base=base, branch_prefix=prefix, merge=merge)

    def _workspace(self, at: KeyPath, values: Mapping[str, Any],
                   home: Path | None) -> Path | None:
        raw = values.get("workspace", "").strip()
        if raw:
            return self.resolve(raw)
        if home is not None:
            return home
        self.report(at + ("workspace",), "workspace must be set or derivable from user/home")
        return None

    def _wake_agent(self, self_check: Mapping[str, Any], names: list[str]) -> None:
        wake = self_check.get("wake_agent", "").strip()
        if wake and wake not in names:
            known = ", ".join(names) if names else "none"
            self.report(("self_check", "wake_agent"),
                        f"unknown agent {wake!r} (agents: {known})")

    def _command(self, at: KeyPath, command: str, env: Mapping[str, str],
                 enabled: bool) -> str:
        """Checks agent_command; a relative program path comes back resolved (absolute)."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            self.report(at, f"cannot split the command like a shell would: {exc}")
            return command
        if not argv or not argv[0]:
            self.report(at, "agent_command must name a program")
            return command
        program = argv[0]
        if "/" in program and not os.path.isabs(program):
            program = str(self.resolve(program))
            command = _replace_program(command, argv, program)
        if self.check_commands and not command_exists(program, env.get("PATH")):
            self.report(at, f"command not found: {program}", "error" if enabled else "warning")
        return command

    def _rules_path(self, profile: Mapping[str, Any]) -> Path | None:
        raw = profile.get("rules_path", "").strip()
        if not raw:
            return None
        path = self.resolve(raw)
        self._prompt_file(("profile", "rules_path"), path, "rules file")
        return path

    def _prompt_file(self, at: KeyPath, path: Path, what: str) -> None:
        """A file that goes into every prompt: missing is a warning (it may appear before
        the first run); a FIFO, a device, a folder, too large or not UTF-8 is an error."""
        try:
            userfile.read_text(path, userfile.PROMPT_FILE_CAP)
        except userfile.RefusedFile as exc:
            if exc.kind == "missing":
                self.warn(at, f"{what} not found: {path}")
            else:
                self.report(at, f"{what} {path} {exc.reason}")

    def _profile_paths(self, profile: Mapping[str, Any]) -> tuple[Path | None, Path | None]:
        root_raw = profile.get("root_dir", "").strip()
        root = self.resolve(root_raw) if root_raw else None
        source_raw = profile.get("source_context_dir", "").strip()
        if source_raw:
            return root, self.resolve(source_raw, root)
        return root, (root / "context.d") if root else None

