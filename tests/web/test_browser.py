"""The browser console in a real headless Chromium: log in through the page, the terminal
loads, keys reach the console, and a closed tab ends its console process. Each tab's console
here is a small Textual app that attaches to a real runtime with the token from its
environment (test_browser_attached.py runs the real `marrow-tui attach`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marrow_tui.hub.secrets import read_operator_token
from tests.support.browser import CHROMIUM, NO_CHROMIUM, chromium
from tests.support.hubproc import hub_command, running_hub
from tests.support.waiting import gone, until
from tests.web.support import serving

from marrow_tui.web.server import COOKIE, WRONG_TOKEN  # noqa: E402  (after support's skip)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]


async def test_a_browser_logs_in_once_and_gets_the_console(tmp_path: Path) -> None:
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as hub:
        token = read_operator_token(tmp_path / "state")
        assert token
        async with serving(tmp_path, uri=hub.uri, token=token) as served, \
                chromium() as browser:
            page = await browser.new_page()
            await page.go(served.url)
            await page.wait_for("location.pathname === '/login'")

            await page.log_in("not-the-token")
            text = await page.wait_for("document.getElementById('wrong')?.textContent")
            assert text == WRONG_TOKEN
            assert page.received == [] and not served.pid_file.exists()

            await page.log_in(token)
            await page.wait_for("document.body.classList.contains('-first-byte')")
            await page.wait_received("operator token given: yes; attached to mrw-")
            await page.wait_received("as the operator")
            assert await page.evaluate("location.pathname") == "/"
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script sees it
            [cookie] = await browser.cookies()
            assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
                COOKIE, True, "Strict")
            assert cookie["value"] != token

            # keys typed in the page reach the console
            await page.evaluate("document.querySelector('.xterm-helper-textarea').focus(); 1")
            await page.type("hello from the browser")
            await page.press("Enter", "Enter", 13, "\r")
            answer = served.answer_file
            assert await until(lambda: answer.exists() and answer.read_text() != "", 30)
            assert answer.read_text() == "hello from the browser"

            # the tab closed: its console process ends
            pid = served.pid()
            assert pid is not None and not gone(pid)
            await page.close()
            assert await until(lambda: gone(pid), 30), f"console {pid} outlived its tab"
