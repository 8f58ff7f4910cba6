"""The operator token's login in front of textual-serve: on a real socket, with a real console
process per websocket."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.support.waiting import gone, until
from tests.web.support import TOKEN, self_signed, serving, session_cookie

aiohttp = pytest.importorskip("aiohttp")

from marrow_tui.web.server import COOKIE, WRONG_TOKEN  # noqa: E402

#: every route textual-serve has, and one it has not
GUARDED = ["/", "/ws", "/static/js/textual.js", "/static/css/xterm.css", "/static/",
           "/download/some-key", "/no-such-page"]


async def log_in(session: aiohttp.ClientSession, url: str, token: str = TOKEN
                 ) -> aiohttp.ClientResponse:
    return await session.post(url + "login", data={"token": token}, allow_redirects=False)


async def test_the_login_page_asks_for_the_operator_token(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        first = await http.get(served.url, allow_redirects=False)
        assert (first.status, first.headers["Location"]) == (303, "/login")
        page = await http.get(served.url + "login")
        text = await page.text()
        assert page.status == 200
        assert '<form method="post" action="/login">' in text
        assert '<input id="token" name="token" type="password"' in text
        assert WRONG_TOKEN not in text
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"


async def test_the_right_token_gives_a_session_cookie_not_the_token(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        answer = await log_in(http, served.url)
        assert (answer.status, answer.headers["Location"]) == (303, "/")
        cookie = answer.headers["Set-Cookie"]
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert attributes == {"httponly", "path=/", "samesite=strict"}  # no Secure: no TLS
        value = session_cookie(cookie)
        assert TOKEN not in value and len(value) >= 43
        assert len(served.console.sessions) == 1
        page = await http.get(served.url, headers={"Cookie": f"{COOKIE}={value}"},
                              allow_redirects=False)
        assert page.status == 200
        assert "data-session-websocket-url" in await page.text()
        # the page names its websocket at the address the browser used
        assert f'"ws://{served.url.split("//")[1]}ws"' in await page.text()


async def test_a_cookie_over_tls_is_secure_too(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    async with serving(tmp_path, tls_cert=str(cert), tls_key=str(key)) as served, \
            aiohttp.ClientSession() as http:
        assert served.url.startswith("https://127.0.0.1:")
        answer = await http.post(served.url + "login", data={"token": TOKEN}, ssl=context,
                                 allow_redirects=False)
        attributes = {part.strip().lower()
                      for part in answer.headers["Set-Cookie"].split(";")[1:]}
        assert attributes == {"httponly", "path=/", "samesite=strict", "secure"}


async def test_a_wrong_token_says_so_and_shows_nothing_else(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        for wrong in ("nope", TOKEN + "x", TOKEN[:-1], "", " "):
            answer = await log_in(http, served.url, wrong)
            text = await answer.text()
            assert answer.status == 401
            assert WRONG_TOKEN in text and "Set-Cookie" not in answer.headers
            assert "textual" not in text.lower() and TOKEN not in text
        assert len(served.console.sessions) == 0
        refused = await http.get(served.url, allow_redirects=False)
        assert refused.status == 303


@pytest.mark.parametrize("path", GUARDED)
async def test_every_route_is_refused_without_the_cookie(tmp_path: Path, path: str) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        url = served.url.rstrip("/") + path
        for cookie in (None, f"{COOKIE}=made-up-value", f"{COOKIE}={TOKEN}"):
            headers = {"Cookie": cookie} if cookie else {}
            answer = await http.get(url, headers=headers, allow_redirects=False)
            body = await answer.read()
            assert answer.status in (303, 401), (path, cookie, answer.status)
            assert b"xterm" not in body and b"textual" not in body.lower()
        assert not served.pid_file.exists()  # no console was started


async def test_with_the_cookie_the_routes_are_served(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        value = session_cookie((await log_in(http, served.url)).headers["Set-Cookie"])
        headers = {"Cookie": f"{COOKIE}={value}"}
        script = await http.get(served.url + "static/js/textual.js", headers=headers)
        assert script.status == 200 and len(await script.read()) > 10_000
        missing = await http.get(served.url + "no-such-page", headers=headers)
        assert missing.status == 404
        again = await http.get(served.url + "login", headers=headers, allow_redirects=False)
        assert (again.status, again.headers["Location"]) == (303, "/")


async def test_another_sites_page_may_not_open_the_websocket(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        value = session_cookie((await log_in(http, served.url)).headers["Set-Cookie"])
        headers = {"Cookie": f"{COOKIE}={value}", "Origin": "http://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(served.url + "ws", headers=headers)
        assert refused.value.status == 403
        assert not served.pid_file.exists()


async def test_the_token_goes_to_the_console_in_its_environment_only(tmp_path: Path) -> None:
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        value = session_cookie((await log_in(http, served.url)).headers["Set-Cookie"])
        socket = await http.ws_connect(served.url + "ws?width=80&height=24",
                                       headers={"Cookie": f"{COOKIE}={value}"})
        assert await until(lambda: served.pid() is not None, 30)
        pid = served.pid()
        assert pid is not None
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert TOKEN.encode() not in command_line
        assert b"tiny_console.py" in command_line
        assert f"MARROW_OPERATOR_TOKEN={TOKEN}".encode() in environment
        assert served.console.consoles == 1
        # A tab closed (its socket gone): the console process ends, nothing left behind.
        await socket.close()
        assert await until(lambda: gone(pid), 30), f"console {pid} outlived its socket"
        assert await until(lambda: served.console.consoles == 0, 10)


async def test_stopping_the_server_ends_every_console(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async with serving(tmp_path) as served:
            value = session_cookie((await log_in(http, served.url)).headers["Set-Cookie"])
            await http.ws_connect(served.url + "ws", headers={"Cookie": f"{COOKIE}={value}"})
            assert await until(lambda: served.pid() is not None, 30)
            pid = served.pid()
            assert pid is not None and not gone(pid)
        assert await until(lambda: gone(pid), 30), f"console {pid} outlived the server"
