"""The steering verbs: an agent asks a human over the wire, and gets the answer back.

`steer_ask` opens a request and answers `steer_opened` at once (the asker then waits). An
operator's answer (`steer_answer`, the console or `marrow-tui answer`; never the asker's own),
a cancel (`steer_cancel`, by the asker or an operator) or a timeout ends it, and the asker gets
`steer_reply`: at once if it is connected, and again each time it connects under the same name
or asks again with the same key, until it acknowledges the reply with `steer_ack` (a pushed
frame may be dropped by a client that was not listening yet, so only the asker's ack marks the
end delivered). `steer_get` tells an asker where its request stands (and counts as an ack of an
ended one), and `steer_list` shows what is waiting. See docs/protocol.md §6.4.
"""

from __future__ import annotations

from typing import Any

from ..core.events import Event, Refusal
from ..core.steering import RUN_KINDS, Request
from .frames import BadFrame, Call, Context, Delivery, encode, number_field, strings_field, \
    text_field


def reply_frame(context: Context, request: Request) -> dict[str, Any]:
    """The `steer_reply` an asker gets when its request ends."""
    texts = {
        "answered": f"{request.answered_by} answered {request.id}.",
        "timed_out": f"{request.id} timed out" + (
            "; the default answer applies." if request.default_used else " with no answer."),
        "cancelled": f"{request.id} was cancelled by {request.answered_by}.",
    }
    return context.frame("steer_reply", request.asker, texts.get(request.state, request.state),
                         id=request.id, state=request.state, answer=request.answer,
                         answered_by=request.answered_by, default_used=request.default_used,
                         question=request.question)


def deliver_ended(context: Context, request_id: str) -> Delivery | None:
    """The reply frame for an ended request the asker has not acknowledged yet, when its asker
    is connected now; None while it is away (it gets the reply when it is back). Sending it
    records nothing: the request counts as delivered only once the asker acks it."""
    request = context.state.steering.get(request_id)
    if request is None or request.open or request.delivered:
        return None
    if request.asker not in context.state.presence.online:
        return None
    return Delivery(encode(reply_frame(context, request)), frozenset({request.asker}))


def push_end(call: Call, request_id: str) -> bool:
    """Add the reply for an ended request to `call`'s outcome if its asker is connected now;
    whether it was added."""
    delivery = deliver_ended(call.context, request_id)
    if delivery is not None:
        call.outcome.deliveries.append(delivery)
    return delivery is not None


def _emit_end(call: Call, event: Event) -> bool:
    """Apply an end and push the reply to a connected asker; whether it was sent."""
    call.emit(event)
    return push_end(call, event.data["id"])


def steer_ask(call: Call) -> None:
    context = call.context
    book = context.state.steering
    f = call.frame
    default = f.get("default")
    if default is not None and not isinstance(default, str):
        raise BadFrame("Malformed frame: 'default' must be a string.")
    decided = book.decide_ask(
        call.sender, context.clock(),
        question=text_field(f, "question") or text_field(f, "payload"),
        context=text_field(f, "context"), choices=strings_field(f, "choices"), default=default,
        timeout=number_field(f, "timeout_seconds"), task_id=text_field(f, "task_id"),
        session=text_field(f, "session"), key=text_field(f, "request_key"))
    if isinstance(decided, Refusal):
        call.deny("error", decided)
        return
    if isinstance(decided, Request):  # the same key again: the same request
        _opened(call, decided, again=True)
        push_end(call, decided.id)  # its end again, if not yet acked
        return
    call.emit(decided)
    request = book.get(decided.data["id"])
    assert request is not None
    _opened(call, request, again=False)


def _opened(call: Call, request: Request, again: bool) -> None:
    text = (f"Request {request.id} is {request.state}." if again
            else f"Request {request.id} is open; the operator has been told.")
    call.reply("steer_opened", text, primary=True, id=request.id, state=request.state,
               created=request.created, timeout_at=request.timeout_at)


def steer_answer(call: Call) -> None:
    context = call.context
    request_id = text_field(call.frame, "id").strip()
    decided = context.state.steering.decide_answer(
        request_id, text_field(call.frame, "answer") or text_field(call.frame, "text"),
        call.sender, context.clock(), operator=call.operator)
    if isinstance(decided, Refusal):
        call.deny("error", decided, id=request_id)
        return
    if decided.kind == "steer_wait":  # a conflict stays open until the leases end
        call.emit(decided)
        waiting = context.state.steering.get(request_id)
        assert waiting is not None
        call.reply("steer_answered", f"{request_id} waits: it goes on by itself once the "
                   "leases in its way end, or at its deadline.", id=request_id,
                   asker=waiting.asker, sent=True, waiting=True)
        return
    sent = _emit_end(call, decided)
    request = context.state.steering.get(request_id)
    assert request is not None
    # A permission or conflict's asker is a run in this process: it hears the end at once.
    sent = sent or request.kind in RUN_KINDS
    told = "told" if sent else "will be told when it is back"
    call.reply("steer_answered", f"{request.asker} {told}.", id=request_id,
               asker=request.asker, sent=sent)


def steer_cancel(call: Call) -> None:
    context = call.context
    request_id = text_field(call.frame, "id").strip()
    decided = context.state.steering.decide_cancel(request_id, call.sender, context.clock(),
                                                   operator=call.operator)
    if isinstance(decided, Refusal):
        call.deny("error", decided, id=request_id)
        return
    _emit_end(call, decided)
    call.reply("steer_cancelled", f"Request {request_id} cancelled.", id=request_id)


def steer_ack(call: Call) -> None:
    context = call.context
    request_id = text_field(call.frame, "id").strip()
    decided = context.state.steering.decide_ack(request_id, call.sender, context.clock())
    if isinstance(decided, Refusal):
        call.deny("error", decided, id=request_id)
        return
    if decided is not None:
        call.emit(decided)
    call.reply("steer_acked", f"Request {request_id} delivered.", id=request_id,
               delivered=True)


def steer_get(call: Call) -> None:
    context = call.context
    book = context.state.steering
    request_id = text_field(call.frame, "id").strip()
    request = book.get(request_id) if request_id else book.by_key(
        call.sender, text_field(call.frame, "request_key"))
    if request is None:
        call.deny("error", Refusal("unknown_request", "No such steering request."),
                  id=request_id)
        return
    call.reply("steer_state", f"Request {request.id} is {request.state}.",
               request=_seen_by(call, request))
    if request.asker == call.sender and not request.open and not request.delivered:
        # the asker read the end: as good as an ack
        call.emit(Event("steer_delivered", {"id": request.id, "at": context.clock()}))


def steer_list(call: Call) -> None:
    book = call.context.state.steering
    requests = [_seen_by(call, r) for r in book.waiting()]
    if call.frame.get("ended"):
        requests += [_seen_by(call, r) for r in list(book.ended.values())[-50:]]
    call.reply("steer_requests", f"{len(book.open)} open request(s)", requests=requests)


def _seen_by(call: Call, request: Request) -> dict[str, Any]:
    """A request as `call`'s sender may see it: its answer and its context are for its asker
    and the operators (a person's decision for one agent, and what the agent showed the person
    to get it, are not every participant's to read); the question stays public."""
    shown = request.to_dict()
    if call.operator or call.sender == request.asker:
        return shown
    if request.answer is not None:
        shown["answer"] = None
        shown["answer_withheld"] = True
    if request.context:
        shown["context"] = ""
        shown["context_withheld"] = True
    return shown
