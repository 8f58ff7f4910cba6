"""marrow.toml agents that speak ACP: `protocol`, `preset`, `permissions` (and `env`), each bad
value one error on its line, and what `validate` prints."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from marrow_tui.config.load import Loaded, load_config
from marrow_tui.config.model import AgentConfig
from marrow_tui.config.summary import format_summary
from marrow_tui.core.acp import PERMISSION_TIMEOUT, PermissionPolicy


def write(folder: Path, keys: str, *, programs: tuple[str, ...] = ("opencode",)) -> Path:
    """A config of one agent "a" with `keys`; `programs` are on the agent's PATH."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in programs:
        script = bin_dir / program
        script.write_text("#!/bin/sh\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    path = folder / "marrow.toml"
    path.write_text(f'[[agents]]\nname = "a"\nworkspace = "ws"\n'
                    f'env = {{ PATH = "{bin_dir}" }}\n' + textwrap.dedent(keys))
    return path


def agent_of(loaded: Loaded) -> AgentConfig:
    assert loaded.errors == [], [str(d) for d in loaded.errors]
    assert loaded.config is not None
    return loaded.config.agents[0]


def problems(loaded: Loaded) -> list[tuple[int | None, str, str, str]]:
    """(line, key, severity, message) of every diagnostic."""
    return [(d.line, d.key, d.severity, d.message) for d in loaded.diagnostics]


def test_an_agent_runs_a_command_unless_it_says_acp(tmp_path: Path) -> None:
    agent = agent_of(load_config(write(tmp_path, 'agent_command = "opencode run"\n')))
    assert (agent.protocol, agent.preset, agent.permissions) == ("command", None,
                                                                 PermissionPolicy())


def test_a_preset_gives_the_command_and_agent_command_overrides_it(tmp_path: Path) -> None:
    agent = agent_of(load_config(write(tmp_path, 'protocol = "acp"\npreset = "opencode"\n')))
    assert (agent.protocol, agent.preset, agent.agent_command) == ("acp", "opencode",
                                                                   "opencode acp")
    assert dict(agent.env) == {"PATH": str(tmp_path / "bin")}
    agent = agent_of(load_config(write(tmp_path, 'protocol = "acp"\npreset = "gemini"\n'
                                                 'agent_command = "opencode acp --pure"\n')))
    assert (agent.preset, agent.agent_command) == ("gemini", "opencode acp --pure")
    agent = agent_of(load_config(write(tmp_path, 'protocol = "acp"\n'
                                                 'agent_command = "opencode acp"\n')))
    assert (agent.preset, agent.agent_command) == (None, "opencode acp")


@pytest.mark.parametrize(("preset", "command"), [
    ("opencode", "opencode acp"), ("codex", "codex-acp"), ("claude", "claude-code-acp"),
    ("gemini", "gemini --acp")])
def test_every_preset(tmp_path: Path, preset: str, command: str) -> None:
    path = write(tmp_path, f'protocol = "acp"\npreset = "{preset}"\n',
                 programs=(command.split()[0],))
    assert agent_of(load_config(path)).agent_command == command


def test_permissions_as_a_mode_or_a_table(tmp_path: Path) -> None:
    keys = 'protocol = "acp"\npreset = "opencode"\n'
    agent = agent_of(load_config(write(tmp_path, keys + 'permissions = "deny"\n')))
    assert agent.permissions == PermissionPolicy(mode="deny")
    agent = agent_of(load_config(write(tmp_path, keys + (
        'permissions = { mode = "allow", allow = ["read", "search"], deny = ["delete"], '
        'timeout_ms = 90000, default = "allow" }\n'))))
    assert agent.permissions == PermissionPolicy("allow", frozenset({"read", "search"}),
                                                 frozenset({"delete"}), 90.0, "allow")
    agent = agent_of(load_config(write(tmp_path, keys + '[agents.permissions]\n'
                                                        'allow = ["read"]\n')))
    assert agent.permissions == PermissionPolicy(allow=frozenset({"read"}))
    assert agent.permissions.timeout == PERMISSION_TIMEOUT


@pytest.mark.parametrize(("keys", "expected"), [
    ('protocol = "acpp"\npreset = "opencode"\n',
     [(5, "agents[0].protocol", "must be one of command, acp, not 'acpp'")]),
    ('protocol = "acpp"\n',  # no "agent_command missing" as well
     [(5, "agents[0].protocol", "must be one of command, acp, not 'acpp'")]),
    ("protocol = 1\n",
     [(5, "agents[0].protocol", "expected string, found integer 1")]),
    ('protocol = "acp"\n',
     [(5, "agents[0].protocol", "an ACP agent needs a preset (one of opencode, codex, "
                                "claude, gemini) or agent_command")]),
    ('protocol = "acp"\npreset = "cursor"\n',
     [(6, "agents[0].preset", "unknown agent preset 'cursor' (known: opencode, codex, "
                              "claude, gemini; or set agent_command)")]),
    ('protocol = "acp"\npreset = ["opencode"]\n',
     [(6, "agents[0].preset", "expected string, found array")]),
    ('agent_command = "opencode run"\npreset = "opencode"\n',
     [(6, "agents[0].preset", 'a preset starts an ACP agent: set protocol = "acp"')]),
    ('agent_command = "opencode run"\npermissions = "ask"\n',
     [(6, "agents[0].permissions", "permissions are for an ACP agent's requests: set "
                                   'protocol = "acp"')]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = "sometimes"\n',
     [(7, "agents[0].permissions", "must be one of ask, allow, deny or a table, got "
                                   "'sometimes'")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = 3\n',
     [(7, "agents[0].permissions", "must be one of ask, allow, deny or a table")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { mode = "maybe" }\n',
     [(7, "agents[0].permissions.mode", "must be one of ask, allow, deny, got 'maybe'")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { allow = "read" }\n',
     [(7, "agents[0].permissions.allow", "must be a list of tool kinds (read, edit, delete, "
                                         "move, search, execute, think, fetch, switch_mode, "
                                         "other)")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { deny = ["rm"] }\n',
     [(7, "agents[0].permissions.deny", "unknown tool kind 'rm' (known: read, edit, delete, "
                                        "move, search, execute, think, fetch, switch_mode, "
                                        "other)")]),
    ('protocol = "acp"\npreset = "opencode"\n'
     'permissions = { allow = ["edit"], deny = ["edit"] }\n',
     [(7, "agents[0].permissions", "edit both allowed and denied")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { timeout_ms = 0 }\n',
     [(7, "agents[0].permissions.timeout_ms", "must be a whole number of milliseconds above 0, "
                                              "got 0")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { default = "ask" }\n',
     [(7, "agents[0].permissions.default", "must be one of reject, allow, got 'ask'")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { mood = "ask" }\n',
     [(7, "agents[0].permissions.mood", "unknown key (known: allow, conflict, "
                                        "conflict_timeout_ms, default, deny, mode, "
                                        "timeout_ms)")]),
    ('protocol = "acp"\npreset = "opencode"\npermissions = { conflict = "later" }\n',
     [(7, "agents[0].permissions.conflict", "must be one of ask, wait, got 'later'")]),
    ('protocol = "acp"\npreset = "opencode"\n[agents.permissions]\nmode = "maybe"\n',
     [(8, "agents[0].permissions.mode", "must be one of ask, allow, deny, got 'maybe'")]),
])
def test_each_bad_value_is_one_error_on_its_line(tmp_path: Path, keys: str,
                                                 expected: list[tuple[int, str, str]]) -> None:
    loaded = load_config(write(tmp_path, keys))
    assert loaded.config is None
    assert [(line, key, message) for line, key, _, message in problems(loaded)] == expected


def test_a_preset_whose_program_is_missing_is_an_error_unless_disabled(tmp_path: Path) -> None:
    keys = 'protocol = "acp"\npreset = "claude"\n'
    loaded = load_config(write(tmp_path, keys))
    assert problems(loaded) == [(6, "agents[0].preset", "error", (
        "command not found: claude-code-acp (preset 'claude' runs `claude-code-acp`; install "
        "it, or set agent_command)"))]
    loaded = load_config(write(tmp_path, keys + "enabled = false\n"))
    assert [severity for _, _, severity, _ in problems(loaded)] == ["warning"]
    assert agent_of(loaded).agent_command == "claude-code-acp"
    assert load_config(write(tmp_path, keys), check_commands=False).errors == []


def test_the_prompt_mode_of_an_acp_agent_is_a_warning(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, 'protocol = "acp"\npreset = "opencode"\n'
                                         'prompt = "argv"\n'))
    assert problems(loaded) == [(7, "agents[0].prompt", "warning",
                                 "has no effect on an ACP agent (its prompt is sent over ACP)")]
    assert agent_of(loaded).protocol == "acp"


def test_other_agents_are_still_checked_beside_a_bad_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'protocol = "acp"\npreset = "nope"\n\n[[agents]]\nname = "b"\n'
                           'workspace = "wb"\nagent_command = "no-such-program-here"\n')
    assert [key for _, key, _, _ in problems(load_config(path))] == [
        "agents[0].preset", "agents[1].agent_command"]


def test_validate_shows_how_an_acp_agent_starts(tmp_path: Path) -> None:
    path = write(tmp_path, 'protocol = "acp"\npreset = "opencode"\n'
                           'permissions = { allow = ["read"], deny = ["delete"] }\n'
                           f'\n[[agents]]\nname = "b"\nworkspace = "wb"\nprotocol = "acp"\n'
                           f'env = {{ PATH = "{tmp_path / "bin"}" }}\n'
                           'preset = "codex"\nagent_command = "opencode acp --pure"\n')
    loaded = load_config(path)
    assert loaded.config is not None
    summary = format_summary(loaded.config)
    assert ("  command: opencode acp (from preset opencode)\n  protocol: acp\n"
            "  permissions: ask; allow read; deny delete\n") in summary
    assert "  command: opencode acp --pure (instead of preset codex)\n" in summary
    assert "  prompt:" not in summary.split("[b]")[0]


def test_the_documented_acp_example_loads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    section = docs.read_text(encoding="utf-8").split("### Agents that speak ACP", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "marrow.toml"
    path.write_text(example)
    loaded = load_config(path, check_commands=False)
    assert loaded.diagnostics == []
    assert loaded.config is not None
    [coder, reviewer] = loaded.config.agents
    assert (coder.protocol, coder.agent_command) == ("acp", "claude-code-acp")
    assert coder.permissions.timeout == 600.0
    assert coder.permissions.verdict("read") == "allow"
    assert (reviewer.agent_command, reviewer.permissions.mode) == ("opencode acp --pure",
                                                                   "deny")
