"""The real Gemini CLI over ACP (`gemini --acp`), offline: pointed at a GeminiModel
(tests/support/gemini_model.py) by its environment, with HOME (and so `~/.gemini/settings.json`)
inside a test's folder, so nothing of the machine's own Gemini set-up is read or written and
nothing is fetched.

Where the binary comes from: MARROW_TEST_GEMINI (set by .ci/run, which installs the pinned
`@google/gemini-cli` from npm into a throwaway prefix), else `gemini` on the PATH. Without
either, the tests that need it are skipped and say so.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: the variable .ci/run sets to the installed binary
BINARY_VARIABLE = "MARROW_TEST_GEMINI"
#: why a test that needs it is skipped
SKIP_REASON = (f"no gemini: set {BINARY_VARIABLE} to a gemini binary (.ci/run installs "
               "@google/gemini-cli from npm) or put it on the PATH")
#: ~/.gemini/settings.json: sign in with an API key (else `session/new` answers
#: auth_required), no telemetry, usage statistics or update checks
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "telemetry": {"enabled": False},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def gemini_binary() -> str | None:
    """The gemini to test with: MARROW_TEST_GEMINI, else the PATH's."""
    return os.environ.get(BINARY_VARIABLE) or shutil.which("gemini")


@dataclass(frozen=True, slots=True)
class Gemini:
    """How to start `gemini --acp` against the stub."""

    #: `[binary, "--acp"]`
    command: list[str]
    #: the whole environment to start it with
    env: dict[str, str]
    #: the variables of `env` that are Gemini's own (for a WORKFLOW.md's `acp.env`)
    own: dict[str, str]


def gemini_offline(folder: Path, model_url: str, binary: str) -> Gemini:
    """Write the settings into `folder`/home/.gemini (made if missing) and give the command
    and environment that run `binary --acp` against the stub at `model_url`, with HOME and
    TMPDIR inside `folder`. The environment holds PATH and nothing else of ours."""
    own = {
        "GEMINI_API_KEY": "stub-key",
        "GOOGLE_GEMINI_BASE_URL": model_url,
        # Gemini CLI starts no stdio MCP server (the ones a session/new gives it included)
        # in a folder it does not trust: the workspace is trusted outright
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "HOME": str(folder / "home"),
        "TMPDIR": str(folder / "tmp"),
    }
    settings = folder / "home" / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(SETTINGS, indent=2))
    Path(own["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", os.defpath), **own}
    return Gemini([binary, "--acp"], env, own)
