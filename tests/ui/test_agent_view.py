"""The agent view: an ACP run's transcript opened from the Sessions pane, read from a real
file written by the runner's own writer, followed as it grows, searched; and what the Sessions
pane says of ACP runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from marrow_tui.core.events import Event
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.panes.sessions import SessionsTable
from marrow_tui.ui.screens.agent import AgentScreen
from marrow_tui.ui.screens.log import LogScreen
from marrow_tui.ui.transcript.blocks import Blocks
from marrow_tui.ui.transcript.reader import TranscriptReader
from marrow_tui.ui.transcript.widget import FOLLOW_KEEP_LINES, TranscriptLog
from tests.support.console_app import ConsoleApp, filled, until
from tests.support.transcripts import (
    UPDATES_PER_TURN,
    acp_run_events,
    append,
    seed_acp_run,
    text,
    tool,
    write_transcript,
)

WAIT = 10.0
SID = "DEMO-1-20270115-075800-000"


def acp_app(transcript: Path, **run: Any) -> ConsoleApp:
    def seed(runtime: Any) -> None:
        seed_acp_run(runtime, acp_run_events(SID, "DEMO-1", transcript, **run))

    return ConsoleApp(seeded=False, seed_with=seed)


async def open_view(pilot: Any, app: ConsoleApp) -> TranscriptLog:
    await filled(pilot, app)
    await until(pilot, lambda: app.main.check_action("open_log", ()))
    await pilot.press("enter")
    screen = await until(pilot, lambda: isinstance(app.screen, AgentScreen) and app.screen)
    log = screen.query_one(TranscriptLog)
    await until(pilot, lambda: log.lines_text())
    return log


async def test_enter_on_an_acp_run_opens_its_transcript(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", extra=[
        text("user_message_chunk", "Fix the login bug"),
        text("agent_thought_chunk", "Reading first."),
        text("agent_message_chunk", "I will "),
        text("agent_message_chunk", "read the code."),
        tool("tool_call", "c1", title="Read src/auth/login.py", kind="read",
             status="pending", locations=[{"path": "src/auth/login.py"}]),
        {"sessionUpdate": "plan", "entries": [
            {"content": "read", "priority": "high", "status": "completed"},
            {"content": "fix", "priority": "high", "status": "in_progress"}]},
        text("agent_message_chunk", "Found it."),
    ])
    app = acp_app(path, doing="Read src/auth/login.py", usage={"total": 12345})
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        lines = log.lines_text()
        assert "▌ Fix the login bug" in lines
        assert "Reading first." in lines
        assert "I will read the code." in lines  # chunks joined into one paragraph
        assert "○ read    Read src/auth/login.py" in lines  # its path is in its title
        assert [line for line in lines if line.startswith("  [")] == ["  [x] read",
                                                                      "  [~] fix"]
        assert "Found it." in lines
        title = str(app.screen.query_one("#agent-title").render())
        assert SID in title and "1 turn" in title and "Read src/auth/login.py" in title
        await pilot.press("escape")
        assert not isinstance(app.screen, AgentScreen)


async def test_a_plain_run_still_opens_its_output(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    out.write_text("hello\n")

    def seed(runtime: Any) -> None:
        seed_acp_run(runtime, [Event("session_start", {
            "id": "a-1", "agent": "a", "started": 1.0, "stdout": str(out),
            "stderr": str(out), "tasks": []})])

    app = ConsoleApp(seeded=False, seed_with=seed)
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: app.main.check_action("open_log", ()))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))


async def test_a_tool_call_row_changes_in_place(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", extra=[
        tool("tool_call", "c1", title="Run the tests", kind="execute", status="pending"),
        text("agent_message_chunk", "Waiting on the tests."),
    ])
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        assert log.lines_text()[0] == "○ execute Run the tests"
        append(path, tool("tool_call_update", "c1", status="completed", content=[
            {"type": "diff", "path": "a.py", "oldText": "x = 1\n", "newText": "x = 2\n"}]))
        await until(pilot, lambda: log.lines_text()[0].startswith("✓"))
        lines = log.lines_text()
        assert lines[0] == "✓ execute Run the tests  a.py"  # where it was first seen
        assert "    -x = 1" in lines and "    +x = 2" in lines
        assert lines[-1] == "Waiting on the tests."


async def test_it_follows_the_file_as_it_grows_until_scrolled_up(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 600)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        assert log.following and log.scroll_y == log.max_scroll_y > 0
        append(path, text("agent_message_chunk", "\nnews from the agent"))
        await until(pilot, lambda: log.visible_text()[-1:] == ["news from the agent"])
        await pilot.press("pageup")
        assert not log.following
        top = log.scroll_y
        append(path, text("agent_message_chunk", "\nmore news"))
        await until(pilot, lambda: log.lines_text()[-1] == "more news")
        assert log.scroll_y == top and "more news" not in log.visible_text()
        await pilot.press("G")
        assert log.following
        await until(pilot, lambda: log.visible_text()[-1:] == ["more news"])


async def test_a_rotated_transcript_is_read_again(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", extra=[
        text("agent_message_chunk", "before the rotation")])
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        os.replace(path, path.with_name("t.jsonl.1"))
        append(path, text("agent_message_chunk", "\nafter the rotation"))
        await until(pilot, lambda: log.lines_text()[-1:] == ["after the rotation"])
        # scrolling up reads the rotated file
        await pilot.press("g")
        await until(pilot, lambda: "before the rotation" in log.lines_text())


async def test_search_finds_the_next_and_the_previous_match(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 300)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        await pilot.press("slash", *"turn 3", "enter")
        first = await until(pilot, lambda: log.match_line is not None and log.match_line)
        assert "turn 3" in log.line_text(first).lower()
        assert log.line_text(first) in log.visible_text() and not log.following
        await pilot.press("n")
        second = log.match_line
        assert second != first and "turn 3" in log.line_text(second).lower()
        await pilot.press("N")
        assert log.match_line == first


async def test_a_huge_transcript_opens_on_its_tail(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 700 * UPDATES_PER_TURN)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        assert log.lines_text()[-1] == "Done with turn 700."
        assert log.records_read < 2_000  # only the tail was read
        assert log.visible_text()[-1] == "Done with turn 700."


async def test_a_view_left_following_a_fast_agent_holds_what_a_fresh_one_does(
        tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 300)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        opened = len(log.lines_text())
        for n in range(FOLLOW_KEEP_LINES // 100 + 1):  # each append: a hundred new lines
            append(path, *[text("agent_message_chunk", f"\nline {n}.{i}") for i in range(100)])
            await until(pilot, lambda n=n: log.lines_text()[-1] == f"line {n}.99")
        assert len(log.lines_text()) < FOLLOW_KEEP_LINES  # opened again on the tail
        assert log.following and log.visible_text()[-1] == f"line {n}.99"
        await pilot.press("g")  # what it let go of is read back from the file
        await until(pilot, lambda: "Done with turn 1." in log.lines_text())
        assert len(log.lines_text()) > opened


def test_the_reader_reads_back_through_the_rotated_files(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 2_000, max_bytes=64 * 1024)
    assert path.with_name("t.jsonl.2").exists()
    reader = TranscriptReader(path, chunk_bytes=4096)
    records = reader.open_tail()
    while more := reader.earlier():
        records[:0] = more
    assert reader.at_start
    on_disk = sum(len(path.with_name(name).read_bytes().splitlines())
                  for name in ("t.jsonl", "t.jsonl.1", "t.jsonl.2"))
    assert len(records) == on_disk
    assert [r.at for r in records] == sorted(r.at for r in records)


def test_a_bad_line_says_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    first = b'{"at": 1, "update": {"sessionUpdate": "plan", "entries": []}}\n'
    path.write_bytes(first + b"not json\n")
    [good, bad] = TranscriptReader(path).open_tail()
    assert good.update["sessionUpdate"] == "plan" and not good.problem
    assert bad.problem == f"the line at byte {len(first)} of {path} is not JSON"


async def test_the_sessions_pane_says_what_an_acp_run_does(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", 10)

    def seed(runtime: Any) -> None:
        seed_acp_run(runtime, acp_run_events(
            SID, "DEMO-1", path, turns=3, doing="Edit src/auth/login.py",
            usage={"input": 10_000, "output": 2_345, "total": 12_345, "cost": 0.42,
                   "currency": "USD"}))
        seed_acp_run(runtime, acp_run_events("DEMO-2-1", "DEMO-2", path, ended="ok",
                                             usage={"total": 950}))

    app = ConsoleApp(seeded=False, seed_with=seed)
    async with app.run_test(size=(160, 30)) as pilot:
        await filled(pilot, app)
        table = app.main.tables["sessions"]
        assert isinstance(table, SessionsTable)

        def line(sid: str) -> str:
            key = next(k for k in table.keys if table.session_id(k) == sid)
            return str(table._shown_cells(key)[6])

        assert line(SID) == "Edit src/auth/login.py · 3 turns · 12.3k tok · $0.42"
        assert line("DEMO-2-1") == "Done. · 1 turn · 950 tok"
        # a question from the run: it waits for the operator
        app.runtime.handle("DEMO-1", {"type": "steer_ask", "question": "Staging or mock?",
                                      "session": SID}, None)
        await until(pilot, lambda: line(SID).startswith("waiting for you · "))


def _shown(blocks: Blocks) -> list[tuple[str, bool, list[str]]]:
    return [(b.kind, b.gap, [line.text.plain for line in b.lines()]) for b in blocks.blocks]


def test_reading_back_in_pieces_shows_what_reading_in_order_shows(tmp_path: Path) -> None:
    """Blocks put before others as the view reads back give the same picture as reading the
    whole transcript in order: tool calls merged at their first sighting (whatever piece their
    updates are in), one plan, text joined across the pieces."""
    path = write_transcript(tmp_path / "t.jsonl", 200, extra=[
        text("agent_message_chunk", "still "),
        tool("tool_call_update", "call-1-0", status="failed"),  # a call from the first turn
        text("agent_message_chunk", "going"),
    ])
    records = TranscriptReader(path).open_tail()
    whole = Blocks()
    whole.extend(records)
    for cuts in ([150], [7, 60, 61, 199], list(range(10, 200, 13))):
        pieces = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
        built = Blocks()
        built.extend(pieces[-1])
        for piece in reversed(pieces[:-1]):
            built.prepend(piece)
        assert _shown(built) == _shown(whole), cuts
    assert _shown(whole)[-1][2][-1].endswith("to still going")  # one paragraph


async def test_a_transcript_that_does_not_exist_yet_shows_once_written(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: app.main.check_action("open_log", ()))
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, AgentScreen) and app.screen)
        assert "no transcript yet" in str(screen.query_one("#agent-title").render())
        log = screen.query_one(TranscriptLog)
        write_transcript(path, extra=[text("agent_message_chunk", "hello")])
        await until(pilot, lambda: log.lines_text() == ["hello"])


async def test_run_keys_in_the_list_and_the_view(tmp_path: Path) -> None:
    """Stop asks first, from the list and from the view; prompt opens a form (the run is
    running and speaks ACP); cancel-turn is there while a turn is under way."""
    from marrow_tui.ui.modals.confirm import ConfirmModal
    from marrow_tui.ui.modals.form import FormModal

    path = write_transcript(tmp_path / "t.jsonl", 30)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await filled(pilot, app)
        main = app.main
        await until(pilot, lambda: main.check_action("stop_run", ()))
        assert main.check_action("prompt_session", ())
        assert main.check_action("cancel_turn", ())
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, AgentScreen) and app.screen)
        assert screen.check_action("run", ("stop_run",))
        assert screen.check_action("run", ("prompt_session",))
        assert screen.check_action("run", ("cancel_turn",))
        await pilot.press("i")
        assert isinstance(app.screen, FormModal)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert app.screen is screen


async def test_scrolling_up_stops_following_even_when_the_file_grows_meanwhile(
        tmp_path: Path) -> None:
    """A scroll up animates: what the live file gained, read before the animation's first
    step, must not pull the view back to the tail (under a busy stream the key was lost)."""
    path = write_transcript(tmp_path / "t.jsonl", 600)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_view(pilot, app)
        for action in (log.action_page_up, log.action_scroll_up):
            await until(pilot, lambda: log.following and log.scroll_y == log.max_scroll_y)
            append(path, text("agent_message_chunk", f"\nnews after {action.__name__}"))
            action()
            log.poll()  # in the same step: before the animation moved anything
            await until(pilot, lambda: log.scroll_target_y == log.scroll_y)  # it ended
            assert not log.following and log.scroll_y < log.max_scroll_y
            await pilot.press("G")


async def test_a_in_the_view_answers_what_the_run_waits_for(tmp_path: Path) -> None:
    """The view says "waiting for you": `a` opens that request's dialog, right there."""
    path = write_transcript(tmp_path / "t.jsonl", 5)
    app = acp_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot, app)
        screen = app.screen
        assert isinstance(screen, AgentScreen)
        assert not screen.check_action("run", ("answer_request",))
        runtime = app.runtime
        event = runtime.state.steering.decide_ask(
            "DEMO-1", runtime.clock(), question="Allow execute: make test?",
            choices=["Allow once", "Reject"], session=SID, kind="permission")
        assert isinstance(event, Event)
        seed_acp_run(runtime, [event])
        await until(pilot, lambda: screen.check_action("run", ("answer_request",)))
        await pilot.press("a")
        modal = await until(pilot, lambda: isinstance(app.screen, AnswerModal) and app.screen)
        assert modal.question == "Allow execute: make test?"
