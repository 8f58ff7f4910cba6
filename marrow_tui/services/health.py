"""One health check of a service: an HTTP GET, a TCP connect, or a command's exit status.

Everything is asyncio and bounded by the check's `timeout`, so a hanging service or check
command costs the event loop nothing. Only loopback is ever contacted (127.0.0.1).

`check` returns `(healthy, detail)`; the detail is short and meant for people: "HTTP 200",
"HTTP 503 (expected 200)", "connection refused", "timed out after 2s", "exit 1: <last line>".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

from ..config.model import ServiceConfig
from ..core.text import seconds_text
from ..proc import Capture, describe_exit, run_bounded

HOST = "127.0.0.1"
#: the longest status line we read
STATUS_LINE_MAX = 1024
#: how much of a check command's output is kept for the detail
OUTPUT_TAIL = 2048


async def check(
    service: ServiceConfig,
    port: int | None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[bool, str]:
    """Run `service.health` once against `port`. `cwd` and `env` are the service's (for a
    command check); `timeout` caps the check's own timeout (used near a start deadline)."""
    health = service.health
    limit = health.timeout if timeout is None else max(0.01, min(health.timeout, timeout))
    kind = health.kind
    if kind in ("", "none"):
        return True, "running"
    if kind in ("http", "tcp") and not port:
        return False, f"{kind} check without a port"
    try:
        async with asyncio.timeout(limit):
            if kind == "http":
                return await _http(port or 0, health.path or "/", health.expect)
            if kind == "tcp":
                return await _tcp(port or 0)
            if kind == "command":
                return await _command(health.command, port, cwd, env, limit)
    except TimeoutError:
        return False, f"timed out after {seconds_text(limit)}"
    return False, f"unknown health check kind {kind!r}"


async def _http(port: int, path: str, expect: int) -> tuple[bool, str]:
    if not path.startswith("/"):
        path = "/" + path
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        return False, _oserror(exc)
    try:
        request = (f"GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n"
                   "User-Agent: marrow-tui-health\r\nConnection: close\r\n\r\n")
        writer.write(request.encode("latin-1", errors="replace"))
        await writer.drain()
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            return False, "no HTTP status line (too long)"
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
        line = line[:STATUS_LINE_MAX]
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return False, "no HTTP status line" if not line.strip() else "not an HTTP response"
        status = int(parts[1])
        if status == expect:
            return True, f"HTTP {status}"
        return False, f"HTTP {status} (expected {expect})"
    except OSError as exc:
        return False, _oserror(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _tcp(port: int) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        return False, _oserror(exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"port {port} open"


async def _command(
    argv: tuple[str, ...], port: int | None, cwd: Path | None, env: Mapping[str, str] | None,
    limit: float,
) -> tuple[bool, str]:
    if not argv:
        return False, "no health command"
    words = [w.replace("{port}", str(port)) if port else w for w in argv]
    output = Capture(OUTPUT_TAIL, tail=True)  # drained: a chatty check never blocks
    try:
        # whatever the check started goes with it (its group outlives a reaped leader)
        run = await run_bounded(words, out=output, cwd=cwd,
                                env=dict(env) if env is not None else None,
                                until_output_ends=True)
    except FileNotFoundError:
        return False, f"health command not found: {words[0]}"
    except PermissionError:
        return False, f"health command not executable: {words[0]}"
    except OSError as exc:
        return False, f"health command: {exc.strerror or exc}"
    code = run.code
    tail = bytes(output.data)
    last = _last_line(tail)
    if code == 0:
        return True, "exit 0" + (f": {last}" if last else "")
    what = describe_exit(code)
    return False, what + (f": {last}" if last else "")


def _last_line(data: bytes) -> str:
    for line in reversed(data.decode("utf-8", errors="replace").splitlines()):
        line = "".join(c for c in line if c.isprintable()).strip()
        if line:
            return line[:200]
    return ""


def _oserror(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


