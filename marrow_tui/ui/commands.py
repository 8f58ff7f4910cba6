"""The command palette: every action of the action table that has a description, by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .actions import Action, palette_entries
from .screens.main import MainScreen


class MarrowCommands(Provider):
    """Offers the screen's actions; ones that cannot run now (no selection) are left out."""

    def _available(self) -> list[tuple[Action, str]]:
        screen = self.screen
        if not isinstance(screen, MainScreen):
            return []
        return [(action, key) for action, key in palette_entries(screen.keys)
                if screen.check_action(action.name, ()) is not False]

    async def discover(self) -> Hits:
        for action, key in self._available():
            yield DiscoveryHit(action.description, partial(self.screen.run_action, action.run),
                               help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, key in self._available():
            score = matcher.match(action.description)
            if score > 0:
                yield Hit(score, matcher.highlight(action.description),
                          partial(self.screen.run_action, action.run), help=f"key: {key}")
