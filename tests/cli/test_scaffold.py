"""`scaffold`: a starter that loads clean, runs as it is, and never overwrites anything."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from marrow_tui.config.agents import AGENT_KEYS
from marrow_tui.config.load import load_config
from marrow_tui.scaffold import CONFIG_TEXT, CREATED, KEPT, WROTE, scaffold

FILES = ("marrow.toml", "rules.md", "agent.sh", "workspace/context.d/10-date.sh")
DIRS = ("runtime/logs/exec", "tasks/queue", "tasks/delegated", "tasks/done", "context.d")


def test_scaffold_writes_the_starter(tmp_path: Path) -> None:
    target = tmp_path / "team"
    results = scaffold(target)
    assert [(p.relative_to(tmp_path).as_posix(), s) for p, s in results] == [
        ("team", CREATED),
        ("team/workspace", CREATED),
        *((f"team/workspace/{d}", CREATED) for d in DIRS),
        *((f"team/{f}", WROTE) for f in FILES),
    ]
    for sub in DIRS:
        assert (target / "workspace" / sub).is_dir()
    for name in ("agent.sh", "workspace/context.d/10-date.sh"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "marrow.toml").stat().st_mode) == 0o644


def test_scaffolded_config_loads_without_errors_or_warnings(tmp_path: Path) -> None:
    scaffold(tmp_path)
    loaded = load_config(tmp_path / "marrow.toml")
    assert loaded.diagnostics == []
    config = loaded.config
    assert config is not None and config.ignored == () and config.mode == "single_user"
    assert config.rules_path == tmp_path / "rules.md"
    [agent] = config.agents
    assert (agent.name, agent.heartbeat_interval, agent.prompt, agent.enabled) == (
        "worker", 300, "stdin", True)
    assert agent.workspace == tmp_path / "workspace"
    assert agent.context_dirs == (tmp_path / "workspace" / "context.d",)
    assert agent.argv() == [str(tmp_path / "agent.sh")]
    assert loaded.validate() == []


def test_the_paths_are_written_relative(tmp_path: Path) -> None:
    scaffold(tmp_path)
    text = (tmp_path / "marrow.toml").read_text()
    assert '\nworkspace = "workspace"\n' in text
    assert '\nagent_command = "./agent.sh"\n' in text
    assert str(tmp_path) not in text


@pytest.mark.parametrize("name", ["my team", "it's \"odd\" $HOME %h \\ dir", "ünï"])
def test_odd_folder_names_still_load_clean(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    scaffold(target)
    loaded = load_config(target / "marrow.toml")
    assert loaded.diagnostics == []
    assert loaded.config is not None
    assert loaded.config.agents[0].argv() == [str(target / "agent.sh")]


def test_scaffold_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "marrow.toml").write_text("# mine\n")
    (tmp_path / "workspace" / "context.d").mkdir(parents=True)
    (tmp_path / "workspace" / "context.d" / "10-date.sh").write_text("echo mine\n")
    (tmp_path / "rules.md").symlink_to(tmp_path / "nowhere.md")  # dangling: not followed
    results = dict(scaffold(tmp_path))
    assert results[tmp_path / "marrow.toml"] == KEPT
    assert results[tmp_path / "rules.md"] == KEPT
    assert results[tmp_path / "workspace" / "context.d" / "10-date.sh"] == KEPT
    assert results[tmp_path / "workspace" / "context.d"] == KEPT
    assert results[tmp_path / "agent.sh"] == WROTE
    assert (tmp_path / "marrow.toml").read_text() == "# mine\n"
    assert (tmp_path / "workspace" / "context.d" / "10-date.sh").read_text() == "echo mine\n"
    assert not (tmp_path / "nowhere.md").exists()


def test_scaffold_twice_keeps_everything(tmp_path: Path) -> None:
    scaffold(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {status for _, status in scaffold(tmp_path)} == {KEPT}
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_file_in_place_of_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "workspace").write_text("not a folder")
    with pytest.raises(FileExistsError):
        scaffold(tmp_path)


def test_the_config_is_not_indented_and_explains_every_key() -> None:
    text = CONFIG_TEXT
    for line in text.splitlines():
        assert line == "" or not line[0].isspace(), line
    for key in AGENT_KEYS:
        spelled = "(also spelled run_as_user)" if key == "run_as_user" else f"{key} ="
        assert spelled in text, key
    assert "rules_path =" in text and 'mode = "single_user"' in text


def test_the_starter_agent_reads_its_prompt_on_stdin(tmp_path: Path) -> None:
    scaffold(tmp_path)
    workspace = tmp_path / "workspace"
    (workspace / "tasks" / "queue" / "20260101-000000-x.md").write_text("# x\n")
    prompt = "--- [Core Rules] ---\nbe good\n\nDo work.\n\n--- [10-date] ---\nnow: today\n"
    done = subprocess.run([str(tmp_path / "agent.sh")], input=prompt, cwd=workspace,
                          capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout.splitlines() == [
        f"stand-in agent, working in {workspace}",
        f"prompt: 7 lines, {len(prompt.rstrip(chr(10)))} bytes",
        "prompt sections:",
        "  --- [Core Rules] ---",
        "  --- [10-date] ---",
        "tasks in tasks/queue: 1",
    ]


def test_the_starter_agent_without_sections(tmp_path: Path) -> None:
    scaffold(tmp_path)
    done = subprocess.run([str(tmp_path / "agent.sh")], input="", cwd=tmp_path,
                          capture_output=True, text=True, timeout=10, check=True)
    assert "  (none)" in done.stdout.splitlines()


def test_the_context_script_prints_the_date(tmp_path: Path) -> None:
    scaffold(tmp_path)
    script = tmp_path / "workspace" / "context.d" / "10-date.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=10, check=True)
    assert re.fullmatch(r"now: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", done.stdout)
