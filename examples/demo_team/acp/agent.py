"""A scripted coding agent that speaks ACP, for `marrow-tui demo` and this example.

It plays one believable coding session without any model, so the console's agent view, the
Sessions pane and the Steering pane have a live ACP run to show: a plan it ticks off, thoughts,
text streamed at a readable pace, tool calls (read, search, an edit with a real diff, a shell
command) and one permission request for that command, which waits for the operator. Then it
marks the issue done through the MCP server its session was given (marrow-tui's, as every
real agent run gets), and ends the turn with its token usage and a cost.

Everything it does happens inside its workspace (the `cwd` of `session/new`): it lays down a
small Python package there (standing in for the repository a real workflow clones in its
`after_create` hook), reads it, fixes a bug in it and runs its tests. It never writes outside.

    python examples/demo_team/acp/agent.py [--pace SECONDS]

`--pace` (default: $MARROW_DEMO_PACE, else 1) scales every pause; 0 runs as fast as the
client reads (tests). A cancelled turn stops at the next step; the next prompt picks up there.
It needs the `agent-client-protocol` SDK (and `mcp` to mark the issue done), which marrow-tui
depends on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)
from acp.helpers import plan_entry, tool_content, tool_diff_content, text_block
from acp.schema import (
    AgentCapabilities,
    Implementation,
    InitializeResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallLocation,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

PACE_ENV = "MARROW_DEMO_PACE"
SESSION = "demo-session"
#: what the shell step runs, as the operator is asked about it and as it runs
TEST_COMMAND = "python -m unittest -q"
OPTIONS = [
    PermissionOption(option_id="allow-once", name="Allow once", kind="allow_once"),
    PermissionOption(option_id="allow-always", name="Always allow", kind="allow_always"),
    PermissionOption(option_id="reject-once", name="Reject", kind="reject_once"),
]
PLAN = ("Read slugify() and its tests", "Collapse runs of separators into one dash",
        "Add a test for the separators", "Run the test suite")

#: the small package the session works on (path -> text), laid down when missing
SLUG_BEFORE = '''"""URL slugs for titles."""

import unicodedata


def slugify(title: str) -> str:
    """'Hello, World!' -> 'hello-world'."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
'''
SLUG_AFTER = '''"""URL slugs for titles."""

import re
import unicodedata


def slugify(title: str) -> str:
    """'Hello, World!' -> 'hello-world'."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
'''
TESTS_BEFORE = '''import unittest

from textkit.slug import slugify


class SlugifyTest(unittest.TestCase):
    def test_lowercases_words(self) -> None:
        self.assertEqual(slugify("Hello"), "hello")

    def test_drops_accents(self) -> None:
        self.assertEqual(slugify("Café"), "cafe")
'''
TESTS_AFTER = TESTS_BEFORE + '''
    def test_collapses_separators(self) -> None:
        self.assertEqual(slugify("Hello, World!"), "hello-world")
        self.assertEqual(slugify("a -- b"), "a-b")
'''
PROJECT = {
    "textkit/__init__.py": '"""Small text helpers."""\n',
    "textkit/slug.py": SLUG_BEFORE,
    "tests/__init__.py": "",
    "tests/test_slug.py": TESTS_BEFORE,
    "README.md": "# textkit\n\nSmall text helpers: `slugify(title)` makes URL slugs.\n",
}


class Cancelled(Exception):
    """The client cancelled the turn: stop at this step."""


class DemoAgent:
    """One ACP session that plays the script below, step by step, across turns."""

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.client: Any = None
        self.workspace = Path.cwd()
        self.servers: list[Any] = []
        self.cancelled = asyncio.Event()
        self.turns = 0
        self.calls = 0
        #: the next step of the script to play (a cancelled turn leaves it where it stopped)
        self.step = 0
        self.plan = ["pending"] * len(PLAN)
        self.tested: bool | None = None
        self.done_said = ""
        #: the tool call under way, if any (a cancel fails it)
        self.open_call: str | None = None

    # ---- ACP -----------------------------------------------------------------------------

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    async def initialize(self, protocol_version: int, client_capabilities: Any = None,
                         client_info: Any = None, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION, agent_capabilities=AgentCapabilities(),
            agent_info=Implementation(name="marrow-demo-agent", title="marrow-tui demo agent",
                                      version="1"))

    async def new_session(self, cwd: str, mcp_servers: Any = None,
                          **kwargs: Any) -> NewSessionResponse:
        self.workspace = Path(cwd).resolve()
        self.servers = list(mcp_servers or [])
        for name, text in PROJECT.items():
            path = self.inside(name)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        return NewSessionResponse(session_id=SESSION)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.set()

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        text = "".join(getattr(block, "text", "") for block in prompt)
        self.turns += 1
        self.cancelled.clear()
        script = self.script()
        try:
            if self.turns > 1:
                await self.say(f"Noted: “{_excerpt(text)}”. ")
                if self.step < len(script):
                    await self.say("Picking up where I stopped.\n\n")
                else:
                    await self.say("The work on this issue is finished. " + self.done_said)
            while self.step < len(script):
                await script[self.step]()
                self.step += 1
        except Cancelled:
            if self.open_call is not None:  # it will not finish: say so before the turn ends
                await self.client.session_update(session_id=SESSION, update=update_tool_call(
                    self.open_call, status="failed",
                    content=[tool_content(text_block("cancelled"))]))
                self.open_call = None
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn", usage=Usage(
            input_tokens=18_420 * self.turns, output_tokens=1_263 * self.turns,
            total_tokens=19_683 * self.turns))

    # ---- the script ----------------------------------------------------------------------

    def script(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.read, self.search, self.explain, self.edit_code, self.edit_tests,
                self.run_tests, self.report, self.mark_done]

    async def read(self) -> None:
        await self.set_plan(0, "in_progress")
        await self.think("The issue says slugify() leaves double dashes. First, how does it "
                         "build the slug?")
        path = "textkit/slug.py"
        call = await self.start("Read textkit/slug.py", "read", path=path)
        await self.finish(call, self.inside(path).read_text())

    async def search(self) -> None:
        call = await self.start('Search "slugify(" in *.py', "search",
                                raw={"pattern": "slugify(", "glob": "*.py"})
        hits = []
        for path in sorted(self.workspace.rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "slugify(" in line:
                    hits.append(f"{path.relative_to(self.workspace)}:{number}: {line.strip()}")
        await self.finish(call, "\n".join(hits) or "no matches")
        await self.set_plan(0, "completed")

    async def explain(self) -> None:
        await self.say("slugify() turns every character that is not a letter or a digit into "
                       "a dash on its own, so `Hello, World!` becomes `hello--world`: the "
                       "comma and the space give two dashes. I'll replace each run of such "
                       "characters with a single dash, then strip the dashes at both ends.\n\n")

    async def edit_code(self) -> None:
        await self.set_plan(1, "in_progress")
        await self.edit("textkit/slug.py", SLUG_BEFORE, SLUG_AFTER)
        await self.set_plan(1, "completed")

    async def edit_tests(self) -> None:
        await self.set_plan(2, "in_progress")
        await self.think("A test with the issue's own example, and one with spaces around "
                         "dashes.")
        await self.edit("tests/test_slug.py", TESTS_BEFORE, TESTS_AFTER)
        await self.set_plan(2, "completed")

    async def run_tests(self) -> None:
        await self.set_plan(3, "in_progress")
        await self.say("Now the test suite.\n\n")
        call = self.open_call = self.next_id()
        raw = {"command": TEST_COMMAND, "cwd": str(self.workspace)}
        await self.send(start_tool_call(call, TEST_COMMAND, kind="execute", status="pending",
                                        raw_input=raw))
        answer = await self.ask(call, TEST_COMMAND, raw)
        if answer is None and self.cancelled.is_set():
            raise Cancelled
        if answer is None or not answer.startswith("allow"):
            self.tested = False
            self.open_call = None
            await self.send(update_tool_call(call, status="failed", content=[tool_content(
                text_block("The operator did not allow this command."))]))
            await self.say("Understood: I won't run the tests. The change is small and "
                           "covered by the new test, which you can run with "
                           f"`{TEST_COMMAND}`.\n\n")
            return
        await self.send(update_tool_call(call, status="in_progress"))
        await self.pause(1.0)
        ok, output = await self.run_command()
        self.tested, self.open_call = ok, None
        await self.send(update_tool_call(call, status="completed" if ok else "failed",
                                         content=[tool_content(text_block(output))],
                                         raw_output={"output": output}))
        if ok:
            await self.set_plan(3, "completed")
        await self.say("All three tests pass.\n\n" if ok else "The tests fail; see above.\n\n")

    async def mark_done(self) -> None:
        await self.send(UsageUpdate(session_update="usage_update", used=23_512, size=200_000,
                                    cost={"amount": 0.0731, "currency": "USD"}))
        if not self.servers:
            self.done_said = ("Done. (No MCP server in this session, so I cannot mark the "
                              "issue done myself.)\n")
            await self.say(self.done_said)
            return
        tested = {True: "the tests pass", False: "tests not run (not allowed)",
                  None: "tests not run"}[self.tested]
        arguments = {"title": "slugify(): collapse runs of separators",
                     "summary": "Runs of non-alphanumeric characters become one dash; a test "
                                f"covers it; {tested}."}
        call = await self.start("marrow_mark_done", "other", raw=arguments)
        try:
            said = await self.mcp_call("mark_done", **arguments)
        except Exception as exc:  # the tool call fails, the turn goes on: the operator sees it
            self.open_call = None
            await self.send(update_tool_call(call, status="failed", content=[tool_content(
                text_block(f"mark_done failed: {exc}"))]))
            self.done_said = "I could not mark the issue done; it stays open.\n"
            await self.say(self.done_said)
            return
        await self.finish(call, said)
        self.done_said = "The issue is marked done.\n"
        await self.say(self.done_said)

    async def report(self) -> None:
        await self.say("Summary: `slugify()` now collapses every run of separators into one "
                       "dash (`re.sub`), and `tests/test_slug.py` has a test for it.\n\n")

    # ---- steps ---------------------------------------------------------------------------

    async def edit(self, path: str, before: str, after: str) -> None:
        call = await self.start(f"Edit {path}", "edit", path=path)
        target = self.inside(path)
        old = target.read_text() if target.exists() else ""
        new = after if old == before else old  # already edited (a repeated run): no change
        target.write_text(new)
        await self.pause(0.8)
        self.open_call = None
        await self.send(update_tool_call(call, status="completed", content=[
            tool_diff_content(path, new, old)]))

    async def run_command(self) -> tuple[bool, str]:
        """The test suite, run for real in the workspace (bounded)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "unittest", "-q", cwd=self.workspace,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            return False, "the tests took longer than 60 s"
        # unittest's ruler and blank lines say nothing in a three-line view: the counts do
        lines = [line for line in out.decode(errors="replace").splitlines()
                 if line.strip() and set(line.strip()) != {"-"}]
        return process.returncode == 0, "\n".join(lines)

    async def start(self, title: str, kind: str, *, path: str | None = None,
                    raw: dict[str, Any] | None = None) -> str:
        call = self.open_call = self.next_id()
        locations = [ToolCallLocation(path=path)] if path else None
        await self.send(start_tool_call(call, title, kind=kind, status="pending",
                                        locations=locations,
                                        raw_input=raw or ({"path": path} if path else None)))
        await self.pause(0.3)
        await self.send(update_tool_call(call, status="in_progress"))
        await self.pause(0.8)
        return call

    async def finish(self, call: str, output: str) -> None:
        self.open_call = None
        await self.send(update_tool_call(call, status="completed",
                                         content=[tool_content(text_block(output))]))
        await self.pause(0.6)

    async def ask(self, call: str, title: str, raw: dict[str, Any]) -> str | None:
        """The operator's option id, or None when the request was cancelled."""
        response = await self.client.request_permission(
            session_id=SESSION, options=OPTIONS,
            tool_call=ToolCallUpdate(tool_call_id=call, title=title, kind="execute",
                                     status="pending", raw_input=raw))
        outcome = response.outcome
        return outcome.option_id if outcome.outcome == "selected" else None

    async def set_plan(self, index: int, status: str) -> None:
        self.plan[index] = status
        await self.send(update_plan([plan_entry(content, status=state)  # type: ignore[arg-type]
                                     for content, state in zip(PLAN, self.plan, strict=True)]))
        await self.pause(0.4)

    async def think(self, text: str) -> None:
        await self.stream(text, update_agent_thought_text)
        await self.send(update_agent_thought_text("\n"))

    async def say(self, text: str) -> None:
        await self.stream(text, update_agent_message_text)

    async def stream(self, text: str, update: Callable[[str], Any]) -> None:
        """A few words at a time, as a model streams."""
        words = re.findall(r"\S+\s*|\s+", text)
        for start in range(0, len(words), 3):
            await self.send(update("".join(words[start:start + 3])))
            await self.pause(0.12)

    async def send(self, update: Any) -> None:
        if self.cancelled.is_set():
            raise Cancelled
        await self.client.session_update(session_id=SESSION, update=update)

    async def pause(self, beats: float) -> None:
        """`beats` times the pace; a cancel ends it (and the turn) at once."""
        if self.pace > 0:
            try:
                await asyncio.wait_for(self.cancelled.wait(), beats * self.pace)
            except TimeoutError:
                pass
        if self.cancelled.is_set():
            raise Cancelled

    def next_id(self) -> str:
        self.calls += 1
        return f"call_{self.calls}"

    def inside(self, name: str) -> Path:
        """A path in the workspace; never outside it."""
        path = (self.workspace / name).resolve()
        if not path.is_relative_to(self.workspace):
            raise ValueError(f"{name} is outside the workspace {self.workspace}")
        return path

    async def mcp_call(self, tool: str, **arguments: Any) -> str:
        """Call a tool of the first MCP server session/new gave (marrow-tui's)."""
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        server = self.servers[0]
        params = StdioServerParameters(command=server.command, args=list(server.args),
                                       env={v.name: v.value for v in server.env},
                                       cwd=str(self.workspace))
        async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            result = await mcp.call_tool(tool, arguments)
        return "".join(getattr(block, "text", "") for block in result.content)


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 80 else line[:79] + "…"


def _pace(given: float | None) -> float:
    if given is None:
        raw = os.environ.get(PACE_ENV, "").strip()
        try:
            given = float(raw) if raw else 1.0
        except ValueError:
            sys.exit(f"{PACE_ENV}={raw!r} is not a number of seconds (try {PACE_ENV}=0.5)")
    return max(0.0, given)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pace", type=float, default=None, metavar="SECONDS",
                        help=f"scales every pause (default: ${PACE_ENV}, else 1; 0: no pauses)")
    args = parser.parse_args()
    asyncio.run(run_agent(DemoAgent(_pace(args.pace))))


if __name__ == "__main__":
    main()
