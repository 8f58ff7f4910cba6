"""The [notify] hook as a user sets it up: marrow.toml, `marrow-tui --no-ui`, and an agent's
`marrow-tui ask` from a shell (real subprocesses all)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.hubproc import clean_env, hub_command, running_hub

HOOK = """
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"kind": os.environ["MARROW_EVENT_KIND"],
                          "event": json.loads(sys.stdin.read())}) + "\\n")
"""


def test_a_question_asked_from_a_shell_runs_the_configured_hook(tmp_path: Path) -> None:
    (tmp_path / "hook.py").write_text(HOOK)
    told = tmp_path / "told.jsonl"
    (tmp_path / "marrow.toml").write_text(
        f'[notify]\ncommand = ["{sys.executable}", "hook.py", "{told}"]\n'
        'events = ["request_waiting"]\n')
    command = hub_command(tmp_path / "state", "--config", str(tmp_path / "marrow.toml"))
    with running_hub(command, tmp_path) as hub:
        asked = subprocess.run(
            [sys.executable, "-m", "marrow_tui", "ask", "Ship it?", "--timeout", "1s",
             "--default", "yes", "--uri", hub.uri, "--name", "cli/root"],
            capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=60)
        assert asked.stdout.strip() == "yes", asked.stderr
        deadline = time.monotonic() + 20  # the hook's line, whole (bounded wait)
        while time.monotonic() < deadline and not (
                told.exists() and told.read_text().endswith("\n")):
            time.sleep(0.05)
    [line] = [json.loads(text) for text in told.read_text().splitlines()]
    assert line["kind"] == "needs_you"
    assert (line["event"]["asker"], line["event"]["question"]) == ("cli/root", "Ship it?")
    assert line["event"]["hub"] == hub.uri
