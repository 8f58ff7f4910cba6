"""marrow.toml's [keys]: action id -> key, kept in order with its lines; bad shapes refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from marrow_tui.config.diagnostics import dotted
from marrow_tui.config.load import load_config

AGENT = '[[agents]]\nname = "a"\nagent_command = "sh -c true"\nworkspace = "ws"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "marrow.toml"
    path.write_text(textwrap.dedent(text) + AGENT, encoding="utf-8")
    return path


def test_keys_are_an_ordered_mapping_with_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        # the console's keys

        [keys]
        "claims.handoff" = "ctrl+h"
        'board.new' = " n "
        "chat.send" = "ctrl+enter"

        """)
    loaded = load_config(path)
    assert loaded.diagnostics == []
    config = loaded.config
    assert config is not None
    assert list(config.keys.items()) == [
        ("claims.handoff", "ctrl+h"), ("board.new", "n"), ("chat.send", "ctrl+enter")]
    assert config.line(("keys",)) == 3
    assert config.line(("keys", "claims.handoff")) == 4
    assert config.line(("keys", "chat.send")) == 6
    assert config.line(("keys", "no.such")) == 3  # the table's line, as for any key
    assert dotted(("keys", "claims.handoff")) == 'keys."claims.handoff"'


def test_no_keys_table_is_an_empty_mapping(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "")).config
    assert config is not None and dict(config.keys) == {}


def test_an_inline_keys_table_is_read_too(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'keys = { "steering.answer" = "a" }\n')).config
    assert config is not None and dict(config.keys) == {"steering.answer": "a"}


def test_keys_that_is_not_a_table_is_refused_on_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'keys = "ctrl+h"\n')
    loaded = load_config(path)
    assert loaded.config is None
    [error] = loaded.errors
    assert (error.key, error.line) == ("keys", 1)
    assert str(error) == f"{path}:1: keys: error: expected table, found string 'ctrl+h'"


@pytest.mark.parametrize(("value", "message"), [
    ("3", 'expected a key such as "ctrl+h", found integer 3'),
    ("true", 'expected a key such as "ctrl+h", found boolean true'),
    ('["a", "b"]', 'expected a key such as "ctrl+h", found array'),
    ('""', "must not be empty (delete the line to keep the default key)"),
    ('"   "', "must not be empty (delete the line to keep the default key)"),
])
def test_a_value_that_is_not_a_non_empty_string_is_refused(
        tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f'[keys]\n"board.new" = "n"\n"claims.handoff" = {value}\n\n')
    loaded = load_config(path)
    assert loaded.config is None
    [error] = loaded.errors
    assert str(error) == f'{path}:3: keys."claims.handoff": error: {message}'


def test_an_unquoted_dotted_id_is_refused_with_how_to_write_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[keys]\nclaims.handoff = "ctrl+h"\n\n')
    [error] = load_config(path).errors
    assert (error.key, error.line) == ("keys.claims", 2)
    assert error.message == ('expected a key such as "ctrl+h", found a table (write an action '
                             'id that has a dot in quotes: "claims.handoff" = "ctrl+h")')


def test_every_bad_value_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[keys]\n"a.b" = 1\n"c.d" = "ok"\n"e.f" = ""\n\n')
    loaded = load_config(path)
    assert [(d.key, d.line) for d in loaded.errors] == [('keys."a.b"', 2), ('keys."e.f"', 4)]
