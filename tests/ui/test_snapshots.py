"""Snapshot tests (pytest-textual-snapshot): the main screen, each dialog, the empty state, and
an 80x24 and a wide layout. Fixed data, a fake clock and UTC, so the pictures are stable.

A failing snapshot is looked at (snapshot_report.html) before `pytest --snapshot-update`.
"""

from __future__ import annotations

import pytest

from tests.support.console_app import ConsoleApp, SessionsConsoleApp, filled, utc

TMUX = (80, 24)
MEDIUM = (110, 32)
WIDE = (170, 46)


@pytest.fixture(autouse=True)
def _utc() -> None:
    utc()


def after(*keys: str, select: tuple[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A run_before that waits for the tables to fill, optionally selects a row, then types."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await filled(pilot, app)
        if select is not None:
            pane, key = select
            await pilot.press({"agents": "1", "claims": "2", "board": "3"}[pane])
            await pilot.pause()
            table = app.main.tables[pane]
            table.move_cursor(row=table.get_row_index(key))
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return run_before


def test_main_screen_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=TMUX, run_before=after())


def test_main_screen_wide_shows_every_pane(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=WIDE, run_before=after())


def test_empty_state(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(seeded=False), terminal_size=TMUX, run_before=after())


@pytest.mark.parametrize("pane", ["1", "3", "4"])
def test_each_pane(snap_compare, pane: str) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM, run_before=after(pane))


def test_handoff_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("h", select=("claims", "T1")))


def test_release_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("r", select=("claims", "T1")))


def test_force_release_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("R", select=("claims", "T1")))


def test_declare_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM, run_before=after("d"))


def test_status_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("s", select=("board", "P2")))


def test_message_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("m", select=("agents", "demo/bob")))


def test_task_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("enter", select=("board", "P3")))


def test_lease_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM,
                        run_before=after("enter", select=("claims", "T1")))


def test_help(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=MEDIUM, run_before=after("question_mark"))


def test_quit_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(), terminal_size=TMUX, run_before=after("q"))


def _on_sessions(*keys: str, row: int | None = None):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await filled(pilot, app)
        if row is not None:
            app.main.tables["sessions"].move_cursor(row)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return run_before


def test_sessions_pane(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """With agents configured, the console opens on their runs."""
    assert snap_compare(SessionsConsoleApp(), terminal_size=MEDIUM, run_before=_on_sessions())


def test_sessions_wide(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(SessionsConsoleApp(), terminal_size=WIDE, run_before=_on_sessions())


def test_session_output_view(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(SessionsConsoleApp(), terminal_size=TMUX,
                        run_before=_on_sessions("enter", row=2))


def test_stop_run_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(SessionsConsoleApp(), terminal_size=TMUX,
                        run_before=_on_sessions("x", row=2))


def test_add_task_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(SessionsConsoleApp(), terminal_size=TMUX,
                        run_before=_on_sessions("t", "f", "i", "x"))


def test_steering_pane(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Agents waiting on answers: the console opens on them."""
    assert snap_compare(ConsoleApp(asks=True), terminal_size=TMUX, run_before=after())


def test_answer_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(asks=True), terminal_size=MEDIUM, run_before=after("a"))


def _permission_app() -> ConsoleApp:
    """An ACP run's agent waiting for permission to run a command, as AgentSession asks (its
    detail as AgentSession writes it: the tool call, the command, a diff, the paths)."""

    def seed(runtime) -> None:  # type: ignore[no-untyped-def]
        from tests.support.transcripts import seed_acp_run

        asked = runtime.state.steering.decide_ask(
            "ACP-1", runtime.clock() - 42, question="Allow execute: python -m unittest -q?",
            context="execute: python -m unittest -q\n\n$ python -m unittest -q\n\n"
                    "--- textkit/slug.py\n"
                    "-    return \"\".join(c if c.isalnum() else \"-\" for c in text.lower())\n"
                    "+    return re.sub(r\"[^a-z0-9]+\", \"-\", text.lower())\n\n"
                    "Paths: textkit/slug.py",
            choices=["Allow once", "Always allow", "Reject"], default="Reject", timeout=600,
            task_id="ACP-1", session="ACP-1-20270115-075800-000",
            key="permission:ACP-1-20270115-075800-000:call_7:1", kind="permission")
        seed_acp_run(runtime, [asked])

    return ConsoleApp(seeded=False, seed_with=seed)


def test_permission_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """A permission request: the command bold, the diff coloured, the options as buttons, no
    text box."""
    assert snap_compare(_permission_app(), terminal_size=MEDIUM, run_before=after("a"))


def test_permission_dialog_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """In a small terminal the detail scrolls; the options and the hint stay in sight."""
    assert snap_compare(_permission_app(), terminal_size=TMUX, run_before=after("a"))


def test_wide_while_someone_waits(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(asks=True, sessions=True), terminal_size=WIDE,
                        run_before=after())


def _on_issues(*keys: str, row: str | None = None):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await filled(pilot, app)
        if row is not None:
            table = app.main.tables["issues"]
            table.move_cursor([k.rsplit("\x1f", 1)[-1] for k in table.keys].index(row))
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return run_before


def test_issues_pane(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """With an orchestrator, the console opens on its issues: one in each status."""
    assert snap_compare(ConsoleApp(issues=True), terminal_size=MEDIUM, run_before=_on_issues())


def test_new_issue_dialog(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(issues=True), terminal_size=MEDIUM,
                        run_before=_on_issues("n", *"Add a README"))


def test_issue_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(issues=True), terminal_size=MEDIUM,
                        run_before=_on_issues("enter", row="OPS-7"))


def test_issues_wide(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Issues share the bottom row with the sessions (their runs)."""
    assert snap_compare(ConsoleApp(issues=True), terminal_size=WIDE, run_before=_on_issues())


def test_services_pane(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(seeded=False, services=True), terminal_size=MEDIUM,
                        run_before=after())


def test_services_wide(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """A config with services only: four panes and the services' row."""
    assert snap_compare(ConsoleApp(services=True), terminal_size=WIDE, run_before=after())


def _agent_view_app() -> ConsoleApp:
    """An ACP run with a fixed transcript (the runner's writer, a fixed clock)."""
    import tempfile
    from pathlib import Path

    from tests.support.transcripts import (
        UPDATES_PER_TURN,
        acp_run_events,
        seed_acp_run,
        write_transcript,
    )

    path = write_transcript(Path(tempfile.mkdtemp(prefix="marrow-transcript-")) / "t.jsonl",
                            2 * UPDATES_PER_TURN + 12)

    def seed(runtime) -> None:  # type: ignore[no-untyped-def]
        seed_acp_run(runtime, acp_run_events(
            "DEMO-1-20270115-075800-000", "DEMO-1", path, turns=3,
            doing="Edit src/auth/login.py",
            usage={"input": 10_000, "output": 2_345, "total": 12_345, "cost": 0.42,
                   "currency": "USD"}))

    return ConsoleApp(seeded=False, seed_with=seed)


def test_agent_view(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """An ACP run's transcript: the header, text, thoughts, tool rows, a diff, the plan."""
    assert snap_compare(_agent_view_app(), terminal_size=MEDIUM,
                        run_before=_on_sessions("enter"))


def _diff_view_app() -> ConsoleApp:
    """DEMO-1's work, a real git diff (a change, a new file, a delete, a rename, a binary),
    served as the orchestrator's review verbs answer (tests/support/review.py)."""
    import tempfile
    from pathlib import Path

    from tests.support.review import ReviewVerbs, git_workspace, review_stat

    workspace = git_workspace(Path(tempfile.mkdtemp(prefix="marrow-review-")))

    def seed(runtime) -> None:  # type: ignore[no-untyped-def]
        ReviewVerbs(runtime, {("DEMO-1", "base"): workspace.against_base,
                              ("DEMO-1", "review"): workspace.since_review})
        review_stat(runtime, "DEMO-1", 5, 4, 2)

    return ConsoleApp(issues=True, seed_with=seed)


def _on_diff(*keys: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        from marrow_tui.ui.screens.diff import DiffScreen

        from tests.support.console_app import until

        await _on_issues("v", row="DEMO-1")(pilot)
        await until(pilot, lambda: isinstance(pilot.app.screen, DiffScreen)
                    and not pilot.app.screen.asking)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return run_before


def test_diff_view_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """The files with +N/-M, and a modified file's hunks, numbered and coloured."""
    assert snap_compare(_diff_view_app(), terminal_size=TMUX,
                        run_before=_on_diff("right_square_bracket", "right_square_bracket",
                                            "right_square_bracket", "n", "down", "r"))


def test_diff_view_120x40(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_diff_view_app(), terminal_size=(120, 40),
                        run_before=_on_diff("left_square_bracket", "left_square_bracket"))


def _conflict_app() -> ConsoleApp:
    """demo/bob's run blocked by demo/alice's lease on src/auth/login.py (AUTH-3), as the
    runtime asks (tests/support/conflicts.py), both runs with transcripts."""
    import tempfile
    from pathlib import Path

    from tests.support.conflicts import seed_conflict

    logs = Path(tempfile.mkdtemp(prefix="marrow-conflict-")) / "logs"
    return ConsoleApp(seeded=False, seed_with=lambda runtime: seed_conflict(runtime, logs))


def _on_conflict(*keys: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        from marrow_tui.ui.screens.conflict import ConflictScreen
        from marrow_tui.ui.transcript.widget import TranscriptLog

        from tests.support.console_app import until

        await filled(pilot, pilot.app)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if isinstance(pilot.app.screen, ConflictScreen):  # both at their tool calls
            logs = pilot.app.screen.query(TranscriptLog)
            await until(pilot, lambda: all(log.match_line is not None for log in logs))
        await pilot.pause()

    return run_before


def test_conflict_dialog_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """A conflict: who holds which paths since when on which task, what each choice does,
    the edit; its four choices as buttons, no text box."""
    assert snap_compare(_conflict_app(), terminal_size=TMUX, run_before=_on_conflict("a"))


def test_conflict_side_by_side_120x40(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Both agents' transcripts, each at the tool call in question."""
    assert snap_compare(_conflict_app(), terminal_size=(120, 40),
                        run_before=_on_conflict("a", "t"))
