"""A coding agent driven over the Agent Client Protocol (the `agent-client-protocol` SDK's
client side): started in a process group of its own, given one session, prompted a turn at a
time. Every update goes to the session's transcript and into a merged view (agents/view.py);
whatever goes wrong reaches the caller as an AcpFailure, one sentence. docs/agents.md has more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import acp
from acp.client.connection import ClientSideConnection
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileSystemCapabilities,
    Implementation,
    McpServerStdio,
    RequestPermissionResponse,
)
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..core.acp import AUTH_HINTS
from ..aio import bounded, within
from ..core.text import one_line, seconds_text
from ..proc import (
    KILL_WAIT,
    READ_GRACE,
    describe_exit,
    end_group,
    spawning,
    tail_line,
)
from .transcript import MAX_BYTES, Transcript
from .view import Change, SessionView, ToolCall

log = logging.getLogger(__name__)

#: the longest JSON-RPC line read from an agent: one update may carry a whole file's diff
LINE_LIMIT = 64 * 1024 * 1024
#: how long `initialize` and `session/new` may take
READ_TIMEOUT = 30.0
#: how long an agent gets to end its turn after `session/cancel`, and its group after SIGTERM
CANCEL_GRACE = 5.0
#: the JSON-RPC error code of ACP's "authentication required"
AUTH_REQUIRED = -32000
#: bytes read from the agent's stderr at a time
STDERR_CHUNK = 64 * 1024

T = TypeVar("T")


class AcpFailure(Exception):
    """The run cannot go on; str() is the sentence for people, `kind` the reason for code:
    not_found, exited, malformed, timeout, refused, ignored_cancel, auth_required."""

    def __init__(self, kind: str, sentence: str) -> None:
        super().__init__(sentence)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class PermissionOption:
    option_id: str
    name: str
    #: allow_once, allow_always, reject_once or reject_always
    kind: str


@dataclass(frozen=True, slots=True)
class PermissionRequest:
    #: the tool call as merged so far (a copy), the request's own fields included
    tool_call: ToolCall
    options: tuple[PermissionOption, ...]


@dataclass(frozen=True, slots=True)
class TurnEnd:
    #: end_turn, max_tokens, max_turn_requests, refusal or cancelled
    stop_reason: str
    #: the turn's usage, only what the agent reported (`core.sessions.add_usage`'s keys):
    #: input, output, total (the turn's tokens); context_used, context_size, cost, currency
    #: (the latest `usage_update` of the turn). Empty when the agent reports nothing.
    usage: dict[str, Any]
    #: a permission request of the turn was refused (codex then ends the turn `cancelled`)
    refused: bool = False


#: answers a permission request with one of its option ids, or None for `cancelled`
Ask = Callable[[PermissionRequest], Awaitable[str | None]]
#: told what changed that a summary shows: ("tool", {tool_call_id, title, kind, status,
#: paths}) when a tool call is first seen and when it ends, ("plan", {"entries": [{content,
#: status}]}) when the plan changes
OnChange = Callable[[str, dict[str, Any]], None]


def plain(model: BaseModel) -> dict[str, Any]:
    """An SDK model as it is on the wire."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class MalformedLine(ValueError):
    """A line of an agent's output that is not a JSON-RPC 2.0 message; str() says why."""


def json_rpc(line: bytes) -> dict[str, Any]:
    """A line of an agent's output as the JSON-RPC 2.0 message it must be."""
    try:
        message = json.loads(line)
    except ValueError:
        raise MalformedLine(
            f"not JSON: {one_line(line.decode('utf-8', errors='replace'), 80)}") from None
    if not isinstance(message, dict):
        raise MalformedLine("not a JSON object")
    if message.get("jsonrpc") != "2.0":
        raise MalformedLine('no "jsonrpc": "2.0"')
    if "method" not in message and "id" not in message:
        raise MalformedLine("neither a method nor an id")
    return message


class AcpRun:
    """One agent process and its one ACP session: `start()`, then `prompt()` a turn at a time,
    `cancel()` from elsewhere while a turn runs, `close()` at the end. A failure ends the
    process group before it is raised, so a failed run holds no process.

    What a summary shows (a tool call first seen or ended, a new plan) reaches `on_change` as
    it happens; `last_update` says when the agent last showed signs of life; each turn's
    usage comes back in its TurnEnd.

    It is also the SDK's client for its agent (`session_update`, `request_permission`); it
    has no fs or terminal methods, which the SDK answers method-not-found."""

    def __init__(self, command: Sequence[str], *, workspace: Path, env: Mapping[str, str],
                 stderr_log: Path, transcript: Path, ask: Ask,
                 mcp_servers: Sequence[Mapping[str, Any]] = (), name: str | None = None,
                 on_change: OnChange | None = None, read_timeout: float = READ_TIMEOUT,
                 cancel_grace: float = CANCEL_GRACE, transcript_bytes: int = MAX_BYTES) -> None:
        if not command:
            raise ValueError("an agent command needs at least a program")
        self.command = list(command)
        self.workspace = Path(workspace)
        self.env = dict(env)
        self.stderr_log = Path(stderr_log)
        self.ask = ask
        self.on_change = on_change
        #: stdio MCP servers in ACP's form: {name, command, args, env: [{name, value}]}
        self.mcp_servers = [McpServerStdio.model_validate(s) for s in mcp_servers]
        self.name = name or Path(self.command[0]).name
        self.read_timeout = read_timeout
        self.cancel_grace = cancel_grace
        self.transcript = Transcript(transcript, transcript_bytes)
        self.view = SessionView()
        #: the agent's session id, once `session/new` answered
        self.session_id: str | None = None
        #: how the agent says it can be signed in (`initialize`'s authMethods, as sent)
        self.auth_methods: list[dict[str, Any]] = []
        self.pid: int | None = None
        #: the event loop's time() of the agent's latest sign of life: start, a prompt sent, a
        #: session/update, a permission request asked or answered (for stall detection)
        self.last_update = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._conn: ClientSideConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: AcpFailure | None = None
        #: a permission request of the current turn was refused
        self._refused = False
        self._asking: set[asyncio.Future[str | None]] = set()
        self._cancelling = False
        self._turn_over = asyncio.Event()
        self._turn_over.set()
        self._closing: asyncio.Task[None] | None = None

    # ---- the caller's verbs --------------------------------------------------------------

    async def start(self) -> None:
        """Start the agent, `initialize` it and open its session."""
        self._touch()
        try:
            await self._spawn()
            agent = await self._call("initialize", self._connection().initialize(
                protocol_version=acp.PROTOCOL_VERSION,
                # No fs or terminal: the agent uses its own tools, in its own workspace.
                client_capabilities=ClientCapabilities(
                    fs=FileSystemCapabilities(read_text_file=False, write_text_file=False),
                    terminal=False),
                client_info=Implementation(name="marrow-tui", version=__version__)),
                self.read_timeout)
            self.auth_methods = [plain(m) for m in agent.auth_methods or ()]
            session = await self._call("session/new", self._connection().new_session(
                cwd=str(self.workspace),
                mcp_servers=list(self.mcp_servers)),
                self.read_timeout)
            self.session_id = session.session_id
            self._touch()
        except AcpFailure:
            await self.close()
            raise

    async def prompt(self, text: str) -> TurnEnd:
        """One turn: send `text`, wait for the agent's stop reason."""
        if self._failure is not None:
            raise self._failure
        if self.session_id is None:
            raise RuntimeError("prompt() before start()")
        self._cancelling = False
        self._refused = False
        self._turn_over.clear()
        self.view.turn_started()
        self._touch()
        # The prompt goes in the transcript as ACP replays a user's message, so the transcript
        # reads as the conversation it was.
        self.transcript.write({"sessionUpdate": "user_message_chunk",
                               "content": {"type": "text", "text": text}})
        try:
            result = await self._call("session/prompt", self._connection().prompt(
                session_id=self.session_id, prompt=[acp.text_block(text)]), None)
        except AcpFailure:
            await self.close()
            raise
        finally:
            self._turn_over.set()
        return TurnEnd(result.stop_reason, self.view.turn_ended(plain(result)), self._refused)

    async def cancel(self) -> None:
        """`session/cancel` the current turn, answering open permission requests `cancelled`;
        if the turn is not over `cancel_grace` later, the agent's process group is ended and
        the turn fails."""
        if self._proc is None or self._closing is not None:
            return
        self._cancelling = True
        for asking in list(self._asking):
            asking.cancel()
        if self._conn is not None and self.session_id is not None:
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                await bounded(self._conn.cancel(session_id=self.session_id), self.cancel_grace)
        if await within(self._turn_over.wait(), self.cancel_grace):
            return
        self._fail("ignored_cancel", f"{self.name} did not end its turn within "
                   f"{seconds_text(self.cancel_grace)} of session/cancel; its process group "
                   "was ended")
        await self.close()

    async def close(self) -> None:
        """End the agent's process group (SIGTERM, `cancel_grace`, SIGKILL) and let go of its
        pipes and files. Safe to call more than once, and concurrently."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    # ---- the process -----------------------------------------------------------------------

    async def _spawn(self) -> None:
        program = self.command[0]
        search = self.env.get("PATH", os.defpath)
        if os.sep not in program and shutil.which(program, path=search) is None:
            raise self._fail("not_found", f"the agent command {program!r} was not found on "
                             f"the PATH searched ({search or 'empty'})")
        if not self.workspace.is_dir():
            raise self._fail("not_found", f"the workspace {self.workspace} does not exist")
        self.stderr_log.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with spawning():
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command, cwd=self.workspace, env=self.env,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=LINE_LIMIT)
        except FileNotFoundError:
            raise self._fail("not_found", f"the agent command {program!r} does not exist") \
                from None
        except PermissionError:
            raise self._fail("not_found", f"the agent command {program!r} is not executable") \
                from None
        except OSError as exc:
            raise self._fail("not_found", f"the agent command {program!r} could not be "
                             f"started: {exc.strerror or exc}") from None
        self.pid = self._proc.pid
        assert self._proc.stdin is not None
        incoming = asyncio.StreamReader(limit=LINE_LIMIT)
        self._tasks = [asyncio.create_task(self._read_stdout(incoming)),
                       asyncio.create_task(self._drain_stderr())]
        self._conn = acp.connect_to_agent(self, self._proc.stdin, incoming)

    async def _read_stdout(self, incoming: asyncio.StreamReader) -> None:
        """Hand the SDK only well-formed JSON-RPC lines (the SDK skips a line it cannot parse
        and waits on, where the turn must fail), and take this session's `session/update`s
        here, in the order they came: the SDK would spend a task, a tracing span and a model
        built and dumped again on each, for an update we only store and merge as sent (about
        two fifths of the console's CPU with 20 agents streaming; benchmarks/console)."""
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        number = 0
        try:
            while True:
                try:
                    line = await stdout.readuntil(b"\n")
                except asyncio.IncompleteReadError as end:
                    line = end.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    self._fail("malformed", f"{self.name} sent a line longer than "
                               f"{LINE_LIMIT} bytes")
                    return
                number += 1
                if not line.strip():
                    continue
                try:
                    message = json_rpc(line)
                except MalformedLine as problem:
                    log.warning("%s: line %d of its output: %s", self.name, number, problem)
                    self._fail("malformed", f"{self.name} sent malformed JSON-RPC (line "
                               f"{number} of its output is {problem})")
                    return
                update = self._own_update(message)
                if update is not None:
                    self.take_update(update)
                else:
                    incoming.feed_data(line if line.endswith(b"\n") else line + b"\n")
        finally:
            incoming.feed_eof()  # the SDK then fails what is waiting for an answer

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        fd = os.open(self.stderr_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        try:
            while chunk := await self._proc.stderr.read(STDERR_CHUNK):
                with contextlib.suppress(OSError):  # a full disk must not block the agent
                    os.write(fd, chunk)
        finally:
            os.close(fd)

    async def _close(self) -> None:
        if self._proc is not None:
            warnings = await end_group(self._proc, self.cancel_grace)
            if warnings:
                log.warning("%s (pid %d): %s", self.name, self._proc.pid, "; ".join(warnings))
        if self._conn is not None:
            await within(self._conn.close(), KILL_WAIT)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=READ_GRACE)
            for task in pending:
                task.cancel()
        self.transcript.close()

    # ---- requests and failures ---------------------------------------------------------------

    def _connection(self) -> ClientSideConnection:
        assert self._conn is not None
        return self._conn

    def _touch(self) -> None:
        self.last_update = asyncio.get_running_loop().time()

    def _report(self, change: Change | None) -> None:
        """Tell the caller; its failure is logged, never raised into the SDK (which would
        answer the agent with an error or drop the update)."""
        if change is None or self.on_change is None:
            return
        try:
            self.on_change(*change)
        except Exception:
            log.exception("%s: the on_change callback failed on a %s change", self.name,
                          change[0])

    def _sign_in(self, method: str) -> str:
        """What the agent wants before it works: its own word (`authMethods`), else what its
        preset is known to read."""
        ways = []
        for way in self.auth_methods:
            names = [str(v.get("name")) for v in way.get("vars") or () if v.get("name")]
            if names:
                ways.append("set " + " and ".join(names))
            else:
                said = str(way.get("description") or way.get("name") or "").strip()
                if said:
                    ways.append(one_line(said, 120))
        known = AUTH_HINTS.get(Path(self.command[0]).name)
        if not ways and known:
            ways.append(known)
        how = "; or ".join(ways) if ways else "see its documentation for how to sign in"
        return (f"{self.name} needs to be signed in (it answered {method} with 'authentication "
                f"required'): {how}. Its environment is marrow-tui's plus acp.env")

    def _fail(self, kind: str, sentence: str) -> AcpFailure:
        """Record the run's failure (the first one counts) and return it."""
        if self._failure is None:
            self._failure = AcpFailure(kind, sentence)
        return self._failure

    async def _call(self, method: str, request: Awaitable[T], timeout: float | None) -> T:
        try:
            return await bounded(request, timeout)
        except TimeoutError:
            raise self._fail("timeout", f"{self.name} did not answer {method} within "
                             f"{seconds_text(timeout or 0)}") from None
        except ConnectionError:
            raise await self._ended(method) from None
        except acp.RequestError as exc:
            if exc.code == AUTH_REQUIRED:
                raise self._fail("auth_required", self._sign_in(method)) from None
            raise self._fail("refused", f"{self.name} answered {method} with an error: "
                             f"{one_line(str(exc), 200)}") from None
        except ValidationError as exc:
            raise self._fail("malformed", f"{self.name}'s answer to {method} does not follow "
                             f"ACP ({one_line(str(exc.errors()[0].get('msg', exc)), 120)})") \
                from None

    async def _ended(self, method: str) -> AcpFailure:
        """The failure to report once the agent's output has ended."""
        if self._failure is not None:
            return self._failure
        assert self._proc is not None
        await within(self._proc.wait(), KILL_WAIT)
        await asyncio.wait(self._tasks, timeout=READ_GRACE)  # its last words, into the log
        when = "mid-turn" if method == "session/prompt" else f"before answering {method}"
        if self._proc.returncode is None:
            what = f"{self.name} closed its output {when}"
        else:
            what = f"{self.name} exited {when} ({describe_exit(self._proc.returncode)})"
        tail = tail_line(self.stderr_log)
        return self._fail("exited", f"{what}: {tail}" if tail else f"{what}; its stderr is empty")

    # ---- what the agent asks of us (the SDK calls these) -------------------------------------

    def _own_update(self, message: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The `update` of a `session/update` notification for this run's session, when it has
        the shape every update has; anything else goes to the SDK, which checks it in full."""
        if message.get("method") != "session/update" or "id" in message:
            return None
        params = message.get("params")
        if not isinstance(params, dict) or params.get("sessionId") != self.session_id:
            return None
        update = params.get("update")
        if not isinstance(update, dict) or not isinstance(update.get("sessionUpdate"), str):
            return None
        return update

    def take_update(self, update: Mapping[str, Any]) -> None:
        """One `session/update`'s `update`, as sent: into the transcript and the view."""
        self._touch()
        self.transcript.write(update)
        self._report(self.view.apply(update))

    async def session_update(self, session_id: str, update: BaseModel, **kwargs: Any) -> None:
        """An update the SDK checked (one `_own_update` did not take)."""
        if self.session_id in (None, session_id):  # None: sent before session/new answered
            self.take_update(plain(update))
        else:
            log.warning("%s: an update for session %r, not this run's; ignored", self.name,
                        session_id)

    async def request_permission(self, session_id: str, tool_call: BaseModel,
                                 options: list[Any], **kwargs: Any) -> RequestPermissionResponse:
        self._touch()
        fields = plain(tool_call)
        known = self.view.tool_calls.get(str(fields.get("toolCallId", "")))
        if known is not None and known.title:
            fields.pop("title", None)  # codex asks under a generic title ("Approve MCP tool call")
        # In the transcript as the tool call's state: what is asked shows where it happens
        # (gemini asks before it sends any tool_call). `_meta` says the line is ours.
        self.transcript.write({"sessionUpdate": "tool_call_update", **fields,
                               "_meta": {"marrow": "permission request"}})
        call, change = self.view.merge_tool_call(fields)
        self._report(change)
        answer = await self._answer(call, options)
        if not isinstance(answer.outcome, AllowedOutcome) or any(
                o.option_id == answer.outcome.option_id and o.kind.startswith("reject")
                for o in options):
            # Refused: some agents (gemini, codex) never say the call ended.
            self._refused = True
            failed = {"sessionUpdate": "tool_call_update", "toolCallId": call.id,
                      "status": "failed", "_meta": {"marrow": "permission refused"}}
            self.transcript.write(failed)
            self._report(self.view.merge_tool_call(failed)[1])
        return answer

    async def _answer(self, call: ToolCall, options: list[Any]) -> RequestPermissionResponse:
        """The caller's answer to a permission request, as ACP wants it."""
        cancelled = RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        if self._cancelling:
            return cancelled
        request = PermissionRequest(
            replace(call, content=list(call.content), locations=list(call.locations)),
            tuple(PermissionOption(o.option_id, o.name, o.kind) for o in options))
        asking = asyncio.ensure_future(self.ask(request))
        self._asking.add(asking)
        try:
            await asyncio.wait({asking})
        except asyncio.CancelledError:
            asking.cancel()
            raise
        finally:
            self._asking.discard(asking)
            self._touch()  # time spent waiting on a human is no stall
        if asking.cancelled():  # by cancel()
            return cancelled
        chosen = asking.result()
        if chosen is None or chosen not in {o.option_id for o in request.options}:
            if chosen is not None:
                log.warning("%s: %r is not one of the options; answered cancelled", self.name,
                            chosen)
            return cancelled
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected",
                                                                option_id=chosen))
