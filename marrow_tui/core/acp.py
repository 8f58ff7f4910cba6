"""What an ACP agent run is set up with: the launch presets of the agents we know, and the
permission policy that decides which of an agent's permission requests reach a person. Pure:
the workflow reader and the config loader parse into these; the runs apply them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: how a run talks to its agent: "command" (a process fed the prompt), "acp" (driven over ACP)
PROTOCOLS = ("command", "acp")
#: preset -> the command that starts the agent in ACP mode (docs/agents.md says where each
#: comes from and which variables it reads)
PRESETS: dict[str, tuple[str, ...]] = {
    "opencode": ("opencode", "acp"),
    "codex": ("codex-acp",),
    "claude": ("claude-code-acp",),
    "gemini": ("gemini", "--acp"),
}

#: an agent program -> how it is signed in, when it does not say so itself
AUTH_HINTS: dict[str, str] = {
    "opencode": "give the provider's key in the environment (e.g. ANTHROPIC_API_KEY or "
                "OPENAI_API_KEY) or run `opencode auth login`",
    "codex-acp": "set OPENAI_API_KEY (or CODEX_API_KEY) or run `codex login`",
    "claude-code-acp": "set ANTHROPIC_API_KEY or run `claude` and /login",
    "gemini": "set GEMINI_API_KEY (or GOOGLE_API_KEY with Vertex AI) or run `gemini` and sign "
              "in",
}

#: an agent program -> variables it needs to work as a run of ours, under what is configured:
#: gemini starts no MCP server (ours included) in a folder it does not trust, and a workspace
#: is one we made for it
PROGRAM_ENV: dict[str, dict[str, str]] = {
    "gemini": {"GEMINI_CLI_TRUST_WORKSPACE": "true"},
}

#: ACP tool call kinds
TOOL_KINDS = ("read", "edit", "delete", "move", "search", "execute", "think", "fetch",
              "switch_mode", "other")
MODES = ("ask", "allow", "deny")
#: what an unanswered request gets when its deadline passes
DEFAULTS = ("reject", "allow")
#: how long a permission request waits for a person by default (then the default applies)
PERMISSION_TIMEOUT = 30 * 60.0
#: what a conflict (an edit on paths another agent's lease holds) does before anyone answers:
#: "ask" the operator, or "wait" for the leases to end (the operator may still choose)
CONFLICT_MODES = ("ask", "wait")


@dataclass(frozen=True, slots=True)
class PermissionPolicy:
    """Which permission requests are answered at once and which are asked: a tool kind in
    `allow` is allowed, in `deny` denied, any other gets `mode`. An asked request waits
    `timeout` seconds for an operator, then gets `default` (a run never stalls for ever)."""

    mode: str = "ask"
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    timeout: float = PERMISSION_TIMEOUT
    default: str = "reject"
    #: a conflict: asked, or waiting from the start; it ends at `conflict_timeout` (seconds;
    #: None: `timeout`) with the default (reject: "Reject", allow: "Let it")
    conflict: str = "ask"
    conflict_timeout: float | None = None

    @property
    def conflict_deadline(self) -> float:
        return self.timeout if self.conflict_timeout is None else self.conflict_timeout

    def verdict(self, kind: str) -> str:
        """allow, deny or ask, for a tool call of this kind."""
        if kind in self.deny:
            return "deny"
        if kind in self.allow:
            return "allow"
        return self.mode

    def describe(self) -> str:
        parts = [self.mode]
        if self.allow:
            parts.append("allow " + ", ".join(sorted(self.allow)))
        if self.deny:
            parts.append("deny " + ", ".join(sorted(self.deny)))
        if self.conflict != "ask":
            parts.append(f"conflicts {self.conflict}")
        return "; ".join(parts)


def parse_policy(value: Any, where: str) -> tuple[PermissionPolicy, list[str]]:
    """A policy from `ask` / `allow` / `deny`, or a table {mode, allow, deny, timeout_ms,
    default}; problems as sentences naming `where` (the policy is the default where wrong)."""
    problems: list[str] = []
    if value is None:
        return PermissionPolicy(), problems
    if isinstance(value, str):
        if value not in MODES:
            problems.append(f"{where}: must be one of {', '.join(MODES)} or a table, "
                            f"got {value!r}")
            return PermissionPolicy(), problems
        return PermissionPolicy(mode=value), problems
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be one of {', '.join(MODES)} or a table")
        return PermissionPolicy(), problems
    known = {"mode", "allow", "deny", "timeout_ms", "default", "conflict",
             "conflict_timeout_ms"}
    for key in sorted(set(map(str, value)) - known):
        problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
    mode = value.get("mode", "ask")
    if mode not in MODES:
        problems.append(f"{where}.mode: must be one of {', '.join(MODES)}, got {mode!r}")
        mode = "ask"
    lists = {name: _kinds(value.get(name), f"{where}.{name}", problems)
             for name in ("allow", "deny")}
    both = lists["allow"] & lists["deny"]
    if both:
        problems.append(f"{where}: {', '.join(sorted(both))} both allowed and denied")
    timeout = value.get("timeout_ms", int(PERMISSION_TIMEOUT * 1000))
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        problems.append(f"{where}.timeout_ms: must be a whole number of milliseconds above 0, "
                        f"got {timeout!r}")
        timeout = PERMISSION_TIMEOUT * 1000
    default = value.get("default", "reject")
    if default not in DEFAULTS:
        problems.append(f"{where}.default: must be one of {', '.join(DEFAULTS)}, "
                        f"got {default!r}")
        default = "reject"
    conflict = value.get("conflict", "ask")
    if conflict not in CONFLICT_MODES:
        problems.append(f"{where}.conflict: must be one of {', '.join(CONFLICT_MODES)}, "
                        f"got {conflict!r}")
        conflict = "ask"
    waits = value.get("conflict_timeout_ms")
    if waits is not None and (isinstance(waits, bool) or not isinstance(waits, int)
                              or waits <= 0):
        problems.append(f"{where}.conflict_timeout_ms: must be a whole number of milliseconds "
                        f"above 0, got {waits!r}")
        waits = None
    return PermissionPolicy(mode, lists["allow"], lists["deny"] - both, timeout / 1000,
                            default, conflict, None if waits is None else waits / 1000), problems


def _kinds(value: Any, where: str, problems: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, Sequence) or isinstance(value, str):
        problems.append(f"{where}: must be a list of tool kinds ({', '.join(TOOL_KINDS)})")
        return frozenset()
    kinds = frozenset(str(k) for k in value)
    unknown = sorted(kinds - set(TOOL_KINDS))
    if unknown:
        problems.append(f"{where}: unknown tool kind {', '.join(map(repr, unknown))} "
                        f"(known: {', '.join(TOOL_KINDS)})")
    return kinds & frozenset(TOOL_KINDS)


def choose_option(options: Sequence[tuple[str, str]], allow: bool) -> str | None:
    """The option id an automatic allow or deny picks among (option id, option kind) pairs:
    the once-only kind first (a policy decision is made afresh each time), else the always one;
    None when the agent offered neither."""
    wanted = ("allow_once", "allow_always") if allow else ("reject_once", "reject_always")
    for kind in wanted:
        for option_id, option_kind in options:
            if option_kind == kind:
                return option_id
    return None
