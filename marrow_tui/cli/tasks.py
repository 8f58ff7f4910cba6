"""`marrow-tui task add|list`: the agents' task queues, through the running marrow-tui's hub
or, with none answering, straight in the queue files.

Exit codes as the hub subcommands' (see cli/hub.py); 2 also for a config problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from marrow_tui.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    SubParsers,
    add_hub_options,
    print_reply,
    run,
    usage_error,
)
from marrow_tui.cli.output import CONFIG, fail, failed, pick, print_json
from marrow_tui.cli.project import (
    add_config_option,
    config_path,
    config_state_dir,
    load_or_report,
    lock_holder,
)
from marrow_tui.core.text import table

if TYPE_CHECKING:
    from marrow_tui.config.model import AgentConfig, Config
    from marrow_tui.hub.client import Frame


def register(sub: SubParsers) -> None:
    task = sub.add_parser("task", help="add a task to an agent's queue, or list the queues")
    task_sub = task.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    p = task_sub.add_parser("add", help="queue a task for an agent's next run",
                            description="Queue a task for an agent: the running marrow-tui "
                                        "takes it over its hub; with none running, the file "
                                        "is written into the agent's tasks/queue directly.")
    p.add_argument("--agent", required=True, metavar="NAME", help="the agent to give it to")
    p.add_argument("title", help="one line: the task's heading in the prompt")
    p.add_argument("body", nargs="?", default="", help="the task's text (optional)")
    add_config_option(p)
    add_hub_options(p)
    p.set_defaults(func=cmd_task_add)
    p = task_sub.add_parser("list", help="list queued and delegated tasks",
                            description="List the tasks waiting in the agents' queues and "
                                        "the ones handed to a run: from the running "
                                        "marrow-tui, else read from the files.")
    p.add_argument("--agent", default="", metavar="NAME", help="only this agent's tasks")
    add_config_option(p)
    add_hub_options(p)
    p.set_defaults(func=cmd_task_list)


def cmd_task_add(args: argparse.Namespace) -> int:
    if not args.title.strip():
        return usage_error(args, "the task needs a title; nothing was queued")
    if not _nobody_home(args.uri):
        return run(args, lambda hub, a: hub.task_add(a.agent, a.title, a.body),
                   lambda f, a: f"queued for {f.get('agent')}: {f.get('file')}",
                   _added_fields)
    # Nothing listens there: the queue is plain files, so write the file ourselves.
    from marrow_tui.scheduler.tasks import add_task

    found = _direct(args)
    if isinstance(found, int):
        return found
    config, agents = found
    agent = agents[0]
    try:
        written = add_task(agent.tasks_dir, args.title, args.body)
    except (ValueError, OSError) as exc:
        return fail(args.json, EXIT_FAILED, "not_written", f"the task was not written: {exc}")
    frame = {"agent": agent.name, "file": str(written), "direct": True}
    print_reply(frame, args, lambda f, a: f"queued for {agent.name}: {written} (written "
                                          f"directly: {_why_direct(args, config)})",
                _added_fields)
    return EXIT_OK


def _added_fields(frame: Frame) -> dict[str, object]:
    return {**pick(frame, "agent", "file"), "direct": bool(frame.get("direct"))}


def _tasks_fields(frame: Frame) -> dict[str, object]:
    return {"tasks": list(frame.get("tasks") or []), "direct": bool(frame.get("direct"))}


def cmd_task_list(args: argparse.Namespace) -> int:
    if not _nobody_home(args.uri):
        return run(args, lambda hub, a: hub.task_list(a.agent), _render_tasks, _tasks_fields)
    from marrow_tui.scheduler.tasks import list_tasks

    found = _direct(args)
    if isinstance(found, int):
        return found
    _config, agents = found
    tasks = [{"agent": a.name, "file": str(t.path), "title": t.title, "state": t.state,
              "created": t.created}
             for a in agents for state in ("queue", "delegated")
             for t in list_tasks(a.tasks_dir, state)]
    frame = {"tasks": tasks, "direct": True}
    print_reply(frame, args, _render_tasks, _tasks_fields)
    return EXIT_OK


def _direct(args: argparse.Namespace) -> tuple[Config, list[AgentConfig]] | int:
    """The config and the agents `--agent` names (all when it is empty), for working on the
    task files without a hub; else the exit code, with the reason printed."""
    path = config_path(args, required=True)
    assert path is not None
    if not path.exists():
        return fail(args.json, EXIT_UNREACHABLE, "unreachable",
                    f"no marrow-tui answers at {args.uri}, and there is no config file at "
                    f"{path} to find the task folders in (pass --uri or --config)")
    config = load_or_report(path, check_commands=False, what="no task was touched")
    if config is None:  # every problem is on stderr already
        if args.json:
            print_json(failed(CONFIG, f"{path} is not a valid config"))
        return EXIT_CONFIG
    if not args.agent:
        return config, list(config.agents)
    agent = config.agent(args.agent)
    if agent is None:  # the same exit code and code as the hub's refusal
        known = ", ".join(a.name for a in config.agents) or "none"
        return fail(args.json, EXIT_FAILED, "unknown_agent",
                    f"no agent named {args.agent} in {config.path} (agents: {known})")
    return config, [agent]


def _why_direct(args: argparse.Namespace, config: Config) -> str:
    holder = lock_holder(config_state_dir(args, config).resolve())
    if holder is not None:
        return f"the marrow-tui on this config, pid {holder}, does not answer at {args.uri}"
    return f"no marrow-tui answers at {args.uri}"


def _nobody_home(uri: str) -> bool:
    """True when nothing listens at the hub address, so the files are used directly.

    A malformed address is not "nobody": the hub command reports it (exit 2).
    """
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        return False
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def _render_tasks(frame: Frame, args: argparse.Namespace) -> str:
    tasks = frame.get("tasks") or []
    if not tasks:
        return "(no tasks queued)"
    rows = [[t["agent"], t["state"], t["title"], Path(t["file"]).name] for t in tasks]
    return table(["AGENT", "STATE", "TITLE", "FILE"], rows)
