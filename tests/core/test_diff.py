"""The unified diff model: what real `git diff` prints, read into files, hunks and lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

from marrow_tui.core.diff import parse, stat, unquote


def git(repo: Path, *words: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *words], check=True, capture_output=True,
                          text=True).stdout


def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    return repo


def test_a_real_git_diff_reads_into_files_hunks_and_counts(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    (repo / "keep.py").write_text("one\n-- two\nthree\n")
    (repo / "gone.txt").write_text("bye\n")
    (repo / "old name.md").write_text("".join(f"line {n}\n" for n in range(20)))
    (repo / "logo.bin").write_bytes(b"\x00\x01")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "keep.py").write_text("one\nTWO\nthree\nfour")  # its removed line reads "--- two"
    (repo / "gone.txt").unlink()
    (repo / "old name.md").rename(repo / "new name.md")
    (repo / "new name.md").write_text("".join(f"line {n}\n" for n in range(20)) + "more\n")
    (repo / "café.txt").write_text("bonjour\n")
    (repo / "logo.bin").write_bytes(b"\x00\x02\x03")
    git(repo, "add", "-A")
    files = {f.path: f for f in parse(git(repo, "diff", "--cached", "-M", "main"))}
    assert set(files) == {"keep.py", "gone.txt", "new name.md", "café.txt", "logo.bin"}
    keep = files["keep.py"]
    assert (keep.status, keep.added, keep.removed) == ("modified", 2, 1)
    lines = [(line.kind, line.text, line.old, line.new) for line in keep.hunks[0].lines]
    assert lines == [("context", "one", 1, 1), ("removed", "-- two", 2, None),
                     ("added", "TWO", None, 2), ("context", "three", 3, 3),
                     ("added", "four", None, 4),
                     ("note", "No newline at end of file", None, None)]
    assert (files["gone.txt"].status, files["gone.txt"].removed) == ("deleted", 1)
    renamed = files["new name.md"]
    assert (renamed.status, renamed.old_path, renamed.added) == ("renamed", "old name.md", 1)
    assert (files["café.txt"].status, files["café.txt"].added) == ("added", 1)
    assert files["logo.bin"].binary and not files["logo.bin"].hunks
    total = stat(list(files.values()))
    assert (total.files, total.added, total.removed) == (5, 4, 2)
    assert total.text() == "+4 −2"


def test_text_that_is_not_a_diff_is_kept_as_notes_never_an_error() -> None:
    files = parse("warning: something\ndiff --git a/x b/x\n@@ nonsense @@\n+orphan\n")
    assert len(files) == 1
    assert files[0].hunks == [] and files[0].added == 0
    assert "@@ nonsense @@" in files[0].notes
    assert parse("") == [] and stat([]).text() == ""


def test_quoted_paths_are_unquoted() -> None:
    assert unquote('"tab\\there"') == "tab\there"
    assert unquote('"caf\\303\\251.txt"') == "café.txt"
    assert unquote("plain name") == "plain name"
