"""The browser console's web server: textual-serve's routes (the page, its websocket, its static
files, its downloads) behind a login with the operator token.

textual-serve builds an aiohttp application and starts one console process per websocket
(`AppService`: the command through the shell, with this process's environment). `WebConsole`
extends its `Server`: the application gets a guard in front of every route and a login page;
the server is run here (an `AppRunner`, so port 0 and TLS work and a test can run it in its
own event loop) instead of by `Server.serve`.

Sessions: the cookie holds a random value made at login, never the token. The server keeps
only its SHA-256 digest, in memory: a cookie cannot be turned back into the operator token, a
restart of `marrow-tui web` logs every browser out, and there is no signing key to keep. (An
HMAC of a counter with the token would survive restarts, but would then stay valid as long as
the token does, with nothing to revoke.)
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import secrets
import shlex
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

from marrow_tui.hub.secrets import same_secret
from marrow_tui.web.bind import bind_refusal

#: the session cookie's name
COOKIE: Final = "marrow_session"
LOGIN_PATH: Final = "/login"
#: the page textual-serve serves the terminal from, and its websocket
INDEX_PATH: Final = "/"
WEBSOCKET_PATH: Final = "/ws"
#: logins kept at once; the oldest is forgotten first (only the token holder can add any)
MAX_SESSIONS: Final = 256
DEFAULT_WEB_PORT: Final = 8877
#: headers on every response: the console takes keystrokes, so no other page may frame it
#: (a click on a hidden frame would be a key press in the console)
GUARD_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


class WebConfigError(Exception):
    """Settings `marrow-tui web` cannot serve with (one sentence: what, and how to fix it)."""


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, or None without TLS."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise WebConfigError("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"cannot load the TLS certificate {cert} or key {key}: {exc}") \
            from None
    return context


def console_command(uri: str | None, cafile: str | None = None) -> list[str]:
    """What each browser tab runs: an attached console (the operator token comes in its
    environment, never here: command lines are visible to every user in `ps`)."""
    import sys

    return [sys.executable, "-m", "marrow_tui", "attach", *(["--cafile", cafile] if cafile
                                                            else []), *([uri] if uri else [])]


class Sessions:
    """The logged-in browsers: digests of their cookie values, in memory only."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._held: OrderedDict[bytes, None] = OrderedDict()
        self._limit = limit

    @staticmethod
    def _digest(value: str) -> bytes:
        # Looked up by digest: how long a lookup takes says nothing about the secret values.
        return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()

    def open(self) -> str:
        value = secrets.token_urlsafe(32)
        self._held[self._digest(value)] = None
        while len(self._held) > self._limit:
            self._held.popitem(last=False)
        return value

    def holds(self, value: str | None) -> bool:
        return bool(value) and self._digest(value or "") in self._held

    def __len__(self) -> int:
        return len(self._held)


@dataclass(slots=True)
class WebOptions:
    """What `marrow-tui web` serves, and for whom."""

    operator_token: str
    command: Sequence[str]
    host: str = "127.0.0.1"
    port: int = DEFAULT_WEB_PORT
    tls_cert: str | None = None
    tls_key: str | None = None
    #: set in this process's environment while serving, for the console processes to inherit
    #: (textual-serve gives each one a copy of it)
    environment: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> ssl.SSLContext | None:
        context = tls_context(self.tls_cert, self.tls_key)
        refusal = bind_refusal(self.host, context is not None, self.operator_token)
        if refusal is not None:
            raise WebConfigError(refusal)
        return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebConsole(Server):
    """textual-serve's server with the operator token's login in front of every route."""

    def __init__(self, options: WebOptions) -> None:
        super().__init__(shlex.join(options.command), host=options.host, port=options.port,
                         title="marrow-tui")
        self.options = options
        self.sessions = Sessions()
        self._ssl = options.check()
        self._runner: web.AppRunner | None = None
        self._sockets: set[asyncio.Task[Any]] = set()
        self._saved_environment: dict[str, str | None] = {}

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    # ------------------------------------------------------------------ textual-serve's app

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        app.router.add_get(LOGIN_PATH, self._login_page)
        app.router.add_post(LOGIN_PATH, self._log_in)
        app.on_response_prepare.append(self._add_guard_headers)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints its banner here; `marrow-tui web` says its own line."""

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        # The page names its websocket and static files by absolute URL: make them the address
        # the browser used, so its cookie (kept per host) goes with them. The base class reads
        # public_url without awaiting anything, so no other request can change it meanwhile.
        self.public_url = f"{self.scheme}://{request.host}"
        response: web.StreamResponse = await super().handle_index(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ the login

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == LOGIN_PATH:
            return await handler(request)
        if not self.sessions.holds(request.cookies.get(COOKIE)):
            if request.method == "GET" and request.path == INDEX_PATH:
                raise web.HTTPSeeOther(LOGIN_PATH)
            return web.Response(status=401, text=f"Log in first at {LOGIN_PATH}.\n")
        if request.path == WEBSOCKET_PATH:
            if not self._same_origin(request):
                return web.Response(status=403, text="Another site's page may not connect.\n")
            return await self._tracked(handler, request)
        return await handler(request)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if self.sessions.holds(request.cookies.get(COOKIE)):
            raise web.HTTPSeeOther(INDEX_PATH)
        return login_response()

    async def _log_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = form.get("token")
        if not same_secret(given.strip() if isinstance(given, str) else None,
                           self.options.operator_token):
            return login_response(wrong=True)
        response = web.Response(status=303, headers={"Location": INDEX_PATH})
        response.set_cookie(COOKIE, self.sessions.open(), path="/", httponly=True,
                            samesite="Strict", secure=self._ssl is not None)
        return response

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A browser names the page that opens a websocket; only our own page may (a client
        without a browser sends no Origin, and still needs the cookie)."""
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    @staticmethod
    async def _add_guard_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(GUARD_HEADERS)

    # ------------------------------------------------------------------ the consoles

    async def _tracked(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        """Run a tab's websocket (its console's life) where shutdown can end it."""
        task = asyncio.current_task()
        assert task is not None
        self._sockets.add(task)
        try:
            return await handler(request)
        finally:
            self._sockets.discard(task)

    async def _close_sockets(self, app: web.Application) -> None:
        # textual-serve ends a console when its socket's handler is cancelled: it closes the
        # socket, tells the console to quit and waits for it.
        tasks = list(self._sockets)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def consoles(self) -> int:
        """Browser tabs connected now (each runs one console process)."""
        return len(self._sockets)

    # ------------------------------------------------------------------ running

    async def start(self) -> str:
        """Listen; return the address to open in a browser."""
        app = await self._make_app()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise WebConfigError(f"cannot listen on {self.host}:{self.port}: "
                                 f"{exc.strerror or exc}") from None
        self.port = int(self._runner.addresses[0][1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.public_url = f"{self.scheme}://{host}:{self.port}"
        self._set_environment()
        return self.public_url + INDEX_PATH

    async def stop(self) -> None:
        """Close every tab's console, then stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._restore_environment()

    def _set_environment(self) -> None:
        for name, value in self.options.environment.items():
            self._saved_environment[name] = os.environ.get(name)
            os.environ[name] = value

    def _restore_environment(self) -> None:
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()


async def serve(options: WebOptions, said: Callable[[str], None]) -> None:
    """Serve until cancelled; `said` gets the address once it listens."""
    console = WebConsole(options)
    said(await console.start())
    try:
        await asyncio.Event().wait()
    finally:
        await console.stop()


LOGIN_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>marrow-tui: log in</title>
<style>
  body {{ background: #0c181f; color: #e6edf3; font-family: monospace; display: flex;
         align-items: center; justify-content: center; height: 100vh; margin: 0; }}
  form {{ background: #12232d; padding: 2em; min-width: 28em; }}
  input {{ width: 100%; box-sizing: border-box; padding: .5em; margin: .5em 0 1em;
          font-family: monospace; }}
  button {{ padding: .5em 2em; }}
  .wrong {{ color: #ff7b72; }}
</style>
</head>
<body>
<form method="post" action="{action}">
  <h1>marrow-tui</h1>
  <p>The operator token opens the console in this browser.</p>
  {wrong}
  <label for="token">Operator token</label>
  <input id="token" name="token" type="password" autocomplete="off" autofocus required>
  <button id="login" type="submit">Log in</button>
</form>
</body>
</html>
"""

#: what a wrong token gets: that, and the form again
WRONG_TOKEN: Final = "That is not the operator token."


def login_response(wrong: bool = False) -> web.Response:
    notice = f'<p id="wrong" class="wrong">{html.escape(WRONG_TOKEN)}</p>' if wrong else ""
    page = LOGIN_PAGE.format(action=LOGIN_PATH, wrong=notice)
    return web.Response(text=page, content_type="text/html", status=401 if wrong else 200,
                        headers={"Cache-Control": "no-store"})

