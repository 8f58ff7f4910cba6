"""Steering from a shell: `ask` (an agent asks and waits), `steering` and `answer` (a human).

`marrow-tui ask "question"` prints the answer on stdout and nothing else, so a script can write
`choice=$(marrow-tui ask "Deploy now?" --choices yes,no)`. It waits as long as it takes; if the
hub goes away meanwhile it connects again and picks its request up by key, so an answer given
in between is not lost.

Exit codes for `ask`: 0 an answer (or the default, after a timeout: stderr says so); 1 the
request was cancelled or timed out with no default, or the hub refused it; 2 bad usage; 3 the
hub could not be reached (for longer than --give-up-after). `steering` and `answer` use the
hub subcommands' codes (see docs/cli.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from marrow_tui.cli.common import (
    DEFAULT_CONNECT_TIMEOUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SubParsers,
    UsageError,
    add_hub_options,
    agent_key,
    default_name,
    duration,
    operator_token,
    run,
    ssl_context,
    usage_error,
)
from marrow_tui.cli.output import (
    INTERRUPTED,
    USAGE,
    connection_code,
    fail,
    pick,
    print_json,
    refusal,
    succeeded,
)
from marrow_tui.core.text import ago, printable, table
from marrow_tui.hub.defaults import default_uri

if TYPE_CHECKING:
    from marrow_tui.hub.client import Frame, HubClient

#: no answer: the request was cancelled, or timed out with no default, or the hub refused it
EXIT_NO_ANSWER = 1


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "ask", help="ask the operator a question and print the answer",
        description="Ask the operator a question and wait for the answer, which is printed "
                    "on stdout. The console shows the question at once (with the bell).")
    p.add_argument("question")
    p.add_argument("--context", default="", help="what the operator needs to know to answer")
    p.add_argument("--choices", default="", metavar="A,B,C",
                   help="offer these answers as buttons (the operator may still type another)")
    p.add_argument("--timeout", dest="deadline", type=duration, default=None,
                   metavar="DURATION",
                   help="the question's deadline: stop waiting after this long (90s, 30m, 2h)")
    p.add_argument("--default", default=None,
                   help="the answer to use when --timeout passes with no answer")
    p.add_argument("--task", default=os.environ.get("MARROW_ISSUE", ""), metavar="ID",
                   help="the task, claim or issue the question is about (default: "
                        "$MARROW_ISSUE inside an issue's run)")
    p.add_argument("--key", default=None,
                   help="your own key for this question: asking again with the same key finds "
                        "the same request (default: from $MARROW_SESSION and the question)")
    p.add_argument("--give-up-after", type=duration, default=3600.0, metavar="DURATION",
                   help="if the hub cannot be reached for this long, exit 3 (default 1h)")
    # The hub options, but --timeout is the question's deadline here (what people asking
    # expect); connecting has its own --connect-timeout, as on every hub command.
    group = p.add_argument_group("hub connection")
    group.add_argument("--uri", default=default_uri(),
                       help="hub address (env MARROW_HUB_URI; default %(default)s)")
    group.add_argument("--name", default=default_name(),
                       help="who asks (env MARROW_AGENT; default cli/<user>)")
    group.add_argument("--token", default=os.environ.get("MARROW_TOKEN"),
                       help="connect token of a secured hub (env MARROW_TOKEN)")
    group.add_argument("--cafile", default=None, help="CA bundle to verify a wss:// hub")
    group.add_argument("--json", action="store_true",
                       help="print the outcome as one JSON object instead of the answer")
    group.add_argument("--connect-timeout", type=duration,
                       default=DEFAULT_CONNECT_TIMEOUT, metavar="DURATION",
                       help="for connecting and for the hub to take the question (default 10s)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("steering", help="list the questions agents are waiting on",
                       description="List open steering requests, the longest-waiting first; "
                                   "`steering cancel ID` ends one unanswered (its asker, or "
                                   "an operator).")
    p.add_argument("action", nargs="?", choices=("list", "cancel"), default="list")
    p.add_argument("id", nargs="?", default="", metavar="ID",
                   help="the request to cancel")
    p.add_argument("--all", action="store_true", help="also the recently ended ones")
    p.add_argument("--park", action="store_true",
                   help="with cancel: also stop the issue whose run asked it and park it "
                        "until it is retried (its agent is not run again only to ask again)")
    add_hub_options(p)
    p.set_defaults(func=cmd_steering)

    p = sub.add_parser("answer", help="answer an agent's question",
                       description="Answer a steering request; its agent gets the answer at "
                                   "once, or as soon as it connects again.")
    p.add_argument("id", metavar="ID", help="the request, as `marrow-tui steering` shows it")
    p.add_argument("text", metavar="TEXT", help="the answer ('-' reads it from stdin)")
    add_hub_options(p)
    p.set_defaults(func=cmd_answer)


# ---- ask ---------------------------------------------------------------------------------


def request_key(args: argparse.Namespace) -> str:
    import hashlib
    import uuid

    if args.key:
        return str(args.key)
    # The same question from the same issue or agent (inside a run marrow-tui started), or
    # from the same run, is the same request while it is pending or its answer is not yet
    # received: a run started again after a restart picks up the question (and an answer given
    # meanwhile) instead of asking twice. A received answer is reused only by the run that
    # received it (a retry just after), so a later run asking the same thing asks afresh.
    session = os.environ.get("MARROW_ASK_SCOPE") or os.environ.get("MARROW_SESSION")
    if session:
        digest = hashlib.sha256(f"{args.question}\0{args.context}".encode()).hexdigest()[:16]
        return f"{session}:{digest}"
    return uuid.uuid4().hex


def cmd_ask(args: argparse.Namespace) -> int:
    import asyncio

    from marrow_tui.hub.client import HubConnectionError, Refused

    if not args.question.strip():
        return usage_error(args, "the question is empty")
    if args.default is not None and args.deadline is None:
        return usage_error(args, "--default needs --timeout (the question's deadline)")
    try:
        context = ssl_context(args.cafile)
    except UsageError as exc:
        return fail(args.json, EXIT_USAGE, USAGE, str(exc))
    options: dict[str, Any] = {
        "context": args.context, "task_id": args.task,
        # the run that asks: an answer it already received is found again by the key only
        # by the same run (the key's scope may be the whole issue)
        "session": os.environ.get("MARROW_SESSION", ""),
        "choices": [c.strip() for c in args.choices.split(",") if c.strip()],
        "timeout_seconds": args.deadline, "default": args.default,
    }
    try:
        reply = asyncio.run(_ask(args, request_key(args), options, context))
    except KeyboardInterrupt:
        return fail(args.json, EXIT_INTERRUPTED, INTERRUPTED, "interrupted")
    except Refused as exc:
        code, reason, said = refusal(exc, args.uri)
        return fail(args.json, EXIT_NO_ANSWER, code, reason, said)
    except HubConnectionError as exc:
        return fail(args.json, EXIT_UNREACHABLE, connection_code(exc), exc.message)
    return _answered(reply, args.json)


def _answered(reply: Frame, json_wanted: bool) -> int:
    """Print how the question ended; the exit code."""
    state = reply.get("state")
    answered = state == "answered" or (state == "timed_out" and reply.get("default_used"))
    if not answered:
        why = "timed out with no answer" if state == "timed_out" else f"was {state}"
        return fail(json_wanted, EXIT_NO_ANSWER, str(state),
                    f"request {reply.get('id')} {why}")
    if state == "timed_out":
        print(printable(f"marrow-tui: no answer to {reply.get('id')} in time; using the "
                        "default"), file=sys.stderr)
    if json_wanted:
        print_json(succeeded(pick(reply, "id", "state", "answer", "answered_by",
                                  "default_used")))
    else:
        # The answer keeps its lines (a script reads them) but no escape sequence reaches
        # the terminal it may be shown on.
        print(printable(str(reply.get("answer", "")), lines=True))
    return EXIT_OK


async def _ask(args: argparse.Namespace, key: str, options: dict[str, Any],
               ssl: Any) -> Frame:
    """Ask, and wait; across lost connections, ask again by key until there is an end."""
    import asyncio

    from marrow_tui.hub.client import HubClient, HubConnectionError, HubRefused, Refused

    away_since: float | None = None
    told = False
    delay = 0.5
    while True:
        try:
            async with HubClient(args.uri, args.name, token=args.token, ssl=ssl,
                                 open_timeout=args.connect_timeout,
                                 request_timeout=args.connect_timeout,
                                 operator_token=operator_token(args),
                                 agent_key=agent_key(args.name)) as hub:
                away_since, delay = None, 0.5
                if told:
                    print("marrow-tui: connected again; still waiting", file=sys.stderr)
                    told = False
                return await hub.ask_and_wait(args.question, request_key=key, **options)
        except Refused:
            raise
        except HubConnectionError as exc:
            if isinstance(exc, HubRefused) and exc.code in (4010, 4016):
                raise  # a wrong secret, or a name only its agent may take: waiting won't help
            now = time.monotonic()
            away_since = away_since or now
            if now - away_since >= args.give_up_after:
                raise
            if not told:
                print(printable(f"marrow-tui: {exc.message}; trying again (the question "
                                "stays open)"), file=sys.stderr)
                told = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


# ---- steering, answer ----------------------------------------------------------------------


def cmd_steering(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.park:
            return usage_error(args, "--park goes with `steering cancel ID`")
        return run(args, _do_list, render_requests,
                   lambda frame: {"requests": list(frame.get("requests") or [])})
    if not args.id.strip():
        return usage_error(args, "steering cancel needs the request ID")
    if args.park:
        return run(args, lambda hub, a: hub.issue_cancel(request=a.id.strip()),
                   lambda f, a: f"cancelled {f.get('id')}; {f.get('identifier')} is parked "
                                "until it is retried",
                   lambda frame: pick(frame, "id", "identifier"))
    return run(args, lambda hub, a: hub.steer_cancel(a.id.strip()),
               lambda f, a: f"cancelled {f.get('id')}", lambda frame: pick(frame, "id"))


async def _do_list(hub: HubClient, args: argparse.Namespace) -> Frame:
    return await hub.steer_list(ended=args.all)


def render_requests(frame: Frame, args: argparse.Namespace) -> str:
    requests = frame.get("requests") or []
    if not requests:
        return "nobody is waiting for an answer"
    now = time.time()
    rows = []
    for r in requests:
        waited = (r.get("ended") or now) - r["created"]
        state = r["state"] if r["state"] != "open" else (
            f"open, {ago(r['timeout_at'] - now)} left" if r.get("timeout_at")
            else "open")
        rows.append([r["id"], r["asker"], ago(waited), state, r.get("task_id") or "-",
                     " ".join(r["question"].split())[:70]])
    # A permission request (or a conflict) takes one of its choices, word for word: say them.
    asks = {"permission": "asks permission", "conflict": "asks about a conflict"}
    choices = [f"{r['id']} {asks[r['kind']]}: answer with one of "
               + ", ".join(f'"{c}"' for c in r.get("choices") or ())
               for r in requests if r.get("kind") in asks and r["state"] == "open"]
    return "\n".join([table(["ID", "ASKER", "WAITED", "STATE", "ABOUT", "QUESTION"], rows),
                      *choices])


def cmd_answer(args: argparse.Namespace) -> int:
    if args.text == "-":
        args.text = sys.stdin.read()
    if not args.text.strip():
        return usage_error(args, "the answer is empty; nothing was sent")
    return run(args, lambda hub, a: hub.steer_answer(a.id, a.text),
               lambda f, a: f"answered {f.get('id')}: {f.get('asker')} "
                            + ("is connected and was sent it" if f.get("sent")
                               else "gets it as soon as it connects again"),
               lambda frame: {**pick(frame, "id", "asker"), "delivered": bool(frame.get("sent"))})
