"""The whole way, as a user runs it: a runtime, `marrow-tui web` beside it, a headless
Chromium that logs in; each tab runs the real `marrow-tui attach`. The panes show live data,
a question answered in the browser reaches the agent waiting on it, and a tab closed in the
middle of a dialog leaves nothing half-done."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marrow_tui.hub.secrets import read_operator_token
from tests.support.browser import CHROMIUM, NO_CHROMIUM, Page, chromium
from tests.support.hubproc import RunningHub, clean_env, hub_command, running_hub
from tests.support.waiting import gone, until

pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install -e .)")


def _attach_runs() -> bool:
    done = subprocess.run([sys.executable, "-m", "marrow_tui", "attach", "--help"],
                          capture_output=True, env=clean_env(), timeout=60)
    return done.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
    pytest.mark.skipif(not _attach_runs(), reason="`marrow-tui attach` is not there yet "
                                                  "(python -m marrow_tui attach --help fails)"),
]

SERVING = re.compile(r"serving the console on (http://\S+) ")
F2 = ("F2", "F2", 113)
#: the answer dialog's title says how long the agent has waited
DIALOG = "e2e/bob asks (waiting"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as hub:
        yield hub


@pytest.fixture
def web(tmp_path: Path, runtime: RunningHub) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`marrow-tui web --port 0 --state-dir S URI`; Ctrl-C after, which must end it with 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "web", "--port", "0", "--state-dir",
         str(tmp_path / "state"), runtime.uri],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=clean_env())
    lines: queue.Queue[str] = queue.Queue()
    said: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        found = SERVING.search(lines.get(timeout=30))
        assert found, said
        yield found.group(1), process
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, "".join(said)


def cli(runtime: RunningHub, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marrow_tui", *words, "--uri", runtime.uri],
                          capture_output=True, text=True, env=clean_env(), timeout=60)


def ask(runtime: RunningHub, question: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "ask", question, "--uri", runtime.uri,
         "--name", "e2e/bob", "--timeout", "5m", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=cwd)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (each tab's console is one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


async def open_console(browser_page: Page, url: str, token: str) -> None:
    await browser_page.go(url)
    await browser_page.log_in(token)
    await browser_page.wait_for("document.body.classList.contains('-first-byte')")
    await browser_page.evaluate("document.querySelector('.xterm-helper-textarea').focus(); 1")


async def test_the_console_in_a_browser_answers_a_waiting_agent(
        tmp_path: Path, runtime: RunningHub,
        web: tuple[str, subprocess.Popen[str]]) -> None:
    url, server = web
    token = read_operator_token(tmp_path / "state")
    assert token
    assert cli(runtime, "claim", "T1", "src/one.py", "--name", "e2e/alice").returncode == 0
    async with chromium() as browser:
        page = await browser.new_page(1600, 1000)
        await open_console(page, url, token)
        await page.wait_received("e2e/alice")  # from the snapshot
        [console] = children(server.pid)
        # live: a claim made now shows in the page
        assert cli(runtime, "claim", "T2", "src/two.py", "--name", "e2e/carol").returncode == 0
        await page.wait_received("e2e/carol")

        asking = ask(runtime, "Ship the release?", tmp_path)
        try:
            await page.wait_received("Ship the release?")
            await page.type("a")  # answer the longest-waiting question, from anywhere
            await page.wait_received(DIALOG)
            await page.type("ship it")
            await page.wait_received("ship it")
            await page.press(*F2)
            out, err = await asyncio.to_thread(asking.communicate, timeout=60)
        finally:
            if asking.poll() is None:
                asking.kill()
        reply = json.loads(out)
        assert asking.returncode == 0, err
        assert (reply["ok"], reply["answer"]) == (True, "ship it")
        assert reply["answered_by"].startswith("operator/")

        await page.close()
        assert await until(lambda: gone(console), 30), f"console {console} outlived its tab"


async def test_a_tab_closed_in_a_dialog_leaves_nothing_half_done(
        tmp_path: Path, runtime: RunningHub,
        web: tuple[str, subprocess.Popen[str]]) -> None:
    url, server = web
    token = read_operator_token(tmp_path / "state")
    assert token
    asking = ask(runtime, "Merge the branch?", tmp_path)
    try:
        async with chromium() as browser:
            page = await browser.new_page(1600, 1000)
            await open_console(page, url, token)
            await page.wait_received("Merge the branch?")
            [console] = children(server.pid)
            await page.type("a")
            await page.wait_received(DIALOG)
            await page.type("half an answer")
            await page.wait_received("half an answer")
            await page.close()
            assert await until(lambda: gone(console), 30), f"console {console} outlived its tab"
        # the question is still open, unanswered, and its agent still waits
        listed = cli(runtime, "steering", "--json", "--state-dir", str(tmp_path / "state"))
        requests = json.loads(listed.stdout)["requests"]
        assert [(r["question"], r["state"]) for r in requests] == [("Merge the branch?", "open")]
        assert asking.poll() is None
        # the runtime runs on: the agent can still be answered
        answered = cli(runtime, "answer", requests[0]["id"], "later",
                       "--state-dir", str(tmp_path / "state"))
        assert answered.returncode == 0, answered.stderr
        out, _ = await asyncio.to_thread(asking.communicate, timeout=60)
        assert json.loads(out)["answer"] == "later"
    finally:
        if asking.poll() is None:
            asking.kill()
