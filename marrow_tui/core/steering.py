"""Steering requests: an agent asks a human and waits. Pure: no clock, no I/O.

A request is opened by its asker, and ends exactly once: `answered` (by an operator other than
the asker, with text), `timed_out` (its deadline passed; its default, if it had one, is the
answer, and the end says a default was used), or `cancelled` (by the asker or an operator). Until the asker acknowledges
it (`steer_ack`, or a `steer_get` of the ended request), the end is `undelivered`: an answer
given while the agent is disconnected or between turns is kept and handed over (again) whenever
it comes back. Sending is not receiving: a reply the hub pushed to a client that dropped it is
sent again, so only the asker's acknowledgement marks it `delivered`. Everything is an event, so
all of it survives a restart; nothing waits forever unnoticed (an open request is on the
operator's screen, and a timeout ends it on its own).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from .events import Event, Refusal

MAX_QUESTION = 4000
MAX_CONTEXT = 64 * 1024
MAX_CHOICES = 20
MAX_CHOICE = 200
MAX_ANSWER = 64 * 1024
#: ended requests kept in memory once their asker has received them (the log keeps them all)
MAX_ENDED = 500
#: ended requests whose asker has not received them yet, kept in memory in all, and per asker:
#: past these the asker with the most loses its oldest, so one asker that never acknowledges
#: cannot push out everyone else's answers
MAX_UNRECEIVED = 2000
MAX_UNRECEIVED_PER_ASKER = 64
#: open requests one asker may have at once
MAX_OPEN_PER_ASKER = 16
END_STATES = ("answered", "timed_out", "cancelled")
#: the choices of a conflict (an edit on paths another agent's lease holds), in order
LET_IT, WAIT, HAND_OVER, REJECT = "Let it", "Wait", "Hand over", "Reject"
CONFLICT_CHOICES = (LET_IT, WAIT, HAND_OVER, REJECT)
#: who ends a conflict whose leases ended while it waited
LEASE_ENDED = "hub:lease-ended"
#: request kinds answered with one of their choices, asked by a run in this process
RUN_KINDS = ("permission", "conflict")
#: how long after its answer was received a request is still found again by its key (by the
#: same session only: a retry whose first try was cut off after the answer arrived)
REUSE_WINDOW = 300.0


def blocked_parts(facts: dict[str, Any]) -> tuple[str, str, str]:
    """A conflict's line in three parts: "demo/bob's edit of ", the paths, " is blocked by
    demo/alice (AUTH-3)" (the paths are what a narrow line cuts)."""
    edited = ", ".join(facts.get("paths", ())) or "the whole worktree"
    held = ", ".join(_holder(h) for h in facts.get("held", ()))
    return (f"{facts.get('owner', '?')}'s {facts.get('kind') or 'edit'} of ", edited,
            " is blocked" + (f" by {held}" if held else ""))


def _holder(held: dict[str, Any]) -> str:
    """"demo/alice (AUTH-3)"; a run's own lease (its task is the run's id) names the agent
    only: the id says nothing more and takes a narrow line's room."""
    task = held.get("task_id", "?")
    return held.get("owner", "?") + ("" if task == held.get("session") else f" ({task})")


def blocked_line(facts: dict[str, Any]) -> str:
    """A conflict in one line: "demo/bob's edit of src/a.py is blocked by demo/alice
    (AUTH-3)" (the status line and notifications say it so)."""
    return "".join(blocked_parts(facts))


def already_ended(request: Request) -> str:
    """Why a request can no longer be answered or cancelled: how it ended, and by whom (two
    operators answer one question: the second learns who was first, and with what)."""
    by = f" by {request.answered_by}" if request.answered_by else ""
    if request.state == "answered":
        answer = " ".join((request.answer or "").split())
        shown = answer if len(answer) <= 60 else answer[:59] + "…"
        return f"Request {request.id} was already answered{by}: {shown}"
    if request.state == "timed_out":
        return (f"Request {request.id} already timed out"
                + ("; its default answer was used." if request.default_used else "."))
    return f"Request {request.id} is already {request.state}{by}."


@dataclass(slots=True)
class Request:
    id: str
    asker: str
    question: str
    created: float
    context: str = ""
    choices: list[str] = field(default_factory=list)
    default: str | None = None
    timeout_at: float | None = None
    #: what it is about: a claim or board task id, or an issue identifier
    task_id: str = ""
    #: the scheduler session that asked, when one did
    session: str = ""
    #: the asker's own key for this request, so a retry after a reconnect finds it again
    key: str = ""
    #: "question" (an agent asks a person), "permission" (an ACP agent asks leave to run a
    #: tool call: answered with one of its choices, and opened only by the run, never the
    #: wire), or "conflict" (a tool call would change paths another agent's lease holds)
    kind: str = "question"
    #: a conflict's facts: {worktree, owner, task_id, paths, tool_call_id, title, held: [
    #: {task_id, owner, paths, holds, since, session}]}
    conflict: dict[str, Any] | None = None
    #: who chose to wait (a conflict stays open until the leases end), and when
    waiting_by: str = ""
    waiting_since: float | None = None
    state: str = "open"
    answer: str | None = None
    answered_by: str = ""
    ended: float | None = None
    default_used: bool = False
    #: the asker acknowledged the end (it has the answer), at `delivered_at`
    delivered: bool = False
    delivered_at: float | None = None

    @property
    def open(self) -> bool:
        return self.state == "open"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SteeringBook:
    def __init__(self) -> None:
        self.open: dict[str, Request] = {}
        #: ended requests, oldest first (bounded: see `_retire`)
        self.ended: OrderedDict[str, Request] = OrderedDict()
        self.counter = 0
        self._deadlines: list[tuple[float, str]] = []

    # ---- queries -------------------------------------------------------------------------

    def get(self, request_id: str) -> Request | None:
        return self.open.get(request_id) or self.ended.get(request_id)

    def by_key(self, asker: str, key: str, now: float | None = None,
               session: str = "") -> Request | None:
        """The asker's request with this key that a new ask with it stands for.

        Open, or ended with an answer not yet received: whoever asks with the key (a run
        started again after a restart picks its question up, and the answer given meanwhile).
        Ended without an answer (cancelled, or timed out with no default) and not received:
        only by the session that asked it; another run of the same issue or agent asks afresh,
        since a stale "no" would fail a run that was never told anything (the operator who
        cancelled an issue's question and retried the issue wants it asked again). Received:
        only by the same session within REUSE_WINDOW of receiving it (a retry whose first try
        was cut off after the answer arrived); otherwise the same key asks afresh. With no
        `now`, the newest request with the key, whatever its state (a lookup, not an ask).
        """
        if not key:
            return None
        for request in (*self.open.values(), *reversed(self.ended.values())):
            if request.asker != asker or request.key != key:
                continue
            if now is None or request.open:
                return request
            if not request.delivered:
                if request.answer is not None or request.session == session:
                    return request
                continue
            received = request.delivered_at if request.delivered_at is not None else (
                request.ended if request.ended is not None else now)
            if session and request.session == session and now - received <= REUSE_WINDOW:
                return request
        return None

    def undelivered(self, asker: str) -> list[Request]:
        return [r for r in self.ended.values() if r.asker == asker and not r.delivered]

    def waiting(self) -> list[Request]:
        """Open requests, the longest-waiting first."""
        return sorted(self.open.values(), key=lambda r: (r.created, r.id))

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap:
            at, request_id = heap[0]
            request = self.open.get(request_id)
            if request is None or request.timeout_at != at:
                heapq.heappop(heap)
                continue
            return at
        return None

    # ---- decisions -----------------------------------------------------------------------

    def decide_ask(self, asker: str, now: float, *, question: str, context: str = "",
                   choices: list[str] | None = None, default: str | None = None,
                   timeout: float | None = None, task_id: str = "", session: str = "",
                   key: str = "", kind: str = "question", conflict: dict[str, Any] | None = None,
                   waiting: bool = False) -> Event | Refusal | Request:
        """A new request's event; the existing request for a repeated key; or a refusal."""
        existing = self.by_key(asker, key, now, session)
        if existing is not None:
            return existing
        question = question.strip()
        choices = [c.strip() for c in (choices or []) if c.strip()]
        if not question:
            return Refusal("bad_question", "A steering request needs a question.")
        if len(question) > MAX_QUESTION or len(context) > MAX_CONTEXT:
            return Refusal("too_long", f"A question is at most {MAX_QUESTION} characters and "
                                       f"its context at most {MAX_CONTEXT // 1024} KiB.")
        if len(choices) > MAX_CHOICES or any(len(c) > MAX_CHOICE for c in choices):
            return Refusal("bad_choices", f"At most {MAX_CHOICES} choices of at most "
                                          f"{MAX_CHOICE} characters each.")
        if timeout is not None and not (0 < timeout <= 30 * 86400):
            return Refusal("bad_timeout", "timeout_seconds must be between 0 and 30 days.")
        if default is not None and timeout is None:
            return Refusal("bad_default", "A default answer needs a timeout.")
        if sum(1 for r in self.open.values() if r.asker == asker) >= MAX_OPEN_PER_ASKER:
            return Refusal("too_many_open", f"{asker} already has {MAX_OPEN_PER_ASKER} open "
                                            "requests; wait for answers first.")
        if waiting and kind == "conflict":
            cycle = self.wait_cycle(asker, conflict)
            if cycle is not None:  # the policy's wait would never end: a person decides
                waiting = False
                context = (f"Waiting would deadlock: {cycle.asker}'s edit already waits for "
                           f"{asker} ({cycle.id}).\n\n{context}")[:MAX_CONTEXT]
        request_id = f"S{self.counter + 1}"
        return Event("steer_ask", {
            "id": request_id, "asker": asker, "question": question, "context": context,
            "choices": choices, "default": default, "created": now,
            "timeout_at": None if timeout is None else now + timeout,
            "task_id": task_id, "session": session, "key": key,
            **({"kind": kind} if kind != "question" else {}),
            **({"conflict": conflict} if conflict is not None else {}),
            **({"waiting_by": asker} if waiting else {}),
        })

    def decide_answer(self, request_id: str, text: str, by: str, now: float,
                      operator: bool = False) -> Event | Refusal:
        """An answer ends a request. Only an operator answers, and never its own question
        (an agent cannot approve what it asked a human to decide)."""
        request = self.get(request_id)
        if request is None:
            return Refusal("unknown_request", f"No steering request '{request_id}'.")
        if not request.open:
            return Refusal("not_open", already_ended(request))
        if by == request.asker:
            return Refusal("own_request", f"{request_id} was asked by {by}; the asker cannot "
                                          "answer its own request.")
        if not operator:
            return Refusal("not_operator", f"Only an operator may answer {request_id}.")
        text = text.strip()
        if not text:
            return Refusal("empty_answer", "An answer cannot be empty.")
        if request.kind in RUN_KINDS and text not in request.choices:
            what = "permission" if request.kind == "permission" else "about a conflict"
            return Refusal("not_a_choice", f"{request_id} asks {what}: answer with one of "
                                           f"{', '.join(request.choices)}.")
        if request.kind == "conflict" and text == WAIT:
            return self._decide_wait(request, by, now)
        if len(text) > MAX_ANSWER:
            return Refusal("too_long", f"An answer is at most {MAX_ANSWER // 1024} KiB.")
        return Event("steer_end", {"id": request_id, "state": "answered", "answer": text,
                                   "by": by, "at": now, "default_used": False})

    def _decide_wait(self, request: Request, by: str, now: float) -> Event | Refusal:
        """The operator chose to wait: the conflict stays open and ends by itself when the
        leases in its way end (or at its deadline). Refused when it already waits, or when a
        holder's own edit waits on the asker (neither would ever go on)."""
        if request.waiting_by:
            return Refusal("already_waiting", f"{request.id} already waits (since "
                                              f"{request.waiting_by} chose it).")
        cycle = self.wait_cycle(request.asker, request.conflict)
        if cycle is not None:
            return Refusal("deadlock", f"Waiting would deadlock: {cycle.asker}'s edit "
                                       f"already waits for {request.asker} ({cycle.id}).")
        return Event("steer_wait", {"id": request.id, "by": by, "at": now})

    def wait_cycle(self, asker: str, conflict: dict[str, Any] | None) -> Request | None:
        """The waiting conflict that closes a circle if `asker` waits for the holders named
        in `conflict`: from those holders, waiting conflicts lead (holder to the holders its
        edit waits for) back to `asker`. None when waiting would end some day."""
        seen: set[str] = set()
        owners = [str(h.get("owner", "")) for h in _held(conflict)]
        while owners:
            owner = owners.pop()
            if owner in seen:
                continue
            seen.add(owner)
            for other in self.open.values():
                if other.kind != "conflict" or not other.waiting_by or other.asker != owner:
                    continue
                held = [str(h.get("owner", "")) for h in _held(other.conflict)]
                if asker in held:
                    return other
                owners.extend(held)
        return None

    def decide_settle(self, request_id: str, now: float) -> Event | None:
        """A conflict whose leases have ended answers itself (None when it is not open)."""
        request = self.open.get(request_id)
        if request is None or request.kind != "conflict":
            return None
        return Event("steer_end", {"id": request_id, "state": "answered", "answer": WAIT,
                                   "by": LEASE_ENDED, "at": now, "default_used": False})

    def conflicts(self) -> list[Request]:
        """Open conflicts, oldest first."""
        return sorted((r for r in self.open.values() if r.kind == "conflict"),
                      key=lambda r: (r.created, r.id))

    def decide_cancel(self, request_id: str, by: str, now: float,
                      operator: bool = False) -> Event | Refusal:
        request = self.get(request_id)
        if request is None:
            return Refusal("unknown_request", f"No steering request '{request_id}'.")
        if not request.open:
            return Refusal("not_open", already_ended(request))
        if by != request.asker and not operator:
            return Refusal("not_asker", f"Only {request.asker} or the operator may cancel "
                                        f"{request_id}.")
        return Event("steer_end", {"id": request_id, "state": "cancelled", "answer": None,
                                   "by": by, "at": now, "default_used": False})

    def decide_ack(self, request_id: str, by: str, now: float) -> Event | Refusal | None:
        """The asker says it has the end: the event that records it, None when it already
        did (an ack is idempotent), or a refusal."""
        request = self.get(request_id)
        if request is None:
            return Refusal("unknown_request", f"No steering request '{request_id}'.")
        if by != request.asker:
            return Refusal("not_asker", f"Only {request.asker} may acknowledge {request_id}.")
        if request.open:
            return Refusal("still_open", f"Request {request_id} has not ended yet.")
        if request.delivered:
            return None
        return Event("steer_delivered", {"id": request_id, "at": now})

    def sweep(self, now: float) -> list[Event]:
        """The requests whose deadline has passed, ended as timed out."""
        events = []
        while (due := self.next_deadline()) is not None and due <= now:
            _, request_id = heapq.heappop(self._deadlines)
            request = self.open[request_id]
            events.append(Event("steer_end", {
                "id": request_id, "state": "timed_out", "answer": request.default,
                "by": "hub:timeout", "at": now, "default_used": request.default is not None,
            }))
        return events

    # ---- applying ------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        d = event.data
        if event.kind == "steer_ask":
            request = Request(
                id=d["id"], asker=d["asker"], question=d["question"], created=d["created"],
                context=d.get("context", ""), choices=list(d.get("choices", ())),
                default=d.get("default"), timeout_at=d.get("timeout_at"),
                task_id=d.get("task_id", ""), session=d.get("session", ""),
                key=d.get("key", ""), kind=d.get("kind", "question"),
                conflict=d.get("conflict"), waiting_by=d.get("waiting_by", ""),
                waiting_since=d["created"] if d.get("waiting_by") else None,
            )
            self.open[request.id] = request
            self.counter = max(self.counter, int(request.id.lstrip("S") or 0))
            if request.timeout_at is not None:
                heapq.heappush(self._deadlines, (request.timeout_at, request.id))
        elif event.kind == "steer_end":
            ended = self.open.pop(d["id"], None)
            if ended is None:
                return
            ended.state = d["state"]
            ended.answer = d.get("answer")
            ended.answered_by = d.get("by", "")
            ended.ended = d.get("at")
            ended.default_used = bool(d.get("default_used"))
            self._retire(ended)
        elif event.kind == "steer_wait":
            waiting = self.open.get(d["id"])
            if waiting is not None:
                waiting.waiting_by, waiting.waiting_since = d["by"], d["at"]
        elif event.kind == "steer_delivered":
            found = self.get(d["id"])
            if found is not None and not found.delivered:
                found.delivered = True
                # an event from before acks were timed says nothing: count from the end
                at = d.get("at")
                found.delivered_at = at if at is not None else found.ended

    def _retire(self, request: Request) -> None:
        self.ended[request.id] = request
        received = [r.id for r in self.ended.values() if r.delivered]
        for request_id in received[:max(0, len(received) - MAX_ENDED)]:
            del self.ended[request_id]
        waiting: dict[str, list[str]] = {}  # asker -> ids not yet received, oldest first
        for r in self.ended.values():
            if not r.delivered:
                waiting.setdefault(r.asker, []).append(r.id)
        mine = waiting.get(request.asker, [])
        while len(mine) > MAX_UNRECEIVED_PER_ASKER:
            del self.ended[mine.pop(0)]
        total = sum(len(ids) for ids in waiting.values())
        while total > MAX_UNRECEIVED:
            del self.ended[max(waiting.values(), key=len).pop(0)]
            total -= 1

    # ---- snapshots -----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        return {"counter": self.counter,
                "requests": [r.to_dict() for r in (*self.open.values(), *self.ended.values())]}

    def load_snapshot(self, snap: dict[str, Any]) -> None:
        self.counter = int(snap.get("counter", 0))
        for row in snap.get("requests", []):
            request = Request(**row)
            if request.open:
                self.open[request.id] = request
                if request.timeout_at is not None:
                    heapq.heappush(self._deadlines, (request.timeout_at, request.id))
            else:
                self.ended[request.id] = request


def _held(conflict: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The leases a conflict's edit waits for (each {owner, task_id, ...})."""
    held = (conflict or {}).get("held", ())
    return [h for h in held if isinstance(h, dict)] if isinstance(held, (list, tuple)) else []
