"""The markdown task queue: marrow-core's file contract, without its silent overwrites."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from marrow_tui.scheduler.tasks import (
    MAX_TITLE,
    add_task,
    check_title,
    list_tasks,
    move_tasks,
    safe_name,
)

NOW = datetime(2026, 11, 21, 8, 49, 30, 123456)


def test_exact_content_and_name(tmp_path: Path) -> None:
    path = add_task(tmp_path, "My Task", "Details", now=NOW)
    assert path == tmp_path / "queue" / "20261121-084930-123-My-Task.md"
    assert path.read_bytes() == b"# My Task\n\nDetails\n"


def test_no_body_gives_exactly_one_newline(tmp_path: Path) -> None:
    path = add_task(tmp_path, "  Solo  ", now=NOW)
    assert path.read_bytes() == b"# Solo\n"
    assert path.name == "20261121-084930-123-Solo.md"


def test_unsafe_characters_are_stripped_from_the_name(tmp_path: Path) -> None:
    path = add_task(tmp_path, "Fix the <bug> & crash!", now=NOW)
    assert path.name == "20261121-084930-123-Fix-the-bug--crash.md"
    assert safe_name("!!!") == "task"
    assert safe_name("x" * 80) == "x" * 50
    assert safe_name("  a b  ") == "a-b"


def test_same_title_same_millisecond_never_overwrites(tmp_path: Path) -> None:
    first = add_task(tmp_path, "dup", "one", now=NOW)
    second = add_task(tmp_path, "dup", "two", now=NOW)
    third = add_task(tmp_path, "dup", "three", now=NOW)
    assert first.name == "20261121-084930-123-dup.md"
    assert second.name == "20261121-084930-123-dup-2.md"
    assert third.name == "20261121-084930-123-dup-3.md"
    assert [p.read_text() for p in (first, second, third)] == [
        "# dup\n\none\n",
        "# dup\n\ntwo\n",
        "# dup\n\nthree\n",
    ]
    # listing keeps creation order, and no temp file is left behind
    assert [t.body for t in list_tasks(tmp_path)] == ["one", "two", "three"]
    assert sorted(p.name for p in (tmp_path / "queue").iterdir()) == sorted(
        p.name for p in (first, second, third)
    )


@pytest.mark.parametrize(
    "title",
    [
        "../../etc/passwd",
        "/absolute/path",
        "..",
        "a\x00b",
        "x" * 10_000,
        "é/..\\..",
    ],
)
def test_hostile_titles_stay_in_the_folder(tmp_path: Path, title: str) -> None:
    tasks_dir = tmp_path / "ws" / "tasks"
    try:
        path = add_task(tasks_dir, title, "b", now=NOW)
    except ValueError:
        assert "\x00" in title or len(title) > MAX_TITLE
        assert not tasks_dir.exists() or not any((tasks_dir / "queue").iterdir())
        return
    assert path.parent == tasks_dir / "queue"
    assert path.resolve().parent == (tasks_dir / "queue").resolve()
    assert len(path.name) < 100
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]


@pytest.mark.parametrize("title", ["", "   ", "two\nlines", "cr\rhere", "\n",
                                   "\x1b]0;owned\x07", "x" * (MAX_TITLE + 1)])
def test_bad_titles_are_refused(tmp_path: Path, title: str) -> None:
    with pytest.raises(ValueError, match="title"):
        add_task(tmp_path, title, now=NOW)
    assert not (tmp_path / "queue").exists() or not any((tmp_path / "queue").iterdir())


def test_check_title_messages() -> None:
    assert check_title("  ok ") == "ok"
    with pytest.raises(ValueError, match="empty"):
        check_title(" ")
    with pytest.raises(ValueError, match="single line"):
        check_title("a\nb")
    with pytest.raises(ValueError, match="text"):
        check_title(3)  # type: ignore[arg-type]


def test_list_tasks_order_title_body_and_state(tmp_path: Path) -> None:
    later = add_task(tmp_path, "later", "b2", now=NOW.replace(second=31))
    earlier = add_task(tmp_path, "earlier", "b1\n\nmore", now=NOW)
    # a marrow-core file (second resolution) and a file without a heading
    legacy = tmp_path / "queue" / "20261121-084929-old.md"
    legacy.write_text("#  Old one\n\nold body\n")
    plain = tmp_path / "queue" / "20261121-084932-plain.md"
    plain.write_text("no heading here\n")
    (tmp_path / "queue" / "notes.txt").write_text("ignored")
    (tmp_path / "queue" / ".hidden.md").write_text("# hidden\n")
    (tmp_path / "queue" / "dir.md").mkdir()

    tasks = list_tasks(tmp_path)
    assert [t.path for t in tasks] == [legacy, earlier, later, plain]
    assert [t.title for t in tasks] == ["Old one", "earlier", "later", plain.stem]
    assert [t.body for t in tasks] == ["old body", "b1\n\nmore", "b2", "no heading here"]
    assert {t.state for t in tasks} == {"queue"}
    assert tasks[1].created == pytest.approx(os.stat(earlier).st_mtime)


def test_list_missing_folder_and_bad_state(tmp_path: Path) -> None:
    assert list_tasks(tmp_path / "nope") == []
    assert list_tasks(tmp_path, "done") == []
    with pytest.raises(ValueError, match="state"):
        list_tasks(tmp_path, "../queue")


def test_move_to_delegated_then_done(tmp_path: Path) -> None:
    a = add_task(tmp_path, "a", now=NOW)
    b = add_task(tmp_path, "b", now=NOW)
    moved = move_tasks([a, b], "delegated")
    assert moved == [tmp_path / "delegated" / a.name, tmp_path / "delegated" / b.name]
    assert list_tasks(tmp_path) == []
    assert [t.title for t in list_tasks(tmp_path, "delegated")] == ["a", "b"]
    assert {t.state for t in list_tasks(tmp_path, "delegated")} == {"delegated"}

    done = move_tasks([moved[0]], "done")
    assert done == [tmp_path / "done" / a.name]
    assert done[0].read_text() == "# a\n"
    back = move_tasks(done, "queue")
    assert back == [a]


def test_move_skips_vanished_files_and_never_overwrites(tmp_path: Path) -> None:
    a = add_task(tmp_path, "a", "new", now=NOW)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / a.name).write_text("# a\n\nold\n")
    gone = tmp_path / "queue" / "20000101-000000-000-gone.md"
    moved = move_tasks([gone, a], "done")
    assert moved == [tmp_path / "done" / f"{a.stem}-2.md"]
    assert moved[0].read_text() == "# a\n\nnew\n"
    assert (tmp_path / "done" / a.name).read_text() == "# a\n\nold\n"
    assert not a.exists()


def test_move_refuses_paths_outside_task_folders(tmp_path: Path) -> None:
    stray = tmp_path / "elsewhere" / "x.md"
    stray.parent.mkdir()
    stray.write_text("# x\n")
    with pytest.raises(ValueError, match="task folder"):
        move_tasks([stray], "done")
    with pytest.raises(ValueError, match="state"):
        move_tasks([stray], "trash")
    assert stray.exists()


def test_huge_task_file_is_read_capped(tmp_path: Path) -> None:
    path = add_task(tmp_path, "big", "x" * 200_000, now=NOW)
    (task,) = list_tasks(tmp_path)
    assert task.path == path
    assert len(task.body) < 70_000
    assert task.body.endswith("[task file truncated at 64 KiB]")


def test_odd_digits_in_names_do_not_break_the_listing(tmp_path: Path) -> None:
    """Characters that are digits to Python but not to int() ('²') are plain text."""
    queue = tmp_path / "tasks" / "queue"
    queue.mkdir(parents=True)
    for name in ("a-2.md", "a-²-1.md", "a-10.md", "v1²٣.md"):
        (queue / name).write_text("# t\n")
    names = [t.path.name for t in list_tasks(tmp_path / "tasks")]
    assert sorted(names) == sorted(["a-2.md", "a-²-1.md", "a-10.md", "v1²٣.md"])
    assert names.index("a-2.md") < names.index("a-10.md")
    assert safe_name("v1² ٣ ok") == "v1--ok"
