"""What a command says when it ends: a sentence for people, and with ``--json`` one JSON object
on stdout in the same shape for every command,

    {"ok": true, ...the command's own fields}
    {"ok": false, "code": "...", "reason": "..."}

with the exit code that goes with it (docs/cli.md lists each command's fields and codes). The
wire is not changed for this: each command picks its fields from the hub's reply frame, so the
frame's envelope (`type`, `sender`, `target`, `timestamp`) and the hub's field for a refusal's
code (`reason_code`, `error_code`, or none) never reach a script.

Kept cheap to import, like cli/common.py.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

from marrow_tui.core.text import printable

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubConnectionError, Refused

PROG: Final = "marrow-tui"

#: a command's fields for ``{"ok": true, ...}``, from the hub's reply frame
Fields = Callable[["Frame"], dict[str, Any]]

#: the codes the command line gives itself (a refusal's code is the hub's)
USAGE: Final = "usage"
CONFIG: Final = "config"
INTERRUPTED: Final = "interrupted"

#: the verbs a marrow-tui serves only when it runs that part: what a script is told instead of
#: "Unknown message type"
_PARTS: Final = (
    (("issue_",), "no_workflow",
     "runs no workflow (no issue orchestrator); start it with --workflow PATH (a WORKFLOW.md)"),
    (("services_list", "service_"), "no_services",
     "runs no helper services; start it with --config PATH, a marrow.toml with [[services]]"),
)
_UNKNOWN_VERB = re.compile(r"Unknown message type '([^']*)'")


def pick(frame: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The named fields of a frame (None for one it lacks): a fixed shape whatever the hub
    adds."""
    return {key: frame.get(key) for key in keys}


def succeeded(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": True, **fields}


def failed(code: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "reason": reason}


def print_json(value: Mapping[str, Any], out: TextIO | None = None) -> None:
    """One line; ASCII only (controls and lone surrogates escaped as \\uXXXX)."""
    print(json.dumps(value), file=out or sys.stdout)


def fail(json_wanted: bool, exit_code: int, code: str, reason: str, said: str | None = None,
         out: TextIO | None = None, err: TextIO | None = None,
         extra: Mapping[str, Any] | None = None) -> int:
    """Say why a command did not do its work: one sentence on stderr (``said``, else the
    reason), and the failure object on stdout with ``--json`` (with ``extra``'s fields: what
    a script needs to act on the refusal, such as the commits a discard would lose). Returns
    ``exit_code``."""
    if json_wanted:
        print_json({**failed(code, reason), **(extra or {})}, out)
    print(printable(f"{PROG}: {said or reason}"), file=err or sys.stderr)
    return exit_code


def connection_code(exc: HubConnectionError) -> str:
    """Why there was no session, for a script: unreachable, session_refused, timeout,
    connection_lost."""
    from marrow_tui.hub.client import ConnectionLost, HubRefused, HubTimeout

    if isinstance(exc, HubRefused):
        return "session_refused"
    if isinstance(exc, HubTimeout):
        return "timeout"
    if isinstance(exc, ConnectionLost):
        return "connection_lost"
    return "unreachable"


def refusal(exc: Refused, uri: str) -> tuple[str, str, str]:
    """A refusal as (code, reason, the sentence for stderr). The code is the hub's machine
    reason; a refusal that carries none is known by its reply type (`release_denied`,
    `handoff_denied`), else `refused`. A verb the hub does not know names what it lacks."""
    found = _UNKNOWN_VERB.search(exc.text) if exc.type == "error" and not exc.code else None
    if found is not None:
        verb = found.group(1)
        for prefixes, code, lacks in _PARTS:
            if verb.startswith(prefixes):
                reason = f"the marrow-tui at {uri} {lacks}"
                return code, reason, reason
        reason = (f"the hub at {uri} does not serve {verb!r} (another hub, or an older "
                  "marrow-tui)")
        return "unsupported", reason, reason
    code = exc.code or (exc.type if exc.type.endswith("_denied") else "refused")
    return code, exc.text, f"refused: {exc.text} [{exc.code or exc.type}]"
