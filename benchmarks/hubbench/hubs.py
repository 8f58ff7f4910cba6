"""The processes under test: how to start each hub, find its URI, and stop it by its own PID.

Each hub is a black box started as a subprocess with stdout and stderr going to a log file (a
pipe would fill up and stall a hub that logs one line per frame). Nothing here imports a hub.
Stopping sends SIGTERM to that one PID, waits, and only then SIGKILLs that same PID.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .driver import wait_ready

BENCH_DIR = Path(__file__).resolve().parent.parent
SYNAPSE_VERSION = "0.99.38"
URI_RE = re.compile(r"listening on (wss?://\S+)")


def free_port() -> int:
    """A port that was free a moment ago (for hubs that cannot pick one and say which)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra_pythonpath: Path | None = None) -> dict[str, str]:
    """Unbuffered stdout (so the ``listening on`` line reaches the log at once)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if extra_pythonpath is not None:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(extra_pythonpath) + (os.pathsep + old if old else "")
    return env


@dataclass
class HubKind:
    """How to launch one kind of target.

    ``announces_uri``: the process is started with ``--port 0`` and prints
    ``listening on ws://HOST:PORT``; otherwise we pick a free port and poll it.
    """

    name: str
    label: str
    build_argv: Callable[[int, Path], list[str]]
    announces_uri: bool
    durable: bool
    answers_who: bool
    version: str | None = None
    available: bool = True
    unavailable_reason: str | None = None
    env: dict[str, str] = field(default_factory=child_env)
    cwd: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "version": self.version,
            "durable": self.durable,
            "available": self.available,
            "unavailable_reason": self.unavailable_reason,
            "argv_template": self.build_argv(0 if self.announces_uri else 12345, Path("STATE_DIR")),
        }


class HubProcess:
    """One running instance of a :class:`HubKind` on one state directory."""

    def __init__(self, kind: HubKind, state_dir: Path, log_path: Path) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_spawn = 0.0
        self.uri: str | None = None
        self._log_fh: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> HubProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port = 0 if self.kind.announces_uri else free_port()
        argv = self.kind.build_argv(port, self.state_dir)
        # Held open for the hub's whole life and closed in stop().
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115
        self.t_spawn = time.perf_counter()
        # A session of its own: a Ctrl-C in the terminal reaches only the runner, which then
        # stops the hub by PID in its own cleanup.
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.kind.env,
            cwd=self.kind.cwd,
            start_new_session=True,
        )
        if not self.kind.announces_uri:
            self.uri = f"ws://127.0.0.1:{port}"
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _uri_from_log(self) -> str | None:
        if self.uri is None:
            try:
                with open(self.log_path, "rb") as fh:
                    head = fh.read(16384).decode("utf-8", "replace")
            except OSError:
                return None
            m = URI_RE.search(head)
            if m:
                self.uri = m.group(1)
        return self.uri

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Connect + welcome (+ who round trip), retried; ``ready_s`` counts from spawn."""
        res = asyncio.run(
            wait_ready(
                self._uri_from_log,
                timeout,
                "bench/ready",
                who=self.kind.answers_who,
                alive=self.alive,
            )
        )
        if res.get("ok"):
            res["ready_s"] = res.pop("t_ready") - self.t_spawn
        return res

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM this PID, wait; SIGKILL the same PID only if it does not exit in time."""
        if self.proc is None:
            return {"stopped": False}
        t0 = time.perf_counter()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait(10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return {
            "exit_code": self.proc.returncode,
            "stop_s": round(time.perf_counter() - t0, 3),
            "killed": killed,
        }

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            text = self.log_path.read_bytes()[-20000:].decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


# --------------------------------------------------------------------------- the three kinds


def _python_version_of(python: Path, dist: str) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_synapse_venv(venv: Path, log: Callable[[str], None]) -> Path:
    """Create a throwaway venv with synapse-channel pinned, unless one is already there.

    synapse-channel is AGPL: it is only ever run as a separate, unmodified process and is never
    a dependency of marrow-tui.
    """
    python = venv / "bin" / "python"
    if python.exists() and _python_version_of(python, "synapse-channel") == SYNAPSE_VERSION:
        return python
    log(f"creating {venv} with synapse-channel=={SYNAPSE_VERSION} (needs PyPI; once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"synapse-channel=={SYNAPSE_VERSION}"],
        check=True,
    )
    return python


def synapse_kind(python: Path) -> HubKind:
    """synapse-channel's hub with the flags a fair loopback benchmark needs (protocol doc §9.1).

    ``--max-connections-per-host 0``: more than 32 loopback sockets are refused otherwise.
    ``--no-durable-ingress-quota``: chat is capped at 100/min for the whole host otherwise.
    ``--db``: durability on, like ours. INFO logging stays, because that is what users run.
    """
    exe = python.parent / "synapse"
    version = _python_version_of(python, "synapse-channel")

    def argv(port: int, state_dir: Path) -> list[str]:
        return [
            str(exe), "hub", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "INFO", "--max-connections-per-host", "0",
            "--no-durable-ingress-quota", "--identity-pins", "",
            "--db", str(state_dir / "hub.db"),
        ]  # fmt: skip

    kind = HubKind(
        name="synapse",
        label=f"synapse-channel {version or '?'} (--db)",
        build_argv=argv,
        announces_uri=False,
        durable=True,
        answers_who=True,
        version=version,
    )
    if not exe.exists() or version is None:
        kind.available = False
        kind.unavailable_reason = f"no synapse-channel in {python}"
    elif version != SYNAPSE_VERSION:
        kind.unavailable_reason = f"warning: synapse-channel {version}, expected {SYNAPSE_VERSION}"
    return kind


def ours_kind(python: Path, repo: Path) -> HubKind:
    """marrow-tui headless (always durable: its state dir holds the event log)."""

    def argv(port: int, state_dir: Path) -> list[str]:
        return [
            str(python), "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1",
            "--port", str(port), "--state-dir", str(state_dir),
        ]  # fmt: skip

    version = _python_version_of(python, "marrow-tui")
    kind = HubKind(
        name="ours",
        label=f"marrow-tui {version or '?'} (headless)",
        build_argv=argv,
        announces_uri=True,
        durable=True,
        answers_who=True,
        version=version,
        env=child_env(),
        cwd=repo,
    )
    probe = subprocess.run(
        [str(python), "-c", "import marrow_tui.headless"],
        check=False,
        capture_output=True,
        text=True,
        cwd=str(repo),
        timeout=60,
    )
    if probe.returncode != 0:
        kind.available = False
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        kind.unavailable_reason = f"`import marrow_tui.headless` failed: {tail}"
    return kind


def echo_kind(python: Path) -> HubKind:
    """The bare echo server in this package (transport ceiling)."""

    def argv(port: int, state_dir: Path) -> list[str]:
        return [
            str(python),
            "-m",
            "hubbench.echo_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    import websockets.version

    return HubKind(
        name="echo",
        label=f"bare echo (websockets {websockets.version.version}, asyncio, compression=None)",
        build_argv=argv,
        announces_uri=True,
        durable=False,
        answers_who=False,
        version=websockets.version.version,
        env=child_env(BENCH_DIR),
    )
