"""End-to-end tests of the scheduler subcommands: `marrow-tui validate | scaffold | dry-run |
run-once | doctor | install-service | task | wake | sessions`, run as a user runs them.

Every command is a real `python -m marrow_tui` subprocess with a clean environment, on real
files in tmp_path; agents are real shell scripts; hubs listen on loopback only. Nothing sleeps
for a fixed time: the tests wait for a line or a file, with a bound.
"""

from __future__ import annotations

import os
import plistlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from marrow_tui.runtime import Runtime, RuntimeOptions

from tests.support.hubproc import RunningHub, clean_env, running_hub
from tests.support.scheduler import script, write_config

CLI_TIMEOUT = 30.0
LOG_TIMEOUT = 15.0


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """`marrow-tui ARGS` in `cwd`, as a subprocess; never a traceback."""
    done = subprocess.run([sys.executable, "-m", "marrow_tui", *args], check=False, cwd=cwd,
                          env={**clean_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    result = Result(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.err, result.err
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nobody_uri() -> str:
    """A loopback address nothing listens on (so hub commands find no marrow-tui)."""
    return f"ws://127.0.0.1:{free_port()}"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def block(out: str, agent: str) -> str:
    """One agent's `--- DRY RUN [agent] ... --- END ---` block of dry-run's output."""
    match = re.search(rf"^--- DRY RUN \[{re.escape(agent)}\] .*?^--- END ---$", out,
                      re.MULTILINE | re.DOTALL)
    assert match, f"no dry-run block for {agent}:\n{out}"
    return match.group(0)


def wait_for_line(hub: RunningHub, pattern: str, after: int = 0) -> re.Match[str]:
    """The first line of the running marrow-tui's output (from line `after`) matching
    `pattern`, waited for with a bound."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        for line in list(hub.output)[after:]:
            if match := rx.search(line):
                return match
        if time.monotonic() > deadline or hub.process.poll() is not None:
            pytest.fail(f"no line matching {pattern!r} in:\n{''.join(hub.output)}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- validate


def test_validate_prints_a_summary_for_a_valid_config(tmp_path: Path) -> None:
    write_config(tmp_path, {"alpha": "cat > /dev/null\n", "beta": "cat > /dev/null\n"})

    result = cli("validate", cwd=tmp_path)  # ./marrow.toml by default

    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"config: {tmp_path / 'marrow.toml'}"
    assert "[alpha] enabled" in result.out and "[beta] enabled" in result.out
    assert result.out.rstrip().endswith("config OK")


BROKEN = """\
[profile]
rules_path = "rules.md"

[[agents]]
name = "alpha"
agent_command = "true"
workspace = "ws"
heartbeat_interval = 5
colour = "blue"

[[agents]]
name = "alpha"
agent_command = "true"
workspace = "ws"
enabled = "yes"
"""


def test_validate_names_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "rules.md").write_text("rules\n")
    (tmp_path / "broken.toml").write_text(BROKEN)

    result = cli("--config", "broken.toml", "validate", cwd=tmp_path)

    assert result.code == 2
    assert result.out == ""
    lines = result.err_lines
    for where, key, text in [
        ("broken.toml:8", "agents[0].heartbeat_interval", "warning: 5 is outside [60, 604800]"),
        ("broken.toml:9", "agents[0].colour", "error: unknown key 'colour'"),
        ("broken.toml:12", "agents[1].name", "error: duplicate agent name 'alpha'"),
        ("broken.toml:15", "agents[1].enabled", "error: expected boolean"),
    ]:
        assert any(line.startswith(f"{where}: {key}: {text}") for line in lines), (
            f"{where} {key} not in:\n{result.err}")
    assert lines[-1] == "marrow-tui: broken.toml: 3 errors, 1 warning; the config is not valid"
    assert len(lines) == 5


def test_validate_without_agents_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "marrow.toml").write_text("[service]\nmode = \"single_user\"\n")

    result = cli("validate", "--config", "marrow.toml", cwd=tmp_path)

    assert result.code == 2
    assert any("agents: error: no agents or services configured" in line
               for line in result.err_lines)
    assert result.out == ""


@pytest.mark.parametrize("argv", [
    ["--config", "missing.toml", "validate"],
    ["validate", "--config", "missing.toml"],
    ["--config", "missing.toml", "run-once"],
    ["--config", "missing.toml", "--no-ui", "--port", "0"],  # the runtime itself
])
def test_a_missing_config_is_one_clear_line(tmp_path: Path, argv: list[str]) -> None:
    result = cli(*argv, cwd=tmp_path)

    assert result.code == 2
    assert result.err_lines == [result.err.strip()]
    assert result.err.startswith("marrow-tui: no config file at missing.toml")
    assert not (tmp_path / ".marrow").exists()


def test_no_config_anywhere_names_the_default(tmp_path: Path) -> None:
    result = cli("validate", cwd=tmp_path)

    assert result.code == 2
    expected = ("marrow-tui: no config file at marrow.toml (pass --config PATH, set "
                "MARROW_CONFIG, or create one with `marrow-tui scaffold DIR`)")
    assert result.err_lines == [expected]


# --------------------------------------------------------------------------- scaffold


def test_scaffold_never_overwrites_and_its_config_runs(tmp_path: Path) -> None:
    first = cli("scaffold", "site", cwd=tmp_path)
    assert first.code == 0, first.err
    site = tmp_path / "site"
    for name in ("marrow.toml", "rules.md", "agent.sh", "workspace/context.d/10-date.sh"):
        assert (site / name).is_file()
        assert re.search(rf"^wrote\s+{re.escape(str(site / name))}$", first.out, re.MULTILINE)
    (site / "rules.md").write_text("# my own rules\n")

    second = cli("scaffold", "site", cwd=tmp_path)

    assert second.code == 0, second.err
    reported = [line for line in second.out.splitlines() if line.startswith(("wrote", "kept",
                                                                              "created"))]
    assert reported and all(line.startswith("kept") for line in reported), second.out
    assert (site / "rules.md").read_text() == "# my own rules\n"

    checked = cli("--config", "site/marrow.toml", "validate", cwd=tmp_path)
    assert checked.code == 0, checked.err
    assert "config OK" in checked.out

    ran = cli("--config", "site/marrow.toml", "run-once", cwd=tmp_path)
    assert ran.code == 0, ran.out + ran.err
    assert re.search(r"^worker\s+ok\b", ran.out, re.MULTILINE), ran.out
    assert "1 of 1 run(s) ok" in ran.out


# --------------------------------------------------------------------------- dry-run


def test_dry_run_prints_each_prompt_and_moves_no_task(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"alpha": "cat > prompt.txt\n", "beta": "cat > prompt.txt\n"},
                          extra='role = "You are the test role."\ncontext_dirs = ["ctx"]')
    config.write_text(config.read_text() + '\n[profile]\nrules_path = "rules.md"\n')
    (tmp_path / "rules.md").write_text("Always write tests.\n")
    script(tmp_path / "ctx" / "10-weather.sh", "echo 'sunny in the context'\n")
    uri = nobody_uri()
    queued = cli("task", "add", "--agent", "alpha", "Fix the flaky test", "It fails on Mondays.",
                 "--uri", uri, cwd=tmp_path)
    assert queued.code == 0, queued.err
    queue = tmp_path / "ws" / "alpha" / "tasks" / "queue"
    before = files(queue)
    assert len(before) == 1

    result = cli("dry-run", cwd=tmp_path)

    assert result.code == 0, result.err
    alpha, beta = block(result.out, "alpha"), block(result.out, "beta")
    for text in ("Always write tests.", "You are the test role.", "sunny in the context"):
        assert text in alpha and text in beta
    assert "Fix the flaky test" in alpha and "It fails on Mondays." in alpha
    assert "Fix the flaky test" not in beta
    assert "tasks=1" in alpha.splitlines()[0]
    assert files(queue) == before
    assert files(tmp_path / "ws" / "alpha" / "tasks" / "delegated") == []
    assert not (tmp_path / "ws" / "alpha" / "prompt.txt").exists()  # nothing ran

    only = cli("dry-run", "--agent", "beta", cwd=tmp_path)
    assert only.code == 0 and "[beta]" in only.out and "[alpha]" not in only.out
    unknown = cli("dry-run", "--agent", "ghost", cwd=tmp_path)
    assert unknown.code == 2 and "no agent named ghost" in unknown.err


# --------------------------------------------------------------------------- run-once


async def test_run_once_reports_each_run_and_records_the_sessions(tmp_path: Path) -> None:
    write_config(tmp_path, {"good": "cat > /dev/null; echo all done\n",
                            "bad": "cat > /dev/null; echo oops >&2; exit 3\n"})

    result = cli("run-once", cwd=tmp_path)

    assert result.code == 1, result.out + result.err
    assert re.search(r"^good\s+ok\b.*exit 0", result.out, re.MULTILINE), result.out
    assert re.search(r"^bad\s+failed\b.*exit 3", result.out, re.MULTILINE), result.out
    assert "1 of 2 run(s) ok" in result.out

    runtime = Runtime(RuntimeOptions(state_dir=tmp_path / ".marrow"))
    await runtime.start()
    try:
        book = runtime.state.sessions
        good, bad = book.of_agent("good"), book.of_agent("bad")
        assert [(s.state, s.code, s.last_line) for s in good] == [("ok", 0, "all done")]
        assert [(s.state, s.code, s.last_line) for s in bad] == [("failed", 3, "oops")]
    finally:
        await runtime.stop()

    just_good = cli("run-once", "--agent", "good", cwd=tmp_path)
    assert just_good.code == 0, just_good.out + just_good.err
    assert "bad" not in just_good.out


# --------------------------------------------------------------------------- doctor


def test_doctor_checks_workspaces_commands_and_scripts(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"alpha": "cat > /dev/null\n", "beta": "cat > /dev/null\n"})
    port = str(free_port())

    fine = cli("doctor", "--port", port, cwd=tmp_path)
    assert fine.code == 0, fine.out + fine.err
    assert "doctor: all good" in fine.out
    assert f"hub port {port} free" in fine.out

    (tmp_path / "ws" / "beta").rmdir()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "notes.md").write_text("not a script\n")
    no_shebang = tmp_path / "ctx" / "20-bare.sh"
    no_shebang.write_text("echo no interpreter line\n")
    no_shebang.chmod(0o755)
    config.write_text(config.read_text().replace(
        'name = "alpha"', 'name = "alpha"\ncontext_dirs = ["ctx"]', 1))

    broken = cli("doctor", "--port", port, cwd=tmp_path)

    assert broken.code == 1, broken.out + broken.err
    assert f"beta: workspace missing: {tmp_path / 'ws' / 'beta'}" in broken.err
    assert f"alpha: {no_shebang} has no #! line" in broken.err
    assert "notes.md is not executable" in broken.out  # a note, not an issue
    assert "doctor: 2 issues to fix:" in broken.err


def test_doctor_reports_a_missing_command_that_validate_rejects(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"alpha": "cat > /dev/null\n"})
    config.write_text(re.sub(r'agent_command = ".*"', 'agent_command = "no-such-agent-cli -p"',
                             config.read_text()))

    validated = cli("validate", cwd=tmp_path)
    assert validated.code == 2
    assert "agents[0].agent_command: error: command not found: no-such-agent-cli" in validated.err

    doctor = cli("doctor", "--port", str(free_port()), cwd=tmp_path)
    assert doctor.code == 1, doctor.out + doctor.err
    assert "✗ command no-such-agent-cli" in doctor.out
    assert "alpha: command not found: no-such-agent-cli" in doctor.err

    config.write_text(config.read_text() + "\nbogus = 1\n")
    invalid = cli("doctor", cwd=tmp_path)
    assert invalid.code == 2
    assert "bogus: error: unknown key 'bogus'" in invalid.err


# --------------------------------------------------------------------------- install-service


def test_install_service_renders_escaped_files_and_installs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "my agents & co"
    script(folder / "agent.sh", "cat > /dev/null\n")
    config = folder / "marrow.toml"
    config.write_text('[[agents]]\nname = "alpha"\nagent_command = "./agent.sh"\n'
                      'workspace = "."\n')
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}

    both = cli("install-service", "--config", str(config), cwd=tmp_path, env=env)
    assert both.code == 0, both.err
    assert "# ---- marrow-tui.service" in both.out and "# ---- com.marrow-tui.plist" in both.out
    exec_start = next(line for line in both.out.splitlines() if line.startswith("ExecStart="))
    assert f'--no-ui --config "{config}"' in exec_start
    assert "&amp;" in both.out  # the plist half is XML-escaped

    plist = cli("install-service", "--config", str(config), "--platform", "darwin", cwd=tmp_path,
                env=env)
    assert plist.code == 0, plist.err
    parsed = plistlib.loads(plist.out.encode())
    assert parsed["ProgramArguments"][-3:] == ["--no-ui", "--config", str(config)]
    assert parsed["WorkingDirectory"] == str(folder)

    out_dir = tmp_path / "rendered units"
    written = cli("install-service", "--config", str(config), "--output-dir", str(out_dir),
                  cwd=tmp_path, env=env)
    assert written.code == 0, written.err
    assert files(out_dir) == ["com.marrow-tui.plist", "marrow-tui.service"]
    assert f"wrote {out_dir / 'marrow-tui.service'}" in written.out
    with (out_dir / "com.marrow-tui.plist").open("rb") as handle:
        assert plistlib.load(handle)["ProgramArguments"][-1] == str(config)
    unit = (out_dir / "marrow-tui.service").read_text()
    assert f"WorkingDirectory={folder}\n" in unit
    assert f'--config "{config}"' in unit
    assert list(home.iterdir()) == []  # nothing installed, enabled or copied


# --------------------------------------------------------------------------- task, no hub


def test_task_add_without_a_running_marrow_tui_writes_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, {"alpha": "cat > /dev/null\n", "beta": "cat > /dev/null\n"})
    uri = nobody_uri()

    added = cli("task", "add", "--agent", "alpha", "Write the docs", "--uri", uri, cwd=tmp_path)

    assert added.code == 0, added.err
    assert "written directly: no marrow-tui answers at" in added.out
    queued = files(tmp_path / "ws" / "alpha" / "tasks" / "queue")
    assert len(queued) == 1 and queued[0] in added.out
    listed = cli("task", "list", "--uri", uri, cwd=tmp_path)
    assert listed.code == 0, listed.err
    assert re.search(r"^alpha\s+queue\s+Write the docs\s", listed.out, re.MULTILINE), listed.out
    only_beta = cli("task", "list", "--agent", "beta", "--uri", uri, cwd=tmp_path)
    assert only_beta.code == 0 and "(no tasks queued)" in only_beta.out

    ghost = cli("task", "add", "--agent", "ghost", "x", "--uri", uri, cwd=tmp_path)
    assert ghost.code == 1
    config = tmp_path / "marrow.toml"
    expected = f"marrow-tui: no agent named ghost in {config} (agents: alpha, beta)"
    assert ghost.err_lines == [expected]


def test_hub_commands_without_a_running_marrow_tui(tmp_path: Path) -> None:
    uri = nobody_uri()
    for argv in (["wake", "alpha"], ["sessions"]):
        result = cli(*argv, "--uri", uri, cwd=tmp_path)
        assert result.code == 3, result.err
        expected = f"marrow-tui: cannot reach the hub at {uri}: connection refused"
        assert result.err_lines == [f"{expected} (is the hub running?)"]


# --------------------------------------------------------------------------- with a hub


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHub, Path]]:
    """One `marrow-tui --no-ui` on a one-agent config, its first (startup) run done."""
    root = tmp_path_factory.mktemp("running")
    config = write_config(root, {"alpha": "cat > /dev/null; echo alpha did its run\n"},
                          interval=3600)
    command = [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1", "--port",
               "0", "--config", str(config)]
    with running_hub(command, root) as hub:
        wait_for_line(hub, r"run\s+alpha-\S+ ok \(exit 0\)")  # the verbs serve, the run is over
        yield hub, root


def test_task_wake_and_sessions_go_through_the_running_hub(
        console: tuple[RunningHub, Path]) -> None:
    hub, root = console
    mark = len(hub.output)

    added = cli("task", "add", "--agent", "alpha", "Tidy the logs", "keep a week",
                "--uri", hub.uri, "--name", "e2e/op", cwd=root)
    assert added.code == 0, added.err
    assert added.out.startswith("queued for alpha: ") and "directly" not in added.out
    wait_for_line(hub, r"task\s+alpha <- Tidy the logs by e2e/op", after=mark)

    listed = cli("task", "list", "--uri", hub.uri, cwd=root)
    assert listed.code == 0, listed.err
    assert re.search(r"^alpha\s+queue\s+Tidy the logs\s", listed.out, re.MULTILINE), listed.out

    woken = cli("wake", "alpha", "--reason", "from the test", "--uri", hub.uri,
                "--name", "e2e/op", cwd=root)
    assert woken.code == 0, woken.err
    assert woken.out.startswith('wake submitted for "alpha"')
    started = wait_for_line(hub, r"run\s+(alpha-\S+) started \(from the test\) with 1 task",
                            after=mark)
    session = started.group(1)
    wait_for_line(hub, rf"run\s+{re.escape(session)} ok \(exit 0\): alpha did its run",
                  after=mark)
    done = root / "ws" / "alpha" / "tasks" / "done"
    assert any(name.endswith("Tidy-the-logs.md") for name in files(done))

    sessions = cli("sessions", "--uri", hub.uri, cwd=root)
    assert sessions.code == 0, sessions.err
    assert re.search(r"^alpha\s+in \d+s\s+0\s+0\s+-$", sessions.out, re.MULTILINE), sessions.out
    rows = [line.split() for line in sessions.out.splitlines() if line.startswith("alpha-")]
    assert len(rows) == 2 and rows[0][0] == session, sessions.out  # newest first
    assert all("ok" in row and "0" in row for row in rows)

    ghost = cli("wake", "ghost", "--uri", hub.uri, cwd=root)
    assert ghost.code == 1
    expected = "marrow-tui: refused: No configured agent named 'ghost'. [unknown_agent]"
    assert ghost.err_lines == [expected]
    ghost_task = cli("task", "add", "--agent", "ghost", "x", "--uri", hub.uri, cwd=root)
    assert ghost_task.code == 1 and "unknown_agent" in ghost_task.err


def test_run_once_and_doctor_beside_a_running_marrow_tui(
        console: tuple[RunningHub, Path]) -> None:
    hub, root = console
    state_dir = root / ".marrow"

    refused = cli("run-once", cwd=root)

    assert refused.code == 2
    expected = (f"marrow-tui: {state_dir} is in use by a running marrow-tui "
                f"(pid {hub.process.pid}); run an agent there with `marrow-tui wake NAME`, "
                "or pass another --state-dir")
    assert refused.err_lines == [expected]

    port = hub.uri.rsplit(":", 1)[1]
    doctor = cli("doctor", "--port", port, cwd=root)
    assert doctor.code == 0, doctor.out + doctor.err
    assert f"state dir in use by a running marrow-tui (pid {hub.process.pid})" in doctor.out
    assert f"hub port {port} is served by a running marrow-tui" in doctor.out

    elsewhere = cli("run-once", "--state-dir", "other-state", cwd=root)
    assert elsewhere.code == 0, elsewhere.out + elsewhere.err
    assert os.path.isdir(root / "other-state")


def test_keys_that_name_no_action_or_clash_in_a_pane_are_refused_with_their_lines(
        tmp_path: Path) -> None:
    config = tmp_path / "marrow.toml"
    config.write_text(
        f'[[agents]]\nname = "a"\nagent_command = "true"\nworkspace = "{tmp_path / "ws"}"\n\n'
        '[keys]\n"claims.handoff" = "r"\n"claims.handof" = "z"\n"sessions.stop" = "X"\n')
    for args in (("validate",), ("--config", "marrow.toml", "--no-ui")):
        result = cli(*args, cwd=tmp_path)
        assert result.code == 2
        assert result.err_lines[:2] == [
            'marrow.toml:7: keys."claims.handoff": error: claims.handoff and claims.release '
            "would share the key r in the claims pane",
            "marrow.toml:8: keys.\"claims.handof\": error: 'claims.handof' is not an action of "
            "the console (did you mean claims.handoff?)"]
    config.write_text(config.read_text().replace('"claims.handoff" = "r"\n"claims.handof" = "z"\n',
                                                 '"claims.handoff" = "H"\n'))
    assert cli("validate", cwd=tmp_path).code == 0
