"""A hub command loads what it needs and nothing more.

`marrow-tui who --json` against a real hub, in a fresh interpreter, must not import the
console (Textual), the event log (aiosqlite), the WebSocket server, the runtime or the MCP SDK:
every agent's shell command would pay for them. The time it takes is measured in
benchmarks/cli/import_time.py, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hubproc import RunningHub, clean_env, hub_command, running_hub

#: run `marrow-tui ARGS...` as the console script does, then write what was imported
PROBE = """\
import json, runpy, sys
out, sys.argv = sys.argv[1], ["marrow-tui", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("marrow_tui", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""

NOT_FOR_A_HUB_COMMAND = (
    "textual", "rich", "aiosqlite", "websockets.asyncio.server", "websockets.server",
    "marrow_tui.hub.server", "marrow_tui.runtime", "marrow_tui.store", "marrow_tui.ui",
    "marrow_tui.config", "marrow_tui.scheduler", "mcp",
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as running:
        yield running


def test_who_imports_neither_the_console_nor_the_log_nor_the_server(
        hub: RunningHub, tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), "who", "--json", "--uri", hub.uri,
         "--name", "e2e/startup"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    result = json.loads(report.read_text())
    assert result["code"] == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    modules = result["modules"]
    assert "marrow_tui.hub.client" in modules  # it did talk to the hub
    loaded = sorted(m for m in modules
                    if any(m == bad or m.startswith(bad + ".") for bad in NOT_FOR_A_HUB_COMMAND))
    assert loaded == []
