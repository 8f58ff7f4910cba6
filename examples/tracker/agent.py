"""A scripted stand-in for a coding agent, for the tracker example (WORKFLOW.md runs it).

It does what a real agent does with an issue, in a few readable steps and with nothing but
the standard library:

1. reads the prompt on stdin and finds the file the issue asks for
   ("Create `hello.txt` ... containing the single line `Hello from DEMO-1`");
2. asks the operator one question with `marrow-tui ask` (the console rings; answer with `a`)
   and uses the answer for the file's line;
3. writes the file into its workspace (the issue's own git repository) and commits it;
4. calls `marrow-tui done`, which moves the issue to Done; the workflow's after_run hook then
   bundles the commit as a patch under .symphony/patches/.

The orchestrator gives it, besides the SYMPHONY_* variables of every hook: MARROW_HUB_URI
(where `marrow-tui` connects), MARROW_AGENT (the issue's identifier, the name it speaks under),
MARROW_ISSUE, MARROW_SESSION and MARROW_WORKSPACE (its working directory).

Exit codes: 0 done; 1 the question or `done` failed (its own message says why); 2 `marrow-tui`
cannot be found.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

AS_WRITTEN, SHOUT = "as written", "shout it"
ASKED_FOR = re.compile(r"Create `([^`]+)`.*?containing the single line `([^`]+)`", re.DOTALL)


def say(text: str) -> None:
    """One progress line: the console's Sessions pane shows the last one."""
    print(f"[{os.environ.get('MARROW_AGENT', 'agent')}] {text}", flush=True)


def fail(text: str, code: int = 1) -> None:
    print(f"agent: {text}", file=sys.stderr, flush=True)
    sys.exit(code)


def marrow_tui() -> list[str]:
    """How to run `marrow-tui`: $MARROW_TUI, else on PATH, else this Python's module."""
    if os.environ.get("MARROW_TUI"):
        return shlex.split(os.environ["MARROW_TUI"])
    found = shutil.which("marrow-tui")
    if found:
        return [found]
    if importlib.util.find_spec("marrow_tui") is not None:
        return [sys.executable, "-m", "marrow_tui"]
    fail("marrow-tui is not on PATH and this Python cannot import it; set MARROW_TUI to its "
         "command, or PYTHON to the Python marrow-tui is installed in (a login shell may have "
         "reset PATH)", 2)
    raise AssertionError  # not reached


def main() -> int:
    issue = os.environ.get("MARROW_ISSUE") or os.environ.get("SYMPHONY_ISSUE_IDENTIFIER", "")
    title = os.environ.get("SYMPHONY_ISSUE_TITLE", issue)
    prompt = "" if sys.stdin.isatty() else sys.stdin.read()
    say(f"working on {issue or '(no issue)'}: {title} (prompt: {len(prompt.splitlines())} lines)")

    asked = ASKED_FOR.search(prompt)
    if asked:
        name, line = Path(asked.group(1)).name, asked.group(2)
    else:  # an issue of another shape: leave a note instead
        name, line = f"NOTES-{issue or 'issue'}.txt", f"Worked on {issue}: {title}"
    say(f"the issue asks for {name} containing {line!r}")

    command = marrow_tui()
    say("asking the operator (answer in the console with `a`)")
    asking = subprocess.run(
        [*command, "ask", f"{issue}: write {line!r} to {name} as the issue says, or shout it?",
         "--choices", f"{AS_WRITTEN},{SHOUT}", "--task", issue,
         "--context", f"Issue {issue}: {title}\nAny other answer is used as the line itself."],
        stdout=subprocess.PIPE, text=True, check=False)
    if asking.returncode != 0:
        fail(f"could not get an answer from the operator (marrow-tui ask exited "
             f"{asking.returncode})")
    answer = asking.stdout.strip()
    say(f"the operator answered {answer!r}")
    if answer == SHOUT:
        line = line.upper() + "!"
    elif answer and answer != AS_WRITTEN:
        line = " ".join(answer.split())

    Path(name).write_text(line + "\n", encoding="utf-8")
    say(f"wrote {name}")
    commit = f"Add {name}"
    if Path(".git").exists():
        subprocess.run(["git", "add", "--", name], check=True)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"], check=False).returncode
        if staged:  # an earlier attempt may have committed the same line already
            subprocess.run(["git", "commit", "--quiet", "-m", commit], check=True)
            say(f"committed: {commit}")

    summary = f"Wrote {name} with the line {line!r} (the operator said: {answer!r})."
    done = subprocess.run([*command, "done", "--title", commit, "--summary", summary],
                          check=False)
    if done.returncode != 0:
        fail(f"could not mark {issue} done (marrow-tui done exited {done.returncode})")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
