"""The service supervisor with real processes: small stdlib HTTP servers on 127.0.0.1.

Nothing sleeps to wait: every wait is a bounded poll on a condition. The backoff sequence is
checked with an injected clock and sleep, so it costs no real time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.config.model import Dependency, HealthCheck, ServiceConfig
from marrow_tui.proc import group_members
from marrow_tui.services import health
from marrow_tui.services.logs import RotatingLog
from marrow_tui.proc import simple_command
from marrow_tui.services.supervisor import (
    ServiceError,
    Supervisor,
    backoff_delay,
    left_behind,
    pick_port,
)

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")

WAIT = 20.0
#: a process that does nothing until a signal ends it
IDLE = "import signal\nwhile True: signal.pause()"

#: one server for every test: argv = name, port, out folder, mode
SERVER = r'''
import http.server, json, os, signal, sys, threading, time
name, port, out, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
keep = ("PORT", "SERVICE_NAME", "SERVICE_URL", "MARROW_SERVICE", "EXTRA", "MARROW_OPERATOR_TOKEN",
        "MARROW_AGENT_KEY")
env = {k: v for k, v in os.environ.items()
       if k in keep or k.endswith(("_URL", "_HOST", "_PORT", "_ENDPOINT"))}
with open(os.path.join(out, name + ".env.json"), "w") as f:
    json.dump(env, f)
written = [0]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        if self.path == "/health":
            with open(os.path.join(out, name + ".checks"), "a") as f:  # one byte a check
                f.write(".")
            sick = os.path.exists(os.path.join(out, name + ".sick"))
            self.send_response(503 if sick else 200)
        elif self.path == "/written":
            body = str(written[0]).encode()
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def idle():                   # does nothing until a signal ends it
    while True:
        signal.pause()

if mode == "silent":          # runs, never answers
    idle()
if mode == "stubborn":        # ignores SIGTERM, and so does a child in its group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        idle()
    with open(os.path.join(out, name + ".child"), "w") as f:
        f.write(str(child))
if mode == "slowstop":        # on SIGTERM, stays "stopping" until the test opens its gate
    def gated_exit(*_):
        with open(os.path.join(out, name + ".gate")) as gate:  # a FIFO: blocks for a writer
            gate.read()
        os._exit(0)
    signal.signal(signal.SIGTERM, gated_exit)
if mode in ("escape", "hide"):  # a child leaves the group (setsid) and keeps the output pipe
    child = os.fork()
    if child == 0:
        os.setsid()
        env = dict(os.environ)
        if mode == "hide":    # and drops our tag: nothing can find it
            env.pop("MARROW_SERVICE")
        os.execve(sys.executable, [sys.executable, "-c",
                                   "import signal\nwhile True: signal.pause()"], env)
    with open(os.path.join(out, name + ".child"), "w") as f:
        f.write(str(child))
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(f"{name} listening on {port}", flush=True)
if mode == "flood":           # as much output as the pipe takes, for ever
    threading.Thread(target=server.serve_forever, daemon=True).start()
    chunk = b"x" * 65535 + b"\n"
    while True:
        written[0] += os.write(1, chunk)
server.serve_forever()
'''


# ---- fixtures and helpers -------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """Every change the supervisor reports, in order."""

    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []

    def __call__(self, change: dict[str, Any]) -> None:
        self.changes.append(change)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.changes if c["name"] == name]

    def first(self, name: str, state: str) -> int:
        """The index of the first change that put `name` in `state`."""
        for index, change in enumerate(self.changes):
            if change["name"] == name and change["state"] == state:
                return index
        raise AssertionError(f"{name} was never {state}: {self.of(name)}")

    def states(self, name: str) -> list[str]:
        out: list[str] = []
        for change in self.of(name):
            if not out or out[-1] != change["state"]:
                out.append(change["state"])
        return out


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


def service(name: str, script: Path, *deps: str | Dependency, mode: str = "-",
            **options: Any) -> ServiceConfig:
    settings: dict[str, Any] = dict(
        command=(sys.executable, str(script), name, "{port}", str(script.parent), mode),
        port=0,
        depends_on=tuple(d if isinstance(d, Dependency) else Dependency(d) for d in deps),
        health=HealthCheck(kind="http", path="/health", expect=200, interval=0.2, timeout=2.0,
                           failures=3),
        start_timeout=15.0, restart="on-failure", max_restarts=3, backoff_initial=0.05,
        backoff_max=0.2, stop_grace=3.0,
    )
    settings.update(options)
    return ServiceConfig(name=name, **settings)


def supervisor(tmp_path: Path, services: list[ServiceConfig], **options: Any
               ) -> tuple[Supervisor, Recorder]:
    recorder = Recorder()
    sup = Supervisor(services, folder=tmp_path, logs=tmp_path / "logs", on_change=recorder,
                     **options)
    return sup, recorder


async def until(condition: Callable[[], bool], what: str = "", timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


def state(sup: Supervisor, name: str) -> dict[str, Any]:
    return next(s for s in sup.snapshot() if s["name"] == name)


def env_of(tmp_path: Path, name: str) -> dict[str, str]:
    return json.loads((tmp_path / f"{name}.env.json").read_text())


def gone(pgid: int) -> bool:
    return not group_members(pgid)


def dead(pid: int) -> bool:
    """No such process, or a zombie (where nothing reaps orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")


def drain_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("service log ")]


def disk_use(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # rotated away meanwhile
            pass
    return total


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    return await asyncio.to_thread(fetch)


# ---- order ---------------------------------------------------------------------------------------


async def test_line_starts_in_order_with_dependency_env_and_stops_in_reverse(
        tmp_path: Path, script: Path) -> None:
    services = [service("c", script, "b"), service("b", script, "a"), service("a", script)]
    sup, rec = supervisor(tmp_path, services)
    try:
        await sup.start()
        assert [s["state"] for s in sup.snapshot()] == ["healthy"] * 3
        assert rec.first("a", "healthy") < rec.first("b", "starting")
        assert rec.first("b", "healthy") < rec.first("c", "starting")
        ports = sup.ports
        assert set(ports) == {"a", "b", "c"} and len(set(ports.values())) == 3
        env = env_of(tmp_path, "b")
        assert env["PORT"] == str(ports["b"])
        assert env["SERVICE_NAME"] == "b" and env["MARROW_SERVICE"] == "b"
        assert env["SERVICE_URL"] == f"http://127.0.0.1:{ports['b']}"
        assert env["A_URL"] == f"http://127.0.0.1:{ports['a']}"
        assert env["A_HOST"] == "127.0.0.1" and env["A_PORT"] == str(ports["a"])
        assert "A_URL" not in env_of(tmp_path, "c")  # only direct dependencies
        assert env_of(tmp_path, "c")["B_URL"] == f"http://127.0.0.1:{ports['b']}"
        pids = {s["name"]: s["pid"] for s in sup.snapshot()}
    finally:
        await sup.stop()
    stopping = [c["name"] for c in rec.changes if c["state"] == "stopping"]
    assert stopping == ["c", "b", "a"]
    assert all(s["state"] == "stopped" and s["pid"] is None for s in sup.snapshot())
    assert all(gone(pid) for pid in pids.values())
    log = (tmp_path / "logs" / "a.log").read_text()
    assert "a listening on" in log and "started, pid" in log and "ended (stopped" in log


async def test_services_never_inherit_the_operator_token_or_an_agent_key(
        tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper process is neither an operator nor one of our agents, whatever the environment
    marrow-tui was started with."""
    monkeypatch.setenv("MARROW_OPERATOR_TOKEN", "operator-secret")
    monkeypatch.setenv("MARROW_AGENT_KEY", "agent-secret")
    sup, _ = supervisor(tmp_path, [service("a", script)])
    try:
        await sup.start()
        env = env_of(tmp_path, "a")
        assert env["SERVICE_NAME"] == "a"
        assert "MARROW_OPERATOR_TOKEN" not in env and "MARROW_AGENT_KEY" not in env
    finally:
        await sup.stop()


async def test_diamond_waits_for_both_branches(tmp_path: Path, script: Path) -> None:
    services = [service("d", script, "b", Dependency("c", env="C_ENDPOINT")),
                service("b", script, "a"), service("c", script, "a"), service("a", script)]
    sup, rec = supervisor(tmp_path, services)
    try:
        await sup.start()
        assert sup.waves == [["a"], ["b", "c"], ["d"]]
        assert all(s["state"] == "healthy" for s in sup.snapshot())
        for dependent, deps in {"b": "a", "c": "a", "d": "bc"}.items():
            for dep in deps:
                assert rec.first(dep, "healthy") < rec.first(dependent, "starting")
        env, ports = env_of(tmp_path, "d"), sup.ports
        assert env["B_URL"] == f"http://127.0.0.1:{ports['b']}"
        assert env["C_URL"] == env["C_ENDPOINT"] == f"http://127.0.0.1:{ports['c']}"
        assert "A_URL" not in env
    finally:
        await sup.stop()
    stopping = [c["name"] for c in rec.changes if c["state"] == "stopping"]
    assert stopping[0] == "d" and set(stopping[1:3]) == {"b", "c"} and stopping[3] == "a"


# ---- health, failure, restarts ---------------------------------------------------------------


async def test_never_healthy_gives_up_and_blocks_dependents(tmp_path: Path,
                                                             script: Path) -> None:
    services = [
        service("db", script, mode="silent", start_timeout=1.0, max_restarts=2,
                backoff_initial=0.01),
        service("api", script, "db"),
        service("web", script, "api"),
        service("cache", script),
    ]
    sup, rec = supervisor(tmp_path, services)
    try:
        await sup.start()  # returns after db's first failed start: it is now in backoff
        assert state(sup, "cache")["state"] == "healthy"
        await until(lambda: state(sup, "db")["state"] == "failed", "db to give up")
        db = state(sup, "db")
        assert db["restarts"] == 2
        assert db["reason"].startswith("gave up after 2 restarts in a row: not healthy within 1s")
        assert "connection refused" in db["reason"]
        api, web = state(sup, "api"), state(sup, "web")
        assert api["state"] == web["state"] == "blocked"
        assert api["reason"].startswith("waiting for db, which failed: gave up after 2")
        assert web["reason"].startswith("waiting for api, which is blocked (waiting for db")
        assert "starting" not in rec.states("api")  # never started
        assert rec.states("db") == ["starting", "stopping", "backoff", "starting", "stopping",
                                    "backoff", "starting", "stopping", "failed"]
        pids = {c["pid"] for c in rec.of("db") if c["pid"]}
        assert len(pids) == 3 and all(gone(pid) for pid in pids)
        with pytest.raises(ServiceError, match="cannot start api: waiting for db, which failed"):
            await sup.start_service("api")
    finally:
        await sup.stop()
    assert state(sup, "api")["state"] == "stopped"


async def test_could_not_start_is_final_only_when_retrying_cannot_help(
        tmp_path: Path, script: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    missing = ("/nonexistent/ghostd", "{port}")
    services = [ServiceConfig(name="ghost", command=missing, port=0, restart="no"),
                service("api", script, "ghost"),
                ServiceConfig(name="flaky", command=missing, port=0, restart="on-failure",
                              max_restarts=2, backoff_initial=1.0),
                ServiceConfig(name="empty", restart="always")]
    sup, rec = supervisor(tmp_path, services, sleep=sleep)
    try:
        await sup.start()
        ghost = state(sup, "ghost")
        assert ghost["state"] == "failed" and ghost["restarts"] == 0
        assert ghost["reason"] == "could not start: command not found: /nonexistent/ghostd"
        assert state(sup, "api")["reason"] == (
            "waiting for ghost, which failed: could not start: command not found: "
            "/nonexistent/ghostd")
        # on-failure / always: a binary briefly missing, EAGAIN... is worth trying again
        await until(lambda: state(sup, "flaky")["state"] == "failed", "flaky to give up")
        assert rec.states("flaky") == ["starting", "backoff", "starting", "backoff",
                                       "starting", "failed"]
        assert state(sup, "flaky")["reason"] == (
            "gave up after 2 restarts in a row: could not start: command not found: "
            "/nonexistent/ghostd")
        assert waits == [1.0, 2.0]
        # no command at all: final under any policy
        assert state(sup, "empty")["state"] == "failed"
        assert state(sup, "empty")["reason"] == "could not start: no command"
        assert "backoff" not in rec.states("empty")
    finally:
        await sup.stop()


async def test_policies_for_a_clean_and_a_failing_exit(tmp_path: Path) -> None:
    def exits(name: str, code: int, restart: str) -> ServiceConfig:
        return ServiceConfig(name=name, command=(sys.executable, "-c",
                                                 f"print('bye'); raise SystemExit({code})"),
                             restart=restart, backoff_initial=0.01)

    sup, _ = supervisor(tmp_path, [exits("done", 0, "on-failure"), exits("once", 3, "no")])
    try:
        await sup.start()
        await until(lambda: all(s["state"] in ("stopped", "failed") for s in sup.snapshot()))
        assert state(sup, "done")["state"] == "stopped"
        assert state(sup, "done")["reason"] == "exited: exit 0: bye"
        assert state(sup, "once")["state"] == "failed"
        assert state(sup, "once")["reason"] == 'exit 3: bye (restart = "no")'
    finally:
        await sup.stop()


async def test_killed_service_restarts_on_its_port_and_dependents_are_told(
        tmp_path: Path, script: Path) -> None:
    sup, rec = supervisor(tmp_path, [service("db", script), service("api", script, "db")])
    try:
        await sup.start()
        db, api = state(sup, "db"), state(sup, "api")
        os.kill(db["pid"], signal.SIGKILL)
        await until(lambda: state(sup, "db")["state"] == "healthy"
                    and state(sup, "db")["pid"] != db["pid"], "db to come back")
        again = state(sup, "db")
        assert again["restarts"] == 1 and again["port"] == db["port"]
        backoff = next(c for c in rec.of("db") if c["state"] == "backoff")
        assert backoff["reason"].startswith("killed by SIGKILL; restart 1 of 3 in 0.05s")
        assert backoff["health"] == ""  # no process, no health
        told = [c["reason"] for c in rec.of("api") if c["state"] == "healthy"]
        assert told[-2].startswith("db is backoff: killed by SIGKILL")
        assert told[-1] == "db restarted"
        assert state(sup, "api")["pid"] == api["pid"]  # told, not restarted
        assert (await get(f"{again['url']}/health"))[0] == 200
        assert gone(db["pid"])
    finally:
        await sup.stop()


async def test_health_is_watched_after_start(tmp_path: Path, script: Path) -> None:
    checks = HealthCheck(kind="http", path="/health", interval=0.2, timeout=2.0, failures=2)
    sup, rec = supervisor(tmp_path, [service("db", script, health=checks)])
    try:
        await sup.start()
        first = state(sup, "db")
        (tmp_path / "db.sick").touch()  # /health now answers 503
        await until(lambda: state(sup, "db")["state"] in ("unhealthy", "stopping", "backoff",
                                                           "starting"), "db to be unhealthy")
        (tmp_path / "db.sick").unlink()
        await until(lambda: state(sup, "db")["state"] == "healthy"
                    and state(sup, "db")["pid"] != first["pid"], "db to be restarted")
        unhealthy = next(c for c in rec.of("db") if c["state"] == "unhealthy")
        assert unhealthy["reason"] == (
            "unhealthy: 2 checks failed in a row (HTTP 503 (expected 200))")
        assert any(c["health"] == "HTTP 503 (expected 200) (1 of 2 failed)"
                   for c in rec.of("db"))
        assert state(sup, "db")["restarts"] == 1 and gone(first["pid"])
    finally:
        await sup.stop()


async def test_backoff_doubles_up_to_the_cap_then_gives_up(tmp_path: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    crasher = ServiceConfig(name="crash", command=(sys.executable, "-c", "raise SystemExit(3)"),
                            restart="always", max_restarts=6, backoff_initial=1.0,
                            backoff_max=8.0)
    sup, _ = supervisor(tmp_path, [crasher], clock=Clock(), sleep=sleep)
    try:
        await sup.start()
        await until(lambda: state(sup, "crash")["state"] == "failed")
        assert waits == [1, 2, 4, 8, 8, 8]
        assert state(sup, "crash")["restarts"] == 6
        assert state(sup, "crash")["reason"].startswith("gave up after 6 restarts in a row: exit 3")
    finally:
        await sup.stop()
    assert [backoff_delay(crasher, n) for n in range(1, 8)] == [1, 2, 4, 8, 8, 8, 8]


async def test_a_healthy_stretch_resets_the_backoff(tmp_path: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    clock = Clock()
    sleeper = ServiceConfig(name="s", command=(sys.executable, "-c",
                                               IDLE),
                            restart="on-failure", max_restarts=3, backoff_initial=1.0)
    sup, _ = supervisor(tmp_path, [sleeper], clock=clock, sleep=sleep)

    async def kill_and_wait() -> None:
        pid = state(sup, "s")["pid"]
        os.kill(pid, signal.SIGKILL)
        await until(lambda: state(sup, "s")["state"] == "healthy"
                    and state(sup, "s")["pid"] not in (None, pid))

    try:
        await sup.start()
        for _ in range(3):
            await kill_and_wait()
        assert waits == [1, 2, 4]
        clock.advance(61)  # healthy for a minute: the next failure counts as the first again
        await kill_and_wait()
        assert waits == [1, 2, 4, 1]
        await kill_and_wait()
        assert waits == [1, 2, 4, 1, 2]
        assert state(sup, "s")["restarts"] == 5
    finally:
        await sup.stop()


# ---- output, signals, ports, shell ------------------------------------------------------------


async def test_flooding_service_keeps_disk_bounded_and_stays_healthy(
        tmp_path: Path, script: Path) -> None:
    limit = 256 * 1024
    sup, rec = supervisor(tmp_path, [service("flood", script, mode="flood")],
                          log_max_bytes=limit, log_backups=3)
    lag = 0.0
    ticking = True

    async def ticker() -> None:
        nonlocal lag
        loop = asyncio.get_running_loop()
        while ticking:
            before = loop.time()
            await asyncio.sleep(0.01)
            lag = max(lag, loop.time() - before - 0.01)

    logs = tmp_path / "logs"
    tick = asyncio.create_task(ticker())
    try:
        await sup.start()
        url = state(sup, "flood")["url"]
        biggest = 0
        written = 0
        deadline = time.monotonic() + WAIT
        while written < 40 * limit * 4 and time.monotonic() < deadline:
            written = int((await get(f"{url}/written"))[1])
            biggest = max(biggest, disk_use(logs))
            await asyncio.sleep(0.05)
        assert written >= 40 * limit * 4, f"the flood wrote only {written} bytes"
        # sampled while files rotate, one of them may be counted twice: hence the 5th
        assert biggest <= 5 * limit
        assert rec.states("flood") == ["starting", "healthy"]  # never missed a check
        assert lag < 1.0, f"the event loop stalled for {lag:.2f}s"
    finally:
        ticking = False
        await tick
        await sup.stop()
    assert sorted(p.name for p in logs.iterdir()) == [
        "flood.log", "flood.log.1", "flood.log.2", "flood.log.3"]
    assert disk_use(logs) <= 4 * limit
    assert all(p.stat().st_size <= limit for p in logs.iterdir())
    assert (logs / "flood.log").read_bytes().endswith(b"ended (stopped (shutting down))\n")


async def test_sigterm_ignored_means_sigkill_after_grace_for_the_whole_group(
        tmp_path: Path, script: Path) -> None:
    sup, _ = supervisor(tmp_path, [service("stubborn", script, mode="stubborn",
                                           stop_grace=0.5)])
    try:
        await sup.start()
        pid = state(sup, "stubborn")["pid"]
        child = int((tmp_path / "stubborn.child").read_text())
        assert set(group_members(pid)) == {pid, child}
        loop = asyncio.get_running_loop()
        began = loop.time()
        await sup.stop_service("stubborn")
        took = loop.time() - began
        assert 0.5 <= took < 5.0
        assert gone(pid)
        stopped = state(sup, "stubborn")
        assert stopped["state"] == "stopped"
        assert stopped["reason"] == ("stopped by operator (still running 0.5s after SIGTERM; "
                                     "sent SIGKILL)")
    finally:
        await sup.stop()


async def test_shell_line_is_stopped_with_its_whole_group(tmp_path: Path, script: Path) -> None:
    # not one plain command (`; true`): the shell stays the leader, python is its child
    line = (f"{sys.executable} {script} sh {{port}} {tmp_path} - ; true")
    sup, _ = supervisor(tmp_path, [ServiceConfig(
        name="sh", shell=line, port=0, health=HealthCheck(kind="tcp", interval=0.2))])
    try:
        await sup.start()
        sh = state(sup, "sh")
        assert sh["state"] == "healthy"
        assert env_of(tmp_path, "sh")["PORT"] == str(sh["port"])
        assert len(group_members(sh["pid"])) == 2
    finally:
        await sup.stop()
    assert gone(sh["pid"])


async def test_a_plain_shell_command_replaces_the_shell(tmp_path: Path, script: Path) -> None:
    line = f"{sys.executable} {script} plain {{port}} {tmp_path} -"
    sup, _ = supervisor(tmp_path, [ServiceConfig(
        name="plain", shell=line, port=0, health=HealthCheck(kind="tcp", interval=0.2))])
    try:
        await sup.start()
        pid = state(sup, "plain")["pid"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1] == str(script).encode()  # the pid is python's, not the shell's
        assert group_members(pid) == [pid]
    finally:
        await sup.stop()
    assert gone(pid)


def test_simple_command() -> None:
    assert simple_command("python3 -m http.server {port}")
    assert simple_command("./serve --name 'a b' $HOME")
    for line in ("a && b", "a; b", "a | b", "a > log", "(a)", "FOO=1 a", "cd x", "if true",
                 "a &", "a 'unbalanced", "a\nb", "  "):
        assert not simple_command(line), line


async def test_auto_ports_are_remembered_and_replaced_when_taken(tmp_path: Path,
                                                                  script: Path) -> None:
    remembered = pick_port()
    sup, _ = supervisor(tmp_path, [service("db", script)], ports={"db": remembered})
    try:
        await sup.start()
        assert state(sup, "db")["port"] == remembered == sup.ports["db"]
        await sup.restart_service("db")
        assert state(sup, "db")["state"] == "healthy"
        assert state(sup, "db")["port"] == remembered
    finally:
        await sup.stop()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", remembered))
        busy.listen()
        sup, _ = supervisor(tmp_path, [service("db", script)], ports={"db": remembered})
        try:
            await sup.start()
            assert state(sup, "db")["state"] == "healthy"
            assert sup.ports["db"] != remembered
        finally:
            await sup.stop()


async def test_operator_actions(tmp_path: Path, script: Path) -> None:
    sup, rec = supervisor(tmp_path, [service("db", script), service("api", script, "db")])
    try:
        await sup.start()
        with pytest.raises(ServiceError, match="no service named 'nope'"):
            await sup.start_service("nope")
        with pytest.raises(ServiceError, match="api is already healthy"):
            await sup.start_service("api")
        await sup.stop_service("db")
        assert state(sup, "db")["state"] == "stopped"
        assert state(sup, "db")["reason"] == "stopped by operator"
        assert state(sup, "db")["health"] == ""  # was "HTTP 200"
        assert state(sup, "api")["reason"] == "db is stopped: stopped by operator"
        assert state(sup, "api")["state"] == "healthy"  # told, still running
        with pytest.raises(ServiceError, match="cannot restart api: waiting for db, which is "
                                               "stopped"):
            await sup.restart_service("api")
        await sup.start_service("db")
        assert state(sup, "db")["state"] == "healthy"
        assert state(sup, "api")["reason"] == "db restarted"
        api_pid = state(sup, "api")["pid"]
        await sup.restart_service("api")
        assert state(sup, "api")["state"] == "healthy" and state(sup, "api")["pid"] != api_pid
        assert state(sup, "api")["restarts"] == 0  # an operator's restart is not the policy's
    finally:
        await sup.stop()


async def test_refusal_says_why_an_action_would_be_refused(tmp_path: Path,
                                                            script: Path) -> None:
    services = [service("db", script), service("cache", script, enabled=False),
                service("api", script, "db", "cache")]
    sup, _ = supervisor(tmp_path, services)
    try:
        await sup.start()
        assert sup.refusal("nope", "stop") == "no service named 'nope'"
        assert sup.refusal("db", "frob") == "unknown action 'frob' (start, stop or restart)"
        assert sup.refusal("db", "start") == "db is already healthy"
        assert sup.refusal("db", "stop") is None and sup.refusal("db", "restart") is None
        assert sup.refusal("cache", "start") is None
        assert sup.refusal("api", "start") == (
            "cannot start api: waiting for cache, which is stopped (disabled)")
        await sup.stop_service("db")
        both = ("waiting for db, which is stopped (stopped by operator); "
                "waiting for cache, which is stopped (disabled)")
        assert sup.refusal("api", "start") == f"cannot start api: {both}"
        assert sup.refusal("api", "restart") == f"cannot restart api: {both}"
        with pytest.raises(ServiceError) as refused:
            await sup.start_service("api")
        assert str(refused.value) == f"cannot start api: {both}"
        assert sup.refusal("db", "start") is None and sup.refusal("db", "stop") is None
    finally:
        await sup.stop()
    assert sup.refusal("db", "start") == "the services are shutting down"


def open_gate(gate: Path) -> None:
    """Let a "slowstop" service finish stopping: write its FIFO from a thread of its own
    (the write waits for the service to be reading)."""
    threading.Thread(target=gate.write_text, args=("go",), daemon=True).start()


async def test_an_operator_stop_during_an_operator_restart_wins(tmp_path: Path,
                                                                 script: Path) -> None:
    gate = tmp_path / "s.gate"
    os.mkfifo(gate)
    sup, _ = supervisor(tmp_path, [service("s", script, mode="slowstop")])
    try:
        await sup.start()
        restart = asyncio.create_task(sup.restart_service("s"))
        await until(lambda: state(sup, "s")["state"] == "stopping", "the restart to stop s")
        stop = asyncio.create_task(sup.stop_service("s"))  # comes while it is stopping
        open_gate(gate)
        await stop
        with pytest.raises(ServiceError, match="s was stopped by the operator while "
                                               "restarting; not started again"):
            await restart
        assert state(sup, "s")["state"] == "stopped"
        assert state(sup, "s")["reason"] == "stopped by operator"
        # two restarts at once: the later one starts it, once
        await sup.start_service("s")
        pid = state(sup, "s")["pid"]
        first = asyncio.create_task(sup.restart_service("s"))
        await until(lambda: state(sup, "s")["state"] == "stopping", "the restart to stop s")
        second = asyncio.create_task(sup.restart_service("s"))
        open_gate(gate)
        await second
        await first
        assert state(sup, "s")["state"] == "healthy" and state(sup, "s")["pid"] != pid
    finally:
        open_gate(gate)  # for the last stop
        await sup.stop()


async def test_an_auto_port_busy_at_restart_is_waited_for_not_replaced(
        tmp_path: Path, script: Path) -> None:
    squatter = socket.socket()
    waits: list[float] = []
    held: dict[str, int] = {}

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:  # someone takes the port while db is down
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", held["port"]))
            squatter.listen()
        elif len(waits) == 2:
            squatter.close()

    sup, rec = supervisor(tmp_path, [service("db", script), service("api", script, "db")],
                          sleep=sleep)
    try:
        await sup.start()
        db = state(sup, "db")
        held["port"] = db["port"]
        os.kill(db["pid"], signal.SIGKILL)
        await until(lambda: state(sup, "db")["state"] == "healthy"
                    and state(sup, "db")["pid"] != db["pid"], "db to come back")
        assert state(sup, "db")["port"] == db["port"] == sup.ports["db"]
        backoffs = [c["reason"] for c in rec.of("db") if c["state"] == "backoff"]
        assert backoffs[1] == f"could not start: port {db['port']} in use; restart 2 of 3 in 0.1s"
        assert env_of(tmp_path, "api")["DB_URL"] == db["url"]
    finally:
        squatter.close()
        await sup.stop()


async def test_unhealthy_without_restart_is_reported_once(tmp_path: Path,
                                                          script: Path) -> None:
    checks = HealthCheck(kind="http", path="/health", interval=0.05, timeout=2.0, failures=2)
    sup, rec = supervisor(tmp_path, [service("db", script, health=checks, restart="no")])
    try:
        await sup.start()
        (tmp_path / "db.sick").touch()
        await until(lambda: state(sup, "db")["state"] == "unhealthy", "db to be unhealthy")
        seen = len(rec.of("db"))
        checks = tmp_path / "db.checks"
        answered = checks.stat().st_size
        await until(lambda: checks.stat().st_size >= answered + 10, "ten more failed checks")
        # ten more failed checks: nothing new to say
        assert len(rec.of("db")) == seen
        assert state(sup, "db")["reason"] == (
            "unhealthy: 2 checks failed in a row (HTTP 503 (expected 200))")
        (tmp_path / "db.sick").unlink()
        await until(lambda: state(sup, "db")["state"] == "healthy", "db to recover")
        assert state(sup, "db")["reason"] == "recovered"
    finally:
        await sup.stop()


async def test_processes_that_leave_the_group_are_stopped_and_threads_do_not_pile_up(
        tmp_path: Path, script: Path) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    sup, _ = supervisor(tmp_path, [service("esc", script, mode="escape"),
                                   service("hide", script, mode="hide")])
    hidden: list[int] = []
    stray = None
    try:
        await sup.start()
        hidden.append(int((tmp_path / "hide.child").read_text()))
        first = int((tmp_path / "esc.child").read_text())
        await sup.restart_service("esc")
        assert dead(first)
        second = int((tmp_path / "esc.child").read_text())
        assert second != first and not dead(second)
        assert "stopped 1 process(es) that left its group" in (
            tmp_path / "logs" / "esc.log").read_text()
        # untagged: nothing finds it, yet the output thread does not wait for it for ever
        await sup.stop_service("hide")
        assert not dead(hidden[0])
        assert drain_threads() == ["service log esc"]
        # tagged with a service that is not running: only the shutdown's sweep finds it
        env = dict(os.environ, MARROW_SERVICE="hide", MARROW_SERVICE_DIR=str(tmp_path / "logs"))
        stray = subprocess.Popen([sys.executable, "-c", IDLE],
                                 env=env, start_new_session=True)
        await until(lambda: "hide" in left_behind(tmp_path / "logs"), "the stray's environment")
    finally:
        await sup.stop()
        for pid in hidden:
            os.kill(pid, signal.SIGKILL)
    assert dead(second)
    assert stray is not None and await asyncio.to_thread(stray.wait, 5) == -signal.SIGTERM
    assert drain_threads() == []
    assert len(os.listdir("/proc/self/fd")) <= fds


async def test_a_blocked_service_starts_when_its_dependency_comes_back(
        tmp_path: Path, script: Path) -> None:
    db = service("db", script, enabled=False)
    sup, rec = supervisor(tmp_path, [db, service("api", script, "db")])
    try:
        await sup.start()
        assert state(sup, "db")["state"] == "stopped" and state(sup, "db")["reason"] == "disabled"
        assert state(sup, "api")["state"] == "blocked"
        assert state(sup, "api")["reason"] == "waiting for db, which is stopped (disabled)"
        await sup.start_service("db")
        await until(lambda: state(sup, "api")["state"] == "healthy", "api to start")
    finally:
        await sup.stop()


async def test_processes_a_killed_run_left_behind_are_stopped_at_start(
        tmp_path: Path, script: Path) -> None:
    logs = tmp_path / "logs"
    env = dict(os.environ, MARROW_SERVICE="db", MARROW_SERVICE_DIR=str(logs))
    stray = subprocess.Popen([sys.executable, "-c", IDLE], env=env,
                             start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", IDLE],
                             env=env | {"MARROW_SERVICE_DIR": str(tmp_path / "elsewhere")},
                             start_new_session=True)
    try:
        await until(lambda: "db" in left_behind(logs), "the stray to have its environment")
        sup, _ = supervisor(tmp_path, [service("db", script)])
        try:
            await sup.start()
            assert sup.left_behind == {"db": [stray.pid]}
            assert await asyncio.to_thread(stray.wait, 5) == -signal.SIGTERM
            assert other.poll() is None  # another runtime's: not ours to stop
            assert left_behind(logs) == {"db": [state(sup, "db")["pid"]]}
        finally:
            await sup.stop()
    finally:
        for proc in (stray, other):
            proc.kill()
            proc.wait()


# ---- the example ---------------------------------------------------------------------------------


async def test_the_example_starts_in_order_survives_a_kill_and_stops_cleanly(
        tmp_path: Path) -> None:
    from dataclasses import replace

    from marrow_tui.config.load import load_config

    root = Path(__file__).resolve().parents[2] / "examples" / "services"
    loaded = load_config(root / "marrow.toml")
    assert loaded.config is not None, loaded.diagnostics
    services = [replace(s, command=(sys.executable, *s.command[1:]), backoff_initial=0.1)
                for s in loaded.config.services]
    assert [s.name for s in services] == ["db", "cache", "api"]
    sup, rec = supervisor(tmp_path, services)
    try:
        await sup.start()
        assert sup.waves == [["db", "cache"], ["api"]]
        assert rec.first("db", "healthy") < rec.first("api", "starting")
        assert rec.first("cache", "healthy") < rec.first("api", "starting")
        api = state(sup, "api")
        status, body = await get(f"{api['url']}/hello/ada")
        assert status == 200 and json.loads(body)["visits"] == 1
        db = state(sup, "db")
        os.kill(db["pid"], signal.SIGKILL)
        await until(lambda: state(sup, "db")["state"] == "healthy"
                    and state(sup, "db")["pid"] != db["pid"], "db to come back")
        assert state(sup, "api")["reason"] == "db restarted"
        assert state(sup, "api")["pid"] == api["pid"]
        status, body = await get(f"{api['url']}/hello/ada")
        assert status == 200 and json.loads(body) | {"db": "", "cache": ""} == {
            "greeting": "hello, ada", "visits": 1, "cached": True, "db": "", "cache": ""}
    finally:
        await sup.stop()
    assert [c["name"] for c in rec.changes if c["state"] == "stopping"] == ["api", "db", "cache"]
    for name in ("db", "cache", "api"):
        log = (tmp_path / "logs" / f"{name}.log").read_text()
        last_two = log.splitlines()[-2:]  # it left on SIGTERM, by itself, no SIGKILL
        assert last_two[0] == f"{name}: stopped"
        assert last_two[1].endswith(f": {name} ended (stopped (shutting down))")


# ---- the parts ---------------------------------------------------------------------------------


def test_rotating_log_never_passes_its_bound(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "x.log", max_bytes=1000, backups=2)
    for _ in range(50):
        log.write(b"y" * 333)
    log.write(b"z" * 5000)  # bigger than a file: split
    log.note("--- marker")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.log", "x.log.1", "x.log.2"]
    assert all((tmp_path / f).stat().st_size <= 1000 for f in files)
    assert (tmp_path / "x.log").read_bytes().endswith(b"z\n--- marker\n")
    assert log.written == 50 * 333 + 5000 + len(b"\n--- marker\n")


async def test_health_checks(tmp_path: Path) -> None:
    free = pick_port()
    http = ServiceConfig(name="h", health=HealthCheck(kind="http", path="/x", timeout=1))
    assert await health.check(http, free) == (False, "connection refused")
    assert await health.check(ServiceConfig(name="t", health=HealthCheck(kind="tcp")), free) == (
        False, "connection refused")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await health.check(http, port) == (False, "HTTP 503 (expected 200)")
        expect = ServiceConfig(name="h", health=HealthCheck(kind="http", expect=503))
        assert await health.check(expect, port) == (True, "HTTP 503")
        tcp = ServiceConfig(name="t", health=HealthCheck(kind="tcp"))
        assert await health.check(tcp, port) == (True, f"port {port} open")

    def command(code: str, timeout: float = 5) -> ServiceConfig:
        return ServiceConfig(name="c", health=HealthCheck(
            kind="command", command=(sys.executable, "-c", code), timeout=timeout))

    assert await health.check(command("print('fine {port}')"), 7) == (True, "exit 0: fine 7")
    assert await health.check(command("print('no'); raise SystemExit(2)"), None) == (
        False, "exit 2: no")
    began = time.monotonic()
    slow = command("import os; print(os.getpid(), flush=True)\n" + IDLE, 0.5)
    assert await health.check(slow, None) == (False, "timed out after 0.5s")
    assert time.monotonic() - began < 5
    assert await health.check(ServiceConfig(name="n"), None) == (True, "running")
    background = command("import subprocess, sys; print(subprocess.Popen([sys.executable, "
                         "'-c', 'import signal; signal.pause()'], stdout=subprocess.DEVNULL, "
                         "stderr=subprocess.DEVNULL).pid)")
    ok, detail = await health.check(background, None)
    assert ok and detail.startswith("exit 0: ")
    left = int(detail.removeprefix("exit 0: "))
    await until(lambda: dead(left), "the check's background process to be killed", 5)
