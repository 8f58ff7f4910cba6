"""The Issues pane with no workflow loaded: reachable by its key, it says how to start one, and
`n` says why it cannot add an issue instead of doing nothing."""

from __future__ import annotations


from textual.widgets import Static

from marrow_tui.ui.modals.form import FormModal

from tests.support.console_app import ConsoleApp, filled, seed_issues, until

SIZE = (100, 30)


async def test_without_a_workflow_the_pane_says_how_to_start_one_and_n_says_why() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await pilot.press("6")
        await until(pilot, lambda: app.main.pane == "issues")
        await pilot.pause()
        words = app.main.query_one("#issues-none", Static)
        assert words.display and words.region.height > 0
        assert "--workflow" in str(words.render())
        assert not app.main.query_one("#issues-table").display
        await pilot.press("n")
        [said] = await until(pilot, lambda: [n.message for n in app._notifications])
        assert said == ("No workflow is loaded, so there is no tracker to add an issue to: "
                        "start marrow-tui with --workflow PATH/WORKFLOW.md.")
        assert not isinstance(app.screen, FormModal)


async def test_with_a_workflow_the_pane_shows_its_issues_and_n_opens_the_form() -> None:
    app = ConsoleApp(issues=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await until(pilot, lambda: app.main.pane == "issues")
        assert not app.main.query_one("#issues-none").display
        assert app.main.query_one("#issues-table").display
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, FormModal))
        assert not app._notifications


async def test_a_workflow_that_appears_later_replaces_the_words_with_its_issues() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await pilot.press("6")
        await until(pilot, lambda: app.main.query_one("#issues-none").display)
        seed_issues(app.runtime)
        await until(pilot, lambda: app.main.query_one("#issues-table").display)
        assert not app.main.query_one("#issues-none").display
