"""Scope normalisation, the overlap rule, and `ScopeIndex` agreeing with the rule.

The index is checked against a brute-force model built from `scopes_overlap` itself: random
claim sets, random add/remove sequences (a Hypothesis state machine that also checks the trie
holds no stale nodes or counts), and 10,000 live claims in one worktree.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from marrow_tui.core.scope import (
    MAX_PATH_CHARS,
    MAX_PATHS_PER_CLAIM,
    WHOLE,
    ScopeIndex,
    normalise_path,
    normalise_paths,
    paths_overlap,
    scopes_overlap,
)

# ---- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("src/auth.py", ("src", "auth.py")),
        ("src\\auth.py", ("src", "auth.py")),
        ("src\\sub\\x.py", ("src", "sub", "x.py")),
        ("./src/auth.py", ("src", "auth.py")),
        ("src/./auth.py", ("src", "auth.py")),
        ("src/", ("src",)),
        ("src//util///x", ("src", "util", "x")),
        ("  src/util  ", ("src", "util")),
        ("\tsrc\n", ("src",)),
        ("Src/A.py", ("Src", "A.py")),  # case-sensitive: kept as written
        ("a b/c d", ("a b", "c d")),  # inner spaces are printable and kept
        ("...", ("...",)),  # only `..` exactly is a parent reference
        ("..a/b..", ("..a", "b..")),
    ],
)
def test_normalise_path_keeps_a_relative_path(raw: str, expected: tuple[str, ...]) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        ".",
        "./",
        "/",
        "/etc/passwd",
        "\\abs\\path",  # a backslash-rooted path is absolute too
        "..",
        "../sibling",
        "src/../../etc",
        "src/..",
        "a\\..\\b",
        "a\x00b",
        "src/\x1bx",
        "a\nb",  # an inner newline is not printable
        "a\tb",
        "x" * (MAX_PATH_CHARS + 1),
    ],
)
def test_normalise_path_widens_to_the_whole_worktree(raw: str) -> None:
    assert normalise_path(raw) == WHOLE


def test_path_length_limit_is_inclusive() -> None:
    assert normalise_path("x" * MAX_PATH_CHARS) == ("x" * MAX_PATH_CHARS,)
    # surrounding whitespace is stripped before the length is checked
    assert normalise_path(" " + "x" * MAX_PATH_CHARS + " ") == ("x" * MAX_PATH_CHARS,)


def test_normalise_paths_sorts_and_dedups_after_normalising() -> None:
    assert normalise_paths(["src/b", "./src/a/", "src\\b", "src//a"]) == ("src/a", "src/b")
    assert normalise_paths(["z", "a/b", "a"]) == ("a", "a/b", "z")


def test_normalise_paths_empty_list_is_the_whole_worktree() -> None:
    assert normalise_paths([]) == ()
    assert normalise_paths(()) == ()


@pytest.mark.parametrize("bad", ["../x", "/abs", "", ".", "a\x07", "x" * (MAX_PATH_CHARS + 1)])
def test_one_widening_path_widens_the_whole_claim(bad: str) -> None:
    assert normalise_paths(["src/a", bad, "src/b"]) == ()


def test_more_than_max_paths_widens() -> None:
    exactly = [f"f{i}" for i in range(MAX_PATHS_PER_CLAIM)]
    assert len(normalise_paths(exactly)) == MAX_PATHS_PER_CLAIM
    assert normalise_paths([*exactly, "one-more"]) == ()


def test_path_limit_counts_distinct_normalised_paths() -> None:
    distinct = [f"f{i}" for i in range(MAX_PATHS_PER_CLAIM)]
    # 1024 raw strings, but only 512 distinct once normalised: not widened
    spelled_twice = distinct + [f"./{p}/" for p in distinct]
    assert normalise_paths(spelled_twice) == tuple(sorted(distinct))


def test_normalise_paths_accepts_any_iterable() -> None:
    assert normalise_paths(p for p in ["b", "a"]) == ("a", "b")


# ---- the overlap rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("src", "src", True),
        ("src", "src/a.py", True),
        ("src/a.py", "src", True),
        ("src/x/y/z", "src", True),
        ("src", "srcx", False),
        ("src", "src.py", False),
        ("src/a", "src/b", False),
        ("src/a", "src/ab", False),
        ("a/b", "b", False),
        ("Src", "src", False),
    ],
)
def test_paths_overlap(a: str, b: str, expected: bool) -> None:
    assert paths_overlap(a, b) is expected
    assert paths_overlap(b, a) is expected


def test_scopes_overlap_rule() -> None:
    assert not scopes_overlap("main", (), "other", ())  # different worktrees never conflict
    assert not scopes_overlap("", ("src",), "main", ("src",))
    assert scopes_overlap("", (), "", ())  # two whole-worktree claims in the default worktree
    assert scopes_overlap("w", (), "w", ("deep/file",))
    assert scopes_overlap("w", ("deep/file",), "w", ())
    assert scopes_overlap("w", ("a", "b/c"), "w", ("x", "b"))
    assert not scopes_overlap("w", ("a", "b/c"), "w", ("x", "b/d", "bc"))


# ---- ScopeIndex against the rule ---------------------------------------------------------------

OWNERS = ["o1", "o2", "o3"]
WORKTREES = ["", "w1", "w2"]
SEGMENTS = ["a", "b", "ab", "c"]

segment_paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)
# raw path lists go through the real normaliser, so the index sees what a claim would hold;
# an empty list (and the rare widening) covers the whole worktree
scopes = st.lists(segment_paths, max_size=3).map(normalise_paths)
Claim = tuple[str, str, str, tuple[str, ...]]  # (task_id, owner, worktree, paths)


@st.composite
def claim_sets(draw: st.DrawFn) -> list[Claim]:
    count = draw(st.integers(min_value=0, max_value=12))
    return [
        (
            f"t{i}",
            draw(st.sampled_from(OWNERS)),
            draw(st.sampled_from(WORKTREES)),
            draw(scopes),
        )
        for i in range(count)
    ]


def brute_conflicts(
    claims: list[Claim] | dict[str, Claim],
    owner: str,
    worktree: str,
    paths: tuple[str, ...],
    ignore: str | None = None,
) -> set[tuple[str, str]]:
    items = claims.values() if isinstance(claims, dict) else claims
    return {
        (task, who)
        for task, who, wt, ps in items
        if who != owner and task != ignore and scopes_overlap(worktree, paths, wt, ps)
    }


def check_answer(
    index: ScopeIndex,
    claims: list[Claim] | dict[str, Claim],
    owner: str,
    worktree: str,
    paths: tuple[str, ...],
    ignore: str | None = None,
) -> tuple[str, str] | None:
    expected = brute_conflicts(claims, owner, worktree, paths, ignore)
    found = index.conflict(owner, worktree, paths, ignore=ignore)
    if expected:
        assert found is not None, (owner, worktree, paths, expected)
        # the answer is a real claim, by someone else, that really overlaps
        assert found in expected
        assert found[1] != owner
    else:
        assert found is None, (owner, worktree, paths, found)
    return found


@settings(max_examples=150, deadline=None)
@given(
    claims=claim_sets(),
    owner=st.sampled_from(OWNERS),
    worktree=st.sampled_from(WORKTREES),
    paths=scopes,
)
def test_conflict_iff_another_owner_overlaps(
    claims: list[Claim], owner: str, worktree: str, paths: tuple[str, ...]
) -> None:
    index = ScopeIndex()
    for claim in claims:
        index.add(*claim)
    check_answer(index, claims, owner, worktree, paths)


@settings(max_examples=150, deadline=None)
@given(
    claims=claim_sets(),
    owner=st.sampled_from(OWNERS),
    worktree=st.sampled_from(WORKTREES),
    paths=scopes,
)
def test_conflicts_lists_every_task_another_owner_overlaps_with(
    claims: list[Claim], owner: str, worktree: str, paths: tuple[str, ...]
) -> None:
    index = ScopeIndex()
    for claim in claims:
        index.add(*claim)
    expected = {task for task, _ in brute_conflicts(claims, owner, worktree, paths)}
    assert index.conflicts(owner, worktree, paths) == expected


@settings(max_examples=100, deadline=None)
@given(
    claims=claim_sets(),
    owner=st.sampled_from(OWNERS),
    worktree=st.sampled_from(WORKTREES),
    paths=scopes,
    data=st.data(),
)
def test_conflict_leaves_out_the_ignored_task(
    claims: list[Claim], owner: str, worktree: str, paths: tuple[str, ...], data: st.DataObject
) -> None:
    index = ScopeIndex()
    for claim in claims:
        index.add(*claim)
    ignore = data.draw(st.sampled_from([c[0] for c in claims] + ["nope"]))
    found = check_answer(index, claims, owner, worktree, paths, ignore=ignore)
    assert found is None or found[0] != ignore


@settings(max_examples=50, deadline=None)
@given(claims=claim_sets(), data=st.data())
def test_own_claims_never_conflict(claims: list[Claim], data: st.DataObject) -> None:
    index = ScopeIndex()
    for task, _owner, wt, ps in claims:
        index.add(task, "me", wt, ps)
    assert index.conflict("me", data.draw(st.sampled_from(WORKTREES)), data.draw(scopes)) is None
    assert index.conflict("me", "", ()) is None


def test_conflict_examples() -> None:
    index = ScopeIndex()
    index.add("T1", "alice", "main", ("src/auth.py", "src/util"))
    assert index.conflict("bob", "main", ("src",)) == ("T1", "alice")  # ancestor
    assert index.conflict("bob", "main", ("src/util/x.py",)) == ("T1", "alice")  # descendant
    assert index.conflict("bob", "main", ("src/auth.py",)) == ("T1", "alice")  # equal
    assert index.conflict("bob", "main", ()) == ("T1", "alice")  # whole worktree
    assert index.conflict("bob", "main", ("src/utility",)) is None
    assert index.conflict("bob", "main", ("src/auth",)) is None
    assert index.conflict("bob", "", ("src",)) is None  # other worktree
    assert index.conflict("alice", "main", ("src",)) is None  # own claim
    assert index.conflict("bob", "main", ("src",), ignore="T1") is None

    index.add("W", "carol", "main", ())
    assert index.conflict("bob", "main", ("docs/x",)) == ("W", "carol")
    assert index.conflict("alice", "main", ("docs/x",)) == ("W", "carol")
    assert index.conflict("carol", "main", ("src",)) == ("T1", "alice")


def test_removing_everything_leaves_an_empty_index() -> None:
    index = ScopeIndex()
    claims = [
        ("t1", "a", "w", ("x", "x/y")),
        ("t2", "a", "w", ("x/y",)),
        ("t3", "b", "w", ()),
        ("t4", "b", "v", ("x/y/z",)),
    ]
    for claim in claims:
        index.add(*claim)
    assert sorted(index.worktrees()) == ["v", "w"]
    for claim in claims:
        index.remove(*claim)
    assert list(index.worktrees()) == []
    assert index.conflict("z", "w", ()) is None


def test_remove_of_an_unknown_worktree_is_a_no_op() -> None:
    index = ScopeIndex()
    index.add("t1", "a", "w", ("x",))
    index.remove("t9", "a", "elsewhere", ("x",))
    assert index.conflict("b", "w", ("x",)) == ("t1", "a")


# ---- structural model of the trie ---------------------------------------------------------------


def expected_trie(claims: dict[str, Claim], worktree: str) -> dict[str, Any]:
    """The trie the index should hold for one worktree: here/below per node, no empty nodes."""
    root: dict[str, Any] = {"children": {}, "here": {}, "below": {}}
    for task, owner, wt, paths in claims.values():
        if wt != worktree:
            continue
        for path in paths:
            node = root
            node["below"][owner] = node["below"].get(owner, 0) + 1
            for segment in path.split("/"):
                node = node["children"].setdefault(
                    segment, {"children": {}, "here": {}, "below": {}}
                )
                node["below"][owner] = node["below"].get(owner, 0) + 1
            node["here"].setdefault(owner, set()).add(task)
    return root


def actual_trie(node: Any) -> dict[str, Any]:
    return {
        "children": {name: actual_trie(child) for name, child in node.children.items()},
        "here": {owner: set(tasks) for owner, tasks in node.here.items()},
        "below": dict(node.below),
    }


def assert_index_matches(index: ScopeIndex, claims: dict[str, Claim]) -> None:
    live_worktrees = {wt for _t, _o, wt, _p in claims.values()}
    assert set(index.worktrees()) == live_worktrees
    for wt in live_worktrees:
        tree = index._worktrees[wt]
        owners: dict[str, set[str]] = {}
        whole: dict[str, set[str]] = {}
        for task, owner, cwt, paths in claims.values():
            if cwt == wt:
                owners.setdefault(owner, set()).add(task)
                if not paths:
                    whole.setdefault(owner, set()).add(task)
        assert tree.owners == owners
        assert tree.whole == whole
        assert actual_trie(tree.root) == expected_trie(claims, wt)


class ScopeIndexMachine(RuleBasedStateMachine):
    """Random adds and removes; every query agrees with brute force over the live claims."""

    @initialize()
    def start(self) -> None:
        self.index = ScopeIndex()
        self.live: dict[str, Claim] = {}
        self.counter = 0

    @rule(owner=st.sampled_from(OWNERS), worktree=st.sampled_from(WORKTREES), paths=scopes)
    def add(self, owner: str, worktree: str, paths: tuple[str, ...]) -> None:
        self.counter += 1
        task = f"t{self.counter}"
        self.index.add(task, owner, worktree, paths)
        self.live[task] = (task, owner, worktree, paths)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(sorted(self.live)))
        self.index.remove(*self.live.pop(task))

    @rule(owner=st.sampled_from(OWNERS), worktree=st.sampled_from(WORKTREES), paths=scopes)
    def query(self, owner: str, worktree: str, paths: tuple[str, ...]) -> None:
        check_answer(self.index, self.live, owner, worktree, paths)

    @precondition(lambda self: bool(self.live))
    @rule(owner=st.sampled_from(OWNERS), paths=scopes, data=st.data())
    def query_ignoring(self, owner: str, paths: tuple[str, ...], data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(sorted(self.live)))
        worktree = self.live[task][2]
        check_answer(self.index, self.live, owner, worktree, paths, ignore=task)

    @invariant()
    def trie_matches_model(self) -> None:
        assert_index_matches(self.index, self.live)


ScopeIndexMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScopeIndexMachine = ScopeIndexMachine.TestCase


# ---- scale: 10,000 live claims in one worktree --------------------------------------------------


class CountingIndex(ScopeIndex):
    """Counts how many per-node buckets a query inspects (work done, not time taken)."""

    visits = 0

    def _first_other(self, bucket, owner, ignore):  # type: ignore[override]
        CountingIndex.visits += 1
        return ScopeIndex._first_other(bucket, owner, ignore)


def test_ten_thousand_claims_in_one_worktree() -> None:
    index = CountingIndex()
    claims: dict[str, Claim] = {}
    for i in range(10_000):
        task = f"T{i}"
        claim = (task, f"agent{i % 50}", "main", (f"pkg{i // 100}/mod{i % 100}.py",))
        claims[task] = claim
        index.add(*claim)

    def visits(owner: str, paths: tuple[str, ...], ignore: str | None = None) -> int:
        CountingIndex.visits = 0
        check_answer(index, claims, owner, "main", paths, ignore)
        return CountingIndex.visits

    # a fresh file next to 100 claimed ones: whole-bucket, pkg, file -> no conflict
    assert index.conflict("new", "main", ("pkg7/new.py",)) is None
    assert visits("new", ("pkg7/new.py",)) <= 3
    # an exact hit stops at the file's node
    assert index.conflict("new", "main", ("pkg7/mod3.py",)) == ("T703", "agent3")
    assert visits("new", ("pkg7/mod3.py",)) <= 3
    # the holder itself is never in conflict with its own claim
    assert index.conflict("agent3", "main", ("pkg7/mod3.py",)) is None
    assert visits("agent3", ("pkg7/mod3.py",)) <= 3
    # a directory claim finds one of the claims below it without walking the other 99 packages
    found = index.conflict("new", "main", ("pkg42",))
    assert found is not None and found[0] in {f"T{4200 + j}" for j in range(100)}
    assert visits("new", ("pkg42",)) <= 5
    # leaving out the only claim on a file makes the file free
    assert index.conflict("new", "main", ("pkg7/mod3.py",), ignore="T703") is None
    assert visits("new", ("pkg7/mod3.py",), ignore="T703") <= 4
    # a path with no claim anywhere below stops at the first missing segment
    assert visits("new", ("docs/a/b/c/d/e",)) <= 2

    # a sample of mixed queries agrees with brute force over all 10,000
    for j in range(12):
        owner = f"agent{j}" if j % 2 else "stranger"
        check_answer(index, claims, owner, "main", (f"pkg{j * 2}/mod{j}.py",))
        check_answer(index, claims, owner, "main", (f"pkg{j}", f"other/{j}"))
    check_answer(index, claims, "stranger", "main", ())
    check_answer(index, claims, "stranger", "elsewhere", ())

    # remove half, including the whole of pkg0..pkg49, and check again
    for i in range(5_000):
        index.remove(*claims.pop(f"T{i}"))
    assert index.conflict("new", "main", ("pkg3",)) is None
    assert index.conflict("new", "main", ("pkg73",)) is not None
    assert "pkg3" not in index._worktrees["main"].root.children  # emptied branches are pruned
    assert len(index._worktrees["main"].root.children) == 50
    for j in range(8):
        check_answer(index, claims, "stranger", "main", (f"pkg{j * 12}",))


def test_a_path_keeps_joiners_between_visible_characters() -> None:
    # an emoji sequence or a Persian word is a name, not something to widen to everything
    assert normalise_path("assets/\U0001F468\u200d\U0001F469.png") == (
        "assets", "\U0001F468\u200d\U0001F469.png")
    assert normalise_path("a/\u200db") == WHOLE
