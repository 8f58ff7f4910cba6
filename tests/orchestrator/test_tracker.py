"""The local Markdown tracker: parsing, hostile files, blockers, moves and new issues."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from marrow_tui.orchestrator.tracker import (
    ERROR,
    MAX_ISSUE_BYTES,
    WARNING,
    Issue,
    TrackerError,
    create_issue,
    is_blocked,
    is_safe_name,
    load_yaml,
    move_issue,
    next_identifier,
    norm_state,
    open_blockers,
    parse_timestamp,
    scan,
    split_front_matter,
)

TERMINAL = ["Closed", "Cancelled", "Canceled", "Duplicate", "Done"]


def titled(text: str) -> str:
    """`text` as an issue needs it: with a title in its front matter (an issue without one is
    refused). A body alone gets front matter; a title goes last, so line numbers stay."""
    if "title:" in text:
        return text
    if not text.startswith("---\n"):
        return f"---\ntitle: t\n---\n{text}"
    end = text.find("\n---", 3)
    return text if end < 0 else f"{text[:end]}\ntitle: t{text[end:]}"


def write(root: Path, rel: str, text: str | bytes, *, raw: bool = False) -> Path:
    """Write an issue file; a str gets a title unless `raw` (see `titled`)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str) and not raw:
        text = titled(text)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def only(root: Path) -> Issue:
    result = scan(root)
    assert result.errors == [], result.problems
    assert len(result.issues) == 1
    return result.issues[0]


def problem_for(root: Path, name: str) -> str:
    result = scan(root)
    found = [p for p in result.problems if p.path.name == name]
    assert found, result.problems
    assert all(i.path.name != name for i in result.issues)
    return found[0].message


# ---------------------------------------------------------------------------- parsing


def test_fields_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "Todo/ABC-1.md", "---\ntitle: Fix it\n---\n\n  Some body\n\n")
    issue = only(tmp_path)
    assert (issue.id, issue.identifier, issue.title) == ("ABC-1", "ABC-1", "Fix it")
    assert issue.description == "Some body"
    assert issue.state == "Todo"
    assert issue.priority is None and issue.labels == () and issue.blocked_by == ()
    assert issue.created_at is None and issue.branch_name is None and issue.url is None
    assert issue.path == (tmp_path / "Todo" / "ABC-1.md").resolve()
    assert issue.updated == pytest.approx(issue.path.stat().st_mtime)


def test_every_front_matter_field(tmp_path: Path) -> None:
    write(tmp_path, "In Progress/file.md", """---
id: internal-7
identifier: WEB-7
title: "  Title  "
priority: "2"
labels: [" Bug ", bug, "", UI, 3, null]
blocked_by: [WEB-1, 12]
branch_name: feature/x
url: https://example.invalid/7
created_at: 2026-05-19T08:49:32.774Z
updated_at: "2026-05-20 10:00:00+02:00"
unknown_key: ignored
---
Body
""")
    issue = only(tmp_path)
    assert (issue.id, issue.identifier, issue.title) == ("internal-7", "WEB-7", "Title")
    assert issue.priority == 2
    assert issue.labels == ("bug", "ui")
    assert [b.ref for b in issue.blocked_by] == ["WEB-1", "12"]
    assert all(not b.resolved for b in issue.blocked_by)
    assert issue.branch_name == "feature/x" and issue.url == "https://example.invalid/7"
    assert issue.created_at == dt.datetime(2026, 5, 19, 8, 49, 32, 774000, tzinfo=dt.UTC)
    assert issue.updated_at == dt.datetime(2026, 5, 20, 8, 0, tzinfo=dt.UTC)
    assert issue.state == "In Progress"
    template = issue.to_template()
    assert template["created_at"] == "2026-05-19T08:49:32.774Z"
    assert template["blocked_by"][0] == {"id": None, "identifier": "WEB-1", "state": None}
    assert set(template) >= {"id", "identifier", "title", "description", "priority", "state",
                             "branch_name", "url", "labels", "blocked_by", "created_at",
                             "updated_at"}


@pytest.mark.parametrize("value, expected", [
    ("1", 1), ("-3", -3), ("7", 7), ("1.5", None), ("high", None), ("true", None),
    ("1.0", None), ('"04"', 4), ("[1]", None), ("", None),
])
def test_priority(tmp_path: Path, value: str, expected: int | None) -> None:
    write(tmp_path, "Todo/P-1.md", f"---\npriority: {value}\n---\n")
    assert only(tmp_path).priority == expected


def test_no_front_matter_unterminated_or_no_title_is_refused(tmp_path: Path) -> None:
    """The docs say an issue has a title: a file without one is not work for an agent."""
    write(tmp_path, "Todo/A-1.md", "Just a body\n", raw=True)
    write(tmp_path, "Todo/A-2.md", "---\ntitle: never closed\nbody\n", raw=True)
    write(tmp_path, "Todo/A-3.md", "", raw=True)
    write(tmp_path, "Todo/A-4.md", "---\npriority: 1\n---\nbody\n", raw=True)
    write(tmp_path, "Todo/A-5.md", "---\ntitle: fine\n---\n", raw=True)
    result = scan(tmp_path)
    assert [i.id for i in result.issues] == ["A-5"]
    assert result.issues[0].description is None
    reasons = {p.ref: p.message for p in result.errors}
    assert "no front matter" in reasons["A-1"] and "no front matter" in reasons["A-3"]
    assert "never closed" in reasons["A-2"] and "no title" in reasons["A-4"]


def test_fences_crlf_trailing_blanks_bom_and_indented(tmp_path: Path) -> None:
    write(tmp_path, "Todo/C-1.md", "\ufeff---  \r\ntitle: Windows\r\n---\r\nbody\r\n")
    write(tmp_path, "Todo/C-2.md", " ---\ntitle: no\n---\n")
    issues = {i.id: i for i in scan(tmp_path).issues}
    assert issues["C-1"].title == "Windows" and issues["C-1"].description == "body"
    assert "C-2" not in issues  # an indented fence is not a fence: no front matter


def test_split_front_matter_lines() -> None:
    parts = split_front_matter("---\na: 1\nb: 2\n---\n\nbody")
    assert parts.yaml == "a: 1\nb: 2" and parts.body == "\nbody"
    assert (parts.yaml_line, parts.body_line) == (2, 5)


def test_timestamps() -> None:
    utc = dt.UTC
    assert parse_timestamp("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=utc)
    assert parse_timestamp("2026-01-02T03:04:05") == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)
    assert parse_timestamp(dt.date(2026, 1, 2)) == dt.datetime(2026, 1, 2, tzinfo=utc)
    assert parse_timestamp(None) is None
    for bad in ("yesterday", "2026-13-45", "2026-01-02T25:00", 12, "2026/01/02"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_bad_timestamp_is_a_warning_not_a_skip(tmp_path: Path) -> None:
    write(tmp_path, "Todo/T-1.md", "---\ncreated_at: 2026-13-45\nupdated_at: soon\n---\n")
    result = scan(tmp_path)
    assert len(result.issues) == 1 and result.issues[0].created_at is None
    assert [p.severity for p in result.problems] == [WARNING, WARNING]


def test_labels_and_blockers_shapes_warn(tmp_path: Path) -> None:
    write(tmp_path, "Todo/L-1.md", "---\nlabels: bug\nblocked_by: L-2\n---\n")
    result = scan(tmp_path)
    issue = result.issues[0]
    assert issue.labels == () and [b.ref for b in issue.blocked_by] == ["L-2"]
    assert any("labels" in p.message and p.severity == WARNING for p in result.problems)


# ---------------------------------------------------------------------------- hostile files


@pytest.mark.parametrize("front, words", [
    pytest.param("title: [unclosed", "invalid front matter (line 2)", id="bad-yaml"),
    ("- a\n- b", "not a map"),
    ("just a string", "not a map"),
    ("!!python/object/apply:os.system ['touch pwned']", "invalid front matter"),
    ("x: !!python/object:builtins.object {}", "invalid front matter"),
    ("x: !custom 1", "invalid front matter"),
    ("a: &a [*a]", "recursive alias"),
    pytest.param("k: " + "[" * 200 + "]" * 200, "nesting deeper", id="deep"),
    pytest.param("n: " + "9" * 5000, "invalid front matter", id="huge-int"),
    ("? [a, b]\n: 1", "invalid front matter"),
    ("title: t\n---\nb: 2", "never"),  # the second fence ends the front matter: 'b: 2' is body
])
def test_broken_front_matter_is_one_problem(
    tmp_path: Path, front: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "issues/Todo/B-1.md", f"---\n{front}\n---\nbody\n", raw=True)
    result = scan(tmp_path / "issues")
    if words == "never":
        assert result.issues and result.issues[0].description == "b: 2\n---\nbody"
        return
    assert result.issues == []
    [problem] = result.problems
    assert words in problem.message and problem.severity == ERROR and problem.ref == "B-1"
    assert not (tmp_path / "pwned").exists()


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("labels: *i")
    write(tmp_path, "Todo/BOMB.md", "---\n" + "\n".join(lines) + "\n---\n")
    started = time.monotonic()
    message = problem_for(tmp_path, "BOMB.md")
    assert "aliases expand" in message
    assert time.monotonic() - started < 2


def test_small_aliases_are_fine() -> None:
    value, node = load_yaml("base: &b [x, y]\nlabels: *b\n")
    assert value == {"base": ["x", "y"], "labels": ["x", "y"]} and node is not None


def test_huge_binary_and_non_utf8_files(tmp_path: Path) -> None:
    write(tmp_path, "Todo/BIG.md", b"---\ntitle: big\n---\n" + b"x" * (10 * 1024 * 1024))
    write(tmp_path, "Todo/BIN.md", b"\x00\x01\x02\xff" * 100)
    write(tmp_path, "Todo/LATIN.md", "---\ntitle: caf\xe9\n---\n".encode("latin-1"))
    write(tmp_path, "Todo/FM.md", "---\n" + "k: v\n" * 20000 + "---\n")
    write(tmp_path, "Todo/OK-1.md", "fine\n")
    result = scan(tmp_path)
    assert [i.id for i in result.issues] == ["OK-1"]
    messages = {p.path.name: p.message for p in result.problems}
    assert f"larger than {MAX_ISSUE_BYTES} bytes" in messages["BIG.md"]
    assert "binary" in messages["BIN.md"]
    assert "not UTF-8" in messages["LATIN.md"]
    assert "more than the" in messages["FM.md"]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.md", "---\ntitle: secret\n---\n")
    write(outside, "Stolen/S-1.md", "---\ntitle: stolen\n---\n")
    root = tmp_path / "issues"
    write(root, "Todo/REAL-1.md", "real\n")
    (root / "Todo" / "LINK-1.md").symlink_to(outside / "secret.md")
    (root / "Todo" / "LINK-2.md").symlink_to(root / "Todo" / "REAL-1.md")
    (root / "Todo" / "LINK-3.md").symlink_to(root / "Todo" / "nowhere.md")
    (root / "Stolen").symlink_to(outside / "Stolen")
    result = scan(root)
    assert [i.id for i in result.issues] == ["REAL-1"]
    messages = {p.path.name: p.message for p in result.problems}
    assert "outside the tracker root" in messages["LINK-1.md"]
    assert "symlink" in messages["LINK-2.md"] and "outside" not in messages["LINK-2.md"]
    assert "symlink" in messages["LINK-3.md"]
    assert "outside the tracker root" in messages["Stolen"]
    assert all(i.path.is_relative_to(root.resolve()) for i in result.issues)


def test_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    write(tmp_path, "real/Todo/R-1.md", "x\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert [i.id for i in scan(tmp_path / "link").issues] == ["R-1"]


def test_fifo_and_folder_named_md_do_not_hang(tmp_path: Path) -> None:
    (tmp_path / "Todo").mkdir()
    os.mkfifo(tmp_path / "Todo" / "PIPE.md")
    (tmp_path / "Todo" / "DIR.md").mkdir()
    result = scan(tmp_path)
    assert result.issues == []
    names = {p.path.name for p in result.problems}
    assert "PIPE.md" in names


def test_hidden_files_folders_and_other_entries(tmp_path: Path) -> None:
    write(tmp_path, "Todo/.hidden.md", "x\n")
    write(tmp_path, ".git/Todo.md", "x\n")
    write(tmp_path, ".obsidian/Todo/X-1.md", "x\n")
    write(tmp_path, "Todo/notes.txt", "x\n")
    write(tmp_path, "Todo/.gitkeep", "")
    write(tmp_path, "README.md", "x\n")
    write(tmp_path, "Todo/sub/NESTED-1.md", "x\n")
    result = scan(tmp_path)
    assert result.issues == []
    assert [(p.path.name, p.severity) for p in result.problems] == [(".hidden.md", WARNING)]


@pytest.mark.parametrize("name, front", [
    ("a..b.md", ""),
    ("X-1.md", "id: ../x"),
    ("X-1.md", "identifier: /etc/passwd"),
    ("X-1.md", "id: a/b"),
    ("X-1.md", "identifier: '..'"),
    ("X-1.md", "identifier: 'a\\tb'"),
    ("X-1.md", "id: 'C:\\\\x'"),
    ("X-1.md", "identifier: .hidden"),
    ("X-1.md", "id: '" + "x" * 300 + "'"),
    (" lead.md", ""),
])
def test_unsafe_ids_are_refused(tmp_path: Path, name: str, front: str) -> None:
    write(tmp_path, f"Todo/{name}", f"---\n{front}\n---\n")
    message = problem_for(tmp_path, name)
    assert "safe" in message


def test_safe_names() -> None:
    assert is_safe_name("ABC-1") and is_safe_name("web_1_x") and is_safe_name("Fix login")
    assert is_safe_name("ünïcode-1")
    for bad in ("", ".", "..", "a/b", "a\\b", ".x", "a..b", "x\n", " x", "x" * 201, "a\x00b"):
        assert not is_safe_name(bad)


def test_missing_root(tmp_path: Path) -> None:
    result = scan(tmp_path / "nope")
    assert result.issues == [] and "does not exist" in result.problems[0].message
    write(tmp_path, "file", "x")
    assert "not a readable folder" in scan(tmp_path / "file").problems[0].message


# ---------------------------------------------------------------------------- states, blockers


def test_states_compare_case_insensitively(tmp_path: Path) -> None:
    write(tmp_path, "todo/A-1.md", "x\n")
    write(tmp_path, "IN PROGRESS/A-2.md", "x\n")
    write(tmp_path, "Done/A-3.md", "x\n")
    result = scan(tmp_path)
    assert {i.id for i in result.in_states(["Todo", " in progress "])} == {"A-1", "A-2"}
    assert result.in_states([]) == []
    assert norm_state("  In Progress ") == "in progress"
    assert {i.state for i in result.issues} == {"todo", "IN PROGRESS", "Done"}


def test_blocked_todo(tmp_path: Path) -> None:
    write(tmp_path, "Todo/B-1.md", "---\nblocked_by: [B-2]\n---\n")
    write(tmp_path, "In Progress/B-2.md", "x\n")
    write(tmp_path, "Todo/B-3.md", "---\nblocked_by: [B-4]\n---\n")
    write(tmp_path, "DONE/B-4.md", "x\n")
    write(tmp_path, "Todo/B-5.md", "---\nblocked_by: [NOPE-1]\n---\n")
    write(tmp_path, "In Progress/B-6.md", "---\nblocked_by: [B-2]\n---\n")
    result = scan(tmp_path)
    index = result.by_id()
    blocked = {i.id for i in result.issues if is_blocked(i, index, TERMINAL)}
    assert blocked == {"B-1", "B-5"}  # B-3's blocker is Done; B-6 is not in Todo
    b1 = index["B-1"]
    assert b1.blocked_by[0].state == "In Progress" and b1.blocked_by[0].id == "B-2"
    [unresolved] = open_blockers(index["B-5"], index, TERMINAL)
    assert unresolved.state is None and unresolved.identifier == "NOPE-1"


def test_blockers_by_identifier_id_or_file_name(tmp_path: Path) -> None:
    write(tmp_path, "Done/file-a.md", "---\nid: internal\nidentifier: PUB-1\n---\n")
    write(tmp_path, "Todo/X-1.md", "---\nblocked_by: [PUB-1, internal, file-a]\n---\n")
    result = scan(tmp_path)
    x = result.by_id()["X-1"]
    assert [b.id for b in x.blocked_by] == ["internal"] * 3
    assert not is_blocked(x, result.by_id(), TERMINAL)


def test_duplicates_warn_and_by_ids(tmp_path: Path) -> None:
    write(tmp_path, "Done/D-1.md", "old\n")
    write(tmp_path, "Todo/D-1.md", "new\n")
    write(tmp_path, "Todo/BAD-1.md", "---\n[\n---\n")
    result = scan(tmp_path)
    assert len(result.issues) == 2
    assert any("duplicate id 'D-1'" in p.message for p in result.problems)
    assert result.by_ids(["D-1", "MISSING"])["D-1"].state == "Done"
    assert result.by_ids([]) == {}
    with pytest.raises(TrackerError) as caught:
        result.by_ids(["BAD-1"])
    assert caught.value.code == "local_issue_malformed"


# ---------------------------------------------------------------------------- move_issue


def test_move_issue(tmp_path: Path) -> None:
    source = write(tmp_path, "Todo/M-1.md", "---\ntitle: Move me\n---\nbody\n")
    target = move_issue(tmp_path, "M-1", "Todo", "Done")
    assert target == (tmp_path / "Done" / "M-1.md").resolve()
    assert not source.exists() and "Move me" in target.read_text()
    # already there (any case): a no-op that returns the path
    assert move_issue(tmp_path, "M-1", None, "done") == target


def test_move_reuses_a_differently_cased_folder(tmp_path: Path) -> None:
    write(tmp_path, "Todo/M-2.md", "x\n")
    (tmp_path / "done").mkdir()
    target = move_issue(tmp_path, "M-2", None, "Done")
    assert target.parent.name == "done" and not (tmp_path / "Done").exists()


def test_move_by_front_matter_identifier(tmp_path: Path) -> None:
    write(tmp_path, "Todo/file.md", "---\nidentifier: PUB-9\n---\n")
    assert move_issue(tmp_path, "PUB-9", "Todo", "Done").name == "file.md"


def test_move_not_found(tmp_path: Path) -> None:
    (tmp_path / "Todo").mkdir()
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "NOPE", "Todo", "Done")
    assert caught.value.code == "local_issue_not_found"


def test_move_ambiguous_then_narrowed_by_from_state(tmp_path: Path) -> None:
    write(tmp_path, "Todo/A-1.md", "x\n")
    write(tmp_path, "In Progress/A-1.md", "y\n")
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "A-1", None, "Done")
    assert caught.value.code == "local_issue_ambiguous"
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "A-1", "Backlog", "Done")
    assert caught.value.code == "local_issue_ambiguous"
    target = move_issue(tmp_path, "A-1", "in progress", "Done")
    assert target.read_text().endswith("y\n") and (tmp_path / "Todo" / "A-1.md").exists()


def test_move_never_clobbers(tmp_path: Path) -> None:
    write(tmp_path, "Todo/C-1.md", "---\ntitle: new\n---\n")
    write(tmp_path, "Done/C-1.md", "---\nid: other\nidentifier: other\n---\nkeep me\n")
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "C-1", "Todo", "Done")
    assert caught.value.code == "local_issue_target_exists"
    assert (tmp_path / "Done" / "C-1.md").read_text().endswith("keep me\n")
    assert (tmp_path / "Todo" / "C-1.md").exists()


@pytest.mark.parametrize("state", ["../escape", "a/b", "..", ".hidden", ""])
def test_move_to_a_bad_state_name(tmp_path: Path, state: str) -> None:
    write(tmp_path, "Todo/E-1.md", "x\n")
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "E-1", "Todo", state)
    assert caught.value.code == "local_issue_move_error"
    assert (tmp_path / "Todo" / "E-1.md").exists()


def test_move_error_when_the_rename_fails(tmp_path: Path) -> None:
    write(tmp_path, "Todo/E-2.md", "x\n")
    (tmp_path / "Done").write_text("a file where the folder should be")
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path, "E-2", "Todo", "Done")
    assert caught.value.code == "local_issue_move_error"
    with pytest.raises(TrackerError) as caught:
        move_issue(tmp_path / "missing", "E-2", "Todo", "Done")
    assert caught.value.code == "local_issue_move_error"


# ---------------------------------------------------------------------------- create_issue


NOW = dt.datetime(2026, 5, 19, 8, 49, 32, 774000, tzinfo=dt.UTC)


def test_create_issue_writes_smol_front_matter(tmp_path: Path) -> None:
    issue = create_issue(tmp_path, "Todo", "Add a thing", "Details\n", 2, ["A", "b"], now=NOW)
    assert issue.id == "ISSUE-1" and issue.state == "Todo"
    assert issue.path.read_text() == (
        "---\nid: ISSUE-1\nidentifier: ISSUE-1\ntitle: Add a thing\n"
        "created_at: '2026-05-19T08:49:32.774Z'\nupdated_at: '2026-05-19T08:49:32.774Z'\n"
        "priority: 2\nlabels: [A, b]\n---\nDetails\n"
    )
    assert only(tmp_path) == issue
    assert issue.labels == ("a", "b") and issue.created_at == NOW


def test_create_issue_ids_continue_across_states(tmp_path: Path) -> None:
    write(tmp_path, "Done/DEMO-7.md", "x\n")
    write(tmp_path, "Todo/DEMO-2.md", "x\n")
    write(tmp_path, "Todo/OTHER-40.md", "x\n")
    write(tmp_path, "Todo/DEMO-8.md", "---\n[broken\n---\n")  # a broken file still holds its name
    assert next_identifier(scan(tmp_path)) == "DEMO-9"
    assert create_issue(tmp_path, "Todo", "t").id == "DEMO-9"
    assert create_issue(tmp_path, "Todo", "t", prefix="OTHER").id == "OTHER-41"
    assert create_issue(tmp_path, "Todo", "t", prefix="NEW").id == "NEW-1"


def test_create_issue_never_overwrites(tmp_path: Path) -> None:
    existing = write(tmp_path, "Todo/ISSUE-1.md", "---\nid: something-else\n---\nmine\n")
    issue = create_issue(tmp_path, "Todo", "t")
    assert issue.id == "ISSUE-2" and existing.read_text().endswith("mine\n")
    with pytest.raises(TrackerError) as caught:
        create_issue(tmp_path, "Backlog", "t", identifier="ISSUE-2")
    assert caught.value.code == "local_issue_target_exists"
    assert not (tmp_path / "Backlog" / "ISSUE-2.md").exists()
    assert [p.name for p in (tmp_path / "Todo").iterdir() if p.name.startswith(".")] == []


def test_create_issue_explicit_identifier_is_sanitised(tmp_path: Path) -> None:
    issue = create_issue(tmp_path, "todo", "From web", identifier="web/1 x", labels=["Z"],
                         blocked_by=["X-1"])
    assert issue.id == "web_1_x" and issue.path.name == "web_1_x.md"
    assert [b.ref for b in issue.blocked_by] == ["X-1"]


def test_create_issue_reuses_existing_state_folder(tmp_path: Path) -> None:
    (tmp_path / "In Progress").mkdir()
    issue = create_issue(tmp_path, "in progress", "t")
    assert issue.path.parent.name == "In Progress" and issue.state == "In Progress"


def test_create_issue_round_trips_awkward_text(tmp_path: Path) -> None:
    title = "Quotes \" ' and: colons # hash — ünïcode ✓ {{ liquid }}"
    issue = create_issue(tmp_path, "Todo", title, "---\nnot front matter\n", labels=["a: b"])
    again = only(tmp_path)
    assert again.title == title == issue.title
    assert again.description == "---\nnot front matter"
    assert again.labels == ("a: b",)


@pytest.mark.parametrize("kwargs, code", [
    ({"title": ""}, "local_issue_invalid"),
    ({"title": "two\nlines"}, "local_issue_invalid"),
    ({"title": "ok", "state": "../x"}, "local_issue_invalid"),
    ({"title": "ok", "identifier": ".."}, "local_issue_invalid"),
    ({"title": "ok", "prefix": "a b"}, "local_issue_invalid"),
    ({"title": "ok", "priority": "high"}, "local_issue_invalid"),
])
def test_create_issue_rejects_bad_input(tmp_path: Path, kwargs: dict, code: str) -> None:
    args = {"state": "Todo", **kwargs}
    with pytest.raises(TrackerError) as caught:
        create_issue(tmp_path, **args)
    assert caught.value.code == code
