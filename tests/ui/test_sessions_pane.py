"""The Sessions pane driven by keys, on a real scheduler running real agent processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.modals.form import FormModal
from marrow_tui.ui.panes.sessions import SessionsTable
from marrow_tui.ui.screens.log import LogScreen

from tests.support.console_app import ConsoleApp, filled, until
from tests.support.scheduler import loaded, write_config

WAIT = 10.0


def ended(app: ConsoleApp, agent: str) -> list[Any]:
    return [s for s in app.runtime.state.sessions.of_agent(agent) if not s.running]


async def test_the_wake_key_starts_a_run(tmp_path: Path) -> None:
    config = loaded(write_config(tmp_path, {"a": "echo run $MARROW_SESSION\n"}))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and app.main.pane == "sessions"
        await until(pilot, lambda: ended(app, "a"))
        await pilot.press("w")
        runs = await until(pilot, lambda: len(ended(app, "a")) >= 2 and ended(app, "a"))
        newest = runs[0]
        assert newest.trigger == "woken from the console"
        assert newest.state == "ok" and newest.last_line == f"run {newest.id}"
        table = app.main.tables["sessions"]
        assert isinstance(table, SessionsTable)
        await until(pilot, lambda: any(table.session_id(k) == newest.id for k in table.keys))


async def test_a_task_added_by_key_reaches_the_next_prompt(tmp_path: Path) -> None:
    config = loaded(write_config(tmp_path, {"a": "cat > prompt.txt\n"}))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: ended(app, "a"))
        await pilot.press("t")
        assert isinstance(app.screen, FormModal)
        await pilot.press(*"ship the docs")
        await pilot.press("tab", *"with examples", "enter")
        queue = tmp_path / "ws" / "a" / "tasks" / "queue"
        await until(pilot, lambda: list(queue.glob("*.md")))
        await pilot.press("w")
        await until(pilot, lambda: len(ended(app, "a")) >= 2)
        prompt = (tmp_path / "ws" / "a" / "prompt.txt").read_text()
        assert "## ship the docs" in prompt and "with examples" in prompt


async def test_stop_key_asks_then_stops_the_run(tmp_path: Path) -> None:
    config = loaded(write_config(tmp_path, {"a": "echo working; exec sleep 600\n"}))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: app.runtime.state.sessions.running())
        # the state has the run a moment before the Sessions table shows it selected
        await until(pilot, lambda: app.main.check_action("stop_run", ()))
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # not yet
        assert app.runtime.state.sessions.running()
        await pilot.press("x", "y")
        [run] = await until(pilot, lambda: ended(app, "a"))
        assert run.state == "stopped"


async def test_enter_opens_the_output_and_follows_it(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    config = loaded(write_config(tmp_path, {
        "a": f'echo first; while [ ! -e "{gate}" ]; do sleep 0.02; done; echo second\n'}))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: app.runtime.state.sessions.running())
        # the state has the run a moment before the Sessions table shows it selected
        await until(pilot, lambda: app.main.check_action("open_log", ()))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, LogScreen)
        from textual.widgets import Log

        log = screen.query_one(Log)
        await until(pilot, lambda: "first" in log.lines)
        gate.touch()
        await until(pilot, lambda: "second" in log.lines)
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)


async def test_the_output_view_opens_on_the_tail_of_a_huge_log(tmp_path: Path) -> None:
    """A 30 MB log opens on its last lines at once (only the tail is ever read)."""
    config = loaded(write_config(tmp_path, {
        "a": "yes | head -n 300000 | awk '{printf \"line %d %080d\\n\", NR-1, 0}'\n"}))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        [run] = await until(pilot, lambda: ended(app, "a"))
        assert Path(run.stdout).stat().st_size > 25_000_000
        await until(pilot, lambda: app.main.check_action("open_log", ()))
        await pilot.press("enter")
        from textual.widgets import Log

        log = app.screen.query_one(Log)
        await until(pilot, lambda: log.line_count)
        assert log.lines[-1].startswith("line 299999 ")
        assert log.line_count < 5000


async def test_pause_is_kept_in_the_state_folder_and_never_written_to_the_config(
        tmp_path: Path) -> None:
    """`p` pauses the agent through the runtime's log: marrow.toml stays byte for byte as the
    operator wrote it, and the pause holds after a restart until `p` resumes it."""
    path = write_config(tmp_path, {"a": "echo a\n"})
    path.write_text("# my agents, my comments\n" + path.read_text())
    written = path.read_bytes()
    app = ConsoleApp(seeded=False, config=loaded(path))
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: ended(app, "a"))
        await until(pilot, lambda: app.main.check_action("toggle_agent", ()))
        await pilot.press("p")
        agents = app.runtime.state.sessions.agents
        await until(pilot, lambda: agents["a"].paused)
        assert app.runtime.state.sessions.paused == {"a": "operator/test"}
        assert app.scheduler.schedules["a"].next_at is None
        table = app.main.tables["sessions"]
        await until(pilot, lambda: any(str((table.cells(k) or ("",))[0]) == "a  paused"
                                       for k in table.keys))
        await pilot.press("w")  # a paused agent is not woken, and the console says why
        await until(pilot, lambda: any("'a' is paused" in n.message
                                       for n in app._notifications))
        assert len(app.runtime.state.sessions.of_agent("a")) == 1
    assert path.read_bytes() == written

    again = ConsoleApp(seeded=False, config=loaded(path), state_dir=app.state_dir)
    async with again.run_test(size=(120, 30)) as pilot:
        await filled(pilot, again)
        agents = again.runtime.state.sessions.agents
        await until(pilot, lambda: "a" in agents)
        assert agents["a"].paused and again.scheduler.schedules["a"].next_at is None
        assert len(again.runtime.state.sessions.of_agent("a")) == 1  # no run at start
        await until(pilot, lambda: again.main.check_action("toggle_agent", ()))
        await pilot.press("p")
        await until(pilot, lambda: not agents["a"].paused)
        await until(pilot, lambda: len(ended(again, "a")) >= 2)  # resuming runs it now
    assert path.read_bytes() == written


async def test_an_agent_disabled_in_the_config_stays_off_and_p_says_why(
        tmp_path: Path) -> None:
    path = write_config(tmp_path, {"a": "echo a\n"}, extra="enabled = false")
    written = path.read_bytes()
    app = ConsoleApp(seeded=False, config=loaded(path))
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        agents = app.runtime.state.sessions.agents
        await until(pilot, lambda: "a" in agents)
        assert not agents["a"].enabled and not agents["a"].paused
        await until(pilot, lambda: app.main.check_action("toggle_agent", ()))
        await pilot.press("p")
        await until(pilot, lambda: any("enabled = false" in n.message
                                       for n in app._notifications))
        assert app.runtime.state.sessions.paused == {}
        assert not app.runtime.state.sessions.of_agent("a")
    assert path.read_bytes() == written


async def test_a_broken_config_is_shown_and_the_last_good_one_kept(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"a": "echo a\n"})
    app = ConsoleApp(seeded=False, config=loaded(path))
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: ended(app, "a"))
        path.write_text(path.read_text() + "\nbogus_key = 1\n")
        app.scheduler.reload()
        pane = app.main.query_one("#sessions-pane")
        await until(pilot, lambda: "bogus_key" in str(pane.border_title))
        assert "config not applied" in str(pane.border_title)
        assert list(app.scheduler.schedules) == ["a"]
        path.write_text(path.read_text().replace("\nbogus_key = 1\n", "\n"))
        app.scheduler.reload()
        await until(pilot, lambda: not pane.border_title)


async def test_an_agents_worktree_shows_its_diff_and_is_accepted_from_the_console(
        tmp_path: Path) -> None:
    from marrow_tui.ui.modals.confirm import ConfirmModal as Confirm
    from marrow_tui.ui.screens.diff import DiffScreen

    from tests.support.review import COMMITTING_AGENT, main_repo
    from tests.support.review import run_git as git

    repo = main_repo(tmp_path)
    (repo / ".git" / "info" / "exclude").write_text("prompt.txt\n")
    config = loaded(write_config(tmp_path, {"alice": COMMITTING_AGENT}, extra=(
        f'[agents.workspace_git]\nrepo = "{repo}"\nbase = "main"\n')))
    app = ConsoleApp(seeded=False, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: ended(app, "alice"))
        assert app.main is not None
        table = app.main.tables["sessions"]
        await until(pilot, lambda: any("+2" in str(cell) for key in table.keys
                                       for cell in table._shown.get(key, ())), WAIT)
        await pilot.press("v")
        screen = await until(pilot, lambda: isinstance(app.screen, DiffScreen)
                             and not app.screen.asking and app.screen)
        assert screen.identifier == "alice"
        await pilot.press("A")
        dialog = await until(pilot, lambda: isinstance(app.screen, Confirm) and app.screen)
        assert "alice's work (2 files, +2 −0) is merged into main" in dialog.body
        assert "committed on marrow/alice first" in dialog.body
        assert "alice goes on in its worktree." in dialog.body
        await pilot.press("y")
        await until(pilot, lambda: git(repo, "log", "-1", "--format=%s", "main")
                    == "alice: accepted in marrow-tui", WAIT)
        assert git(repo, "show", "main:draft.txt") == "draft"
        await until(pilot, lambda: any("Accepted alice into main" in str(n.message)
                                       for n in app._notifications))
        # the view stays on the agent's worktree, now with nothing unmerged
        await until(pilot, lambda: not screen.asking and screen.files == [], WAIT)
