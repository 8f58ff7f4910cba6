"""The WebSocket side of the hub: connections, names, auth, limits and fan-out.

One connection is one agent name for life, bound by its first frame, and so are its rights:
the first frame may carry the operator token (an operator for every frame it sends) and an
agent key (proof that it is the agent it names, to take its name back); see `_refusal`. Frames from one connection
are handled in order; what they change is decided by `Decider` and made durable by the runtime,
which then hands the frames back here to send. A frame is serialised once and queued on every socket that gets it, without a task per socket;
the frames released by one group commit then leave in one write per socket. A socket whose
outbound buffer grows past `MAX_OUTBOUND_BYTES` (a peer that stopped reading) is dropped rather
than allowed to eat memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Origin

from ..core.events import Event
from ..core.text import identifier_problem, printable
from ..protocol.frames import Outcome, encode
from ..runtime import Runtime
from . import secrets
from .defaults import DEFAULT_HOST, DEFAULT_PORT
from .feed import FEED_VERBS, FeedHub
from .secrets import is_text, same_secret

log = logging.getLogger("marrow.hub")

MAX_FRAME_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
REGISTRATION_TIMEOUT = 10.0
MAX_OUTBOUND_BYTES = 8 * 1024 * 1024
PING_INTERVAL = 15.0
#: names no connection may take: the hub's own, the broadcast words, and "operator", the
#: console's role (a role never stands for an agent, so a client by that name would take
#: what is addressed to "operator" away from the console)
RESERVED_NAMES = frozenset({"synapsehub", "system", "hub", "all", "self", "operator"})

CLOSE_NAME = 4009
CLOSE_AUTH = 4010
CLOSE_REGISTRATION_TIMEOUT = 4012
CLOSE_NAME_OWNED = 4016
#: registration fields that carry secrets: checked once, then dropped from every frame
SECRET_FIELDS = ("token", "operator_token", "agent_key")
CLOSE_OVERLOADED = 1013


class ConfigError(Exception):
    """Hub settings that cannot work together (said before anything starts)."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class HubOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: per-agent frames per second (0 = off) and burst; None = decide from the bind address
    rate: float | None = None
    burst: int = 20
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: browser origins allowed to connect; handshakes from any other web page are refused
    allow_origins: tuple[str, ...] = ()
    registration_timeout: float = REGISTRATION_TIMEOUT
    #: the secret that makes a connection an operator; None = the one in the state dir
    #: (made on first start, see hub/secrets.py)
    operator_token: str | None = None

    def effective_rate(self) -> float:
        if self.rate is not None:
            return self.rate
        return 0.0 if is_loopback(self.host) and not self.token else 100.0

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: anyone who can reach it "
                "could take and release leases. Set --token or MARROW_TOKEN, or bind 127.0.0.1"
            )
        if self.token is not None and not is_text(self.token):
            raise ConfigError("the hub token (--token or MARROW_TOKEN) is not valid UTF-8 "
                              "text; no client could send it")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether no more than `limit` objects and arrays are nested inside one another."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def name_problem(name: str) -> str | None:
    """What makes `name` unfit to be an agent's name, as a phrase, or None.

    Names are printed in logs, tables and the console, so they are identifiers
    (`identifier_problem`: no control character, bidi control or unpaired surrogate); and, as
    before, no other invisible character (a no-break or zero-width space, a private-use or
    unassigned code point), which would make two names look the same.
    """
    problem = identifier_problem(name)
    if problem is not None:
        return problem
    hidden = next((c for c in name if not c.isprintable()), None)
    return None if hidden is None else f"a non-printable character (U+{ord(hidden):04X})"


def parse_frame(text: str | bytes) -> dict[str, Any] | str:
    """A frame as a dict, or the sentence to answer a malformed one with."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return "Malformed JSON."
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "Malformed JSON."
    # Nesting deeper than the limit needs more brackets than the limit, so most frames skip
    # the walk.
    if (
        text.count("{") + text.count("[") > MAX_JSON_DEPTH
        and isinstance(value, (dict, list))
        and not _depth_ok(value, MAX_JSON_DEPTH)
    ):
        return f"Malformed frame: nested deeper than {MAX_JSON_DEPTH} levels."
    if not isinstance(value, dict):
        return "Malformed frame: expected a JSON object."
    for name in ("sender", "target", "type", "channel"):
        if name in value and value[name] is not None and not isinstance(value[name], str):
            return f"Malformed frame: '{name}' must be a string."
    return value


class HubServer:
    """Serves the runtime's decider over WebSockets; the runtime's `Transport`."""

    def __init__(self, runtime: Runtime, options: HubOptions) -> None:
        options.check()
        self.runtime = runtime
        self.options = options
        self._state_dir = runtime.options.state_dir
        try:
            self._operator_token = options.operator_token or secrets.operator_token(
                self._state_dir)
            secrets.agent_key(self._state_dir, "")  # make the agent secret now, not mid-run
        except secrets.SecretError as exc:
            raise ConfigError(str(exc)) from None
        self.sessions: dict[str, ServerConnection] = {}
        self.connected = 0
        self._server: Server | None = None
        self._rate = options.effective_rate()
        self._batching = False
        #: frames waiting for the end of a batch, per socket (insertion-ordered)
        self._queued: dict[ServerConnection, list[bytes]] = {}
        self._overloaded: set[ServerConnection] = set()
        #: the connections that read the change feed (`feed_request`, hub/feed.py)
        self.feeds = FeedHub(runtime, lambda conn, text: self._write((conn,), text))
        runtime.transport = self

    @property
    def uri(self) -> str:
        scheme = "wss" if self.options.tls_cert else "ws"
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sock = next(iter(self._server.sockets))
        host, port = sock.getsockname()[:2]
        return host, port

    async def start(self) -> None:
        context = None
        if self.options.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(self.options.tls_cert, self.options.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load TLS certificate or key: {exc}") from None
        try:
            self._server = await serve(
                self._connection,
                self.options.host,
                self.options.port,
                ssl=context,
                compression=None,
                max_size=self.options.max_frame_bytes,
                max_queue=64,
                # Native clients send no Origin; a web page always does. Refusing unknown
                # origins keeps a page in a local browser from driving an open loopback hub.
                origins=[None, *(Origin(o) for o in self.options.allow_origins)],
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_INTERVAL,
                server_header=None,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.options.host}:{self.options.port}: {exc.strerror or exc}"
            ) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    # ---- transport ---------------------------------------------------------------------

    def begin(self) -> None:
        """Hold socket writes until `flush`: a commit group's frames go out in one write each."""
        self._batching = True

    def flush(self) -> None:
        self._batching = False
        for conn in list(self._queued):
            self._push(conn)

    def _write(self, conns: Iterable[ServerConnection], text: str) -> None:
        # Compression is off and a server never masks, so a text frame's bytes are the same for
        # every socket: build them once, not once per recipient.
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        for conn in conns:
            if conn.protocol.state is not State.OPEN or conn in self._overloaded:
                continue
            self._queued.setdefault(conn, []).append(frame)
            if not self._batching:
                self._push(conn)

    def _push(self, conn: ServerConnection) -> None:
        """Write everything queued on `conn` in one transport write (one syscall, not one a frame).

        websockets' own `send_data` writes each queued frame separately, and asyncio sends each
        write at once, so a batch of N frames would cost N system calls per socket.
        """
        transport = conn.transport
        chunks = conn.protocol.data_to_send()  # control frames the protocol queued itself
        data = [chunk for chunk in chunks if chunk]
        data.extend(self._queued.pop(conn, ()))
        try:
            if data:
                transport.write(data[0] if len(data) == 1 else b"".join(data))
            if len(data) < len(chunks) and transport.can_write_eof():
                transport.write_eof()  # the protocol asked to half-close (closing handshake)
        except (OSError, RuntimeError):
            return
        if (
            transport is not None
            and transport.get_write_buffer_size()
            > MAX_OUTBOUND_BYTES + getattr(conn, "marrow_feed_allowance", 0)
            and conn not in self._overloaded
        ):
            # A peer that stopped reading: close it (websockets aborts the socket if the close
            # handshake cannot finish) instead of buffering for it without bound.
            log.warning("closing %s: it is not reading its frames", self._name(conn))
            self._overloaded.add(conn)
            task = asyncio.ensure_future(conn.close(CLOSE_OVERLOADED, "outbound delivery timeout"))
            task.add_done_callback(lambda _: self._overloaded.discard(conn))

    def send_all(self, text: str) -> None:
        # A connection that reads the change feed learns every change from it, as the
        # console's in-process session does: the broadcasts would say it twice.
        feeds = self.feeds.feeds
        self._write((c for c in self.sessions.values() if c not in feeds) if feeds
                    else self.sessions.values(), text)

    def send_to(self, names: frozenset[str], text: str) -> None:
        self._write((c for n in names if (c := self.sessions.get(n)) is not None), text)

    @staticmethod
    def _name(conn: ServerConnection) -> str:
        return getattr(conn, "marrow_name", None) or str(conn.remote_address)

    # ---- one connection ------------------------------------------------------------------

    async def _connection(self, conn: ServerConnection) -> None:
        decider = self.runtime.decider
        assert decider is not None
        self.connected += 1
        name: str | None = None
        try:
            if not self.options.token:
                await conn.send(decider.welcome(self.connected))
            name = await self._register(conn)
            if name is None:
                return
            await self._serve(conn, name)
        except ConnectionClosed:
            pass
        finally:
            self.connected -= 1
            self.feeds.close(conn)
            if name is not None and self.sessions.get(name) is conn:
                del self.sessions[name]
                self.runtime.submit(decider.left(name))

    def _reply_to(self, conn: ServerConnection) -> Callable[[str], None]:
        def reply(text: str) -> None:
            self._write((conn,), text)

        return reply

    async def _register(self, conn: ServerConnection) -> str | None:
        decider = self.runtime.decider
        assert decider is not None
        reply = self._reply_to(conn)
        # One deadline from the connect, not one per frame: a socket that keeps sending junk
        # before it registers is closed as surely as a silent one.
        deadline = asyncio.get_running_loop().time() + self.options.registration_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await conn.recv()
            except TimeoutError:
                reason = "auth timeout" if self.options.token else "registration timeout"
                await conn.close(CLOSE_REGISTRATION_TIMEOUT, reason)
                return None
            frame = parse_frame(raw)
            if isinstance(frame, str):
                reply(decider.error("all", frame).text)
                continue
            break
        sender = (frame.get("sender") or "").strip() or f"anon-{id(conn):x}"
        refusal = self._refusal(sender, frame)
        if refusal is not None:
            kind, text, code, reason = refusal
            await conn.send(encode(decider.frame(kind, sender, text)))
            await conn.close(code, reason)
            return None
        operator = frame.get("operator_token") is not None  # _refusal checked it: valid
        proven = frame.get("agent_key") is not None  # and this one: the name's key, or its parent's
        if proven and sender not in self.runtime.state.presence.keyed:
            # proven once (a run we started): from now on the name needs its proof
            keyed = Event("name_keyed", {"name": sender})
            self.runtime.state.apply(keyed)
            self.runtime.submit(Outcome(events=[keyed]))
        holder = self.sessions.get(sender)
        if holder is not None:
            log.info("%s taken over by a new connection", sender)
            del self.sessions[sender]
            await holder.close(CLOSE_AUTH, "superseded")
        roles = frame.get("roles")
        roles = tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()
        conn.marrow_name = sender  # type: ignore[attr-defined]
        conn.marrow_operator = operator  # type: ignore[attr-defined]
        conn.marrow_proven = proven  # type: ignore[attr-defined]
        self.sessions[sender] = conn
        if self.options.token:
            await conn.send(decider.welcome(self.connected))
        self.runtime.submit(decider.joined(sender, roles, operator=operator))
        for name in SECRET_FIELDS:
            frame.pop(name, None)
        kind = frame.get("type") or "chat"
        if kind in FEED_VERBS:
            self._feed_request(conn, sender, frame, operator)
        elif kind != "heartbeat":
            self.runtime.handle(sender, frame, reply, operator=operator, proven=proven)
        return sender

    def _feed_request(self, conn: ServerConnection, name: str, frame: dict[str, Any],
                      operator: bool) -> None:
        """Start `conn`'s change feed or send it the past (hub/feed.py), or say in one
        sentence why not."""
        ask = self.feeds.request if frame.get("type") == "feed_request" else self.feeds.history
        refusal = ask(conn, name, frame, operator)
        if refusal is not None:
            decider = self.runtime.decider
            assert decider is not None
            code = "forbidden" if not operator else "MALFORMED"
            self._write((conn,), decider.error(name, refusal, error_code=code).text)

    def _refusal(self, sender: str, frame: dict[str, Any]) -> tuple[str, str, int, str] | None:
        """Why a registration frame may not bind `sender`: (frame type, text, close code, reason).

        The rights model (docs/protocol.md §2.7): the hub token lets a connection in; the
        operator token makes it an operator; an agent key proves it is the agent it names.
        A name online elsewhere is taken over (`takeover: true`) only with proof or by an
        operator, and so is an offline name that still holds leases or steering requests.
        """
        denied = "auth_denied", CLOSE_AUTH, "auth denied"
        if self.options.token:
            given = frame.get("token")
            if not isinstance(given, str) or not given:
                return "auth_denied", "Authentication token required.", CLOSE_AUTH, "auth denied"
            if not is_text(given):
                return ("auth_denied", "Invalid authentication token: it is not valid UTF-8 "
                        "text.", CLOSE_AUTH, "auth denied")
            if not same_secret(given, self.options.token):
                return "auth_denied", "Invalid authentication token.", CLOSE_AUTH, "auth denied"
        problem = name_problem(sender)
        if problem is not None:
            return ("name_conflict", f"Name '{printable(sender)}' holds {problem}; an agent "
                    "name must be one line of visible text, without control characters, line "
                    "breaks, bidi controls or unpaired surrogates.", CLOSE_NAME, "invalid name")
        if sender.lower() in RESERVED_NAMES or "@" in sender:
            return ("name_conflict", f"Name '{sender}' is reserved.", CLOSE_NAME,
                    "reserved identity")
        roles = frame.get("roles")
        for role in roles if isinstance(roles, list) else ():
            if not isinstance(role, str):
                continue
            problem = name_problem(role)
            if problem is not None:
                return ("name_conflict", f"Role '{printable(role)}' of '{sender}' holds "
                        f"{problem}; a role must be one line of visible text.", CLOSE_NAME,
                        "invalid role")
            if (role != sender and not role.startswith(sender + "/")
                    and self.runtime.state.presence.taken(role)):
                return ("name_conflict", f"Role '{role}' of '{sender}' is the name of an agent "
                        "(or under one); a role cannot stand in for an agent (choose another "
                        "role).",
                        CLOSE_NAME, "invalid role")
        operator = False
        if frame.get("operator_token") is not None:
            given = frame["operator_token"]
            if isinstance(given, str) and given and not is_text(given):
                return (denied[0], "Invalid operator token: it is not valid UTF-8 text.",
                        *denied[1:])
            if not same_secret(given, self._operator_token):
                return denied[0], "Invalid operator token.", *denied[1:]
            operator = True
        proven = False
        if frame.get("agent_key") is not None:
            if not self._proves(frame["agent_key"], sender):
                return denied[0], f"Invalid agent key for '{sender}'.", *denied[1:]
            proven = True
        if sender in self.runtime.local:
            return ("name_conflict",
                    f"Name '{sender}' is already online from another session. "
                    "Use a unique --name.", CLOSE_NAME, "name conflict")
        if sender in self.sessions:
            if frame.get("takeover") is not True:
                return ("name_conflict",
                        f"Name '{sender}' is already online from another session. "
                        "Use a unique --name.", CLOSE_NAME, "name conflict")
            if not (operator or proven):
                return ("name_conflict",
                        f"Name '{sender}' is already online from another session; taking it "
                        "over needs its agent key (agent_key, $MARROW_AGENT_KEY) or the "
                        "operator token.", CLOSE_NAME, "name conflict")
        elif not (operator or proven) and self._holds_something(sender):
            return ("name_conflict",
                    f"Name '{sender}' belongs to an offline agent that still holds leases or "
                    "steering requests; only that agent (with its agent key, "
                    "$MARROW_AGENT_KEY) or an operator may take it back.",
                    CLOSE_NAME_OWNED, "name owned")
        elif not (operator or proven) and self.runtime.state.presence.keyed_over(sender):
            return ("name_conflict",
                    f"Name '{sender}' belongs to an agent marrow-tui started; only that agent "
                    "(with its agent key, $MARROW_AGENT_KEY) or an operator may use it.",
                    CLOSE_NAME_OWNED, "name owned")
        return None

    def _proves(self, given: object, name: str) -> bool:
        """Whether `given` is the key of `name` or of a name it is under (`a/b` for `a/b/mcp`:
        the MCP server a run starts joins as `<agent>/mcp` with its agent's key)."""
        parts = name.split("/")
        return any(same_secret(given, secrets.agent_key(self._state_dir, "/".join(parts[:n])))
                   for n in range(len(parts), 0, -1))

    def _holds_something(self, name: str) -> bool:
        """Whether an offline `name` still owns something another connection could act on:
        live leases, or steering requests open or with an end it has not read."""
        state = self.runtime.state
        if state.claims.by_owner.get(name):
            return True
        steering = state.steering
        return any(r.asker == name for r in steering.open.values()) or bool(
            steering.undelivered(name))

    async def _serve(self, conn: ServerConnection, name: str) -> None:
        decider = self.runtime.decider
        assert decider is not None
        reply = self._reply_to(conn)
        operator = bool(getattr(conn, "marrow_operator", False))
        proven = bool(getattr(conn, "marrow_proven", False))
        bucket = _Bucket(self._rate, self.options.burst, self.options.burst) if self._rate else None
        async for raw in conn:
            frame = parse_frame(raw)
            if isinstance(frame, str):
                reply(decider.error(name, frame).text)
                continue
            sender = frame.get("sender")
            if sender and sender.strip() != name:
                await conn.send(encode(decider.frame(
                    "name_conflict", name,
                    f"Sender name switch denied: '{name}' -> '{printable(sender)}'. "
                    "One connection is one name.")))
                await conn.close(CLOSE_NAME, "name switch")
                return
            kind = frame.get("type") or "chat"
            if bucket is not None and kind != "heartbeat" and not bucket.take():
                reply(decider.error(name, "Rate limit exceeded.", error_code="RATE_LIMITED").text)
                continue
            for field_name in SECRET_FIELDS:
                frame.pop(field_name, None)
            if kind in FEED_VERBS:
                self._feed_request(conn, name, frame, operator)
                continue
            self.runtime.handle(name, frame, reply, operator=operator, proven=proven)
            if self.runtime.failed.is_set():
                await conn.close(1011, "event log failed")
                return
