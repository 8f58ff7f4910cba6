"""Prompt assembly: marrow-core's layout, context scripts run in parallel and killed on timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from marrow_tui.config.model import AgentConfig
from marrow_tui.scheduler.prompt import (
    RUNTIME_PROMPT,
    ContextBlock,
    assemble,
    build_prompt,
    gather_context,
    scan_context,
)
from marrow_tui.scheduler.tasks import Task, add_task, list_tasks

from tests.support.scheduler import make_agent
from tests.support.waiting import gone, until


def script(folder: Path, name: str, body: str, executable: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755 if executable else 0o644)
    return path


# ---- build_prompt ------------------------------------------------------------------------------


def test_build_prompt_exact_text(tmp_path: Path) -> None:
    task = Task(
        path=Path("/ws/tasks/queue/t.md"), title="Fix it", body="Details", created=0, state="queue"
    )
    bare = Task(path=Path("/ws/tasks/queue/u.md"), title="Bare", body="", created=0, state="queue")
    text = build_prompt(
        rules="# Rules\nNever delete the workspace.\n",
        role="  You are the orchestrator.  ",
        blocks=["--- [05_env] ---\ndate: now", "", "--- [10_queue] ---\nqueue has 0 task(s)"],
        tasks=[task, bare],
    )
    assert text == (
        "--- [Core Rules] ---\n# Rules\nNever delete the workspace.\n\n"
        "--- [Role] ---\nYou are the orchestrator.\n\n"
        f"{RUNTIME_PROMPT}\n\n"
        "--- [05_env] ---\ndate: now\n\n"
        "--- [10_queue] ---\nqueue has 0 task(s)\n\n"
        "--- [Tasks] ---\n"
        "## Fix it\n\nDetails\n\n(file: /ws/tasks/queue/t.md)\n\n"
        "## Bare\n\n(file: /ws/tasks/queue/u.md)\n"
    )


def test_build_prompt_minimal_and_empty() -> None:
    assert build_prompt(rules="", role="", blocks=[], tasks=[]) == RUNTIME_PROMPT + "\n"
    assert build_prompt(rules=" ", role="\n", blocks=[" "], tasks=[], base="") == ""


def test_rules_come_before_the_base_prompt() -> None:
    text = build_prompt(rules="R", role="", blocks=[], tasks=[])
    assert text.index("--- [Core Rules] ---\nR") < text.index(RUNTIME_PROMPT)


def test_runtime_prompt_is_marrow_cores() -> None:
    assert RUNTIME_PROMPT == (
        "Operate from the configured profile prompt, immutable rules, and current context. "
        "Use this execution round to make concrete progress, leave useful state, and avoid "
        "inventing policy that belongs in profile repositories."
    )


# ---- context scripts ---------------------------------------------------------------------------


async def test_scripts_in_order_non_executable_ignored(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    ctx = agent.context_dirs[0]
    script(ctx, "b.sh", "echo second")
    script(ctx, "a.py", "echo first")
    readme = script(ctx, "README.md", "echo never", executable=False)
    script(ctx, "c", "true")  # no output: no prompt text
    (ctx / "sub").mkdir()

    scan = scan_context([*agent.context_dirs, tmp_path / "missing"])
    assert [p.name for p in scan.scripts] == ["a.py", "b.sh", "c"]
    assert scan.ignored == [readme]

    blocks = await gather_context(agent)
    assert [b.text for b in blocks] == ["--- [a] ---\nfirst", "--- [b] ---\nsecond", ""]
    assert all(b.ok for b in blocks)


async def test_scripts_run_in_parallel_keeping_order(tmp_path: Path) -> None:
    # a waits for a file that b creates: run one after the other, a would time out
    agent = make_agent(tmp_path, context_timeout=5.0)
    ctx = agent.context_dirs[0]
    flag = tmp_path / "flag"
    script(ctx, "a", f"while [ ! -e '{flag}' ]; do sleep 0.01; done; echo first")
    script(ctx, "b", f"sleep 0.1; touch '{flag}'; echo second")
    blocks = await gather_context(agent)
    assert [b.text for b in blocks] == ["--- [a] ---\nfirst", "--- [b] ---\nsecond"]
    assert not any(b.timed_out for b in blocks)


async def test_cwd_env_and_stdin(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, env=(("EXTRA", "yes"),))
    script(
        agent.context_dirs[0],
        "env",
        'echo "cwd=$(pwd)"; echo "agent=$MARROW_AGENT ws=$MARROW_WORKSPACE extra=$EXTRA"; '
        'echo "stdin=$(cat)"',
    )
    (block,) = await gather_context(agent)
    assert block.text == (
        f"--- [env] ---\ncwd={agent.workspace}\nagent=orch ws={agent.workspace} extra=yes\nstdin="
    )


async def test_context_scripts_never_get_the_operator_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARROW_OPERATOR_TOKEN", "operator-secret")
    agent = make_agent(tmp_path)
    script(agent.context_dirs[0], "env", 'echo "token=${MARROW_OPERATOR_TOKEN-unset}"')
    (block,) = await gather_context(agent)
    assert block.text == "--- [env] ---\ntoken=unset"


async def test_failing_script_keeps_stdout_and_notes_the_code(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    script(agent.context_dirs[0], "bad", "echo partial; echo oops >&2; exit 3")
    (block,) = await gather_context(agent)
    assert block.text == "--- [bad] ---\npartial"
    assert block.code == 3 and not block.ok
    assert block.stderr == "oops"
    assert "exited with 3" in block.problem


async def test_hanging_script_is_killed_with_its_group(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, context_timeout=0.5)
    pids = tmp_path / "pids"
    script(
        agent.context_dirs[0],
        "hang",
        f"echo early; sleep 1000 & echo $! > '{pids}'; echo $$ >> '{pids}'; wait",
    )
    script(agent.context_dirs[0], "quick", "echo fine")
    started = time.monotonic()
    hang, quick = await gather_context(agent)
    assert time.monotonic() - started < 4
    assert hang.timed_out and not hang.ok
    assert hang.text == "--- [hang] ---\nearly\n[timed out after 0.5s; killed]"
    assert "timed out" in hang.problem
    assert quick.text == "--- [quick] ---\nfine"
    child, leader = (int(x) for x in pids.read_text().split())
    assert await until(lambda: gone(child) and gone(leader))


async def test_leftover_background_process_is_killed(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, context_timeout=5.0)
    pidfile = tmp_path / "bg"
    script(
        agent.context_dirs[0], "bg", f"sleep 1000 >/dev/null 2>&1 & echo $! > '{pidfile}'; echo ok"
    )
    started = time.monotonic()
    (block,) = await gather_context(agent)
    assert time.monotonic() - started < 3
    assert block.text == "--- [bg] ---\nok" and block.ok
    assert await until(lambda: gone(int(pidfile.read_text())))


async def test_output_is_capped(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    script(agent.context_dirs[0], "big", "head -c 3000000 /dev/zero | tr '\\0' x; echo")
    (block,) = await gather_context(agent)
    assert block.truncated and block.code == 0
    assert block.text.endswith("x\n[output truncated at 256 KiB]")
    assert len(block.text) < 300_000


async def test_script_that_cannot_start(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    ctx = agent.context_dirs[0]
    ctx.mkdir(parents=True)
    noexec = ctx / "noshebang"
    noexec.write_bytes(b"\x7fELFgarbage")
    noexec.chmod(0o755)
    (block,) = await gather_context(agent)
    assert block.text == "" and block.error.startswith("could not start")
    assert not block.ok


async def test_assemble_reads_rules_role_and_tasks(tmp_path: Path) -> None:
    role_file = tmp_path / "role.md"
    role_file.write_text("From the file.\n")
    agent = make_agent(tmp_path, role="Inline role.", role_file=role_file)
    script(agent.context_dirs[0], "05_env", "echo env ok")
    script(agent.context_dirs[0], "README", "", executable=False)
    rules = tmp_path / "rules.md"
    rules.write_text("\n# Rules\nBe nice.\n\n")
    add_task(agent.tasks_dir, "Do it", "now")
    tasks = list_tasks(agent.tasks_dir)

    got = await assemble(agent, rules, tasks=tasks)
    assert got.warnings == []
    assert got.ignored == [agent.context_dirs[0] / "README"]
    assert [b.name for b in got.blocks] == ["05_env"]
    assert got.prompt == (
        "--- [Core Rules] ---\n# Rules\nBe nice.\n\n"
        "--- [Role] ---\nInline role.\n\nFrom the file.\n\n"
        f"{RUNTIME_PROMPT}\n\n"
        "--- [05_env] ---\nenv ok\n\n"
        f"--- [Tasks] ---\n## Do it\n\nnow\n\n(file: {tasks[0].path})\n"
    )


async def test_assemble_missing_files_are_warnings(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, role_file=tmp_path / "nope-role.md", context_timeout=0.3)
    script(agent.context_dirs[0], "slow", "sleep 5")
    got = await assemble(agent, tmp_path / "nope-rules.md", tasks=[])
    assert got.prompt == f"{RUNTIME_PROMPT}\n\n--- [slow] ---\n[timed out after 0.3s; killed]\n"
    assert got.warnings[0] == f"rules file not found: {tmp_path / 'nope-rules.md'}"
    assert got.warnings[1] == f"role file not found: {tmp_path / 'nope-role.md'}"
    assert "timed out" in got.warnings[2]


async def test_no_context_dirs_and_missing_workspace(tmp_path: Path) -> None:
    assert await gather_context(make_agent(tmp_path, context_dirs=())) == []
    ctx = tmp_path / "ctx"
    script(ctx, "a", "echo a")
    agent = AgentConfig(
        name="x", agent_command="true", workspace=tmp_path / "gone", context_dirs=(ctx,)
    )
    (block,) = await gather_context(agent)
    assert "workspace does not exist" in block.error
    assert isinstance(block, ContextBlock)


async def test_cancelling_gather_kills_the_scripts(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, context_timeout=30)
    pidfile = tmp_path / "pid"
    script(
        agent.context_dirs[0],
        "slow",
        f"echo $$ > '{pidfile}.tmp'; mv '{pidfile}.tmp' '{pidfile}'; sleep 1000",
    )
    run = asyncio.create_task(gather_context(agent))
    assert await until(pidfile.exists)
    run.cancel()
    try:
        await run
    except asyncio.CancelledError:
        pass
    assert run.cancelled()
    assert await until(lambda: gone(int(pidfile.read_text())))
