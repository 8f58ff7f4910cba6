"""`marrow-tui doctor`: what the config needs on this machine, checked one line at a time.

Exit codes: 0 all is well; 1 something needs repair; 2 the config itself is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marrow_tui.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, SubParsers, port_number
from marrow_tui.cli.project import (
    add_config_option,
    config_path,
    config_state_dir,
    load_or_report,
    lock_holder,
)
from marrow_tui.core.text import plural
from marrow_tui.hub.defaults import DEFAULT_PORT

if TYPE_CHECKING:
    from marrow_tui.config.model import AgentConfig


def register(sub: SubParsers) -> None:
    p = sub.add_parser("doctor", help="check workspaces, commands, scripts, state dir, port",
                       description="Check what the config needs on this machine. Exit 0 when "
                                   "all is well, 1 when something needs repair, 2 when the "
                                   "config itself is invalid.")
    add_config_option(p)
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="event log folder (default: $MARROW_STATE_DIR, else .marrow beside "
                        "the config)")
    p.add_argument("--port", type=port_number, default=argparse.SUPPRESS,
                   help=f"the hub port to check (default: $MARROW_PORT, else {DEFAULT_PORT})")
    p.set_defaults(func=cmd_doctor)


#: the first bytes of programs exec runs without a #! line (ELF, Mach-O, universal Mach-O)
_BINARY_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                 b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


class _Doctor:
    """Prints one line per check; remembers the ones that need repair."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.counted = True  # problems of a disabled agent are shown, not counted

    def check(self, ok: bool, text: str, problem: str = "") -> bool:
        print(f"  {'✓' if ok else '✗'} {text}")
        if not ok and self.counted:
            self.problems.append(problem or text)
        return ok

    def note(self, text: str) -> None:
        print(f"  · {text}")


def cmd_doctor(args: argparse.Namespace) -> int:
    path = config_path(args, required=True)
    assert path is not None
    # A missing command is checked below as a repair to make (exit 1), not as a config error.
    config = load_or_report(path, check_commands=False, what="nothing else was checked")
    if config is None:
        return EXIT_CONFIG
    doctor = _Doctor()
    for agent in config.agents:
        print(f"[{agent.name}]" + ("" if agent.enabled else " (disabled: not counted)"))
        doctor.counted = agent.enabled
        _doctor_agent(agent, doctor)
    doctor.counted = True
    if config.rules_path is not None:
        print("[rules]")
        doctor.check(config.rules_path.is_file(), f"rules file {config.rules_path}",
                     f"rules file missing: {config.rules_path}")
    print("[runtime]")
    _doctor_state_dir(config_state_dir(args, config).resolve(), doctor)
    host = args.host if args.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    _doctor_port(host, args.port, doctor)
    if doctor.problems:
        print(f"\ndoctor: {plural(len(doctor.problems), 'issue')} to fix:", file=sys.stderr)
        for problem in doctor.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_FAILED
    print("\ndoctor: all good")
    return EXIT_OK


def _doctor_worktree(agent: AgentConfig, doctor: _Doctor) -> None:
    """`workspace_git`: the base branch is there to start from, and the checkout folder is
    free or the worktree marrow-tui made."""
    from marrow_tui.config.model import CHECKOUT
    from marrow_tui.orchestrator.workspaces import worktree_of
    from marrow_tui.orchestrator.worktrees import branch_exists

    git, name = agent.git, agent.name
    assert git is not None
    doctor.check(branch_exists(git.repo, git.base), f"repository {git.repo} has {git.base}",
                 f"{name}: the repository {git.repo} has no branch {git.base!r}")
    checkout = agent.checkout
    if worktree_of(agent.workspace, CHECKOUT) is not None:
        print(f"  ✓ worktree {checkout} on {git.branch(name)}")
    elif checkout.exists():
        doctor.check(False, f"worktree {checkout}: a folder marrow-tui did not make",
                     f"{name}: {checkout} exists and is not a worktree marrow-tui made; move "
                     "it away so the agent's worktree can be made there")
    else:
        doctor.note(f"worktree {checkout}: made by the first run, on {git.branch(name)}")


def _doctor_agent(agent: AgentConfig, doctor: _Doctor) -> None:
    from marrow_tui.scheduler.prompt import scan_context

    name, ws = agent.name, agent.workspace
    if doctor.check(ws.is_dir(), f"workspace {ws}", f"{name}: workspace missing: {ws}"):
        doctor.check(os.access(ws, os.W_OK | os.X_OK), "workspace writable",
                     f"{name}: workspace not writable: {ws}")
    if agent.git is not None:
        _doctor_worktree(agent, doctor)
    program = agent.argv()[0]
    found = _find_program(program, agent.environment.get("PATH"))
    shown = f" ({found})" if found and found != program else ""
    if doctor.check(found is not None, f"command {program}{shown}",
                    f"{name}: command not found: {program}") and found is not None:
        trouble = _exec_problem(Path(found))
        if trouble:
            doctor.check(False, trouble, f"{name}: {trouble}")
    if agent.role_file is not None:
        doctor.check(agent.role_file.is_file(), f"role file {agent.role_file}",
                     f"{name}: role file missing: {agent.role_file}")
    for folder in agent.context_dirs:
        if not folder.is_dir():
            doctor.note(f"context dir {folder}: none, so no context scripts")
            continue
        scan = scan_context([folder])
        print(f"  ✓ context dir {folder}: {plural(len(scan.scripts), 'script')}")
        for script in scan.scripts:
            trouble = _exec_problem(script)
            if trouble:
                doctor.check(False, trouble, f"{name}: {trouble}")
        for ignored in scan.ignored:
            doctor.note(f"{ignored.name} is not executable, so it is not run "
                        "(chmod +x it if it is a script)")
    for sub in ("queue", "delegated", "done"):
        folder = agent.tasks_dir / sub
        if folder.exists():
            doctor.check(os.access(folder, os.W_OK | os.X_OK), f"tasks/{sub} writable",
                         f"{name}: not writable: {folder}")


def _find_program(program: str, path_env: str | None) -> str | None:
    """Where exec finds `program` (as the runner looks it up), or None."""
    import shutil

    if "/" in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program, path=path_env)


def _exec_problem(path: Path) -> str | None:
    """Why exec would refuse the file at `path` (no #! line, no interpreter), or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(256)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
        if not words:
            return f"{path} has an empty #! line"
        interpreter = words[0]
        if not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
            return f"{path} names an interpreter that is not there: {interpreter}"
        return None
    if head[:4] in _BINARY_MAGIC:
        return None
    return f"{path} has no #! line, so it cannot be run directly"


def _doctor_state_dir(state_dir: Path, doctor: _Doctor) -> None:
    if not state_dir.exists():
        parent = state_dir.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        doctor.check(os.access(parent, os.W_OK | os.X_OK),
                     f"state dir {state_dir} (created at the first start)",
                     f"cannot create the state dir {state_dir}: {parent} is not writable")
        return
    if not doctor.check(state_dir.is_dir() and os.access(state_dir, os.W_OK | os.X_OK),
                        f"state dir {state_dir} writable",
                        f"state dir not a writable folder: {state_dir}"):
        return
    holder = lock_holder(state_dir)
    if holder is None:
        doctor.check(True, "state dir free (no marrow-tui running on it)")
    else:
        doctor.note(f"state dir in use by a running marrow-tui (pid {holder}): `run-once` "
                    "needs it free; `wake`, `task` and `sessions` go through its hub")


def _doctor_port(host: str, port: int, doctor: _Doctor) -> None:
    if port == 0:
        doctor.note("hub port 0: a free port is picked at each start")
        return
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            in_use = probe.connect_ex((host, port)) == 0
        except OSError:
            in_use = False
    if not in_use:
        doctor.check(True, f"hub port {port} free")
        return
    import asyncio

    from marrow_tui.hub.client import HubClient, HubConnectionError, Refused

    async def ask() -> str:
        try:
            async with HubClient(f"ws://{host}:{port}", f"doctor/{os.getpid()}",
                                 token=os.environ.get("MARROW_TOKEN") or None,
                                 open_timeout=2, request_timeout=2,
                                 heartbeat_interval=None) as hub:
                frame = await hub.who()
        except (HubConnectionError, Refused, OSError):
            return ""
        return str(frame.get("hub_version", ""))

    version = asyncio.run(ask())
    if version.startswith("marrow-tui"):
        doctor.note(f"hub port {port} is served by a running marrow-tui ({version}); "
                    "another one needs another --port")
    else:
        doctor.check(False, f"hub port {port} is taken by another program",
                     f"hub port {port} is in use by another program (start with --port)")
