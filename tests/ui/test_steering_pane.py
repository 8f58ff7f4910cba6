"""The Steering pane and the answer dialog, driven by keys, checked on the runtime's state."""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, Label, TextArea

from marrow_tui.core.events import Event
from marrow_tui.protocol.frames import Outcome
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.modals.cancel_question import CancelQuestionModal
from marrow_tui.ui.modals.confirm import ConfirmModal

from tests.support.console_app import ConsoleApp, filled, until


async def test_the_console_opens_on_waiting_questions_and_answers_by_key() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and app.main.pane == "steering"
        book = app.runtime.state.steering
        assert [r.id for r in book.waiting()] == ["S1", "S2"]
        await pilot.press("a")  # the longest-waiting one first
        modal = app.screen
        assert isinstance(modal, AnswerModal) and modal.asker == "demo/alice"
        await pilot.press("tab", "tab")  # past the two choices, to the text box
        await pilot.press(*"use staging, it is up")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not book.get("S1").open)  # type: ignore[union-attr]
        request = book.get("S1")
        assert request is not None
        assert (request.state, request.answer) == ("answered", "use staging, it is up")
        assert request.answered_by == "operator/test"


async def test_a_choice_button_answers_at_once() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        await pilot.press("a")
        assert isinstance(app.screen, AnswerModal)
        await pilot.click("#choice-1")
        book = app.runtime.state.steering
        await until(pilot, lambda: not book.get("S1").open)  # type: ignore[union-attr]
        assert book.get("S1").answer == "mock"  # type: ignore[union-attr]


async def test_an_empty_answer_is_not_sent() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        await pilot.press("down", "a")  # the selected one: bob's
        modal = app.screen
        assert isinstance(modal, AnswerModal) and modal.asker == "demo/bob"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, AnswerModal)  # still open, says why
        await pilot.press("escape")
        assert app.runtime.state.steering.get("S2").open  # type: ignore[union-attr]


async def test_a_new_question_rings_and_says_how_to_answer() -> None:
    app = ConsoleApp()
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        assert app.main is not None and app.main.pane == "claims"
        app.runtime.handle("demo/carol", {"type": "steer_ask", "question": "Merge now?"},
                           None)
        await until(pilot, lambda: "asks" in app.main.latest_alert)  # type: ignore[union-attr]
        assert "(a to answer)" in app.main.latest_alert
        assert app.main.has_class("-asking")
        await pilot.press("a")
        assert isinstance(app.screen, AnswerModal) and app.screen.asker == "demo/carol"


async def test_cancel_asks_first_and_go_finds_the_askers_lease() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        await pilot.press("g")  # alice asks about T1, which she holds
        assert app.main is not None
        await until(pilot, lambda: app.main.pane == "claims"
                    and app.main.tables["claims"].selected_key == "T1")
        await pilot.press("0", "down", "c")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        book = app.runtime.state.steering
        await until(pilot, lambda: not book.get("S2").open)  # type: ignore[union-attr]
        assert book.get("S2").state == "cancelled"  # type: ignore[union-attr]


async def test_enter_picks_the_first_choice_from_the_keyboard() -> None:
    app = ConsoleApp(asks=True)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        await pilot.press("a", "tab", "enter")  # Tab to the second choice, Enter picks it
        book = app.runtime.state.steering
        await until(pilot, lambda: not book.get("S1").open)  # type: ignore[union-attr]
        assert book.get("S1").answer == "mock"  # type: ignore[union-attr]


async def test_a_permission_request_is_answered_by_a_choice_only() -> None:
    """An agent asking leave to run a tool call: its options as buttons, no free text."""
    app = ConsoleApp(asks=False)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        runtime = app.runtime
        event = runtime.state.steering.decide_ask(
            "DEMO-1", runtime.clock(), question="Allow execute: rm -rf build?",
            context="execute: rm -rf build\n\n$ rm -rf build", choices=["Allow once", "Reject"],
            default="Reject", timeout=600, task_id="DEMO-1", kind="permission")
        assert isinstance(event, Event)
        runtime.state.apply(event)
        runtime.submit(Outcome(events=[event]))
        await until(pilot, lambda: app.main.check_action("answer", ()))
        await pilot.press("a")
        modal = app.screen
        assert isinstance(modal, AnswerModal) and modal.permission
        assert not modal.query(TextArea) and not modal.query("#send")
        assert "DEMO-1 asks permission" in str(modal.query_one(".title", Label).render())
        await pilot.press("ctrl+s")  # nothing to send but a choice
        assert app.screen is modal
        await pilot.press("tab", "enter")  # the second choice
        request = runtime.state.steering.get(event.data["id"])
        await until(pilot, lambda: not request.open)  # type: ignore[union-attr]
        assert request.answer == "Reject"  # type: ignore[union-attr]


def ops9_asks(runtime: Any) -> None:
    """OPS-9, an orchestrated issue (seed_issues), asks the operator from its run."""
    runtime.handle("OPS-9", {"type": "steer_ask", "question": "Migrate the users table now?",
                             "task_id": "OPS-9"}, None)


async def test_cancelling_an_issues_question_offers_to_park_the_issue() -> None:
    """`c` on a question an issue's run asked: cancel it alone (y), or park the issue with it
    (p: `issue_cancel` naming the question, so the orchestrator stops the work); a question
    no issue asked gets the plain confirmation."""
    app = ConsoleApp(asks=True, issues=True, seed_with=ops9_asks)
    async with app.run_test(size=(110, 32)) as pilot:
        await filled(pilot, app)
        sent: list[dict[str, Any]] = []

        def issue_cancel(call: Any) -> None:
            sent.append(dict(call.frame))
            call.reply("issue_cancelling", "Cancelling OPS-9.", identifier="OPS-9")

        assert app.runtime.decider is not None
        app.runtime.decider.register("issue_cancel", issue_cancel)
        book = app.runtime.state.steering
        [asked] = [r for r in book.waiting() if r.asker == "OPS-9"]
        await pilot.press("0", "c")  # alice's question: no issue asked it
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.press("down", "down", "c")
        modal = app.screen
        assert isinstance(modal, CancelQuestionModal)
        assert "Park OPS-9 (p)" in str(modal.query_one("#park", Button).label)
        await pilot.press("p")
        await until(pilot, lambda: sent)
        assert [(f["type"], f["request"]) for f in sent] == [("issue_cancel", asked.id)]
        assert asked.open  # the orchestrator cancels it (none runs here)
        await pilot.press("c")
        assert isinstance(app.screen, CancelQuestionModal)
        await pilot.press("y")
        await until(pilot, lambda: not asked.open)
        assert asked.state == "cancelled" and len(sent) == 1
