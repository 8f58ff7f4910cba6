"""The tracker example run the way its README says, headless, from a checkout of its own: the
run happens on a copy, so the checkout's example is byte for byte the same afterwards (a run
moves issue files, and the tests read the example)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.hubproc import HUB_LINE, REPO, clean_env

EXAMPLE = REPO / "examples" / "tracker"
#: the run starts marrow-tui, git hooks and the scripted agent, each a Python or a shell
PATIENCE = 60.0


def readme_commands() -> str:
    """The shell lines of the README's "Run it" section."""
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Run it\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, "no sh block under 'Run it'"
    return found.group(1)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


async def until(test: object, what: str, output: list[str]) -> object:
    async with asyncio.timeout(PATIENCE):
        while not (value := test()):  # type: ignore[operator]
            await asyncio.sleep(0.1)
    assert value, what + "\n" + "".join(output)
    return value


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                    reason="needs git and bash")
async def test_the_readme_runs_the_example_on_a_copy_and_the_checkout_stays(
        tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(EXAMPLE, checkout / "examples" / "tracker",
                    ignore=shutil.ignore_patterns(".symphony", ".marrow"))
    before = tree(checkout)
    # `marrow-tui` as the README calls it, headless on a free port (the console needs a tty)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "marrow-tui"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m marrow_tui "$@" --no-ui '
                       "--port 0\n")
    wrapper.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**clean_env(), "TMPDIR": str(temp),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(["bash", "-c", readme_commands()], cwd=checkout, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True).start()
    try:
        uri = await until(lambda: next((m.group(1) for line in list(output)
                                        if (m := HUB_LINE.search(line))), None),
                          "marrow-tui did not start", output)
        token = await until(lambda: next(iter([*checkout.rglob("operator_token"),
                                               *temp.rglob("operator_token")]), None),
                            "no state folder appeared", output)
        state = Path(str(token)).parent
        workflow_dir = state.parent

        def answered() -> bool:  # the question comes once the agent asks it
            done = subprocess.run(
                [sys.executable, "-m", "marrow_tui", "answer", "S1", "as written", "--uri",
                 str(uri), "--state-dir", str(state)], env=clean_env(), capture_output=True,
                timeout=PATIENCE)
            return done.returncode == 0

        await until(answered, "the agent never asked", output)
        await until(lambda: (workflow_dir / "issues" / "Done" / "DEMO-1.md").is_file(),
                    "DEMO-1 was not marked done", output)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert workflow_dir.is_relative_to(temp), workflow_dir
    assert tree(checkout) == before
