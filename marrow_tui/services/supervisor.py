"""Helper services: started in dependency order, health-checked all along, restarted by policy.

`Supervisor` knows nothing of the runtime: it is given the `[[services]]` configs and a
callback, and reports every change as a plain dict (`{name, state, pid, port, url, health,
restarts, reason, since, at}`). What a user sees (start order, health, restarts, ports, how a
service is stopped) is in docs/configuration.md. Signals always go to a service's process
group, so a shell wrapper cannot hide the real server; a service's output is drained by a
thread (logs.py), never on the event loop.

Timeouts and polling use the event loop's monotonic time; the injected `clock` only stamps
the reported changes and measures the healthy stretch that resets the restart count, and the
injected `sleep` is only used for the backoff waits, so tests can check the sequence at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config.model import ServiceConfig
from ..core.graph import dependency_waves
from ..core.text import plural, seconds_text
from ..proc import (
    describe_exit,
    end_group,
    environ,
    group_alive,
    processes,
    signal_group,
    simple_command,
    spawning,
    stop_found,
    tail_line,
)
from . import health as health_checks
from .logs import BACKUPS, MAX_BYTES, Drainer, RotatingLog

log = logging.getLogger("marrow.services")

STATES = ("stopped", "starting", "healthy", "unhealthy", "backoff", "failed", "blocked",
          "stopping")
#: the environment variables every service process carries (children inherit them): its
#: name, and the supervisor's log folder (one per runtime), which together find it again
ENV_TAG = "MARROW_SERVICE"
ENV_HOME = "MARROW_SERVICE_DIR"
#: seconds left-behind processes get between SIGTERM and SIGKILL
LEFT_BEHIND_GRACE = 2.0
HOST = "127.0.0.1"
#: seconds between health checks while a service starts
START_POLL = 0.2
#: seconds of health after which the restarts-in-a-row count starts again from 0
STABLE_AFTER = 60.0
#: how long we wait for the output thread to reach the end of the pipe once the group is gone
DRAIN_WAIT = 1.0
#: the states in which a service's process is (or is about to be) up
RUNNING = frozenset({"starting", "healthy", "unhealthy", "stopping"})
#: the operator actions `Supervisor.refusal` knows
ACTIONS = ("start", "stop", "restart")


class ServiceError(Exception):
    """An operator action that cannot be done (unknown service, dependencies not healthy...)."""


class _CannotStart(Exception):
    """Why a service could not be spawned (follows "could not start: "). `final`: trying
    again cannot help (no command), so no restart policy retries it."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


@dataclass(eq=False)
class _Service:
    cfg: ServiceConfig
    log: RotatingLog
    state: str = "stopped"
    pid: int | None = None
    port: int | None = None
    health: str = ""
    #: restarts made by the policy, in all (what people see)
    restarts: int = 0
    #: restarts in a row (what the backoff and max_restarts count)
    in_row: int = 0
    reason: str = ""
    since: float = 0.0
    #: meant to run: started, and not stopped by the operator nor given up on
    wanted: bool = False
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = ""
    #: processes spawned so far (more than one: it was restarted)
    spawns: int = 0
    healthy_since: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    drainer: Drainer | None = None
    #: operator stops and restarts so far: a restart starts the service again only if no
    #: other operator action came while it was stopping it
    ops: int = 0
    last_op: str = ""
    dependents: list[_Service] = field(default_factory=list)
    last: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.cfg.name


class Supervisor:
    """Runs a set of services; see the module docstring for the rules."""

    def __init__(
        self,
        services: Sequence[ServiceConfig],
        *,
        folder: Path,
        logs: Path,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        ports: dict[str, int] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        log_max_bytes: int = MAX_BYTES,
        log_backups: int = BACKUPS,
    ) -> None:
        self.folder = Path(folder)
        self.logs = Path(logs)
        #: service name -> the port picked for `port = "auto"` (remember these across runs)
        self.ports: dict[str, int] = {}
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._remembered = dict(ports or {})
        self._svcs: dict[str, _Service] = {}
        for cfg in services:
            if cfg.name in self._svcs:
                raise ServiceError(f"two services are named {cfg.name!r}")
            self._svcs[cfg.name] = _Service(
                cfg, RotatingLog(self.logs / f"{_file_name(cfg.name)}.log", log_max_bytes,
                                 log_backups), since=clock())
        for svc in self._svcs.values():
            for dep in svc.cfg.depends_on:
                if dep.name in self._svcs and dep.name != svc.name:
                    self._svcs[dep.name].dependents.append(svc)
        waves, cycles = dependency_waves(services)
        #: names in start order, wave by wave (config order within a wave)
        self.waves: list[list[str]] = waves
        self._cycles = cycles
        self._order = [self._svcs[n] for wave in waves for n in wave] + [
            s for s in self._svcs.values() if not any(s.name in w for w in waves)]
        #: service name -> pids of a previous run's processes that start() stopped
        self.left_behind: dict[str, list[int]] = {}
        self._closing = False
        self._started = False
        self._reaped = False
        self._reconciling = False
        self._again = False
        self._changed = asyncio.Event()

    # ---- the API ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every enabled service, each once its dependencies are healthy. Returns when
        each has had its first outcome: healthy, failed, blocked, or waiting to restart."""
        self._closing = False
        self._started = True
        if not self._reaped:
            self._reaped = True
            found = await stop_services_left_behind(self.logs)
            for name, pids in sorted(found.items()):
                log.warning("service %s: stopped %d process(es) a previous run left behind: %s",
                            name, len(pids), ", ".join(map(str, pids)))
            self.left_behind = found
        for name, cycle in self._cycles.items():
            svc = self._svcs[name]
            svc.wanted = False
            self._set(svc, "failed", reason=f"dependency cycle: {cycle}")
        for svc in self._order:
            if svc.name in self._cycles or svc.task is not None:
                continue
            if svc.cfg.enabled:
                svc.wanted = True
            else:
                self._set(svc, "stopped", reason="disabled")
        self._reconcile()
        await self._until(self._settled)

    async def stop(self) -> None:
        """Stop everything, dependents before their dependencies (reverse waves; one wave at a
        time, its services together): SIGTERM to each group, `stop_grace`, SIGKILL."""
        self._closing = True
        groups = [[self._svcs[n] for n in wave] for wave in self.waves]
        groups.append([s for s in self._order if not any(s.name in w for w in self.waves)])
        for group in reversed(groups):
            await asyncio.gather(*(self._stop_one(s, "stopped (shutting down)") for s in group))
        found = await stop_services_left_behind(self.logs, names=set(self._svcs))
        for name, pids in sorted(found.items()):
            log.warning("service %s: stopped %d process(es) left after shutdown: %s",
                        name, len(pids), ", ".join(map(str, pids)))
        for svc in self._order:
            svc.log.close()

    async def start_service(self, name: str) -> None:
        """Start one service (operator). Refused while its dependencies are not healthy.
        Returns once it is healthy or its first attempt failed."""
        why = self.refusal(name, "start")
        if why:
            raise ServiceError(why)
        svc = self._svcs[name]
        if svc.task is not None:  # in backoff: do not wait it out, try now
            svc.in_row = 0
            svc.kick.set()
            await self._until(lambda: svc.state not in ("backoff", "starting"))
            return
        svc.in_row = 0
        self._started = True
        self._launch(svc)
        await self._until(lambda: svc.state != "starting")

    async def stop_service(self, name: str) -> None:
        """Stop one service (operator); it stays stopped until started again. Its dependents
        are told, not stopped."""
        svc = self._get(name)
        svc.ops += 1
        svc.last_op = "stop"
        await self._stop_one(svc, "stopped by operator")

    async def restart_service(self, name: str) -> None:
        """Stop and start one service (operator). Refused while its dependencies are not
        healthy (it would not start again)."""
        why = self.refusal(name, "restart")
        if why:
            raise ServiceError(why)
        svc = self._svcs[name]
        svc.ops += 1
        svc.last_op = "restart"
        ticket = svc.ops
        await self._stop_one(svc, "restarting (operator)")
        if svc.ops != ticket:  # another operator action came meanwhile: the later one wins
            if svc.last_op == "stop":
                raise ServiceError(f"{name} was stopped by the operator while restarting; "
                                   "not started again")
            return  # a later restart starts it
        await self.start_service(name)

    def refusal(self, name: str, action: str) -> str | None:
        """The sentence `action` ("start" | "stop" | "restart") on service `name` would be
        refused with right now, or None if it would be done. Synchronous, no side effect:
        ask before acting to show the operator why not (the action itself may still raise
        ServiceError if things change in between)."""
        if action not in ACTIONS:
            return f"unknown action {action!r} (start, stop or restart)"
        svc = self._svcs.get(name)
        if svc is None:
            return f"no service named {name!r}"
        if self._closing:
            return "the services are shutting down"
        if action == "stop":
            return None
        if action == "start" and svc.task is not None:
            if svc.state == "backoff":  # a start cuts the backoff short
                return None
            if svc.state == "stopping":
                return f"{name} is still stopping"
            return f"{name} is already {svc.state}"
        why = "; ".join(self._unready(svc))
        return f"cannot {action} {name}: {why}" if why else None

    def snapshot(self) -> list[dict[str, Any]]:
        """Every service's current state, in config order (the dict `on_change` gets)."""
        now = self._clock()
        return [self._view(svc) | {"at": now} for svc in self._svcs.values()]

    def log_path(self, name: str) -> Path:
        """The live log of a service (rotated copies beside it: .1 .2 .3)."""
        return self._get(name).log.path

    # ---- operator helpers ---------------------------------------------------------------------

    def _get(self, name: str) -> _Service:
        svc = self._svcs.get(name)
        if svc is None:
            raise ServiceError(f"no service named {name!r}")
        return svc

    async def _stop_one(self, svc: _Service, reason: str) -> None:
        svc.wanted = False
        task = svc.task
        if task is None:
            if svc.state in ("blocked", "failed"):
                self._set(svc, "stopped", reason=reason)
            return
        svc.stop_reason = reason
        svc.stop.set()
        await asyncio.wait([task])

    # ---- state, reports and dependencies --------------------------------------------------------

    def _view(self, svc: _Service) -> dict[str, Any]:
        return {
            "name": svc.name, "state": svc.state, "pid": svc.pid, "port": svc.port,
            "url": f"http://{HOST}:{svc.port}" if svc.port else "", "health": svc.health,
            "restarts": svc.restarts, "reason": svc.reason, "since": svc.since,
        }

    def _emit(self, svc: _Service) -> None:
        view = self._view(svc)
        if view == svc.last:
            return
        svc.last = view
        self._pulse()
        if self._on_change is not None:
            try:
                self._on_change(view | {"at": self._clock()})
            except Exception:  # a broken listener must not stop the supervision
                log.exception("service %s: on_change failed", svc.name)

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _set(self, svc: _Service, state: str | None = None, *, reason: str | None = None,
             **fields: Any) -> None:
        old = svc.state
        if state is not None and state != old:
            svc.state = state
            svc.since = self._clock()
        if reason is not None:
            svc.reason = reason
        for key, value in fields.items():
            setattr(svc, key, value)
        if svc.state not in RUNNING:  # no process: no health to show
            svc.health = ""
        self._emit(svc)
        if state is not None and state != old:
            self._tell_dependents(svc, old)
            self._reconcile()

    def _tell_dependents(self, svc: _Service, old: str) -> None:
        new = svc.state
        if not ((old == "healthy") != (new == "healthy") or new in ("failed", "stopped")):
            return
        if new == "healthy":
            news = f"{svc.name} restarted" if svc.spawns > 1 else f"{svc.name} is healthy"
        else:
            news = f"{svc.name} is {new}" + (f": {svc.reason}" if svc.reason else "")
        for dependent in svc.dependents:
            if dependent.task is not None and dependent.state in ("starting", "healthy",
                                                                   "unhealthy"):
                dependent.reason = news
                self._emit(dependent)

    def _waiting_for(self, svc: _Service) -> str:
        """Why `svc` cannot start now ("" when all its dependencies are healthy): the first
        dependency that is not healthy."""
        unready = self._unready(svc)
        return unready[0] if unready else ""

    def _unready(self, svc: _Service) -> list[str]:
        """One sentence for each dependency of `svc` that is not healthy, in config order."""
        found: list[str] = []
        for dep in svc.cfg.depends_on:
            other = self._svcs.get(dep.name)
            if other is None:
                why = f"waiting for {dep.name}, which is not configured (or is disabled)"
            elif other is svc:
                why = f"{svc.name} depends on itself"
            elif other.state == "healthy":
                continue
            elif other.state == "failed":
                why = f"waiting for {dep.name}, which failed: {other.reason}"
            elif other.state in ("stopped", "blocked"):
                why = f"waiting for {dep.name}, which is {other.state}" + (
                    f" ({other.reason})" if other.reason else "")
            else:
                why = f"waiting for {dep.name} ({other.state}" + (
                    f": {other.reason})" if other.reason and other.state != "starting" else ")")
            found.append(why)
        return found

    def _reconcile(self) -> None:
        """Start every wanted service whose dependencies are healthy; say why the others wait."""
        if self._reconciling:
            self._again = True
            return
        if self._closing or not self._started:
            return
        self._reconciling = True
        try:
            while True:
                self._again = False
                for svc in self._order:
                    if self._closing:
                        return
                    if not svc.wanted or svc.task is not None:
                        continue
                    if svc.state not in ("stopped", "blocked"):
                        continue
                    why = self._waiting_for(svc)
                    if why:
                        self._set(svc, "blocked", reason=why)
                    else:
                        self._launch(svc)
                if not self._again:
                    return
        finally:
            self._reconciling = False

    def _settled(self) -> bool:
        for svc in self._order:
            if svc.state in ("starting", "stopping"):
                return False
            if (svc.wanted and svc.task is None and svc.state in ("stopped", "blocked")
                    and not self._closing and not self._waiting_for(svc)):
                return False
        return True

    # ---- one service's life ---------------------------------------------------------------------

    def _launch(self, svc: _Service) -> None:
        svc.wanted = True
        svc.stop = asyncio.Event()
        svc.kick = asyncio.Event()
        svc.stop_reason = ""
        svc.task = asyncio.create_task(self._life(svc), name=f"service {svc.name}")
        self._set(svc, "starting", reason="", pid=None, health="")

    async def _life(self, svc: _Service) -> None:
        try:
            await self._attempts(svc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: say so rather than hang in "starting"
            log.exception("service %s: supervision failed", svc.name)
            svc.wanted = False
            svc.task = None
            self._set(svc, "failed", reason=f"supervision failed: {exc!r}", pid=None)
        finally:
            svc.task = None
            self._pulse()
            if not self._closing:
                self._reconcile()

    async def _attempts(self, svc: _Service) -> None:
        cfg = svc.cfg
        while True:
            if self._closing or svc.stop.is_set():
                self._set(svc, "stopped", reason=svc.stop_reason or "stopped", pid=None)
                return
            kind, reason, code = await self._attempt(svc)
            if kind in ("final", "cannot") and (kind == "final" or cfg.restart == "no"):
                svc.wanted = False
                self._set(svc, "failed", reason=reason, pid=None)
                return
            if kind == "stop" or self._closing or svc.stop.is_set():
                self._set(svc, "stopped", pid=None,
                          reason=reason if kind == "stop" else svc.stop_reason or reason)
                return
            failure = kind != "exit" or code != 0
            if cfg.restart == "no" or (cfg.restart == "on-failure" and not failure):
                svc.wanted = False
                if failure:
                    self._set(svc, "failed", reason=f'{reason} (restart = "{cfg.restart}")',
                              pid=None)
                else:
                    self._set(svc, "stopped", reason=f"exited: {reason}", pid=None)
                return
            if svc.healthy_since is not None and (
                    self._clock() - svc.healthy_since >= STABLE_AFTER):
                svc.in_row = 0
            n = svc.in_row + 1
            if cfg.max_restarts > 0 and n > cfg.max_restarts:
                svc.wanted = False
                self._set(svc, "failed", pid=None, reason=(
                    f"gave up after {plural(cfg.max_restarts, 'restart')} in a row: {reason}"))
                return
            delay = backoff_delay(cfg, n)
            of = f" of {cfg.max_restarts}" if cfg.max_restarts > 0 else ""
            self._set(svc, "backoff", pid=None,
                      reason=f"{reason}; restart {n}{of} in {seconds_text(delay)}")
            waited = await self._backoff(svc, delay)
            if waited == "stop":
                self._set(svc, "stopped", reason=svc.stop_reason or "stopped", pid=None)
                return
            svc.in_row = 0 if waited == "kick" else n
            svc.restarts += 1
            why = self._waiting_for(svc)
            if why:  # a restart is a start: it waits for the dependencies to be healthy
                self._set(svc, "blocked", reason=why)
                return

    async def _backoff(self, svc: _Service, delay: float) -> str:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopping = asyncio.ensure_future(svc.stop.wait())
        kicked = asyncio.ensure_future(svc.kick.wait())
        try:
            done, _ = await asyncio.wait({sleeper, stopping, kicked},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, stopping, kicked):
                fut.cancel()
        if stopping in done or svc.stop.is_set() or self._closing:
            return "stop"
        if kicked in done:
            svc.kick.clear()
            return "kick"
        return "slept"

    async def _attempt(self, svc: _Service) -> tuple[str, str, int | None]:
        """Run the service once: ("exit" | "stop" | "timeout" | "unhealthy" | "cannot",
        reason, exit code). The process group is gone when this returns."""
        svc.healthy_since = None
        self._set(svc, "starting", reason="", pid=None, health="")
        try:
            self._ensure_port(svc)
            proc = await self._spawn(svc)
        except _CannotStart as exc:
            reason = f"could not start: {exc}"
            svc.log.note(f"--- marrow-tui {self._stamp()}: {svc.name} {reason}")
            return "final" if exc.final else "cannot", reason, None
        svc.spawns += 1
        self._set(svc, pid=proc.pid)
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(svc.stop.wait())
        try:
            kind, reason = await self._watch(svc, exited, stopping)
            if kind == "exit" and await asyncio.to_thread(group_alive, proc.pid):
                await end_group(proc, svc.cfg.stop_grace)  # the leader left members behind
            elif kind != "exit":
                if kind == "stop":
                    reason = svc.stop_reason or "stopped"
                self._set(svc, "stopping", reason=reason)
                warnings = await end_group(proc, svc.cfg.stop_grace)
                if kind == "stop":  # a later stop (operator, after a restart) has the last word
                    reason = svc.stop_reason or "stopped"
                if warnings:
                    reason += f" ({'; '.join(warnings)})"
        except BaseException:  # cancelled: no time for a grace period
            signal_group(proc.pid, signal.SIGKILL)
            if svc.drainer is not None:
                svc.drainer.stop()
            raise
        finally:
            stopping.cancel()
            if not exited.done():
                exited.cancel()
        await self._stop_escaped(svc)
        await self._drained(svc)
        code = proc.returncode
        if kind == "exit":
            reason = describe_exit(code) + (" before it was healthy"
                                              if svc.healthy_since is None else "")
            last = tail_line(svc.log.path) if code is not None and code >= 0 else ""
            if last and not last.startswith("--- marrow-tui"):  # its last words, if any
                reason += f": {last}"
        svc.log.note(f"--- marrow-tui {self._stamp()}: {svc.name} ended ({reason})")
        return kind, reason, code

    async def _watch(self, svc: _Service, exited: asyncio.Future[int],
                     stopping: asyncio.Future[Any]) -> tuple[str, str]:
        """Health-check a running service until it exits, is stopped, or fails its checks:
        ("exit" | "stop" | "timeout" | "unhealthy", reason)."""
        cfg, checks = svc.cfg, svc.cfg.health
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.start_timeout
        detail = ""
        while True:  # starting: poll until healthy
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout", f"not healthy within {seconds_text(cfg.start_timeout)}" + (
                    f" (last check: {detail})" if detail else "")
            what, result = await self._race(self._check(svc, remaining), exited, stopping,
                                            remaining)
            if what in ("exit", "stop"):
                return what, ""
            if what == "done":
                ok, detail = result
                if ok:
                    break
                self._set(svc, health=detail)
            what, _ = await self._race(asyncio.sleep(START_POLL), exited, stopping)
            if what in ("exit", "stop"):
                return what, ""
        svc.healthy_since = self._clock()
        self._set(svc, "healthy", reason="", health=detail)
        failures = 0
        while True:  # healthy (or unhealthy with restart = "no"): check every interval
            what, _ = await self._race(asyncio.sleep(checks.interval), exited, stopping)
            if what in ("exit", "stop"):
                return what, ""
            what, result = await self._race(self._check(svc, None), exited, stopping)
            if what in ("exit", "stop"):
                return what, ""
            ok, detail = result
            if ok:
                failures = 0
                if svc.state != "healthy":
                    svc.healthy_since = self._clock()
                    self._set(svc, "healthy", reason="recovered", health=detail)
                else:
                    self._set(svc, health=detail)
                continue
            failures += 1
            if failures < checks.failures:
                self._set(svc, health=f"{detail} ({failures} of {checks.failures} failed)")
                continue
            if svc.state == "unhealthy":  # restart = "no": said once, only the health moves
                self._set(svc, health=detail)
                continue
            reason = f"unhealthy: {failures} checks failed in a row ({detail})"
            self._set(svc, "unhealthy", reason=reason, health=detail)
            if cfg.restart in ("on-failure", "always"):
                return "unhealthy", reason

    async def _check(self, svc: _Service, limit: float | None) -> tuple[bool, str]:
        return await health_checks.check(svc.cfg, svc.port, cwd=svc.cwd, env=svc.env,
                                         timeout=limit)

    @staticmethod
    async def _race(work: Awaitable[Any], exited: asyncio.Future[int],
                    stopping: asyncio.Future[Any],
                    timeout: float | None = None) -> tuple[str, Any]:
        """Await `work` unless the process exits or a stop is asked for first:
        ("done", result) | ("exit", None) | ("stop", None) | ("timeout", None)."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task, exited, stopping}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        if exited in done:
            return "exit", None
        if stopping in done:
            return "stop", None
        if task in done:
            return "done", task.result()
        return "timeout", None

    async def _stop_escaped(self, svc: _Service) -> None:
        """Once the group is gone: stop what still carries this service's tag (processes
        that left the group: setsid, daemonised), as a previous run's leftovers are."""
        found = await stop_services_left_behind(self.logs, svc.cfg.stop_grace,
                                                names={svc.name})
        pids = found.get(svc.name, [])
        if pids:
            text = ", ".join(map(str, pids))
            log.warning("service %s: stopped %d process(es) that left its group: %s",
                        svc.name, len(pids), text)
            svc.log.note(f"--- marrow-tui {self._stamp()}: {svc.name}: stopped "
                         f"{len(pids)} process(es) that left its group: {text}")

    async def _drained(self, svc: _Service) -> None:
        """Let the output thread reach the end of the pipe, bounded: a process we could not
        find (it left the group and dropped our tag) may hold the pipe open for ever. Then
        the thread is told to stop, and closes its end: no thread nor fd outlives the run."""
        drainer, svc.drainer = svc.drainer, None
        if drainer is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_WAIT
        while drainer.is_alive() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if drainer.is_alive():
            drainer.stop()
            deadline = loop.time() + DRAIN_WAIT
            while drainer.is_alive() and loop.time() < deadline:
                await asyncio.sleep(0.01)

    # ---- spawning ------------------------------------------------------------------------------

    async def _spawn(self, svc: _Service) -> asyncio.subprocess.Process:
        cfg = svc.cfg
        port = svc.port

        def fill(text: str) -> str:
            return text.replace("{port}", str(port)) if port is not None else text

        if cfg.command:
            argv = [fill(word) for word in cfg.command]
        elif cfg.shell:
            line = fill(cfg.shell)
            argv = ["/bin/sh", "-c", f"exec {line}" if simple_command(line) else line]
        else:
            raise _CannotStart("no command", final=True)
        cwd = self.folder if cfg.cwd is None else (
            cfg.cwd if cfg.cwd.is_absolute() else self.folder / cfg.cwd)
        if not cwd.is_dir():
            raise _CannotStart(f"cwd is not a folder: {cwd}")
        svc.cwd = cwd
        svc.env = self._environment(svc, fill)
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            raise _CannotStart(f"cannot make a pipe: {exc.strerror or exc}") from None
        try:
            async with spawning():  # one fork at a time keeps the loop answering
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_end,
                    stderr=write_end, cwd=cwd, env=svc.env, start_new_session=True)
        except FileNotFoundError:
            os.close(read_end)
            raise _CannotStart(f"command not found: {argv[0]}") from None
        except PermissionError:
            os.close(read_end)
            raise _CannotStart(f"permission denied: {argv[0]}") from None
        except (OSError, ValueError) as exc:
            os.close(read_end)
            raise _CannotStart(f"{argv[0]}: {getattr(exc, 'strerror', None) or exc}") from None
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        svc.log.note(f"--- marrow-tui {self._stamp()}: {svc.name} started, pid {proc.pid}"
                     + (f", port {port}" if port is not None else "")
                     + f": {shlex.join(argv)}")
        svc.drainer = Drainer(read_end, svc.log, name=f"service log {svc.name}")
        return proc

    def _environment(self, svc: _Service, fill: Callable[[str], str]) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MARROW_SESSION", None)  # a service is not part of a run of ours
        for secret in ("MARROW_OPERATOR_TOKEN", "MARROW_AGENT_KEY"):  # nor an operator or agent
            env.pop(secret, None)
        env["SERVICE_NAME"] = svc.name
        if svc.port is not None:
            url = f"http://{HOST}:{svc.port}"
            env.update(PORT=str(svc.port), MARKPACT_PORT=str(svc.port), SERVICE_URL=url,
                       SERVICE_HOST=HOST)
        for dep in svc.cfg.depends_on:
            other = self._svcs.get(dep.name)
            if other is None or other.port is None:
                continue
            url = f"http://{HOST}:{other.port}"
            prefix = other.cfg.env_name
            env.update({f"{prefix}_HOST": HOST, f"{prefix}_PORT": str(other.port),
                        f"{prefix}_URL": url})
            if dep.env:
                env[dep.env] = url
        env.update({key: fill(value) for key, value in svc.cfg.env})
        env[ENV_TAG] = svc.name
        env[ENV_HOME] = str(self.logs.absolute())
        return env

    def _ensure_port(self, svc: _Service) -> None:
        wanted = svc.cfg.port
        if wanted is None:
            svc.port = None
            return
        if wanted > 0:
            svc.port = wanted
            return
        if svc.port:  # assigned in this run: dependents have its address, it must not move
            if not port_free(svc.port):
                raise _CannotStart(f"port {svc.port} in use")
            return
        taken = {s.port for s in self._svcs.values() if s is not svc and s.port}
        taken |= {s.cfg.port for s in self._svcs.values() if s.cfg.port}
        remembered = self._remembered.get(svc.name)
        if remembered and remembered not in taken and port_free(remembered):
            svc.port = remembered
        else:
            svc.port = pick_port(taken)
        self.ports[svc.name] = svc.port

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self._clock()).isoformat(timespec="seconds")


# ---- helpers ------------------------------------------------------------------------------------


def backoff_delay(cfg: ServiceConfig, n: int) -> float:
    """The wait before restart `n` in a row (1-based): initial * 2**(n-1), at most the max."""
    initial = max(0.0, cfg.backoff_initial)
    return min(initial * 2 ** max(0, n - 1), max(initial, cfg.backoff_max))


def left_behind(home: Path) -> dict[str, list[int]]:
    """Live processes tagged as services of the supervisor whose log folder is `home`, by
    service name: what a killed marrow-tui left running. Read from /proc/<pid>/environ, so
    a reused pid is never mistaken for one of ours; {} where there is no /proc."""
    mine = f"{ENV_HOME}={Path(home).absolute()}".encode()
    tag = f"{ENV_TAG}=".encode()
    found: dict[str, list[int]] = {}
    for pid, _stat in processes():
        items = environ(pid)
        if mine not in items:
            continue
        name = next((item[len(tag):].decode("utf-8", "replace") for item in items
                     if item.startswith(tag)), "?")
        found.setdefault(name, []).append(pid)
    return found


async def stop_services_left_behind(home: Path, grace: float = LEFT_BEHIND_GRACE, *,
                                    names: set[str] | None = None) -> dict[str, list[int]]:
    """SIGTERM every process `left_behind(home)` finds (only those of the services `names`,
    when given), SIGKILL what is left after `grace`; what was found. The /proc scans run in
    a thread."""

    def scan() -> dict[str, list[int]]:
        return {n: pids for n, pids in left_behind(home).items() if names is None or n in names}

    found = await asyncio.to_thread(scan)
    if found:
        await stop_found(found, scan, grace, kill_wait=0.0)
    return found


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be bound now (a listener anywhere on it says no)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(taken: set[int] | frozenset[int] = frozenset()) -> int:
    """A free port on 127.0.0.1, chosen by the kernel, not one of `taken`."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise _CannotStart("no free port found")


def _file_name(name: str) -> str:
    """A service name as a file name (no separators, no leading dot)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return safe or "service"
