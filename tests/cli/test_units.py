"""Service files: systemd and launchd text, escaped so odd paths survive the trip."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from marrow_tui.cli.units import (
    LAUNCHD_PLIST,
    SYSTEMD_UNIT,
    command_line,
    default_path,
    render_units,
    systemd_quote,
)

ODD = "odd &<x> 100% $HOME ${X} \"q\" 's' back\\slash;"
EXE = "/opt/marrow tui/bin/marrow-tui"

_C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "s": " "}


def split_exec_start(value: str) -> list[str]:
    """systemd's reading of an ExecStart= value (systemd.syntax(7), systemd.service(5))."""
    words: list[str] = []
    i, word, in_word = 0, "", False
    while i < len(value):
        c = value[i]
        if c in " \t" and in_word:
            words.append(word)
            word, in_word = "", False
        elif c in " \t":
            pass
        elif c in "\"'":
            end = i + 1
            while value[end] != c:
                if value[end] == "\\":
                    word += _C_ESCAPES[value[end + 1]]
                    end += 2
                else:
                    word += value[end]
                    end += 1
            i, in_word = end, True
        elif c == "\\":
            word += _C_ESCAPES[value[i + 1]]
            i, in_word = i + 1, True
        else:
            word += c
            in_word = True
        i += 1
    if in_word:
        words.append(word)
    # specifiers everywhere; `$` expansion in the arguments only
    return [w.replace("%%", "%") if n == 0 else w.replace("%%", "%").replace("$$", "$")
            for n, w in enumerate(words)]


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith("#"))


def unit(config: Path, **kw: object) -> str:
    [(name, text)] = render_units(config, executable=EXE, platform="linux", **kw)  # type: ignore[arg-type]
    assert name == SYSTEMD_UNIT
    return text


def plist(config: Path, **kw: object) -> dict[str, object]:
    [(name, text)] = render_units(config, executable=EXE, platform="darwin", **kw)  # type: ignore[arg-type]
    assert name == LAUNCHD_PLIST
    loaded: dict[str, object] = plistlib.loads(text.encode())
    return loaded


def test_platforms(tmp_path: Path) -> None:
    config = tmp_path / "marrow.toml"
    assert [n for n, _ in render_units(config, executable=EXE, platform="both")] == [
        SYSTEMD_UNIT, LAUNCHD_PLIST]
    with pytest.raises(ValueError, match="platform"):
        render_units(config, executable=EXE, platform="windows")


def test_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "marrow.toml"
    assert command_line(config, executable=EXE) == [EXE, "--no-ui", "--config", str(config)]
    assert command_line(config, executable=EXE, state_dir=tmp_path / "st")[-2:] == [
        "--state-dir", str(tmp_path / "st")]


def test_a_command_prefix_as_executable(tmp_path: Path) -> None:
    config = tmp_path / "my conf" / "marrow.toml"
    prefix = ["/usr/bin/python3", "-m", "marrow_tui"]
    [(_, text), (_, xml)] = render_units(config, executable=prefix, path="/bin")
    assert split_exec_start(settings(text)["ExecStart"]) == [
        *prefix, "--no-ui", "--config", str(config)]
    assert plistlib.loads(xml.encode())["ProgramArguments"][:3] == prefix
    assert default_path(prefix, "").startswith("/usr/bin:")
    with pytest.raises(ValueError, match="no executable"):
        render_units(config, executable=[])


def test_systemd_unit(tmp_path: Path) -> None:
    config = tmp_path / "marrow.toml"
    text = unit(config, path="/usr/bin:/bin")
    values = settings(text)
    assert values["ExecStart"] == f'"{EXE}" --no-ui --config {config}'
    assert values["WorkingDirectory"] == str(tmp_path)
    assert values["Environment"] == '"PATH=/usr/bin:/bin"'
    assert values["Restart"] == "on-failure"
    assert values["WantedBy"] == "default.target"
    assert values["StandardOutput"] == f"append:{tmp_path}/marrow-tui.stdout.log"
    assert values["StandardError"] == f"append:{tmp_path}/marrow-tui.stderr.log"
    assert "User=" not in text  # a user unit runs as its user


def test_odd_config_path_round_trips_through_systemd(tmp_path: Path) -> None:
    folder = tmp_path / ODD
    config = folder / "marrow.toml"
    state = tmp_path / "state 50%"
    text = unit(config, state_dir=state, path="/a b:/c%d$e\"f")
    values = settings(text)
    assert split_exec_start(values["ExecStart"]) == [
        EXE, "--no-ui", "--config", str(config), "--state-dir", str(state)]
    assert values["WorkingDirectory"].replace("%%", "%") == str(folder)
    assert split_exec_start(values["Environment"]) == ["PATH=/a b:/c%d$e\"f"]
    assert values["StandardOutput"].replace("%%", "%") == f"append:{state}/marrow-tui.stdout.log"


def test_exact_systemd_escapes() -> None:
    assert systemd_quote("--no-ui") == "--no-ui"
    assert systemd_quote("/a/b") == "/a/b"
    assert systemd_quote("") == '""'
    assert systemd_quote("50%") == "50%%"
    assert systemd_quote("$HOME") == "$$HOME"
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote(ODD) == (
        '"odd &<x> 100%% $$HOME $${X} \\"q\\" \'s\' back\\\\slash;"')


def test_odd_paths_round_trip_through_launchd(tmp_path: Path) -> None:
    folder = tmp_path / ODD
    config = folder / "marrow.toml"
    state = tmp_path / "state &<>"
    data = plist(config, state_dir=state, path="/a&b:<c>")
    assert data["Label"] == "com.marrow-tui"
    assert data["ProgramArguments"] == [
        EXE, "--no-ui", "--config", str(config), "--state-dir", str(state)]
    assert data["WorkingDirectory"] == str(folder)
    assert data["EnvironmentVariables"] == {"PATH": "/a&b:<c>"}
    assert data["KeepAlive"] == {"SuccessfulExit": False} and data["RunAtLoad"] is True
    assert data["StandardOutPath"] == f"{state}/marrow-tui.stdout.log"
    assert data["StandardErrorPath"] == f"{state}/marrow-tui.stderr.log"


def test_log_dir_and_relative_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = plist(Path("conf/marrow.toml"), log_dir=Path("logs"))
    args = data["ProgramArguments"]
    assert isinstance(args, list) and args[3] == str(tmp_path / "conf" / "marrow.toml")
    assert data["WorkingDirectory"] == str(tmp_path / "conf")
    assert data["StandardOutPath"] == str(tmp_path / "logs" / "marrow-tui.stdout.log")


def test_what_cannot_be_written_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="control character"):
        render_units(tmp_path / "a\nb" / "m.toml", executable=EXE)
    with pytest.raises(ValueError, match="executable"):
        render_units(tmp_path / "m.toml", executable="/opt/it's/marrow-tui", platform="linux")
    # launchd has no such limit
    render_units(tmp_path / "m.toml", executable="/opt/it's/marrow-tui", platform="darwin")


def test_rendering_touches_nothing(tmp_path: Path) -> None:
    render_units(tmp_path / "marrow.toml", executable=EXE, state_dir=tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_default_path() -> None:
    assert default_path("/x/bin/marrow-tui", "/a:/b::/a").split(":")[:3] == ["/x/bin", "/a", "/b"]
    assert "/usr/bin" in default_path("marrow-tui", "").split(":")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    folder = tmp_path / "odd 100% $X &<>"
    exe = folder / "bin dir %x $y" / "marrow-tui"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    [(name, text)] = render_units(folder / "marrow.toml", executable=str(exe),
                                  platform="linux", path="/usr/bin:/bin")
    (tmp_path / name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "bad unit file setting" not in done.stderr
