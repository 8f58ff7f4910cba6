"""The scheduler's TOML config: read with tomllib, edited with tomlkit (comments and order kept).

A marrow-core runtime config loads as it is: every key of its schema is known, the ones we
have no use for are read and reported as ignored (docs/configuration.md lists them). Problems
are `Diagnostic`s that name the file, the key (`agents[1].heartbeat_interval`, indexes count
from 0) and the line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import io
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from . import userfile
from .services.graph import cycle_in, cycle_text

try:
    import pwd
except ImportError:  # pragma: no cover - not on Unix
    pwd = None  # type: ignore[assignment]

DEFAULT_CONFIG = "marrow.toml"

#: How the assembled prompt reaches the agent command.
PROMPT_MODES = ("stdin", "argv", "file")

#: service.mode values marrow-core knows. We run "supervisor" configs as "single_user".
SERVICE_MODES = ("single_user", "supervisor")

PLUGIN_KINDS = ("dashboard", "background_service")

#: the deepest nesting of arrays and inline tables a config may have (tomlkit's own limit;
#: tomllib would recurse until Python gives up). A real config needs three or four.
MAX_NESTING = 100
#: the most parts a dotted key may have (a.b.c has three)
MAX_KEY_PARTS = 100


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
    #: where run logs go instead of <workspace>/runtime/logs/exec (the orchestrator keeps
    #: them outside issue workspaces, which are committed and then removed); not a TOML key
    logs: Path | None = None

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
        return _sorted(found)


# --------------------------------------------------------------------------------------------
# Where keys are: tomllib gives values, not positions, so a small scanner over the raw text
# records the line of every key, table header and array element.

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

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


class _Locator:
    """Maps key paths such as ("agents", 1, "name") to the line the key is written on."""

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        self._text = text
        self._i = 0
        self._line = 1
        # The text has already parsed with tomllib; a surprise here only loses positions.
        with contextlib.suppress(ValueError, IndexError, RecursionError):
            self._document()

    def line(self, path: Iterable[str | int]) -> int | None:
        """The line of `path`, else of its closest recorded parent (a table header)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

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
                match = _BARE_KEY.match(self._text, self._i)
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


# --------------------------------------------------------------------------------------------
# The schema


@dataclass(slots=True, frozen=True)
class _Spec:
    #: str | int | float | bool | strs (a string or an array of strings) | env (str values)
    #: | anyenv (scalar values, stringified: plugins) | table | tables (array of tables)
    #: | command (a string or an array of strings) | port (an integer or "auto")
    #: | deps (names, or { name, env } tables)
    kind: str
    lo: float | None = None
    hi: float | None = None
    #: read for compatibility, no effect: listed in Config.ignored
    ignored: bool = False


_TOP_KEYS = {
    "core_dir": _Spec("str", ignored=True),
    "profile": _Spec("table"),
    "service": _Spec("table"),
    "agents": _Spec("tables"),
    "plugins": _Spec("tables"),
    "services": _Spec("tables"),
    "ipc": _Spec("table"),
    "sync": _Spec("table"),
    "self_check": _Spec("table"),
}
_PROFILE_KEYS = {
    "root_dir": _Spec("str", ignored=True),
    "rules_path": _Spec("str"),
    "source_context_dir": _Spec("str", ignored=True),
}
_SERVICE_KEYS = {
    "mode": _Spec("str"),
    "runtime_root": _Spec("str", ignored=True),
    "log_dir": _Spec("str", ignored=True),
    "config_path": _Spec("str", ignored=True),
}
_IPC_KEYS = {
    "enabled": _Spec("bool", ignored=True),
    "socket_path": _Spec("str", ignored=True),
    "task_dir": _Spec("str", ignored=True),
}
_SYNC_KEYS = {
    "enabled": _Spec("bool", ignored=True),
    "interval_seconds": _Spec("int", 60, 604800, ignored=True),
    "failure_backoff_seconds": _Spec("int", 5, 86400, ignored=True),
    "state_file": _Spec("str", ignored=True),
    "lock_file": _Spec("str", ignored=True),
}
_SELF_CHECK_KEYS = {
    "enabled": _Spec("bool", ignored=True),
    "interval_seconds": _Spec("int", 60, 604800, ignored=True),
    "wake_agent": _Spec("str", ignored=True),
    "extra_commands": _Spec("strs", ignored=True),
}
_PLUGIN_KEYS = {
    "name": _Spec("str", ignored=True),
    "kind": _Spec("str", ignored=True),
    "command": _Spec("str", ignored=True),
    "args": _Spec("strs", ignored=True),
    "enabled": _Spec("bool", ignored=True),
    "auto_start": _Spec("bool", ignored=True),
    "cwd": _Spec("str", ignored=True),
    "workspace": _Spec("str", ignored=True),
    "config_path": _Spec("str", ignored=True),
    "capabilities": _Spec("strs", ignored=True),
    "env": _Spec("anyenv", ignored=True),
}
AGENT_KEYS = {
    "name": _Spec("str"),
    "agent_command": _Spec("str"),
    "heartbeat_interval": _Spec("int", 60, 604800),
    "heartbeat_timeout": _Spec("int", 5, 86400),
    "workspace": _Spec("str"),
    "user": _Spec("str", ignored=True),
    "run_as_user": _Spec("str", ignored=True),
    "run_as_group": _Spec("str", ignored=True),
    "home": _Spec("str", ignored=True),
    "context_dirs": _Spec("strs"),
    "log_retention_days": _Spec("int", 0),
    "log_max_count": _Spec("int", 0),
    # ours
    "prompt": _Spec("str"),
    "env": _Spec("env"),
    "enabled": _Spec("bool"),
    "role": _Spec("str"),
    "role_file": _Spec("str"),
    "context_timeout": _Spec("float", 1, 3600),
    "stop_grace": _Spec("float", 0, 600),
}

#: [[services]] (ours: helper processes; not to be confused with marrow-core's [service])
SERVICES_KEYS = {
    "name": _Spec("str"),
    "command": _Spec("command"),
    "cwd": _Spec("str"),
    "env": _Spec("env"),
    "port": _Spec("port"),
    "depends_on": _Spec("deps"),
    "health": _Spec("table"),
    "start_timeout": _Spec("float", 1, 3600),
    "restart": _Spec("str"),
    "max_restarts": _Spec("int", 0),
    "backoff_initial": _Spec("float", 0.1, 3600),
    "backoff_max": _Spec("float", 1, 86400),
    "stop_grace": _Spec("float", 0, 600),
    "enabled": _Spec("bool"),
}
HEALTH_KEYS = {
    "http": _Spec("str"),
    "expect": _Spec("int"),
    "tcp": _Spec("bool"),
    "command": _Spec("command"),
    "interval": _Spec("float", 0.5, 3600),
    "timeout": _Spec("float", 0.1, 600),
    "failures": _Spec("int", 1, 100),
}
DEPENDENCY_KEYS = {
    "name": _Spec("str"),
    "env": _Spec("str"),
}
RESTART_POLICIES = ("no", "on-failure", "always")
_NO_PORT = ('uses {port} but the service has no port (set port = N, or "auto" to pick a free '
            'one)')
HEALTH_KINDS = ("http", "tcp", "command")


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


def dotted(path: Iterable[str | int]) -> str:
    """("agents", 0, "env", "A B") -> 'agents[0].env."A B"'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out += f".{text}" if out else text
    return out


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: d.line or 0)


def _default_home(user: str) -> str:
    if pwd is not None:
        with contextlib.suppress(KeyError, ValueError):
            return pwd.getpwnam(user).pw_dir
    base = "/Users" if sys.platform == "darwin" else "/home"
    return f"{base}/{user}"


def _command_exists(program: str, path_env: str | None) -> bool:
    """Whether exec would find `program`: an absolute path, or a name on PATH."""
    if "/" in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program, path=path_env) is not None


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


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(slots=True)
class _ServiceDraft:
    """One [[services]] table while the checks that need every service run."""

    index: int
    name: str
    enabled: bool
    port: int | None
    deps: list[tuple[KeyPath, Dependency]]
    config: ServiceConfig | None


class _Checker:
    """Walks the parsed document, collecting diagnostics and ignored keys."""

    def __init__(self, path: Path, text: str, *, check_commands: bool) -> None:
        self.path = path
        self.check_commands = check_commands
        self.base = path.absolute().parent
        self.locator = _Locator(text)
        self.diagnostics: list[Diagnostic] = []
        self._errors = 0  # counted as reported: a file of 90,000 tables asks per table
        self.ignored: list[str] = []

    # -- reporting --

    def report(self, at: KeyPath, message: str, severity: str = "error") -> None:
        self.diagnostics.append(
            Diagnostic(self.path, dotted(at), self.locator.line(at), message, severity))
        self._errors += severity == "error"

    def warn(self, at: KeyPath, message: str) -> None:
        self.report(at, message, "warning")

    def error_count(self) -> int:
        return self._errors

    def resolve(self, raw: str, base: Path | None = None) -> Path:
        """A path from the file: `~` expanded, relative ones joined to the config's folder."""
        expanded = os.path.expanduser(raw)
        return Path(os.path.normpath((base or self.base) / expanded))

    # -- typed reading --

    def read(self, table: Mapping[str, Any], at: KeyPath, specs: Mapping[str, _Spec],
             ignored_prefix: str) -> dict[str, Any]:
        """Checks every key of `table` against `specs`; returns the well-typed values."""
        values: dict[str, Any] = {}
        for key, raw in table.items():
            where = at + (key,)
            spec = specs.get(key)
            if spec is None:
                self.report(where, _unknown_key_message(key, specs))
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

    def _convert(self, at: KeyPath, spec: _Spec, raw: object) -> tuple[bool, Any]:
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

    def _clamp(self, at: KeyPath, spec: _Spec, value: float) -> float:
        lo = spec.lo if spec.lo is not None else value
        hi = spec.hi if spec.hi is not None else value
        used = max(lo, min(hi, value))
        if used != value:
            used = type(value)(used)
            span = f"[{_num(lo)}, {_num(hi)}]" if spec.hi is not None else f">= {_num(lo)}"
            self.warn(at, f"{_num(value)} is outside {span}, using {_num(used)}")
        return used

    # -- the document --

    def check(self, data: dict[str, Any]) -> Config | None:
        top = self.read(data, (), _TOP_KEYS, "")
        sections = {
            name: self.read(top[name], (name,), specs, name) if name in top else {}
            for name, specs in (("profile", _PROFILE_KEYS), ("service", _SERVICE_KEYS),
                                ("ipc", _IPC_KEYS), ("sync", _SYNC_KEYS),
                                ("self_check", _SELF_CHECK_KEYS))
        }
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
        )

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
                line = self.locator.line(("agents", first, "name"))
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
        command = self._required(at, raw, values, "agent_command")
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
        if command:
            command = self._command(at + ("agent_command",), command,
                                    dict(values.get("env", ())), values.get("enabled", True))
        if self.error_count() > errors_before or workspace is None:
            return name, None
        dirs = [self.resolve(d) for d in values.get("context_dirs", [])]
        for folder in dirs:
            if folder.exists() and not folder.is_dir():
                self.warn(at + ("context_dirs",), f"context dir {folder} is not a folder "
                                                  f"(no context scripts from it)")
        optional = {key: values[key] for key in (
            "heartbeat_interval", "heartbeat_timeout", "log_retention_days", "log_max_count",
            "env", "enabled", "role", "context_timeout", "stop_grace") if key in values}
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
            **optional,
        )

    def _required(self, at: KeyPath, raw: Mapping[str, Any], values: Mapping[str, Any],
                  key: str) -> str:
        if key not in raw:
            self.report(at + (key,), f"missing required key {key!r}")
            return ""
        value = values.get(key, "").strip()
        if key in values and not value:
            self.report(at + (key,), f"{key} must not be empty")
        return str(value)

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
        if self.check_commands and not _command_exists(program, env.get("PATH")):
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

    # -- [[services]] --

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
        line = self.locator.line((table, index, key))
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
                      f"{_num(backoff_initial)} is more than backoff_max "
                      f"({_num(backoff_max)}), using {_num(backoff_max)}")
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
        if self.check_commands and not _command_exists(program, env.get("PATH")):
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

    def _profile_paths(self, profile: Mapping[str, Any]) -> tuple[Path | None, Path | None]:
        root_raw = profile.get("root_dir", "").strip()
        root = self.resolve(root_raw) if root_raw else None
        source_raw = profile.get("source_context_dir", "").strip()
        if source_raw:
            return root, self.resolve(source_raw, root)
        return root, (root / "context.d") if root else None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _unknown_key_message(key: str, specs: Mapping[str, _Spec]) -> str:
    close = difflib.get_close_matches(key, list(specs), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


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
    problem = _text_problem(path, text)
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
    return Loaded(config, _sorted(checker.diagnostics))


def _text_problem(path: Path, text: str) -> Diagnostic | None:
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


# --------------------------------------------------------------------------------------------
# Editing


def edit_agent(path: Path, agent: str, key: str, value: object) -> None:
    """Sets `key` of the [[agents]] table named `agent` to `value` (None removes the key).

    Comments, key order and formatting of everything else survive byte for byte. The result
    is checked with `load_config` first: an edit that would leave the file with errors raises
    ValueError (with the diagnostics) and the file is not touched. The write is atomic and
    keeps the file's mode; a symlinked config is edited where it points. A file `load_config`
    would refuse unread (not a regular file, over the size cap, not UTF-8, nested too deeply)
    is a ValueError too.
    """
    if key not in AGENT_KEYS:
        raise ValueError(_unknown_key_message(key, AGENT_KEYS) + " for an agent")
    target = Path(os.path.realpath(path))
    try:
        text = userfile.read_text(target, userfile.CONFIG_FILE_CAP)
    except userfile.RefusedFile as exc:
        reason = exc.reason + (" for a config file" if exc.kind == "large" else "")
        raise ValueError(f"{path}: {reason}") from None
    problem = _text_problem(path, text)
    if problem is not None:
        raise ValueError(str(problem))
    doc = tomlkit.parse(text)
    table = _find_agent_table(doc, agent, path)
    if key in ("user", "run_as_user"):  # edit the spelling the file already uses
        other = "run_as_user" if key == "user" else "user"
        key = other if other in table and key not in table else key
    _set_key(table, key, value, newline="\r\n" if "\r\n" in text else "\n")
    new_text = tomlkit.dumps(doc)
    loaded = load_config_text(new_text, path)
    if loaded.errors:
        raise ValueError("\n".join(str(d) for d in loaded.errors))
    _write_atomic(target, new_text)


def _find_agent_table(doc: tomlkit.TOMLDocument, agent: str, path: Path) -> Any:
    tables = doc.get("agents")
    if isinstance(tables, (AoT, list)):
        for table in tables:
            name = table.get("name") if isinstance(table, Mapping) else None
            if isinstance(name, str) and name.strip() == agent:
                return table
    raise ValueError(f"{path}: no agent named {agent!r}")


def _toml_value(value: object) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_toml_value(v) for v in value]
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        inline.update({str(k): _toml_value(v) for k, v in value.items()})
        return inline
    return value


def _set_key(table: Any, key: str, value: object, *, newline: str = "\n") -> None:
    if value is None:
        if key in table:
            del table[key]
        return
    item = tomlkit.item(_toml_value(value))
    if key in table or not isinstance(table, Table):
        table[key] = item
        return
    item.trivia.trail = newline
    # tomlkit appends after trailing blank lines and comments (which belong to whatever comes
    # next); put the new key right after the table's last key instead.
    body = table.value.body
    last = max((i for i, (k, v) in enumerate(body)
                if k is not None and not isinstance(v, (Table, AoT))), default=-1)
    if 0 <= last < len(body) - 1:
        table.value._insert_at(last + 1, key, item)
    else:
        table[key] = item


def _write_atomic(target: Path, text: str) -> None:
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# Summary


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
        f"  command: {agent.agent_command}",
        f"  prompt: {agent.prompt}",
        "  context dirs: " + ", ".join(_path_text(d) for d in agent.context_dirs),
    ]
    if agent.role_file is not None:
        lines.append(f"  role file: {_path_text(agent.role_file)}")
    if agent.env:
        lines.append("  env: " + ", ".join(name for name, _ in agent.env))
    return lines


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
        restart += (f" ({limit}, backoff {_num(service.backoff_initial)}s to "
                    f"{_num(service.backoff_max)}s)")
    lines.append(f"  restart: {restart}")
    if service.env:
        lines.append("  env: " + ", ".join(name for name, _ in service.env))
    return lines
