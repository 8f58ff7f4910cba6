"""The real Claude Code over ACP (`claude-code-acp`, which bundles its own Agent SDK), offline:
pointed at an AnthropicModel (tests/support/anthropic_model.py) by its environment, with HOME
and its config folder inside a test's folder, so nothing of the machine's own Claude set-up is
read or written and nothing is fetched.

Where the binary comes from: MARROW_TEST_CLAUDE_CODE_ACP (set by .ci/run, which installs the
pinned `@zed-industries/claude-code-acp` from npm into a throwaway prefix), else
`claude-code-acp` on the PATH. Without either, the tests that need it are skipped and say so.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: the variable .ci/run sets to the installed binary
BINARY_VARIABLE = "MARROW_TEST_CLAUDE_CODE_ACP"
#: why a test that needs it is skipped
SKIP_REASON = (f"no claude-code-acp: set {BINARY_VARIABLE} to a claude-code-acp binary (.ci/run "
               "installs @zed-industries/claude-code-acp from npm) or put it on the PATH")


def claude_code_binary() -> str | None:
    """The claude-code-acp to test with: MARROW_TEST_CLAUDE_CODE_ACP, else the PATH's."""
    return os.environ.get(BINARY_VARIABLE) or shutil.which("claude-code-acp")


@dataclass(frozen=True, slots=True)
class ClaudeCode:
    """How to start claude-code-acp against the stub."""

    #: `[binary]`
    command: list[str]
    #: the whole environment to start it with
    env: dict[str, str]
    #: the variables of `env` that are Claude Code's own (for a WORKFLOW.md's `acp.env`)
    own: dict[str, str]


def claude_code_offline(folder: Path, model_url: str, binary: str) -> ClaudeCode:
    """The command and environment that run `binary` against the stub at `model_url`, with
    HOME, CLAUDE_CONFIG_DIR and TMPDIR inside `folder` (made if missing). The environment holds
    PATH and nothing else of ours."""
    own = {
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "stub-key",
        "CLAUDE_CONFIG_DIR": str(folder / "config"),
        # no update checks, error reports or other calls home; no telemetry
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "HOME": str(folder / "home"),
        "TMPDIR": str(folder / "tmp"),
    }
    if os.geteuid() == 0:
        # as root, the Agent SDK refuses to start unless told it is in a sandbox
        own["IS_SANDBOX"] = "1"
    for made in ("CLAUDE_CONFIG_DIR", "HOME", "TMPDIR"):
        Path(own[made]).mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", os.defpath), **own}
    return ClaudeCode([binary], env, own)
