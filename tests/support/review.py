"""The review verbs as the orchestrator answers them (the issue-15 contract), for console tests.

`ReviewVerbs` registers `review_diff`, `review_accept`, `review_request_changes` and
`review_discard` on a runtime's decider, records every frame, and replies exactly as the
contract says: a diff from `diffs` (real `git diff` text from `git_workspace`), a conflict for
the issues in `conflicts`, and `unmerged_work` for a discard in `unmerged` until it is sent
with `confirm: true`. `git_workspace` makes a real repository in a temporary folder, with a
base branch and an issue branch that modifies, adds, deletes, renames and adds a binary.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marrow_tui.core.diff import parse, stat
from marrow_tui.core.events import Event, Refusal
from marrow_tui.core.text import plural
from marrow_tui.protocol.frames import Call, Outcome
from marrow_tui.runtime import Runtime

VERBS = ("review_diff", "review_accept", "review_request_changes", "review_discard")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
         *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@dataclass
class Workspace:
    repo: Path
    #: the issue branch's diff against the base, and since the commit of the last review
    against_base: str
    since_review: str


def git_workspace(root: Path) -> Workspace:
    """A repository whose issue branch changes five files in the ways a diff can."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("".join(f"line_{n} = {n}\n" for n in range(1, 41)))
    (repo / "old_name.md").write_text("# Notes\n\nkept as it is\n" * 5)
    (repo / "gone.txt").write_text("this file goes\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "marrow/ACP-3")
    app = [f"line_{n} = {n}\n" for n in range(1, 41)]
    app[2] = "line_3 = 'three'\n"
    app.insert(30, "def greet(name):\n    return f'hello {name}'\n")
    (repo / "src" / "app.py").write_text("".join(app))
    git(repo, "commit", "-qam", "first pass")
    reviewed = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src" / "new.py").write_text("print('new')\n")
    git(repo, "mv", "old_name.md", "new_name.md")
    git(repo, "rm", "-q", "gone.txt")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00binary\x00")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second pass")
    return Workspace(repo, git(repo, "diff", "-M", "main"), git(repo, "diff", "-M", reviewed))


@dataclass
class ReviewVerbs:
    """The orchestrator's review verbs, answered by the contract; every frame kept."""

    runtime: Runtime
    #: (identifier, against) -> the diff text
    diffs: dict[tuple[str, str], str] = field(default_factory=dict)
    truncated: bool = False
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    #: identifier -> (commits, files) a discard without confirm refuses to lose
    unmerged: dict[str, tuple[list[dict[str, str]], list[str]]] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    #: hold review_diff replies until `release` (to see the view while it asks)
    hold: bool = False
    held: list[Call] = field(default_factory=list)
    #: how accepting takes the work (the runtime's `workspace.git.merge`)
    merge: str = "merge"
    #: whether uncommitted files are in the worktree
    uncommitted: bool = False

    def __post_init__(self) -> None:
        decider = self.runtime.decider
        assert decider is not None
        for verb in VERBS:
            decider.register(verb, getattr(self, f"_{verb}"))

    def sent(self) -> list[dict[str, Any]]:
        """Each frame as the console chose its fields."""
        return [{k: v for k, v in frame.items() if k not in ("sender", "timestamp")}
                for frame in self.frames]

    def _keep(self, call: Call) -> str | None:
        self.frames.append(dict(call.frame))
        identifier = call.frame.get("identifier")
        if not call.operator:
            call.deny("error", Refusal("not_operator", "Only an operator may review."))
            return None
        if not any(key[0] == identifier for key in self.diffs):
            call.deny("error", Refusal("unknown_issue", f"No issue {identifier}."))
            return None
        return str(identifier)

    def _review_diff(self, call: Call) -> None:
        identifier = self._keep(call)
        if identifier is None:
            return
        against = call.frame.get("against", "base")
        text = self.diffs.get((identifier, against), "")
        total = stat(parse(text))
        call.reply("review_diff", f"{identifier}'s diff", identifier=identifier,
                   base="main", base_commit="a" * 40, head_commit="b" * 40, against=against,
                   stat={"files": total.files, "added": total.added,
                         "removed": total.removed},
                   diff=text, truncated=self.truncated, uncommitted=self.uncommitted,
                   branch=f"marrow/{identifier}", merge=self.merge, subject="issue")

    def _review_accept(self, call: Call) -> None:
        identifier = self._keep(call)
        if identifier is None:
            return
        files = self.conflicts.get(identifier)
        if files:
            call.deny("error", Refusal(
                "conflict", f"{identifier} does not merge into main: "
                f"{plural(len(files), 'file')} conflict ({', '.join(files)}); main is "
                "untouched."), files=files)
            return
        call.reply("review_accepted", f"{identifier} merged into main.", identifier=identifier,
                   how="merge", commit="c" * 40)

    def _review_request_changes(self, call: Call) -> None:
        identifier = self._keep(call)
        if identifier is not None:
            call.reply("review_requested", f"{identifier}: changes requested.",
                       identifier=identifier)

    def _review_discard(self, call: Call) -> None:
        identifier = self._keep(call)
        if identifier is None:
            return
        lost = self.unmerged.get(identifier)
        if lost and call.frame.get("confirm") is not True:
            commits, files = lost
            call.deny("error", Refusal(
                "unmerged_work", f"{identifier} has {plural(len(commits), 'commit')} not "
                f"merged into main and {plural(len(files), 'uncommitted file')}; send again "
                "with confirm to lose them."), commits=commits, files=files)
            return
        call.reply("review_discarded", f"{identifier}'s worktree and branch removed.",
                   identifier=identifier)


def review_stat(runtime: Runtime, identifier: str, files: int, added: int,
                removed: int) -> None:
    """The orchestrator's `review_stat` event, through the runtime."""
    event = Event("review_stat", {"identifier": identifier, "files": files, "added": added,
                                  "removed": removed, "at": runtime.clock()})
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))


def run_git(cwd: Path, *args: str) -> str:
    """What one git command printed, stripped."""
    return git(cwd, *args).strip()


def main_repo(root: Path) -> Path:
    """root/repo: a repository with one commit (a README) on `main`."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    return repo


#: a plain-command agent for an agent's worktree: keeps its prompt beside it, commits a file
#: named after its run, and leaves a draft uncommitted
COMMITTING_AGENT = ('cat > "$MARROW_WORKSPACE/prompt.txt"\n'
                    'echo "run $MARROW_SESSION" > "work-$MARROW_SESSION.txt"\n'
                    "git add -A && git -c user.name=a -c user.email=a@a commit -qm work\n"
                    "echo draft > draft.txt\n")


class Operator:
    """The operator on a runtime: sends a verb, waits (bounded) for its private answer.
    `run` is the scheduler's or the orchestrator's test harness (its hub and `until`)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.frames: list[dict[str, Any]] = []
        self.session = run.hub.runtime.join("operator/test", self.frames.append)

    async def ask(self, answer: str, **frame: Any) -> dict[str, Any]:
        self.frames.clear()
        self.session.send(**frame)
        return await self.run.until(lambda: next(
            (f for f in self.frames if f["type"] in (answer, "error")), None))
