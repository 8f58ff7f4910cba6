"""An asyncio client for the coordination hub (synapse-channel wire vocabulary).

Why this module exists: scripts, the CLI and tests need to talk to a hub
(ours or an unmodified synapse-channel hub) without importing the runtime or
the console. It therefore depends only on ``websockets`` and the standard
library, and must never import textual or rich.

How replies are found. The wire has no request ids. A hub handles the frames
of one connection strictly in order and answers each request with either a
private reply (queries, refusals, ``checkpoint_saved``) or a broadcast that
every socket receives (grants, board changes, chat). So this client keeps at
most one request in flight per connection (an ``asyncio.Lock``) and, while it
waits, tests every incoming frame against a matcher built for that request:
the success type plus ``task_id`` and owner/sender where they exist, the verb's
private refusal type, or a generic ``error``. Everything else (other agents'
grants, presence, chat) is unrelated traffic: it goes to subscribers and is
otherwise dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import ssl as ssl_module
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .defaults import DEFAULT_URI, MAX_FILE_READ

Frame = dict[str, Any]
"""One decoded JSON frame, exactly as the hub sent it."""

T = TypeVar("T")

REQUESTED_WIRE_REVISION: Final = 7
"""The synapse wire revision we announce at registration (synapse-channel 0.99.x says 7), so a
synapse hub serves us all it has; ours serves 2 whatever we say (docs/protocol.md §1.5)."""

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024
"""Incoming frame cap. Board and state snapshots of a busy hub exceed 1 MiB."""

HEARTBEAT_INTERVAL: Final = 20.0
"""What synapse's own client uses; the hub's minimum is 5 s."""


CLOSE_REASONS: Final[dict[int, str]] = {
    4009: "the name is already online, was switched, or is reserved",
    4010: "authentication was denied, or another session took this name over",
    4012: "registration timed out",
    4013: "the hub is at capacity, or identity binding failed",
    4014: "too many unauthenticated clients, or the name is in takeover cooldown",
    4015: "too many connections from this host",
    4016: "the name belongs to an offline agent that still holds work (its agent key or "
          "an operator may take it), or to a name lease held elsewhere",
    4017: "the identity pin was reclaimed",
    4018: "the identity key was rotated",
    4020: "delivery registration was refused",
    1013: "the hub dropped a client that did not read fast enough",
    1011: "the hub hit an internal error",
}
"""Human meaning of the hub's close codes (synapse-protocol §3.3)."""

SESSION_REFUSALS: Final = frozenset({"name_conflict", "auth_denied"})
"""Private frames after which the hub closes the session."""

REFUSAL_CLOSE_GRACE: Final = 1.0
"""How long to wait for the close code that follows a session refusal."""


# --------------------------------------------------------------------------- errors


class HubError(Exception):
    """Base of every error this client raises on purpose."""


class HubConnectionError(HubError):
    """The session could not be used: unreachable, refused, timed out or lost.

    The CLI maps every subclass to exit code 3.
    """

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri
        self.message = message


class HubUnreachable(HubConnectionError):
    """No WebSocket session could be opened (refused, DNS, TLS, handshake)."""


class HubRefused(HubConnectionError):
    """The hub turned the session away (name conflict, auth denied, close code)."""

    def __init__(
        self, uri: str, reason: str, code: int | None = None, frame: Frame | None = None
    ) -> None:
        detail = f" (close code {code})" if code is not None else ""
        super().__init__(uri, f"the hub at {uri} refused the session: {reason}{detail}")
        self.reason = reason
        self.code = code
        self.frame = frame


class HubTimeout(HubConnectionError):
    """No reply arrived in time; the request may or may not have been applied."""


class ConnectionLost(HubConnectionError):
    """The socket closed while a request was waiting for its reply."""

    def __init__(self, uri: str, code: int | None, reason: str) -> None:
        meaning = CLOSE_REASONS.get(code or 0, reason or "no reason given")
        if code is None:
            message = f"the connection to the hub at {uri} is closed: {meaning}"
        else:
            message = f"the hub at {uri} closed the connection (code {code}): {meaning}"
        super().__init__(uri, message)
        self.code = code
        self.reason = reason


class Refused(HubError):
    """The hub answered the request with a refusal.

    ``code`` is the machine reason (``reason_code`` of ``claim_denied`` or
    ``error_code`` of ``error``), ``text`` the hub's human sentence and
    ``frame`` the whole reply, so callers can branch without parsing text.
    """

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.type = str(frame.get("type", ""))
        code = frame.get("reason_code") or frame.get("error_code")
        self.code: str | None = str(code) if code else None
        self.text = payload_text(frame) or f"the hub refused the request ({self.type})"
        super().__init__(f"{self.text} [{self.code}]" if self.code else self.text)


def payload_text(frame: Frame) -> str:
    """The human text of a frame; payload is a string by convention, not by rule."""
    payload = frame.get("payload", "")
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, sort_keys=True)


# --------------------------------------------------------------------------- matching

Verdict = Literal["ok", "refused"]
Matcher = Callable[[Frame], "Verdict | None"]


def build_matcher(
    success: Callable[[Frame], bool],
    refusal_types: Iterable[str] = (),
    task_id: str | None = None,
) -> Matcher:
    """Make a matcher: success frames by predicate, refusals by type (+ task id).

    A generic ``error`` always counts as a refusal of the request in flight:
    errors are private and there is only ever one request in flight.
    """
    refusals = frozenset(refusal_types)

    def match(frame: Frame) -> Verdict | None:
        kind = frame.get("type")
        if kind == "error":
            return "refused"
        if kind in refusals:
            other = frame.get("task_id")
            if task_id is None or other in (None, "", task_id):
                return "refused"
            return None
        return "ok" if success(frame) else None

    return match


def _is_type(kind: str) -> Callable[[Frame], bool]:
    return lambda frame: frame.get("type") == kind


@dataclass
class _Pending:
    """The one request in flight: how to recognise its reply, and where to put it."""

    match: Matcher
    future: asyncio.Future[tuple[Verdict, Frame]]


# --------------------------------------------------------------------------- client


class HubClient:
    """One named session with a hub; use as ``async with HubClient(...) as hub``.

    Requests are serialised per client (see the module docstring); open a
    second client for a second identity or for parallel requests.
    """

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        name: str = "",
        *,
        token: str | None = None,
        roles: Sequence[str] | None = None,
        takeover: bool = False,
        operator_token: str | None = None,
        agent_key: str | None = None,
        open_timeout: float = DEFAULT_TIMEOUT,
        request_timeout: float = DEFAULT_TIMEOUT,
        ssl: ssl_module.SSLContext | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
    ) -> None:
        self.uri = uri
        self.name = name
        self.token = token
        self.roles = list(roles or [])
        self.takeover = takeover
        #: act as an operator (the hub's operator token), and prove we are `name` (the agent
        #: key a run gets in $MARROW_AGENT_KEY): both sent once, at registration
        self.operator_token = operator_token
        self.agent_key = agent_key
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.ssl = ssl
        self.max_size = max_size
        self.heartbeat_interval = heartbeat_interval
        self.welcome: Frame | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._subscribers: list[asyncio.Queue[Frame]] = []
        self._closed_error: HubConnectionError | None = None
        self._refusal: Frame | None = None
        self._grace: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(
        self,
        uri: str | None = None,
        name: str | None = None,
        token: str | None = None,
        roles: Sequence[str] | None = None,
        takeover: bool | None = None,
        open_timeout: float | None = None,
    ) -> Frame:
        """Open the socket, register the name and return the ``welcome`` frame.

        Registration is confirmed with a ``who_request`` barrier: synapse sends
        ``welcome`` before it has even read our first frame, so only a reply
        to a later frame proves the name was bound (or shows ``name_conflict``).
        """
        self.uri = uri or self.uri
        self.name = name if name is not None else self.name
        self.token = token if token is not None else self.token
        self.roles = list(roles) if roles is not None else self.roles
        self.takeover = takeover if takeover is not None else self.takeover
        timeout = open_timeout if open_timeout is not None else self.open_timeout
        if not self.name:
            raise ValueError("HubClient needs a non-empty agent name")
        self._closed_error = None
        self._refusal = None
        try:
            async with asyncio.timeout(timeout):
                await self._open_and_register()
        except TimeoutError:
            await self.close()
            raise HubTimeout(
                self.uri, f"the hub at {self.uri} did not accept the session within {timeout:g} s"
            ) from None
        except BaseException:
            await self.close()
            raise
        if self.heartbeat_interval:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(self.heartbeat_interval))
        assert self.welcome is not None
        return self.welcome

    async def _open_and_register(self) -> None:
        """Open, send the registration heartbeat, wait for welcome, then a barrier."""
        self._ws = await self._open_socket()
        welcome: asyncio.Future[tuple[Verdict, Frame]] = asyncio.get_running_loop().create_future()
        # Armed before the reader starts: synapse sends welcome the moment we connect.
        self._pending = _Pending(lambda f: "ok" if f.get("type") == "welcome" else None, welcome)
        self._reader = asyncio.create_task(self._read_loop(self._ws))
        try:
            await self._send(self.registration_frame())
            _, self.welcome = await welcome
        finally:
            self._pending = None
            _settle(welcome)
        await self._request(
            {"type": "who_request"}, build_matcher(_is_type("who_snapshot")), None
        )

    async def _open_socket(self) -> ClientConnection:
        """The WebSocket handshake, with every failure turned into HubUnreachable."""
        kwargs: dict[str, Any] = {"compression": None, "max_size": self.max_size}
        if self.uri.startswith("wss://"):
            kwargs["ssl"] = self.ssl or True
        try:
            return await connect(self.uri, open_timeout=None, **kwargs)
        except ssl_module.SSLCertVerificationError as exc:
            detail = exc.verify_message or exc.reason or str(exc)
            raise HubUnreachable(
                self.uri, f"cannot verify the TLS certificate of the hub at {self.uri}: {detail}"
            ) from None
        except ssl_module.SSLError as exc:
            raise HubUnreachable(
                self.uri, f"TLS with the hub at {self.uri} failed: {exc.reason or exc}"
            ) from None
        except (InvalidURI, ValueError):
            raise HubUnreachable(
                self.uri, f"{self.uri!r} is not a WebSocket URI (expected ws://HOST:PORT)"
            ) from None
        except InvalidHandshake as exc:
            hint = " (is it a wss:// hub?)" if self.uri.startswith("ws://") else ""
            raise HubUnreachable(
                self.uri, f"the server at {self.uri} refused the WebSocket handshake: {exc}{hint}"
            ) from None
        except OSError as exc:
            reason = _os_reason(exc)
            if isinstance(exc, ConnectionResetError) and self.uri.startswith("wss://"):
                reason += " (does this hub speak TLS? try ws://)"
            message = f"cannot reach the hub at {self.uri}: {reason}"
            raise HubUnreachable(self.uri, message) from None

    def registration_frame(self) -> Frame:
        """The first frame: it binds our name for the life of the socket."""
        frame: Frame = {
            "sender": self.name,
            "target": "System",
            "type": "heartbeat",
            "payload": "online",
            "timestamp": time.time(),
            "protocol_version": REQUESTED_WIRE_REVISION,
            "roles": list(self.roles),
        }
        if self.token is not None:
            frame["token"] = self.token
        if self.takeover:
            frame["takeover"] = True
        if self.operator_token:
            frame["operator_token"] = self.operator_token
        if self.agent_key:
            frame["agent_key"] = self.agent_key
        return frame

    async def close(self) -> None:
        """Close the socket and stop the background tasks; safe to call twice."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        for task in (self._heartbeat, self._reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._heartbeat = self._reader = None
        if self._closed_error is None:
            self._closed_error = ConnectionLost(self.uri, None, "closed by the client")
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None

    @property
    def connected(self) -> bool:
        """True while the session can carry requests."""
        return self._ws is not None and self._closed_error is None

    # ----------------------------------------------------------------- reading

    async def _read_loop(self, ws: ClientConnection) -> None:
        """Route every frame: to the request in flight, and to every subscriber."""
        try:
            async for raw in ws:
                frame = _decode(raw)
                if frame is not None:
                    self._dispatch(frame)
        except ConnectionClosed:
            pass
        self._closed_error = self._describe_close(ws)
        self._fail_pending(self._closed_error)

    def _dispatch(self, frame: Frame) -> None:
        """Hand one frame to the matcher in flight and to subscribers."""
        if frame.get("type") in SESSION_REFUSALS:
            # The hub closes right after; wait briefly for the close code, then give up.
            self._refusal = frame
            refused = HubRefused(self.uri, payload_text(frame), None, frame)
            self._grace = asyncio.get_running_loop().call_later(
                REFUSAL_CLOSE_GRACE, self._fail_pending, refused)
        else:
            pending = self._pending
            if pending is not None and not pending.future.done():
                verdict = pending.match(frame)
                if verdict is not None:
                    pending.future.set_result((verdict, frame))
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(frame)

    def _fail_pending(self, error: HubConnectionError) -> None:
        pending = self._pending
        if pending is not None and not pending.future.done():
            pending.future.set_exception(error)

    def _describe_close(self, ws: ClientConnection) -> HubConnectionError:
        """Turn the close (and any refusal frame before it) into one clear error."""
        code, reason = ws.close_code, ws.close_reason or ""
        if self._refusal is not None:
            return HubRefused(self.uri, payload_text(self._refusal), code, self._refusal)
        if code is not None and code >= 4000:
            meaning = CLOSE_REASONS.get(code, "closed by the hub")
            return HubRefused(self.uri, f"{reason}: {meaning}" if reason else meaning, code)
        return ConnectionLost(self.uri, code, reason)

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue[Frame]:
        """A queue that receives a copy of every frame from now on (drops when full)."""
        queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Frame]) -> None:
        """Stop feeding a queue made by :meth:`subscribe`."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    async def wait_for(
        self, predicate: Callable[[Frame], bool], timeout: float | None = None
    ) -> Frame:
        """Wait for the next incoming frame that satisfies ``predicate``.

        For observers (tests, an agent waiting to be handed work): it sees the
        broadcast traffic that no request of ours caused. Subscribe first with
        :meth:`subscribe` and pass the queue to :meth:`next_matching` when the
        frame may arrive before this call starts.
        """
        queue = self.subscribe()
        try:
            return await self.next_matching(queue, predicate, timeout)
        finally:
            self.unsubscribe(queue)

    async def next_matching(
        self,
        queue: asyncio.Queue[Frame],
        predicate: Callable[[Frame], bool],
        timeout: float | None = None,
    ) -> Frame:
        """Pop frames from a subscribed queue until one satisfies ``predicate``."""
        wait = timeout if timeout is not None else self.request_timeout
        try:
            async with asyncio.timeout(wait):
                return await self._first(queue, predicate)
        except TimeoutError:
            raise HubTimeout(
                self.uri, f"no matching frame arrived from {self.uri} within {wait:g} s"
            ) from None

    async def _first(
        self, queue: asyncio.Queue[Frame], predicate: Callable[[Frame], bool]
    ) -> Frame:
        """The first queued frame matching ``predicate``; fails once the session is over."""
        while True:
            reader = self._reader
            if queue.empty() and (reader is None or reader.done()):
                raise self._closed_error or ConnectionLost(self.uri, None, "not connected")
            getter = asyncio.ensure_future(queue.get())
            waits: set[asyncio.Future[Any]] = {getter}
            if reader is not None:
                waits.add(reader)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled() and predicate(getter.result()):
                return getter.result()

    # ----------------------------------------------------------------- sending

    async def _send(self, frame: Frame) -> None:
        ws = self._ws
        if ws is None or self._closed_error is not None:
            raise self._closed_error or ConnectionLost(self.uri, None, "not connected")
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            # Let the reader finish first: it knows whether a refusal frame explains the close.
            if self._reader is not None and not self._reader.done():
                await asyncio.wait({self._reader}, timeout=REFUSAL_CLOSE_GRACE)
            raise self._closed_error or ConnectionLost(
                self.uri, ws.close_code, ws.close_reason or ""
            ) from None

    async def send_frame(self, fields: Frame) -> None:
        """Send one frame (`fields` in the usual envelope) and wait for no reply: for a reader
        that takes what comes back from :meth:`subscribe` (an attached console's commands
        and its change feed), with the rights this session registered with."""
        await self._send(self._envelope(fields))

    async def _heartbeat_loop(self, interval: float) -> None:
        """Keep ``last_seen`` fresh and let the hub sweep expired leases."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(HubError):
                await self._send(self._envelope({"type": "heartbeat", "target": "System",
                                                 "payload": "online"}))

    def _envelope(self, fields: Frame) -> Frame:
        """Add the envelope fields every request carries."""
        frame: Frame = {"sender": self.name, "target": "all", "type": "", "payload": ""}
        frame.update(fields)
        frame["timestamp"] = time.time()
        return frame

    async def _request(self, fields: Frame, match: Matcher, timeout: float | None) -> Frame:
        """Send one request and return its reply, or raise :class:`Refused`."""
        wait = timeout if timeout is not None else self.request_timeout
        async with self._lock:
            future: asyncio.Future[tuple[Verdict, Frame]]
            future = asyncio.get_running_loop().create_future()
            self._pending = _Pending(match, future)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives just as the reply does, and a stopping agent would not stop.
                async with asyncio.timeout(wait):
                    await self._send(self._envelope(fields))
                    verdict, frame = await future
            except TimeoutError:
                raise HubTimeout(
                    self.uri,
                    f"the hub at {self.uri} did not answer "
                    f"{fields.get('type')!r} within {wait:g} s",
                ) from None
            finally:
                self._pending = None
                _settle(future)
        if verdict == "refused":
            raise Refused(frame)
        return frame

    # ----------------------------------------------------------------- queries

    async def who(self, timeout: float | None = None) -> Frame:
        """``who_request`` → ``who_snapshot`` (online agents and their roles)."""
        match = build_matcher(_is_type("who_snapshot"))
        return await self._request({"type": "who_request"}, match, timeout)

    async def state(self, timeout: float | None = None) -> Frame:
        """``state_request`` → ``state_snapshot`` (``snapshot.active_claims``)."""
        request_id = uuid.uuid4().hex[:12]

        def ours(frame: Frame) -> bool:
            return frame.get("type") == "state_snapshot" and frame.get("request_id") in (
                None, request_id)

        return await self._request(
            {"type": "state_request", "request_id": request_id}, build_matcher(ours), timeout
        )

    async def board(self, timeout: float | None = None) -> Frame:
        """``board_request`` → ``board_snapshot`` (tasks, ready ids, progress)."""
        return await self._request(
            {"type": "board_request"}, build_matcher(_is_type("board_snapshot")), timeout
        )

    async def history(self, limit: int | None = None, timeout: float | None = None) -> Frame:
        """``history_request`` → ``history_snapshot`` (recent chat frames)."""
        fields: Frame = {"type": "history_request"}
        if limit is not None:
            fields["limit"] = limit
        return await self._request(fields, build_matcher(_is_type("history_snapshot")), timeout)

    async def file_read(self, *, run: str = "", service: str = "", stream: str = "",
                        part: int = 0, offset: int = 0, length: int = MAX_FILE_READ,
                        timeout: float | None = None) -> Frame:
        """``file_read`` → ``file_data`` (operators only): up to ``length`` bytes from
        ``offset`` of a run's ``stdout``, ``stderr`` or ``transcript`` (``run``: its session
        id), or of a service's ``log`` (``service``); ``part`` 1, 2… are its rotated files.
        The reply's ``data`` is base64, and ``size`` and ``identity`` are the file's now (a
        new identity: it was replaced). Refused(file_refused) when there is no such file."""
        request_id = uuid.uuid4().hex[:12]
        fields: Frame = {"type": "file_read", "target": "System", "part": part,
                         "offset": offset, "length": length, "request_id": request_id}
        _put_optional(fields, run=run or None, service=service or None, stream=stream or None)

        def match(frame: Frame) -> Verdict | None:
            # by id: the operator's other frames on this connection get their own errors
            if frame.get("request_id") != request_id:
                return None
            return "ok" if frame.get("type") == "file_data" else "refused"

        return await self._request(fields, match, timeout)

    # ----------------------------------------------------------------- steering

    async def steer_ask(self, question: str, *, context: str = "",
                        choices: Sequence[str] = (), timeout_seconds: float | None = None,
                        default: str | None = None, task_id: str = "",
                        request_key: str = "", session: str | None = None,
                        timeout: float | None = None) -> Frame:
        """``steer_ask`` → ``steer_opened`` (the request's ``id``); the answer comes later as a
        ``steer_reply`` (see :meth:`ask_and_wait`). ``session`` is the run that asks (default
        ``$MARROW_SESSION``): a received answer is found again by its key only by that run."""
        if session is None:
            session = os.environ.get("MARROW_SESSION", "")
        fields: Frame = {"type": "steer_ask", "question": question, "context": context,
                         "choices": list(choices), "task_id": task_id, "session": session,
                         "request_key": request_key}
        if timeout_seconds is not None:
            fields["timeout_seconds"] = timeout_seconds
        if default is not None:
            fields["default"] = default
        return await self._request(fields, build_matcher(_is_type("steer_opened")), timeout)

    async def steer_get(self, request_id: str = "", request_key: str = "",
                        timeout: float | None = None) -> Frame:
        """``steer_get`` → ``steer_state`` (``request``: where a request stands). The asker's
        ``steer_get`` of an ended request also acknowledges its end."""
        return await self._request(
            {"type": "steer_get", "id": request_id, "request_key": request_key},
            build_matcher(_is_type("steer_state")), timeout)

    async def steer_ack(self, request_id: str, timeout: float | None = None) -> Frame:
        """``steer_ack`` → ``steer_acked``: we have the end of our request (idempotent)."""
        return await self._request({"type": "steer_ack", "id": request_id},
                                   build_matcher(_is_type("steer_acked")), timeout)

    async def ask_and_wait(self, question: str, *, request_key: str, **options: Any) -> Frame:
        """Ask (or find again, by ``request_key``) and wait with no time limit for the end.

        Returns a frame with ``id``, ``state`` (answered, timed_out or cancelled), ``answer``,
        ``answered_by`` and ``default_used``. Safe to call again after a lost connection with
        the same key: the hub finds the request and hands over an answer that came meanwhile.
        The end is acknowledged to the hub once we have it (until then the hub keeps sending
        it: a reply that came while nobody listened is not lost).
        """
        queue = self.subscribe()
        try:
            opened = await self.steer_ask(question, request_key=request_key, **options)
            request_id = opened["id"]
            if opened.get("state", "open") != "open":  # it ended while we were away
                state = await self.steer_get(request_id)  # (which acks it)
                return dict(state["request"], type="steer_reply")
            reply = await self._first(
                queue, lambda f: f.get("type") == "steer_reply" and f.get("id") == request_id)
        finally:
            self.unsubscribe(queue)
        # Best effort: if the ack is lost, the request stays unacknowledged: the hub sends the
        # end again on our next join, and an ask with the same key finds this request again.
        with contextlib.suppress(HubError):
            await self.steer_ack(request_id)
        return reply

    async def steer_answer(self, request_id: str, answer: str,
                           timeout: float | None = None) -> Frame:
        """``steer_answer`` → ``steer_answered``."""
        return await self._request({"type": "steer_answer", "id": request_id, "answer": answer},
                                   build_matcher(_is_type("steer_answered")), timeout)

    async def session_prompt(self, session: str, text: str,
                             timeout: float | None = None) -> Frame:
        """``session_prompt`` → ``session_prompted`` (``queued``: it waits for the turn)."""
        return await self._request({"type": "session_prompt", "id": session, "text": text},
                                   build_matcher(_is_type("session_prompted")), timeout)

    async def session_stop(self, session: str, timeout: float | None = None) -> Frame:
        """``session_stop`` → ``session_stopping``: the run is stopped (an issue's: parked)."""
        return await self._request({"type": "session_stop", "id": session},
                                   build_matcher(_is_type("session_stopping")), timeout)

    async def session_cancel(self, session: str, timeout: float | None = None) -> Frame:
        """``session_cancel`` → ``session_cancelling``: the turn under way is cancelled."""
        return await self._request({"type": "session_cancel", "id": session},
                                   build_matcher(_is_type("session_cancelling")), timeout)

    async def steer_cancel(self, request_id: str, timeout: float | None = None) -> Frame:
        return await self._request({"type": "steer_cancel", "id": request_id},
                                   build_matcher(_is_type("steer_cancelled")), timeout)

    async def steer_list(self, ended: bool = False, timeout: float | None = None) -> Frame:
        """``steer_list`` → ``steer_requests`` (open ones, the longest-waiting first)."""
        return await self._request({"type": "steer_list", "ended": ended},
                                   build_matcher(_is_type("steer_requests")), timeout)

    # ----------------------------------------------------------------- the scheduler

    async def wake(self, agent: str, reason: str = "", timeout: float | None = None) -> Frame:
        """``wake`` → ``wake_result``: run a configured agent now (or right after its run)."""
        return await self._request({"type": "wake", "agent": agent, "reason": reason},
                                   build_matcher(_is_type("wake_result")), timeout)

    async def task_add(self, agent: str, title: str, body: str = "",
                       timeout: float | None = None) -> Frame:
        """``task_add`` → ``task_added``: a task file in the agent's queue."""
        return await self._request(
            {"type": "task_add", "agent": agent, "title": title, "body": body},
            build_matcher(_is_type("task_added")), timeout)

    async def task_list(self, agent: str = "", timeout: float | None = None) -> Frame:
        """``task_list`` → ``tasks``: queued and delegated tasks, of one agent or all."""
        return await self._request({"type": "task_list", "agent": agent},
                                   build_matcher(_is_type("tasks")), timeout)

    async def sessions(self, limit: int = 20, timeout: float | None = None) -> Frame:
        """``sessions_request`` → ``sessions``: recent runs, the agents' schedules, config."""
        return await self._request({"type": "sessions_request", "limit": limit},
                                   build_matcher(_is_type("sessions")), timeout)

    # ----------------------------------------------------------------- the helper services

    async def services_list(self, timeout: float | None = None) -> Frame:
        """``services_list`` → ``services``: each helper service's state, and the graph."""
        return await self._request({"type": "services_list"},
                                   build_matcher(_is_type("services")), timeout)

    async def service_start(self, name: str, timeout: float | None = None) -> Frame:
        """``service_start`` → ``service_starting``."""
        return await self._request({"type": "service_start", "name": name},
                                   build_matcher(_is_type("service_starting")), timeout)

    async def service_stop(self, name: str, timeout: float | None = None) -> Frame:
        """``service_stop`` → ``service_stopping``."""
        return await self._request({"type": "service_stop", "name": name},
                                   build_matcher(_is_type("service_stopping")), timeout)

    async def service_restart(self, name: str, timeout: float | None = None) -> Frame:
        """``service_restart`` → ``service_restarting``."""
        return await self._request({"type": "service_restart", "name": name},
                                   build_matcher(_is_type("service_restarting")), timeout)

    # ----------------------------------------------------------------- the issue orchestrator

    async def issue_done(self, title: str, summary: str, issue: str = "", session: str = "",
                         timeout: float | None = None) -> Frame:
        """``issue_done`` → ``issue_done_ok``: the orchestrator's mark_done for ``issue`` (else
        the run of ``session``, else the sender's own run)."""
        fields: Frame = {"type": "issue_done", "title": title, "summary": summary}
        if issue:
            fields["issue"] = issue
        if session:
            fields["session"] = session
        return await self._request(fields, build_matcher(_is_type("issue_done_ok")), timeout)

    async def claim_paths(self, session: str, paths: Sequence[str],
                          timeout: float | None = None) -> Frame:
        """``claim_paths`` → ``claim_paths_granted``: grow the lease of our ACP run
        ``session`` by ``paths``, or Refused(claim_paths_denied) naming who holds them."""
        fields: Frame = {"type": "claim_paths", "session": session, "paths": list(paths)}
        match = build_matcher(_is_type("claim_paths_granted"), ["claim_paths_denied"])
        return await self._request(fields, match, timeout)

    async def issue_list(self, timeout: float | None = None) -> Frame:
        """``issue_list`` → ``issues``: the tracked issues and the workflow's status."""
        return await self._request({"type": "issue_list"}, build_matcher(_is_type("issues")),
                                   timeout)

    async def issue_cancel(self, identifier: str = "", request: str = "",
                           timeout: float | None = None) -> Frame:
        """``issue_cancel`` → ``issue_cancelling`` (operators only): stop the issue's run and
        park it until it is retried. Name the issue, or ``request``: an open question of one
        of its runs, which is cancelled with it."""
        fields: Frame = {"type": "issue_cancel"}
        if identifier:
            fields["identifier"] = identifier
        if request:
            fields["request"] = request
        return await self._request(fields, build_matcher(_is_type("issue_cancelling")), timeout)

    async def issue_remove_workspace(self, identifier: str,
                                     timeout: float | None = None) -> Frame:
        """``issue_remove_workspace`` → ``workspace_removing`` (operators only)."""
        return await self._request({"type": "issue_remove_workspace", "identifier": identifier},
                                   build_matcher(_is_type("workspace_removing")), timeout)

    async def review_diff(self, identifier: str, against: str = "base",
                          timeout: float | None = None) -> Frame:
        """``review_diff`` → ``review_diff``: the issue's worktree as a diff against its base
        (or the last review), with its +N/-M."""
        return await self._request({"type": "review_diff", "identifier": identifier,
                                    "against": against},
                                   build_matcher(_is_type("review_diff")), timeout)

    async def review_accept(self, identifier: str, timeout: float | None = None) -> Frame:
        """``review_accept`` → ``review_accepted`` (operators only): merge the issue's
        branch into its base; the issue moves to Done."""
        return await self._request({"type": "review_accept", "identifier": identifier},
                                   build_matcher(_is_type("review_accepted")), timeout)

    async def review_request_changes(self, identifier: str, text: str,
                                     refs: list[dict[str, Any]] | None = None,
                                     timeout: float | None = None) -> Frame:
        """``review_request_changes`` → ``review_requested`` (operators only): the text
        (and file:line refs) becomes the agent's next prompt."""
        return await self._request({"type": "review_request_changes",
                                    "identifier": identifier, "text": text,
                                    "refs": list(refs or [])},
                                   build_matcher(_is_type("review_requested")), timeout)

    async def review_discard(self, identifier: str, confirm: bool = False,
                             timeout: float | None = None) -> Frame:
        """``review_discard`` → ``review_discarded`` (operators only): remove the issue's
        worktree and branch; unmerged work is refused (``unmerged_work``) unless
        ``confirm``."""
        return await self._request({"type": "review_discard", "identifier": identifier,
                                    "confirm": confirm},
                                   build_matcher(_is_type("review_discarded")), timeout)

    # ----------------------------------------------------------------- claims

    def _owned(self, kind: str, task_id: str, owner_key: str = "owner") -> Callable[[Frame], bool]:
        """Success predicate for a claim-family broadcast caused by us."""
        return lambda f: (
            f.get("type") == kind and f.get("task_id") == task_id and f.get(owner_key) == self.name
        )

    async def claim(
        self,
        task_id: str,
        paths: Sequence[str] = (),
        worktree: str = "",
        ttl_seconds: float | None = None,
        note: str = "",
        idem_key: str | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Lease ``task_id`` over a scope; ``claim_granted`` or Refused(claim_denied)."""
        fields: Frame = {
            "type": "claim", "task_id": task_id, "paths": list(paths),
            "worktree": worktree, "note": note,
        }
        _put_optional(fields, ttl_seconds=ttl_seconds, idem_key=idem_key)
        match = build_matcher(self._owned("claim_granted", task_id), ["claim_denied"], task_id)
        return await self._request(fields, match, timeout)

    async def release(
        self, task_id: str, epoch: int | None = None, idem_key: str | None = None,
        timeout: float | None = None, **receipt: Any,
    ) -> Frame:
        """Drop our lease; ``release_granted`` or Refused(release_denied).

        ``receipt`` carries closeout evidence the hub puts in the release receipt:
        ``evidence``, ``artifacts``, ``known_failures``, ``changed_files``,
        ``generated_artifacts``, ``approvals`` (lists of strings) and ``confidence``.
        """
        fields: Frame = {"type": "release", "task_id": task_id, **receipt}
        _put_optional(fields, epoch=epoch, idem_key=idem_key)
        match = build_matcher(self._owned("release_granted", task_id), ["release_denied"], task_id)
        return await self._request(fields, match, timeout)

    async def force_release(
        self, task_id: str, keep_checkpoint: bool = False, timeout: float | None = None,
    ) -> Frame:
        """End anyone's lease (an operator's right); ``release_granted`` or Refused.

        ``keep_checkpoint`` leaves its checkpoint for the next claimant, as expiry does.
        """
        fields: Frame = {"type": "release", "task_id": task_id}
        if keep_checkpoint:
            fields["keep_checkpoint"] = True

        def ours(frame: Frame) -> bool:
            return (frame.get("type") == "release_granted" and frame.get("task_id") == task_id
                    and self.name in (frame.get("owner"), frame.get("released_by")))

        return await self._request(fields, build_matcher(ours, ["release_denied"], task_id),
                                   timeout)

    async def handoff(
        self, task_id: str, to_agent: str, note: str = "", epoch: int | None = None,
        idem_key: str | None = None, timeout: float | None = None,
    ) -> Frame:
        """Move our lease to an online agent; ``handoff_granted`` or Refused."""
        fields: Frame = {"type": "handoff", "task_id": task_id, "to_agent": to_agent, "note": note}
        _put_optional(fields, epoch=epoch, idem_key=idem_key)
        match = build_matcher(
            self._owned("handoff_granted", task_id, "previous_owner"), ["handoff_denied"], task_id
        )
        return await self._request(fields, match, timeout)

    async def task_update(
        self, task_id: str, status: str, note: str = "", data_ref: str | None = None,
        epoch: int | None = None, expected_version: int | None = None,
        idem_key: str | None = None, timeout: float | None = None,
    ) -> Frame:
        """Move our claim through its lifecycle; ``task_updated`` or Refused(error)."""
        fields: Frame = {"type": "task_update", "task_id": task_id, "status": status, "note": note}
        _put_optional(fields, data_ref=data_ref, epoch=epoch,
                      expected_version=expected_version, idem_key=idem_key)
        match = build_matcher(self._owned("task_updated", task_id), (), task_id)
        return await self._request(fields, match, timeout)

    async def checkpoint(
        self, task_id: str, text: str, epoch: int | None = None,
        idem_key: str | None = None, timeout: float | None = None,
    ) -> Frame:
        """Save an opaque resume point on our claim; ``checkpoint_saved`` (private)."""
        fields: Frame = {"type": "checkpoint", "task_id": task_id, "checkpoint": text}
        _put_optional(fields, epoch=epoch, idem_key=idem_key)

        def saved(frame: Frame) -> bool:
            return frame.get("type") == "checkpoint_saved" and frame.get("task_id") == task_id

        match = build_matcher(saved, ["checkpoint_denied"], task_id)
        return await self._request(fields, match, timeout)

    async def wait(self, task_id: str, timeout: float | None = None) -> Frame:
        """Record that we wait for ``task_id``; Refused(wait_denied) if it would deadlock."""

        def granted(frame: Frame) -> bool:
            return frame.get("type") == "wait_granted" and frame.get("task_id") == task_id

        match = build_matcher(granted, ["wait_denied"], task_id)
        return await self._request({"type": "wait_request", "task_id": task_id}, match, timeout)

    # ----------------------------------------------------------------- chat

    async def send(self, text: str, target: str = "all", timeout: float | None = None) -> Frame:
        """Post a chat message; returns the hub's stamped copy (with ``msg_id``).

        A unique ``client_msg_id`` makes our own echo unambiguous among other
        agents' chat and lets the hub deduplicate a retry.
        """
        client_msg_id = f"marrow-{uuid.uuid4().hex}"

        def echo(frame: Frame) -> bool:
            return (frame.get("type") == "chat" and frame.get("sender") == self.name
                    and frame.get("client_msg_id") == client_msg_id)

        fields: Frame = {"type": "chat", "target": target, "payload": text,
                         "client_msg_id": client_msg_id}
        return await self._request(fields, build_matcher(echo), timeout)

    # ----------------------------------------------------------------- blackboard

    async def declare(
        self,
        task_id: str,
        title: str,
        description: str = "",
        depends_on: Sequence[str] = (),
        suggested_owner: str = "",
        project: str = "",
        expected_version: int | None = None,
        idem_key: str | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Upsert a blackboard task; ``ledger_task_posted`` or Refused(error), e.g. a cycle."""
        fields: Frame = {
            "type": "ledger_task", "task_id": task_id, "title": title,
            "description": description, "depends_on": list(depends_on),
            "suggested_owner": suggested_owner, "project": project,
        }
        _put_optional(fields, expected_version=expected_version, idem_key=idem_key)

        match = build_matcher(declaration_reply(task_id, title, depends_on, suggested_owner))
        return await self._request(fields, match, timeout)

    async def board_update(
        self,
        task_id: str,
        status: str | None = None,
        suggested_owner: str | None = None,
        expected_version: int | None = None,
        project: str | None = None,
        idem_key: str | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Change a blackboard task's status/owner; ``ledger_task_updated`` or Refused."""
        fields: Frame = {"type": "ledger_task_update", "task_id": task_id}
        _put_optional(fields, status=status, suggested_owner=suggested_owner,
                      expected_version=expected_version, project=project, idem_key=idem_key)

        wanted = {"status": status, "suggested_owner": suggested_owner, "project": project}
        match = build_matcher(board_update_reply(task_id, wanted, expected_version))
        return await self._request(fields, match, timeout)

    async def progress(
        self, task_id: str, text: str, kind: str = "note",
        idem_key: str | None = None, timeout: float | None = None,
    ) -> Frame:
        """Append a progress note; ``ledger_progress_posted`` or Refused(error)."""
        fields: Frame = {"type": "ledger_progress", "task_id": task_id, "kind": kind, "text": text}
        _put_optional(fields, idem_key=idem_key)

        def posted(frame: Frame) -> bool:
            note = frame.get("note")
            if frame.get("type") != "ledger_progress_posted" or not isinstance(note, dict):
                return False
            got = str(note.get("text", ""))
            return (note.get("task_id") == task_id and note.get("author") == self.name
                    and note.get("kind", kind) == kind and _same_text(text, got))

        return await self._request(fields, build_matcher(posted), timeout)


# --------------------------------------------------------------------------- helpers


def _settle(future: asyncio.Future[Any]) -> None:
    """Leave no reply future behind unresolved or with an unread exception.

    The reader may fail a future while the request is already unwinding for
    another reason (the send itself failed); asyncio would then log "Future
    exception was never retrieved" with a traceback on stderr.
    """
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _decode(raw: str | bytes) -> Frame | None:
    """Parse one frame; anything that is not a JSON object is ignored."""
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return frame if isinstance(frame, dict) else None


def _os_reason(exc: OSError) -> str:
    """A short, lower-case cause for a failed TCP connect."""
    if isinstance(exc, ConnectionRefusedError) or "connect call failed" in str(exc).lower():
        return "connection refused (is the hub running?)"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the server"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _put_optional(fields: Frame, **values: Any) -> None:
    """Add only the fields the caller set: an absent field and a null differ on the wire."""
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number")
        fields[key] = value


def _clean(value: Any) -> str:
    return str(value if value is not None else "").strip()


def declaration_reply(
    task_id: str, title: str, depends_on: Sequence[str], suggested_owner: str
) -> Callable[[Frame], bool]:
    """Recognise the broadcast of *our* declaration among other agents' board traffic.

    ``ledger_task_posted`` names no author, and another agent's earlier
    declaration of the same task can reach us after we sent ours, so the
    content must match too (compared the way hubs normalise it: trimmed,
    self-dependency and repeats dropped).
    """
    deps = {_clean(d) for d in depends_on} - {"", task_id}

    def match(frame: Frame) -> bool:
        task = frame.get("task")
        if frame.get("type") != "ledger_task_posted" or not isinstance(task, dict):
            return False
        return (
            task.get("task_id") == task_id
            and _clean(task.get("title")) == title.strip()
            and {_clean(d) for d in task.get("depends_on") or []} == deps
            and (not suggested_owner.strip()
                 or _clean(task.get("suggested_owner")) == suggested_owner.strip())
        )

    return match


def board_update_reply(
    task_id: str, wanted: dict[str, str | None], expected_version: int | None
) -> Callable[[Frame], bool]:
    """Recognise the broadcast of *our* board update (see :func:`declaration_reply` for why).

    Every non-empty field we set must show our value (hubs differ on whether
    an empty one clears or is ignored), and a compare-and-set that succeeded
    bumps the version by exactly one.
    """

    def match(frame: Frame) -> bool:
        task = frame.get("task")
        if frame.get("type") != "ledger_task_updated" or not isinstance(task, dict):
            return False
        if task.get("task_id") != task_id:
            return False
        if expected_version is not None and task.get("version") != expected_version + 1:
            return False
        return all(not _clean(value) or _clean(task.get(key)) == _clean(value)
                   for key, value in wanted.items())

    return match


def _same_text(sent: str, got: str) -> bool:
    """A hub may trim or cap note text; a prefix match in either direction is ours."""
    sent, got = sent.strip(), got.strip()
    return sent == got or (bool(got) and (sent.startswith(got) or got.startswith(sent)))


def run_request(
    uri: str,
    name: str,
    call: Callable[[HubClient], Awaitable[T]],
    *,
    token: str | None = None,
    roles: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ssl: ssl_module.SSLContext | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    operator_token: str | None = None,
    agent_key: str | None = None,
) -> T:
    """Connect, run ``call(client)``, disconnect: one request for a one-shot CLI.

    Example: ``run_request(uri, "cli/me", lambda hub: hub.claim("T1", ["src"]))``.
    """

    async def main() -> T:
        client = HubClient(
            uri, name, token=token, roles=roles, open_timeout=timeout,
            request_timeout=timeout, ssl=ssl, max_size=max_size, heartbeat_interval=None,
            operator_token=operator_token, agent_key=agent_key,
        )
        async with client:
            return await call(client)

    return asyncio.run(main())
