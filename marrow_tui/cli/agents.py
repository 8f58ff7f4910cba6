"""The scheduler's agents from a shell: `dry-run` and `run-once` on the config, `wake` and
`sessions` on the running marrow-tui (through its hub, so the console shows them at once).

Exit codes: 0 done; 1 a run failed or the hub refused; 2 a config or usage problem; 3 no
running marrow-tui could be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    SubParsers,
    hub_command,
)
from marrow_tui.cli.output import pick
from marrow_tui.cli.project import (
    add_config_option,
    config_path,
    config_state_dir,
    load_or_report,
    lock_holder,
)
from marrow_tui.core.text import cost_text, table, tokens_text

if TYPE_CHECKING:
    from marrow_tui.config.model import AgentConfig, Config
    from marrow_tui.hub.client import Frame, HubClient


def register_runs(sub: SubParsers) -> None:
    p = sub.add_parser("dry-run", help="print the prompt each agent would get now",
                       description="Assemble and print each enabled agent's prompt (rules, "
                                   "role, context scripts, queued tasks) without running it "
                                   "or moving any task.")
    add_config_option(p)
    p.add_argument("--agent", action="append", default=[], metavar="NAME",
                   help="only this agent (repeatable; default: every enabled agent)")
    p.set_defaults(func=cmd_dry_run)

    p = sub.add_parser("run-once", help="run each enabled agent once, then exit",
                       description="Start the runtime headless, run each enabled agent once "
                                   "(all at once), record the sessions in the log and exit: "
                                   "0 if every run succeeded, 1 otherwise.")
    add_config_option(p)
    p.add_argument("--agent", action="append", default=[], metavar="NAME",
                   help="only this agent (repeatable; disabled agents may be named)")
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="event log folder (default: $MARROW_STATE_DIR, else .marrow beside "
                        "the config); it must not be in use by a running marrow-tui")
    p.set_defaults(func=cmd_run_once)


def register_operations(sub: SubParsers) -> None:
    p = sub.add_parser("wake", help="run a configured agent now (on the running marrow-tui)",
                       description="Wake an agent of the running marrow-tui: it runs now, or "
                                   "right after its current run.")
    p.add_argument("agent")
    p.add_argument("--reason", default="", help="shown in the console and the log")
    hub_command(p, _do_wake, _render_wake,
                lambda frame: {**pick(frame, "agent"), "started": bool(frame.get("started"))})

    p = sub.add_parser("sessions", help="recent agent runs on the running marrow-tui",
                       description="The running marrow-tui's agents (next run, queued tasks, "
                                   "failures in a row) and their latest runs, newest first.")
    p.add_argument("--limit", type=int, default=20, help="runs to show (default 20)")
    hub_command(p, _do_sessions, _render_sessions,
                lambda frame: {"agents": list(frame.get("agents") or []),
                               "sessions": list(frame.get("sessions") or []),
                               "usage": dict(frame.get("usage") or {})})

    p = sub.add_parser("prompt", help="send a coding agent's session a follow-up prompt",
                       description="Send a follow-up prompt to a running ACP session: at once "
                                   "when the agent is idle, else when its current turn ends.")
    p.add_argument("session", metavar="SESSION", help="the session id, as `sessions` shows it")
    p.add_argument("text", metavar="TEXT", help="the prompt ('-' reads it from stdin)")
    hub_command(p, _do_prompt, lambda f, a: str(f.get("payload") or "sent"),
                lambda frame: {"session": frame.get("id"), "queued": bool(frame.get("queued"))})

    p = sub.add_parser("cancel", help="cancel the turn a coding agent is taking",
                       description="Cancel the current turn of a running ACP session "
                                   "(session/cancel; its processes are ended if it does not "
                                   "stop). The session then waits for your next prompt.")
    p.add_argument("session", metavar="SESSION", help="the session id, as `sessions` shows it")
    hub_command(p, _do_cancel, lambda f, a: str(f.get("payload") or "cancelling"),
                lambda frame: {"session": frame.get("id")})

    p = sub.add_parser("stop", help="stop an agent's run",
                       description="Stop a running session: its process group gets SIGTERM, "
                                   "then SIGKILL after the grace. An issue's run: the issue is "
                                   "parked until you retry it.")
    p.add_argument("session", metavar="SESSION", help="the session id, as `sessions` shows it")
    hub_command(p, _do_stop, lambda f, a: str(f.get("payload") or "stopping"),
                lambda frame: {"session": frame.get("id")})


def _chosen(config: Config, names: list[str]) -> list[AgentConfig] | None:
    """The named agents (disabled ones too), else the enabled ones; None (said why) if none."""
    unknown = [n for n in dict.fromkeys(names) if config.agent(n) is None]
    if unknown:
        known = ", ".join(a.name for a in config.agents) or "none"
        print(f"{PROG}: no agent named {', '.join(unknown)} in {config.path} "
              f"(agents: {known})", file=sys.stderr)
        return None
    if names:
        return [a for n in dict.fromkeys(names) if (a := config.agent(n)) is not None]
    enabled = [a for a in config.agents if a.enabled]
    if not enabled:
        what = ("every agent is disabled (name one with --agent)" if config.agents
                else "it has no [[agents]] table")
        print(f"{PROG}: no enabled agent in {config.path}: {what}", file=sys.stderr)
        return None
    return enabled


def _config_and_agents(args: argparse.Namespace, what: str = "nothing was started"
                       ) -> tuple[Config, list[Any]] | None:
    """The config and the agents `--agent` names (else the enabled ones); None, with the
    reason on stderr, when either is not there."""
    path = config_path(args, required=True)
    assert path is not None
    config = load_or_report(path, what=what)
    if config is None:
        return None
    agents = _chosen(config, args.agent)
    return None if agents is None else (config, agents)


def cmd_dry_run(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import datetime

    from marrow_tui.scheduler.prompt import PromptError, assemble
    from marrow_tui.scheduler.runner import session_id
    from marrow_tui.scheduler.tasks import list_tasks

    chosen = _config_and_agents(args, what="nothing was assembled")
    if chosen is None:
        return EXIT_CONFIG
    config, agents = chosen

    async def main() -> None:
        for agent in agents:
            # The queue is read, never moved: a dry run hands no task to anyone.
            tasks = list_tasks(agent.tasks_dir, "queue")
            assembled = await assemble(agent, config.rules_path, tasks=tasks)
            for warning in assembled.warnings:
                print(f"{agent.name}: {warning}", file=sys.stderr)
            sid = session_id(agent.name, datetime.now())
            print(f"--- DRY RUN [{agent.name}] session={sid} prompt={agent.prompt} "
                  f"tasks={len(tasks)} bytes={len(assembled.prompt.encode())} ---")
            sys.stdout.write(assembled.prompt)
            if assembled.prompt and not assembled.prompt.endswith("\n"):
                sys.stdout.write("\n")
            print("--- END ---")

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PromptError as exc:  # a rules or role file that changed since the config loaded
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_run_once(args: argparse.Namespace) -> int:
    import asyncio

    from marrow_tui.host import hosted
    from marrow_tui.hub.server import HubOptions
    from marrow_tui.runtime import RuntimeOptions
    from marrow_tui.store.eventlog import StoreError

    chosen = _config_and_agents(args)
    if chosen is None:
        return EXIT_CONFIG
    config, agents = chosen
    state_dir = config_state_dir(args, config).resolve()
    holder = lock_holder(state_dir)
    if holder is not None:
        print(f"{PROG}: {state_dir} is in use by a running marrow-tui (pid {holder}); "
              f"run an agent there with `{PROG} wake NAME`, or pass another --state-dir",
              file=sys.stderr)
        return EXIT_CONFIG

    async def main() -> int:
        runtime = RuntimeOptions(state_dir=state_dir)
        hub = HubOptions(host="127.0.0.1", port=0,
                         token=os.environ.get("MARROW_TOKEN") or None)
        async with hosted(runtime, hub, config=config, heartbeats=False) as unit:
            before = {s.id for s in unit.runtime.state.sessions.by_id.values()}
            results = await unit.scheduler.run_once([a.name for a in agents])
            await unit.runtime.settled()
            book = unit.runtime.state.sessions
            failed = 0
            for agent, result in zip(agents, results, strict=True):
                if result is not None:
                    state, reason, took = result.state, result.reason, result.ended - result.started
                    log: Path | None = result.stdout_path
                else:  # it could not even start: the session's end in the log says why
                    ended = [s for s in book.of_agent(agent.name) if s.id not in before]
                    session = ended[0] if ended else None
                    state = session.state if session is not None else "error"
                    reason = session.reason if session is not None else "no result"
                    took, log = 0.0, None
                failed += state != "ok"
                print(f"{agent.name:<16} {state:<8} {took:7.1f}s  {reason}")
                if log is not None and log.exists():
                    print(f"{'':<16} log {log}")
        total = len(agents)
        print(f"\nrun-once: {total - failed} of {total} run(s) ok; sessions recorded in "
              f"{state_dir}")
        return EXIT_FAILED if failed else EXIT_OK

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the runs were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


async def _do_wake(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.wake(args.agent, args.reason)


def _render_wake(frame: Frame, args: argparse.Namespace) -> str:
    if frame.get("started"):
        return f"wake submitted for \"{frame.get('agent')}\": it runs now"
    return f"wake submitted for \"{frame.get('agent')}\": it runs again when its current run ends"


async def _do_prompt(hub: HubClient, args: argparse.Namespace) -> Frame:
    text = sys.stdin.read() if args.text == "-" else args.text
    return await hub.session_prompt(args.session, text)


async def _do_cancel(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.session_cancel(args.session)


async def _do_stop(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.session_stop(args.session)


async def _do_sessions(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.sessions(max(0, args.limit))


def _usage(usage: dict[str, Any]) -> str:
    """"12.3k tok $0.42", or "-" when nothing was reported."""
    return " ".join(p for p in (tokens_text(usage), cost_text(usage)) if p) or "-"


def _render_sessions(frame: Frame, args: argparse.Namespace) -> str:
    now = time.time()
    lines = []
    agents = frame.get("agents") or []
    usage = frame.get("usage") or {}
    if agents:
        rows = []
        for a in sorted(agents, key=lambda a: a["agent"]):
            if a.get("paused"):
                nxt = "paused"
            elif not a.get("enabled", True):
                nxt = "disabled"
            elif a.get("running"):
                nxt = "running"
            elif a.get("next_at"):
                nxt = f"in {max(0, int(a['next_at'] - now))}s"
            else:
                nxt = "-"
            rows.append([a["agent"], nxt, str(a.get("queued", 0)), str(a.get("failures", 0)),
                         _usage(usage.get(a["agent"]) or {})])
        lines.append(table(["AGENT", "NEXT RUN", "QUEUED", "FAILURES", "USAGE"], rows))
    sessions = frame.get("sessions") or []
    if sessions:
        rows = []
        for s in sessions:
            end = s.get("ended") or now
            started = time.strftime("%m-%d %H:%M:%S", time.localtime(s["started"]))
            code = "" if s.get("code") is None else str(s["code"])
            rows.append([s["id"], started, f"{end - s['started']:.1f}s", s["state"], code,
                         _usage(s.get("usage") or {}), (s.get("last_line") or "")[:60]])
        lines.append(table(["SESSION", "STARTED", "TOOK", "STATE", "EXIT", "USAGE",
                            "LAST LINE"], rows))
    issues = sorted(set(usage) - {a["agent"] for a in agents})
    if issues:  # the orchestrator's runs: one agent per issue
        lines.append(table(["ISSUE OR AGENT", "USAGE"], [[i, _usage(usage[i])] for i in issues]))
    if not lines:
        return "no agents configured and no sessions yet"
    return "\n\n".join(lines)
