"""The text `marrow-tui validate` prints for a config that loaded."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..core.acp import PRESETS
from .model import AgentConfig, Config, NotifyConfig, ServiceConfig
from .schema import number_text


def format_summary(config: Config) -> str:
    """The text `marrow-tui validate` prints for a config that loaded (ends "config OK")."""
    lines = [f"config: {config.path}", f"mode: {_mode_text(config.mode)}"]
    lines.append(f"rules: {_path_text(config.rules_path)}")
    if not config.agents:
        lines.append("agents: none")
    for agent in config.agents:
        lines.extend(_agent_summary(agent))
    for service in config.services:
        lines.extend(_service_summary(service))
    if config.notify is not None:
        lines.extend(_notify_summary(config.notify))
    if config.ignored:
        lines.append("ignored (read for compatibility, no effect): " + ", ".join(config.ignored))
    lines.append("config OK")
    return "\n".join(lines)


def _mode_text(mode: str) -> str:
    if mode == "supervisor":
        return "supervisor (runs as single_user: one process, the current user)"
    return mode


def _path_text(path: Path | None) -> str:
    if path is None:
        return "(none)"
    return str(path) if path.exists() else f"{path} (missing)"


def _agent_summary(agent: AgentConfig) -> list[str]:
    state = "enabled" if agent.enabled else "disabled"
    lines = [
        f"[{agent.name}] {state}",
        f"  every {agent.heartbeat_interval}s, timeout {agent.heartbeat_timeout}s",
        f"  workspace: {_path_text(agent.workspace)}",
        *_launch_lines(agent),
        "  context dirs: " + ", ".join(_path_text(d) for d in agent.context_dirs),
    ]
    if agent.git is not None:
        git = agent.git
        lines.append(f"  worktree: {agent.checkout} of {git.repo} on {git.branch(agent.name)} "
                     f"from {git.base} (accept: {git.merge})")
    if agent.role_file is not None:
        lines.append(f"  role file: {_path_text(agent.role_file)}")
    if agent.env:
        lines.append("  env: " + ", ".join(name for name, _ in agent.env))
    return lines


def _launch_lines(agent: AgentConfig) -> list[str]:
    """How the agent starts and gets its prompt."""
    if agent.protocol != "acp":
        return [f"  command: {agent.agent_command}", f"  prompt: {agent.prompt}"]
    preset = ""
    if agent.preset:
        given = agent.agent_command == shlex.join(PRESETS[agent.preset])
        preset = f" ({'from' if given else 'instead of'} preset {agent.preset})"
    return [f"  command: {agent.agent_command}{preset}", "  protocol: acp",
            f"  permissions: {agent.permissions.describe()}"]


def _service_summary(service: ServiceConfig) -> list[str]:
    state = "enabled" if service.enabled else "disabled"
    port = {None: "none", 0: "auto"}.get(service.port, str(service.port))
    command = (f"sh -c {shlex.quote(service.shell)}" if service.shell
               else shlex.join(service.command))
    lines = [f"[service {service.name}] {state}, port {port}", f"  command: {command}",
             f"  cwd: {_path_text(service.cwd)}"]
    if service.depends_on:
        lines.append("  after: " + ", ".join(d.name for d in service.depends_on))
    health = service.health
    lines.append("  health: " + {
        "http": f"GET {health.path} answers {health.expect}",
        "tcp": "the port accepts a connection",
        "command": f"{shlex.join(health.command)} exits 0",
    }.get(health.kind, "none (up once started)"))
    restart = service.restart
    if restart != "no":
        limit = f"at most {service.max_restarts} in a row" if service.max_restarts else "no limit"
        restart += (f" ({limit}, backoff {number_text(service.backoff_initial)}s to "
                    f"{number_text(service.backoff_max)}s)")
    lines.append(f"  restart: {restart}")
    if service.env:
        lines.append("  env: " + ", ".join(name for name, _ in service.env))
    return lines


def _notify_summary(notify: NotifyConfig) -> list[str]:
    command = f"sh -c {shlex.quote(notify.shell)}" if notify.shell else notify.shown
    lines = [f"[notify] {command}",
             f"  on: {', '.join(notify.events) or 'nothing'} (at most "
             f"{number_text(notify.timeout)}s each)"]
    if notify.mute:
        lines.append("  muted: " + ", ".join(notify.mute))
    return lines
