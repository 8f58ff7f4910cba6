"""`marrow-tui demo`: a scripted team of agents, each a separate process on the wire.

Why processes and not in-process fakes: the demo should exercise exactly what a user's own
agents will (registration, claims, collisions, handoffs, progress, chat over a real socket),
so every pane of the console comes alive the same way it will in real use, and a bug the demo
shows is a bug a real agent would hit. The agent script lives in the source tree
(``examples/demo_team/agent.py``) so people can read it and copy it; an installed wheel does not
ship it, and :class:`DemoUnavailable` says so.

Headless mode and the console both use :class:`DemoTeam` the same way: ``await start()`` once the
hub listens, ``await stop()`` before it closes. Beside the team, the demo runs an issue
workflow whose agent speaks ACP (``examples/demo_team/acp``, copied by :func:`demo_workflow`
into the demo's state folder, so the example itself is never changed): its live transcript and
its permission request show in the console as a real coding agent's would. And a scheduled
agent (``examples/demo_team/reporter``, copied by :func:`demo_config`) runs once a minute and
asks the operator a question, so the Sessions and Steering panes have a heartbeat's runs and
a person's decision in them. Nothing here imports Textual or Rich.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .hub.server import ConfigError

AGENT_SCRIPT: Final = Path(__file__).resolve().parents[1] / "examples" / "demo_team" / "agent.py"
"""The agent program, found relative to this package in a source checkout."""

ACP_EXAMPLE: Final = AGENT_SCRIPT.parent / "acp"
"""The ACP workflow the demo runs (its WORKFLOW.md, an issue and a scripted ACP agent)."""

REPORTER_EXAMPLE: Final = AGENT_SCRIPT.parent / "reporter"
"""The scheduled agent the demo runs (its marrow.toml and a script that asks the operator)."""

DEFAULT_NAMES: Final = ("demo/planner", "demo/alice", "demo/bob", "demo/carol")
"""The first name is the planner, the others are builders; the full story needs three."""

PACE_ENV: Final = "MARROW_DEMO_PACE"
"""Seconds between an agent's steps when the caller gives none (tests set 0)."""

DEFAULT_PACE: Final = 1.0
STOP_GRACE: Final = 6.0
"""How long agents get to release their leases after SIGTERM before SIGKILL."""


class DemoUnavailable(ConfigError):
    """The demo cannot run here (a ConfigError, so the CLI prints it as one sentence)."""


@dataclass(frozen=True, slots=True)
class DemoAgent:
    """One agent process of the team, for a pane or a status line to show."""

    name: str
    role: str
    log_path: Path
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; its exit code once it has ended (negative: killed by a signal)."""
        return self.process.returncode


class DemoTeam:
    """Starts and stops the scripted agents against a hub at `uri`.

    Each agent's stdout and stderr go to ``<workdir>/<name>.log`` (``/`` becomes ``-``), never to
    a pipe nobody reads. The child environment carries the hub token as ``MARROW_TOKEN`` only
    when one is given, and no other ``MARROW_*`` setting of ours.
    """

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        workdir: Path,
        pace: float | None = None,
        names: Sequence[str] = DEFAULT_NAMES,
        seed: int | None = None,
        script: Path = AGENT_SCRIPT,
    ) -> None:
        if not names:
            raise ValueError("a demo team needs at least one name (the planner)")
        self.uri = uri
        self.token = token
        self.workdir = Path(workdir)
        self.pace = _pace(pace)
        self.names = tuple(names)
        self.seed = seed
        self.script = script
        self._agents: list[DemoAgent] = []

    @property
    def processes(self) -> list[DemoAgent]:
        """The agents started so far (a copy: changing it changes nothing)."""
        return list(self._agents)

    @property
    def running(self) -> bool:
        return any(agent.returncode is None for agent in self._agents)

    async def start(self) -> None:
        """Spawn one process per agent; a second call while they run does nothing."""
        if self.running:
            return
        if not self.script.is_file():
            raise DemoUnavailable(
                f"the demo needs a source checkout of marrow-tui: {self.script} is missing "
                "(clone the repository and run `pip install -e .` from it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._agents = []
        try:
            for index, name in enumerate(self.names):
                self._agents.append(await self._spawn(index, name))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """SIGTERM every agent, wait a bounded time, SIGKILL the rest; safe to call twice."""
        alive = [agent.process for agent in self._agents if agent.returncode is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if not alive:
            return
        waiting = asyncio.ensure_future(asyncio.gather(*(p.wait() for p in alive)))
        await asyncio.wait({waiting}, timeout=STOP_GRACE)
        for process in alive:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await waiting

    async def _spawn(self, index: int, name: str) -> DemoAgent:
        role = "planner" if index == 0 else "builder"
        log_path = self.workdir / f"{name.replace('/', '-')}.log"
        command = [sys.executable, str(self.script), "--uri", self.uri, "--name", name,
                   "--role", role, "--pace", repr(self.pace)]
        if self.seed is not None:
            command += ["--seed", str(self.seed + index)]
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT, env=self._environment(),
                cwd=self.workdir, start_new_session=True,
            )
        return DemoAgent(name, role, log_path, process)

    def _environment(self) -> dict[str, str]:
        """Our environment minus MARROW_* settings, plus the token and the source tree.

        The token travels in the environment, not on the command line, so `ps` does not show it.
        New sessions keep a terminal's Ctrl-C away from the agents: the team stops when we say.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
        if self.token:
            env["MARROW_TOKEN"] = self.token
        source = str(self.script.resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        return env


def demo_workflow(state_dir: Path, example: Path = ACP_EXAMPLE) -> Path:
    """The WORKFLOW.md of the demo's own copy of the ACP example, in `state_dir`.

    The copy is made once: a demo started again on the same state folder finds its issues
    where it left them. The example's own folder is only read.
    """
    return _copy_once(example, Path(state_dir) / "acp-demo", "WORKFLOW.md")


def demo_config(state_dir: Path, example: Path = REPORTER_EXAMPLE) -> Path:
    """The marrow.toml of the demo's own copy of its scheduled agent, in `state_dir` (made
    once, like the workflow's: the example's folder is only read)."""
    return _copy_once(example, Path(state_dir) / "reporter-demo", "marrow.toml")


def _copy_once(example: Path, copy: Path, name: str) -> Path:
    if not (example / name).is_file():
        raise DemoUnavailable(
            f"the demo needs a source checkout of marrow-tui: {example / name} is "
            "missing (clone the repository and run `pip install -e .` from it)")
    if not (copy / name).is_file():
        shutil.copytree(example, copy, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".symphony", ".marrow", "__pycache__"))
    return copy / name


def _pace(pace: float | None) -> float:
    """The pace given, else $MARROW_DEMO_PACE, else one second; never negative."""
    if pace is None:
        raw = os.environ.get(PACE_ENV, "")
        try:
            pace = float(raw) if raw.strip() else DEFAULT_PACE
        except ValueError:
            raise ConfigError(
                f"{PACE_ENV}={raw!r} is not a number of seconds (try {PACE_ENV}=0.5)") from None
    if not pace >= 0:
        raise ConfigError(f"the demo pace must be 0 or more seconds, not {pace!r}")
    return pace
