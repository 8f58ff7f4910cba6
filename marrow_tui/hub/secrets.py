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

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("marrow.secrets")

OPERATOR_TOKEN_FILE = "operator_token"
#: the shortest secret a file may hold (ours are 43 characters)
MIN_SECRET = 16
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


def new_secret() -> str:
    """32 random bytes as URL-safe text that never starts with `-`, so it can follow
    `--operator-token` on a command line without being taken for an option."""
    while (value := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return value


def _load_or_create(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if _exposed(path):
            if not _modes_kept(path.parent):
                _unprotectable(path)
                return _read(path)
            return _replace(path)
        return _read(path)
    except OSError as exc:
        raise SecretError(f"cannot create {path}: {exc.strerror or exc}") from None
    value = new_secret()
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(value + "\n")
    return value


def _exposed(path: Path) -> bool:
    """Whether others than its owner could read the secret file (then it may have leaked)."""
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except OSError:
        return False


def _modes_kept(folder: Path) -> bool:
    """Whether files made in `folder` keep a private mode. Some filesystems (vfat, many CIFS
    mounts) show every file as readable by all whatever it was made with: there a new secret
    would be as exposed as the old one."""
    probe = folder / f".mode-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return True  # cannot tell: the replacement says what goes wrong, if anything
    try:
        return not stat.S_IMODE(probe.stat().st_mode) & 0o077
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


@functools.lru_cache(maxsize=16)
def _unprotectable(path: Path) -> None:
    log.warning("%s can be read by other users and the filesystem it is on keeps no private "
                "file modes, so a new one would be no safer: it is kept. Put the state folder "
                "on a filesystem that keeps modes, or make sure no one else can read the "
                "folder", path)


def _aside(path: Path) -> Path:
    """A name beside `path` for its exposed copy that no earlier copy holds."""
    candidate, n = path.with_name(f"{path.name}.exposed"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.exposed.{n}")
    return candidate


def _replace(path: Path) -> str:
    """A new secret in place of one others could read: tightening the mode would not unread
    it. The old file is kept beside it (nothing of the user's is deleted, earlier copies
    neither), made private."""
    old = _aside(path)
    try:
        os.replace(path, old)
        os.chmod(old, 0o600)
    except OSError as exc:
        raise SecretError(f"{path} can be read by other users and cannot be replaced: "
                          f"{exc.strerror or exc}") from None
    log.warning("%s could be read by other users, so it may have leaked: a new one was made "
                "(the old one is in %s; give the new one to whoever needs it)", path, old)
    return _load_or_create(path)


def _read(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not value:
        raise SecretError(f"{path} is empty; delete it and start marrow-tui again to make a "
                          "new one")
    if len(value) < MIN_SECRET:
        raise SecretError(f"{path} holds a secret of {len(value)} characters, too short to be "
                          f"one (at least {MIN_SECRET}); delete it and start marrow-tui again to "
                          "make a new one, or write a longer one")
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
