"""What the three reliability runs share: the hub process, a lean client, results and cleanup.

The hub is started the way a user runs it (``python -m marrow_tui --no-ui``) through the hub
benchmark's process helpers (``hubbench.hubs``): its own session, its own PID, a temp state
directory, ``--port 0`` and the ``listening on ws://...`` line. Unlike the hub benchmark, stdout
(the headless event lines) and stderr (diagnostics, tracebacks) go to two files, because the
fuzz run reads both. Nothing here imports marrow_tui: the hub is a black box behind a socket.

Every wait is bounded; every hub is ended by its own PID (SIGTERM, then SIGKILL to that PID),
also when a run fails or is interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work" / "reliability"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from hubbench.hubs import HubKind, HubProcess, ours_kind  # noqa: E402
from hubbench.procinfo import machine_description, proc_rss_kib  # noqa: E402
from hubbench.stats import latency_summary_ms, percentile  # noqa: E402

__all__ = [
    "Hub", "Peer", "PeerClosed", "ReplyTimeout", "latency_summary_ms", "percentile",
    "proc_rss_kib", "machine_description", "write_result", "install_cleanup", "count_tracebacks",
    "now_stamp", "log",
]

TRACEBACK_RE = re.compile(r"^Traceback \(most recent call last\):", re.M)
PROTOCOL_VERSION = 7


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now_stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def operator_token(state_dir: Path) -> str | None:
    """The hub's operator token, when its state directory has one (hubs that have operator
    rights over the wire write it there on their first start; older ones have none)."""
    try:
        return (state_dir / "operator_token").read_text().strip() or None
    except OSError:
        return None


def count_tracebacks(text: str) -> int:
    return len(TRACEBACK_RE.findall(text))


# --------------------------------------------------------------------------- the hub process

_LIVE_HUBS: list[Hub] = []


def _hub_env() -> dict[str, str]:
    """Unbuffered, no MARROW_* settings from the caller's shell (a token, a config...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hub_kind(python: str | None = None, extra: list[str] | None = None,
             cwd: Path | None = None) -> HubKind:
    """hubbench's "ours" kind plus extra flags, run from ``cwd`` (a temp dir: no marrow.toml)."""
    kind = ours_kind(Path(python or sys.executable), REPO)
    if not kind.available:
        raise SystemExit(f"cannot run the hub: {kind.unavailable_reason}")
    base = kind.build_argv
    flags = list(extra or [])
    kind.build_argv = lambda port, state_dir: [*base(port, state_dir), *flags]  # type: ignore[method-assign]
    kind.env = _hub_env()
    kind.cwd = cwd
    return kind


class Hub(HubProcess):
    """``hubbench.hubs.HubProcess`` with stdout and stderr kept apart, and SIGKILL on demand."""

    def __init__(self, kind: HubKind, state_dir: Path, log_path: Path, err_path: Path) -> None:
        super().__init__(kind, state_dir, log_path)
        self.err_path = err_path
        self._err_fh: Any = None

    def start(self) -> Hub:
        self.uri = None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.kind.build_argv(0, self.state_dir)
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._err_fh = open(self.err_path, "ab")  # noqa: SIM115
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=self._log_fh, stderr=self._err_fh, stdin=subprocess.DEVNULL,
            env=self.kind.env, cwd=self.kind.cwd, start_new_session=True,
        )
        _LIVE_HUBS.append(self)
        return self

    async def ready(self, timeout: float = 30.0, token: str | None = None) -> str:
        """Wait (bounded) for the ``listening on`` line and one answered ``who_request``."""
        deadline = time.monotonic() + timeout
        last = ""
        n = 0
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"hub exited with {self.proc.returncode if self.proc else '?'}"
                                   f"; stderr tail: {self.err_tail()}")
            uri = self._uri_from_log()
            if uri is None:
                await asyncio.sleep(0.02)
                continue
            n += 1
            try:
                peer = await Peer.open(uri, f"rel/ready-{os.getpid()}-{n}", token=token,
                                       timeout=5.0)
                try:
                    await peer.request("who_request", '"who_snapshot"', ("who_snapshot",),
                                       timeout=5.0)
                finally:
                    await peer.close()
                return uri
            except (OSError, InvalidHandshake, PeerClosed, ReplyTimeout, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.05)
        raise RuntimeError(f"hub not ready in {timeout:.0f}s ({last})")

    def kill9(self) -> int | None:
        """SIGKILL this PID (the crash we test) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self._close_files()
        return rc

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        out = super().stop(timeout)
        self._close_files()
        with contextlib.suppress(ValueError):
            _LIVE_HUBS.remove(self)
        return out

    def _close_files(self) -> None:
        for attr in ("_log_fh", "_err_fh"):
            fh = getattr(self, attr)
            if fh is not None:
                fh.close()
                setattr(self, attr, None)

    def stdout_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_text(self) -> str:
        try:
            return self.err_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def err_tail(self, lines: int = 15) -> list[str]:
        return self.stderr_text().splitlines()[-lines:]


def _stop_all_hubs() -> None:
    for hub in list(_LIVE_HUBS):
        with contextlib.suppress(Exception):
            hub.stop(10)


def install_cleanup() -> None:
    """On exit, SIGTERM or SIGHUP: stop every hub this process started (by its own PID)."""
    atexit.register(_stop_all_hubs)

    def on_signal(signum: int, _frame: object) -> None:
        _stop_all_hubs()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


# --------------------------------------------------------------------------- a lean client


class PeerClosed(Exception):
    """The hub closed the socket (code and reason kept)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class ReplyTimeout(Exception):
    pass


class Peer:
    """One registered connection with a reader task that drains every frame.

    A request waits for the first frame containing its key (a unique task id, message id, ...)
    whose type is one of ``ok`` (or ``fail``), or an ``error`` addressed to us that contains the
    key. Frames are decoded only when the cheap substring test passes, so 200 peers in one
    process can keep up with broadcasts to all of them.
    """

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.frames = 0
        self.closed: PeerClosed | None = None
        self._pending: list[tuple[str, tuple[str, ...], tuple[str, ...], asyncio.Future[Any]]] = []
        self._target = f'"target":"{json.dumps(name)[1:-1]}"'
        self._reader: asyncio.Task[None] | None = None
        self.on_frame: Callable[[str], None] | None = None
        #: False: only a frame containing the key answers (the fuzz run's probes)
        self.any_error_answers = True

    @classmethod
    async def open(cls, uri: str, name: str, *, token: str | None = None, timeout: float = 10.0,
                   roles: list[str] | None = None, extra: dict[str, Any] | None = None) -> Peer:
        ws = await connect(uri, compression=None, max_size=None, open_timeout=timeout,
                           ping_interval=None, close_timeout=2, max_queue=None)
        peer = cls(name, ws)
        peer._reader = asyncio.ensure_future(peer._read())
        try:
            first: dict[str, Any] = {"sender": name, "target": "System", "type": "heartbeat",
                                     "payload": "online", "protocol_version": PROTOCOL_VERSION}
            if token is not None:
                first["token"] = token
            if roles:
                first["roles"] = roles
            first.update(extra or {})
            await peer.request_frame(first, '"welcome"', ("welcome",),
                                     ("name_conflict", "auth_denied"), timeout=timeout)
        except BaseException:
            await peer.close()
            raise
        return peer

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames += 1
                if not isinstance(raw, str):
                    continue
                if self.on_frame is not None:
                    self.on_frame(raw)
                if not self._pending:
                    continue
                for entry in list(self._pending):
                    key, ok, fail, fut = entry
                    if fut.done():
                        continue
                    mine_error = '"error"' in raw and self._target in raw
                    if key in raw or mine_error:
                        obj = json.loads(raw)
                        kind = obj.get("type")
                        # one request in flight per peer: an error addressed to us is its answer
                        if (key in raw and kind in ok + fail) or (
                                self.any_error_answers and kind == "error"
                                and obj.get("target") == self.name):
                            fut.set_result(obj)
            rcvd = self.ws.close_code
            self.closed = PeerClosed(rcvd, self.ws.close_reason or "")
        except ConnectionClosed as exc:
            r = exc.rcvd
            self.closed = PeerClosed(r.code if r else None, r.reason if r else "")
        except Exception as exc:  # noqa: BLE001 - a broken socket ends the reader
            self.closed = PeerClosed(None, f"{type(exc).__name__}: {exc}")
        for _, _, _, fut in self._pending:
            if not fut.done():
                fut.set_exception(self.closed)

    async def send_frame(self, obj: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(obj, separators=(",", ":")))

    async def send_raw(self, data: str | bytes, *, text: bool | None = None) -> None:
        if self.closed is not None:
            raise self.closed
        try:
            await self.ws.send(data, text=text)
        except ConnectionClosed as exc:
            r = exc.rcvd
            self.closed = self.closed or PeerClosed(r.code if r else None, r.reason if r else "")
            raise self.closed from None

    async def expect(self, key: str, ok: tuple[str, ...], fail: tuple[str, ...] = (),
                     timeout: float = 30.0, send: Any = None) -> dict[str, Any]:
        """Register the wait first, then send (so a fast reply is never missed)."""
        if self.closed is not None:
            if send is not None:
                send.close()
            raise self.closed
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (key, ok, fail, fut)
        self._pending.append(entry)
        try:
            if send is not None:
                await send
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise ReplyTimeout(f"no {ok} for {key} in {timeout}s") from None
        finally:
            self._pending.remove(entry)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved: no "never retrieved" warning when we gave up
            if send is not None and hasattr(send, "close"):
                send.close()  # a send coroutine never awaited (expect raised before it)

    async def request_frame(self, obj: dict[str, Any], key: str, ok: tuple[str, ...],
                            fail: tuple[str, ...] = (), timeout: float = 30.0) -> dict[str, Any]:
        return await self.expect(key, ok, fail, timeout, send=self.send_frame(obj))

    async def request(self, type_: str, key: str, ok: tuple[str, ...], fail: tuple[str, ...] = (),
                      timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        obj = {"sender": self.name, "target": fields.pop("target", "all"), "type": type_,
               "payload": fields.pop("payload", ""), "timestamp": time.time(), **fields}
        return await self.request_frame(obj, key, ok, fail, timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


# --------------------------------------------------------------------------- reads of the state


async def read_state(peer: Peer, timeout: float = 60.0) -> dict[str, Any]:
    """active_claims by task id, from one ``state_request``."""
    rid = f"rel-state-{time.monotonic_ns()}"
    snap = await peer.request("state_request", f'"{rid}"', ("state_snapshot",), timeout=timeout,
                              target="SynapseHub", request_id=rid)
    claims = (snap.get("snapshot") or {}).get("active_claims", [])
    return {c["task_id"]: c for c in claims if isinstance(c, dict) and "task_id" in c}


async def read_history(peer: Peer, timeout: float = 60.0) -> list[dict]:
    """Every retained chat frame the peer may see, oldest first: `resume_request` pages, each
    under the clients' frame limit, followed until the hub says `complete`."""
    frames: list[dict] = []
    since = 0
    while True:
        got = await peer.request("resume_request", '"resume_snapshot"', ("resume_snapshot",),
                                 timeout=timeout, target="SynapseHub", since=since)
        page = [m for m in got.get("messages", []) if isinstance(m, dict)]
        frames.extend(page)
        if got.get("complete", True) or not page:
            return frames
        since = int(page[-1].get("msg_id") or since)


async def read_board(peer: Peer, timeout: float = 60.0) -> dict[str, Any]:
    got = await peer.request("board_request", '"board_snapshot"', ("board_snapshot",),
                             timeout=timeout, target="SynapseHub")
    tasks = (got.get("board") or {}).get("tasks", [])
    return {t["task_id"]: t for t in tasks if isinstance(t, dict) and "task_id" in t}


def check_chats(acked: dict[str, int], history: list[dict]) -> dict[str, Any]:
    """Acked chats (client_msg_id -> msg_id) against ``history``.

    The hub keeps the last 10,000 chat frames (docs/protocol.md §3.15): an acked message older
    than the oldest one returned was dropped by that documented bound, not lost. It is counted
    apart (``beyond_retention``); every other acked message must be there with its msg_id.
    """
    by_cid = {m.get("client_msg_id"): m.get("msg_id") for m in history}
    oldest = min((m.get("msg_id") or 0 for m in history), default=None)
    lost: list[Any] = []
    beyond = 0
    for cid, msg_id in acked.items():
        if by_cid.get(cid) == msg_id:
            continue
        if oldest is not None and len(history) >= 10_000 and msg_id < oldest:
            beyond += 1
            continue
        lost.append([cid, msg_id])
    return {"acked": len(acked), "lost": len(lost), "beyond_retention": beyond,
            "lost_samples": lost[:10]}


# --------------------------------------------------------------------------- results


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                             check=False, timeout=20)
        return out.stdout.strip()

    dirty = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "commit_short": git("rev-parse", "--short", "HEAD"),
            "dirty_files": len(dirty.splitlines()) if dirty else 0,
            "dirty_marrow_tui": sorted({line[3:] for line in dirty.splitlines()
                                        if line[3:].startswith("marrow_tui/")})}


def write_result(kind: str, result: dict[str, Any], results_dir: Path, tag: str | None,
                 report: bool = True) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    name = f"reliability-{kind}-{result['started']}{'-' + tag if tag else ''}.json"
    path = results_dir / name
    path.write_text(json.dumps(result, indent=1, sort_keys=False, default=str) + "\n")
    log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if report:
        from report import render_all  # the sibling module

        render_all(results_dir)
    return path


def base_result(kind: str, argv: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "started": now_stamp(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", *argv]),
        "settings": settings,
        "machine": machine_description(REPO),
        "git": git_info(),
    }


# --------------------------------------------------------------------------- one run, from the CLI


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every reliability run takes, after its own."""
    p.add_argument("--python", default=None, help="python that runs marrow_tui (default: this)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--tag", default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (state, hub output)")
    p.add_argument("--no-report", action="store_true", help="do not regenerate the markdown")


def execute(kind: str, args: argparse.Namespace,
            run: Callable[[argparse.Namespace, dict[str, Any], Path], Awaitable[None]],
            bound: float) -> dict[str, Any]:
    """Run `run` in a temp dir under WORK_DIR within `bound` seconds: the result, with the
    error if it failed; the hub is stopped and the temp dir removed (unless --keep) whatever
    happens."""
    install_cleanup()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=WORK_DIR))
    result = base_result(kind, sys.argv, {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in vars(args).items()})
    try:
        asyncio.run(asyncio.wait_for(run(args, result, tmp), bound))
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"run failed: {result['error']}")
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        if args.keep:
            result["kept"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result
