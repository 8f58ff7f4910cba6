"""The hub's two local secrets, kept in the state directory, and the checks that use them.

* `operator_token`: whoever presents it at registration (`operator_token` in the first frame)
  acts as an operator. `marrow-tui` makes it on its first start (mode 0600); the console and
  the CLI on the same machine read it from here, a remote one is given it
  (`--operator-token`, `$MARROW_OPERATOR_TOKEN`).
* `agent_secret`: never leaves this machine. An agent's key is an HMAC of its name with it,
  handed to the runs the runtime starts (`$MARROW_AGENT_KEY`), so a run can prove it is that
  agent when it takes its name back (`agent_key` in the first frame).

See docs/protocol.md §3 (rights) for what each one allows.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

OPERATOR_TOKEN_FILE = "operator_token"
AGENT_SECRET_FILE = "agent_secret"


class SecretError(Exception):
    """A secret file that cannot be made or read (one sentence: what and where)."""


def is_text(value: str) -> bool:
    """Whether `value` is valid UTF-8 text (JSON's \\ud800 escapes make lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def same_secret(given: object, expected: str | None) -> bool:
    """Whether `given` is the secret `expected`, compared in constant time; never raises."""
    if not expected or not isinstance(given, str) or not given or not is_text(given):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8", "surrogatepass"))


def _load_or_create(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    except OSError as exc:
        raise SecretError(f"cannot create {path}: {exc.strerror or exc}") from None
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(value + "\n")
    return value


def _read(path: Path) -> str:
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)  # a secret readable by others is no secret: tighten it
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not value:
        raise SecretError(f"{path} is empty; delete it and start marrow-tui again to make a "
                          "new one")
    return value


def operator_token(state_dir: Path) -> str:
    """The operator token of the hub in `state_dir`, made (mode 0600) if there is none."""
    return _load_or_create(Path(state_dir) / OPERATOR_TOKEN_FILE)


def read_operator_token(state_dir: Path) -> str | None:
    """The operator token in `state_dir` if there is one this user may read; never makes one."""
    path = Path(state_dir) / OPERATOR_TOKEN_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


@functools.lru_cache(maxsize=16)
def _agent_secret(state_dir: str) -> str:
    return _load_or_create(Path(state_dir) / AGENT_SECRET_FILE)


def agent_key(state_dir: Path, name: str) -> str:
    """The key that proves to the hub in `state_dir` that a connection is agent `name`."""
    secret = _agent_secret(str(Path(state_dir).resolve()))
    return hmac.new(secret.encode("utf-8"), name.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()
