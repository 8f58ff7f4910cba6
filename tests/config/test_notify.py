"""marrow.toml's [notify]: the command hook's keys, their defaults, and every mistake on its
line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from marrow_tui.config.load import load_config
from marrow_tui.config.model import NotifyConfig
from marrow_tui.config.summary import format_summary

AGENT = '[[agents]]\nname = "a"\nagent_command = "sh -c true"\nworkspace = "ws"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "marrow.toml"
    path.write_text(textwrap.dedent(text) + AGENT, encoding="utf-8")
    return path


def test_a_notify_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        [notify]
        command = ["{sys.executable}", "hooks/ping.py", "--loud"]
        mute = ["scout", "scout"]

        """)
    loaded = load_config(path)
    assert loaded.diagnostics == []
    assert loaded.config is not None
    assert loaded.config.notify == NotifyConfig(
        command=(sys.executable, "hooks/ping.py", "--loud"), mute=("scout",),
        events=("request_waiting", "run_failed", "service_down"), timeout=10.0,
        cwd=tmp_path)
    summary = format_summary(loaded.config)
    assert f"[notify] {sys.executable} hooks/ping.py --loud" in summary
    assert "  on: request_waiting, run_failed, service_down (at most 10s each)" in summary
    assert "  muted: scout" in summary


def test_a_shell_line_some_events_and_a_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        [notify]
        command = 'notify-send "marrow-tui" "$MARROW_EVENT_TITLE"'
        events = ["request_waiting", "service_down"]
        timeout = 2.5

        """)
    config = load_config(path).config
    assert config is not None and config.notify is not None
    assert config.notify.argv() == ["/bin/sh", "-c", 'notify-send "marrow-tui" '
                                                     '"$MARROW_EVENT_TITLE"']
    assert config.notify.events == ("request_waiting", "service_down")
    assert config.notify.timeout == 2.5


def test_a_relative_program_is_found_beside_the_config(tmp_path: Path) -> None:
    hook = tmp_path / "hooks" / "ping"
    hook.parent.mkdir()
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    config = load_config(write(tmp_path, '[notify]\ncommand = ["./hooks/ping"]\n\n')).config
    assert config is not None and config.notify is not None
    assert config.notify.command == (str(hook),)


def test_no_notify_table_is_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "")).config
    assert config is not None and config.notify is None


@pytest.mark.parametrize(("body", "line", "key", "message"), [
    ('[notify]\nevents = ["run_failed"]\n', 1, "notify.command",
     "missing required key 'command' (the program to run, e.g. command = "
     '["notify-send", "marrow-tui"])'),
    ('[notify]\ncommand = ["no-such-notifier-x"]\n', 2, "notify.command",
     "command not found: no-such-notifier-x"),
    ('[notify]\ncommand = []\n', 2, "notify.command", "command must not be empty"),
    ('[notify]\ncommand = "  "\n', 2, "notify.command", "command must not be empty"),
    ('[notify]\ncommand = 3\n', 2, "notify.command",
     "expected string (a shell line) or array of strings (argv), found integer 3"),
    ('[notify]\ncommand = "true"\nevents = ["request_waiting", "run_faild"]\n', 3,
     "notify.events[1]", "unknown event 'run_faild' (did you mean 'run_failed'?); the "
     "events are request_waiting, run_failed, service_down"),
    ('[notify]\ncommand = "true"\nmute = [1]\n', 3, "notify.mute[0]",
     "expected string, found integer 1"),
    ('[notify]\ncommand = "true"\ntimout = 5\n', 3, "notify.timout",
     "unknown key 'timout' (did you mean 'timeout'?)"),
    ('notify = "ntfy"\n', 1, "notify", "expected table, found string 'ntfy'"),
])
def test_each_mistake_is_one_error_on_its_line(tmp_path: Path, body: str, line: int,
                                               key: str, message: str) -> None:
    path = write(tmp_path, body + "\n")
    loaded = load_config(path)
    assert loaded.config is None
    [error] = loaded.errors
    assert str(error) == f"{path}:{line}: {key}: error: {message}"


def test_a_timeout_out_of_range_and_no_events_are_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, '[notify]\ncommand = "true"\nevents = []\ntimeout = 3600\n\n')
    loaded = load_config(path)
    assert loaded.config is not None and loaded.config.notify is not None
    assert [str(w) for w in loaded.warnings] == [
        f"{path}:3: notify.events: warning: no events: the command never runs",
        f"{path}:4: notify.timeout: warning: 3600 is outside [1, 300], using 300"]
    assert loaded.config.notify.timeout == 300
