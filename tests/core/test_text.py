"""Log and terminal injection: identifiers refused at the wire, everything printed made safe.

A lone surrogate, a newline or an ESC in a field an agent sends must neither crash the
`--no-ui` printer, forge a log line, nor reach the operator's terminal as an escape sequence
(window title, clear screen, hyperlink). See docs/protocol.md §1.3.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.core.events import Event
from marrow_tui.core.text import (
    SafeFormatter,
    compact_count,
    cost_text,
    identifier_problem,
    plural,
    printable,
    short_path,
    tokens_text,
)
from marrow_tui.headless import EventPrinter
from marrow_tui.hub.client import HubClient
from marrow_tui.protocol.frames import Outcome

from tests.support.hub import Agent, Hub
from tests.support.hubproc import REPO, clean_env, hub_command, running_hub

CLI_TIMEOUT = 30.0
ESC = "\x1b"
#: what an agent might smuggle: a window title, clear screen + home, a hyperlink, a bell
TITLE = f"{ESC}]0;pwned{chr(7)}"
CLEAR = f"{ESC}[2J{ESC}[H"
LINK = f"{ESC}]8;;http://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\"
FORGED = "\n2030-01-01T00:00:00 release   prod-db held by ops"


# ---- the one function everything printed goes through --------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain task-7 ünïcödé 日本 😀", "plain task-7 ünïcödé 日本 😀"),
    (f"a{ESC}[2Jb", "a\\x1b[2Jb"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("two\nlines\r\tand a tab", "two\\nlines\\r\\tand a tab"),
    ("del\x7f c1\x85\x9b nul\x00", "del\\x7f c1\\x85\\x9b nul\\x00"),
    ("bidi \u202eevil\u202c \u2066x\u2069 \u200f",
     "bidi \\u202eevil\\u202c \\u2066x\\u2069 \\u200f"),
    ("line\u2028sep", "line\\u2028sep"),
])
def test_printable_escapes_controls_surrogates_and_bidi_on_one_line(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    printable(raw).encode("utf-8")  # strict: never a UnicodeEncodeError on a UTF-8 stream


def test_printable_keeps_line_breaks_and_tabs_when_asked_but_nothing_else() -> None:
    text = f"first\tcol\r\nsecond {ESC}[31mred\rthird \ud83d"
    assert printable(text, lines=True) == "first\tcol\nsecond \\x1b[31mred\\rthird \\ud83d"


def test_identifier_problem_names_what_is_wrong() -> None:
    assert identifier_problem("demo/task-7 with spaces & ünïcödé 😀") is None
    assert identifier_problem("a\nb") == "a control character (U+000A)"
    assert identifier_problem(f"x{ESC}") == "a control character (U+001B)"
    assert identifier_problem("\ud800") == "an unpaired surrogate (U+D800)"
    assert identifier_problem("a\u202eb") == "a bidirectional control (U+202E)"
    # invisible: two ids that look alike are alike
    assert identifier_problem("fz\ufeff342") == "an invisible format character (U+FEFF)"
    assert identifier_problem("T\u200b1") == "an invisible format character (U+200B)"


def test_a_path_may_join_visible_characters_and_nothing_else_may() -> None:
    family = "docs/\U0001F468\u200d\U0001F469\u200d\U0001F467.md"
    persian = "src/\u0645\u06cc\u200c\u0634\u0648\u062f.py"
    assert identifier_problem(family, joiners=True) is None
    assert identifier_problem(persian, joiners=True) is None
    # elsewhere, or not between two visible characters, a joiner is as invisible as any
    assert identifier_problem(family) == "an invisible format character (U+200D)"
    assert identifier_problem("\u200dsrc/a.py", joiners=True) == (
        "an invisible format character (U+200D)")
    assert identifier_problem("src/a\u200c", joiners=True) == (
        "an invisible format character (U+200C)")
    assert identifier_problem("a\u200d\u200bb", joiners=True) == (
        "an invisible format character (U+200D)")


def test_safe_formatter_keeps_one_record_on_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(logging.Formatter("%(levelname)s %(message)s")))
    log = logging.getLogger("marrow.test.safety")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("closing %s: it is not reading its frames", f"evil{FORGED}{TITLE}\ud800")
        try:
            raise ValueError(f"bad {CLEAR}")
        except ValueError:
            log.exception("failed on %s", "x")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert ESC not in text and "\ud800" not in text
    first = text.splitlines()[0]
    assert first.startswith("WARNING closing evil\\n2030-01-01T00:00:00 release")
    assert "\\x1b]0;pwned\\x07\\ud800: it is not reading its frames" in first
    assert "Traceback (most recent call last):" in text  # a traceback keeps its lines
    assert "ValueError: bad \\x1b[2J\\x1b[H" in text


# ---- the headless printer -------------------------------------------------------------------


def _claim(task_id: str, owner: str, worktree: str = "") -> Event:
    return Event("claim", {"task_id": task_id, "owner": owner, "epoch": 1, "paths": ["src/"],
                           "worktree": worktree})


def test_printer_escapes_each_line_and_one_bad_event_drops_no_other(
        caplog: pytest.LogCaptureFixture) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    printer = EventPrinter(out)
    events = [
        _claim("ok-1", "demo/alice"),
        _claim("\ud800", "demo/mallory", worktree="wt\ud800"),
        _claim(f"x{FORGED}", "demo/mallory"),
        Event("claim", {"task_id": "broken"}),  # a record a printer cannot describe
        Event("chat", {"msg_id": 3, "sender": "demo/eve", "target": f"{TITLE}\ud800",
                       "payload": f"hi{CLEAR}"}),
        _claim("ok-2", "demo/bob"),
    ]
    with caplog.at_level(logging.ERROR, logger="marrow.headless"):
        printer(events)
    lines = raw.getvalue().decode("utf-8").splitlines()
    text = "\n".join(lines)
    assert ESC not in text and chr(7) not in text
    assert [line.split()[2] for line in lines] == ["ok-1", "\\ud800", "x\\n2030-01-01T00:00:00",
                                                  "#3", "ok-2"]
    assert "scope=wt\\ud800:src/" in lines[1]
    assert all(not line.startswith("2030") for line in lines)
    assert any("could not print a claim event" in r.getMessage() for r in caplog.records)


def test_printer_survives_a_stream_that_cannot_encode_a_line() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", errors="strict", newline="\n")
    EventPrinter(out)([_claim("ok-1", "demo/alice"), _claim("tâche-ünïcödé", "demo/bob"),
                       _claim("ok-2", "demo/carol")])
    lines = raw.getvalue().decode("ascii").splitlines()
    assert [line.split()[2] for line in lines] == ["ok-1", "t\\xe2che-\\xfcn\\xefc\\xf6d\\xe9",
                                                  "ok-2"]


async def _until_line(process: subprocess.Popen[str], output: list[str], needle: str) -> str:
    """The first line of the hub's output holding `needle` (read by hubproc's pump thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        for line in output:
            if needle in line:
                return line
        if process.poll() is not None:
            break
        await asyncio.sleep(0.01)  # hands the pump thread the GIL; the wait is for the line
    raise AssertionError(f"no line with {needle!r} in:\n" + "".join(output))


async def test_no_ui_hub_refuses_bad_ids_and_keeps_printing_everyone_else(tmp_path: Path) -> None:
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as hub:
        mallory = await Agent.join(hub.uri, "demo/mallory")
        bob = await Agent.join(hub.uri, "demo/bob")
        bad = [
            {"type": "claim", "task_id": "\ud800", "paths": ["a/"]},
            {"type": "claim", "task_id": "t1", "worktree": "\ud800", "paths": ["b/"]},
            {"type": "claim", "task_id": f"t2{FORGED}", "paths": ["c/"]},
            {"type": "chat", "target": "\ud800", "payload": "hello"},
        ]
        for frame in bad:
            await mallory.send(**frame)
        await bob.send(type="claim", task_id="bob-task", paths=["src/"])
        await bob.until("claim_granted", task_id="bob-task")
        errors = [await mallory.until("error") for _ in bad]
        await mallory.ws.close()
        await bob.ws.close()
        await _until_line(hub.process, hub.output, "claim     bob-task by demo/bob")
    text = "".join(hub.output)
    assert "Traceback" not in text and "listener failed" not in text
    assert "2030-01-01" not in text and "claimed by demo/mallory" not in text
    assert [e["payload"].split("'")[1] for e in errors] == ["task_id", "worktree", "task_id",
                                                           "target"]


# ---- the wire -------------------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "field"), [
    ({"type": "claim", "task_id": f"a{ESC}[2J"}, "task_id"),
    ({"type": "claim", "id": "a\nb"}, "id"),
    ({"type": "claim", "task_id": "ok", "worktree": "w\ud800"}, "worktree"),
    ({"type": "claim", "task_id": "ok", "paths": ["src/", "a\u202eb"]}, "paths"),
    ({"type": "release", "task_id": "a\x85"}, "task_id"),
    ({"type": "chat", "target": f"demo/*{ESC}", "payload": "x"}, "target"),
    ({"type": "handoff", "task_id": "ok", "to_agent": "demo/b\n"}, "to_agent"),
    ({"type": "ledger_task", "task_id": "T1", "title": "x", "depends_on": ["T0\x00"]},
     "depends_on"),
    ({"type": "ledger_task", "task_id": "T1", "title": "x", "suggested_owner": TITLE},
     "suggested_owner"),
    ({"type": "ledger_progress", "task_id": "T1\r", "text": "x"}, "task_id"),
    ({"type": "steer_ask", "question": "ok?", "task_id": "T\ud800"}, "task_id"),
    ({"type": "steer_cancel", "id": f"s-1{ESC}"}, "id"),
    ({"type": "resource_offer", "kind": "gpu", "name": "a\tb"}, "name"),
    ({"type": "claim", "task_id": "T\ufeff1"}, "task_id"),
    ({"type": "steer_ask", "question": "ok?", "session": "\u200brun-1"}, "session"),
])
async def test_identifiers_with_controls_or_surrogates_are_refused_naming_the_field(
        hub: Hub, frame: dict[str, Any], field: str) -> None:
    agent = await hub.agent("demo/mallory")
    await agent.send(**frame)
    error = await agent.until("error")
    assert error["payload"].startswith(f"Malformed frame: '{field}' holds ")
    assert "identifiers may not contain" in error["payload"]
    state = hub.runtime.state
    assert not state.claims.claims and not state.board.tasks and not state.chat.history
    assert not state.steering.open


async def test_a_claim_on_a_path_with_joiners_is_granted(hub: Hub) -> None:
    agent = await hub.agent("demo/alice")
    path = "assets/\U0001F468\u200d\U0001F469.png"
    await agent.send(type="claim", task_id="T-1", worktree="main", paths=[path])
    assert (await agent.until("claim_granted"))["paths"] == [path]


async def test_free_text_may_hold_line_breaks(hub: Hub) -> None:
    agent = await hub.agent("demo/alice")
    note = "first line\nsecond line\twith a tab"
    await agent.send(type="claim", task_id="T-ünï 1", paths=["src/"], note=note)
    granted = await agent.until("claim_granted")
    assert granted["note"] == note
    await agent.send(type="chat", target="all", payload="hello\nworld")
    assert (await agent.until("chat"))["payload"] == "hello\nworld"


# ---- the CLI, as a user runs it ---------------------------------------------------------------


async def _cli(hub: Hub, *args: str, name: str = "cli/ops") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", *args, "--uri", hub.uri, "--name", name,
        "--state-dir", str(hub.state_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), "PYTHONIOENCODING": "utf-8"}, cwd=REPO)
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8"), err.decode("utf-8")


def _old_claim(hub: Hub, task_id: str, worktree: str) -> None:
    """A claim as a log written before identifiers were checked may hold it (or a hub that
    does not check, such as synapse's): decided by the core and applied as a replay would."""
    state = hub.runtime.state
    event = state.claims.decide_claim("demo/old", task_id, worktree=worktree, paths=["x/"],
                                      now=hub.clock())
    assert isinstance(event, Event)
    state.apply(event)
    hub.runtime.submit(Outcome(events=[event]))


async def test_state_board_and_steering_print_no_escape_sequences(hub: Hub) -> None:
    agent = await hub.agent("demo/alice")
    await agent.send(type="claim", task_id="T-1", paths=["src/"], note=f"see {TITLE} now")
    await agent.until("claim_granted")
    _old_claim(hub, f"old{CLEAR}\ud800", f"wt{FORGED}")
    await agent.send(type="ledger_task", task_id="T-1", title=f"title {CLEAR} {LINK}")
    await agent.until("ledger_task_posted")
    await agent.send(type="ledger_progress", task_id="T-1", text=f"progress {LINK}\u202eevil")
    await agent.until("ledger_progress_posted")
    await agent.send(type="steer_ask", question=f"deploy?{TITLE}\n{FORGED}", request_key="k1")
    await agent.until("steer_opened")
    await hub.runtime.settled()

    for command in (["state"], ["board"], ["steering"]):
        code, out, err = await _cli(hub, *command)
        assert code == 0, err
        assert ESC not in out and chr(7) not in out and "\u202e" not in out, (command, out)
        assert not any(line.startswith("2030") for line in out.splitlines()), out
    code, out, _ = await _cli(hub, "state")
    assert "old\\x1b[2J\\x1b[H\\ud800" in out and "wt\\n2030-01-01T00:00:00" in out
    assert "see \\x1b]0;pwned\\x07 now" in out

    code, out, err = await _cli(hub, "state", "--json")
    assert code == 0, err
    claims = {c["task_id"]: c for c in json.loads(out)["claims"]}
    assert f"old{CLEAR}\ud800" in claims  # JSON keeps the exact value, escaped by json.dumps
    assert ESC not in out


async def test_cli_prints_a_refusal_sentence_without_escapes(hub: Hub) -> None:
    async with HubClient(hub.uri, "demo/holder") as holder:
        await holder.claim("T-9", ["src/"])
        code, out, err = await _cli(hub, "release", f"T-9{TITLE}")
    assert code == 1
    assert "holds a control character (U+001B)" in err
    assert ESC not in err and chr(7) not in err


def test_plural_takes_the_irregular_form_when_given() -> None:
    assert [plural(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert [plural(n, "process", "processes") for n in (1, 2)] == ["1 process", "2 processes"]


def test_usage_texts() -> None:
    assert [compact_count(n) for n in (950, 12_345, 4_500_000)] == ["950", "12.3k", "4.5M"]
    assert tokens_text({"input": 1000, "output": 300}) == "1.3k tok"
    assert tokens_text({"context_used": 9000}) == ""  # occupancy is not spend
    assert [cost_text({"cost": c}) for c in (0.4199, 0.0013, 0)] == ["$0.42", "$0.0013", "$0.00"]
    assert cost_text({"cost": 2, "currency": "EUR"}) == "2.00 EUR"
    assert cost_text({}) == ""


def test_short_path_keeps_what_tells_checkouts_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ann")
    assert short_path("/home/ann/src/app") == "~/src/app"
    assert short_path("/home/annex/src") == "/home/annex/src"  # not ann's home
    assert short_path("/home/ann/agents/alice/checkout") == "~/agents/alice/checkout"
    assert short_path("/srv/marrow/state/agents/alice/checkout") == "…/alice/checkout"
    assert short_path("/a-very-long-single-folder-name-of-forty") == \
        "/a-very-long-single-folder-name-of-forty"  # nothing shorter says the same
