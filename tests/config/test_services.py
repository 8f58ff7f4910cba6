"""[[services]] in the config: loading, every rule with its diagnostic, the summary, and the
documented example (the dependency graph is tests/core/test_graph.py, `marrow-tui graph`
tests/cli/test_services.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from marrow_tui.config.diagnostics import Diagnostic
from marrow_tui.config.load import Loaded, load_config
from marrow_tui.config.model import Dependency, HealthCheck, ServiceConfig
from marrow_tui.config.summary import format_summary
from marrow_tui.core.graph import render

ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, text: str, name: str = "marrow.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(folder: Path, text: str, *, check_commands: bool = True) -> Loaded:
    return load_config(write(folder, text), check_commands=check_commands)


def services(folder: Path, text: str) -> tuple[ServiceConfig, ...]:
    loaded = load(folder, text)
    assert loaded.diagnostics == [], [str(d) for d in loaded.diagnostics]
    assert loaded.config is not None
    return loaded.config.services


def one(folder: Path, text: str) -> ServiceConfig:
    [service] = services(folder, text)
    return service


def only_error(loaded: Loaded) -> Diagnostic:
    assert loaded.config is None
    assert len(loaded.errors) == 1, [str(d) for d in loaded.diagnostics]
    return loaded.errors[0]


def error_of(folder: Path, text: str) -> tuple[str, int | None, str]:
    error = only_error(load(folder, text))
    return error.key, error.line, error.message


def only_warning(loaded: Loaded) -> Diagnostic:
    assert loaded.errors == [] and loaded.config is not None, [str(d) for d in loaded.errors]
    [warning] = loaded.diagnostics
    assert warning.severity == "warning"
    return warning


# ---- the issue's sketch and the defaults ---------------------------------------------------


def test_the_issue_sketch_loads(tmp_path: Path) -> None:
    api, db = services(tmp_path, """
        [[services]]
        name = "api"
        command = ["python3", "-m", "http.server", "{port}"]
        port = "auto"
        depends_on = ["db"]
        health = { http = "/", expect = 200 }
        restart = "on-failure"

        [[services]]
        name = "db"
        command = "python3 -m http.server 5432"
        port = 5432
        """)
    assert api == ServiceConfig(
        name="api", command=("python3", "-m", "http.server", "{port}"), cwd=tmp_path, port=0,
        depends_on=(Dependency("db"),), health=HealthCheck(kind="http", path="/", expect=200),
        restart="on-failure")
    assert api.argv(8123) == ["python3", "-m", "http.server", "8123"]
    assert (db.shell, db.command, db.port) == ("python3 -m http.server 5432", (), 5432)
    assert db.argv(5432) == ["/bin/sh", "-c", "python3 -m http.server 5432"]


def test_a_minimal_service_gets_the_defaults(tmp_path: Path) -> None:
    service = one(tmp_path, """
        [[services]]
        name = "  web  "
        command = ["sh", "-c", "sleep 1"]
        """)
    assert service == ServiceConfig(name="web", command=("sh", "-c", "sleep 1"), cwd=tmp_path)
    assert service.port is None and service.depends_on == () and service.enabled
    assert service.health == HealthCheck()
    assert service.health.kind == "none"
    assert (service.start_timeout, service.restart, service.max_restarts) == (
        30.0, "on-failure", 5)
    assert (service.backoff_initial, service.backoff_max, service.stop_grace) == (
        1.0, 60.0, 10.0)
    assert service.argv() == ["sh", "-c", "sleep 1"]


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    service = one(tmp_path, """
        [[services]]
        name = "api"
        command = "exec python3 -m http.server {port}"
        cwd = "srv"
        env = { MODE = "dev" }
        port = 8080
        health = { tcp = true, interval = 1, timeout = 0.5, failures = 2 }
        start_timeout = 5
        restart = "always"
        max_restarts = 0
        backoff_initial = 0.5
        backoff_max = 10
        stop_grace = 3
        enabled = false
        """)
    assert service == ServiceConfig(
        name="api", shell="exec python3 -m http.server {port}", cwd=tmp_path / "srv",
        env=(("MODE", "dev"),), port=8080,
        health=HealthCheck(kind="tcp", interval=1.0, timeout=0.5, failures=2),
        start_timeout=5.0, restart="always", max_restarts=0, backoff_initial=0.5,
        backoff_max=10.0, stop_grace=3.0, enabled=False)
    assert service.environment == {"MODE": "dev"}
    assert service.argv(8080) == ["/bin/sh", "-c", "exec python3 -m http.server 8080"]


def test_services_and_plugins_and_agents_load_together(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        [[plugins]]
        name = "dash"
        command = "dash"

        [[agents]]
        name = "a"
        agent_command = "sh"
        workspace = "ws"

        [[services]]
        name = "web"
        command = ["sh"]
        """)
    assert loaded.errors == [] and loaded.config is not None
    assert [s.name for s in loaded.config.services] == ["web"]
    assert [a.name for a in loaded.config.agents] == ["a"]
    assert "plugins.name" in loaded.config.ignored  # still read for compatibility, ignored


def test_no_services_is_an_empty_tuple(tmp_path: Path) -> None:
    loaded = load(tmp_path, "")
    assert loaded.config is not None and loaded.config.services == ()


# ---- name ------------------------------------------------------------------------------------


def test_name_is_required(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        command = ["sh"]
        """) == ("services[0].name", 1, "missing required key 'name'")


def test_name_must_not_be_empty(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = " "
        command = ["sh"]
        """) == ("services[0].name", 2, "name must not be empty")


@pytest.mark.parametrize(("name", "bad"), [("a/b", "/"), ("a\\tb", "\t"), ("a\\nb", "\n")])
def test_name_without_slash_or_control_characters(tmp_path: Path, name: str, bad: str) -> None:
    key, line, message = error_of(tmp_path, f"""
        [[services]]
        name = "{name}"
        command = ["sh"]
        """)
    assert (key, line) == ("services[0].name", 2)
    assert message.startswith(f"a service name cannot contain {bad!r}")


def test_odd_names_are_kept_intact(tmp_path: Path) -> None:
    first, second = services(tmp_path, """
        [[services]]
        name = "my api (v2)"
        command = ["sh"]

        [[services]]
        name = "données.ünï"
        command = ["sh"]
        depends_on = ["my api (v2)"]
        """)
    assert (first.name, first.env_name) == ("my api (v2)", "MY_API__V2_")
    assert (second.name, second.env_name) == ("données.ünï", "DONNÉES_ÜNÏ")


def test_duplicate_names_are_an_error_naming_the_first(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = ["sh"]

        [[services]]
        name = "web"
        command = ["sh"]
        """) == ("services[1].name", 6, "duplicate service name 'web' (also services[0], line 2)")


def test_names_that_give_the_same_variables_are_an_error(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "api-v2"
        command = ["sh"]

        [[services]]
        name = "api_v2"
        command = ["sh"]
        """) == ("services[1].name", 6,
                 "'api_v2' and 'api-v2' (services[0], line 2) give the same variable names "
                 "(API_V2_URL, API_V2_HOST, API_V2_PORT): rename one")


def test_unknown_keys_are_errors_with_a_hint(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = ["sh"]
        depend_on = ["db"]
        """) == ("services[0].depend_on", 4, "unknown key 'depend_on' (did you mean 'depends_on'?)")


# ---- command ---------------------------------------------------------------------------------


def test_command_is_required(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        """) == ("services[0].command", 1, "missing required key 'command'")


@pytest.mark.parametrize("command", ['""', '"   "', "[]"])
def test_command_must_not_be_empty(tmp_path: Path, command: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "web"
        command = {command}
        """) == ("services[0].command", 3, "command must not be empty")


def test_command_first_word_must_name_a_program(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = [" ", "x"]
        """) == ("services[0].command[0]", 3, "the first word must name a program")


def test_command_of_another_type(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = 5
        """) == ("services[0].command", 3, "expected string (a shell line) or array of strings "
                                           "(argv), found integer 5")
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = [
          "sh",
          1,
        ]
        """) == ("services[0].command[1]", 5, "expected string, found integer 1")


def test_argv_words_are_kept_as_written(tmp_path: Path) -> None:
    service = one(tmp_path, """
        [[services]]
        name = "web"
        command = ["sh", "-c", "  echo '{port}' ; x  "]
        port = 1234
        """)
    assert service.command == ("sh", "-c", "  echo '{port}' ; x  ")
    assert service.argv(1234) == ["sh", "-c", "  echo '1234' ; x  "]


@pytest.mark.parametrize("command", ['"serve --port {port}"', '["sh", "--port={port}"]'])
def test_port_placeholder_needs_a_port(tmp_path: Path, command: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "web"
        command = {command}
        """, ) == ("services[0].command", 3, 'uses {port} but the service has no port (set '
                                             'port = N, or "auto" to pick a free one)')


def test_port_placeholder_in_env(tmp_path: Path) -> None:
    text = """
        [[services]]
        name = "web"
        command = "serve"
        env = { BIND = "127.0.0.1:{port}" }
        """
    assert error_of(tmp_path, text) == (
        "services[0].env.BIND", 4,
        'uses {port} but the service has no port (set port = N, or "auto" to pick a free one)')
    assert one(tmp_path, text + 'port = "auto"\n').env == (("BIND", "127.0.0.1:{port}"),)


def test_a_missing_program_is_an_error_or_for_a_disabled_service_a_warning(
        tmp_path: Path) -> None:
    text = """
        [[services]]
        name = "web"
        command = ["no-such-program-xyz", "serve"]
        """
    assert error_of(tmp_path, text) == ("services[0].command", 3,
                                        "command not found: no-such-program-xyz")
    warning = only_warning(load(tmp_path, text + "enabled = false\n"))
    assert warning.message == "command not found: no-such-program-xyz"
    assert load(tmp_path, text, check_commands=False).diagnostics == []


def test_a_shell_line_is_not_looked_up(tmp_path: Path) -> None:
    assert one(tmp_path, """
        [[services]]
        name = "web"
        command = "no-such-program-xyz serve"
        """).shell == "no-such-program-xyz serve"


def test_a_relative_program_is_resolved_against_cwd(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    script = tmp_path / "srv" / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    service = one(tmp_path, """
        [[services]]
        name = "web"
        command = ["./run.sh", "x"]
        cwd = "srv"
        """)
    assert service.command == (str(script), "x")
    assert service.cwd == tmp_path / "srv"


def test_a_missing_cwd_is_a_warning(tmp_path: Path) -> None:
    warning = only_warning(load(tmp_path, """
        [[services]]
        name = "web"
        command = "true"
        cwd = "nowhere"
        """))
    assert (warning.key, warning.line) == ("services[0].cwd", 4)
    assert warning.message == f"folder not found: {tmp_path / 'nowhere'}"


# ---- env ---------------------------------------------------------------------------------------


def test_env_values_must_be_strings_like_the_agents(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = "true"
        env = { A = "1", B = 2 }
        """) == ("services[0].env.B", 4, "expected string, found integer 2")
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = "true"
        env = { "A=B" = "1" }
        """)[2] == "an environment variable name must be non-empty, without '=' or NUL"


def test_env_path_is_used_to_find_the_program(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "my-server"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    service = one(tmp_path, f"""
        [[services]]
        name = "web"
        command = ["my-server"]
        env = {{ PATH = "{tmp_path / 'bin'}" }}
        """)
    assert service.command == ("my-server",)


# ---- port ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "port"), [("1", 1), ("8080", 8080), ("65535", 65535),
                                               ('"auto"', 0)])
def test_port_values(tmp_path: Path, written: str, port: int) -> None:
    assert one(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        port = {written}
        """).port == port


@pytest.mark.parametrize(("written", "message"), [
    ("0", 'a port must be 1..65535 (or "auto" to pick a free one), not 0'),
    ("65536", 'a port must be 1..65535 (or "auto" to pick a free one), not 65536'),
    ("-1", 'a port must be 1..65535 (or "auto" to pick a free one), not -1'),
    ('"8080"', "expected integer port or \"auto\", found string '8080'"),
    ('"Auto"', "expected integer port or \"auto\", found string 'Auto'"),
    ("true", 'expected integer port or "auto", found boolean true'),
    ("80.0", 'expected integer port or "auto", found float 80.0'),
])
def test_bad_ports(tmp_path: Path, written: str, message: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        port = {written}
        """) == ("services[0].port", 4, message)


def test_two_services_with_the_same_fixed_port_are_an_error_naming_both(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "db"
        command = "true"
        port = 5432

        [[services]]
        name = "db-copy"
        command = "true"
        port = 5432
        """) == ("services[1].port", 9, "'db-copy' and 'db' (services[0], line 4) both use "
                                        "port 5432")


def test_auto_ports_and_disabled_services_do_not_collide(tmp_path: Path) -> None:
    found = services(tmp_path, """
        [[services]]
        name = "a"
        command = "true"
        port = "auto"

        [[services]]
        name = "b"
        command = "true"
        port = "auto"

        [[services]]
        name = "c"
        command = "true"
        port = 7000

        [[services]]
        name = "d"
        command = "true"
        port = 7000
        enabled = false
        """)
    assert [s.port for s in found] == [0, 0, 7000, 7000]


# ---- depends_on ------------------------------------------------------------------------------

THREE = """
    [[services]]
    name = "db"
    command = "true"

    [[services]]
    name = "cache"
    command = "true"
    """


def test_depends_on_forms(tmp_path: Path) -> None:
    found = services(tmp_path, THREE + """
    [[services]]
    name = "api"
    command = "true"
    depends_on = ["db", { name = "cache", env = "CACHE_ADDR" }]

    [[services]]
    name = "web"
    command = "true"
    depends_on = "api"

    [[services]]
    name = "worker"
    command = "true"
    depends_on = [
      { name = " db " },
      "cache",
    ]
    """)
    deps = {s.name: s.depends_on for s in found}
    assert deps["api"] == (Dependency("db"), Dependency("cache", "CACHE_ADDR"))
    assert deps["web"] == (Dependency("api"),)
    assert deps["worker"] == (Dependency("db"), Dependency("cache"))


def test_unknown_dependency_names_the_known_services(tmp_path: Path) -> None:
    assert error_of(tmp_path, THREE + """
    [[services]]
    name = "api"
    command = "true"
    depends_on = [
      "db",
      "cach",
    ]
    """) == ("services[2].depends_on[1]", 14,
             "unknown service 'cach' (did you mean 'cache'?) (services: db, cache, api)")


def test_a_service_depending_on_itself(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "api"
        command = "true"
        depends_on = ["api"]
        """) == ("services[0].depends_on[0]", 4, "'api' cannot depend on itself")


def test_a_dependency_listed_twice(tmp_path: Path) -> None:
    assert error_of(tmp_path, THREE + """
    [[services]]
    name = "api"
    command = "true"
    depends_on = ["db", { name = "db", env = "DATABASE_URL" }]
    """) == ("services[2].depends_on[1].name", 12, "'db' is listed twice")


def test_an_enabled_service_cannot_depend_on_a_disabled_one(tmp_path: Path) -> None:
    text = """
        [[services]]
        name = "db"
        command = "true"
        enabled = false

        [[services]]
        name = "api"
        command = "true"
        depends_on = ["db"]
        """
    assert error_of(tmp_path, text) == (
        "services[1].depends_on[0]", 9,
        "'db' is disabled, so 'api' could never start: enable 'db' or disable 'api'")
    assert len(services(tmp_path, text + "enabled = false\n")) == 2


@pytest.mark.parametrize(("deps", "key", "message"), [
    ('[{ name = "db", env_var = "X" }]', "services[2].depends_on[0].env_var",
     "unknown key 'env_var' (did you mean 'env'?)"),
    ('[{ env = "X" }]', "services[2].depends_on[0].name", "missing required key 'name'"),
    ('[{ name = "" }]', "services[2].depends_on[0].name", "must name a service"),
    ('[""]', "services[2].depends_on[0]", "must name a service"),
    ('[{ name = "db", env = "A=B" }]', "services[2].depends_on[0].env",
     "an environment variable name must be non-empty, without '=' or NUL"),
    ('[{ name = "db", env = "" }]', "services[2].depends_on[0].env",
     "an environment variable name must be non-empty, without '=' or NUL"),
    ("[1]", "services[2].depends_on[0]",
     "expected service name or { name, env } table, found integer 1"),
    ('{ name = "db" }', "services[2].depends_on",
     "expected array of service names or { name, env } tables, found table"),
])
def test_bad_dependencies(tmp_path: Path, deps: str, key: str, message: str) -> None:
    assert error_of(tmp_path, THREE + f"""
    [[services]]
    name = "api"
    command = "true"
    depends_on = {deps}
    """) == (key, 12, message)


def test_a_cycle_is_one_error_with_the_path_from_the_smallest_name(tmp_path: Path) -> None:
    # written c, b, a, plus a service downstream of the cycle (pactown names it too; we don't)
    assert error_of(tmp_path, """
        [[services]]
        name = "c"
        command = "true"
        depends_on = ["a"]

        [[services]]
        name = "web"
        command = "true"
        depends_on = ["b"]

        [[services]]
        name = "b"
        command = "true"
        depends_on = ["c"]

        [[services]]
        name = "a"
        command = "true"
        depends_on = ["b"]
        """) == ("services[3].depends_on", 19,
                 "dependency cycle: a -> b -> c -> a (each depends on the next)")


def test_a_two_service_cycle(tmp_path: Path) -> None:
    assert error_of(tmp_path, """
        [[services]]
        name = "web"
        command = "true"
        depends_on = ["api"]

        [[services]]
        name = "api"
        command = "true"
        depends_on = ["web"]
        """) == ("services[1].depends_on", 9,
                 "dependency cycle: api -> web -> api (each depends on the next)")


# ---- health ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "health"), [
    ('{ http = "/healthz?deep=1", expect = 204 }',
     HealthCheck(kind="http", path="/healthz?deep=1", expect=204)),
    ('{ http = "/" }', HealthCheck(kind="http", path="/")),
    ("{ tcp = true }", HealthCheck(kind="tcp")),
    ("{ tcp = false }", HealthCheck()),
    ("{}", HealthCheck()),
    ('{ command = ["pg_isready", "-q"] }', HealthCheck(kind="command",
                                                       command=("pg_isready", "-q"))),
    ('{ command = "curl -f localhost:$PORT" }',
     HealthCheck(kind="command", command=("/bin/sh", "-c", "curl -f localhost:$PORT"))),
    ('{ tcp = true, interval = 30, timeout = 10, failures = 1 }',
     HealthCheck(kind="tcp", interval=30.0, timeout=10.0, failures=1)),
])
def test_health_checks(tmp_path: Path, written: str, health: HealthCheck) -> None:
    assert one(tmp_path, f"""
        [[services]]
        name = "db"
        command = "true"
        port = 5432
        health = {written}
        """).health == health


def test_health_as_a_sub_table(tmp_path: Path) -> None:
    text = """
        [[services]]
        name = "db"
        command = "true"
        port = 5432

        [services.health]
        http = "/ready"
        interval = 0.1
        """
    warning = only_warning(load(tmp_path, text))
    assert (warning.key, warning.line) == ("services[0].health.interval", 8)
    assert warning.message == "0.1 is outside [0.5, 3600], using 0.5"
    loaded = load(tmp_path, text)
    assert loaded.config is not None
    assert loaded.config.services[0].health == HealthCheck(kind="http", path="/ready",
                                                           interval=0.5)


@pytest.mark.parametrize(("written", "key", "message"), [
    ('{ http = "/" }', "services[0].health.http",
     'an HTTP health check needs a port (set port = N, or "auto" to pick a free one)'),
    ("{ tcp = true }", "services[0].health.tcp",
     'a TCP health check needs a port (set port = N, or "auto" to pick a free one)'),
])
def test_http_and_tcp_checks_need_a_port(tmp_path: Path, written: str, key: str,
                                         message: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "db"
        command = "true"
        health = {written}
        """) == (key, 4, message)


def test_a_command_check_needs_no_port(tmp_path: Path) -> None:
    assert one(tmp_path, """
        [[services]]
        name = "db"
        command = "true"
        health = { command = ["true"] }
        """).health.kind == "command"


@pytest.mark.parametrize(("written", "key", "message"), [
    ('{ http = "/", tcp = true }', "services[0].health.tcp",
     "give only one of http, tcp or command (found http and tcp)"),
    ('{ tcp = true, command = "x" }', "services[0].health.command",
     "give only one of http, tcp or command (found tcp and command)"),
    ('{ http = "health" }', "services[0].health.http",
     "must be a path starting with '/', like \"/health\", not 'health'"),
    ('{ tcp = true, expect = 200 }', "services[0].health.expect",
     "expect goes with an http check"),
    ('{ http = "/", expect = 42 }', "services[0].health.expect",
     "must be an HTTP status, 100..599, not 42"),
    ("{ interval = 5 }", "services[0].health", "a health check needs http, tcp or command"),
    ("{ command = [] }", "services[0].health.command", "command must name a program"),
    ('{ command = "" }', "services[0].health.command", "command must name a program"),
    ('{ htp = "/" }', "services[0].health.htp", "unknown key 'htp' (did you mean 'http'?)"),
    ('{ tcp = "yes" }', "services[0].health.tcp",
     "expected boolean (true or false), found string 'yes'"),
    ('"/health"', "services[0].health", "expected table, found string '/health'"),
])
def test_bad_health_checks(tmp_path: Path, written: str, key: str, message: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "db"
        command = "true"
        port = 5432
        health = {written}
        """) == (key, 5, message)


@pytest.mark.parametrize(("key", "given", "used"), [
    ("interval", "0", 0.5), ("interval", "4000", 3600.0),
    ("timeout", "0", 0.1), ("timeout", "601", 600.0),
    ("failures", "0", 1), ("failures", "101", 100),
])
def test_health_clamps(tmp_path: Path, key: str, given: str, used: float) -> None:
    loaded = load(tmp_path, f"""
        [[services]]
        name = "db"
        command = "true"
        port = 5432
        health = {{ tcp = true, {key} = {given} }}
        """)
    warning = only_warning(loaded)
    assert (warning.key, warning.line) == (f"services[0].health.{key}", 5)
    assert loaded.config is not None
    assert getattr(loaded.config.services[0].health, key) == used


# ---- timing and restarts ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "given", "used", "message"), [
    ("start_timeout", "0", 1.0, "0 is outside [1, 3600], using 1"),
    ("start_timeout", "7200", 3600.0, "7200 is outside [1, 3600], using 3600"),
    ("max_restarts", "-1", 0, "-1 is outside >= 0, using 0"),
    ("backoff_initial", "0", 0.1, "0 is outside [0.1, 3600], using 0.1"),
    ("backoff_max", "0.5", 1.0, "0.5 is outside [1, 86400], using 1"),
    ("stop_grace", "-1", 0.0, "-1 is outside [0, 600], using 0"),
    ("stop_grace", "900", 600.0, "900 is outside [0, 600], using 600"),
])
def test_clamps(tmp_path: Path, key: str, given: str, used: float, message: str) -> None:
    loaded = load(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        {key} = {given}
        """)
    warning = only_warning(loaded)
    assert (warning.key, warning.line, warning.message) == (f"services[0].{key}", 4, message)
    assert loaded.config is not None
    assert getattr(loaded.config.services[0], key) == used


def test_backoff_initial_above_max_uses_max(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        [[services]]
        name = "web"
        command = "true"
        backoff_initial = 30
        backoff_max = 20
        """)
    warning = only_warning(loaded)
    assert (warning.key, warning.line) == ("services[0].backoff_initial", 4)
    assert warning.message == "30 is more than backoff_max (20), using 20"
    assert loaded.config is not None
    assert (loaded.config.services[0].backoff_initial,
            loaded.config.services[0].backoff_max) == (20.0, 20.0)


@pytest.mark.parametrize("policy", ["no", "on-failure", "always"])
def test_restart_policies(tmp_path: Path, policy: str) -> None:
    assert one(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        restart = "{policy}"
        """).restart == policy


@pytest.mark.parametrize(("written", "message"), [
    ('"on_failure"', "must be 'no', 'on-failure' or 'always', not 'on_failure' "
                     "(did you mean 'on-failure'?)"),
    ('"never"', "must be 'no', 'on-failure' or 'always', not 'never'"),
    ("false", "expected string, found boolean false"),
])
def test_bad_restart(tmp_path: Path, written: str, message: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        restart = {written}
        """) == ("services[0].restart", 4, message)


@pytest.mark.parametrize(("key", "written", "message"), [
    ("max_restarts", "1.5", "expected integer, found float 1.5"),
    ("start_timeout", '"10"', "expected number, found string '10'"),
    ("enabled", '"yes"', "expected boolean (true or false), found string 'yes'"),
    ("cwd", "1", "expected string, found integer 1"),
])
def test_wrong_types(tmp_path: Path, key: str, written: str, message: str) -> None:
    assert error_of(tmp_path, f"""
        [[services]]
        name = "web"
        command = "true"
        {key} = {written}
        """) == (f"services[0].{key}", 4, message)


def test_services_must_be_tables(tmp_path: Path) -> None:
    assert error_of(tmp_path, 'services = ["web"]\n') == (
        "services[0]", 1, "expected table, found string 'web'")


def test_errors_in_several_services_are_all_reported_in_line_order(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        [[services]]
        name = "a"
        command = "true"
        restart = "sometimes"

        [[services]]
        name = "b"
        command = "true"
        depends_on = ["zzz"]
        port = 0
        """)
    assert loaded.config is None
    assert [(d.line, d.key) for d in loaded.diagnostics] == [
        (4, "services[0].restart"), (9, "services[1].depends_on[0]"), (10, "services[1].port")]


def test_validate_summary_lists_the_services(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        [[services]]
        name = "db"
        command = "exec db --port {port}"
        port = 5432
        health = { tcp = true }
        env = { DB_MODE = "dev" }

        [[services]]
        name = "api"
        command = ["sh", "-c", "serve"]
        port = "auto"
        depends_on = ["db"]
        health = { http = "/health" }
        restart = "no"
        enabled = false
        """)
    assert loaded.config is not None
    summary = format_summary(loaded.config)
    assert summary.split("agents: none\n")[1] == textwrap.dedent(f"""\
        [service db] enabled, port 5432
          command: sh -c 'exec db --port {{port}}'
          cwd: {tmp_path}
          health: the port accepts a connection
          restart: on-failure (at most 5 in a row, backoff 1s to 60s)
          env: DB_MODE
        [service api] disabled, port auto
          command: sh -c serve
          cwd: {tmp_path}
          after: db
          health: GET /health answers 200
          restart: no
        config OK""")


# ---- the documentation -----------------------------------------------------------------------


def test_the_documented_example_loads_and_renders_as_documented(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("## `[[services]]`", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")
    example = next(b for b in blocks if b.startswith("toml\n"))[len("toml\n"):]
    graph = next(b for b in blocks if b.startswith("\nwave 1\n")).strip("\n")
    (tmp_path / "api").mkdir()
    found = services(tmp_path, example)
    assert [s.name for s in found] == ["db", "cache", "api"]
    assert render(found) == graph
