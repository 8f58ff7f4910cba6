"""A hub run as a subprocess, the way a user runs it, for end-to-end tests.

`MARROW_TEST_HUB` may name another hub command (with `{port}` and `{state_dir}`), which is how
the client and CLI tests double as a wire-compatibility check against synapse-channel's hub:
``MARROW_TEST_HUB="synapse hub --host 127.0.0.1 --port {port} --max-connections-per-host 0"``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HUB_LINE = re.compile(r"(?:listening|running) on (wss?://\S+)")
HUB_START_TIMEOUT = 15.0


@dataclass
class RunningHub:
    """A hub subprocess and everything it printed (for failure messages)."""

    uri: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hub_command(state_dir: Path, *extra: str) -> list[str]:
    custom = os.environ.get("MARROW_TEST_HUB")
    if custom:
        return shlex.split(custom.format(port=free_port(), state_dir=state_dir))
    return [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1",
            "--port", "0", "--state-dir", str(state_dir), *extra]


def clean_env() -> dict[str, str]:
    """The test's environment without MARROW_* settings, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _pump(stream: object, lines: queue.Queue[str | None], keep: list[str]) -> None:
    """Read the hub's output for its whole life, so a full pipe never blocks it."""
    for line in stream:  # type: ignore[attr-defined]
        keep.append(line)
        lines.put(line)
    lines.put(None)


@contextlib.contextmanager
def running_hub(command: list[str], cwd: Path) -> Iterator[RunningHub]:
    """Run a hub command; yield once its 'listening on' line names the URI; SIGTERM it after."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=cwd, env=clean_env())
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines, output), daemon=True).start()
    deadline, uri = time.monotonic() + HUB_START_TIMEOUT, None
    while uri is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            process.wait()
            pytest.fail("no 'listening on ws://...' line in time:\n" + "".join(output))
        match = HUB_LINE.search(line)
        uri = match.group(1) if match else None
    try:
        yield RunningHub(uri, process, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
