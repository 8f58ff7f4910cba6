"""The real Codex over ACP (`codex-acp`, Zed's native binary with Codex built in), offline:
pointed at a ResponsesModel (tests/support/responses_model.py) by a config.toml in a
CODEX_HOME of its own, with HOME inside a test's folder, so nothing of the machine's own Codex
set-up is read or written and nothing is fetched.

Where the binary comes from: MARROW_TEST_CODEX_ACP (set by .ci/run, which installs the pinned
`@zed-industries/codex-acp` from npm into a throwaway prefix and names the native binary in
its platform package: the npm wrapper script would leave it orphaned when stopped), else
`codex-acp` on the PATH. Without either, the tests that need it are skipped and say so.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.responses_model import MODEL

#: the variable .ci/run sets to the installed binary
BINARY_VARIABLE = "MARROW_TEST_CODEX_ACP"
#: the model provider the config gives the stub
PROVIDER = "stub"
#: the variable the provider takes its API key from
KEY_VARIABLE = "STUB_API_KEY"
#: why a test that needs it is skipped
SKIP_REASON = (f"no codex-acp: set {BINARY_VARIABLE} to a codex-acp binary (.ci/run installs "
               "@zed-industries/codex-acp from npm) or put it on the PATH")


def codex_binary() -> str | None:
    """The codex-acp to test with: MARROW_TEST_CODEX_ACP, else the PATH's."""
    return os.environ.get(BINARY_VARIABLE) or shutil.which("codex-acp")


@dataclass(frozen=True, slots=True)
class Codex:
    """How to start codex-acp against the stub."""

    #: `[binary]`
    command: list[str]
    #: the whole environment to start it with
    env: dict[str, str]
    #: the variables of `env` that are Codex's own (for a WORKFLOW.md's `acp.env`)
    own: dict[str, str]


def offline_config(model_url: str) -> str:
    """Codex's config.toml: the stub as the one model provider, over the Responses API (the
    only one Codex speaks); every command not known safe asks first (`untrusted`), and runs
    outside Codex's sandbox: on Linux that needs bubblewrap, and without it (this machine)
    a sandboxed command panics when RUST_BACKTRACE is set (which a CI shell may well have)."""
    return f"""model = "{MODEL}"
model_provider = "{PROVIDER}"
approval_policy = "untrusted"
sandbox_mode = "danger-full-access"

[model_providers.{PROVIDER}]
name = "Stub model"
base_url = "{model_url}"
env_key = "{KEY_VARIABLE}"
wire_api = "responses"
"""


def codex_offline(folder: Path, model_url: str, binary: str) -> Codex:
    """Write the config into `folder`/codex (made if missing) and give the command and
    environment that run `binary` against the stub at `model_url`, with CODEX_HOME, HOME and
    TMPDIR inside `folder`. The environment holds PATH and nothing else of ours."""
    own = {"CODEX_HOME": str(folder / "codex"), KEY_VARIABLE: "stub-key",
           "HOME": str(folder / "home"), "TMPDIR": str(folder / "tmp")}
    for made in ("CODEX_HOME", "HOME", "TMPDIR"):
        Path(own[made]).mkdir(parents=True, exist_ok=True)
    (folder / "codex" / "config.toml").write_text(offline_config(model_url))
    env = {"PATH": os.environ.get("PATH", os.defpath), **own}
    return Codex([binary], env, own)
