"""`marrow-tui web` as a user runs it: what it refuses (one sentence, the exit code), that it
serves the login with the state folder's operator token, and that other commands do not pay
for its web server."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from marrow_tui.hub.secrets import operator_token
from tests.support.hubproc import clean_env
from tests.web.support import self_signed

PREFIX = "marrow-tui web: "
REFUSAL = ("refusing to serve the console on {host} without TLS and the operator token: "
           "anyone who can reach it could act as the operator; pass --tls-cert, --tls-key "
           "and --operator-token (or MARROW_OPERATOR_TOKEN), or bind 127.0.0.1")
SERVING = re.compile(r"serving the console on (https?://\S+) ")


def web(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marrow_tui", "web", *args],
                          capture_output=True, text=True, cwd=cwd, env=clean_env(),
                          timeout=timeout)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.com", "::"])
def test_a_non_loopback_bind_without_tls_is_refused(tmp_path: Path, host: str) -> None:
    done = web(tmp_path, "--host", host, "--operator-token", "t" * 32)
    assert done.returncode == 2
    assert done.stderr == PREFIX + REFUSAL.format(host=host) + "\n"
    assert done.stdout == ""


def test_a_non_loopback_bind_without_the_operator_token_is_refused(tmp_path: Path) -> None:
    # TLS, but no token anywhere: no flag, no environment, no state folder here
    done = web(tmp_path, "--host", "0.0.0.0", "--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert done.returncode == 2
    assert done.stderr == PREFIX + REFUSAL.format(host="0.0.0.0") + "\n"


def test_loopback_without_any_operator_token_says_where_to_get_one(tmp_path: Path) -> None:
    done = web(tmp_path)
    assert done.returncode == 3
    assert done.stderr == (PREFIX + "no operator token to ask browsers for: pass "
                           "--operator-token, set MARROW_OPERATOR_TOKEN, or run it where the "
                           "runtime's state folder is (--state-dir)\n")


def test_half_of_tls_is_refused(tmp_path: Path) -> None:
    done = web(tmp_path, "--operator-token", "t" * 32, "--tls-cert", "c.pem")
    assert (done.returncode, done.stderr) == (2, PREFIX + "TLS needs both --tls-cert and "
                                                          "--tls-key\n")


def test_a_malformed_uri_is_refused(tmp_path: Path) -> None:
    done = web(tmp_path, "--operator-token", "t" * 32, "http://x")
    assert done.returncode == 2
    assert done.stderr.startswith(PREFIX + "'http://x' is not a runtime's address like "
                                           "ws://127.0.0.1:8876")


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = web(tmp_path, "--operator-token", "t" * 32, "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.startswith(PREFIX + f"cannot listen on 127.0.0.1:{port}: ")


@pytest.fixture
def running_web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`marrow-tui web --port 0 --state-dir S`, with the operator token of S; stopped with
    Ctrl-C (SIGINT) after the test, which must end it with 0."""
    pytest.importorskip("textual_serve", reason="textual-serve is not installed")
    state = tmp_path / "state"
    state.mkdir()
    operator_token(state)  # what a runtime makes on its first start
    process = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "web", "--port", "0", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=clean_env())
    lines: queue.Queue[str] = queue.Queue()
    stderr = process.stderr
    assert stderr is not None
    # read it for the process's whole life, so a full pipe never blocks it
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    try:
        line = lines.get(timeout=30)
        found = SERVING.search(line)
        assert found, line
        yield found.group(1), state
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_it_serves_the_login_with_the_state_folders_token(
        running_web: tuple[str, Path]) -> None:
    url, state = running_web
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
    token = (state / "operator_token").read_text().strip()

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(Stay)
    for given, status in (("wrong-token", 401), (token, 303)):
        body = urllib.parse.urlencode({"token": given}).encode()
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(url + "login", data=body, timeout=30)
        assert answer.value.code == status
    assert "marrow_session=" in answer.value.headers["Set-Cookie"]


def test_tls_serves_https(tmp_path: Path) -> None:
    pytest.importorskip("textual_serve", reason="textual-serve is not installed")
    cert, key = self_signed(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "web", "--port", "0", "--operator-token", "t" * 32,
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=clean_env())
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert SERVING.search(line) and "https://127.0.0.1:" in line, line
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


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


@pytest.mark.parametrize("words", [["web", "--help"], ["who", "--help"], ["--version"]])
def test_the_command_line_does_not_load_the_web_server(tmp_path: Path,
                                                       words: list[str]) -> None:
    report = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(report), *words], capture_output=True,
                   text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    result = json.loads(report.read_text())
    assert result["code"] == 0
    loaded = [m for m in result["modules"]
              if m.split(".")[0] in ("textual_serve", "aiohttp", "textual")
              or m == "marrow_tui.web.server"]
    assert loaded == []


def test_each_tab_runs_the_attached_console_with_no_secret_on_its_command_line() -> None:
    pytest.importorskip("textual_serve", reason="textual-serve is not installed")
    from marrow_tui.web.server import console_command

    assert console_command(None) == [sys.executable, "-m", "marrow_tui", "attach"]
    assert console_command("wss://h:8876", "/ca.pem") == [
        sys.executable, "-m", "marrow_tui", "attach", "--cafile", "/ca.pem", "wss://h:8876"]
