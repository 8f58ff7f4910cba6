"""The scheduler config: marrow-core compatibility, our stricter checks, line numbers, edits."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marrow_tui.config.diagnostics import Diagnostic, dotted
from marrow_tui.config.edit import edit_agent
from marrow_tui.config.load import Loaded, load_config, load_config_text
from marrow_tui.config.model import AgentConfig, Config
from marrow_tui.config.summary import format_summary

CMD = "sh -c 'cat >/dev/null'"


def write(folder: Path, text: str, name: str = "marrow.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def agent_toml(name: str = "a", extra: str = "", workspace: str = "ws") -> str:
    return (f'[[agents]]\nname = "{name}"\nagent_command = "{CMD}"\n'
            f'workspace = "{workspace}"\n{extra}')


def load_ok(path: Path) -> Config:
    loaded = load_config(path)
    assert loaded.errors == [], [str(d) for d in loaded.errors]
    assert loaded.config is not None
    return loaded.config


def only_error(loaded: Loaded) -> Diagnostic:
    assert loaded.config is None
    assert len(loaded.errors) == 1, [str(d) for d in loaded.diagnostics]
    return loaded.errors[0]


# ---- defaults and marrow-core's acceptance tests -----------------------------------------


def test_minimal_agent_gets_marrow_core_defaults_and_ours(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, agent_toml()))
    assert loaded.diagnostics == []
    config = loaded.config
    assert config is not None and config.path == tmp_path / "marrow.toml"
    agent = config.agents[0]
    assert agent == AgentConfig(
        name="a", agent_command=CMD, workspace=tmp_path / "ws",
        context_dirs=(tmp_path / "ws" / "context.d",))
    assert (agent.heartbeat_interval, agent.heartbeat_timeout) == (300, 500)
    assert (agent.log_retention_days, agent.log_max_count) == (7, 200)
    assert (agent.prompt, agent.enabled, agent.env) == ("stdin", True, ())
    assert (agent.context_timeout, agent.stop_grace) == (15.0, 10.0)
    assert agent.log_dir == tmp_path / "ws" / "runtime" / "logs" / "exec"
    assert agent.argv() == ["sh", "-c", "cat >/dev/null"]
    assert config.ignored == () and config.rules_path is None and config.mode == "single_user"


def test_name_is_stripped(tmp_path: Path) -> None:
    config = load_ok(write(tmp_path, agent_toml(name="  curator  ")))
    assert config.agents[0].name == "curator"
    assert config.agent("curator") is config.agents[0]
    assert config.agent("nobody") is None


def test_empty_name_is_an_error(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, agent_toml(name="   "))))
    assert (error.key, error.line, error.message) == ("agents[0].name", 2,
                                                      "name must not be empty")


def test_interval_10_is_clamped_to_60_with_exactly_one_warning(tmp_path: Path) -> None:
    path = write(tmp_path, agent_toml(extra="heartbeat_interval = 10\n"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_config(path)
    assert caught == []  # a diagnostic, not a Python UserWarning
    assert loaded.errors == [] and loaded.config is not None
    assert loaded.config.agents[0].heartbeat_interval == 60
    [warning] = loaded.diagnostics
    assert warning.severity == "warning" and warning.line == 5
    assert warning.key == "agents[0].heartbeat_interval"
    assert warning.message == "10 is outside [60, 604800], using 60"


def test_multi_day_interval_is_allowed(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, agent_toml(extra="heartbeat_interval = 302400\n")))
    assert loaded.diagnostics == []
    assert loaded.config is not None and loaded.config.agents[0].heartbeat_interval == 302400


@pytest.mark.parametrize(("key", "given", "field", "used"), [
    ("heartbeat_interval", "700000", "heartbeat_interval", 604800),
    ("heartbeat_timeout", "1", "heartbeat_timeout", 5),
    ("heartbeat_timeout", "100000", "heartbeat_timeout", 86400),
    ("log_retention_days", "-1", "log_retention_days", 0),
    ("log_max_count", "-5", "log_max_count", 0),
    ("context_timeout", "0.5", "context_timeout", 1.0),
    ("context_timeout", "4000", "context_timeout", 3600.0),
    ("stop_grace", "-1", "stop_grace", 0.0),
    ("stop_grace", "601", "stop_grace", 600.0),
])
def test_agent_clamps(tmp_path: Path, key: str, given: str, field: str, used: float) -> None:
    loaded = load_config(write(tmp_path, agent_toml(extra=f"{key} = {given}\n")))
    assert loaded.config is not None
    assert getattr(loaded.config.agents[0], field) == used
    [warning] = loaded.warnings
    assert warning.line == 5 and given in warning.message and f"using {used:g}" in warning.message


@pytest.mark.parametrize(("table", "key", "given", "used"), [
    ("sync", "interval_seconds", 10, 60),
    ("sync", "failure_backoff_seconds", 1, 5),
    ("self_check", "interval_seconds", 700000, 604800),
])
def test_ignored_tables_are_clamped_like_marrow_core(tmp_path: Path, table: str, key: str,
                                                     given: int, used: int) -> None:
    loaded = load_config(write(tmp_path, f"[{table}]\n{key} = {given}\n"))
    [warning] = loaded.diagnostics
    assert (warning.severity, warning.key, warning.line) == ("warning", f"{table}.{key}", 2)
    assert warning.message.endswith(f"using {used}")


def test_unknown_service_mode_is_an_error(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, '[service]\nmode = "cluster"\n')))
    assert (error.key, error.line) == ("service.mode", 2)
    assert "'single_user' or 'supervisor'" in error.message


def test_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, "unknown_key = true\n" + agent_toml())))
    assert (error.key, error.line, error.message) == ("unknown_key", 1,
                                                      "unknown key 'unknown_key'")


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, agent_toml(extra="heartbeat_intervall = 9\n"))))
    assert error.line == 5
    assert error.message == "unknown key 'heartbeat_intervall' (did you mean 'heartbeat_interval'?)"


@pytest.mark.parametrize("table", ["profile", "service", "ipc", "sync", "self_check"])
def test_unknown_keys_in_every_table_are_errors(tmp_path: Path, table: str) -> None:
    error = only_error(load_config(write(tmp_path, f"[{table}]\nnope = 1\n")))
    assert (error.key, error.line) == (f"{table}.nope", 2)


def test_unknown_plugin_key_is_an_error(tmp_path: Path) -> None:
    text = '[[plugins]]\nname = "p"\ncommand = "x"\nport = 1\n'
    error = only_error(load_config(write(tmp_path, text)))
    assert (error.key, error.line) == ("plugins[0].port", 4)


def expected_home(user: str) -> Path:
    import pwd
    try:
        return Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return Path(("/Users/" if sys.platform == "darwin" else "/home/") + user)


def test_user_without_workspace_derives_home_workspace_and_context_dirs(tmp_path: Path) -> None:
    text = f'[[agents]]\nname = "a"\nuser = "marrow"\nagent_command = "{CMD}"\n'
    config = load_ok(write(tmp_path, text))
    agent = config.agents[0]
    home = expected_home("marrow")
    assert agent.workspace == home and agent.home == str(home) and agent.user == "marrow"
    assert agent.context_dirs == (home / "context.d",)
    assert config.ignored == ("agents.user",)


def test_run_as_user_is_an_alias_of_user(tmp_path: Path) -> None:
    text = f'[[agents]]\nname = "a"\nrun_as_user = "marrow"\nagent_command = "{CMD}"\n'
    agent = load_ok(write(tmp_path, text)).agents[0]
    assert agent.user == "marrow" and agent.workspace == expected_home("marrow")


def test_user_and_run_as_user_together_is_an_error(tmp_path: Path) -> None:
    text = agent_toml(extra='user = "x"\nrun_as_user = "y"\n')
    error = only_error(load_config(write(tmp_path, text)))
    assert (error.key, error.line) == ("agents[0].run_as_user", 6)


def test_user_must_be_an_account_name(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, agent_toml(extra='user = "a/b"\n'))))
    assert error.key == "agents[0].user" and "account name" in error.message


def test_home_becomes_the_workspace(tmp_path: Path) -> None:
    text = f'[[agents]]\nname = "a"\nhome = "{tmp_path}/h"\nagent_command = "{CMD}"\n'
    agent = load_ok(write(tmp_path, text)).agents[0]
    assert agent.workspace == tmp_path / "h" and agent.home == str(tmp_path / "h")


def test_workspace_must_be_set_or_derivable(tmp_path: Path) -> None:
    text = f'# c\n[[agents]]\nname = "a"\nagent_command = "{CMD}"\n'
    error = only_error(load_config(write(tmp_path, text)))
    assert error.message == "workspace must be set or derivable from user/home"
    assert (error.key, error.line) == ("agents[0].workspace", 2)  # the table header


def test_supervisor_requires_user_per_agent(tmp_path: Path) -> None:
    text = '[service]\nmode = "supervisor"\n\n' + agent_toml()
    loaded = load_config(write(tmp_path, text))
    assert [(d.severity, d.line) for d in loaded.diagnostics] == [("warning", 2), ("error", 4)]
    assert loaded.errors[0].message == "supervisor mode requires user for agent 'a'"


def test_supervisor_mode_loads_with_a_warning(tmp_path: Path) -> None:
    text = '[service]\nmode = "supervisor"\n\n' + agent_toml(extra='user = "marrow"\n')
    loaded = load_config(write(tmp_path, text))
    assert loaded.errors == [] and loaded.config is not None
    assert loaded.config.mode == "supervisor"
    [warning] = loaded.warnings
    assert warning.line == 2 and "current user" in warning.message


def test_profile_root_dir_gives_source_context_dir(tmp_path: Path) -> None:
    config = load_ok(write(tmp_path, '[profile]\nroot_dir = "/opt/marrow-bot"\n'))
    assert config.profile_root == Path("/opt/marrow-bot")
    assert config.source_context_dir == Path("/opt/marrow-bot/context.d")
    assert config.ignored == ("profile.root_dir",)


def test_relative_source_context_dir_is_under_root_dir(tmp_path: Path) -> None:
    text = '[profile]\nroot_dir = "/opt/bot"\nsource_context_dir = "ctx"\n'
    assert load_ok(write(tmp_path, text)).source_context_dir == Path("/opt/bot/ctx")


# ---- whole marrow-core configs -------------------------------------------------------------


def test_the_minimal_single_user_example_loads_clean(tmp_path: Path) -> None:
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "rules.md").write_text("# Rules\n")
    text = f"""\
        [profile]
        root_dir = "{tmp_path}/profile"
        rules_path = "{tmp_path}/profile/rules.md"
        [service]
        mode = "single_user"
        [ipc]
        enabled = true
        [sync]
        enabled = false          # otherwise it fails every 300 s without core_dir
        [self_check]
        enabled = true
        interval_seconds = 60
        wake_agent = "orchestrator"
        [[agents]]
        name = "orchestrator"
        heartbeat_interval = 60
        heartbeat_timeout = 10
        workspace = "{tmp_path}/ws"
        agent_command = "sh -c 'cat > /dev/null; echo hi; echo argc=$#; for a in \\"$@\\"; do echo \\"ARG[$a]\\" | head -c 120; echo; done'"
        context_dirs = ["{tmp_path}/ws/context.d"]
        """
    loaded = load_config(write(tmp_path, text))
    assert loaded.diagnostics == []
    config = loaded.config
    assert config is not None
    assert config.rules_path == tmp_path / "profile" / "rules.md"
    agent = config.agents[0]
    assert (agent.name, agent.heartbeat_interval, agent.heartbeat_timeout) == (
        "orchestrator", 60, 10)
    assert agent.argv()[:2] == ["sh", "-c"]
    assert config.ignored == (
        "profile.root_dir", "ipc.enabled", "sync.enabled", "self_check.enabled",
        "self_check.interval_seconds", "self_check.wake_agent")


def test_the_runtime_config_example_with_plugins_loads(tmp_path: Path) -> None:
    home = tmp_path / "Users" / "marrow"
    opencode = home / ".opencode" / "bin" / "opencode"
    opencode.parent.mkdir(parents=True)
    opencode.write_text("#!/bin/sh\n")
    opencode.chmod(0o755)
    text = f"""\
        [profile]
        root_dir = "/opt/marrow-bot"

        [service]
        mode = "supervisor"
        runtime_root = "/var/lib/marrow"
        config_path = "/etc/marrow/marrow.toml"

        [ipc]
        enabled = true

        [self_check]
        enabled = true
        interval_seconds = 900
        wake_agent = "orchestrator"

        [[agents]]
        user = "marrow"
        name = "orchestrator"
        heartbeat_interval = 10800
        heartbeat_timeout = 7200
        workspace = "{home}"
        agent_command = "{opencode} run --agent orchestrator"
        context_dirs = ["{home}/context.d"]

        # Dashboard-like plugin: described in manifest, not auto-started as a service unit.
        [[plugins]]
        name = "dashboard"
        kind = "dashboard"
        command = "python"
        args = [
          "-m",
          "marrow_dashboard",
          "serve",
          "--config",
          "/etc/marrow/dashboard.toml"
        ]
        cwd = "/opt/marrow-dashboard"
        workspace = "{home}"
        config_path = "/etc/marrow/dashboard.toml"
        capabilities = ["read_work_items", "show_governance_metrics"]

        [plugins.env]
        MARROW_WORKSPACE = "{home}"

        [[plugins]]
        name = "task-bridge"
        kind = "background_service"
        command = "python"
        args = ["-m", "marrow_task", "serve", "--config", "/etc/marrow/task.toml"]
        cwd = "/opt/marrow-task"
        enabled = true
        auto_start = true
        capabilities = ["claim_task", "complete_task", "write_work_items"]

        [plugins.env]
        MARROW_WORKSPACE = "{home}"
        MARROW_TASK_CONFIG = "/etc/marrow/task.toml"
        """
    loaded = load_config(write(tmp_path, text))
    assert loaded.errors == []
    assert [d.line for d in loaded.warnings] == [5]  # supervisor runs as single_user
    config = loaded.config
    assert config is not None and config.mode == "supervisor"
    assert config.agents[0].workspace == home and config.agents[0].heartbeat_interval == 10800
    assert config.ignored == (
        "profile.root_dir", "service.runtime_root", "service.config_path", "ipc.enabled",
        "self_check.enabled", "self_check.interval_seconds", "self_check.wake_agent",
        "plugins.name", "plugins.kind", "plugins.command", "plugins.args", "plugins.cwd",
        "plugins.workspace", "plugins.config_path", "plugins.capabilities", "plugins.env",
        "plugins.enabled", "plugins.auto_start", "agents.user")


def test_plugin_rules(tmp_path: Path) -> None:
    text = '[[plugins]]\nname = " "\nkind = "web"\n\n[[plugins]]\ncommand = "x"\n'
    loaded = load_config(write(tmp_path, text))
    assert [(d.key, d.line, d.message) for d in loaded.errors] == [
        ("plugins[0].command", 1, "missing required key 'command'"),
        ("plugins[0].name", 2, "name must not be empty"),
        ("plugins[0].kind", 3, "must be 'dashboard' or 'background_service', not 'web'"),
        ("plugins[1].name", 5, "missing required key 'name'"),
    ]


def test_only_keys_present_are_listed_as_ignored(tmp_path: Path) -> None:
    config = load_ok(write(tmp_path, 'core_dir = "/opt/core"\n[sync]\nenabled = false\n'))
    assert config.ignored == ("core_dir", "sync.enabled")


# ---- our stricter checks -------------------------------------------------------------------


def test_no_agents_loads_but_does_not_validate(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "# nothing yet\n"))
    assert loaded.ok and loaded.diagnostics == []
    assert loaded.config is not None and not loaded.config.has_agents
    [error] = loaded.validate()
    assert error.key == "agents" and "no agents" in error.message
    assert "agents: none" in format_summary(loaded.config)


def test_duplicate_agent_names_are_an_error(tmp_path: Path) -> None:
    text = agent_toml(name="dup") + "\n" + agent_toml(name="dup")
    error = only_error(load_config(write(tmp_path, text)))
    assert (error.key, error.line) == ("agents[1].name", 7)
    assert error.message == "duplicate agent name 'dup' (also agents[0], line 2)"


def test_unknown_wake_agent_is_an_error(tmp_path: Path) -> None:
    text = '[self_check]\nwake_agent = "nobody"\n\n' + agent_toml()
    error = only_error(load_config(write(tmp_path, text)))
    assert (error.key, error.line) == ("self_check.wake_agent", 2)
    assert error.message == "unknown agent 'nobody' (agents: a)"


def test_known_wake_agent_is_fine(tmp_path: Path) -> None:
    load_ok(write(tmp_path, '[self_check]\nwake_agent = " a "\n\n' + agent_toml()))


@pytest.mark.parametrize(("line", "key", "message"), [
    ('heartbeat_interval = "300"', "heartbeat_interval", "expected integer, found string '300'"),
    ("heartbeat_interval = 300.5", "heartbeat_interval", "expected integer, found float 300.5"),
    ("heartbeat_timeout = true", "heartbeat_timeout", "expected integer, found boolean true"),
    ('enabled = "yes"', "enabled", "expected boolean (true or false), found string 'yes'"),
    ("context_dirs = 5", "context_dirs", "expected string or array of strings, found integer 5"),
    ('context_dirs = ["a", 1]', "context_dirs[1]", "expected string, found integer 1"),
    ("env = { A = 1 }", "env.A", "expected string, found integer 1"),
    ('env = "A=1"', "env", "expected table of strings, found string 'A=1'"),
    ('env = { "A=B" = "x" }', 'env."A=B"',
     "an environment variable name must be non-empty, without '=' or NUL"),
    ("stop_grace = 1979-05-27", "stop_grace", "expected number, found date"),
    ('prompt = "pipe"', "prompt", "must be one of stdin, argv, file, not 'pipe'"),
    ("role = []", "role", "expected string, found array"),
])
def test_wrong_types_name_expected_and_found(tmp_path: Path, line: str, key: str,
                                             message: str) -> None:
    error = only_error(load_config(write(tmp_path, agent_toml(extra=line + "\n"))))
    assert (error.key, error.line, error.message) == (f"agents[0].{key}", 5, message)


@pytest.mark.parametrize(("text", "key", "line", "message"), [
    ('agents = "x"\n', "agents", 1, "expected array of tables, found string 'x'"),
    ("agents = [1]\n", "agents[0]", 1, "expected table, found integer 1"),
    ("service = 3\n", "service", 1, "expected table, found integer 3"),
    ("core_dir = 1\n", "core_dir", 1, "expected string, found integer 1"),
    ("[sync]\nenabled = 1\n", "sync.enabled", 2,
     "expected boolean (true or false), found integer 1"),
])
def test_wrong_types_at_the_top(tmp_path: Path, text: str, key: str, line: int,
                                message: str) -> None:
    error = only_error(load_config(write(tmp_path, text)))
    assert (error.key, error.line, error.message) == (key, line, message)


def test_name_and_command_are_required(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, '\n[[agents]]\nworkspace = "/w"\n'))
    assert [(d.key, d.line, d.message) for d in loaded.errors] == [
        ("agents[0].name", 2, "missing required key 'name'"),
        ("agents[0].agent_command", 2, "missing required key 'agent_command'"),
    ]


def test_context_dirs_string_or_list(tmp_path: Path) -> None:
    config = load_ok(write(tmp_path, agent_toml(extra='context_dirs = "ctx"\n')))
    assert config.agents[0].context_dirs == (tmp_path / "ctx",)
    config = load_ok(write(tmp_path, agent_toml(extra='context_dirs = ["a", " ", "/b"]\n')))
    assert config.agents[0].context_dirs == (tmp_path / "a", Path("/b"))


def test_our_keys(tmp_path: Path) -> None:
    (tmp_path / "role.md").write_text("be nice")
    extra = ('prompt = "argv"\nenabled = false\nrole = "r"\nrole_file = "role.md"\n'
             'context_timeout = 30\nstop_grace = 2.5\nenv = { B = "2", A = "1" }\n')
    agent = load_ok(write(tmp_path, agent_toml(extra=extra))).agents[0]
    assert (agent.prompt, agent.enabled, agent.role) == ("argv", False, "r")
    assert agent.role_file == tmp_path / "role.md"
    assert (agent.context_timeout, agent.stop_grace) == (30.0, 2.5)
    assert agent.env == (("B", "2"), ("A", "1")) and agent.environment == {"A": "1", "B": "2"}


def test_missing_role_file_and_rules_are_warnings(tmp_path: Path) -> None:
    text = '[profile]\nrules_path = "rules.md"\n' + agent_toml(extra='role_file = "r.md"\n')
    loaded = load_config(write(tmp_path, text))
    assert [(d.severity, d.key, d.line) for d in loaded.diagnostics] == [
        ("warning", "profile.rules_path", 2), ("warning", "agents[0].role_file", 7)]
    assert loaded.config is not None and loaded.config.rules_path == tmp_path / "rules.md"


def test_relative_paths_are_resolved_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "rules.md").write_text("r")
    (folder / "roles").mkdir()
    (folder / "roles" / "a.md").write_text("r")
    monkeypatch.chdir(tmp_path)
    extra = 'context_dirs = ["ctx", "../shared/ctx"]\nrole_file = "roles/a.md"\n'
    text = '[profile]\nrules_path = "rules.md"\n' + agent_toml(workspace="./ws", extra=extra)
    config = load_ok(write(folder, text))
    agent = config.agents[0]
    assert config.rules_path == folder / "rules.md"
    assert agent.workspace == folder / "ws"
    assert agent.context_dirs == (folder / "ctx", tmp_path / "shared" / "ctx")
    assert agent.role_file == folder / "roles" / "a.md"
    # a relative --config gives the same absolute paths
    relative = load_config(Path("conf/marrow.toml"))
    assert relative.config is not None and relative.config.agents[0].workspace == folder / "ws"
    assert relative.config.path == folder / "marrow.toml"


def test_tilde_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    agent = load_ok(write(tmp_path, agent_toml(workspace="~/ws"))).agents[0]
    assert agent.workspace == tmp_path / "home" / "ws"


# ---- commands ------------------------------------------------------------------------------


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def command_agent(command: str, extra: str = "") -> str:
    return f'[[agents]]\nname = "a"\nworkspace = "ws"\nagent_command = "{command}"\n{extra}'


def test_missing_command_is_an_error(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, command_agent("no-such-agent-xyz --go"))))
    assert (error.key, error.line, error.message) == (
        "agents[0].agent_command", 4, "command not found: no-such-agent-xyz")


def test_missing_command_of_a_disabled_agent_is_a_warning(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, command_agent("no-such-agent-xyz", "enabled = false\n")))
    assert loaded.errors == [] and loaded.config is not None
    assert [d.message for d in loaded.warnings] == ["command not found: no-such-agent-xyz"]


def test_check_commands_can_be_skipped(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, command_agent("no-such-agent-xyz")),
                         check_commands=False)
    assert loaded.diagnostics == []


def test_command_found_on_the_agents_own_path(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "my-agent")
    extra = f'env = {{ PATH = "{tmp_path}/bin" }}\n'
    load_ok(write(tmp_path, command_agent("my-agent", extra)))


def test_command_as_a_path(tmp_path: Path) -> None:
    tool = executable(tmp_path / "tools dir" / "agent.sh")
    load_ok(write(tmp_path, command_agent(f"'{tool}' --flag")))
    tool.chmod(0o644)
    error = only_error(load_config(write(tmp_path, command_agent(f"'{tool}'"))))
    assert error.message == f"command not found: {tool}"


def test_a_relative_program_is_resolved_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    executable(tmp_path / "my bin" / "run")
    monkeypatch.chdir("/")
    command = r"""./my\\ bin/run --x \"a b\" 'c d'"""  # TOML-escaped
    agent = load_ok(write(tmp_path, command_agent(command))).agents[0]
    assert agent.argv() == [str(tmp_path / "my bin" / "run"), "--x", "a b", "c d"]
    assert agent.agent_command == f"""'{tmp_path}/my bin/run' --x "a b" 'c d'"""
    # not the workspace (where the run happens) and not the current folder
    executable(tmp_path / "ws" / "bin" / "run")
    executable(tmp_path / "cwd" / "bin" / "run")
    monkeypatch.chdir(tmp_path / "cwd")
    error = only_error(load_config(write(tmp_path, command_agent("bin/run"))))
    assert error.message == f"command not found: {tmp_path / 'bin' / 'run'}"


def test_command_that_does_not_split_is_an_error_even_when_disabled(tmp_path: Path) -> None:
    text = command_agent("sh -c 'oops", "enabled = false\n")
    error = only_error(load_config(write(tmp_path, text.replace('"sh', "\"sh"))))
    assert error.key == "agents[0].agent_command"
    assert error.message == "cannot split the command like a shell would: No closing quotation"


def test_empty_command_is_an_error(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, command_agent("  "))))
    assert error.message == "agent_command must not be empty"


# ---- files, syntax and line numbers --------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    loaded = load_config(tmp_path / "nope.toml")
    assert loaded.config is None
    assert [(d.line, d.message) for d in loaded.diagnostics] == [(None, "no such file")]
    assert str(loaded.diagnostics[0]) == f"{tmp_path / 'nope.toml'}: error: no such file"


def test_a_folder_is_not_a_config(tmp_path: Path) -> None:
    assert only_error(load_config(tmp_path)).message == "is a folder, not a file"


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[agents]]\nname = "a"\nagent_command = \n')
    error = only_error(load_config(path))
    assert error.line == 3
    assert error.message.startswith("invalid TOML: ")
    assert str(error).startswith(f"{path}:3: error: invalid TOML")


def test_toml_error_at_the_end_of_the_file(tmp_path: Path) -> None:
    error = only_error(load_config(write(tmp_path, 'a = 1\nb = "x')))
    assert error.line == 2


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    path.write_bytes(b'# ok\nname = "\xff"\n')
    error = only_error(load_config(path))
    assert (error.line, error.message) == (2, "not UTF-8 text")


def test_every_diagnostic_carries_its_line(tmp_path: Path) -> None:
    text = """\
        # a comment with name = "x" in it
        service.mode = "bad"
        [profile]
        "rules_path" = 1

        [[agents]]   # first
        name = "one"
        role = '''
        heartbeat_interval = "not a key"
        '''
        agent_command = "sh"
        workspace = "/w"
          "heartbeat_interval" = 1
        context_dirs = [
            "a",   # comment ]
            2,
        ]

        [[plugins]]
        name = "p"
        command = "c"
        [plugins.env]
        X = [1]

        [[agents]]
        name = "two"
        agent_command = "sh"
        env = { A = "1", "B" = { C = 1 } }

        [[agents]]
        name = "three"
        agent_command = "sh"
        workspace = "/w"
        [agents.env]
        D = 4
        """
    loaded = load_config(write(tmp_path, text))
    assert [(d.line, d.key, d.severity) for d in loaded.diagnostics] == [
        (2, "service.mode", "error"),
        (4, "profile.rules_path", "error"),
        (13, "agents[0].heartbeat_interval", "warning"),
        (16, "agents[0].context_dirs[1]", "error"),
        (23, "plugins[0].env.X", "error"),
        (25, "agents[1].workspace", "error"),
        (28, "agents[1].env.B", "error"),
        (35, "agents[2].env.D", "error"),
    ]


def test_inline_array_of_agents_gets_element_lines(tmp_path: Path) -> None:
    text = f'agents = [\n  {{ name = "a", agent_command = "{CMD}", workspace = "/w" }},\n' \
           '  { name = "b", agent_command = 5 },\n]\n'
    loaded = load_config(write(tmp_path, text))
    assert [(d.line, d.key) for d in loaded.errors] == [
        (3, "agents[1].agent_command"), (3, "agents[1].workspace")]


def test_crlf_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    path.write_bytes(agent_toml(extra="bogus = 1\n").replace("\n", "\r\n").encode())
    assert only_error(load_config(path)).line == 5


def test_diagnostics_are_sorted_by_line(tmp_path: Path) -> None:
    text = agent_toml(extra="bogus = 1\n") + '[self_check]\nwake_agent = "x"\n[sync]\nz = 1\n'
    loaded = load_config(write(tmp_path, text))
    lines = [d.line or 0 for d in loaded.diagnostics]
    assert lines == sorted(lines) and len(lines) == 3


def test_dotted_key_names() -> None:
    assert dotted(("agents", 0, "env", "A B")) == 'agents[0].env."A B"'
    assert dotted(("sync", "enabled")) == "sync.enabled"


def test_load_config_text_uses_the_given_path(tmp_path: Path) -> None:
    loaded = load_config_text(agent_toml(), tmp_path / "x" / "m.toml")
    assert loaded.config is not None
    assert loaded.config.agents[0].workspace == tmp_path / "x" / "ws"


TOML_BITS = st.sampled_from([
    "[[agents]]\n", "[agents.env]\n", "[sync]\n", "name = ", '"a"', "'b'", '"""x\n"""', "[",
    "]", "{", "}", ",", "=", "\n", "#c", " ", "1", "true", "heartbeat_interval", ".", "\\",
    "\r\n", 'env = { A = "1" }', "context_dirs = [\n'a',\n]", "é",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(TOML_BITS, max_size=30).map("".join))
def test_loading_any_text_never_raises(text: str) -> None:
    loaded = load_config_text(text, Path("/nonexistent/marrow.toml"), check_commands=False)
    assert (loaded.config is None) == bool(loaded.errors)
    assert all(d.line is None or d.line >= 1 for d in loaded.diagnostics)


# ---- summary -------------------------------------------------------------------------------


def test_format_summary(tmp_path: Path) -> None:
    (tmp_path / "rules.md").write_text("r")
    text = ('[profile]\nrules_path = "rules.md"\n[sync]\nenabled = false\n'
            + agent_toml(extra='prompt = "argv"\n') + "\n"
            + agent_toml(name="b", extra="enabled = false\nheartbeat_interval = 600\n"))
    summary = format_summary(load_ok(write(tmp_path, text)))
    assert summary.splitlines() == [
        f"config: {tmp_path / 'marrow.toml'}",
        "mode: single_user",
        f"rules: {tmp_path / 'rules.md'}",
        "[a] enabled",
        "  every 300s, timeout 500s",
        f"  workspace: {tmp_path / 'ws'} (missing)",
        f"  command: {CMD}",
        "  prompt: argv",
        f"  context dirs: {tmp_path / 'ws' / 'context.d'} (missing)",
        "[b] disabled",
        "  every 600s, timeout 500s",
        f"  workspace: {tmp_path / 'ws'} (missing)",
        f"  command: {CMD}",
        "  prompt: stdin",
        f"  context dirs: {tmp_path / 'ws' / 'context.d'} (missing)",
        "ignored (read for compatibility, no effect): sync.enabled",
        "config OK",
    ]


# ---- edit_agent ----------------------------------------------------------------------------

EDITABLE = f"""\
# The team.   (comments, blank lines and odd spacing must survive)
[service]
mode    =   "single_user"

[[agents]]
name = "one"   # the first
heartbeat_interval = 300  # five minutes
agent_command = "{CMD}"
workspace = "ws1"

# the second agent
[[agents]]
  name = "two"
  heartbeat_interval = 300 # same
  agent_command = "{CMD}"
  workspace = "ws2"
  enabled = true
"""


@pytest.fixture
def editable(tmp_path: Path) -> Path:
    path = tmp_path / "marrow.toml"
    path.write_text(EDITABLE)
    return path


def test_edit_changes_only_the_value(editable: Path) -> None:
    edit_agent(editable, "two", "heartbeat_interval", 900)
    assert editable.read_text() == EDITABLE.replace(
        "heartbeat_interval = 300 # same", "heartbeat_interval = 900 # same")
    edit_agent(editable, "two", "enabled", False)
    assert editable.read_text() == EDITABLE.replace(
        "heartbeat_interval = 300 # same", "heartbeat_interval = 900 # same").replace(
        "enabled = true", "enabled = false")
    loaded = load_config(editable)
    assert loaded.config is not None
    two = loaded.config.agent("two")
    assert two is not None and two.heartbeat_interval == 900 and not two.enabled


def test_edit_adds_a_missing_key_after_the_tables_last_key(editable: Path) -> None:
    edit_agent(editable, "one", "enabled", False)
    assert editable.read_text() == EDITABLE.replace(
        'workspace = "ws1"\n', 'workspace = "ws1"\nenabled = false\n')


def test_edit_none_removes_the_key(editable: Path) -> None:
    edit_agent(editable, "one", "heartbeat_interval", None)
    assert editable.read_text() == EDITABLE.replace(
        "heartbeat_interval = 300  # five minutes\n", "")


def test_edit_keeps_crlf(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    original = EDITABLE.replace("\n", "\r\n").encode()
    path.write_bytes(original)
    edit_agent(path, "one", "enabled", False)
    assert path.read_bytes() == original.replace(
        b'workspace = "ws1"\r\n', b'workspace = "ws1"\r\nenabled = false\r\n')


def test_edit_tables_written_inline(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    path.write_text(f'agents = [{{ name = "a", agent_command = "{CMD}", workspace = "w" }}]\n')
    edit_agent(path, "a", "heartbeat_interval", 600)
    loaded = load_config(path)
    assert loaded.config is not None and loaded.config.agents[0].heartbeat_interval == 600


@pytest.mark.parametrize(("agent", "key", "value", "message"), [
    ("one", "heartbeat_interval", "soon", "expected integer, found string 'soon'"),
    ("one", "name", "two", "duplicate agent name 'two'"),
    ("one", "agent_command", "no-such-agent-xyz", "command not found: no-such-agent-xyz"),
    ("one", "prompt", "pipe", "must be one of stdin, argv, file"),
    ("one", "bogus", 1, "unknown key 'bogus'"),
    ("nobody", "enabled", False, "no agent named 'nobody'"),
])
def test_an_invalid_edit_is_refused_and_the_file_is_untouched(
        editable: Path, agent: str, key: str, value: object, message: str) -> None:
    before = editable.stat()
    with pytest.raises(ValueError, match=message):
        edit_agent(editable, agent, key, value)
    assert editable.read_text() == EDITABLE
    assert editable.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in editable.parent.iterdir()) == ["marrow.toml"]


def test_refused_edit_reports_the_line(editable: Path) -> None:
    with pytest.raises(ValueError) as caught:
        edit_agent(editable, "two", "heartbeat_interval", "x")
    assert str(caught.value) == (f"{editable}:14: agents[1].heartbeat_interval: error: "
                                 "expected integer, found string 'x'")


def test_edit_keeps_the_mode_and_leaves_no_temp_files(editable: Path) -> None:
    editable.chmod(0o600)
    edit_agent(editable, "one", "heartbeat_interval", 120)
    assert stat.S_IMODE(editable.stat().st_mode) == 0o600
    assert sorted(p.name for p in editable.parent.iterdir()) == ["marrow.toml"]


def test_edit_through_a_symlink_edits_the_target(tmp_path: Path, editable: Path) -> None:
    link_dir = tmp_path / "elsewhere"
    link_dir.mkdir()
    link = link_dir / "marrow.toml"
    link.symlink_to(editable)
    # the workspaces are relative to the link's folder, as when loading through the link
    edit_agent(link, "one", "heartbeat_interval", 120)
    assert link.is_symlink() and os.readlink(link) == str(editable)
    assert "heartbeat_interval = 120  # five minutes" in editable.read_text()


def test_edit_tables_and_lists(editable: Path) -> None:
    edit_agent(editable, "one", "env", {"A": "1", "B": "x y"})
    edit_agent(editable, "one", "context_dirs", (Path("c1"), "c2"))
    assert EDITABLE.replace('workspace = "ws1"\n', 'workspace = "ws1"\nenv = {A = "1", B = "x y"}\n'
                            'context_dirs = ["c1", "c2"]\n') == editable.read_text()
    config = load_ok(editable)
    assert config.agents[0].env == (("A", "1"), ("B", "x y"))
    assert config.agents[0].context_dirs == (editable.parent / "c1", editable.parent / "c2")


def test_edit_user_keeps_the_spelling_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, agent_toml(extra='run_as_user = "x"\n'))
    edit_agent(path, "a", "user", "y")
    assert 'run_as_user = "y"' in path.read_text() and "\nuser" not in path.read_text()
