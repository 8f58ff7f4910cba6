"""`marrow-tui done` and `marrow-tui issues` against a real hub (runtime + WebSocket server).

The orchestrator's verbs are served here by small stand-ins registered on the hub's decider,
which record the frames they get and answer as the orchestrator's contract says. So these
tests check the CLI: what it sends, what it prints, its exit codes, and that it refuses bad
input before sending anything; not what the orchestrator does with an issue.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.cli import issues as cli_issues
from marrow_tui.core.events import Refusal
from marrow_tui.protocol.frames import Call

from tests.support.hub import Hub

ISSUES = [
    {"identifier": "DEMO-2", "title": "Add a farewell file", "state": "Todo",
     "status": "blocked", "priority": 3, "attempt": 0, "next_at": None,
     "reason": "blocked by DEMO-1", "session": "", "path": "/t/issues/Todo/DEMO-2.md"},
    {"identifier": "DEMO-1", "title": "Add a greeting file", "state": "In Progress",
     "status": "running", "priority": 2, "attempt": 1, "next_at": None, "reason": "",
     "session": "DEMO-1-1", "path": "/t/issues/In Progress/DEMO-1.md"},
    {"identifier": "OPS-7", "title": "Bump the base image", "state": "Todo", "status": "parked",
     "priority": None, "attempt": 3, "next_at": None, "reason": "exit 2 (3 attempts)",
     "session": "", "path": "/t/issues/Todo/OPS-7.md"},
]
WORKFLOW = {"path": "/t/WORKFLOW.md", "ok": True, "errors": [], "warnings": [],
            "root": "/t/issues", "dispatching": True}


class FakeOrchestrator:
    """Serves `issue_done` and `issue_list` as the orchestrator's contract describes."""

    def __init__(self, hub: Hub, running: set[str]) -> None:
        self.running = running
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.workflow = dict(WORKFLOW)
        self.refused: list[dict[str, str]] = []
        self.kept: list[dict[str, str]] = []
        decider = hub.runtime.decider
        assert decider is not None
        decider.register("issue_done", self._done)
        decider.register("issue_list", self._list)
        decider.register("issue_remove_workspace", self._remove)

    def _done(self, call: Call) -> None:
        self.frames.append((call.sender, dict(call.frame)))
        issue = call.frame.get("issue") or call.sender
        if issue not in self.running:
            call.deny("error", Refusal("not_running", f"{issue} has no run to mark done."))
            return
        self.running.discard(issue)
        call.reply("issue_done_ok", f"Marked {issue} as done (moved to Done).",
                   identifier=issue, state="Done", path=f"/t/issues/Done/{issue}.md")

    def _list(self, call: Call) -> None:
        self.frames.append((call.sender, dict(call.frame)))
        call.reply("issues", "Issues", issues=ISSUES, workflow=self.workflow,
                   refused=self.refused, kept=self.kept)

    def _remove(self, call: Call) -> None:
        self.frames.append((call.sender, dict(call.frame)))
        identifier = call.frame.get("identifier")
        call.reply("workspace_removing", f"Removing /t/ws/{identifier}.",
                   identifier=identifier, path=f"/t/ws/{identifier}")


@pytest.fixture
def orchestrator(hub: Hub) -> FakeOrchestrator:
    return FakeOrchestrator(hub, {"DEMO-1"})


@pytest.fixture(autouse=True)
def _agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the orchestrator sets for a run of DEMO-1 (read when the parser is built)."""
    for name in ("MARROW_HUB_URI", "MARROW_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MARROW_AGENT", "DEMO-1")
    monkeypatch.setenv("MARROW_ISSUE", "DEMO-1")
    monkeypatch.setenv("MARROW_SESSION", "DEMO-1-1")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marrow-tui")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_issues.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command as `marrow-tui` does, off the loop that serves the hub."""
    code = await asyncio.to_thread(_run, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_done_marks_the_runs_issue_and_says_where_it_went(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await cli(capsys, "done", "--title", " Add hello.txt ",
                               "--summary", "Wrote the greeting.\n", "--uri", hub.uri)
    assert (code, out, err) == (0, "marked DEMO-1 done (moved to Done)\n", "")
    [(sender, frame)] = orchestrator.frames
    assert sender == "DEMO-1"
    assert frame["type"] == "issue_done"
    assert (frame["title"], frame["summary"]) == ("Add hello.txt", "Wrote the greeting.")
    assert (frame["issue"], frame["session"]) == ("DEMO-1", "DEMO-1-1")


async def test_done_without_an_issue_leaves_it_to_the_hub(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARROW_ISSUE")
    monkeypatch.delenv("MARROW_SESSION")
    code, out, _ = await cli(capsys, "done", "--title", "Add hello.txt", "--summary", "ok",
                             "--uri", hub.uri, "--json")
    assert code == 0
    reply = json.loads(out)
    assert (reply["ok"], reply["issue"], reply["state"]) == (True, "DEMO-1", "Done")
    [(_, frame)] = orchestrator.frames
    assert "issue" not in frame and "session" not in frame


async def test_done_reads_the_summary_from_stdin(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("line one\nline two\n"))
    code, _, _ = await cli(capsys, "done", "--title", "T", "--summary", "-", "--uri", hub.uri)
    assert code == 0
    assert orchestrator.frames[0][1]["summary"] == "line one\nline two"


async def test_a_refusal_exits_1_with_the_hubs_reason(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await cli(capsys, "done", "--title", "T", "--summary", "S",
                               "--issue", "DEMO-9", "--uri", hub.uri)
    assert code == 1 and out == ""
    assert "refused: DEMO-9 has no run to mark done. [not_running]" in err
    assert orchestrator.frames[0][1]["issue"] == "DEMO-9"


@pytest.mark.parametrize(("title", "summary", "why"), [
    ("", "S", "the title is empty"),
    ("   ", "S", "the title is empty"),
    ("Add\nhello.txt", "S", "the title must be a single line"),
    ("T", " \n ", "the summary is empty"),
])
async def test_bad_input_exits_2_before_anything_is_sent(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str],
        title: str, summary: str, why: str) -> None:
    code, out, err = await cli(capsys, "done", "--title", title, "--summary", summary,
                               "--uri", hub.uri)
    assert (code, out, err) == (2, "", f"marrow-tui: {why}\n")
    assert orchestrator.frames == []


async def test_an_unreachable_hub_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = await cli(capsys, "done", "--title", "T", "--summary", "S",
                               "--uri", f"ws://127.0.0.1:{port}", "--connect-timeout", "3s")
    assert code == 3 and out == ""
    assert err.startswith("marrow-tui: ")


async def test_issues_lists_the_running_first_and_the_workflow(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "issues", "--uri", hub.uri, "--name", "cli/test")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "workflow: /t/WORKFLOW.md (tracker /t/issues, dispatching)"
    assert lines[2].split() == ["ID", "STATE", "STATUS", "ATTEMPT", "PRIORITY", "TITLE"]
    rows = [line.split()[0] for line in lines[3:]]
    assert rows == ["DEMO-1", "OPS-7", "DEMO-2"]  # running, parked, blocked
    assert "parked: exit 2 (3 attempts)" in lines[4]
    assert "blocked by DEMO-1" in lines[5] and "blocked: blocked" not in lines[5]
    assert orchestrator.frames == [("cli/test", orchestrator.frames[0][1])]
    assert orchestrator.frames[0][1]["type"] == "issue_list"


async def test_issues_says_what_is_wrong_with_the_workflow(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    orchestrator.workflow = {**WORKFLOW, "ok": False, "dispatching": False,
                             "errors": ["/t/WORKFLOW.md:3: tracker.kind: error: must be local"]}
    code, out, _ = await cli(capsys, "issues", "--uri", hub.uri)
    assert code == 0
    assert out.splitlines()[:2] == [
        "workflow: /t/WORKFLOW.md: 1 error(s); no new dispatches until it is fixed",
        "  error: /t/WORKFLOW.md:3: tracker.kind: error: must be local"]
    code, out, _ = await cli(capsys, "issues", "--uri", hub.uri, "--json")
    assert code == 0 and json.loads(out)["workflow"]["ok"] is False


async def test_issues_and_done_without_an_orchestrator_say_how_to_start_one(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["issues"], ["done", "--title", "t", "--summary", "s", "--issue", "X-1"]):
        code, out, err = await cli(capsys, *command, "--uri", hub.uri)
        assert code == 1
        assert err == (f"marrow-tui: the marrow-tui at {hub.uri} runs no workflow (no issue "
                       "orchestrator); start it with --workflow PATH (a WORKFLOW.md)\n")
        code, out, _ = await cli(capsys, *command, "--uri", hub.uri, "--json")
        assert code == 1 and json.loads(out)["code"] == "no_workflow"


# ---- the tracker example's agent -------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "examples" / "tracker" / "agent.py"
#: `marrow-tui` with `done` and `issues`, whether or not cli.py has them yet
CLI = """\
import argparse, sys
from marrow_tui.cli import issues as cli_issues
from marrow_tui.cli import main as cli

build = cli.build_parser

def with_issues():
    parser = build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "done" not in sub.choices:
        cli_issues.register(sub)
    return parser

cli.build_parser = with_issues
cli.main()
"""


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_the_example_agent_asks_writes_commits_and_marks_done(
        hub: Hub, orchestrator: FakeOrchestrator, tmp_path: Path) -> None:
    workspace = tmp_path / "DEMO-1"
    workspace.mkdir()
    _git(workspace, "init", "--quiet")
    _git(workspace, "config", "user.name", "symphony-agent")
    _git(workspace, "config", "user.email", "agent@symphony.local")
    _git(workspace, "commit", "--quiet", "--allow-empty", "-m", "symphony: baseline")
    (tmp_path / "cli.py").write_text(CLI)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MARROW_")},
           "PYTHONPATH": str(REPO), "MARROW_HUB_URI": hub.uri, "MARROW_AGENT": "DEMO-1",
           "MARROW_ISSUE": "DEMO-1", "MARROW_SESSION": "DEMO-1-1",
           "MARROW_WORKSPACE": str(workspace), "SYMPHONY_ISSUE_TITLE": "Add a greeting file",
           "MARROW_TUI": f"{sys.executable} {tmp_path / 'cli.py'}"}
    prompt = ("You are working on DEMO-1: Add a greeting file\n"
              "Create `hello.txt` in the workspace containing the single line "
              "`Hello from DEMO-1`,\ncommit it, then call `mark_done`.\n")
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(AGENT), cwd=workspace, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert agent.stdin is not None
    agent.stdin.write(prompt.encode())
    agent.stdin.close()

    # The question reaches the hub as a steering request about the issue; answer it.
    book = hub.runtime.state.steering
    async with asyncio.timeout(30):
        while not book.waiting():
            await asyncio.sleep(0.05)
    [request] = book.waiting()
    assert (request.asker, request.task_id, request.choices) == (
        "DEMO-1", "DEMO-1", ["as written", "shout it"])
    hub.runtime.handle("operator/test", {"type": "steer_answer", "id": request.id,
                                         "answer": "shout it"}, None, operator=True)
    out, err = await asyncio.wait_for(agent.communicate(), 30)
    assert agent.returncode == 0, err.decode()

    assert (workspace / "hello.txt").read_text() == "HELLO FROM DEMO-1!\n"
    assert _git(workspace, "log", "--format=%s", "-1").strip() == "Add hello.txt"
    [(sender, frame)] = orchestrator.frames
    assert (sender, frame["title"], frame["issue"]) == ("DEMO-1", "Add hello.txt", "DEMO-1")
    assert "HELLO FROM DEMO-1!" in frame["summary"]
    lines = out.decode().splitlines()
    assert "marked DEMO-1 done (moved to Done)" in lines
    assert lines[-1] == "[DEMO-1] done"


async def test_the_example_agent_stops_when_its_question_is_cancelled(
        hub: Hub, orchestrator: FakeOrchestrator, tmp_path: Path) -> None:
    (tmp_path / "cli.py").write_text(CLI)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MARROW_")},
           "PYTHONPATH": str(REPO), "MARROW_HUB_URI": hub.uri, "MARROW_AGENT": "DEMO-1",
           "MARROW_ISSUE": "DEMO-1", "MARROW_TUI": f"{sys.executable} {tmp_path / 'cli.py'}"}
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(AGENT), cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    book = hub.runtime.state.steering
    async with asyncio.timeout(30):
        while not book.waiting():
            await asyncio.sleep(0.05)
    hub.runtime.handle("operator/test", {"type": "steer_cancel", "id": book.waiting()[0].id},
                       None, operator=True)
    _, err = await asyncio.wait_for(agent.communicate(), 30)
    assert agent.returncode == 1
    assert "agent: could not get an answer from the operator (marrow-tui ask exited 1)" \
        in err.decode()
    assert not list(tmp_path.glob("NOTES-*")) and orchestrator.frames == []


async def test_issues_lists_refused_files_and_kept_workspaces(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    orchestrator.refused = [
        {"path": "/t/issues/Todo/BOMB.md",
         "reason": "invalid front matter (line 3): aliases expand to more than 100000 nodes"},
        {"path": "/t/issues/Todo/ctl\x07.md", "reason": "unsafe file name 'ctl\\x07'"}]
    orchestrator.kept = [{"identifier": "G-1", "path": "/t/ws/G-1",
                          "lost": "1 uncommitted file (draft.txt)"}]
    code, out, _ = await cli(capsys, "issues", "--uri", hub.uri)
    assert code == 0
    assert "  /t/issues/Todo/BOMB.md: invalid front matter (line 3): aliases expand" in out
    assert "refused tracker files (2, not read as issues):" in out
    assert "/t/issues/Todo/ctl?.md" in out and "\x07" not in out
    assert "  G-1  /t/ws/G-1: 1 uncommitted file (draft.txt)" in out
    assert "--remove-workspace ID" in out


async def test_remove_workspace_sends_the_operators_confirmation(
        hub: Hub, orchestrator: FakeOrchestrator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await cli(capsys, "issues", "--remove-workspace", "G-1", "--uri", hub.uri,
                               "--name", "cli/test")
    assert (code, out, err) == (0, "removing the workspace of G-1: /t/ws/G-1\n", "")
    [(sender, frame)] = orchestrator.frames
    assert sender == "cli/test" and frame["type"] == "issue_remove_workspace"
    assert frame["identifier"] == "G-1"
