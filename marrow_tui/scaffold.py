"""`marrow-tui scaffold DIR`: a starter config, workspace and agent that run as they are.

Nothing that exists is ever overwritten: files are created with O_EXCL, so a file that is
already there (or a symlink, even a dangling one) is kept and reported as kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from marrow_tui.config.model import DEFAULT_CONFIG

WROTE = "wrote"
KEPT = "kept (exists)"
CREATED = "created"

#: folders of the starter workspace, relative to it
WORKSPACE_DIRS = (
    "runtime/logs/exec",
    "tasks/queue",
    "tasks/delegated",
    "tasks/done",
    "context.d",
)

AGENT_NAME = "worker"
WORKSPACE = "workspace"
AGENT_SCRIPT = "agent.sh"
RULES = "rules.md"


def scaffold(directory: Path) -> list[tuple[Path, str]]:
    """Writes the starter files under `directory`; returns (path, what happened) in order.

    What happened is "wrote" or "kept (exists)" for files, "created" or "kept (exists)" for
    folders. Missing parent folders are created.
    """
    directory = directory.absolute()
    results: list[tuple[Path, str]] = [_mkdir(directory)]
    workspace = directory / WORKSPACE
    results.append(_mkdir(workspace))
    for sub in WORKSPACE_DIRS:
        results.append(_mkdir(workspace / sub))
    files = (
        (directory / DEFAULT_CONFIG, CONFIG_TEXT, 0o644),
        (directory / RULES, RULES_TEXT, 0o644),
        (directory / AGENT_SCRIPT, AGENT_TEXT, 0o755),
        (workspace / "context.d" / "10-date.sh", DATE_SCRIPT, 0o755),
    )
    for path, text, mode in files:
        results.append(_write_new(path, text, mode))
    return results


def _mkdir(path: Path) -> tuple[Path, str]:
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise
        return path, KEPT
    return path, CREATED


def _write_new(path: Path, text: str, mode: int) -> tuple[Path, str]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return path, KEPT
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), mode)  # whatever the umask says
        handle.write(text)
    return path, WROTE


CONFIG_TEXT = """\
# marrow-tui scheduler config.
#
# Every enabled [[agents]] entry runs on a heartbeat: the executable scripts in its
# context_dirs run, their output and the rules below become a prompt, agent_command runs
# with that prompt, and the agent sleeps heartbeat_interval seconds (or until it is woken).
#
# Relative paths in this file are resolved against the folder this file is in.
# Check the file with:  marrow-tui --config marrow.toml validate
# Run every agent once: marrow-tui --config marrow.toml run-once
# docs/configuration.md describes every key. marrow-core configs load as they are: the
# marrow-core keys marrow-tui does not use ([ipc], [sync], [self_check], [[plugins]],
# core_dir, ...) are accepted, and `validate` lists them as ignored.

[profile]
# A text file whose content opens every prompt, under "--- [Core Rules] ---".
# Optional: without it the prompt has no rules section.
rules_path = "rules.md"

[service]
# "single_user": all agents run as you, in one marrow-tui process. ("supervisor" is
# accepted for marrow-core configs, but agents still run as the current user.)
mode = "single_user"

[[agents]]
# A name that is unique in this file: used to wake the agent, in log file names and in
# the console.
name = "worker"

# The program to run on each heartbeat, split into words like a shell would (quotes work)
# but not run by a shell. A program name is looked up on PATH; a relative path such as
# ./agent.sh is relative to this file's folder. agent.sh is a stand-in that prints what it
# was given: replace it with your agent, for example "claude -p" or "codex exec -".
agent_command = "./agent.sh"

# The agent's working folder. It holds runtime/logs/exec (one stdout and one stderr log per
# run), tasks/queue, tasks/delegated, tasks/done and context.d.
workspace = "workspace"

# Seconds from the end of one run to the start of the next (60 to 604800).
heartbeat_interval = 300

# Seconds a run may last before it is stopped (5 to 86400).
heartbeat_timeout = 500

# Folders of context scripts: each executable file in them runs before every heartbeat,
# in name order, and what it prints becomes a "--- [<name>] ---" section of the prompt.
# A string or a list. Default: ["<workspace>/context.d"].
# context_dirs = ["workspace/context.d"]

# Exec logs are pruned after each run: older than log_retention_days days (0: no age
# limit), then all but the newest log_max_count files (two files per run; 0: no limit).
log_retention_days = 7
log_max_count = 200

# marrow-core account keys, for its supervisor mode. marrow-tui uses them only to find a
# workspace that is not given: workspace defaults to home, and home to the user's home.
# user = "marrow"            (also spelled run_as_user)
# run_as_group = "staff"
# home = "/home/marrow"

# ---- marrow-tui additions (marrow-core does not know these keys) ----

# How the prompt reaches agent_command:
#   "stdin" - on the program's standard input (the default)
#   "argv"  - as arguments: `<command> --dir <workspace> -- <prompt>` (marrow-core's form,
#             made for `opencode run`); long prompts can exceed the system's argument limit
#   "file"  - written to a file whose path is in $MARROW_PROMPT_FILE and replaces
#             {prompt_file} wherever it appears in agent_command
prompt = "stdin"

# false keeps the agent in this file without running it.
enabled = true

# Extra environment variables for the agent and its context scripts: strings only, taken
# literally (no $VAR expansion). A PATH given here is also where agent_command is looked up.
# env = { EXAMPLE_SETTING = "1" }

# The agent's role, given to it with the prompt: inline text and/or a file (relative to
# this folder).
# role = "You keep the task queue moving."
# role_file = "roles/worker.md"

# Seconds each context script may run before it is killed (1 to 3600).
context_timeout = 15

# Seconds between SIGTERM and SIGKILL when a run is stopped or times out (0 to 600).
stop_grace = 10

# A coding agent that speaks the Agent Client Protocol (Claude Code, Codex, Gemini CLI,
# OpenCode): protocol = "acp" drives it over ACP, its permission requests and questions in
# the steering queue. A preset gives agent_command: "opencode", "codex", "claude" or
# "gemini". permissions: "ask", "allow", "deny", or a table by tool kind (docs/agents.md).
# protocol = "acp"
# preset = "claude"
# permissions = { mode = "ask", allow = ["read", "search"] }
# Each ACP run holds a lease on its checkout, grown by its edits; an edit on paths another
# agent's lease holds asks you first (docs/agents.md, "Agents that never collide"). Paths
# (relative to the workspace) its lease holds from the start:
# lease_paths = ["src/auth"]
# Run the agent in its own git worktree of a repository (<workspace>/checkout, on the
# branch marrow/<name> from base), kept between runs; `marrow-tui diff NAME` shows what it
# changed, and `accept`, `request-changes` and `discard` review it:
# workspace_git = { repo = "~/src/app", base = "main" }
"""

RULES_TEXT = """\
# Rules

- Work only inside your workspace.
- Take tasks from tasks/queue; move a task file to tasks/done when it is finished.
- Leave a short note of what you did and what is left, so the next run can pick it up.
"""

AGENT_TEXT = """\
#!/bin/sh
# A stand-in agent for the starter config: it reads the prompt on standard input and
# prints a short summary of it. Replace agent_command in marrow.toml with a real agent.
set -eu

prompt=$(cat)
lines=$(printf '%s\\n' "$prompt" | wc -l | tr -d ' ')
bytes=$(printf '%s' "$prompt" | wc -c | tr -d ' ')

echo "stand-in agent, working in $(pwd)"
echo "prompt: $lines lines, $bytes bytes"
echo "prompt sections:"
sections=$(printf '%s\\n' "$prompt" | grep -e '^--- \\[' || true)
if [ -n "$sections" ]; then
    printf '%s\\n' "$sections" | sed 's/^/  /'
else
    echo "  (none)"
fi
queued=$(ls tasks/queue 2>/dev/null | wc -l | tr -d ' ')
echo "tasks in tasks/queue: $queued"
"""

DATE_SCRIPT = """\
#!/bin/sh
# A context script: every executable file in context.d runs before each heartbeat, and
# what it prints becomes the "--- [10-date] ---" section of the prompt. Files that are not
# executable are ignored.
date -u '+now: %Y-%m-%dT%H:%M:%SZ'
"""
