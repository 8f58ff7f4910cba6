"""A streaming ACP agent for the ACP load benchmark (acp_load.py), written with the `acp` SDK's
agent side and run as a real subprocess by marrow-tui's orchestrator:

    python acp_stream_agent.py --rate 200 --seconds 60 [--tool-every 40] [--plan-every 400]

On each `session/prompt` it streams `session/update`s at `--rate` a second for `--seconds`,
then ends the turn (`end_turn`) with the turn's token usage. The stream is a fixed mix, the
same in every agent (each starts at its own place in it): message chunks (a few words each,
as models stream them), thought chunks, a tool call every `--tool-every` updates that goes
`tool_call` pending -> `tool_call_update` in_progress -> completed (three updates, an output
of a few lines; every `--diff-every`th one completes with a small diff instead), a
`usage_update` every 100 updates and a plan every `--plan-every` updates (its entries
advance). Updates are sent in small bursts paced on a 10 ms tick, so the rate holds on
average even when a tick is late; how many were sent and how late the agent fell behind go to
stderr at the end of the turn (the run's stderr log).

MCP servers given in `session/new` are ignored: the benchmark measures the transcript path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
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
from acp.helpers import plan_entry, tool_diff_content
from acp.schema import (
    AgentCapabilities,
    InitializeResponse,
    NewSessionResponse,
    PromptResponse,
    ToolCallLocation,
    Usage,
    UsageUpdate,
)

#: how often the pacing loop wakes (updates due since the last wake go out together)
TICK = 0.010
WORDS = ("the", "tests", "pass", "now", "so", "I", "will", "look", "at", "parser", "module",
         "and", "its", "error", "path", "before", "changing", "anything", "else", "in",
         "config", "loader", "which", "reads", "TOML", "file", "line", "by", "then", "checks")
KINDS = ("read", "search", "execute", "edit")
FILES = ("src/parser.py", "src/config/load.py", "tests/test_parser.py", "README.md",
         "src/cli/main.py", "docs/usage.md")
PLAN = ("Read the failing test", "Find where the parser drops the line number",
        "Fix the error message", "Add a test for the bad line", "Run the whole suite")


def chunk_text(n: int) -> str:
    """A few words, as a model streams them (20-40 characters)."""
    words = [WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(4 + n % 4)]
    return " " + " ".join(words)


class Stream:
    """The n-th update of the mix, as an SDK model (plus a note of what it was)."""

    def __init__(self, tool_every: int, diff_every: int, plan_every: int, offset: int) -> None:
        self.tool_every = max(4, tool_every)
        self.diff_every = max(1, diff_every)
        self.plan_every = max(10, plan_every)
        self.n = offset
        self.tools = 0
        self.plan_step = 0
        self.counts: dict[str, int] = {}

    def next(self) -> Any:
        n = self.n
        self.n += 1
        phase = n % self.tool_every
        if phase in (0, 1, 2):
            return self._tool(n // self.tool_every, phase)
        if n % self.plan_every == 3:
            self.plan_step += 1
            return self._count("plan", update_plan([
                plan_entry(item, status="completed" if i < self.plan_step % len(PLAN)
                           else "in_progress" if i == self.plan_step % len(PLAN)
                           else "pending")
                for i, item in enumerate(PLAN)]))
        if n % 100 == 4:
            return self._count("usage_update", UsageUpdate(
                session_update="usage_update", used=20_000 + 37 * (n % 4000), size=200_000))
        if n % 5 == 0:
            return self._count("agent_thought_chunk", update_agent_thought_text(chunk_text(n)))
        return self._count("agent_message_chunk", update_agent_message_text(chunk_text(n)))

    def _count(self, what: str, update: Any) -> Any:
        self.counts[what] = self.counts.get(what, 0) + 1
        return update

    def _tool(self, number: int, phase: int) -> Any:
        tool_id = f"call_{number}"
        kind = KINDS[number % len(KINDS)]
        path = FILES[number % len(FILES)]
        if phase == 0:
            title = {"read": f"Read {path}", "search": "grep -n 'line' src",
                     "execute": "pytest -q tests/test_parser.py",
                     "edit": f"Edit {path}"}[kind]
            return self._count("tool_call", start_tool_call(
                tool_id, title, kind=kind, status="pending",
                locations=[ToolCallLocation(path=path)]))
        if phase == 1:
            return self._count("tool_call_update", update_tool_call(
                tool_id, status="in_progress", raw_input={"path": path, "limit": 200}))
        self.tools += 1
        if self.tools % self.diff_every == 0:
            old = "def parse(line):\n    return line.split('=')\n"
            new = "def parse(line, number):\n    key, _, value = line.partition('=')\n" \
                  "    return key.strip(), value.strip()\n"
            return self._count("tool_call_update", update_tool_call(
                tool_id, status="completed", content=[tool_diff_content(path, new, old)]))
        output = "\n".join(f"{path}:{10 + i}: {chunk_text(number + i).strip()}"
                           for i in range(4))
        return self._count("tool_call_update", update_tool_call(
            tool_id, status="completed", raw_output={"output": output, "exit_code": 0}))


class StreamingAgent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client: Any = None
        self.session = f"stream-{os.getpid()}"
        # each agent starts at its own place in the mix (just after a whole tool call), so
        # their tool calls and plans do not come in step
        self.stream = Stream(args.tool_every, args.diff_every, args.plan_every,
                             offset=max(4, args.tool_every) * (os.getpid() % 25) + 3)
        self.cancelled = asyncio.Event()

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    async def initialize(self, protocol_version: int, client_capabilities: Any = None,
                         client_info: Any = None, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(protocol_version=PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities())

    async def new_session(self, cwd: str, mcp_servers: Any = None,
                          **kwargs: Any) -> NewSessionResponse:
        return NewSessionResponse(session_id=self.session)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.set()

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        rate, seconds = self.args.rate, self.args.seconds
        total = int(rate * seconds)
        sent, worst_behind = 0, 0
        cpu0, t0 = time.process_time(), time.monotonic()
        while sent < total and not self.cancelled.is_set():
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            worst_behind = max(worst_behind, due - sent - 1)
            while sent < due:
                await self.client.session_update(session_id=self.session,
                                                 update=self.stream.next())
                sent += 1
            await asyncio.sleep(TICK)
        wall = time.monotonic() - t0
        report = {"sent": sent, "wall_s": round(wall, 3), "rate": round(sent / wall, 1),
                  "cpu_s": round(time.process_time() - cpu0, 3),
                  "worst_behind_updates": worst_behind, "counts": self.stream.counts}
        print("acp-stream-agent " + json.dumps(report), file=sys.stderr, flush=True)
        if self.cancelled.is_set():
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn", usage=Usage(
            input_tokens=12_000 + sent, output_tokens=sent * 6, total_tokens=12_000 + sent * 7))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=200.0, help="updates a second (default 200)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long a turn streams")
    p.add_argument("--tool-every", type=int, default=40,
                   help="a tool call (3 updates) every this many updates (default 40)")
    p.add_argument("--diff-every", type=int, default=3,
                   help="every this many tool calls ends with a diff (default 3)")
    p.add_argument("--plan-every", type=int, default=400,
                   help="a plan every this many updates (default 400)")
    asyncio.run(run_agent(StreamingAgent(p.parse_args())))


if __name__ == "__main__":
    main()
