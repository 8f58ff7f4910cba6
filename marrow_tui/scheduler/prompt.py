"""Prompt assembly: rules, role, the runtime prompt, context-script output, queued tasks.

The text layout is marrow-core's, so a profile written for it reads the same:
`--- [Core Rules] ---` + rules, then RUNTIME_PROMPT, then one `--- [<stem>] ---` block per
executable file in the agent's context dirs (sorted, empty output left out), joined by blank
lines, with a trailing newline. We add a `--- [Role] ---` block (after the rules) and a
`--- [Tasks] ---` block (last) when there is something to put in them.

Context scripts differ from marrow-core on purpose: they all run at once (their
output keeps the sorted order), in the workspace, with MARROW_AGENT and MARROW_WORKSPACE set,
stdin from /dev/null, in their own process group, under `agent.context_timeout`. A script that
overruns is killed with its whole group, and its block says so. A script's leftover background
processes are killed when it exits: a context script's job is to print and be done. Output
beyond 256 KiB is dropped (and the block says that too).

The rules and role files are read off the event loop, and only when they are regular UTF-8
files of at most 1 MiB (`userfile`): a missing one is a warning, anything else (a FIFO,
/dev/zero, a huge file) fails the assembly with a `PromptError` that says which file and why.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import userfile
from ..config.model import AgentConfig
from ..proc import Capture, run_bounded
from .tasks import Task

RUNTIME_PROMPT = (
    "Operate from the configured profile prompt, immutable rules, and current context. "
    "Use this execution round to make concrete progress, leave useful state, and avoid "
    "inventing policy that belongs in profile repositories."
)

#: the most stdout kept from one context script
OUTPUT_CAP = 256 * 1024
#: the most stderr kept from one context script (for diagnostics only, never in the prompt)
STDERR_CAP = 16 * 1024


class PromptError(Exception):
    """A file the prompt is made of cannot be used; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class ContextBlock:
    """One context script's run. `text` is what goes into the prompt ("" for none)."""

    name: str
    script: Path
    text: str = ""
    #: exit status (negative for a signal); None if it never started
    code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    #: why it could not start ("" if it did)
    error: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out and self.code == 0

    @property
    def problem(self) -> str:
        """A one-line warning about this run, or "" when it went fine."""
        if self.error:
            return f"context script {self.script}: {self.error}"
        if self.timed_out:
            return f"context script {self.script} timed out and was killed"
        if self.code != 0:
            return f"context script {self.script} exited with {self.code}"
        if self.truncated:
            return f"context script {self.script}: output over 256 KiB truncated"
        return ""


@dataclass(frozen=True, slots=True)
class ContextScan:
    """What the context dirs hold: the scripts to run, and plain files that are ignored."""

    scripts: list[Path]
    #: regular files that are not executable (a README, notes): never run, never an error
    ignored: list[Path]


@dataclass(slots=True)
class Assembled:
    prompt: str
    blocks: list[ContextBlock]
    warnings: list[str] = field(default_factory=list)
    #: non-executable files found in the context dirs (for doctor; not a problem)
    ignored: list[Path] = field(default_factory=list)


def scan_context(dirs: Iterable[Path]) -> ContextScan:
    """Executable regular files per dir, sorted by name, dirs in the given order; a missing
    dir is skipped."""
    scripts: list[Path] = []
    ignored: list[Path] = []
    for folder in dirs:
        try:
            entries = sorted(Path(folder).iterdir())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for path in entries:
            if not path.is_file():
                continue
            (scripts if os.access(path, os.X_OK) else ignored).append(path)
    return ContextScan(scripts=scripts, ignored=ignored)


async def gather_context(agent: AgentConfig) -> list[ContextBlock]:
    """Run every context script of `agent` in parallel; one ContextBlock each, in sorted order.

    Blocks whose `text` is "" (no output, or could not start) add nothing to the prompt.
    """
    scripts = (await asyncio.to_thread(scan_context, agent.context_dirs)).scripts
    if not scripts:
        return []
    if not agent.workspace.is_dir():
        error = f"could not start: workspace does not exist: {agent.workspace}"
        return [ContextBlock(name=s.stem, script=s, error=error) for s in scripts]
    env = {**os.environ, **dict(agent.env)}
    env.pop("MARROW_OPERATOR_TOKEN", None)  # a context script is part of a run, not an operator
    env.update(MARROW_AGENT=agent.name, MARROW_WORKSPACE=str(agent.workspace))
    runs = [_run_script(s, agent.workspace, env, agent.context_timeout) for s in scripts]
    results = await asyncio.gather(*runs, return_exceptions=True)
    blocks = []
    for script, res in zip(scripts, results, strict=True):
        if isinstance(res, ContextBlock):
            blocks.append(res)
        elif isinstance(res, asyncio.CancelledError):
            raise res
        else:
            blocks.append(ContextBlock(name=script.stem, script=script, error=f"failed: {res!r}"))
    return blocks


def build_prompt(
    *,
    rules: str,
    role: str,
    blocks: Sequence[str | ContextBlock],
    tasks: Sequence[Task],
    base: str = RUNTIME_PROMPT,
) -> str:
    """The prompt text. Empty rules, role and blocks are left out; "" if nothing is left."""
    parts = []
    if rules.strip():
        parts.append(f"--- [Core Rules] ---\n{rules.strip()}")
    if role.strip():
        parts.append(f"--- [Role] ---\n{role.strip()}")
    if base.strip():
        parts.append(base.strip())
    for block in blocks:
        text = block.text if isinstance(block, ContextBlock) else block
        if text.strip():
            parts.append(text.strip())
    if tasks:
        parts.append("--- [Tasks] ---\n" + "\n\n".join(_task_text(t) for t in tasks))
    text = "\n\n".join(parts).strip()
    return f"{text}\n" if text else ""


async def assemble(
    agent: AgentConfig, rules_path: Path | None, *, tasks: Sequence[Task] = ()
) -> Assembled:
    """Read the rules and role, run the context scripts, build the prompt.

    Raises PromptError when the rules or role file is there but cannot be used.
    """
    warnings: list[str] = []
    rules = ""
    if rules_path is not None:
        rules = await asyncio.to_thread(_read_part, rules_path, "rules file", warnings)
    role = agent.role.strip()
    if agent.role_file is not None:
        role_text = await asyncio.to_thread(_read_part, agent.role_file, "role file", warnings)
        role = "\n\n".join(part for part in (role, role_text) if part)
    scan = await asyncio.to_thread(scan_context, agent.context_dirs)
    blocks = await gather_context(agent)
    warnings += [b.problem for b in blocks if b.problem]
    prompt = build_prompt(rules=rules, role=role, blocks=blocks, tasks=tasks)
    return Assembled(prompt=prompt, blocks=blocks, warnings=warnings, ignored=scan.ignored)


# ---- internals --------------------------------------------------------------------------------


def _task_text(task: Task) -> str:
    lines = [f"## {task.title}"]
    if task.body.strip():
        lines.append(task.body.strip())
    lines.append(f"(file: {task.path})")
    return "\n\n".join(lines)


def _read_part(path: Path, what: str, warnings: list[str]) -> str:
    """The stripped text of a rules or role file ("" and a warning when it is missing)."""
    try:
        return userfile.read_text(path, userfile.PROMPT_FILE_CAP).strip()
    except userfile.RefusedFile as exc:
        if exc.kind == "missing":
            warnings.append(f"{what} not found: {path}")
            return ""
        raise PromptError(f"the {what} {path} {exc.reason}") from None


async def _run_script(script: Path, cwd: Path, env: dict[str, str], timeout: float) -> ContextBlock:
    loop = asyncio.get_running_loop()
    begun = loop.time()
    out, err = Capture(OUTPUT_CAP), Capture(STDERR_CAP)
    try:
        run = await run_bounded([str(script)], out=out, err=err, cwd=cwd, env=env,
                                timeout=timeout if timeout > 0 else None)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return ContextBlock(name=script.stem, script=script, error=f"could not start: {reason}")
    timed_out = run.ended_by == "timeout"
    text = out.text()
    if out.truncated:
        text += f"\n[output truncated at {OUTPUT_CAP // 1024} KiB]"
    if timed_out:
        text += f"\n[timed out after {timeout:g}s; killed]"
    text = text.strip()
    return ContextBlock(
        name=script.stem,
        script=script,
        text=f"--- [{script.stem}] ---\n{text}" if text else "",
        code=run.code,
        timed_out=timed_out,
        truncated=out.truncated,
        stderr=err.text(),
        duration=loop.time() - begun,
    )
