"""A scripted coding agent that speaks the Agent Client Protocol, so marrow-tui's ACP runs can be
tried without a model or an API key: `marrow-tui --workflow examples/acp/WORKFLOW.md`.

On its first prompt it plays a short session in its workspace (the current folder): a plan,
a thought, a read and a search, an edit with a real diff (it writes greet.py), then it asks
permission to run the tests, runs them if allowed, and calls mark_done through the MCP server
marrow-tui put in its session. A later prompt (a follow-up, an answer) is acknowledged.
SCRIPTED_AGENT_PACE sets the seconds between its steps (default 0.6).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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
    InitializeResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallLocation,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

PACE = float(os.environ.get("SCRIPTED_AGENT_PACE", "0.6"))
SESSION = "scripted-1"
BEFORE = 'def greet(name):\n    return "hello " + name\n'
AFTER = 'def greet(name: str) -> str:\n    """Greet someone by name."""\n    return f"Hello, {name}!"\n'
TEST = 'from greet import greet\n\n\ndef test_greet():\n    assert greet("Ada") == "Hello, Ada!"\n'
OPTIONS = [PermissionOption(option_id="once", name="Allow once", kind="allow_once"),
           PermissionOption(option_id="always", name="Always allow", kind="allow_always"),
           PermissionOption(option_id="reject", name="Reject", kind="reject_once")]


class ScriptedAgent:
    def __init__(self) -> None:
        self.client: Any = None
        self.cwd = Path.cwd()
        self.servers: list[Any] = []
        self.turns = 0
        self.cancelled = asyncio.Event()

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(protocol_version=PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities())

    async def new_session(self, cwd: str, mcp_servers: Any = None,
                          **kwargs: Any) -> NewSessionResponse:
        self.cwd = Path(cwd)
        self.servers = list(mcp_servers or [])
        return NewSessionResponse(session_id=SESSION)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.set()

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        self.turns += 1
        self.cancelled.clear()
        text = "".join(getattr(block, "text", "") for block in prompt)
        try:
            if self.turns == 1:
                await self.work()
            else:
                await self.say(f"Noted: {text.strip()[:200]}")
        except Cancelled:
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn", usage=Usage(
            input_tokens=5200 * self.turns, output_tokens=640, total_tokens=5200 * self.turns + 640))

    # ---- the session it plays -----------------------------------------------------------------

    async def work(self) -> None:
        steps = ["Read the code", "Add type hints and a docstring", "Run the tests"]
        await self.plan(steps, 0)
        await self.think("The greeting helper has no types and an odd format; "
                         "read it first, then fix it and add a test.")
        (self.cwd / "greet.py").write_text(BEFORE)
        await self.tool("read-1", "Read greet.py", "read", "greet.py", output=BEFORE)
        await self.tool("search-1", "Search for greet(", "search", None,
                        output="greet.py:1: def greet(name):")
        await self.plan(steps, 1)
        await self.say("The function works but returns lowercase text without punctuation. "
                       "I will add type hints and a docstring, and make the greeting "
                       "consistent.")
        await self.step()
        await self.send(start_tool_call("edit-1", "Edit greet.py", kind="edit",
                                        status="in_progress",
                                        locations=[ToolCallLocation(path="greet.py", line=1)]))
        (self.cwd / "greet.py").write_text(AFTER)
        (self.cwd / "test_greet.py").write_text(TEST)
        await self.step()
        await self.send(update_tool_call("edit-1", status="completed", content=[
            tool_diff_content("greet.py", AFTER, BEFORE)]))
        await self.plan(steps, 2)
        allowed = await self.ask("pytest-1", "python -m pytest -q", "execute")
        await self.send(start_tool_call("pytest-1", "python -m pytest -q", kind="execute",
                                        status="in_progress"))
        if allowed:
            result = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", CHECK], cwd=self.cwd,
                capture_output=True, text=True, timeout=60)
            await self.send(update_tool_call("pytest-1", status="completed", content=[
                tool_content(text_block(result.stdout.strip() or result.stderr.strip()))]))
            await self.plan(steps, 3)
            await self.say("The greeting now has types, a docstring and a test, and it passes.")
            await self.send(UsageUpdate(session_update="usage_update", used=18400, size=200000,
                                        cost={"amount": 0.0421, "currency": "USD"}))
            await self.mcp("mark_done", title="greet: type hints, docstring and a test",
                           summary="greet() is typed and documented; test_greet.py checks it.")
        else:
            await self.send(update_tool_call("pytest-1", status="failed"))
            await self.say("The tests were not run: the operator said no. The edit is in "
                           "greet.py for you to look at.")

    # ---- helpers ------------------------------------------------------------------------------

    async def step(self) -> None:
        try:
            await asyncio.wait_for(self.cancelled.wait(), PACE)
        except TimeoutError:
            return
        raise Cancelled

    async def send(self, update: Any) -> None:
        await self.client.session_update(session_id=SESSION, update=update)

    async def say(self, text: str) -> None:
        for word in text.split(" "):  # streamed, as a model does
            await self.send(update_agent_message_text(word + " "))
        await self.step()

    async def think(self, text: str) -> None:
        await self.send(update_agent_thought_text(text))
        await self.step()

    async def plan(self, steps: list[str], done: int) -> None:
        await self.send(update_plan([
            plan_entry(s, status="completed" if i < done else
                       "in_progress" if i == done else "pending")
            for i, s in enumerate(steps)]))

    async def tool(self, ident: str, title: str, kind: str, path: str | None,
                   output: str) -> None:
        locations = [ToolCallLocation(path=path)] if path else None
        await self.send(start_tool_call(ident, title, kind=kind, status="pending",
                                        locations=locations))
        await self.step()
        await self.send(update_tool_call(ident, status="completed",
                                         content=[tool_content(text_block(output))]))

    async def ask(self, ident: str, command: str, kind: str) -> bool:
        response = await self.client.request_permission(
            session_id=SESSION, options=OPTIONS,
            tool_call=ToolCallUpdate(tool_call_id=ident, title=command, kind=kind,
                                     status="pending", raw_input={"command": command}))
        outcome = response.outcome
        if outcome.outcome != "selected":
            raise Cancelled
        return outcome.option_id in ("once", "always")

    async def mcp(self, tool: str, **arguments: Any) -> None:
        """Call a tool of the MCP server marrow-tui gave, as a real agent does."""
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        if not self.servers:
            return
        server = self.servers[0]
        ident = f"mcp-{tool}"
        await self.send(start_tool_call(ident, f"marrow: {tool}", kind="other",
                                        status="in_progress"))
        params = StdioServerParameters(command=server.command, args=list(server.args),
                                       env={v.name: v.value for v in server.env})
        async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            result = await mcp.call_tool(tool, arguments)
        said = "".join(getattr(block, "text", "") for block in result.content)
        await self.send(update_tool_call(ident, status="failed" if result.is_error else
                                         "completed", content=[tool_content(text_block(said))]))


class Cancelled(Exception):
    """The operator cancelled the turn (or a permission request)."""


#: the "tests": greet.py's behaviour checked without needing pytest installed
CHECK = ("from greet import greet\n"
         "assert greet('Ada') == 'Hello, Ada!'\n"
         "print('1 passed')\n")


if __name__ == "__main__":
    asyncio.run(run_agent(ScriptedAgent()))
