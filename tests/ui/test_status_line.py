"""The status line and the footer say what is true now: a question that ended leaves them at
once, `a` answers the question they show, and at 80x24 what needs the operator is never cut."""

from __future__ import annotations

from typing import Any

from textual.widgets._footer import FooterKey

from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Outcome
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.screens.main import StatusLine

from tests.support.console_app import ConsoleApp, T0, filled, until

SMALL = (80, 24)


def status(app: ConsoleApp) -> str:
    assert app.main is not None
    return app.main.query_one(StatusLine).text.plain


def footer(app: ConsoleApp) -> list[str]:
    return [key.description for key in app.screen.query(FooterKey)]


def toasts(app: ConsoleApp) -> list[str]:
    return [n.message for n in app._notifications]


def ask(app: ConsoleApp, asker: str, question: str, **frame: Any) -> None:
    app.runtime.handle(asker, {"type": "steer_ask", "question": question, **frame}, None)


async def test_a_question_that_timed_out_leaves_the_status_line_and_says_its_default() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await filled(pilot, app)
        ask(app, "cli/root", "bell test?", timeout_seconds=5, default="ok")
        await until(pilot, lambda: "cli/root asks: bell test?" in status(app))
        assert "a to answer" in status(app)
        app.clock.advance(6)
        app.runtime.tick()
        await until(pilot, lambda: "bell test" not in status(app))
        assert "⚑" not in status(app)
        said = await until(pilot, lambda: [t for t in toasts(app) if "timed out" in t])
        assert said == ["S1 from cli/root (bell test?) timed out; the default was used: ok"]
        assert app.main is not None and not app.main.check_action("answer", ())
        await pilot.press("a")
        assert app.screen is app.main  # nothing waits: `a` opens nothing


async def test_a_question_its_asker_cancelled_leaves_the_status_line_with_a_toast() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await filled(pilot, app)
        ask(app, "demo/carol", "Merge now?")
        await until(pilot, lambda: "demo/carol asks: Merge now?" in status(app))
        app.runtime.handle("demo/carol", {"type": "steer_cancel", "id": "S1"}, None)
        await until(pilot, lambda: "Merge now" not in status(app))
        said = await until(pilot, lambda: [t for t in toasts(app) if "cancelled" in t])
        assert said == ["S1 from demo/carol (Merge now?) was cancelled by the asker"]


async def test_the_status_line_shows_the_oldest_question_and_a_answers_that_one() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(110, 30), notifications=True) as pilot:
        await filled(pilot, app)
        ask(app, "demo/alice", "Staging or mock?")
        app.clock.advance(90)
        ask(app, "demo/bob", "Rename the route?")
        await until(pilot, lambda: "demo/alice asks: Staging or mock? (1m, 2 waiting)"
                    in status(app))
        await pilot.press("a")
        modal = await until(pilot, lambda: isinstance(app.screen, AnswerModal) and app.screen)
        assert modal.asker == "demo/alice"
        await pilot.press(*"mock", "ctrl+s")
        await until(pilot, lambda: "demo/bob asks: Rename the route? (0s)" in status(app))
        assert "waiting" not in status(app) and "alice" not in status(app)


async def test_the_most_urgent_failure_is_on_the_status_line_while_it_lasts() -> None:
    app = ConsoleApp(services=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        assert "✖ service cache backoff: killed by SIGKILL" in status(app)
        healthy = Event("service_state", {"name": "cache", "state": "healthy", "reason": "",
                                          "since": T0, "at": T0})
        app.runtime.state.apply(healthy)
        app.runtime.submit(Outcome(events=[healthy]))
        await until(pilot, lambda: "✖" not in status(app))
        assert "3 of 3 services healthy" in status(app)


async def test_the_footer_shows_answer_only_while_a_question_waits() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await filled(pilot, app)
        await pilot.pause()
        assert "Answer" not in footer(app) and "Quit" in footer(app)
        ask(app, "demo/carol", "Merge now?")
        await until(pilot, lambda: "Answer" in footer(app))
        assert footer(app) == ["Answer", "Declare", "Message", "Filter", "Help", "Quit", "palette"]
        app.runtime.handle("demo/carol", {"type": "steer_cancel", "id": "S1"}, None)
        # (the footer is rebuilt: wait for the whole of it)
        await until(pilot, lambda: "Quit" in footer(app) and "Answer" not in footer(app))
        assert footer(app) == ["Declare", "Message", "Filter", "Help", "Quit", "palette"]


async def test_at_80x24_the_status_line_drops_counts_before_the_question() -> None:
    app = ConsoleApp(services=True)
    async with app.run_test(size=SMALL) as pilot:
        await filled(pilot, app)
        ask(app, "demo/alice", "The login tests need a real SMTP server. Use the staging "
                               "one, or mock it? " * 3)
        line = await until(pilot, lambda: "⚑" in status(app) and status(app))
        assert len(line) <= 80
        assert "demo/alice asks: The login" in line
        assert "(0s) · a to answer" in line
        assert "✖ service cache backoff" in line  # the failure stays too, its reason cut
        assert app.hub_uri not in line  # counts and the address made room
        await pilot.resize_terminal(200, 50)
        await until(pilot, lambda: "3 leases" in status(app))
        assert "The login tests need a real SMTP server. Use the staging one" in status(app)
        assert "services healthy" in status(app)


async def test_at_80x24_two_questions_and_a_failure_keep_every_word_that_matters() -> None:
    app = ConsoleApp(asks=True, services=True)
    async with app.run_test(size=SMALL) as pilot:
        await filled(pilot, app)
        line = status(app)
        assert len(line) <= 80
        assert line.startswith(" ⚑ demo/alice asks: The login")  # the question, cut short
        assert "(0s, 2 waiting) · a to answer" in line
        assert line.rstrip().endswith("✖ 1 failure")  # the failure in its short form
