"""The real `opencode acp`, offline: pointed at a StubModel (tests/support/stub_model.py) by a
config file of its own, with HOME and the XDG folders inside a test's folder, so nothing of the
machine's own opencode set-up is read or written and nothing is fetched.

Where the binary comes from: MARROW_TEST_OPENCODE (set by .ci/run, which installs the pinned
`opencode-ai` from npm into a throwaway prefix), else `opencode` on the PATH. Without either,
the tests that need it are skipped and say so.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.stub_model import MODEL

#: the variable .ci/run sets to the installed binary
BINARY_VARIABLE = "MARROW_TEST_OPENCODE"
#: the provider id the config gives the stub (opencode's model is `<provider>/<model>`)
PROVIDER = "stub"
#: opencode's switches that would otherwise reach out: the model list, self-update, LSP
#: servers, its default plugins
OFFLINE_SWITCHES = ("OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_AUTOUPDATE",
                    "OPENCODE_DISABLE_LSP_DOWNLOAD", "OPENCODE_DISABLE_DEFAULT_PLUGINS")
#: what `permission` may say for shell commands
PERMISSIONS = ("ask", "allow", "deny")
#: the model's context window, as opencode reports it in `usage_update.size`
CONTEXT = 128_000
#: USD per million input and output tokens: opencode reports the cost in `usage_update.cost`
INPUT_PRICE = 1.0
OUTPUT_PRICE = 2.0
#: why a test that needs opencode is skipped
SKIP_REASON = (f"no opencode: set {BINARY_VARIABLE} to an opencode binary (.ci/run installs "
               "opencode-ai from npm) or put opencode on the PATH")


def opencode_binary() -> str | None:
    """The opencode to test with: MARROW_TEST_OPENCODE, else `opencode` on the PATH."""
    chosen = os.environ.get(BINARY_VARIABLE)
    if chosen:
        return chosen
    return shutil.which("opencode")


@dataclass(frozen=True, slots=True)
class Opencode:
    """How to start opencode's ACP server against the stub."""

    #: `[binary, "acp", "--pure"]` (no external plugins)
    command: list[str]
    #: the whole environment to start it with
    env: dict[str, str]
    #: the config file OPENCODE_CONFIG names
    config: Path


def offline_config(model_url: str, permission: str) -> dict[str, object]:
    """opencode's config: one provider (the stub, spoken to with the OpenAI-compatible SDK
    that opencode bundles; with a context window and prices, so that it reports occupancy and
    cost), its model as the main and the small model, nothing shared or updated;
    `permission` ("ask", "allow" or "deny") for shell commands, edits allowed."""
    model = f"{PROVIDER}/{MODEL}"
    return {
        "provider": {PROVIDER: {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Stub model",
            "options": {"baseURL": model_url, "apiKey": "stub-key"},
            "models": {MODEL: {"name": "Stub", "tool_call": True,
                               "limit": {"context": CONTEXT, "output": 4096},
                               "cost": {"input": INPUT_PRICE, "output": OUTPUT_PRICE}}},
        }},
        "enabled_providers": [PROVIDER],
        "model": model,
        "small_model": model,
        "autoupdate": False,
        "share": "disabled",
        "permission": {"bash": permission, "edit": "allow"},
    }


def plugin_sdk_installed(config_dir: Path) -> None:
    """Make opencode take its plugin SDK as installed in its config folder. At start it forks
    an `npm install @opencode-ai/plugin` there (no switch turns it off) unless the folder has
    `node_modules` and a lock file that lists the package: offline that install only fails,
    and online it fetches from the npm registry and spends a core while the test runs."""
    (config_dir / "node_modules").mkdir(parents=True, exist_ok=True)
    lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": {
        "@opencode-ai/plugin": "*"}}}}
    (config_dir / "package-lock.json").write_text(json.dumps(lock))


def opencode_offline(folder: Path, model_url: str, binary: str, *,
                     permission: str = "ask") -> Opencode:
    """Write the config into `folder` (made if missing) and give the command and environment
    that run `binary acp` against the stub at `model_url`, with HOME and XDG inside `folder`.
    The environment holds PATH and nothing else of ours."""
    if permission not in PERMISSIONS:
        raise ValueError(f"permission {permission!r} for opencode's shell commands is not one "
                         f"of {', '.join(PERMISSIONS)}")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "opencode.json"
    config.write_text(json.dumps(offline_config(model_url, permission), indent=2))
    home = folder / "home"
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        # opencode keeps a scratch folder under the temp dir: inside `folder`, not /tmp
        "TMPDIR": str(folder / "tmp"),
        "OPENCODE_CONFIG": str(config),
        **{switch: "1" for switch in OFFLINE_SWITCHES},
    }
    for path in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                 "TMPDIR"):
        Path(env[path]).mkdir(parents=True, exist_ok=True)
    plugin_sdk_installed(Path(env["XDG_CONFIG_HOME"]) / "opencode")
    return Opencode([binary, "acp", "--pure"], env, config)
