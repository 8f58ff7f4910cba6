"""The scheduler: configured agents run on their heartbeats, inside the runtime.

One driver task holds every agent's `Schedule` (the pure rules in core/sessions.py) and starts
a run when one is due; each run is its own task. Everything the scheduler does is an event on
the runtime's command path: sessions begin and end in the log (so a restart shows them), and
the console and `--no-ui` learn about them from the change feed like everything else.

Operators and agents reach it through verbs on the hub: `wake`, `task_add`, `task_list`,
`sessions_request`, and (operators only) `session_stop` and `agent_pause`.

Pausing an agent is state of the runtime, not of the config: an `agent_paused` event in the
log, so it outlives a restart and the operator's marrow.toml is never written to. An agent
with `enabled = false` in the file stays off whatever is paused or resumed.

The config file is watched: a valid change applies at once to idle agents and to running ones
at their next run; an invalid one keeps the last good config and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agent_session import (
    AgentSession,
    Limits,
    agent_environment,
    launch_argv,
    live_sessions,
    marrow_mcp_server,
)
from ..agents.acp import READ_TIMEOUT
from ..config.load import Loaded, load_config
from ..config.model import AgentConfig, Config
from ..aio import within
from ..core.events import Event, Refusal
from ..core.sessions import Schedule
from ..hub.secrets import agent_key
from ..own_command import run_environment, write_own_command
from ..proc import KILL_WAIT, leader_fields, tail_line
from ..protocol.frames import Call, text_field
from ..runtime import Producer
from .checkout import CheckoutError, ensure_checkout
from .prompt import PromptError, assemble
from .review import AgentReview
from .runner import RunResult, StopRequest, prune_logs, run_session, session_id
from .tasks import READ_CAP, Task, add_task, list_tasks, move_tasks

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("marrow.scheduler")

#: how often the last output line of running sessions is looked at
OUTPUT_POLL = 1.0
#: every this many output polls, the queue lengths are counted again
QUEUE_POLLS = 5
#: seconds before watching the config again after the watch failed
WATCH_RETRY = 5.0
#: the most queued tasks one run is handed (the rest wait for the next run)
MAX_TASKS_PER_RUN = 20
#: a queue this long refuses new tasks
MAX_QUEUE = 1000
#: the longest wake reason kept (it is shown in the console and written to the log)
MAX_REASON = 200
#: the most tasks per agent and folder a `task_list` reply lists
MAX_LISTED = 200
#: end states that count as the agent failing (and so lengthen its next wait)
FAILED = frozenset({"failed", "timeout", "error"})


@dataclass(slots=True)
class _Run:
    agent: AgentConfig
    session: str
    stop: StopRequest = field(default_factory=StopRequest)
    task: asyncio.Task[RunResult | None] | None = None
    last_line: str = ""
    stdout: Path | None = None


class Scheduler(Producer):
    def __init__(
        self,
        runtime: Runtime,
        config: Config | None,
        *,
        hub_uri: str = "",
        token: str | None = None,
        watch: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(runtime)
        self.config = config
        self.hub_uri = hub_uri
        self.token = token
        self.watch = watch
        self.clock = clock or runtime.clock
        self.schedules: dict[str, Schedule] = {}
        self.runs: dict[str, _Run] = {}  # by agent name
        self._poke = asyncio.Event()
        self._retiring: set[str] = set()
        self._stopping = False
        #: set on stop: the config watch ends (its thread would keep the loop from closing)
        self._watch_stop = asyncio.Event()
        #: the `marrow-tui` the runs call (see own_command.py); written at start
        self.own_command: Path | None = None
        #: the review verbs for agents with `workspace_git`
        self.review = AgentReview(self)

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self, *, loop: bool = True) -> None:
        """Serve the verbs, take up the config, and (with `loop`) start the heartbeats."""
        decider = self.runtime.decider
        assert decider is not None, "start the runtime first"
        decider.register("wake", self._serving(self._verb_wake))
        decider.register("task_add", self._serving(self._verb_task_add))
        decider.register("task_list", self._verb_task_list)
        decider.register("sessions_request", self._verb_sessions)
        decider.register("session_stop", self._verb_stop)
        decider.register("agent_pause", self._serving(self._verb_pause))
        self.review.serve()
        live_sessions(self.runtime)  # session_prompt and session_cancel, for every ACP run
        self.own_command = write_own_command(self.runtime.options.state_dir)
        self._return_interrupted_tasks()
        if self.config is not None:
            # The warnings of the load that produced this config (clamps, ignored keys).
            self._status(self.config, load_config(self.config.path).warnings)
            self._adopt(self.config, start=loop)
        if loop:
            self.review.start()
            self._spawn(self._drive(), "scheduler")
            self._spawn(self._follow_output(), "run-output")
            if self.watch and self.config is not None:
                self._spawn(self._watch(), "config-watch")

    async def stop(self, grace: float | None = None) -> None:
        """Stop the loops, stop every run (SIGTERM, then SIGKILL after its grace; with the
        processes that left its session carrying its tag), and return only once each run has
        ended, "stopped at shutdown", and said so in the log."""
        self._stopping = True
        self._watch_stop.set()
        self.review.stop()
        await self._stop_tasks()
        runs = [run.task for run in self.runs.values() if run.task is not None]
        for run in self.runs.values():
            run.stop.shutdown()
        if not runs:
            return
        longest = max(run.agent.stop_grace for run in self.runs.values())
        limit = (longest if grace is None else grace) + KILL_WAIT
        _, late = await asyncio.wait(runs, timeout=limit)
        for task in late:  # cancelling a run kills its process group, then records the end
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=KILL_WAIT)

    def poke(self) -> None:
        """Look at the schedules again now (after a wake, a config change, a fake clock step)."""
        self._poke.set()

    # ---- config --------------------------------------------------------------------------

    def reload(self) -> Loaded | None:
        """Read the config file again; apply it if valid, else keep the last good one."""
        if self.config is None:
            return None
        loaded = load_config(self.config.path)
        if loaded.errors or loaded.config is None:
            for problem in loaded.errors:
                log.warning("config not applied: %s", problem)
            self._status(self.config, loaded.diagnostics, ok=False)
        else:
            self._status(loaded.config, loaded.diagnostics)
            self._adopt(loaded.config, start=True)
        return loaded

    def _status(self, config: Config, diagnostics: list[Any], ok: bool = True) -> None:
        data = {
            "path": str(config.path), "ok": ok, "at": self.clock(),
            "agents": [a.name for a in config.agents],
            "errors": [str(d) for d in diagnostics if d.severity == "error"],
            "warnings": [str(d) for d in diagnostics if d.severity == "warning"],
        }
        self._emit(Event("config_status", data))

    def _adopt(self, config: Config, *, start: bool) -> None:
        now = self.clock()
        self.config = config
        names = {agent.name for agent in config.agents}
        for agent in config.agents:
            schedule = self.schedules.get(agent.name)
            runs = self._runs_on_heartbeat(agent)
            if schedule is None:
                schedule = Schedule(agent.name, float(agent.heartbeat_interval), runs)
                self.schedules[agent.name] = schedule
                if start:
                    schedule.start(now)
            else:
                schedule.reconfigure(now, float(agent.heartbeat_interval), runs)
            self._retiring.discard(agent.name)
        for name in list(self.schedules):
            if name in names:
                continue
            if name in self.runs:
                # Removed while it runs: the run finishes, then the agent goes.
                self._retiring.add(name)
                self.schedules[name].reconfigure(now, self.schedules[name].interval, False)
            else:
                self._forget(name)
        self._publish()
        self.poke()

    def _runs_on_heartbeat(self, agent: AgentConfig) -> bool:
        """Enabled in the config and not paused by an operator."""
        return agent.enabled and agent.name not in self.runtime.state.sessions.paused

    def _forget(self, name: str) -> None:
        self.schedules.pop(name, None)
        self._retiring.discard(name)
        self._emit(Event("agent_removed", {"agent": name}))

    async def _watch(self) -> None:
        from watchfiles import awatch

        assert self.config is not None
        path = self.config.path.resolve()

        def only_config(_change: object, changed: str) -> bool:
            return Path(changed).name == path.name

        # Editors replace files by renaming; watch the folder, keep the one name. If watching
        # fails (the folder went away, no inotify watches left), say so and try again.
        while not self._watch_stop.is_set():
            try:
                async for _changes in awatch(path.parent, watch_filter=only_config,
                                             debounce=200, step=50, recursive=False,
                                             stop_event=self._watch_stop, rust_timeout=1000):
                    if path.exists():
                        self.reload()
            except Exception as exc:
                log.warning("cannot watch %s (%s); trying again in %gs", path, exc,
                            WATCH_RETRY)
            if not self._watch_stop.is_set():
                await asyncio.sleep(WATCH_RETRY)

    # ---- the heartbeat driver ------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            self._poke.clear()
            now = self.clock()
            for schedule in list(self.schedules.values()):
                # (an accept or a discard at work in its worktree holds it back)
                if schedule.due(now) and not self._stopping and \
                        schedule.name not in self.review.busy:
                    self._launch(schedule, now)
            upcoming = [s.next_at for s in self.schedules.values()
                        if s.enabled and s.running is None and s.next_at is not None]
            timeout = max(0.0, min(upcoming) - self.clock()) if upcoming else None
            await within(self._poke.wait(), timeout)

    def _launch(self, schedule: Schedule, now: float) -> None:
        assert self.config is not None
        agent = self.config.agent(schedule.name)
        if agent is None:
            return
        sid = self._new_id(agent.name, now)
        trigger = schedule.begin(sid)
        run = _Run(agent, sid)
        self.runs[agent.name] = run
        run.task = asyncio.create_task(self._run(run, trigger), name=f"run {sid}")
        self._publish(agent.name)

    def _new_id(self, name: str, now: float) -> str:
        sid = session_id(name, datetime.fromtimestamp(now))
        known = self.runtime.state.sessions.by_id
        if sid not in known:
            return sid
        n = 2
        while f"{sid}-{n}" in known:
            n += 1
        return f"{sid}-{n}"

    async def run_once(self, names: list[str] | None = None) -> list[RunResult | None]:
        """One run of each (enabled, or named) agent, all at once; their results in order."""
        assert self.config is not None
        now = self.clock()
        chosen = [a for a in self.config.agents
                  if (a.name in names if names else a.enabled)]
        runs = []
        for agent in chosen:
            schedule = self.schedules.setdefault(
                agent.name, Schedule(agent.name, float(agent.heartbeat_interval), True))
            schedule.wake(now, "run-once")
            self._launch(schedule, now)
            runs.append(self.runs[agent.name])
        return [await run.task if run.task is not None else None for run in runs]

    # ---- one run -------------------------------------------------------------------------

    async def _run(self, run: _Run, trigger: str) -> RunResult | None:
        """One session, from taking the queued tasks to the end event; never raises but
        CancelledError, and always ends what it began (the session, the run, the schedule)."""
        agent, sid = run.agent, run.session
        run.stdout = agent.log_dir / f"{sid}.stdout.log"
        started = self.clock()
        handed: list[Task] = []
        result: RunResult | None = None
        state, code, reason, last = "error", None, "", ""
        try:
            queued = (await asyncio.to_thread(list_tasks, agent.tasks_dir, "queue"))
            queued = queued[:MAX_TASKS_PER_RUN]
            # The names go in the log before the files move: if the process dies between
            # the two, the next start finds them by name and puts them back in the queue.
            acp = agent.protocol == "acp"
            self._emit(Event("session_start", {
                "id": sid, "agent": agent.name, "started": started, "trigger": trigger,
                # an ACP agent's stdout is the protocol: what it says is in its transcript
                "stdout": "" if acp else str(run.stdout),
                "stderr": str(agent.log_dir / f"{sid}.stderr.log"),
                "tasks": [str(t.path) for t in queued],
                **({"transcript": str(agent.log_dir / f"{sid}.transcript.jsonl")}
                   if acp else {}),
            }))
            if queued:
                await self.runtime.settled()
                handed = await asyncio.to_thread(_hand_over, queued)
            result = await self._assemble_and_run(run, handed)
            if result is None:
                who = "at shutdown" if run.stop.at_shutdown else "by operator"
                state, reason = "stopped", f"stopped {who} before it started"
            else:
                state, code, reason = result.state, result.code, result.reason
                last = result.last_line
                for warning in result.warnings:
                    log.warning("%s: %s", sid, warning)
        except asyncio.CancelledError:
            state, reason = "stopped", "stopped at shutdown"
            raise
        except (PromptError, CheckoutError) as exc:
            # a rules or role file the user broke, a checkout that cannot be made: one line
            log.warning("run %s could not run: %s", sid, exc)
            reason = f"could not run: {exc}"
        except Exception as exc:  # a bug of ours, or a broken task folder: this run only
            log.exception("run %s could not run", sid)
            reason = f"could not run: {exc}"
        finally:
            await self._end(run, started, handed, state, code, reason, last)
        return result

    async def _assemble_and_run(self, run: _Run, handed: list[Task]) -> RunResult | None:
        """Assemble the prompt (a stop cancels the context scripts), then run the session."""
        agent, sid = run.agent, run.session
        if run.stop.is_set():
            return None
        rules = self.config.rules_path if self.config is not None else None
        assembling = asyncio.ensure_future(assemble(agent, rules, tasks=handed))
        stopped = asyncio.ensure_future(run.stop.wait())
        try:
            await asyncio.wait({assembling, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not assembling.done():
                assembling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await assembling
        if assembling.cancelled():
            return None
        assembled = assembling.result()
        for warning in assembled.warnings:
            log.warning("%s: %s", sid, warning)
        if await asyncio.to_thread(ensure_checkout, agent):
            log.info("%s: made %s's worktree %s", sid, agent.name, agent.checkout)
        if agent.protocol == "acp":
            return await self._run_acp(run, assembled.prompt)
        return await run_session(
            agent, assembled.prompt, sid, env_extra=self._env(agent, sid),
            # The group and session ids go in the log: after a crash, the next start stops
            # what is left in them (proc.py).
            on_start=lambda pid: self._emit(Event("session_pid", {
                "id": sid, "agent": agent.name, "pid": pid, **leader_fields(pid)})),
            stop=run.stop, clock=self.clock,
        )

    async def _run_acp(self, run: _Run, prompt: str) -> RunResult:
        """The run as one ACP session: the prompt, and the turns its questions and the
        operator's follow-ups bring; it ends when the agent ends a turn with nothing left."""
        agent, sid = run.agent, run.session
        identity = self._env(agent, sid)
        started = self.clock()
        await asyncio.to_thread(agent.workspace.mkdir, parents=True, exist_ok=True)
        argv = launch_argv(agent.agent_command, own_command=self.own_command)
        session = AgentSession(
            self.runtime, self._emit, session=sid, agent=agent.name, task_id="",
            command=argv, workspace=agent.checkout,
            env=agent_environment(identity, agent.environment, argv),
            stderr_log=agent.log_dir / f"{sid}.stderr.log",
            transcript=agent.log_dir / f"{sid}.transcript.jsonl",
            mcp_servers=[marrow_mcp_server(identity)], policy=agent.permissions,
            limits=Limits(prompt=float(agent.heartbeat_timeout)), read_timeout=READ_TIMEOUT,
            stop=run.stop, is_done=lambda: False, continuation=None,
            lease_paths=agent.lease_paths)
        live = live_sessions(self.runtime)
        live.add(session)
        try:
            ending = await session.run(prompt)
        finally:
            live.remove(session)
        reason = ending.reason
        if ending.state == "stopped":
            reason = "stopped at shutdown" if run.stop.at_shutdown else "stopped by operator"
        return RunResult(sid=sid, agent=agent.name, started=started, ended=self.clock(),
                         pid=session.acp.pid, state=ending.state, code=ending.code,
                         reason=reason, stdout_path=Path(os.devnull),
                         stderr_path=agent.log_dir / f"{sid}.stderr.log",
                         last_line=ending.last_line)

    async def _end(self, run: _Run, started: float, handed: list[Task], state: str,
                   code: int | None, reason: str, last: str) -> None:
        """Put the tasks where they belong, record the end, free the agent: each step on its
        own, so one failing never leaves the agent marked as running."""
        agent, sid = run.agent, run.session
        ok = state == "ok"
        try:
            back = await asyncio.to_thread(move_tasks, [t.path for t in handed],
                                           "done" if ok else "queue")
            if not ok and back:
                reason += f"; {len(back)} task(s) back in the queue"
        except Exception as exc:
            log.exception("%s: could not move its tasks", sid)
            reason += f"; its tasks could not be moved: {exc}"
        if not ok:
            log.warning("%s: %s (%s)", sid, state, reason)
        try:
            self._emit(Event("session_end", {
                "id": sid, "agent": agent.name, "started": started, "ended": self.clock(),
                "state": state, "code": code, "reason": reason, "last_line": last,
                "tasks": [str(t.path) for t in handed],
            }))
        except Exception:
            log.exception("%s: could not record its end", sid)
        if self.runs.get(agent.name) is run:
            del self.runs[agent.name]
        schedule = self.schedules.get(agent.name)
        if schedule is not None:
            # A stop by the operator or a shutdown is not the agent failing: no backoff.
            schedule.finish(self.clock(), state not in FAILED)
        if agent.name in self._retiring:
            self._forget(agent.name)
        else:
            self._publish(agent.name)
        self.poke()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(prune_logs, agent.log_dir, agent.log_retention_days,
                                    agent.log_max_count, time.time())

    def _env(self, agent: AgentConfig, sid: str) -> dict[str, str]:
        env = {"MARROW_AGENT": agent.name, "MARROW_SESSION": sid,
               "MARROW_ASK_SCOPE": f"agent/{agent.name}",
               "MARROW_WORKSPACE": str(agent.workspace),
               "MARROW_CHECKOUT": str(agent.checkout)}
        if self.hub_uri:
            env["MARROW_HUB_URI"] = self.hub_uri
        if self.token:
            env["MARROW_TOKEN"] = self.token
        # Proof that the run is this agent (it may take its name back), and never the
        # operator's token, even if this marrow-tui was started with one in its environment.
        env["MARROW_AGENT_KEY"] = agent_key(self.runtime.options.state_dir, agent.name)
        env["MARROW_OPERATOR_TOKEN"] = ""
        # This very marrow-tui, first on PATH and as $MARROW_TUI, so an agent script calls the
        # subcommands of the runtime that runs it (not another install, not exit 127).
        if self.own_command is not None:
            env.update(run_environment(self.own_command,
                                       dict(agent.env).get("PATH", os.environ.get("PATH", ""))))
        return env

    def _return_interrupted_tasks(self) -> None:
        """Tasks handed to runs the last process left running go back to their queues.

        A run records its tasks by their queue names before moving them, so each is looked
        for in `delegated/` (where the run put it) and in `queue/` (if it never moved).
        """
        for data in self.runtime.interrupted:
            found = []
            for listed in (Path(p) for p in data.get("tasks", ())):
                delegated = listed.parent.parent / "delegated" / listed.name
                if delegated.exists():
                    found.append(delegated)
            try:
                back = move_tasks(found, "queue")
            except (OSError, ValueError) as exc:
                log.warning("%s was interrupted; its tasks could not be queued again: %s",
                            data["id"], exc)
                continue
            if back:
                log.warning("%s was interrupted; %d task(s) back in the queue",
                            data["id"], len(back))

    async def _follow_output(self) -> None:
        """Tell the console each running session's latest output line, once a second, and
        each agent's queue length every few seconds (agents and scripts move task files too).
        """
        polls = 0
        while True:
            await asyncio.sleep(OUTPUT_POLL)
            polls += 1
            if polls % QUEUE_POLLS == 0:
                await self._recount()
            for run in list(self.runs.values()):
                if run.stdout is None:
                    continue
                line = await asyncio.to_thread(tail_line, run.stdout)
                if line and line != run.last_line:
                    run.last_line = line
                    self._emit(Event("session_progress", {
                        "id": run.session, "agent": run.agent.name, "last_line": line}))

    async def _recount(self) -> None:
        agents = self.config.agents if self.config is not None else ()
        counts = await asyncio.to_thread(
            lambda: {a.name: _count(a.tasks_dir / "queue") for a in agents})
        views = self.runtime.state.sessions.agents
        for name, count in counts.items():
            view = views.get(name)
            if view is not None and view.queued != count and name in self.schedules:
                self._publish(name)

    # ---- the command path ----------------------------------------------------------------

    def _publish(self, name: str | None = None) -> None:
        names = [name] if name is not None else list(self.schedules)
        for agent_name in names:
            schedule = self.schedules.get(agent_name)
            if schedule is None:
                continue
            data = schedule.view()
            agent = self.config.agent(agent_name) if self.config is not None else None
            # The view says why it does not run: the config's word and the operator's apart.
            data["enabled"] = agent.enabled if agent is not None else schedule.enabled
            data["paused"] = agent_name in self.runtime.state.sessions.paused
            data["queued"] = _count(agent.tasks_dir / "queue") if agent is not None else 0
            self._emit(Event("agent_schedule", data))

    def wake(self, name: str, reason: str = "", by: str = "") -> Refusal | bool:
        """Run `name` now, or right after its current run. True if it starts at once."""
        schedule = self.schedules.get(name)
        if schedule is None or name in self._retiring:
            return Refusal("unknown_agent", f"No configured agent named '{name}'.")
        if name in self.runtime.state.sessions.paused:
            return Refusal("agent_paused", f"Agent '{name}' is paused; resume it first.")
        if not schedule.enabled:
            return Refusal("agent_disabled",
                           f"Agent '{name}' is disabled in the config; enable it first.")
        if self._stopping:
            return Refusal("stopping", "marrow-tui is stopping; no new runs start.")
        reason = reason.strip()
        if len(reason) > MAX_REASON or not reason.isprintable():
            return Refusal("bad_reason", f"A wake reason is one line of at most {MAX_REASON} "
                                         "printable characters.")
        now_ = schedule.wake(self.clock(), reason or (f"wake by {by}" if by else "wake"))
        self._emit(Event("wake", {"agent": name, "reason": reason, "by": by,
                                  "during_run": not now_}))
        self._publish(name)
        self.poke()
        return now_

    def add_task(self, name: str, title: str, body: str = "", by: str = "") -> Path | Refusal:
        agent = self.config.agent(name) if self.config is not None else None
        if agent is None or name in self._retiring:
            return Refusal("unknown_agent", f"No configured agent named '{name}'.")
        if len(body.encode()) > READ_CAP:
            return Refusal("bad_task", f"A task body is at most {READ_CAP // 1024} KiB.")
        if _count(agent.tasks_dir / "queue") >= MAX_QUEUE:
            return Refusal("queue_full", f"'{name}' already has {MAX_QUEUE} queued tasks.")
        try:
            path = add_task(agent.tasks_dir, title, body)
        except ValueError as exc:
            return Refusal("bad_task", str(exc))
        except OSError as exc:
            return Refusal("task_not_written", f"Could not write the task: {exc}.")
        self._emit(Event("task_queued", {"agent": name, "title": title.strip(),
                                         "file": str(path), "by": by}))
        self._publish(name)
        return path

    def stop_session(self, session: str) -> Refusal | None:
        for run in self.runs.values():
            if run.session == session:
                run.stop.set()
                return None
        return Refusal("not_running", f"Session '{session}' is not running.")

    def _verb_wake(self, call: Call) -> None:
        name = _field(call, "agent")
        outcome = self.wake(name, _field(call, "reason"), by=call.sender)
        if isinstance(outcome, Refusal):
            call.deny("error", outcome, agent=name)
        else:
            text = (f"Waking '{name}' now." if outcome
                    else f"'{name}' is running; it runs again as soon as this run ends.")
            call.reply("wake_result", text, agent=name, started=outcome)

    def _verb_task_add(self, call: Call) -> None:
        name = _field(call, "agent")
        outcome = self.add_task(name, _field(call, "title"), _field(call, "body"), call.sender)
        if isinstance(outcome, Refusal):
            call.deny("error", outcome, agent=name)
        else:
            call.reply("task_added", f"Task queued for '{name}'.", agent=name,
                       file=str(outcome))

    def _verb_task_list(self, call: Call) -> None:
        name = _field(call, "agent")
        agents = [a for a in (self.config.agents if self.config is not None else ())
                  if not name or a.name == name]
        if name and not agents:
            call.deny("error", Refusal("unknown_agent", f"No configured agent named '{name}'."))
            return
        tasks = []
        try:
            for agent in agents:
                for state in ("queue", "delegated"):
                    tasks += [{"agent": agent.name, "file": str(t.path), "title": t.title,
                               "state": t.state, "created": t.created}
                              for t in list_tasks(agent.tasks_dir, state)[:MAX_LISTED]]
        except (OSError, ValueError) as exc:
            call.deny("error", Refusal("tasks_unreadable", f"Cannot read the tasks: {exc}."))
            return
        call.reply("tasks", f"{len(tasks)} task(s)", tasks=tasks)

    def _verb_sessions(self, call: Call) -> None:
        book = self.runtime.state.sessions
        limit = call.frame.get("limit", 20)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            call.deny("error", Refusal("bad_frame", "'limit' must be a non-negative integer."))
            return
        sessions = [s.to_dict() for s in book.latest()[:limit]]
        agents = [vars_of(v) for v in book.agents.values()]
        call.reply("sessions", f"{len(sessions)} session(s)", sessions=sessions, agents=agents,
                   config=book.config, usage=book.usage_by_agent())

    def _verb_stop(self, call: Call) -> None:
        session = _field(call, "id") or _field(call, "session")
        if not call.operator:
            call.deny("error", Refusal("forbidden", "Only an operator stops runs."))
            return
        refusal = self.stop_session(session)
        # Not ours: another producer's run (an issue's) is stopped its own way.
        said = live_sessions(self.runtime).stop(session) if refusal is not None else None
        if said is not None:
            call.reply("session_stopping", said, id=session)
        elif refusal is not None:
            call.deny("error", refusal, id=session)
        else:
            call.reply("session_stopping", f"Stopping {session}.", id=session)


    def pause(self, name: str, paused: bool, by: str = "") -> Refusal | str:
        """Pause (no heartbeat runs; a run under way goes on) or resume an agent: an event in
        the log, so it holds after a restart. What happened, said in one sentence."""
        agent = self.config.agent(name) if self.config is not None else None
        if agent is None or name in self._retiring:
            return Refusal("unknown_agent", f"No configured agent named '{name}'.")
        book = self.runtime.state.sessions
        if paused == (name in book.paused):
            return f"'{name}' is already {'paused' if paused else 'running on its heartbeat'}."
        self._emit(Event("agent_paused", {"agent": name, "paused": paused, "by": by,
                                          "at": self.clock()}))
        schedule = self.schedules.get(name)
        if schedule is not None:
            schedule.reconfigure(self.clock(), schedule.interval, self._runs_on_heartbeat(agent))
        self._publish(name)
        self.poke()
        if paused:
            during = "; its current run goes on" if name in self.runs else ""
            return f"Paused '{name}': no new runs until it is resumed{during}."
        if not agent.enabled:
            where = self.config.path.name if self.config is not None else "the config"
            return f"Resumed '{name}', but enabled = false in {where} keeps it off."
        return f"Resumed '{name}': it runs now, then on its heartbeat."

    def _verb_pause(self, call: Call) -> None:
        """Pause or resume an agent (operators only); the config file is never touched."""
        name = _field(call, "agent")
        paused = call.frame.get("paused")
        if not call.operator:
            call.deny("error", Refusal("forbidden", "Only an operator pauses agents."))
            return
        if not isinstance(paused, bool):
            call.deny("error", Refusal("bad_frame", "'paused' must be true or false."))
            return
        outcome = self.pause(name, paused, call.sender)
        if isinstance(outcome, Refusal):
            call.deny("error", outcome, agent=name)
        else:
            call.reply("pause_result", outcome, agent=name, paused=paused)


def _hand_over(queued: list[Task]) -> list[Task]:
    """Move each queued task to delegated/; the ones that moved, with their new paths."""
    handed = []
    for task in queued:
        moved = move_tasks([task.path], "delegated")
        if moved:
            handed.append(replace(task, path=moved[0], state="delegated"))
    return handed


def _field(call: Call, name: str) -> str:
    """A text field, stripped; a field of another type is refused like in every verb."""
    return text_field(call.frame, name).strip()


def _count(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(".md"))
    except OSError:
        return 0


def vars_of(view: Any) -> dict[str, Any]:
    return {name: getattr(view, name) for name in view.__dataclass_fields__}
