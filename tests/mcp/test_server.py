"""`marrow-tui mcp` end to end: a real hub in-process, the server as a subprocess on stdio, and
the MCP SDK's own client calling its tools, the way a coding agent would."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from marrow_tui.hub.secrets import agent_key
from marrow_tui.hub.server import HubOptions, HubServer
from marrow_tui.runtime import Runtime, RuntimeOptions

from tests.support.hub import WAIT, Agent, FakeClock, Hub, start_hub
from tests.support.hubproc import REPO, clean_env

SESSION = "run-mcp-1"


@asynccontextmanager
async def mcp_client(uri: str, tmp_path: Path, name: str = "agent",
                     **env: str) -> AsyncIterator[ClientSession]:
    """The server as a subprocess (as an agent starts it), and an initialised SDK session.
    `name` is the agent's (MARROW_AGENT); the server is `<name>/mcp` on the hub."""
    server_env = clean_env() | {"MARROW_HUB_URI": uri, "MARROW_AGENT": name,
                                "MARROW_SESSION": SESSION, **env}
    params = StdioServerParameters(command=sys.executable, args=["-m", "marrow_tui.mcp"],
                                   env=server_env, cwd=REPO)
    errlog = (tmp_path / "mcp-stderr.log").open("w")  # the server's stderr, for failures
    try:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        errlog.close()


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(session: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    return await session.call_tool(tool, arguments, read_timeout_seconds=WAIT * 2)


async def until(condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll a condition on the in-process hub (bounded); return its first truthy value."""
    async with asyncio.timeout(timeout):
        while not (value := condition()):
            await asyncio.sleep(0.01)
        return value


def open_request(hub: Hub) -> Any:
    return next(iter(hub.runtime.state.steering.open.values()), None)


def answer(hub: Hub, request_id: str, text: str) -> None:
    hub.runtime.handle("ops", {"type": "steer_answer", "id": request_id, "answer": text}, None,
                       operator=True)


# ---- tools over stdio ---------------------------------------------------------------------


async def test_tools_lease_and_write_on_the_board(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with mcp_client(hub.uri, tmp_path) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) >= {"ask_human", "mark_done", "claim", "release", "handoff",
                                  "post_progress", "read_board", "state"}
            required = {name: set(t.input_schema.get("required") or []) for name, t in
                        tools.items()}
            assert required["ask_human"] == {"question"}
            assert required["mark_done"] == {"title", "summary"}
            assert required["claim"] == {"task_id"}
            assert required["handoff"] == {"task_id", "to_agent"}
            assert required["post_progress"] == {"task_id", "text"}
            assert required["read_board"] == set()
            assert all(t.description for t in tools.values())

            granted = await call(session, "claim", task_id="T1", paths=["src/auth"],
                                 note="fix login")
            assert not granted.is_error, text(granted)
            claim = hub.runtime.state.claims.claims["T1"]
            assert (claim.owner, claim.paths) == ("agent/mcp", ("src/auth",))
            assert granted.structured_content["epoch"] == claim.epoch
            assert "expires in" in text(granted)

            hub.runtime.handle("other", {"type": "claim", "task_id": "T2",
                                         "paths": ["lib"]}, None)
            await until(lambda: "T2" in hub.runtime.state.claims.claims)
            refused = await call(session, "claim", task_id="T3", paths=["lib/x.py"])
            assert refused.is_error and "conflicts with" in text(refused)

            listed = await call(session, "state")
            assert "T1" in text(listed) and "yours: T1" in text(listed)

            released = await call(session, "release", task_id="T1")
            assert not released.is_error, text(released)
            assert "T1" not in hub.runtime.state.claims.claims
            again = await call(session, "release", task_id="T1")
            assert again.is_error and "not currently claimed" in text(again)

            posted = await call(session, "post_progress", task_id="T1",
                                text="login fixed, tests green", kind="assessment")
            assert not posted.is_error, text(posted)
            notes = hub.runtime.state.board.snapshot()["progress"]
            assert [(n["author"], n["kind"], n["text"]) for n in notes] == [
                ("agent/mcp", "assessment", "login fixed, tests green")]
            board = await call(session, "read_board")
            assert "login fixed, tests green" in text(board)
            assert board.structured_content["progress"][-1]["task_id"] == "T1"

            bad = await call(session, "post_progress", task_id="T1", text="x", kind="gossip")
            assert bad.is_error
    finally:
        await hub.stop()


async def test_ask_human_returns_the_operators_answer(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with mcp_client(hub.uri, tmp_path, MARROW_ISSUE="ISSUE-7",
                              MARROW_ASK_SCOPE="issue/ISSUE-7") as session:
            asking = asyncio.create_task(call(
                session, "ask_human", question="Use the staging SMTP or mock it?",
                context="tests/test_login.py sends mail", choices=["staging", "mock"]))
            request = await until(lambda: open_request(hub))
            assert (request.asker, request.choices, request.task_id) == (
                "agent/mcp", ["staging", "mock"], "ISSUE-7")
            # keyed by the ask scope (the issue), but the session is the run
            assert request.session == SESSION and request.key.startswith("issue/ISSUE-7:")
            answer(hub, request.id, "staging")
            result = await asking
            assert not result.is_error, text(result)
            assert text(result) == "staging"
            assert result.structured_content["answered_by"] == "ops"
            await until(lambda: hub.runtime.state.steering.get(request.id).delivered)

            empty = await call(session, "ask_human", question="   ")
            assert empty.is_error and "question is empty" in text(empty)
            lonely = await call(session, "ask_human", question="Q?", default="no")
            assert lonely.is_error and "timeout_seconds" in text(lonely)
    finally:
        await hub.stop()


async def test_a_cancelled_call_leaves_the_question_open_and_a_retry_finds_it(
        tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with mcp_client(hub.uri, tmp_path) as session:
            first = asyncio.create_task(call(session, "ask_human", question="Rename the API?"))
            request = await until(lambda: open_request(hub))
            first.cancel()  # the agent's client gave up on the call (its tool timeout, say)
            await asyncio.gather(first, return_exceptions=True)
            assert (await call(session, "read_board")).is_error is False  # still serving
            assert hub.runtime.state.steering.get(request.id).open  # type: ignore[union-attr]

            retry = asyncio.create_task(call(session, "ask_human", question="Rename the API?"))
            answer(hub, request.id, "no, keep it")
            result = await retry
            assert text(result) == "no, keep it"
            assert len(hub.runtime.state.steering.ended) == 1  # one request, asked once
    finally:
        await hub.stop()


async def test_ask_human_with_a_timeout_returns_the_default(tmp_path: Path) -> None:
    clock = FakeClock()
    hub = await start_hub(tmp_path / "state", clock)
    try:
        async with mcp_client(hub.uri, tmp_path) as session:
            asking = asyncio.create_task(call(
                session, "ask_human", question="Deploy tonight?", timeout_seconds=60,
                default="no"))
            await until(lambda: open_request(hub))
            clock.advance(60)
            hub.runtime.tick()
            result = await asking
            assert not result.is_error, text(result)
            assert result.content[0].text == "no"  # type: ignore[union-attr]
            assert "default" in text(result) and result.structured_content["default_used"]

            # Asked again on purpose, the same question is a new request, not the old answer.
            asking = asyncio.create_task(call(
                session, "ask_human", question="Deploy tonight?", timeout_seconds=60))
            await until(lambda: open_request(hub))
            clock.advance(60)
            hub.runtime.tick()
            result = await asking
            assert result.is_error and "Nobody answered" in text(result)
    finally:
        await hub.stop()


async def test_a_pending_question_survives_a_hub_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    hub = await start_hub(state)
    port = hub.server.address[1]
    # as a run of ours starts it: with its agent's key, so it takes its name back after the
    # restart (the name still has an open request)
    async with mcp_client(hub.uri, tmp_path,
                          MARROW_AGENT_KEY=agent_key(state, "agent")) as session:
        asking = asyncio.create_task(call(session, "ask_human", question="Ship it?"))
        request = await until(lambda: open_request(hub))
        await hub.stop()
        runtime = Runtime(RuntimeOptions(state_dir=state), clock=FakeClock())
        await runtime.start()
        server = HubServer(runtime, HubOptions(host="127.0.0.1", port=port))
        await server.start()
        try:
            assert runtime.state.steering.get(request.id).open  # type: ignore[union-attr]
            # The server connects again and asks again by key: still one request.
            await until(lambda: "agent/mcp" in runtime.state.presence.online, timeout=WAIT * 2)
            runtime.handle("ops", {"type": "steer_answer", "id": request.id, "answer": "yes"},
                           None, operator=True)
            result = await asyncio.wait_for(asking, WAIT * 2)
            assert not result.is_error, text(result)
            assert text(result) == "yes"
            assert len(runtime.state.steering.open) == 0
            assert len(runtime.state.steering.ended) == 1
        finally:
            await server.stop()
            await runtime.stop()


async def test_mark_done_needs_an_orchestrator_and_a_proper_title(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with mcp_client(hub.uri, tmp_path) as session:
            result = await call(session, "mark_done", title="Add retries to the upload client",
                                summary="Retries with backoff; tests cover it.")
            assert result.is_error
            assert "No issue orchestrator is running" in text(result)
            two_lines = await call(session, "mark_done", title="Add\nretries", summary="s")
            assert two_lines.is_error and "single line" in text(two_lines)
            blank = await call(session, "mark_done", title="Add retries", summary="  ")
            assert blank.is_error and "summary is empty" in text(blank)
            missing = await session.call_tool("mark_done", {"title": "x"})
            assert missing.is_error
    finally:
        await hub.stop()


async def test_mark_done_asks_the_orchestrator(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    seen: list[tuple[str, dict[str, Any]]] = []

    def issue_done(call: Any) -> None:  # a stand-in for the orchestrator's verb
        seen.append((call.sender, dict(call.frame)))
        call.reply("issue_done_ok", "Marked ISSUE-7 as done (moved to Done). Stop now; no "
                   "further turns will be dispatched.", identifier="ISSUE-7", state="Done",
                   path="/issues/Done/ISSUE-7.md")

    assert hub.runtime.decider is not None
    hub.runtime.decider.register("issue_done", issue_done)
    try:
        async with mcp_client(hub.uri, tmp_path, MARROW_ISSUE="ISSUE-7",
                              MARROW_ASK_SCOPE="issue/ISSUE-7") as session:
            result = await call(session, "mark_done", title="  Add retries  ",
                                summary="Retries with backoff.")
            assert not result.is_error, text(result)
            assert "Marked ISSUE-7 as done" in text(result) and "Done/ISSUE-7.md" in text(result)
            assert result.structured_content == {"identifier": "ISSUE-7", "state": "Done",
                                                 "path": "/issues/Done/ISSUE-7.md"}
        [(sender, frame)] = seen
        assert sender == "agent/mcp"
        assert (frame["title"], frame["summary"], frame["session"], frame["issue"]) == (
            "Add retries", "Retries with backoff.", SESSION, "ISSUE-7")
    finally:
        await hub.stop()


async def test_the_agents_own_commands_connect_while_the_server_holds_its_session(
        tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "state")
    try:
        async with mcp_client(hub.uri, tmp_path, name="claude/ann") as session:
            assert not (await call(session, "read_board")).is_error  # the session is open
            assert "claude/ann/mcp" in hub.runtime.state.presence.online
            # what `marrow-tui done` or `marrow-tui ask` does under MARROW_AGENT
            shell = await Agent.join(hub.uri, "claude/ann")
            try:
                who = await shell.request(("who_snapshot",), type="who_request")
                assert {"claude/ann", "claude/ann/mcp"} <= set(
                    hub.runtime.state.presence.online), who
                granted = await call(session, "claim", task_id="T1")
                assert not granted.is_error, text(granted)  # the server still works too
                assert hub.runtime.state.claims.claims["T1"].owner == "claude/ann/mcp"
            finally:
                await shell.ws.close()
    finally:
        await hub.stop()


def test_the_name_and_the_session_come_from_the_environment(monkeypatch: Any) -> None:
    from marrow_tui.mcp.server import Settings

    for var in ("MARROW_AGENT", "MARROW_SESSION", "MARROW_ASK_SCOPE", "MARROW_ISSUE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MARROW_AGENT", "codex/bob")
    monkeypatch.setenv("MARROW_SESSION", "run-9")
    monkeypatch.setenv("MARROW_ASK_SCOPE", "issue/X-1")
    settings = Settings.from_env()
    assert (settings.name, settings.session, settings.scope) == ("codex/bob/mcp", "run-9",
                                                                 "issue/X-1")
    assert Settings.from_env(name="mine").name == "mine"  # --name still wins
    monkeypatch.delenv("MARROW_ASK_SCOPE")
    assert Settings.from_env().scope == "run-9"


async def test_no_hub_is_a_tool_error_not_a_crash(tmp_path: Path) -> None:
    from tests.support.hubproc import free_port

    async with mcp_client(f"ws://127.0.0.1:{free_port()}", tmp_path) as session:
        result = await call(session, "read_board")
        assert result.is_error and "cannot reach the hub" in text(result)
        assert (await session.list_tools()).tools  # still serving


# ---- the command line ---------------------------------------------------------------------


def test_register_adds_the_subcommand_and_the_cli_stays_light() -> None:
    import argparse
    import subprocess

    from marrow_tui.cli import mcp as mcp_cli

    parser = argparse.ArgumentParser(prog="marrow-tui")
    mcp_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mcp", "--uri", "ws://h:1", "--name", "a/b", "--give-up-after",
                              "5m"])
    assert (args.func, args.uri, args.name, args.give_up_after) == (
        mcp_cli.run, "ws://h:1", "a/b", 300.0)
    # The CLI imports this module for every command; the SDK is imported only to serve.
    code = "import sys, marrow_tui.mcp.server; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=clean_env())
    assert out.stdout.strip() == "False"


async def test_ask_human_gives_up_on_a_hub_that_stays_away() -> None:
    from marrow_tui.mcp.server import HubTools, Settings, ToolFailure

    from tests.support.hubproc import free_port

    bridge = HubTools(Settings(uri=f"ws://127.0.0.1:{free_port()}", name="agent/mcp",
                             give_up_after=0.0))
    try:
        await bridge.ask_human("Anyone there?")
    except ToolFailure as exc:
        assert "cannot reach the hub" in str(exc) and "stays open" in str(exc)
    else:
        raise AssertionError("ask_human returned without a hub")
    finally:
        await bridge.close()
