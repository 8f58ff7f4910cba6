"""The hub's verbs as MCP tools, for a coding agent over stdio (`marrow-tui mcp`).

Coding agents call tools, not WebSocket verbs. The server acts as `<MARROW_AGENT>/mcp`, so the
agent's own shell commands keep their name; it holds one hub session (HubLink), opened on the
first tool call and again after a loss, and every mutation carries an `idem_key`, so its one
retry cannot apply twice. stdout belongs to the MCP protocol: logs go to stderr. The SDK costs
most of a second to import, so only `build` imports it. docs/mcp.md says how to configure it
and what each tool does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from marrow_tui import __version__
from marrow_tui.core.kinds import PROGRESS_KINDS
from marrow_tui.core.text import format_duration
from marrow_tui.hub.client import (
    ConnectionLost,
    Frame,
    HubClient,
    HubConnectionError,
    HubRefused,
    Refused,
)
from marrow_tui.hub.defaults import default_uri
from marrow_tui.hub.render import render_board, render_claim, render_state

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("marrow_tui.mcp")

T = TypeVar("T")

PROGRESS_EVERY: Final = 10.0
"""Seconds between progress notifications while ask_human waits (clients that reset their
tool timeout on progress, such as opencode, then never cut a long wait short)."""

RECONNECT_FIRST_DELAY: Final = 0.5
RECONNECT_MAX_DELAY: Final = 5.0

DEFAULT_NOTES: Final = 20
"""Progress notes read_board shows unless asked for another number."""

SERVER_INSTRUCTIONS: Final = (
    "These tools connect you to a marrow-tui coordination hub that you share with other coding "
    "agents and a human operator. Before editing, claim the task (with the paths you will "
    "change) so nobody else works on the same thing; post short progress notes as you go; "
    "release the claim when you finish or hand it off. When only a person can decide, use "
    "ask_human and wait for the answer. If you were dispatched for an issue, finish with "
    "mark_done once the work is complete and verified."
)


class ToolFailure(Exception):
    """A failure the model should read: becomes an MCP tool error (isError), never a crash."""


@dataclass
class ToolResult:
    """What a tool returns: text blocks for the model, and structured content."""

    text: str
    data: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- settings


def default_name() -> str:
    """``<MARROW_AGENT>/mcp`` (MARROW_AGENT is set by the scheduler's runner), else
    ``mcp/<login>``. Not MARROW_AGENT itself: a name is online only once, and the agent's own
    shell commands connect under it while this server holds its session."""
    name = os.environ.get("MARROW_AGENT")
    if name:
        return f"{name}/mcp"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return f"mcp/{user or 'agent'}"


@dataclass
class Settings:
    """How to reach the hub, and who we are on it."""

    uri: str
    name: str
    token: str | None = None
    agent_key: str | None = None
    """MARROW_AGENT_KEY: proof that we are the run's agent (it covers `<agent>/mcp`)."""
    ssl: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    give_up_after: float = 3600.0
    """How long ask_human keeps trying to reach a hub that went away before it gives up."""
    session: str = ""
    """MARROW_SESSION: the run this server belongs to (sent as ``session`` with questions and
    with mark_done)."""
    scope: str = ""
    """The ask scope: MARROW_ASK_SCOPE (the issue or agent), else MARROW_SESSION. Part of every
    question's key, so a run started again after a restart finds a question still pending."""
    issue: str = ""
    """MARROW_ISSUE: the issue the run was dispatched for, when there is one."""
    ask_ends_turn: bool = False
    """MARROW_ASK_ENDS_TURN=1 (an ACP run): ask_human opens the question and returns at once;
    the agent ends its turn and the answer comes as its next prompt (an agent's own tool
    timeout never cuts a long wait short)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "uri": default_uri(),
            "name": default_name(),
            "token": os.environ.get("MARROW_TOKEN") or None,
            "agent_key": os.environ.get("MARROW_AGENT_KEY") or None,
            "session": os.environ.get("MARROW_SESSION", ""),
            "scope": os.environ.get("MARROW_ASK_SCOPE") or os.environ.get("MARROW_SESSION", ""),
            "issue": os.environ.get("MARROW_ISSUE", ""),
            "ask_ends_turn": os.environ.get("MARROW_ASK_ENDS_TURN") == "1",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        agent = os.environ.get("MARROW_AGENT", "")
        name = str(values["name"])
        if not agent or (name != agent and not name.startswith(agent + "/")):
            values["agent_key"] = None  # the key proves the run's agent, not another name
        return cls(**values)


# --------------------------------------------------------------------------- the hub session


class HubLink:
    """One hub session for the server's life: connected on first use, again after a loss."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: HubClient | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> HubClient:
        """The live session, connecting (again) if there is none. Raises HubConnectionError."""
        async with self._lock:
            if self._client is not None and self._client.connected:
                return self._client
            if self._client is not None:
                log.info("the hub session was lost; connecting again")
                await self._client.close()
                self._client = None
            s = self.settings
            client = HubClient(s.uri, s.name, token=s.token, ssl=s.ssl, agent_key=s.agent_key,
                               open_timeout=s.connect_timeout,
                               request_timeout=s.connect_timeout)
            await client.connect()
            log.info("connected to %s as %s", s.uri, s.name)
            self._client = client
            return client

    async def request(self, call: Callable[[HubClient], Awaitable[T]]) -> T:
        """Run one request; if the session turns out to be gone, connect again and retry once.

        Callers make the retry safe: reads are harmless twice and every mutation carries an
        ``idem_key``, which the hub answers a second time with its stored reply.
        """
        try:
            client = await self.client()
            try:
                return await call(client)
            except ConnectionLost as exc:
                log.info("%s; connecting again and retrying once", exc.message)
            client = await self.client()
            return await call(client)
        except Refused:
            raise
        except HubConnectionError as exc:
            raise ToolFailure(_unreachable(exc, self.settings)) from None

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None


def _unreachable(exc: HubConnectionError, settings: Settings) -> str:
    if isinstance(exc, HubRefused):
        return (f"{exc.message}. This server's name on the hub is {settings.name!r} "
                "(<MARROW_AGENT>/mcp, or --name).")
    return f"{exc.message}. The hub address comes from MARROW_HUB_URI or --uri."


def _refusal(what: str, exc: Refused) -> ToolFailure:
    code = f" [{exc.code}]" if exc.code else ""
    return ToolFailure(f"{what}: {exc.text}{code}")


def _idem() -> str:
    return f"mcp-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- the tools' work


class HubTools:
    """What the tools do, with no MCP types in sight (the SDK adapter is in :func:`build`)."""

    def __init__(self, settings: Settings, link: HubLink | None = None) -> None:
        self.settings = settings
        self.link = link or HubLink(settings)
        self._server_id = f"mcp-{uuid.uuid4().hex[:12]}"
        self._answered: dict[str, int] = {}
        """Questions this server already returned an end for: a deliberate second ask of the
        same question gets a fresh request (key suffix ``#n``), an interrupted one does not."""

    async def close(self) -> None:
        await self.link.close()

    # ---- steering ----------------------------------------------------------------------

    def question_key(self, question: str, context: str) -> str:
        """The request key: the same question in the same ask scope is the same request.

        The same formula as `marrow-tui ask` (cli/steer.py's request_key). Keys are per asker, and
        this server asks as ``<agent>/mcp``, so it does not share requests with the agent's
        shell `ask`. Outside a scheduled run, this server's own id stands in for the scope.
        """
        digest = hashlib.sha256(f"{question}\0{context}".encode()).hexdigest()[:16]
        base = f"{self.settings.scope or self._server_id}:{digest}"
        asked = self._answered.get(base, 0)
        return base if asked == 0 else f"{base}#{asked}"

    async def ask_human(
        self, question: str, context: str = "", choices: Sequence[str] | None = None,
        timeout_seconds: float | None = None, default: str | None = None, task_id: str = "",
        on_wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> ToolResult:
        question, context = (question or "").strip(), (context or "").strip()
        if not question:
            raise ToolFailure("The question is empty: say what you need the human to decide.")
        if default is not None and timeout_seconds is None:
            raise ToolFailure("A default answer needs timeout_seconds (it is what you get when "
                              "that time passes with no answer).")
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ToolFailure("timeout_seconds must be more than 0 (leave it out to wait as "
                              "long as it takes).")
        clean_choices = [c.strip() for c in choices or [] if c.strip()]
        options: dict[str, Any] = {
            "context": context, "choices": clean_choices, "timeout_seconds": timeout_seconds,
            "default": default, "task_id": (task_id or self.settings.issue).strip(),
            "session": self.settings.session,
        }
        key = self.question_key(question, context)
        base = key.split("#", 1)[0]
        if self.settings.ask_ends_turn:
            queued = await self._queue(question, key, options)
            if queued is not None:
                return queued
        reply = await self._wait_for_end(question, key, options, on_wait)
        self._answered[base] = self._answered.get(base, 0) + 1
        return _steer_result(reply, timeout_seconds)

    async def _queue(self, question: str, key: str,
                     options: dict[str, Any]) -> ToolResult | None:
        """Open the question and say to end the turn; None when it has ended already (asked
        before, answered since: the caller hands over that answer)."""
        try:
            opened = await self.link.request(
                lambda client: client.steer_ask(question, request_key=key, **options))
        except Refused as exc:
            raise _refusal("The hub refused the question", exc) from None
        except HubConnectionError as exc:
            raise ToolFailure(_unreachable(exc, self.settings)) from None
        if opened.get("state", "open") != "open":
            return None
        return ToolResult(
            f"Question {opened['id']} is with the operator. End this turn now, without "
            "guessing the answer: it will arrive as the prompt of your next turn.",
            {"id": opened["id"], "state": "open"})

    async def _wait_for_end(self, question: str, key: str, options: dict[str, Any],
                            on_wait: Callable[[float], Awaitable[None]] | None) -> Frame:
        """Ask (or find again by key) and wait; across lost sessions, ask again by key."""
        started = time.monotonic()
        away_since: float | None = None
        delay = RECONNECT_FIRST_DELAY
        while True:
            try:
                client = await self.link.client()
                away_since, delay = None, RECONNECT_FIRST_DELAY
                wait = client.ask_and_wait(question, request_key=key, **options)
                return await _with_heartbeat(wait, started, on_wait)
            except Refused as exc:
                raise _refusal("The hub refused the question", exc) from None
            except HubConnectionError as exc:
                if isinstance(exc, HubRefused) and "already online" not in exc.reason:
                    # Auth denied, or another session took our name over: retrying would fight
                    # it. A name still online is worth waiting out, though: our own dead session
                    # the hub has not noticed yet (or another client run under the same name).
                    raise ToolFailure(_unreachable(exc, self.settings)) from None
                problem = exc.message
            now = time.monotonic()
            away_since = away_since or now
            if now - away_since >= self.settings.give_up_after:
                raise ToolFailure(
                    f"{problem}. Gave up after {format_duration(now - away_since)} without a "
                    "hub. The question stays open on the hub: call ask_human again with the same "
                    "question to pick it up.")
            log.warning("%s; trying again in %.1f s (the question stays open)", problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    # ---- issues --------------------------------------------------------------------------

    async def mark_done(self, title: str, summary: str) -> ToolResult:
        title, summary = (title or "").strip(), (summary or "").strip()
        if not title:
            raise ToolFailure("title is empty: give a one-line summary of the change, in the "
                              "imperative (at most 72 characters).")
        if "\n" in title or "\r" in title:
            raise ToolFailure("title must be a single line; put the details in summary.")
        if not summary:
            raise ToolFailure("summary is empty: say what changed, how you verified it, and "
                              "anything left for a reviewer.")
        issue, session = self.settings.issue, self.settings.session
        try:
            reply = await self.link.request(
                lambda hub: hub.issue_done(title, summary, issue=issue, session=session))
        except Refused as exc:
            if exc.type == "error" and exc.text.startswith("Unknown message type"):
                raise ToolFailure(
                    "No issue orchestrator is running on this hub (it does not know "
                    "'issue_done'), so there is no issue to mark done. If you were not "
                    "dispatched for an issue, just finish your work and stop.") from None
            raise _refusal("The orchestrator did not mark the issue done", exc) from None
        state, path = reply.get("state"), reply.get("path")
        text = _payload(reply) or f"Marked the issue done (state: {state})."
        if path:
            text += f" The issue file is now {path}."
        if "stop now" not in text.lower():
            text += " Stop now: no further turns will be dispatched for this issue."
        return ToolResult(text, _pick(reply, "identifier", "state", "path"))

    # ---- leases ------------------------------------------------------------------------

    async def claim(self, task_id: str, paths: Sequence[str] | None = None, worktree: str = "",
                    ttl_seconds: float | None = None, note: str = "") -> ToolResult:
        task_id = _task(task_id)
        key = _idem()
        try:
            frame = await self.link.request(lambda hub: hub.claim(
                task_id, list(paths or []), worktree, ttl_seconds, note, idem_key=key))
        except Refused as exc:
            raise _refusal(f"Claim of {task_id} refused", exc) from None
        text = render_claim(frame, argparse.Namespace()) + "."
        notes = []
        if frame.get("checkpoint"):
            notes.append("The previous holder left this checkpoint for you:\n"
                         + str(frame["checkpoint"]))
        return ToolResult(text, _pick(frame, "task_id", "owner", "epoch", "lease_expires_at",
                                   "worktree", "paths", "note", "checkpoint"), notes)

    async def claim_paths(self, paths: Sequence[str] | None) -> ToolResult:
        wanted = [p for p in (paths or []) if isinstance(p, str) and p.strip()]
        if not wanted:
            raise ToolFailure("paths is empty: name the files or folders you will change, "
                              "relative to your folder.")
        session = self.settings.session
        if not session:
            raise ToolFailure("This server belongs to no run (MARROW_SESSION is not set): "
                              "use claim with a task id instead.")
        try:
            frame = await self.link.request(lambda hub: hub.claim_paths(session, wanted))
        except Refused as exc:
            raise _refusal("Paths not claimed", exc) from None
        return ToolResult(_payload(frame) or "claimed.",
                          _pick(frame, "task_id", "added", "paths", "worktree"))

    async def release(self, task_id: str) -> ToolResult:
        task_id = _task(task_id)
        key = _idem()
        try:
            frame = await self.link.request(lambda hub: hub.release(task_id, idem_key=key))
        except Refused as exc:
            raise _refusal(f"Release of {task_id} refused", exc) from None
        return ToolResult(f"released {task_id}.", _pick(frame, "task_id", "owner", "epoch"))

    async def handoff(self, task_id: str, to_agent: str, note: str = "") -> ToolResult:
        task_id, to_agent = _task(task_id), (to_agent or "").strip()
        if not to_agent:
            raise ToolFailure("to_agent is empty: name the online agent that takes the task "
                              "over (read_board and state show who is around).")
        key = _idem()
        try:
            frame = await self.link.request(
                lambda hub: hub.handoff(task_id, to_agent, note, idem_key=key))
        except Refused as exc:
            raise _refusal(f"Handoff of {task_id} refused", exc) from None
        return ToolResult(f"handed {task_id} to {frame.get('owner', to_agent)} "
                       f"(its epoch is now {frame.get('epoch')}); it is no longer yours.",
                       _pick(frame, "task_id", "owner", "previous_owner", "epoch",
                             "lease_expires_at"))

    async def state(self) -> ToolResult:
        try:
            frame = await self.link.request(lambda hub: hub.state())
        except Refused as exc:
            raise _refusal("The hub refused the state query", exc) from None
        claims = (frame.get("snapshot") or {}).get("active_claims") or []
        text = render_state(frame, argparse.Namespace())
        mine = [c.get("task_id") for c in claims if c.get("owner") == self.settings.name]
        text += f"\n\nyou are {self.settings.name}; yours: {', '.join(mine) or 'none'}"
        return ToolResult(text, {"me": self.settings.name, "claims": claims})

    # ---- the blackboard -------------------------------------------------------------------

    async def post_progress(self, task_id: str, text: str, kind: str = "note") -> ToolResult:
        task_id, body = _task(task_id), (text or "").strip()
        if not body:
            raise ToolFailure("text is empty: say what happened, in a sentence or two.")
        if kind not in PROGRESS_KINDS:
            raise ToolFailure(f"kind must be one of {', '.join(PROGRESS_KINDS)}.")
        key = _idem()
        try:
            frame = await self.link.request(
                lambda hub: hub.progress(task_id, body, kind, idem_key=key))
        except Refused as exc:
            raise _refusal("The note was refused", exc) from None
        note = frame.get("note") or {}
        what = "a note" if kind == "note" else f"a {kind} note"
        return ToolResult(f"posted {what} on {task_id}.",
                          _pick(note, "task_id", "author", "kind", "text", "posted_at"))

    async def read_board(self, progress_notes: int = DEFAULT_NOTES) -> ToolResult:
        try:
            frame = await self.link.request(lambda hub: hub.board())
        except Refused as exc:
            raise _refusal("The hub refused the board query", exc) from None
        count = max(0, progress_notes)
        board = frame.get("board") or {}
        text = render_board(frame, argparse.Namespace(notes=count))
        progress = sorted(board.get("progress") or [], key=lambda n: n.get("posted_at") or 0)
        data = {"tasks": board.get("tasks") or [], "ready": board.get("ready") or [],
                "progress": progress[-count:] if count else []}
        return ToolResult(text, data)


def _steer_result(reply: Frame, timeout_seconds: float | None) -> ToolResult:
    state, rid = reply.get("state"), reply.get("id")
    data = _pick(reply, "id", "state", "answer", "answered_by", "default_used")
    if state == "answered":
        return ToolResult(str(reply.get("answer") or ""), data)
    if state == "timed_out" and reply.get("default_used"):
        waited = format_duration(timeout_seconds) if timeout_seconds else "the time given"
        note = (f"(Nobody answered request {rid} within {waited}; this is the default answer "
                "you gave, not a human's.)")
        return ToolResult(str(reply.get("answer") or ""), data, [note])
    if state == "timed_out":
        raise ToolFailure(f"Nobody answered request {rid} in time and there was no default. "
                          "Decide without an answer, or ask again.")
    if state == "cancelled":
        by = reply.get("answered_by") or "the operator"
        raise ToolFailure(f"Request {rid} was cancelled by {by}: no answer will come. Do not "
                          "ask the same thing again; carry on without it or stop.")
    raise ToolFailure(f"Request {rid} ended as {state!r} with no answer.")


async def _with_heartbeat(wait: Awaitable[T], started: float,
                          on_wait: Callable[[float], Awaitable[None]] | None) -> T:
    """Await ``wait``, calling ``on_wait(seconds so far)`` every PROGRESS_EVERY seconds."""
    task = asyncio.ensure_future(wait)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=PROGRESS_EVERY)
            if done:
                return task.result()
            if on_wait is not None:
                try:
                    await on_wait(time.monotonic() - started)
                except Exception:  # a progress notification is a courtesy, never a failure
                    log.debug("progress notification failed", exc_info=True)
    finally:
        if not task.done():
            # The MCP call was cancelled: stop waiting here, and cancel nothing on the hub.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _task(task_id: str) -> str:
    task_id = (task_id or "").strip()
    if not task_id:
        raise ToolFailure("task_id is empty: name the task (the id on the board, or your own).")
    return task_id


def _pick(frame: Frame, *keys: str) -> dict[str, Any]:
    return {k: frame.get(k) for k in keys if k in frame}


def _payload(frame: Frame) -> str:
    payload = frame.get("payload")
    return payload.strip() if isinstance(payload, str) else ""


# --------------------------------------------------------------------------- the MCP server


def build(hub_tools: HubTools) -> Any:
    """The MCPServer with our tools (imports the SDK; mcp 2.x)."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
    from pydantic import Field

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await hub_tools.close()

    server = MCPServer("marrow-tui", version=__version__, instructions=SERVER_INSTRUCTIONS,
                       lifespan=lifespan, log_level=_sdk_level())

    async def result(work: Awaitable[ToolResult]) -> CallToolResult:
        try:
            got = await work
        except ToolFailure as exc:
            raise ToolError(str(exc)) from None
        blocks: list[ContentBlock] = [TextContent(type="text", text=t)
                                      for t in (got.text, *got.notes)]
        return CallToolResult(content=blocks, structured_content=got.data)

    async def ask_human(
        question: Annotated[str, Field(description=(
            "The question, as you would put it to a colleague: what you need decided, in one "
            "or two sentences."))],
        ctx: Context,
        context: Annotated[str, Field(description=(
            "What the human needs in order to answer: what you tried, what you found, the "
            "options and their trade-offs. Markdown is fine."))] = "",
        choices: Annotated[list[str] | None, Field(description=(
            "Suggested answers, shown as buttons (at most 20). The human may still write "
            "something else."))] = None,
        timeout_seconds: Annotated[float | None, Field(description=(
            "Stop waiting after this many seconds. Leave it out to wait as long as it "
            "takes."))] = None,
        default: Annotated[str | None, Field(description=(
            "The answer to use when timeout_seconds passes with no answer (needs "
            "timeout_seconds). The result then says it was the default."))] = None,
        task_id: Annotated[str, Field(description=(
            "The task, claim or issue the question is about, if any (default: the issue "
            "this run was dispatched for)."))] = "",
    ) -> CallToolResult:
        """Ask the human operator a question and wait for the answer.

        Use it when you are blocked on something only a person can decide: unclear or
        conflicting requirements, a risky or irreversible step, access or credentials you do not
        have. Do not use it for what you can find out yourself. The question shows up in the
        operator's console at once; this call blocks until they answer (minutes, maybe hours)
        and returns their answer as text. With timeout_seconds and default, the default comes
        back when time runs out, and the result says so. If this call is interrupted or times
        out on your side, call ask_human again with exactly the same question and context: you
        resume waiting for the same request, and the human is not asked twice.
        """

        async def progress(waited: float) -> None:
            await ctx.report_progress(waited, None,
                                      f"waiting for the operator's answer ({waited:.0f} s)")

        return await result(hub_tools.ask_human(question, context, choices, timeout_seconds,
                                             default, task_id, on_wait=progress))

    async def mark_done(
        title: Annotated[str, Field(description=(
            "One line, in the imperative, at most 72 characters: what the change does, e.g. "
            "'Add retries to the upload client'."))],
        summary: Annotated[str, Field(description=(
            "What changed and why, how you verified it (tests, checks), and anything left for "
            "a reviewer. Markdown is fine."))],
    ) -> CallToolResult:
        """Mark the issue you were dispatched for as done. This is the only way to complete it.

        Call it once, when the work is complete and verified (tests pass, changes are committed
        as the workflow asks). The orchestrator moves the issue to its done state and records
        title and summary for the review. After it succeeds, stop: no further turns are
        dispatched for this issue. It fails, harmlessly, when no orchestrator runs on the hub.
        """
        return await result(hub_tools.mark_done(title, summary))

    async def claim(
        task_id: Annotated[str, Field(description=(
            "The task to lease: an id from the board, or your own short id."))],
        paths: Annotated[list[str] | None, Field(description=(
            "Files or folders (relative to the worktree) you will change. A folder covers "
            "everything under it. Leave it empty to claim the whole worktree."))] = None,
        worktree: Annotated[str, Field(description=(
            "A label for the checkout the paths are in; claims in different worktrees never "
            "conflict."))] = "",
        ttl_seconds: Annotated[float | None, Field(description=(
            "Lease length in seconds (default 3600, at least 30). Claim again before it ends "
            "to renew it."))] = None,
        note: Annotated[str, Field(description="What you are doing, for the others.")] = "",
    ) -> CallToolResult:
        """Lease a task, and the files you will change, on the coordination hub.

        Claim before you edit, so no other agent works on the same task or the same files.
        Returns the grant: the epoch (a fencing number) and when the lease expires. Claiming a
        task you already hold renews it (send the same paths again). Fails with the reason when
        another agent's live claim covers the task or overlaps your paths: pick other work, or
        coordinate with that agent.
        """
        return await result(hub_tools.claim(task_id, paths, worktree, ttl_seconds, note))

    async def claim_paths(
        paths: Annotated[list[str], Field(description=(
            "Files or folders (relative to your folder) you are about to change. A folder "
            "covers everything under it."))],
    ) -> CallToolResult:
        """Add files to your run's lease before you start changing them.

        Your run already holds a lease on its checkout; your edits join it as they are
        allowed. Claiming up front tells the other agents on the same checkout what you will
        change, before they start on it. Fails, naming who holds what since when, when
        another agent's lease covers any of the paths: pick other work, or ask the operator.
        """
        return await result(hub_tools.claim_paths(paths))

    async def release(
        task_id: Annotated[str, Field(description="The task you hold and are finished with.")],
    ) -> CallToolResult:
        """Give up your lease on a task (when it is done, or you stop working on it).

        Only the holder may release. Fails with the reason when the task is not claimed or is
        held by someone else.
        """
        return await result(hub_tools.release(task_id))

    async def handoff(
        task_id: Annotated[str, Field(description="The task you hold.")],
        to_agent: Annotated[str, Field(description=(
            "The online agent that takes it over, by its hub name."))],
        note: Annotated[str, Field(description=(
            "What the next holder needs to know: where you stopped, what is left."))] = "",
    ) -> CallToolResult:
        """Hand a task you hold, with its scope, to another online agent, in one step.

        The lease moves at once (nobody can grab it in between) and your note is posted on the
        board. Afterwards the task is no longer yours. Fails with the reason when the agent is
        not online, or would conflict with someone else's claim.
        """
        return await result(hub_tools.handoff(task_id, to_agent, note))

    async def post_progress(
        task_id: Annotated[str, Field(description=(
            "The task the note is about (it need not be on the board)."))],
        text: Annotated[str, Field(description="The note: a sentence or two.")],
        kind: Annotated[Literal["note", "blocked", "assessment", "usage", "approval"], Field(
            description=("'note' for progress, 'blocked' when you cannot go on, 'assessment' "
                         "for a finding or review, 'usage' for cost or usage, 'approval' for a "
                         "sign-off."))] = "note",
    ) -> CallToolResult:
        """Post a progress note on the shared blackboard, for the operator and other agents.

        Keep notes short and factual: what you did, what you found, what blocks you.
        """
        return await result(hub_tools.post_progress(task_id, text, kind))

    async def read_board(
        progress_notes: Annotated[int, Field(description=(
            "How many of the newest progress notes to include."), ge=0, le=1000)] = DEFAULT_NOTES,
    ) -> CallToolResult:
        """Read the shared blackboard: every task (status, dependencies, suggested owner), the
        ids that are ready to start, and the newest progress notes."""
        return await result(hub_tools.read_board(progress_notes))

    async def state() -> CallToolResult:
        """List the live claims on the hub: who holds which task and files, until when, and
        which of them are yours."""
        return await result(hub_tools.state())

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    tools: list[tuple[Callable[..., Awaitable[Any]], ToolAnnotations | None]] = [
        (ask_human, ToolAnnotations(open_world_hint=True)),
        (mark_done, None), (claim, None), (claim_paths, None), (release, None), (handoff, None),
        (post_progress, None),
        (read_board, read_only), (state, read_only),
    ]
    names = locals()
    for fn, hints in tools:
        # `from __future__ import annotations` leaves the signatures as strings, and the SDK
        # evaluates them in this module's globals, where the lazily imported names are missing.
        fn.__annotations__ = inspect.get_annotations(fn, eval_str=True, locals=names)
        server.add_tool(fn, annotations=hints, structured_output=False)
    return server


def _sdk_level() -> Any:
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "WARNING"


def serve(settings: Settings) -> int:
    """Run the MCP server on stdin/stdout until the client closes it."""
    server = build(HubTools(settings))
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    return 0
