"""The browser console's server run in the test's event loop, on a real socket, with a small
Textual app (tiny_console.py) as each tab's console in place of `marrow-tui attach`."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install -e .)")

from marrow_tui.web.server import COOKIE, WebConsole, WebOptions  # noqa: E402

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_console.py"
TOKEN = "web-test-operator-token-0123456789"


@dataclass
class Served:
    console: WebConsole
    url: str
    pid_file: Path
    answer_file: Path

    def pid(self) -> int | None:
        text = self.pid_file.read_text() if self.pid_file.exists() else ""
        return int(text) if text.strip() else None


def tiny_command(folder: Path, uri: str | None = None) -> list[str]:
    return [sys.executable, str(TINY), str(folder / "console.pid"), str(folder / "answer.txt"),
            *([uri] if uri else [])]


@contextlib.asynccontextmanager
async def serving(folder: Path, uri: str | None = None, token: str = TOKEN,
                  **options: object) -> AsyncIterator[Served]:
    web = WebConsole(WebOptions(operator_token=token, command=tiny_command(folder, uri),
                                port=0, environment={"MARROW_OPERATOR_TOKEN": token},
                                **options))  # type: ignore[arg-type]
    url = await web.start()
    try:
        yield Served(web, url, folder / "console.pid", folder / "answer.txt")
    finally:
        await web.stop()


def session_cookie(set_cookie: str) -> str:
    """The session value from a Set-Cookie header."""
    name, _, rest = set_cookie.partition("=")
    assert name == COOKIE
    return rest.split(";", 1)[0]


def self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key
