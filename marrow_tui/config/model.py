"""The config's model: what a loaded marrow.toml is, as frozen dataclasses."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.acp import PermissionPolicy
from .diagnostics import KeyPath, line_of

DEFAULT_CONFIG = "marrow.toml"

#: How the assembled prompt reaches the agent command.
PROMPT_MODES = ("stdin", "argv", "file")

#: service.mode values marrow-core knows. We run "supervisor" configs as "single_user".
SERVICE_MODES = ("single_user", "supervisor")

PLUGIN_KINDS = ("dashboard", "background_service")

#: [[services]] restart values, and the keys of a health check that pick its kind
RESTART_POLICIES = ("no", "on-failure", "always")
HEALTH_KINDS = ("http", "tcp", "command")


#: the folder under an agent's workspace that `workspace_git` makes its worktree
CHECKOUT = "checkout"


@dataclass(slots=True, frozen=True)
class GitSettings:
    """`workspace.git` (WORKFLOW.md: each issue's workspace) or `workspace_git` (an
    [[agents]] table: the agent's checkout): a git worktree of `repo` on a branch
    `<branch_prefix>/<key>` made from `base` (docs/orchestrator.md, "Worktrees")."""

    repo: Path
    base: str
    branch_prefix: str = "marrow"
    merge: str = "merge"
    #: key -> its line in the file (for the checks that run later)
    lines: dict[str, int] = field(default_factory=dict)

    def branch(self, key: str) -> str:
        """The branch of the worktree whose folder name (a safe key) is `key`."""
        return f"{self.branch_prefix}/{key}"


@dataclass(slots=True, frozen=True)
class AgentConfig:
    name: str
    agent_command: str
    workspace: Path
    heartbeat_interval: int = 300
    heartbeat_timeout: int = 500
    context_dirs: tuple[Path, ...] = ()
    log_retention_days: int = 7
    log_max_count: int = 200
    user: str = ""
    run_as_group: str = ""
    home: str = ""
    # ---- ours ----
    #: "stdin" (default): the prompt on the child's stdin. "argv": marrow-core's form,
    #: `<command> --dir <workspace> -- <prompt>` (opencode). "file": written to a file whose
    #: path is in $MARROW_PROMPT_FILE and replaces `{prompt_file}` in the command.
    prompt: str = "stdin"
    env: tuple[tuple[str, str], ...] = ()
    enabled: bool = True
    #: the agent's role text (inline), and/or a file holding it
    role: str = ""
    role_file: Path | None = None
    #: seconds each context script may run before it is killed
    context_timeout: float = 15.0
    #: seconds between SIGTERM and SIGKILL when a run is stopped or times out
    stop_grace: float = 10.0
    #: "command" (a process fed the prompt) or "acp" (an agent driven over ACP)
    protocol: str = "command"
    #: the ACP preset agent_command came from, when it did
    preset: str | None = None
    #: which of an ACP agent's permission requests reach a person
    permissions: PermissionPolicy = PermissionPolicy()
    #: paths (relative to the workspace) each ACP run's lease holds from its start
    lease_paths: tuple[str, ...] = ()
    #: where run logs go instead of <workspace>/runtime/logs/exec (the orchestrator keeps
    #: them outside issue workspaces, which are committed and then removed); not a TOML key
    logs: Path | None = None
    #: `workspace_git`: the agent runs in a worktree, <workspace>/checkout (None: in the
    #: workspace itself)
    git: GitSettings | None = None

    @property
    def checkout(self) -> Path:
        """Where the agent's command runs and edits: its worktree, or its workspace."""
        return self.workspace / CHECKOUT if self.git is not None else self.workspace

    @property
    def log_dir(self) -> Path:
        return self.logs or self.workspace / "runtime" / "logs" / "exec"

    @property
    def tasks_dir(self) -> Path:
        """Holds queue/, delegated/ and done/."""
        return self.workspace / "tasks"

    @property
    def environment(self) -> dict[str, str]:
        """`env` as a dict (the extra variables only, not the inherited environment)."""
        return dict(self.env)

    def argv(self) -> list[str]:
        """`agent_command` split like a shell would (load_config has checked that it splits)."""
        return shlex.split(self.agent_command)


@dataclass(slots=True, frozen=True)
class HealthCheck:
    """How a service says it is well: an HTTP GET, a TCP connect, or a command's exit 0."""

    #: "http", "tcp", "command", or "none" (healthy as soon as the process is up)
    kind: str = "none"
    #: http: the path (and query) to GET on http://127.0.0.1:<port>
    path: str = "/"
    #: http: the status that means healthy
    expect: int = 200
    #: command: argv, run in the service's cwd with its environment
    command: tuple[str, ...] = ()
    #: seconds between checks once healthy, and the longest one check may take
    interval: float = 5.0
    timeout: float = 2.0
    #: failed checks in a row (once healthy) that make it unhealthy and restart it by policy
    failures: int = 3


@dataclass(slots=True, frozen=True)
class Dependency:
    name: str
    #: the environment variable that gets the dependency's URL (default <NAME>_URL)
    env: str = ""


@dataclass(slots=True, frozen=True)
class ServiceConfig:
    name: str
    #: argv (a TOML array: no shell), with `{port}` replaced; or a shell line (a string)
    command: tuple[str, ...] = ()
    shell: str = ""
    cwd: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    #: a fixed port, None for none, or 0 for "auto": picked free and kept across restarts
    port: int | None = None
    depends_on: tuple[Dependency, ...] = ()
    health: HealthCheck = field(default_factory=HealthCheck)
    #: seconds from start to healthy before the start counts as failed
    start_timeout: float = 30.0
    #: "no", "on-failure" or "always"
    restart: str = "on-failure"
    #: restarts in a row before giving up (0: no limit); backoff doubles from backoff_initial
    max_restarts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: seconds between SIGTERM and SIGKILL
    stop_grace: float = 10.0
    enabled: bool = True

    @property
    def env_name(self) -> str:
        """The prefix of the variables dependents get: `api-v2` -> `API_V2`."""
        return "".join(c if c.isalnum() else "_" for c in self.name).upper()

    @property
    def environment(self) -> dict[str, str]:
        """`env` as a dict (the extra variables only, not the inherited environment)."""
        return dict(self.env)

    def argv(self, port: int | None = None) -> list[str]:
        """What to exec: `command`, or `/bin/sh -c <shell>`, with `{port}` replaced by `port`.

        The loader refuses `{port}` in a service without a port.
        """
        text = "" if port is None else str(port)
        if self.shell:
            return ["/bin/sh", "-c", self.shell.replace("{port}", text)]
        return [part.replace("{port}", text) for part in self.command]


#: what the [notify] hook is told of, and its kind: something needs the operator, or something
#: finished (badly) that the operator will want to know of
NOTIFY_EVENTS = {"request_waiting": "needs_you", "run_failed": "finished",
                 "service_down": "finished"}
#: seconds one run of the [notify] command may take, unless `timeout` says otherwise
NOTIFY_TIMEOUT = 10.0


@dataclass(slots=True, frozen=True)
class NotifyConfig:
    """[notify]: a command run for each event worth a person's attention."""

    #: argv (a TOML array: no shell); or a shell line (a string), run with /bin/sh -c
    command: tuple[str, ...] = ()
    shell: str = ""
    #: the NOTIFY_EVENTS it runs for
    events: tuple[str, ...] = tuple(NOTIFY_EVENTS)
    #: agents (askers, runs' agents) it is never run for
    mute: tuple[str, ...] = ()
    #: seconds one run of the command may take before its process group is killed
    timeout: float = NOTIFY_TIMEOUT
    #: where it runs: the config file's folder (so a shell line's relative paths work too)
    cwd: Path | None = None

    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.shell] if self.shell else list(self.command)

    @property
    def shown(self) -> str:
        """The command as written, for logs and `validate`."""
        return self.shell or shlex.join(self.command)


@dataclass(slots=True, frozen=True)
class Config:
    path: Path
    agents: tuple[AgentConfig, ...] = ()
    #: helper processes, in the order written (start order comes from depends_on)
    services: tuple[ServiceConfig, ...] = ()
    #: profile.rules_path, resolved against the config file's folder when relative
    rules_path: Path | None = None
    #: marrow-core keys we read and do not act on, as dotted names (for `validate`)
    ignored: tuple[str, ...] = ()
    # ---- informational: read for compatibility, nothing runs from them ----
    #: service.mode as written ("single_user" or "supervisor"; both run as single_user)
    mode: str = "single_user"
    #: profile.root_dir, resolved
    profile_root: Path | None = None
    #: profile.source_context_dir, resolved (default <profile_root>/context.d)
    source_context_dir: Path | None = None
    # ---- ours ----
    #: [keys]: action id ("claims.handoff") -> key ("ctrl+h"), in the order written
    keys: Mapping[str, str] = field(default_factory=dict)
    #: [notify]: the command hook, when there is one
    notify: NotifyConfig | None = None
    #: the line of every key of the file, so a later check can still say FILE:LINE
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)

    def agent(self, name: str) -> AgentConfig | None:
        for agent in self.agents:
            if agent.name == name:
                return agent
        return None

    @property
    def folder(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.path.parent

    @property
    def has_agents(self) -> bool:
        return bool(self.agents)

    def line(self, path: Iterable[str | int]) -> int | None:
        """The line `path` (("keys", "claims.handoff")) is written on, else its table's."""
        return line_of(self.lines, path)

