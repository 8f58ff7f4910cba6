"""The review verbs, served once for every part of the runtime whose work is a git worktree.

`review_diff`, `review_accept`, `review_request_changes` and `review_discard` (docs/protocol.md
§6.6) name their subject by `identifier`: an issue of the orchestrator's tracker, or an agent
of marrow.toml with `workspace_git`. Each part adds a `Reviewer` saying which names are its
own and how it serves each verb; a frame goes to the first that owns its name, and a name
nobody owns is refused in one sentence.

What the parts share is here too: the private answer sent when the git work is done
(`Later`), the diff's reply, and the reading of a request for changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .aio import within
from .core.events import Refusal
from .orchestrator.workspaces import WorktreeRecord
from .orchestrator.worktrees import Conflict, GitError, diff_of, stat_of, watched_files
from .protocol.frames import Call, Delivery, Outcome, encode, text_field
from .runtime import Runtime

log = logging.getLogger("marrow.review")

VERBS = ("review_diff", "review_accept", "review_request_changes", "review_discard")
#: the most file:line references one request for changes carries
MAX_REFS = 200
#: how often the watched worktrees' HEAD, index and branch are looked at (a stat() each)
STAT_EVERY = 2.0

#: a worktree's +N/-M ({files, added, removed}), or None when it has none (any more)
Counts = dict[str, int] | None


@dataclass(slots=True, frozen=True)
class Reviewer:
    """A part whose work is reviewed: which names are its own, and its handler per verb."""

    owns: Callable[[str], bool]
    handlers: Mapping[str, Callable[[Call], None]]

    @classmethod
    def of(cls, owns: Callable[[str], bool],
           serving: Callable[[Callable[[Call], None]], Callable[[Call], None]], *,
           diff: Callable[[Call], None], accept: Callable[[Call], None],
           request_changes: Callable[[Call], None],
           discard: Callable[[Call], None]) -> Reviewer:
        """A part's four handlers, each wrapped by its producer's `serving` (the events it
        emits go with its reply)."""
        return cls(owns, {verb: serving(handler) for verb, handler in zip(
            VERBS, (diff, accept, request_changes, discard), strict=True)})


class Reviews:
    """The runtime's review verbs, each frame routed to the part that owns its name."""

    def __init__(self, runtime: Runtime) -> None:
        self.parts: list[Reviewer] = []
        decider = runtime.decider
        assert decider is not None
        for verb in VERBS:
            decider.register(verb, self._route(verb))

    def add(self, reviewer: Reviewer) -> None:
        self.parts.append(reviewer)

    def remove(self, reviewer: Reviewer) -> None:
        if reviewer in self.parts:
            self.parts.remove(reviewer)

    def _route(self, verb: str) -> Callable[[Call], None]:
        def route(call: Call) -> None:
            name = text_field(call.frame, "identifier").strip()
            for part in self.parts:
                if name and part.owns(name):
                    part.handlers[verb](call)
                    return
            call.deny("error", Refusal("unknown_issue", f"No issue or agent {name!r} has "
                                                        "work to review."))
        return route


_REVIEWS: weakref.WeakKeyDictionary[Runtime, Reviews] = weakref.WeakKeyDictionary()


def reviews(runtime: Runtime) -> Reviews:
    """The runtime's one router of review verbs (made, and the verbs served, on first use)."""
    found = _REVIEWS.get(runtime)
    if found is None:
        found = _REVIEWS[runtime] = Reviews(runtime)
    return found


class Later:
    """The private answer to a verb whose work ends after the verb returned: a frame to the
    sender, submitted after the events the work made, so it never arrives before them."""

    def __init__(self, runtime: Runtime, call: Call) -> None:
        self.runtime = runtime
        self.context = call.context
        self.sender = call.sender

    def reply(self, kind: str, payload: str, **fields: Any) -> None:
        text = encode(self.context.frame(kind, self.sender, payload, **fields))
        self.runtime.submit(Outcome(deliveries=[Delivery(text, frozenset({self.sender}))]))

    def deny(self, code: str, payload: str, **fields: Any) -> None:
        self.reply("error", payload, error_code=code, **fields)


def against_of(call: Call) -> str | None:
    """`against`: base (the default) or review; None (and the frame refused) otherwise."""
    against = call.frame.get("against") or "base"
    if against not in ("base", "review"):
        call.deny("error", Refusal("bad_against", "against is base or review."))
        return None
    return str(against)


async def send_diff(later: Later, name: str, tree: WorktreeRecord, against: str, *,
                    merge: str, subject: str) -> None:
    """The worktree's diff (git in a thread) as the `review_diff` answer, with what accepting
    it would do: `merge` (merge, squash or after_run), `subject` (issue or agent)."""
    try:
        diff = await asyncio.to_thread(diff_of, tree.path, tree.base, tree.branch, against)
    except GitError as exc:
        later.deny("git_failed", f"{name}: {exc.message}")
        return
    stat = diff.stat
    since = tree.base if diff.against == "base" else "the last review"
    later.reply("review_diff", f"{name}: {stat['files']} file(s), +{stat['added']} "
                f"-{stat['removed']} against {since}.",
                identifier=name, base=tree.base, base_commit=diff.base_commit,
                head_commit=diff.head_commit, against=diff.against, stat=stat,
                diff=diff.text, truncated=diff.truncated, uncommitted=diff.uncommitted,
                branch=tree.branch, merge=merge, subject=subject)


def deny_conflict(later: Later, name: str, base: str, conflict: Conflict) -> None:
    """An accept whose merge conflicts: nothing merged; the files named (the first five)."""
    files = conflict.files
    shown = ", ".join(files[:5]) + (f", +{len(files) - 5} more" if len(files) > 5 else "")
    count = f"{len(files)} files conflict" if len(files) != 1 else "1 file conflicts"
    later.deny("conflict", f"{name} does not merge into {base}: {count} ({shown}); {base} is "
               "untouched.", files=files)


def requested_changes(call: Call, max_prompt: int) -> str | None:
    """A request for changes as the agent's prompt; None (and the frame refused, one
    sentence) when its text is empty, its refs malformed, or it is too long."""
    text = text_field(call.frame, "text").strip()
    refs = refs_of(call.frame.get("refs"))
    if not text:
        call.deny("error", Refusal("empty_prompt", "Say what to change: the text is empty."))
        return None
    if refs is None:
        call.deny("error", Refusal("bad_refs", f"refs is a list of at most {MAX_REFS} "
                                               "{path, line} (a line from 1)."))
        return None
    prompt = changes_prompt(text, refs)
    if len(prompt) > max_prompt:
        call.deny("error", Refusal("too_long", f"Requested changes are at most "
                                               f"{max_prompt // 1024} KiB."))
        return None
    return prompt


def refs_of(value: Any) -> list[dict[str, Any]] | None:
    """The file:line references of a request for changes; None when malformed."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_REFS:
        return None
    refs = []
    for item in value:
        if not isinstance(item, dict):
            return None
        path, line = item.get("path"), item.get("line")
        if not isinstance(path, str) or not path.strip() or "\n" in path:
            return None
        if line is not None and (isinstance(line, bool) or not isinstance(line, int)
                                 or line < 1):
            return None
        refs.append({"path": path.strip(), "line": line})
    return refs


def changes_prompt(text: str, refs: list[dict[str, Any]]) -> str:
    lines = ["The reviewer asks for changes:", "", text]
    if refs:
        lines += ["", "Places in the diff:"]
        lines += [f"- {r['path']}" + (f":{r['line']}" if r["line"] else "") for r in refs]
    return "\n".join(lines)


# ---- +N/-M --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Watched:
    tree: WorktreeRecord
    #: its HEAD, index and branch ref, found once (finding them reads files; a look only
    #: stat()s them, every STAT_EVERY seconds for every shown worktree)
    files: tuple[Path, ...] = ()
    stamp: tuple[tuple[int, int], ...] | None = None


class StatWatch:
    """The +N/-M of the worktrees a part shows (`review_stat`, a transient event).

    Every STAT_EVERY seconds, a few stat() calls per worktree (its HEAD, index and branch
    ref); git (in a thread) only when one changed, or when the name was touched (a run or a
    turn ended, an action ran); `say` only when the numbers differ from what is shown.
    `shown()` gives each name with the counts shown now, `locate(name)` its worktree.
    """

    def __init__(self, shown: Callable[[], Mapping[str, Counts]],
                 locate: Callable[[str], WorktreeRecord | None],
                 say: Callable[[str, Counts], None]) -> None:
        self.shown, self.locate, self.say = shown, locate, say
        self.watched: dict[str, _Watched] = {}
        #: names measured again at the next look, changed or not
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def touch(self, name: str) -> None:
        """Measure `name`'s worktree again soon."""
        self._dirty.add(name)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await within(self._wake.wait(), STAT_EVERY)
            self._wake.clear()
            try:
                await self.measure()
            except Exception:
                log.exception("measuring the worktrees failed this time")

    async def measure(self) -> None:
        """One look at every shown worktree; `say` for each whose numbers changed."""
        shown = dict(self.shown())
        if not shown:
            return
        dirty, self._dirty = self._dirty, set()
        found = await asyncio.to_thread(self._look, list(shown), dirty)
        now = self.shown()
        for name, counts in found:
            if name in now and counts != now[name]:
                self.say(name, counts)

    def _look(self, names: Iterable[str], dirty: set[str]) -> list[tuple[str, Counts]]:
        """(name, counts or None when it has no worktree) for each that may have changed.
        Runs in a thread."""
        out: list[tuple[str, Counts]] = []
        for name in names:
            watched = self.watched.get(name)
            if watched is None or name in dirty or not watched.tree.path.is_dir():
                tree = self.locate(name)
                if tree is None:
                    if self.watched.pop(name, None) is not None or name in dirty:
                        out.append((name, None))
                    continue
                watched = self.watched[name] = _Watched(tree)
            stamp = _stamp(watched.files)
            if not stamp or stamp[0] == GONE:
                # its HEAD moved away (the repository moved, the worktree was made again)
                watched.files = watched_files(watched.tree.path, watched.tree.branch)
                stamp = _stamp(watched.files)
            if stamp == watched.stamp and name not in dirty:
                continue
            try:
                counts = stat_of(watched.tree.path, watched.tree.base)
            except GitError as exc:
                log.info("%s: no +N/-M: %s", name, exc.message)
                continue
            watched.stamp = stamp
            out.append((name, counts))
        return out


#: the stamp of a file that is not there
GONE = (0, -1)


def _stamp(files: tuple[Path, ...]) -> tuple[tuple[int, int], ...]:
    marks = []
    for path in files:
        try:
            info = os.stat(path)
            marks.append((info.st_mtime_ns, info.st_size))
        except OSError:
            marks.append(GONE)
    return tuple(marks)
