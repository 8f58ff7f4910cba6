"""The console's own files in the state folder: the theme chosen, kept for the next start, and
the palette's screenshots. Driven through the command palette, as an operator would."""

from __future__ import annotations

from typing import Any

from tests.support.console_app import ConsoleApp, filled, until

SIZE = (100, 30)


def notes(app: ConsoleApp) -> list[str]:
    return [n.message for n in app._notifications]


async def palette(pilot: Any, app: ConsoleApp, *words: str) -> None:
    """Open the command palette, then pick each entry by typing it (a picker opens another)."""
    from textual.command import CommandList, CommandPalette

    for word in words:
        if not isinstance(app.screen, CommandPalette):
            await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*word)
        hits = app.screen.query_one(CommandList)

        def best() -> str:
            if not hits.option_count or hits.highlighted is None:
                return ""
            return str(hits.get_option_at_index(hits.highlighted).prompt).lower()

        await until(pilot, lambda: best().startswith(word))  # the search has answered
        await pilot.press("enter")
        await pilot.pause()


async def test_the_theme_chosen_in_the_palette_is_there_after_a_restart() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        assert app.theme != "nord"
        await palette(pilot, app, "theme", "nord")
        await until(pilot, lambda: app.theme == "nord")
    assert '"theme": "nord"' in (app.state_dir / "ui.json").read_text()

    again = ConsoleApp(state_dir=app.state_dir)
    async with again.run_test(size=SIZE) as pilot:
        await filled(pilot, again)
        assert again.theme == "nord"


async def test_a_broken_preferences_file_is_named_and_left_as_it_is() -> None:
    first = ConsoleApp(seeded=False)
    prefs = first.state_dir / "ui.json"
    prefs.parent.mkdir(parents=True, exist_ok=True)
    prefs.write_text('{"theme": nord}\n')
    app = ConsoleApp(seeded=False, state_dir=first.state_dir)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        [said] = await until(pilot, lambda: [n for n in notes(app) if "ui.json" in n])
        assert said == f"{prefs}: not JSON (line 1: Expecting value); the defaults are used."
        assert app.theme == "textual-dark"
    assert prefs.read_text() == '{"theme": nord}\n'


async def test_the_palette_screenshot_is_saved_in_the_state_folder_and_named() -> None:
    app = ConsoleApp()
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await palette(pilot, app, "screenshot")
        [said] = await until(pilot, lambda: [n for n in notes(app) if "creenshot" in n])
        assert said.startswith("Screenshot saved: ")
        path = app.state_dir / "screenshots"
        [svg] = list(path.glob("marrow-tui-*.svg"))
        assert said == f"Screenshot saved: {svg}"
        text = svg.read_text()
        assert text.startswith("<svg") and "Claims" in text
