"""WORKFLOW.md: YAML front matter (the orchestrator's settings) plus a strict Liquid prompt.

One file holds everything a run needs, so it can be versioned with the code it works on and
re-read live. `load_workflow` turns it into a typed `Workflow` and reports every problem as a
`Diagnostic` (file, dotted key, line), as marrow.toml's are; `render_prompt` renders the prompt
for one issue with python-liquid in strict mode. docs/orchestrator.md lists the keys.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError
from yaml.nodes import MappingNode, Node, SequenceNode

from .. import userfile
from ..config.diagnostics import Diagnostic, Findings, KeyPath, Reporter, line_of
from ..config.model import PROMPT_MODES, GitSettings
from ..core.acp import PRESETS, PROTOCOLS, PermissionPolicy, parse_policy
from ..core.branches import GIT_KEYS, MERGE_MODES, branch_name_problem
from .tracker import Issue, YamlError, load_yaml, norm_state, split_front_matter

WORKFLOW_FILE = "WORKFLOW.md"
#: the largest WORKFLOW.md read
MAX_WORKFLOW_BYTES = 1024 * 1024
#: the largest front matter parsed
MAX_WORKFLOW_YAML_BYTES = 256 * 1024

DEFAULT_ACTIVE_STATES = ("Todo", "In Progress")
DEFAULT_TERMINAL_STATES = ("Closed", "Cancelled", "Canceled", "Duplicate", "Done")
SUPPORTED_TRACKER_KINDS = ("local",)

#: the prompt when the template body is empty (the spec's text, as in the Elixir reference)
DEFAULT_PROMPT = (
    "You are working on an issue from the configured tracker.\n\n"
    "Identifier: {{ issue.identifier }}\n"
    "Title: {{ issue.title }}\n\n"
    "Body: {% if issue.description %}{{ issue.description }}"
    "{% else %}No description provided.{% endif %}"
)

#: error classes (spec §5.5)
MISSING_WORKFLOW_FILE = "missing_workflow_file"
WORKFLOW_PARSE_ERROR = "workflow_parse_error"
FRONT_MATTER_NOT_A_MAP = "workflow_front_matter_not_a_map"
TEMPLATE_PARSE_ERROR = "template_parse_error"
TEMPLATE_RENDER_ERROR = "template_render_error"


def default_workspace_root() -> Path:
    return Path(tempfile.gettempdir()) / "symphony_workspaces"


@dataclass(slots=True, frozen=True)
class TrackerSettings:
    kind: str = "local"
    root: Path = Path("issues")
    active_states: tuple[str, ...] = DEFAULT_ACTIVE_STATES
    terminal_states: tuple[str, ...] = DEFAULT_TERMINAL_STATES
    required_labels: tuple[str, ...] = ()
    provider: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None
    api_key: str | None = None
    project_slug: str | None = None


@dataclass(slots=True, frozen=True)
class HookSettings:
    after_create: str | None = None
    before_run: str | None = None
    after_run: str | None = None
    before_remove: str | None = None
    timeout_ms: int = 60_000

    def script(self, name: str) -> str | None:
        """The script for hook `name` (after_create, before_run, after_run, before_remove)."""
        if name not in HOOK_NAMES:
            raise ValueError(f"unknown hook {name!r}")
        return getattr(self, name)


HOOK_NAMES = ("after_create", "before_run", "after_run", "before_remove")


@dataclass(slots=True, frozen=True)
class AgentSettings:
    command: str | None = None
    #: the key the command came from ("agent.command", "acp.command" or "codex.command")
    command_key: str | None = None
    shell: str = "bash"
    prompt: str = "stdin"
    max_concurrent_agents: int = 10
    #: normalised state name -> cap
    max_concurrent_agents_by_state: dict[str, int] = field(default_factory=dict)
    max_turns: int = 20
    max_retry_backoff_ms: int = 300_000
    max_idle_continuations: int = 5
    #: 0 = disabled
    stall_timeout_ms: int = 300_000
    #: longest silence within a turn; 0 = no limit
    turn_timeout_ms: int = 3_600_000
    #: longest wall-clock time of a turn; 0 = no limit
    prompt_timeout_ms: int = 3_600_000
    read_timeout_ms: int = 30_000
    #: "command" (a process fed the prompt) or "acp" (an agent driven over ACP)
    protocol: str = "command"
    #: the ACP preset the command came from (acp.adapter), when it did
    adapter: str | None = None
    #: variables added to an ACP agent's environment (acp.env)
    env: dict[str, str] = field(default_factory=dict)
    permissions: PermissionPolicy = PermissionPolicy()
    #: paths (relative to the workspace) each run's lease holds from its start (acp.lease_paths)
    lease_paths: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int | None = None


@dataclass(slots=True, frozen=True)
class McpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    host_url: str | None = None


@dataclass(slots=True, frozen=True)
class Workflow:
    path: Path
    prompt_template: str = ""
    #: the file line where the (trimmed) prompt template starts, for error messages
    prompt_line: int = 1
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    polling_interval_ms: int = 30_000
    workspace_root: Path = field(default_factory=default_workspace_root)
    #: `workspace.git`: worktrees instead of plain folders (None: plain folders)
    git: GitSettings | None = None
    hooks: HookSettings = field(default_factory=HookSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    mcp: McpSettings = field(default_factory=McpSettings)
    #: the front matter as written (extensions may read their own keys here)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def is_active(self, state: str | None) -> bool:
        key = norm_state(state)
        return any(norm_state(s) == key for s in self.tracker.active_states) and not (
            self.is_terminal(state)
        )

    def is_terminal(self, state: str | None) -> bool:
        key = norm_state(state)
        return bool(key) and any(norm_state(s) == key for s in self.tracker.terminal_states)

    @property
    def done_state(self) -> str:
        """Where mark_done moves an issue: the terminal state named `done`, else the first
        terminal state, else `Done` (smol's `terminal_target_at_dispatch`)."""
        for state in self.tracker.terminal_states:
            if norm_state(state) == "done":
                return state
        return self.tracker.terminal_states[0] if self.tracker.terminal_states else "Done"

    def state_limit(self, state: str | None) -> int:
        """The per-state cap for `state`, else the global one."""
        return self.agent.max_concurrent_agents_by_state.get(
            norm_state(state), self.agent.max_concurrent_agents
        )


@dataclass(slots=True)
class LoadedWorkflow(Findings):
    """What `load_workflow` found. `workflow` is None when there is any error."""

    workflow: Workflow | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: the spec's error class of the first error (missing_workflow_file, ...), else None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.workflow is not None and not self.errors


class PromptError(Exception):
    """The prompt could not be rendered; the caller fails the attempt (not the process)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Loading

#: section -> keys we act on
_KNOWN: dict[str, tuple[str, ...]] = {
    "tracker": ("kind", "root", "active_states", "terminal_states", "required_labels",
                "provider", "endpoint", "api_key", "project_slug"),
    "polling": ("interval_ms",),
    "workspace": ("root", "git"),
    "hooks": (*HOOK_NAMES, "timeout_ms"),
    "agent": ("command", "shell", "prompt", "max_concurrent_agents",
              "max_concurrent_agents_by_state", "max_turns", "max_retry_backoff_ms",
              "max_idle_continuations", "stall_timeout_ms", "turn_timeout_ms",
              "prompt_timeout_ms", "read_timeout_ms", "protocol"),
    "codex": ("command", "stall_timeout_ms", "turn_timeout_ms", "read_timeout_ms",
              "approval_policy", "thread_sandbox", "turn_sandbox_policy"),
    "acp": ("adapter", "command", "shell", "prompt_timeout_ms", "read_timeout_ms",
            "stall_timeout_ms", "env", "permissions", "lease_paths"),
    "server": ("host", "port"),
    "mcp": ("enabled", "host", "host_url"),
}

#: known keys (or whole sections) we read and do not act on, with the reason
_NOT_USED: dict[str, str] = {
    "codex.approval_policy": "Codex app-server policy; marrow-tui does not speak that protocol",
    "codex.thread_sandbox": "Codex app-server policy; marrow-tui does not speak that protocol",
    "codex.turn_sandbox_policy": "Codex app-server policy; marrow-tui does not speak that "
                                 "protocol",
    "smolvm": "agents run directly on this host, not in a smolvm microVM (no VM isolation)",
    "worker": "SSH workers are not supported; agents run on this host",
    "observability": "the console is the status surface",
}

#: logical agent setting -> keys that set it, winner first
_ALIASES: dict[str, tuple[str, ...]] = {
    "command": ("agent.command", "acp.command", "codex.command"),
    "shell": ("agent.shell", "acp.shell"),
    "stall_timeout_ms": ("agent.stall_timeout_ms", "acp.stall_timeout_ms",
                         "codex.stall_timeout_ms"),
    "turn_timeout_ms": ("agent.turn_timeout_ms", "codex.turn_timeout_ms"),
    "prompt_timeout_ms": ("agent.prompt_timeout_ms", "acp.prompt_timeout_ms"),
    "read_timeout_ms": ("agent.read_timeout_ms", "acp.read_timeout_ms",
                        "codex.read_timeout_ms"),
}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_INT_TEXT = re.compile(r"-?\d{1,15}")

def _lines(node: Node | None, offset: int) -> dict[KeyPath, int]:
    """Key path -> 1-based file line, from the composed YAML (keys and list items)."""
    found: dict[KeyPath, int] = {}
    stack: list[tuple[Node, KeyPath]] = [(node, ())] if node is not None else []
    while stack:
        current, path = stack.pop()
        if isinstance(current, MappingNode):
            for key, value in current.value:
                sub = (*path, str(key.value))
                found.setdefault(sub, key.start_mark.line + offset)
                stack.append((value, sub))
        elif isinstance(current, SequenceNode):
            for index, item in enumerate(current.value):
                sub = (*path, index)
                found.setdefault(sub, item.start_mark.line + offset)
                stack.append((item, sub))
    return found


def expand_path(value: str, base: Path) -> Path:
    """`~` and `$VAR`/`${VAR}` expanded, relative to `base`, made absolute (not resolved)."""
    missing: list[str] = []

    def var(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in os.environ:
            missing.append(name)
            return ""
        return os.environ[name]

    text = _VAR.sub(var, value.strip())
    if missing:
        raise ValueError(f"environment variable ${missing[0]} is not set")
    text = os.path.expanduser(text)
    if not text:
        raise ValueError("path is empty")
    return Path(os.path.abspath(base / text))


class _Reader(Reporter):
    """Reads the front matter's values; each bad one is reported and its default used."""

    quote_keys = False  # YAML keys are shown as written

    def __init__(self, path: Path, config: dict[str, Any], lines: dict[KeyPath, int]) -> None:
        super().__init__(path, lines)
        self.config = config

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report((name,), f"expected a map, got {_kind(value)}")
            return {}
        return value

    def lookup(self, dotted: str) -> tuple[bool, Any]:
        section, key = dotted.split(".", 1)
        values = self.section(section) if isinstance(self.config.get(section), dict) else {}
        return (key in values and values[key] is not None), values.get(key)

    # ---- typed readers; each reports and returns the default on a bad value ----

    def integer(self, path: KeyPath, value: Any, default: int, *, minimum: int | None = None,
                disable_below: int | None = None, what: str = "") -> int:
        if value is None:
            return default
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            number = int(value)
        elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
            number = int(value.strip())
        if number is None:
            self.report(path, f"expected an integer, got {_kind(value)} {value!r}")
            return default
        if disable_below is not None and number < disable_below:
            return 0
        if minimum is not None and number < minimum:
            self.report(path, f"must be {what or f'at least {minimum}'}, got {number}")
            return default
        return number

    def text(self, path: KeyPath, value: Any, *, allow_empty: bool = False) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.report(path, f"expected a string, got {_kind(value)}")
            return None
        if not allow_empty and not value.strip():
            self.report(path, "must not be empty")
            return None
        return value

    def states(self, path: KeyPath, value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
        if value is None:
            return default
        if not isinstance(value, list):
            self.report(path, f"expected a list of state names, got {_kind(value)}")
            return default
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.report((*path, index), f"not a state name: {item!r} (ignored)", "warning")
                continue
            if norm_state(item) not in {norm_state(s) for s in out}:
                out.append(item.strip())
        return tuple(out)

    def path_value(self, path: KeyPath, value: Any, default: Path, base: Path) -> Path:
        text = self.text(path, value)
        if text is None:
            return default
        try:
            return expand_path(text, base)
        except ValueError as exc:
            self.report(path, str(exc))
            return default


def _kind(value: Any) -> str:
    return {dict: "a map", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__)


def load_workflow(path: Path | str) -> LoadedWorkflow:
    """Read, parse and validate WORKFLOW.md. Never raises for the file's content."""
    path = Path(path).expanduser()
    path = Path(os.path.abspath(path))

    def fail(code: str, message: str, line: int | None = None, key: str = "") -> LoadedWorkflow:
        return LoadedWorkflow(None, [Diagnostic(path, key, line, message)], code)

    try:  # a regular file only: a FIFO would block the open, /dev/zero never end
        data = userfile.read_bytes(path, MAX_WORKFLOW_BYTES)
    except userfile.RefusedFile as exc:
        if exc.kind == "large":
            return fail(WORKFLOW_PARSE_ERROR, f"larger than {MAX_WORKFLOW_BYTES} bytes")
        return fail(MISSING_WORKFLOW_FILE, f"cannot read the workflow file: it {exc.reason}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return fail(WORKFLOW_PARSE_ERROR, f"not UTF-8 text (byte {exc.start})")
    if "\0" in text:
        return fail(WORKFLOW_PARSE_ERROR, "binary content (NUL bytes)")

    parts = split_front_matter(text)
    if parts.unterminated:
        return fail(WORKFLOW_PARSE_ERROR, "unterminated YAML front matter (no closing ---)", 1)
    config: Any = {}
    node: Node | None = None
    if parts.yaml is not None:
        try:
            config, node = load_yaml(parts.yaml, max_bytes=MAX_WORKFLOW_YAML_BYTES)
        except YamlError as exc:
            line = exc.line + parts.yaml_line if exc.line is not None else None
            return fail(WORKFLOW_PARSE_ERROR, f"invalid YAML front matter: {exc.message}", line)
        if config is None:
            config = {}
        if not isinstance(config, dict):
            return fail(FRONT_MATTER_NOT_A_MAP,
                        f"the front matter must be a map, got {_kind(config)}", parts.yaml_line)
    body = parts.body
    stripped = body.lstrip()
    prompt_line = parts.body_line + body[: len(body) - len(stripped)].count("\n")
    reader = _Reader(path, config, _lines(node, parts.yaml_line))
    workflow = _build(reader, path, body.strip(), prompt_line)
    if workflow.prompt_template:
        try:
            _compile(workflow.prompt_template)
        except LiquidError as exc:
            reader.diagnostics.append(Diagnostic(
                path, "prompt", _template_line(workflow, exc),
                f"{TEMPLATE_PARSE_ERROR}: {exc.message} (every attempt will fail)", "warning",
            ))
    errors = [d for d in reader.diagnostics if d.severity == "error"]
    diagnostics = sorted(reader.diagnostics, key=lambda d: (d.line or 0, d.key))
    if errors:
        return LoadedWorkflow(None, diagnostics, WORKFLOW_PARSE_ERROR)
    return LoadedWorkflow(workflow, diagnostics)


def _check_keys(reader: _Reader) -> None:
    for name, value in reader.config.items():
        key = str(name)
        if key in _NOT_USED:
            reader.report((key,), f"not used: {_NOT_USED[key]}", "warning")
            continue
        if key not in _KNOWN:
            hint = difflib.get_close_matches(key, list(_KNOWN), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            reader.report((key,), f"unknown key (ignored){extra}", "warning")
            continue
        if not isinstance(value, dict):
            continue
        for sub in value:
            dotted = f"{key}.{sub}"
            if dotted in _NOT_USED:
                reader.report((key, str(sub)), f"not used: {_NOT_USED[dotted]}", "warning")
            elif str(sub) not in _KNOWN[key]:
                hint = difflib.get_close_matches(str(sub), list(_KNOWN[key]), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                reader.report((key, str(sub)), f"unknown key (ignored){extra}", "warning")


def _aliased(reader: _Reader, logical: str) -> tuple[str | None, Any]:
    """(winning key, value) among the keys of `logical`; warns when they disagree."""
    present = [(key, value) for key in _ALIASES[logical]
               for found, value in [reader.lookup(key)] if found]
    if not present:
        return None, None
    winner, value = present[0]
    for key, other in present[1:]:
        if other != value:
            reader.report(tuple(key.split(".")),
                          f"conflicts with {winner} (using {winner})", "warning")
    return winner, value


def _build(reader: _Reader, path: Path, prompt: str, prompt_line: int) -> Workflow:
    _check_keys(reader)
    base = path.parent

    tracker = reader.section("tracker")
    kind = tracker.get("kind")
    if kind is None:
        reader.report(("tracker", "kind") if "tracker" in reader.config else ("tracker",),
                      "tracker.kind is required (this build supports `local`)")
        kind_text = "local"
    elif not isinstance(kind, str) or kind.strip() not in SUPPORTED_TRACKER_KINDS:
        reader.report(("tracker", "kind"),
                      f"unsupported tracker kind {kind!r} (this build supports `local`)")
        kind_text = str(kind)
    else:
        kind_text = kind.strip()
    provider = tracker.get("provider")
    if provider is not None and not isinstance(provider, dict):
        reader.report(("tracker", "provider"), f"expected a map, got {_kind(provider)}")
        provider = None
    active = reader.states(("tracker", "active_states"), tracker.get("active_states"),
                           DEFAULT_ACTIVE_STATES)
    terminal = reader.states(("tracker", "terminal_states"), tracker.get("terminal_states"),
                             DEFAULT_TERMINAL_STATES)
    if not active:
        reader.report(("tracker", "active_states"), "no active states: nothing is dispatched",
                      "warning")
    overlap = {norm_state(s) for s in active} & {norm_state(s) for s in terminal}
    if overlap:
        reader.report(("tracker", "active_states"),
                      f"also terminal (treated as terminal): {', '.join(sorted(overlap))}",
                      "warning")
    labels: list[str] = []
    raw_labels = tracker.get("required_labels")
    if raw_labels is not None and not isinstance(raw_labels, list):
        reader.report(("tracker", "required_labels"),
                      f"expected a list of labels, got {_kind(raw_labels)}")
    for index, label in enumerate(raw_labels if isinstance(raw_labels, list) else []):
        if not isinstance(label, str):
            reader.report(("tracker", "required_labels", index),
                          f"not a label: {label!r} (ignored)", "warning")
        else:
            if not label.strip():
                reader.report(("tracker", "required_labels", index),
                              "a blank label matches nothing: no issue is dispatched", "warning")
            if label.strip().lower() not in labels:
                labels.append(label.strip().lower())
    settings = TrackerSettings(
        kind=kind_text,
        root=reader.path_value(("tracker", "root"), tracker.get("root"), base / "issues", base),
        active_states=active,
        terminal_states=terminal,
        required_labels=tuple(labels),
        provider=dict(provider or {}),
        endpoint=reader.text(("tracker", "endpoint"), tracker.get("endpoint")),
        api_key=reader.text(("tracker", "api_key"), tracker.get("api_key")),
        project_slug=reader.text(("tracker", "project_slug"), tracker.get("project_slug")),
    )

    polling = reader.section("polling")
    interval = reader.integer(("polling", "interval_ms"), polling.get("interval_ms"), 30_000,
                              minimum=1, what="greater than 0")
    workspace = reader.section("workspace")
    workspace_root = reader.path_value(("workspace", "root"), workspace.get("root"),
                                       default_workspace_root(), base)
    git = _git_settings(reader, workspace.get("git"), base, workspace_root)

    hooks = reader.section("hooks")
    hook_settings = HookSettings(
        **{name: reader.text(("hooks", name), hooks.get(name), allow_empty=True) or None
           for name in HOOK_NAMES},
        timeout_ms=reader.integer(("hooks", "timeout_ms"), hooks.get("timeout_ms"), 60_000,
                                  minimum=1, what="greater than 0"),
    )

    agent = reader.section("agent")
    reader.section("acp")
    reader.section("codex")

    def at(key: str | None, fallback: str) -> KeyPath:
        return tuple((key or fallback).split("."))

    command_key, command_value = _aliased(reader, "command")
    command = reader.text(at(command_key, "agent.command"), command_value)
    protocol, adapter, command = _protocol(reader, command_key, command)
    if adapter is not None and command is not None and command_key is None:
        command_key = "acp.adapter"
    shell_key, shell_value = _aliased(reader, "shell")
    shell = reader.text(at(shell_key, "agent.shell"), shell_value) or "bash"
    prompt_mode = reader.text(("agent", "prompt"), agent.get("prompt")) or "stdin"
    if prompt_mode not in PROMPT_MODES:
        reader.report(("agent", "prompt"),
                      f"must be one of {', '.join(PROMPT_MODES)}, got {prompt_mode!r}")
        prompt_mode = "stdin"
    max_agents = reader.integer(("agent", "max_concurrent_agents"),
                                agent.get("max_concurrent_agents"), 10, minimum=0)
    if max_agents == 0:
        reader.report(("agent", "max_concurrent_agents"), "0: nothing is dispatched", "warning")
    timeouts: dict[str, int] = {}
    for logical, default, disable in (("stall_timeout_ms", 300_000, True),
                                      ("turn_timeout_ms", 3_600_000, True),
                                      ("prompt_timeout_ms", 3_600_000, True),
                                      ("read_timeout_ms", 30_000, False)):
        key, value = _aliased(reader, logical)
        timeouts[logical] = reader.integer(
            at(key, f"agent.{logical}"), value, default,
            disable_below=1 if disable else None,
            minimum=None if disable else 1, what="greater than 0")
    agent_settings = AgentSettings(
        command=command.strip() if command else None,
        command_key=command_key if command else None,
        shell=shell.strip(),
        prompt=prompt_mode,
        max_concurrent_agents=max_agents,
        max_concurrent_agents_by_state=_by_state(reader, agent.get(
            "max_concurrent_agents_by_state")),
        max_turns=reader.integer(("agent", "max_turns"), agent.get("max_turns"), 20,
                                 minimum=1, what="greater than 0"),
        max_retry_backoff_ms=reader.integer(("agent", "max_retry_backoff_ms"),
                                            agent.get("max_retry_backoff_ms"), 300_000,
                                            minimum=1, what="greater than 0"),
        max_idle_continuations=reader.integer(("agent", "max_idle_continuations"),
                                              agent.get("max_idle_continuations"), 5,
                                              minimum=0),
        **timeouts,
        protocol=protocol,
        adapter=adapter,
        env=_string_map(reader, ("acp", "env"), reader.section("acp").get("env")),
        permissions=_policy(reader),
        lease_paths=_paths(reader, ("acp", "lease_paths"),
                           reader.section("acp").get("lease_paths")),
    )

    server = reader.section("server")
    port = reader.integer(("server", "port"), server.get("port"), -1, minimum=0)
    if port > 65535:
        reader.report(("server", "port"), f"must be a port number (0-65535), got {port}")
        port = -1
    server_settings = ServerSettings(
        host=(reader.text(("server", "host"), server.get("host")) or "127.0.0.1").strip(),
        port=None if port < 0 else port,
    )
    mcp = reader.section("mcp")
    enabled = mcp.get("enabled", True)
    if not isinstance(enabled, bool):
        reader.report(("mcp", "enabled"), f"expected true or false, got {_kind(enabled)}")
        enabled = True
    host_url = reader.text(("mcp", "host_url"), mcp.get("host_url"))
    mcp_settings = McpSettings(
        enabled=enabled,
        host=(reader.text(("mcp", "host"), mcp.get("host")) or "127.0.0.1").strip(),
        host_url=host_url.strip().rstrip("/") if host_url else None,
    )

    return Workflow(
        path=path, prompt_template=prompt, prompt_line=prompt_line, tracker=settings,
        polling_interval_ms=interval, workspace_root=workspace_root, git=git,
        hooks=hook_settings,
        agent=agent_settings, server=server_settings, mcp=mcp_settings, config=reader.config,
    )




def _git_settings(reader: _Reader, value: Any, base: Path,
                  workspace_root: Path) -> GitSettings | None:
    """`workspace.git: {repo, base, branch_prefix, merge}`; None when absent or bad (each
    problem reported on its line: then nothing is dispatched)."""
    where: KeyPath = ("workspace", "git")
    if value is None:
        return None
    if not isinstance(value, dict):
        reader.report(where, f"expected a map with repo and base, got {_kind(value)}")
        return None
    for key in value:
        if str(key) not in GIT_KEYS:
            hint = difflib.get_close_matches(str(key), GIT_KEYS, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            reader.report((*where, str(key)), f"unknown key (ignored){extra}", "warning")
    lines = {key: line for key in GIT_KEYS
             if (line := line_of(reader.lines, (*where, key))) is not None}
    ok = True
    for key in ("repo", "base"):
        if value.get(key) is None:
            reader.report(where, f"workspace.git.{key} is required")
            ok = False
    repo = reader.path_value((*where, "repo"), value.get("repo"), base, base)
    names: dict[str, str] = {}
    for key, default in (("base", ""), ("branch_prefix", "marrow")):
        text = reader.text((*where, key), value.get(key))
        name = text.strip() if text is not None else default
        problem = branch_name_problem(name) if name else None
        if problem:
            reader.report((*where, key), problem)
            ok = False
        names[key] = name
    merge = reader.text((*where, "merge"), value.get("merge")) or "merge"
    if merge not in MERGE_MODES:
        reader.report((*where, "merge"), f"must be one of {', '.join(MERGE_MODES)}, "
                                         f"got {merge!r}")
        ok = False
    spaces = Path(os.path.abspath(workspace_root))
    if ok and (repo == spaces or spaces in repo.parents):
        reader.report((*where, "repo"), f"the repository {repo} is inside the workspace root "
                                        f"{spaces}; put the workspaces elsewhere")
        ok = False
    if not ok:
        return None
    return GitSettings(repo=repo, base=names["base"], branch_prefix=names["branch_prefix"],
                       merge=merge, lines=lines)


def _by_state(reader: _Reader, value: Any) -> dict[str, int]:
    path: KeyPath = ("agent", "max_concurrent_agents_by_state")
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.report(path, f"expected a map of state -> limit, got {_kind(value)}")
        return {}
    limits: dict[str, int] = {}
    for key, limit in value.items():
        sub = (*path, str(key))
        state = norm_state(key) if isinstance(key, str) else ""
        if not state:
            reader.report(sub, f"not a state name: {key!r} (entry ignored)", "warning")
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            reader.report(sub, f"limit must be a positive integer, got {limit!r} "
                               "(entry ignored)", "warning")
        else:
            if state in limits:
                reader.report(sub, f"{state!r} is listed twice (the last wins)", "warning")
            limits[state] = limit
    return limits


def _protocol(reader: _Reader, command_key: str | None,
              command: str | None) -> tuple[str, str | None, str | None]:
    """(protocol, adapter, command). An `acp:` block means ACP, as in smol-symphony's files;
    `agent.protocol` says so outright. `acp.adapter` names a preset, which gives the command
    unless one is set."""
    adapter_found, adapter = reader.lookup("acp.adapter")
    stated = reader.text(("agent", "protocol"), reader.section("agent").get("protocol"))
    if stated is not None and stated not in PROTOCOLS:
        reader.report(("agent", "protocol"),
                      f"must be one of {', '.join(PROTOCOLS)}, got {stated!r}")
        stated = None
    protocol = stated or ("acp" if adapter_found or command_key == "acp.command"
                          else "command")
    preset: str | None = None
    if adapter_found:
        if not isinstance(adapter, str) or adapter not in PRESETS:
            reader.report(("acp", "adapter"), f"unknown agent preset {adapter!r} (known: "
                          f"{', '.join(PRESETS)}; or set acp.command)")
        else:
            preset = adapter
    if protocol == "acp" and command is None and preset is not None:
        command = shlex.join(PRESETS[preset])
    return protocol, preset, command


def _string_map(reader: _Reader, path: KeyPath, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.report(path, f"expected a map of variable names to values, got {_kind(value)}")
        return {}
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            reader.report((*path, str(name)), "not a variable name (ignored)", "warning")
        elif isinstance(item, bool) or not isinstance(item, (str, int, float)):
            reader.report((*path, name), f"expected a string, got {_kind(item)} (ignored)",
                          "warning")
        else:
            out[name] = str(item)
    return out


def _paths(reader: _Reader, path: KeyPath, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        reader.report(path, f"expected a list of paths, got {_kind(value)}")
        return ()
    return tuple(value)


def _policy(reader: _Reader) -> PermissionPolicy:
    found, value = reader.lookup("acp.permissions")
    policy, problems = parse_policy(value if found else None, "acp.permissions")
    for problem in problems:
        where, _, message = problem.partition(": ")
        reader.report(tuple(where.split(".")), message)
    return policy


def validate_dispatch(workflow: Workflow) -> list[Diagnostic]:
    """What must hold before anything is dispatched (spec §6.3, smol's validateDispatch).

    Run it at startup and before every dispatch tick: the tracker root exists and is a folder,
    the workspace root does not hold it (a workspace must never be a tracker folder), and
    there is an agent command.
    """
    found: list[Diagnostic] = []
    root = workflow.tracker.root
    if not root.is_dir():
        found.append(Diagnostic(workflow.path, "tracker.root", None,
                                f"tracker root {root} is not an existing folder"))
    tracker = Path(os.path.abspath(root)).resolve()
    spaces = Path(os.path.abspath(workflow.workspace_root)).resolve()
    if spaces == tracker or spaces in tracker.parents:
        # Each workspace is a folder directly inside workspace.root: the tracker's own
        # folders (an issue named like one) would be taken for a workspace.
        found.append(Diagnostic(workflow.path, "workspace.root", None,
                                f"workspace root {spaces} holds the tracker root {tracker}; "
                                "put the workspaces in a folder of their own"))
    if not workflow.agent.command and workflow.agent.protocol == "acp":
        found.append(Diagnostic(workflow.path, "acp.adapter", None,
                                "no agent to start: set acp.adapter to a preset "
                                f"({', '.join(PRESETS)}) or acp.command"))
    elif not workflow.agent.command:
        found.append(Diagnostic(workflow.path, "agent.command", None,
                                "no agent command: set agent.command (acp.command and "
                                "codex.command are accepted too)"))
    if workflow.git is not None:
        found += _git_problems(workflow, workflow.git)
    return found


def _git_problems(workflow: Workflow, git: GitSettings) -> list[Diagnostic]:
    """The repository is a git repository and has the base branch (read from its files: this
    runs on the event loop, at every reload)."""
    from .worktrees import branch_exists, git_dir_of

    if git_dir_of(git.repo) is None:
        return [Diagnostic(workflow.path, "workspace.git.repo", git.lines.get("repo"),
                           f"{git.repo} is not a git repository (no .git in it)")]
    if not branch_exists(git.repo, git.base):
        return [Diagnostic(workflow.path, "workspace.git.base", git.lines.get("base"),
                           f"the repository {git.repo} has no branch {git.base!r}")]
    return []


def find_workflow(explicit: Path | str | None = None, cwd: Path | None = None) -> Path:
    """The workflow path: the explicit one, else `./WORKFLOW.md` (spec §5.1)."""
    if explicit is not None:
        return Path(os.path.abspath(Path(explicit).expanduser()))
    return (cwd or Path.cwd()) / WORKFLOW_FILE


def workflow_stamp(path: Path | str) -> tuple[int, int, str] | None:
    """(mtime_ns, size, sha256) of the file, for change detection; None if unreadable."""
    try:
        info = os.stat(path)
        head = userfile.read_head(Path(path), MAX_WORKFLOW_BYTES + 1)  # a FIFO never blocks
        digest = hashlib.sha256(head).hexdigest()
    except (OSError, userfile.RefusedFile):
        return None
    return info.st_mtime_ns, info.st_size, digest


# --------------------------------------------------------------------------------------------
# Prompt rendering


class _StrictEnvironment(Environment):
    # A template is trusted configuration, but a runaway loop should still fail the attempt.
    output_stream_limit = 4 * 1024 * 1024
    loop_iteration_limit = 1_000_000


_ENV = _StrictEnvironment(undefined=StrictUndefined, strict_filters=True)


@functools.lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    return _ENV.from_string(source)


def _template_line(workflow: Workflow | None, exc: LiquidError) -> int | None:
    context = exc.context()
    if context is None or workflow is None or not workflow.prompt_template:
        return None
    return workflow.prompt_line + context[0] - 1


def _where(workflow: Workflow, exc: LiquidError) -> str:
    context = exc.context()
    if not workflow.prompt_template:
        return " (in the default prompt)"
    if context is None:
        return ""
    return f" ({workflow.path.name} line {workflow.prompt_line + context[0] - 1}, " \
           f"column {context[1] + 1})"


def render_prompt(
    workflow: Workflow,
    issue: Issue | Mapping[str, Any],
    attempt: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render the workflow's prompt (or DEFAULT_PROMPT when it is empty) for one issue.

    Variables: `issue` (every field of `Issue.to_template`), `attempt` (None on the first run,
    then 1, 2, ...) and the `extra` ones (for example `retry_kind`); `extra` may not redefine
    `issue` or `attempt`. Strict: an unknown variable, attribute or filter fails. Any failure
    is a PromptError with code template_parse_error or template_render_error.
    """
    source = workflow.prompt_template or DEFAULT_PROMPT
    context: dict[str, Any] = dict(extra or {})
    clash = {"issue", "attempt"} & set(context)
    if clash:
        raise ValueError(f"extra may not redefine {', '.join(sorted(clash))}")
    context["issue"] = issue.to_template() if isinstance(issue, Issue) else dict(issue)
    context["attempt"] = attempt
    try:
        template = _compile(source)
    except LiquidError as exc:
        raise PromptError(TEMPLATE_PARSE_ERROR, f"{exc.message}{_where(workflow, exc)}") from None
    try:
        return template.render(**context)
    except LiquidError as exc:
        raise PromptError(TEMPLATE_RENDER_ERROR, f"{exc.message}{_where(workflow, exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a template must never take the dispatcher down
        raise PromptError(TEMPLATE_RENDER_ERROR, f"{type(exc).__name__}: {exc}") from None
