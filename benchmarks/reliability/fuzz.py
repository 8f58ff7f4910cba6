"""Fuzz run: N malformed or hostile frames at a real ``marrow-tui --no-ui`` hub, over real sockets.

    .venv/bin/python benchmarks/reliability/fuzz.py            # 10,000 frames, about 1-2 minutes
    .venv/bin/python benchmarks/reliability/fuzz.py --frames 500 --no-report   # a smoke run

The hub runs with a token (so bad tokens can be tried) and no rate limit, on 127.0.0.1, on a
fresh temp state directory. The frames are generated up front from ``--seed`` and dealt to
``--workers`` connections. Each worker sends one frame, then a probe (``steer_get`` of a unique
id, answered by a private ``error`` that echoes it) and collects what the hub sent about it in
between, so every frame gets an outcome: ``refused`` (an error or a denial addressed to it),
``accepted`` (a grant, a chat, a private answer), ``silent`` (nothing), or ``closed`` (the hub
closed the socket; the code is kept, the worker reconnects under a new name). Frames that open a
connection of their own (bad tokens, bad names) are judged by their first reply and the close.

Meanwhile a well-behaved witness claims (its own worktree), chats, and releases every other
task, recording every ack. Afterwards: is the hub alive and answering; how many tracebacks are in
its stderr; is every acked witness claim live with its epoch, every acked release gone, every
acked chat in the history, every witness event in the headless output; and the same again after
a clean restart on the same state directory.

Figures: tried (frames sent), survived (hub alive and answering, no traceback, no 1011 close),
lost (acked witness operations missing), plus per category what the hub did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from relcommon import (
    add_run_options, count_tracebacks, execute, Hub, hub_kind, log, Peer, PeerClosed,
    proc_rss_kib, read_history, read_state, ReplyTimeout, write_result,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TOKEN = "rel-fuzz-token"
MAX_FRAME = 1024 * 1024

# -------------------------------------------------------------------- hostile values

LONE = ["\ud800", "\udfff", "a\udc80b", "\ud83d"]  # lone surrogates (sent as JSON \u escapes)
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f",
           "\x85", "\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\x1b[2J\x1b[H",
           "\x1b]0;pwned\x07", "\r\nclaim     FAKE by someone", "\x1b[31mred\x1b[0m"]
WRONG_TEXT: list[Any] = [[], ["a"], {}, {"a": 1}, True, False, [[["x"]]], [None]]
WRONG_LIST: list[Any] = [5, 1.5, True, {}, {"a": "b"}, [1], ["a", 2], [None], [["a"]], [{}]]
WRONG_INT: list[Any] = [1.5, "3", True, False, [], {}, [1], "", 1e300]
ENVELOPE = ["sender", "target", "type", "channel"]
WRONG_ENVELOPE: list[Any] = [1, 0, -1, 1.5, True, False, [], ["x"], {}, {"a": "b"}, 10**100]

# (verb, field, shape) pairs whose type the hub must check (docs/protocol.md §1.3 and §3)
TYPED_FIELDS: list[tuple[str, str, str]] = [
    ("claim", "task_id", "text"), ("claim", "worktree", "text"), ("claim", "note", "text"),
    ("claim", "paths", "list"), ("claim", "id", "text"),
    ("release", "task_id", "text"), ("release", "epoch", "int"),
    ("task_update", "task_id", "text"), ("task_update", "status", "text"),
    ("task_update", "note", "text"), ("task_update", "data_ref", "text"),
    ("task_update", "epoch", "int"), ("task_update", "expected_version", "int"),
    ("checkpoint", "task_id", "text"), ("checkpoint", "epoch", "int"),
    ("handoff", "task_id", "text"), ("handoff", "to_agent", "text"), ("handoff", "note", "text"),
    ("handoff", "epoch", "int"), ("extend", "task_id", "text"),
    ("wait_request", "task_id", "text"),
    ("ledger_task", "task_id", "text"), ("ledger_task", "title", "text"),
    ("ledger_task", "description", "text"), ("ledger_task", "depends_on", "list"),
    ("ledger_task", "project", "text"), ("ledger_task", "suggested_owner", "text"),
    ("ledger_task_update", "task_id", "text"), ("ledger_task_update", "status", "text"),
    ("ledger_task_update", "expected_version", "int"),
    ("ledger_progress", "task_id", "text"), ("ledger_progress", "text", "text"),
    ("ledger_progress", "kind", "text"), ("resume_request", "since", "int"),
    ("advertise", "skills", "list"), ("advertise", "task_classes", "list"),
    ("advertise", "description", "text"), ("advertise", "model", "text"),
    ("steer_ask", "question", "text"), ("steer_ask", "context", "text"),
    ("steer_ask", "default", "text"), ("steer_ask", "request_key", "text"),
    ("steer_ask", "session", "text"), ("steer_ask", "task_id", "text"),
    ("steer_answer", "id", "text"), ("steer_answer", "answer", "text"),
    ("steer_cancel", "id", "text"), ("steer_ack", "id", "text"), ("steer_get", "id", "text"),
    ("wake", "agent", "text"), ("wake", "reason", "text"), ("task_add", "agent", "text"),
    ("task_add", "title", "text"), ("task_list", "agent", "text"),
]
# identifiers where a control character must be refused (the promise under test)
IDENT_FIELDS: list[tuple[str, str]] = [
    ("claim", "task_id"), ("claim", "worktree"), ("claim", "id"), ("release", "task_id"),
    ("task_update", "task_id"), ("task_update", "status"), ("handoff", "to_agent"),
    ("extend", "task_id"), ("wait_request", "task_id"), ("ledger_task", "task_id"),
    ("ledger_task", "depends_on"), ("ledger_task", "project"),
    ("ledger_task", "suggested_owner"), ("ledger_task_update", "task_id"),
    ("ledger_progress", "task_id"), ("chat", "target"), ("history_request", "history_target"),
    ("steer_ask", "task_id"), ("steer_ask", "request_key"), ("steer_ask", "session"),
    ("steer_answer", "id"), ("steer_get", "id"), ("wake", "agent"), ("task_add", "agent"),
    ("resource", "kind"), ("resource", "name"),
]
BASE_FIELDS: dict[str, dict[str, Any]] = {
    "claim": {"worktree": "fz", "paths": ["fz/a.py"], "ttl_seconds": 60},
    "ledger_task": {"title": "t"}, "ledger_progress": {"text": "p"},
    "steer_ask": {"question": "q?"}, "steer_answer": {"answer": "a"},
    "handoff": {"to_agent": "nobody"}, "task_add": {"title": "t"}, "resource": {"name": "n"},
    "chat": {"payload": "hello"},
}
VERBS = sorted({v for v, _, _ in TYPED_FIELDS} | {v for v, _ in IDENT_FIELDS}
               | {"board_request", "who_request", "state_request", "history_request",
                  "manifest_request", "steer_list", "heartbeat", "ack"})

CATEGORIES: list[tuple[str, float]] = [
    ("invalid_json", 10), ("not_object", 4), ("envelope_types", 9), ("field_types", 24),
    ("deep_nesting", 4), ("ctl_identifiers", 20), ("unknown_verb", 5), ("invalid_utf8", 4),
    ("binary", 4), ("oversize", 0.5), ("near_limit", 0.5), ("bad_token", 4), ("bad_secret", 2), ("bad_sender", 5),
    ("name_switch", 1), ("token_later", 4),
]
#: what each category must get; anything else is a finding
EXPECTED: dict[str, set[str]] = {
    "invalid_json": {"refused"}, "not_object": {"refused"}, "envelope_types": {"refused"},
    "field_types": {"refused"}, "deep_nesting": {"refused"}, "ctl_identifiers": {"refused"},
    "unknown_verb": {"refused"}, "invalid_utf8": {"closed:1007", "refused"},
    "binary": {"refused", "accepted"}, "oversize": {"closed:1009"},
    "near_limit": {"accepted", "refused"}, "bad_token": {"closed:4010"},
    "bad_secret": {"closed:4010", "closed:4009"},
    "bad_sender": {"closed:4009"}, "name_switch": {"closed:4009"},
    "token_later": {"accepted", "refused"},
}
#: categories whose frames must change nothing (an "accepted" one is a violation)
MUST_NOT_CHANGE = {"invalid_json", "not_object", "envelope_types", "field_types", "deep_nesting",
                   "ctl_identifiers", "unknown_verb", "invalid_utf8", "bad_token", "bad_secret", "bad_sender",
                   "name_switch"}


class Gen:
    """Deterministic frame factory (one ``random.Random`` seeded once)."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.n = 0

    def uid(self) -> str:
        self.n += 1
        return f"fz{self.n}"

    def hostile(self) -> str:
        r = self.r
        bad = r.choice(CONTROL + LONE)
        base = self.uid()
        where = r.randrange(3)
        return bad + base if where == 0 else base + bad if where == 1 else base[:2] + bad + base[2:]

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    def verb_frame(self, verb: str) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": verb, "task_id": self.uid(), "id": self.uid()}
        obj.update(BASE_FIELDS.get(verb, {}))
        return obj

    # each returns (category, kind, data) with kind: text | bytes_text | binary | newconn
    def make(self, cat: str) -> tuple[str, str, Any]:
        r = self.r
        if cat == "invalid_json":
            good = self.dumps(self.verb_frame(r.choice(VERBS)))
            choice = r.randrange(12)
            data = [
                good[: r.randrange(1, len(good))], good + r.choice(["}", "]", ",", "x", "{}"]),
                good.replace('"', "'"), '{"type":"claim","ttl_seconds":NaN}',
                '{"type":"claim","epoch":Infinity}', '{"type":"chat","x":-Infinity}',
                '{"type":"claim","epoch":' + "9" * r.choice([4301, 5000, 20000]) + "}",
                "", " " * r.randrange(1, 50), "{" * r.randrange(1, 50),
                "".join(chr(r.randrange(32, 0x2FFF)) for _ in range(r.randrange(1, 200))),
                '{"type":"claim",}',
            ][choice]
            return cat, "text", data
        if cat == "not_object":
            return cat, "text", r.choice(["[]", "[1,2]", '"claim"', "3", "-0.5", "null", "true",
                                          '[{"type":"claim","task_id":"x"}]', '""'])
        if cat == "envelope_types":
            obj = self.verb_frame(r.choice(VERBS))
            obj[r.choice(ENVELOPE)] = r.choice(WRONG_ENVELOPE)
            return cat, "text", self.dumps(obj)
        if cat == "field_types":
            verb, field, shape = r.choice(TYPED_FIELDS)
            obj = self.verb_frame(verb)
            pool = {"text": WRONG_TEXT, "list": WRONG_LIST, "int": WRONG_INT}[shape]
            obj[field] = r.choice(pool)
            if field == "task_id":
                obj.pop("id", None)
            elif field == "id" and verb in ("claim",):
                obj.pop("task_id", None)  # `id` is read only when there is no task_id
            return cat, "text", self.dumps(obj)
        if cat == "deep_nesting":
            depth = r.choice([65, 66, 100, 1000, 10_000, 100_000])
            kind = r.randrange(3)
            if kind == 0:
                data = "[" * depth + "]" * depth
            elif kind == 1:
                data = '{"a":' * depth + "1" + "}" * depth
            else:
                inner = "[" * depth + "]" * depth
                data = '{"type":"claim","task_id":"deep","git":' + inner + "}"
            return cat, "text", data
        if cat == "ctl_identifiers":
            verb, field = r.choice(IDENT_FIELDS)
            obj = self.verb_frame(verb)
            value = self.hostile()
            obj[field] = [value] if field == "depends_on" else value
            obj["_fz_field"] = f"{verb}.{field}"
            if field == "task_id":
                obj.pop("id", None)
            elif field == "id" and verb == "claim":
                obj.pop("task_id", None)
            if verb == "resource":
                obj.setdefault("kind", "k")
            return cat, "text", self.dumps(obj)
        if cat == "unknown_verb":
            name = r.choice(["claimx", "CLAIM_", "steer", "delivery_ack", "attachment_put",
                             "native_message_record", "x" * r.randrange(1, 5000), "drop table",
                             "claim\x00", "\x1b[31mclaim", "cla\u0131m", "__class__",
                             "_verbs", "register", "steer_ask_", "claim claim"])
            return cat, "text", self.dumps({"type": name, "task_id": self.uid()})
        if cat == "invalid_utf8":
            good = self.dumps(self.verb_frame(r.choice(["claim", "chat", "ledger_task"])))
            raw = good.encode()
            bad = r.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                            b"\xc0\xaf", b"\xe2\x82", b"\x80"])
            pos = r.randrange(len(raw))
            data = raw[:pos] + bad + raw[pos:]
            return cat, r.choice(["bytes_text", "binary"]), data
        if cat == "binary":
            choice = r.randrange(4)
            if choice == 0:
                data = self.dumps({"type": "who_request"}).encode()
            elif choice == 1:
                data = bytes(r.randrange(256) for _ in range(r.randrange(0, 300)))
            elif choice == 2:
                data = b""
            else:
                data = self.dumps({"type": "board_request"}).encode("utf-16")
            return cat, "binary", data
        if cat == "oversize":
            size = MAX_FRAME + r.choice([1, 100, 4096, 1 << 20])
            body = '{"type":"chat","payload":"' + "x" * size + '"}'
            return cat, r.choice(["text", "binary"]), body if r.random() < 0.5 else body.encode()
        if cat == "near_limit":
            size = r.randrange(200_000, MAX_FRAME - 1000)
            verb = r.choice(["chat", "claim", "ledger_progress"])
            field = {"chat": "payload", "claim": "note", "ledger_progress": "text"}[verb]
            obj = self.verb_frame(verb)
            obj[field] = "n" * size
            return cat, "text", self.dumps(obj)
        if cat == "bad_token":
            token = r.choice([None, "", " ", "wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper(),
                              1, 0, True, [], [TOKEN], {"t": TOKEN}, TOKEN + "\x00",
                              "\x1b" + TOKEN, TOKEN + "\n", "\ud800", "t" * 100_000])
            first: dict[str, Any] = {"type": "heartbeat", "sender": f"fz/tok{self.uid()}"}
            if token is not None:
                first["token"] = token
            return cat, "newconn", self.dumps(first)
        if cat == "bad_secret":
            # an operator token or agent key that is wrong (hubs with operator rights over the
            # wire must refuse the connection; an older hub ignores the field and registers it)
            field = r.choice(["operator_token", "agent_key"])
            value = r.choice(["", "wrong", "x" * 64, 1, [], {"k": 1}, "\ud800", "\x00", "a\nb"])
            first = {"type": "heartbeat", "sender": f"fz/sec{self.uid()}", "token": TOKEN,
                     field: value}
            return cat, "newconn", self.dumps(first)
        if cat == "bad_sender":
            name = ""
            while name.strip().isprintable():  # edges that are whitespace are trimmed: skip those
                name = self.hostile() if r.random() < 0.5 else "fz/" + self.hostile()
            name = r.choice([name, name, name, "SynapseHub", "system", "ALL", "self", "a@b",
                             "x@" + self.uid()])
            first = {"type": r.choice(["heartbeat", "claim", "chat"]), "sender": name,
                     "token": TOKEN, "task_id": self.uid()}
            return cat, "newconn", self.dumps(first)
        if cat == "name_switch":
            return cat, "switch", None
        if cat == "token_later":
            obj = self.verb_frame(r.choice(["who_request", "board_request", "chat"]))
            obj["token"] = r.choice([TOKEN, "wrong", 5, [], None, "\x1b"])
            return cat, "text", self.dumps(obj)
        raise ValueError(cat)


def generate(n: int, seed: int) -> list[tuple[str, str, Any]]:
    gen = Gen(seed)
    names = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    cats = gen.r.choices(names, weights, k=n)
    return [gen.make(c) for c in cats]


# -------------------------------------------------------------------- outcomes


class Tally:
    def __init__(self) -> None:
        self.by_cat: dict[str, Counter[str]] = defaultdict(Counter)
        self.refusals: dict[str, Counter[str]] = defaultdict(Counter)
        self.accepted_samples: dict[str, list[Any]] = defaultdict(list)
        self.unexpected_samples: dict[str, list[Any]] = defaultdict(list)
        self.closes: Counter[str] = Counter()
        self.probe_timeouts = 0
        self.ctl_fields: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, cat: str, outcome: str, frame: Any, detail: Any = None) -> None:
        self.by_cat[cat][outcome] += 1
        if outcome.startswith("closed"):
            self.closes[outcome] += 1
        if outcome == "accepted" and len(self.accepted_samples[cat]) < 5:
            self.accepted_samples[cat].append({"frame": _short(frame), "reply": detail})
        if outcome not in EXPECTED.get(cat, set()) and len(self.unexpected_samples[cat]) < 5:
            self.unexpected_samples[cat].append({"outcome": outcome, "frame": _short(frame),
                                                 "reply": detail})


def _short(data: Any, n: int = 300) -> Any:
    if isinstance(data, bytes):
        return repr(data[:n]) + (f"... ({len(data)} bytes)" if len(data) > n else "")
    if isinstance(data, str):
        return data[:n] + (f"... ({len(data)} chars)" if len(data) > n else "")
    return data


def _about_me(obj: dict[str, Any], me: str) -> bool:
    if obj.get("type") == "presence_update":
        return False
    if obj.get("target") == me:
        return True
    task = obj.get("task") if isinstance(obj.get("task"), dict) else {}
    note = obj.get("note") if isinstance(obj.get("note"), dict) else {}
    return me in (obj.get("owner"), obj.get("sender"), obj.get("agent"), task.get("created_by"),
                  note.get("author"), obj.get("previous_owner"))


def classify(raws: list[str], me: str, probe: str) -> tuple[str, Any]:
    mine = []
    for raw in raws:
        if probe in raw:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and _about_me(obj, me):
            mine.append(obj)
    if not mine:
        return "silent", None
    refusals = [o for o in mine if o.get("type") == "error" or str(o.get("type")).endswith(
        "_denied") or o.get("type") in ("name_conflict", "auth_denied")]
    if refusals:
        o = refusals[0]
        return "refused", f"{o.get('type')}: {str(o.get('payload'))[:90]}"
    return "accepted", [f"{o.get('type')}: {str(o.get('payload'))[:90]}" for o in mine[:3]]


# -------------------------------------------------------------------- the workers


class Worker:
    def __init__(self, idx: int, uri: str, frames: list[tuple[str, str, Any]], tally: Tally,
                 deadline: float) -> None:
        self.idx = idx
        self.uri = uri
        self.frames = frames
        self.tally = tally
        self.deadline = deadline
        self.gen = 0
        self.peer: Peer | None = None
        self.buf: list[str] = []
        self.sent = 0

    async def connect(self) -> Peer:
        self.gen += 1
        peer = await Peer.open(self.uri, f"fz/w{self.idx}-g{self.gen}", token=TOKEN)
        peer.any_error_answers = False
        peer.on_frame = self.buf.append
        return peer

    async def run(self) -> None:
        for n, (cat, kind, data) in enumerate(self.frames):
            if time.monotonic() > self.deadline:
                break
            if kind == "newconn":
                await self.newconn(cat, data)
                self.sent += 1
                continue
            if self.peer is None or self.peer.closed is not None:
                if self.peer is not None:
                    await self.peer.close()
                self.peer = await self.connect()
            peer = self.peer
            if kind == "switch":
                data = json.dumps({"type": "who_request", "sender": peer.name + "-other"})
            self.buf.clear()
            probe = f"probe-{self.idx}-{n}"
            try:
                if kind == "text":
                    await peer.send_raw(data)
                elif kind == "bytes_text":
                    await peer.send_raw(data, text=True)
                else:
                    await peer.send_raw(data if isinstance(data, bytes) else data.encode(),
                                        text=False)
                self.sent += 1
                await peer.request("steer_get", f'"{probe}"', ("error",), timeout=20,
                                   target="SynapseHub", id=probe)
            except PeerClosed as exc:
                self.tally.add(cat, f"closed:{exc.code}", data, exc.reason[:120])
                continue
            except ReplyTimeout:
                self.tally.probe_timeouts += 1
                self.tally.add(cat, "probe_timeout", data)
                await peer.close()
                self.peer = None
                continue
            outcome, detail = classify(self.buf, peer.name, probe)
            self.tally.add(cat, outcome, data, detail)
            if cat == "ctl_identifiers":
                self.tally.ctl_fields[json.loads(data)["_fz_field"]][outcome] += 1
            if outcome == "refused":
                self.tally.refusals[cat][str(detail)[:80]] += 1

    async def newconn(self, cat: str, first: str) -> None:
        """A connection of its own: the first frame with a bad token or a bad name."""
        try:
            async with connect(self.uri, compression=None, max_size=None, open_timeout=10,
                               ping_interval=None, close_timeout=2) as ws:
                await ws.send(first)
                replies: list[Any] = []
                try:
                    async with asyncio.timeout(5):
                        async for raw in ws:
                            replies.append(raw)
                except TimeoutError:
                    types = [json.loads(x).get("type") for x in replies if isinstance(x, str)]
                    outcome = "registered" if "welcome" in types else "no_close"
                    self.tally.add(cat, outcome, first, types)
                    return
                except ConnectionClosed:
                    pass
                code = ws.close_code
                got = [json.loads(x).get("type") for x in replies if isinstance(x, str)]
                self.tally.add(cat, f"closed:{code}", first, got)
        except Exception as exc:  # noqa: BLE001 - the outcome is what we record
            self.tally.add(cat, f"client_error:{type(exc).__name__}", first, str(exc)[:120])

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()


# -------------------------------------------------------------------- the witness


class Witness:
    """Claims in its own worktree, chats, releases every other task; records every ack."""

    def __init__(self, uri: str, name: str = "rel/witness") -> None:
        self.uri = uri
        self.name = name
        self.claims: dict[str, int] = {}      # acked claim -> epoch
        self.released: set[str] = set()       # acked releases
        self.chats: dict[str, int] = {}       # client_msg_id -> msg_id
        self.tried = Counter[str]()
        self.refused: list[Any] = []
        self.stop = False

    async def run(self, max_ops: int) -> None:
        peer = await Peer.open(self.uri, self.name, token=TOKEN)
        try:
            for i in range(max_ops):
                if self.stop:
                    break
                tid = f"W-{i:05d}"
                self.tried["claim"] += 1
                got = await peer.request("claim", f'"{tid}"', ("claim_granted",),
                                         ("claim_denied",), task_id=tid, worktree="witness-wt",
                                         paths=[f"w/{i}.py"])
                if got.get("type") != "claim_granted":
                    self.refused.append(_short(json.dumps(got), 200))
                    continue
                self.claims[tid] = got["epoch"]
                cid = f"wchat-{i:05d}"
                self.tried["chat"] += 1
                got = await peer.request("chat", f'"{cid}"', ("chat",), payload=f"witness {i}",
                                         client_msg_id=cid)
                if got.get("type") == "chat":
                    self.chats[cid] = got["msg_id"]
                if i % 20:  # keep every 20th (at most 100 live: under the 128-claim quota)
                    self.tried["release"] += 1
                    got = await peer.request("release", f'"{tid}"', ("release_granted",),
                                             ("release_denied",), task_id=tid,
                                             epoch=self.claims[tid])
                    if got.get("type") == "release_granted":
                        self.released.add(tid)
                await asyncio.sleep(0.005)
        finally:
            await peer.close()

    async def verify(self, uri: str, who: str) -> dict[str, Any]:
        peer = await Peer.open(uri, who, token=TOKEN)
        try:
            live = await read_state(peer)
            history = await read_history(peer)
        finally:
            await peer.close()
        held = {t: e for t, e in self.claims.items() if t not in self.released}
        lost_claims = [t for t, e in held.items()
                       if t not in live or live[t].get("epoch") != e
                       or live[t].get("owner") != self.name]
        back = [t for t in self.released if t in live]
        chats = {c: m for c, m in self.chats.items()}
        by_cid = {m.get("client_msg_id"): m.get("msg_id") for m in history}
        lost_chats = [c for c, m in chats.items() if by_cid.get(c) != m]
        return {"claims_held_acked": len(held), "claims_lost": len(lost_claims),
                "releases_acked": len(self.released), "released_but_live": len(back),
                "chats_acked": len(chats), "chats_lost": len(lost_chats),
                "lost_samples": (lost_claims + back + lost_chats)[:10]}

    def check_output(self, stdout: str) -> dict[str, Any]:
        """Every witness event has its headless line (docs: one line per meaningful event)."""
        lines = stdout.splitlines()
        claim_lines = {ln for ln in lines if f" by {self.name} epoch=" in ln}
        missing = []
        for tid, epoch in self.claims.items():
            if not any(f" {tid} by {self.name} epoch={epoch} " in ln for ln in claim_lines):
                missing.append(f"claim {tid}")
        rel = {ln for ln in lines if " held by " + self.name in ln}
        for tid in self.released:
            if not any(f"release   {tid} held by {self.name}" in ln for ln in rel):
                missing.append(f"release {tid}")
        chat_text = {ln for ln in lines if f" {self.name} -> " in ln}
        for cid, msg_id in self.chats.items():
            if not any(f"#{msg_id} {self.name} -> " in ln for ln in chat_text):
                missing.append(f"chat {cid} #{msg_id}")
        expected = len(self.claims) + len(self.released) + len(self.chats)
        return {"expected": expected, "missing": len(missing), "missing_samples": missing[:10]}


# -------------------------------------------------------------------- main


def traceback_summary(text: str) -> list[str]:
    """The last line of each traceback (the exception) with the log line before it."""
    out: list[str] = []
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("Traceback (most recent call last):"):
            before = lines[i - 1][:200] if i else ""
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("Traceback")
                                      or not lines[j].strip()):
                j += 1
            exc = lines[j][:200] if j < len(lines) else "?"
            out.append(f"{before} | {exc}")
    return out


async def run(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:
    kind = hub_kind(args.python, ["--token", TOKEN, "--rate", "0"], cwd=tmp)
    hub = Hub(kind, tmp / "state", tmp / "hub1.out", tmp / "hub1.err").start()
    result["hub_argv"] = kind.build_argv(0, Path("STATE_DIR"))
    try:
        uri = await hub.ready(30, token=TOKEN)
        rss0 = proc_rss_kib(hub.pid)
        frames = generate(args.frames, args.seed)
        log(f"hub pid {hub.pid} at {uri}; {len(frames)} frames, seed {args.seed}, "
            f"{args.workers} workers")
        tally = Tally()
        deadline = time.monotonic() + args.max_seconds
        workers = [Worker(i, uri, frames[i::args.workers], tally, deadline)
                   for i in range(args.workers)]
        witness = Witness(uri)
        t0 = time.perf_counter()
        wtask = asyncio.ensure_future(witness.run(args.witness_ops))
        rss_peak = rss0 or 0

        async def sample_rss() -> None:
            nonlocal rss_peak
            while True:
                rss_peak = max(rss_peak, proc_rss_kib(hub.pid) or 0)
                await asyncio.sleep(0.5)

        sampler = asyncio.ensure_future(sample_rss())
        outcome = await asyncio.gather(*(w.run() for w in workers), return_exceptions=True)
        fuzz_s = time.perf_counter() - t0
        witness.stop = True
        wres = await asyncio.gather(wtask, return_exceptions=True)
        sampler.cancel()
        for w in workers:
            await w.close()
        worker_errors = [repr(x) for x in outcome if isinstance(x, BaseException)]
        alive_after = hub.alive()
        answering = False
        try:
            await hub.ready(10, token=TOKEN)
            answering = True
        except Exception as exc:  # noqa: BLE001
            result["answer_error"] = str(exc)
        rss1 = proc_rss_kib(hub.pid)
        verify1 = await witness.verify(uri, "rel/check1") if answering else None
        stop = hub.stop(30)
        out1, err1 = hub.stdout_text(), hub.stderr_text()
        output = witness.check_output(out1)

        # restart on the same state: does the log replay, and is the witness's state there?
        hub2 = Hub(kind, tmp / "state", tmp / "hub2.out", tmp / "hub2.err").start()
        try:
            uri2 = await hub2.ready(30, token=TOKEN)
            verify2 = await witness.verify(uri2, "rel/check2")
        finally:
            stop2 = hub2.stop(30)
        err2 = hub2.stderr_text()

        sent = sum(w.sent for w in workers)
        tracebacks = count_tracebacks(err1) + count_tracebacks(err2)
        closes_1011 = sum(v for k, v in tally.closes.items() if k == "closed:1011")
        violations = {c: sum(n for o, n in cnt.items() if o not in EXPECTED.get(c, set()))
                      for c, cnt in tally.by_cat.items()}
        changed = {c: tally.by_cat[c].get("accepted", 0) for c in MUST_NOT_CHANGE
                   if tally.by_cat[c].get("accepted", 0)}
        lost = ((verify1 or {}).get("claims_lost", 0) + (verify1 or {}).get("chats_lost", 0)
                + (verify1 or {}).get("released_but_live", 0) + verify2["claims_lost"]
                + verify2["chats_lost"] + verify2["released_but_live"])
        survived = (alive_after and answering and tracebacks == 0 and closes_1011 == 0
                    and stop.get("exit_code") == 0 and tally.probe_timeouts == 0)
        result.update({
            "tried": sent,
            "survived": survived,
            "lost": lost,
            "summary": {
                "frames_generated": len(frames), "frames_sent": sent, "fuzz_seconds": round(fuzz_s, 1),
                "hub_alive_after": alive_after, "hub_answering_after": answering,
                "hub_exit_code": stop.get("exit_code"), "restart_exit_code": stop2.get("exit_code"),
                "tracebacks": tracebacks, "closes_1011": closes_1011,
                "probe_timeouts": tally.probe_timeouts,
                "unexpected_outcomes": sum(violations.values()),
                "malformed_that_changed_state": sum(changed.values()),
                "witness_ops_acked": len(witness.claims) + len(witness.released) + len(witness.chats),
                "witness_output_lines_missing": output["missing"],
                "hub_rss_kib": {"before": rss0, "peak": rss_peak, "after": rss1},
            },
            "by_category": {c: dict(tally.by_cat[c]) for c, _ in CATEGORIES},
            "expected": {c: sorted(v) for c, v in EXPECTED.items()},
            "unexpected_by_category": {c: n for c, n in violations.items() if n},
            "unexpected_samples": dict(tally.unexpected_samples),
            "accepted_samples": dict(tally.accepted_samples),
            "malformed_that_changed_state": changed,
            "top_refusals": {c: dict(cnt.most_common(6)) for c, cnt in tally.refusals.items()},
            "closes": dict(tally.closes),
            "ctl_identifiers_by_field": {f: dict(c) for f, c in sorted(tally.ctl_fields.items())},
            "witness": {"tried": dict(witness.tried), "refused_samples": witness.refused[:5],
                        "error": repr(wres[0]) if isinstance(wres[0], BaseException) else None,
                        "verify_live": verify1, "verify_after_restart": verify2,
                        "headless_output": output},
            "tracebacks": traceback_summary(err1 + "\n" + err2)[:20],
            "stderr_lines": len(err1.splitlines()),
            "worker_errors": worker_errors,
        })
    finally:
        hub.stop(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10_000, help="frames to send (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--workers", type=int, default=4, help="fuzzing connections (default 4)")
    p.add_argument("--witness-ops", type=int, default=2000, help="witness loop bound")
    p.add_argument("--max-seconds", type=float, default=600, help="stop sending after this")
    add_run_options(p)
    p.add_argument("--no-save", action="store_true", help="print the result, write nothing")
    args = p.parse_args(argv)
    result = execute("fuzz", args, run, args.max_seconds + 300)
    s = result.get("summary", {})
    log(f"tried {result.get('tried')} survived {result.get('survived')} lost {result.get('lost')}"
        f" | {json.dumps(s)}")
    if args.no_save:
        print(json.dumps(result, indent=1, default=str))
    else:
        write_result("fuzz", result, args.results_dir, args.tag, report=not args.no_report)
    return 0 if result.get("survived") and result.get("lost") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
