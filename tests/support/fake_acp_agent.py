"""A scripted ACP agent for tests, written with the SDK's agent side and run as a real
subprocess: `python fake_acp_agent.py SCENARIO`. Each scenario plays one turn the way a real
agent does (docs/agents.md and the tests in tests/agents/ say which):

echo            says what it was given: cwd, MCP servers, capabilities, env, the prompt
which           says which `marrow-tui` its PATH finds, and $MARROW_TUI
claude          `tool_call` twice with one id, an empty text chunk, no usage at all
codex           a warning chunk first, a plan (sent again unchanged), tool calls that start at
                in_progress, `usage_update` (occupancy, no cost) only: it shrinks after a
                compaction
gemini          asks permission before any `tool_call`; the turn's tokens in the prompt
                result's `_meta.quota` (input and output, no total; per model too)
opencode        pending -> in_progress -> completed, `usage_update` with the session's cost so
                far, the turn's tokens in the prompt result's `usage`
permission      asks permission and says which option came back
cancel          asks permission, then ends the turn `cancelled` when cancelled
refusal-cancels asks permission; refused, it ends the turn `cancelled` (as codex does)
ignore-cancel   streams, ignores `session/cancel` and SIGTERM
crash           a chunk, a line on stderr, exit 3 mid-turn
malformed       a line that is not JSON mid-turn, then waits
silent-start    never answers `initialize`
exit-at-start   exits 2 on `initialize`
needs-key       says it signs in with FAKE_API_KEY, and refuses `session/new` (auth_required)
needs-login     refuses `session/new` (auth_required) without saying how to sign in
editor          asks permission for the tool call FAKE_EDIT describes (JSON: {"kind": "edit",
                "path": P} with P in its locations and diff, made absolute as the real agents
                send it; or {"kind": "execute", "command": C}), says the answer, then ends its
                turn once the file FAKE_HOLD exists (when set: its run keeps its lease)

With the first MCP server session/new gives (ours, in an orchestrator's ACP run):
worker          asks permission to run `touch made.txt`, does it if allowed, calls mark_done
asker           asks the operator (ask_human) and ends the turn; marks done with the answer
idler           says what it was prompted with and ends the turn, never done
slow            a prompt saying "slowly" works until cancelled; any other is answered at once
claimer         calls claim_paths with FAKE_EDIT's "paths" and says what it answered
teller          asks the operator (ask_human) and ends the turn; says the answer in the next
                (a scheduled agent's: there is no issue to mark done)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    RequestError,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_plan,
    update_tool_call,
)
from acp.helpers import plan_entry, tool_diff_content
from acp.schema import (
    AgentCapabilities,
    AuthEnvVar,
    EnvVarAuthMethod,
    InitializeResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallLocation,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

SCENARIO = sys.argv[1] if len(sys.argv) > 1 else "echo"
#: a program that does nothing until a signal ends it (a tool still running)
UNTIL_SIGNALLED = "import signal; signal.pause()"
SESSION = "fake-session-1"
OPTIONS = [
    PermissionOption(option_id="allow-once", name="Allow once", kind="allow_once"),
    PermissionOption(option_id="allow-always", name="Always allow", kind="allow_always"),
    PermissionOption(option_id="reject-once", name="Reject", kind="reject_once"),
]


class FakeAgent:
    def __init__(self) -> None:
        self.client: Any = None
        self.cwd = ""
        self.mcp: list[str] = []
        self.servers: list[Any] = []
        self.capabilities: Any = None
        self.cancelled = asyncio.Event()
        self.turns = 0
        #: a process a slow turn runs
        self.tool: Any = None

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    async def initialize(self, protocol_version: int, client_capabilities: Any = None,
                         client_info: Any = None, **kwargs: Any) -> InitializeResponse:
        if SCENARIO == "silent-start":
            await asyncio.Event().wait()
        if SCENARIO == "exit-at-start":
            print("no model configured", file=sys.stderr, flush=True)
            os._exit(2)
        self.capabilities = client_capabilities
        methods = [EnvVarAuthMethod(id="key", name="API key", type="env_var",
                                    vars=[AuthEnvVar(name="FAKE_API_KEY")])]
        return InitializeResponse(protocol_version=PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities(),
                                  auth_methods=methods if SCENARIO == "needs-key" else None)

    async def new_session(self, cwd: str, mcp_servers: Any = None,
                          **kwargs: Any) -> NewSessionResponse:
        if SCENARIO in ("needs-key", "needs-login"):
            raise RequestError.auth_required()
        self.cwd = cwd
        self.mcp = [server.name for server in mcp_servers or []]
        self.servers = list(mcp_servers or [])
        return NewSessionResponse(session_id=SESSION)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        if SCENARIO != "ignore-cancel":
            self.cancelled.set()

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        text = "".join(getattr(block, "text", "") for block in prompt)
        self.turns += 1
        return await getattr(self, "play_" + SCENARIO.replace("-", "_"))(text)

    # ---- helpers -------------------------------------------------------------------------

    async def send(self, update: Any) -> None:
        await self.client.session_update(session_id=SESSION, update=update)

    async def say(self, text: str) -> None:
        await self.send(update_agent_message_text(text))

    async def ask(self, tool_call_id: str, title: str, kind: str = "execute") -> str:
        response = await self.client.request_permission(
            session_id=SESSION, options=OPTIONS,
            tool_call=ToolCallUpdate(tool_call_id=tool_call_id, title=title, kind=kind,
                                     status="pending", raw_input={"command": "make test"}))
        outcome = response.outcome
        return outcome.option_id if outcome.outcome == "selected" else "cancelled"

    # ---- scenarios -----------------------------------------------------------------------

    async def play_echo(self, text: str) -> PromptResponse:
        fs = self.capabilities.fs
        await self.say(f"cwd={self.cwd} mcp={','.join(self.mcp)} "
                       f"fs={bool(fs and (fs.read_text_file or fs.write_text_file))} "
                       f"terminal={bool(self.capabilities.terminal)} "
                       f"greeting={os.environ.get('FAKE_GREETING', '-')} "
                       f"home={os.environ.get('HOME', '-')} prompt={text}")
        return PromptResponse(stop_reason="end_turn")

    async def play_which(self, text: str) -> PromptResponse:
        await self.say(f"path={shutil.which('marrow-tui') or '-'} "
                       f"MARROW_TUI={os.environ.get('MARROW_TUI', '-')}")
        return PromptResponse(stop_reason="end_turn")

    async def play_claude(self, text: str) -> PromptResponse:
        await self.say("")
        await self.send(start_tool_call("toolu_1", "Read file", kind="read", status="pending"))
        await self.send(start_tool_call("toolu_1", "Read README.md", kind="read",
                                        status="pending", raw_input={"path": "README.md"},
                                        locations=[ToolCallLocation(path="README.md")]))
        await self.send(update_tool_call("toolu_1", status="in_progress"))
        await self.send(update_tool_call("toolu_1", status="completed", raw_output="# hi"))
        await self.send(start_tool_call("toolu_2", "Edit README.md", kind="edit",
                                        status="pending"))
        await self.send(update_tool_call("toolu_2", status="completed", content=[
            tool_diff_content("README.md", "# hello\n", "# hi\n")],
            locations=[ToolCallLocation(path="README.md", line=1)]))
        await self.say("Done.")
        return PromptResponse(stop_reason="end_turn")

    async def play_codex(self, text: str) -> PromptResponse:
        await self.say("warning: model metadata not found\n")
        await self.send(update_plan([plan_entry("Run the tests", status="in_progress"),
                                     plan_entry("Fix the failure")]))
        await self.send(start_tool_call("call_1", "make test", kind="execute",
                                        status="in_progress"))
        await self.send(update_tool_call("call_1", status="completed", raw_output="ok"))
        done = [plan_entry("Run the tests", status="completed"),
                plan_entry("Fix the failure", status="completed")]
        await self.send(update_plan(done))
        await self.send(update_plan(done))
        await self.send(UsageUpdate(session_update="usage_update", used=12000, size=200000))
        await self.send(UsageUpdate(session_update="usage_update", used=9000, size=200000))
        await self.say("All green.")
        return PromptResponse(stop_reason="end_turn")

    async def play_gemini(self, text: str) -> PromptResponse:
        answer = await self.ask("shell-1", "make test")
        await self.send(start_tool_call("shell-1", "make test", kind="execute",
                                        status="in_progress"))
        await self.send(update_tool_call(
            "shell-1", status="completed" if answer.startswith("allow") else "failed"))
        # gemini-cli 0.61: the turn's model calls added up, and per model
        count = {"input_tokens": 30, "output_tokens": 4}
        return PromptResponse(stop_reason="end_turn", field_meta={"quota": {
            "token_count": count,
            "model_usage": [{"model": "gemini-2.5-pro", "token_count": count}]}})

    async def play_opencode(self, text: str) -> PromptResponse:
        tool = f"tool_{self.turns}"  # ids are unique in the session
        await self.send(start_tool_call(tool, "bash", kind="execute", status="pending"))
        await self.send(update_tool_call(tool, status="in_progress",
                                         raw_input={"command": "ls"}))
        await self.send(update_tool_call(tool, status="completed", raw_output="README.md"))
        # occupancy grows with the conversation; the cost is the session's so far
        await self.send(UsageUpdate(session_update="usage_update", used=1500 * self.turns,
                                    size=128000,
                                    cost={"amount": 0.25 * self.turns, "currency": "USD"}))
        await self.say("Listed.")
        return PromptResponse(stop_reason="end_turn",
                              usage=Usage(input_tokens=1200, output_tokens=300,
                                          total_tokens=1500, cached_read_tokens=800))

    async def play_permission(self, text: str) -> PromptResponse:
        answer = await self.ask("perm-1", "rm -rf build")
        await self.say(f"answer={answer}")
        return PromptResponse(stop_reason="end_turn")

    async def play_editor(self, text: str) -> PromptResponse:
        import json

        edit = json.loads(os.environ["FAKE_EDIT"])
        kind = edit["kind"]
        if kind == "execute":
            call = ToolCallUpdate(tool_call_id="call-1", title=edit["command"], kind=kind,
                                  status="pending", raw_input={"command": edit["command"]})
        else:
            path = os.path.join(self.cwd, edit["path"])
            call = ToolCallUpdate(
                tool_call_id="call-1", title=f"Edit {edit['path']}", kind=kind,
                status="pending", locations=[ToolCallLocation(path=path)],
                content=[tool_diff_content(path, "old\n", "new\n")],
                raw_input={"file_path": path})
        response = await self.client.request_permission(session_id=SESSION, options=OPTIONS,
                                                        tool_call=call)
        outcome = response.outcome
        answer = outcome.option_id if outcome.outcome == "selected" else "cancelled"
        await self.say(f"answer={answer}")
        hold = os.environ.get("FAKE_HOLD")
        while hold and not os.path.exists(hold):
            await asyncio.sleep(0.05)
        return PromptResponse(stop_reason="end_turn")

    async def play_refusal_cancels(self, text: str) -> PromptResponse:
        """As codex does: a refused permission ends the turn `cancelled`."""
        answer = await self.ask("perm-1", "rm -rf build")
        return PromptResponse(stop_reason="end_turn" if answer.startswith("allow")
                              else "cancelled")

    async def play_cancel(self, text: str) -> PromptResponse:
        answer = await self.ask("perm-1", "rm -rf build")
        await self.say(f"answer={answer}")
        await self.cancelled.wait()
        return PromptResponse(stop_reason="cancelled")

    async def play_ignore_cancel(self, text: str) -> PromptResponse:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        await self.say("working")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def play_crash(self, text: str) -> PromptResponse:
        await self.say("starting")
        print("fatal: the model server went away", file=sys.stderr, flush=True)
        os._exit(3)

    async def play_malformed(self, text: str) -> PromptResponse:
        await self.say("starting")
        os.write(1, b"this is not json\n")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    # ---- scenarios with our MCP server (the orchestrator's ACP runs) -----------------------

    async def mcp_call(self, tool: str, **arguments: Any) -> str:
        """Call a tool of the first MCP server session/new gave, as a real agent does."""
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        server = self.servers[0]
        params = StdioServerParameters(command=server.command, args=list(server.args),
                                       env={v.name: v.value for v in server.env})
        async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            result = await mcp.call_tool(tool, arguments)
        return "".join(getattr(block, "text", "") for block in result.content)

    async def play_worker(self, text: str) -> PromptResponse:
        """Asks to run `touch made.txt`, runs it if allowed, then calls mark_done."""
        answer = await self.ask("touch-1", "touch made.txt")
        allowed = answer.startswith("allow")
        if allowed:
            open(os.path.join(self.cwd, "made.txt"), "w").close()
        await self.send(start_tool_call("touch-1", "touch made.txt", kind="execute",
                                        status="completed" if allowed else "failed"))
        said = await self.mcp_call("mark_done", title=f"made it ({answer})", summary="touched")
        await self.say(said)
        return PromptResponse(stop_reason="end_turn",
                              usage=Usage(input_tokens=100, output_tokens=20, total_tokens=120))

    async def play_asker(self, text: str) -> PromptResponse:
        """Asks the operator through MCP (the turn ends); the answer's turn marks done."""
        if "The operator's answer:" not in text:
            said = await self.mcp_call("ask_human", question="Which colour?",
                                       choices=["red", "blue"])
            await self.say(said)
            return PromptResponse(stop_reason="end_turn")
        colour = text.split("The operator's answer:\n", 1)[1].splitlines()[0]
        await self.mcp_call("mark_done", title=f"painted {colour}", summary="painted")
        return PromptResponse(stop_reason="end_turn")

    async def play_teller(self, text: str) -> PromptResponse:
        """Asks the operator through MCP (the turn ends); the answer's turn says it."""
        if "The operator's answer:" not in text:
            said = await self.mcp_call("ask_human", question="Which colour?",
                                       choices=["red", "blue"])
            await self.say(said)
            return PromptResponse(stop_reason="end_turn",
                                  usage=Usage(input_tokens=50, output_tokens=5, total_tokens=55))
        colour = text.split("The operator's answer:\n", 1)[1].splitlines()[0]
        await self.say(f"the answer is {colour}")
        return PromptResponse(stop_reason="end_turn",
                              usage=Usage(input_tokens=70, output_tokens=7, total_tokens=77))

    async def play_claimer(self, text: str) -> PromptResponse:
        """Claims FAKE_EDIT's paths through our MCP server before it starts, and says the
        answer (a refusal too: the tool's error text)."""
        import json

        paths = json.loads(os.environ["FAKE_EDIT"])["paths"]
        said = await self.mcp_call("claim_paths", paths=paths)
        await self.say(" ".join(said.split()))
        return PromptResponse(stop_reason="end_turn")

    async def play_idler(self, text: str) -> PromptResponse:
        """Says what it was prompted with and ends the turn; never done."""
        await self.say(f"turn {self.turns}: {text[:60]}")
        return PromptResponse(stop_reason="end_turn")

    async def play_reviewee(self, text: str) -> PromptResponse:
        """For the review tests. The first turn commits a change and leaves a file
        uncommitted; a turn carrying the reviewer's request writes it to `changes.txt` beside
        the workspace; any other turn lasts until `release` is there (the test ends it)."""
        import subprocess

        if self.turns == 1:
            with open(os.path.join(self.cwd, "src", "a.py"), "a") as out:
                out.write("def by_acp():\n    return 2\n")
            subprocess.run(["git", "commit", "-qam", "acp work"], cwd=self.cwd, check=True)
            with open(os.path.join(self.cwd, "notes.txt"), "w") as out:
                out.write("draft\n")
            return PromptResponse(stop_reason="end_turn")
        if "The reviewer asks for changes" in text:
            with open(os.path.join(os.path.dirname(self.cwd), "changes.txt"), "w") as out:
                out.write(text)
            return PromptResponse(stop_reason="end_turn")
        release = os.path.join(os.path.dirname(self.cwd), "release")
        while not os.path.exists(release):
            await asyncio.sleep(0.02)
        return PromptResponse(stop_reason="end_turn")

    async def play_escaper(self, text: str) -> PromptResponse:
        """Leaves a process behind in a session of its own (its pid in `escaped.pid` beside
        the workspace, which goes once the issue is done), then calls mark_done."""
        import subprocess

        child = subprocess.Popen([sys.executable, "-c", UNTIL_SIGNALLED],
                                 start_new_session=True)
        with open(os.path.join(os.path.dirname(self.cwd), "escaped.pid"), "w") as out:
            out.write(str(child.pid))
        said = await self.mcp_call("mark_done", title="left one behind", summary="escaped")
        await self.say(said)
        return PromptResponse(stop_reason="end_turn")

    async def play_slow(self, text: str) -> PromptResponse:
        """A prompt that says "slowly" works until cancelled (and honours it); any other is
        answered at once."""
        if "slowly" not in text:
            return await self.play_idler(text)
        # A tool it runs meanwhile, in its group: it outlives the agent if the agent goes
        # (the agent itself ends once its stdin closes), as a real agent's test run would.
        import subprocess

        self.tool = subprocess.Popen([sys.executable, "-c", UNTIL_SIGNALLED])
        await self.say("working")
        await self.cancelled.wait()
        self.cancelled.clear()
        return PromptResponse(stop_reason="cancelled")


if __name__ == "__main__":
    asyncio.run(run_agent(FakeAgent()))
