"""`marrow-tui graph`: the helper services' start waves, read from marrow.toml."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: two services without dependencies
THREE = """
    [[services]]
    name = "db"
    command = "true"

    [[services]]
    name = "cache"
    command = "true"
    """


def write(folder: Path, text: str, name: str = "marrow.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def run_graph(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`marrow-tui graph ...` as a subprocess."""
    command = [sys.executable, "-m", "marrow_tui", "graph"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MARROW_CONFIG", None)
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_graph_command_prints_the_graph(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [[services]]
        name = "web"
        command = ["not-installed-here", "{port}"]
        port = "auto"
        depends_on = ["api"]

        [[services]]
        name = "api"
        command = "serve"
        """)
    done = run_graph("-c", str(path), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "wave 1\n  api\nwave 2\n  web  <- api\n"
    # ./marrow.toml by default
    assert run_graph(cwd=tmp_path).stdout == done.stdout


def test_graph_command_without_services(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    done = run_graph("--config", str(path), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"no services in {path} (add a [[services]] table)\n"


def test_graph_command_with_a_cycle_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [[services]]
        name = "b"
        command = "true"
        depends_on = ["a"]

        [[services]]
        name = "a"
        command = "true"
        depends_on = ["b"]
        """)
    done = run_graph("-c", str(path), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"{path}:9: services[1].depends_on: error: dependency cycle: a -> b -> a "
        f"(each depends on the next)\n"
        f"marrow-tui: {path}: 1 error; no graph to print\n")


def test_graph_command_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from marrow_tui.cli.services import cmd_graph, register_graph

    parser = argparse.ArgumentParser()
    register_graph(parser.add_subparsers())
    path = write(tmp_path, THREE)
    args = parser.parse_args(["graph", "-c", str(path)])
    assert args.func is cmd_graph
    assert cmd_graph(args) == 0
    assert capsys.readouterr().out == "wave 1\n  db\n  cache\n"
    assert cmd_graph(SimpleNamespace(config=str(tmp_path / "missing.toml"))) == 2
    assert "no config file at" in capsys.readouterr().err
