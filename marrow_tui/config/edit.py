"""Changing marrow.toml from the console with tomlkit: comments, order and formatting survive."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from .. import userfile
from .agents import AGENT_KEYS
from .load import load_config_text, text_problem
from .schema import unknown_key_message



def edit_agent(path: Path, agent: str, key: str, value: object) -> None:
    """Sets `key` of the [[agents]] table named `agent` to `value` (None removes the key).

    Comments, key order and formatting of everything else survive byte for byte. The result
    is checked with `load_config` first: an edit that would leave the file with errors raises
    ValueError (with the diagnostics) and the file is not touched. The write is atomic and
    keeps the file's mode; a symlinked config is edited where it points. A file `load_config`
    would refuse unread (not a regular file, over the size cap, not UTF-8, nested too deeply)
    is a ValueError too.
    """
    if key not in AGENT_KEYS:
        raise ValueError(unknown_key_message(key, AGENT_KEYS) + " for an agent")
    target = Path(os.path.realpath(path))
    try:
        text = userfile.read_text(target, userfile.CONFIG_FILE_CAP)
    except userfile.RefusedFile as exc:
        reason = exc.reason + (" for a config file" if exc.kind == "large" else "")
        raise ValueError(f"{path}: {reason}") from None
    problem = text_problem(path, text)
    if problem is not None:
        raise ValueError(str(problem))
    doc = tomlkit.parse(text)
    table = _find_agent_table(doc, agent, path)
    if key in ("user", "run_as_user"):  # edit the spelling the file already uses
        other = "run_as_user" if key == "user" else "user"
        key = other if other in table and key not in table else key
    _set_key(table, key, value, newline="\r\n" if "\r\n" in text else "\n")
    new_text = tomlkit.dumps(doc)
    loaded = load_config_text(new_text, path)
    if loaded.errors:
        raise ValueError("\n".join(str(d) for d in loaded.errors))
    _write_atomic(target, new_text)


def _find_agent_table(doc: tomlkit.TOMLDocument, agent: str, path: Path) -> Any:
    tables = doc.get("agents")
    if isinstance(tables, (AoT, list)):
        for table in tables:
            name = table.get("name") if isinstance(table, Mapping) else None
            if isinstance(name, str) and name.strip() == agent:
                return table
    raise ValueError(f"{path}: no agent named {agent!r}")


def _toml_value(value: object) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_toml_value(v) for v in value]
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        inline.update({str(k): _toml_value(v) for k, v in value.items()})
        return inline
    return value


def _set_key(table: Any, key: str, value: object, *, newline: str = "\n") -> None:
    if value is None:
        if key in table:
            del table[key]
        return
    item = tomlkit.item(_toml_value(value))
    if key in table or not isinstance(table, Table):
        table[key] = item
        return
    item.trivia.trail = newline
    # tomlkit appends after trailing blank lines and comments (which belong to whatever comes
    # next); put the new key right after the table's last key instead.
    body = table.value.body
    last = max((i for i, (k, v) in enumerate(body)
                if k is not None and not isinstance(v, (Table, AoT))), default=-1)
    if 0 <= last < len(body) - 1:
        table.value._insert_at(last + 1, key, item)
    else:
        table[key] = item


def _write_atomic(target: Path, text: str) -> None:
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


