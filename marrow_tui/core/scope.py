"""File scopes of claims: the normalisation rule and an index that answers overlap questions.

A claim's scope is a worktree label plus a list of paths. Two scopes overlap when the worktree
labels are equal and either side covers the whole worktree, or a path of one is equal to, or an
ancestor directory of, a path of the other. This is synapse-channel's rule, kept exactly so that
agents written for it behave the same here.

Synapse checks a new claim against every live claim (O(claims)). `ScopeIndex` keeps a trie of
path segments per worktree, with per-owner counts at every node for the subtree below it, so a
check walks only the segments of the new claim's own paths: a claim among 10,000 live ones costs
about what a claim among 10 does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .text import without_joiners

MAX_PATH_CHARS = 4096
MAX_PATHS_PER_CLAIM = 512

#: The root path: the claim covers the whole worktree.
WHOLE: tuple[str, ...] = ()


def normalise_path(raw: str) -> tuple[str, ...]:
    """Return a path as its segments; `WHOLE` when the path must widen to the whole worktree.

    Backslashes become slashes, surrounding whitespace and empty or `.` segments go. An
    absolute path, any `..` segment, an over-long or non-printable path widens: we cannot tell
    what it points at, so the safe reading is "everything".
    """
    text = raw.strip().replace("\\", "/")
    if not text or text.startswith("/") or len(text) > MAX_PATH_CHARS:
        return WHOLE
    segments = tuple(part for part in text.split("/") if part not in ("", "."))
    # a joiner inside a name is part of how it is drawn (an emoji sequence, a Persian word)
    if ".." in segments or not all(without_joiners(part).isprintable() for part in segments):
        return WHOLE
    return segments


def normalise_paths(raw_paths: Iterable[str]) -> tuple[str, ...]:
    """Normalise a claim's path list to sorted, distinct `/`-joined paths.

    An empty result means the whole worktree. So does any path that widens, and a list of more
    than `MAX_PATHS_PER_CLAIM` distinct paths.
    """
    seen: set[str] = set()
    for raw in raw_paths:
        segments = normalise_path(raw)
        if segments == WHOLE:
            return ()
        seen.add("/".join(segments))
    if len(seen) > MAX_PATHS_PER_CLAIM:
        return ()
    return tuple(sorted(seen))


def paths_overlap(a: str, b: str) -> bool:
    """True when one normalised path equals the other or is an ancestor directory of it."""
    if a == b:
        return True
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return longer.startswith(shorter) and longer[len(shorter)] == "/"


def scopes_overlap(
    worktree_a: str, paths_a: tuple[str, ...], worktree_b: str, paths_b: tuple[str, ...]
) -> bool:
    """The reference overlap rule, written plainly (the index must agree with it)."""
    if worktree_a != worktree_b:
        return False
    if not paths_a or not paths_b:
        return True
    return any(paths_overlap(a, b) for a in paths_a for b in paths_b)


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    #: claims whose path ends exactly here: owner -> task ids
    here: dict[str, set[str]] = field(default_factory=dict)
    #: claims at or below this node, counted per owner (one count per (claim, path))
    below: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Worktree:
    root: _Node = field(default_factory=_Node)
    #: whole-worktree claims: owner -> task ids
    whole: dict[str, set[str]] = field(default_factory=dict)
    #: every claim in the worktree: owner -> task ids
    owners: dict[str, set[str]] = field(default_factory=dict)


def _other_owner(counts: dict[str, int] | dict[str, set[str]], owner: str) -> str | None:
    for name in counts:
        if name != owner:
            return name
    return None


def _add(bucket: dict[str, set[str]], owner: str, task_id: str) -> None:
    bucket.setdefault(owner, set()).add(task_id)


def _discard(bucket: dict[str, set[str]], owner: str, task_id: str) -> None:
    tasks = bucket.get(owner)
    if tasks is not None:
        tasks.discard(task_id)
        if not tasks:
            del bucket[owner]


class ScopeIndex:
    """Live claim scopes, indexed by worktree and path segments."""

    def __init__(self) -> None:
        self._worktrees: dict[str, _Worktree] = {}

    def add(self, task_id: str, owner: str, worktree: str, paths: tuple[str, ...]) -> None:
        tree = self._worktrees.setdefault(worktree, _Worktree())
        _add(tree.owners, owner, task_id)
        if not paths:
            _add(tree.whole, owner, task_id)
            return
        for path in paths:
            node = tree.root
            node.below[owner] = node.below.get(owner, 0) + 1
            for segment in path.split("/"):
                node = node.children.setdefault(segment, _Node())
                node.below[owner] = node.below.get(owner, 0) + 1
            _add(node.here, owner, task_id)

    def remove(self, task_id: str, owner: str, worktree: str, paths: tuple[str, ...]) -> None:
        tree = self._worktrees.get(worktree)
        if tree is None:
            return
        _discard(tree.owners, owner, task_id)
        if not paths:
            _discard(tree.whole, owner, task_id)
        for path in paths:
            trail = [tree.root]
            node: _Node | None = tree.root
            for segment in path.split("/"):
                node = node.children.get(segment) if node is not None else None
                if node is None:
                    break
                trail.append(node)
            if node is None:
                continue
            _discard(node.here, owner, task_id)
            segments = path.split("/")
            for depth, step in enumerate(trail):
                left = step.below.get(owner, 0) - 1
                if left > 0:
                    step.below[owner] = left
                else:
                    step.below.pop(owner, None)
                if depth and not step.below:
                    del trail[depth - 1].children[segments[depth - 1]]
                    break
        if not tree.owners:
            del self._worktrees[worktree]

    def conflict(
        self, owner: str, worktree: str, paths: tuple[str, ...], ignore: str | None = None
    ) -> tuple[str, str] | None:
        """Return `(task_id, owner)` of a claim held by someone else that overlaps, or None.

        `owner`'s own claims never conflict. `ignore` names a task to leave out (the one being
        handed over).
        """
        tree = self._worktrees.get(worktree)
        if tree is None:
            return None
        if not paths:
            return self._first_other(tree.owners, owner, ignore)
        found = self._first_other(tree.whole, owner, ignore)
        if found:
            return found
        for path in paths:
            node = tree.root
            descended = True
            for segment in path.split("/"):
                child = node.children.get(segment)
                if child is None:
                    descended = False
                    break
                node = child
                found = self._first_other(node.here, owner, ignore)
                if found:
                    return found
            if descended and _other_owner(node.below, owner) is not None:
                found = self._first_below(node, owner, ignore)
                if found:
                    return found
        return None

    @staticmethod
    def _first_other(
        bucket: dict[str, set[str]], owner: str, ignore: str | None
    ) -> tuple[str, str] | None:
        for name, tasks in bucket.items():
            if name == owner:
                continue
            for task_id in sorted(tasks):
                if task_id != ignore:
                    return task_id, name
        return None

    def _first_below(self, node: _Node, owner: str, ignore: str | None) -> tuple[str, str] | None:
        stack = [node]
        while stack:
            current = stack.pop()
            found = self._first_other(current.here, owner, ignore)
            if found:
                return found
            stack.extend(
                child
                for child in current.children.values()
                if _other_owner(child.below, owner) is not None
            )
        return None

    def conflicts(self, owner: str, worktree: str, paths: tuple[str, ...]) -> set[str]:
        """Every task held by someone else whose scope overlaps (what `conflict` finds the
        first of): walks the paths' own segments and the subtrees below them only."""
        tree = self._worktrees.get(worktree)
        if tree is None:
            return set()
        if not paths:
            return {t for name, tasks in tree.owners.items() if name != owner for t in tasks}
        found = {t for name, tasks in tree.whole.items() if name != owner for t in tasks}
        for path in paths:
            node = tree.root
            for segment in path.split("/"):
                child = node.children.get(segment)
                if child is None:
                    break
                node = child
                found.update(t for name, tasks in node.here.items() if name != owner
                             for t in tasks)
            else:
                stack = list(node.children.values())
                while stack:
                    current = stack.pop()
                    if _other_owner(current.below, owner) is None:
                        continue
                    found.update(t for name, tasks in current.here.items() if name != owner
                                 for t in tasks)
                    stack.extend(current.children.values())
        return found

    def worktrees(self) -> Iterator[str]:
        return iter(self._worktrees)
