"""A real headless Chromium, driven over the DevTools protocol (a JSON websocket), for the
browser console's tests and its screenshot: open a page, fill in and submit a form, read the
page, see the bytes its websockets receive, type keys, take a screenshot.

Debian's `chromium` package; `CHROMIUM` is None when it is not installed (the tests then skip,
and say so). No Selenium or driver binary: the `websockets` client is already ours.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium")
#: what a missing browser makes the tests say
NO_CHROMIUM = "Debian's chromium is not installed (apt-get install chromium)"
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
START_TIMEOUT = 30.0


class Page:
    """One tab, on the browser's single DevTools connection (flattened sessions)."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        #: the text of every websocket frame the page received, in order (binary frames as
        #: text too: the console's output is UTF-8 terminal output)
        self.received: list[str] = []
        self.sockets_closed = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.call(method, params, session=self.session)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """The expression's value once it is truthy (the page may be navigating meanwhile)."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"{expression!r} was not true within {timeout} s (last: {value!r})")

    async def wait_received(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.screen_text():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the page never received {text!r}; got "
                             f"{self.screen_text()[-2000:]!r}")

    def screen_text(self) -> str:
        """What the terminal was sent, escape sequences taken out, so words read whole."""
        return re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]", "",
                      "".join(self.received))

    async def go(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def log_in(self, token: str) -> None:
        """Fill in the login form and submit it, as a person would."""
        await self.wait_for("document.getElementById('token') !== null")
        await self.evaluate(f"document.getElementById('token').value = {json.dumps(token)}; "
                            "document.getElementById('login').click(); true")

    async def type(self, text: str) -> None:
        await self.call("Input.insertText", text=text)

    async def press(self, key: str, code: str, key_code: int, text: str = "") -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                            windowsVirtualKeyCode=key_code, text=text if kind == "keyDown"
                            else "")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        await self.browser.call("Target.closeTarget", {"targetId": self.target})


class Browser:
    """A headless Chromium process and its DevTools connection."""

    def __init__(self, process: subprocess.Popen[bytes], socket: ClientConnection) -> None:
        self.process = process
        self.socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = reply
        await self.socket.send(json.dumps(message))
        async with asyncio.timeout(30):
            return await reply

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if "id" in message:
                reply = self._waiting.pop(message["id"], None)
                if reply is None or reply.done():
                    continue
                if "error" in message:
                    reply.set_exception(AssertionError(f"DevTools: {message['error']}"))
                else:
                    reply.set_result(message.get("result", {}))
            else:
                self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        page = self._pages.get(message.get("sessionId", ""))
        if page is None:
            return
        params = message.get("params", {})
        if message["method"] == "Network.webSocketFrameReceived":
            data = params["response"]["payloadData"]
            if params["response"].get("opcode") == 2:  # binary: base64 over DevTools
                data = base64.b64decode(data).decode("utf-8", "replace")
            page.received.append(data)
        elif message["method"] == "Network.webSocketClosed":
            page.sockets_closed += 1

    async def new_page(self, width: int = 1280, height: int = 800) -> Page:
        target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.call("Target.attachToTarget",
                                   {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, target, session)
        self._pages[session] = page
        await page.call("Network.enable")
        await page.call("Page.enable")
        await page.call("Runtime.enable")
        await page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        return page

    async def cookies(self) -> list[dict[str, Any]]:
        return list((await self.call("Storage.getCookies"))["cookies"])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.socket.close()
        stop(self.process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the browser and its helper processes (its own process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _listening(process: subprocess.Popen[bytes], seen: list[str]) -> Callable[[], str | None]:
    def read() -> str | None:
        assert process.stderr is not None
        line = process.stderr.readline().decode("utf-8", "replace")
        seen.append(line)
        found = LISTENING.search(line)
        return found.group(1) if found else ("" if line else None)
    return read


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A fresh headless Chromium (its own profile folder, removed after)."""
    assert CHROMIUM is not None, NO_CHROMIUM
    with tempfile.TemporaryDirectory(prefix="marrow-chromium-") as profile:
        command = [CHROMIUM, "--headless=new", "--remote-debugging-port=0",
                   f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                   "--disable-extensions", "--disable-background-networking",
                   "--disable-dev-shm-usage", "--window-size=1280,800", "about:blank"]
        if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
            command.insert(1, "--no-sandbox")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        seen: list[str] = []
        try:
            read = _listening(process, seen)
            address: str | None = ""
            async with asyncio.timeout(START_TIMEOUT):
                while address == "":
                    address = await asyncio.to_thread(read)
            if not address:
                raise AssertionError(f"chromium did not start: {''.join(seen)}")
            # the rest of its stderr must still be read, or a full pipe would stall it
            asyncio.get_running_loop().run_in_executor(None, _drain, process)
            socket = await connect(address, max_size=None)
        except BaseException:
            stop(process)
            raise
        browser = Browser(process, socket)
        try:
            yield browser
        finally:
            await browser.close()


def _drain(process: subprocess.Popen[bytes]) -> None:
    assert process.stderr is not None
    for _ in process.stderr:
        pass
