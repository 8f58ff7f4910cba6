"""The command palette: every action of the main screen, by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("pane('agents')", "Show the Agents pane", "1"),
    ("pane('claims')", "Show the Claims pane", "2"),
    ("pane('board')", "Show the Blackboard pane", "3"),
    ("pane('activity')", "Show the Activity pane", "4"),
    ("pane('sessions')", "Show the Sessions pane (agent runs)", "5"),
    ("wake", "Wake the selected agent now", "w"),
    ("add_task", "Queue a task for the selected agent", "t"),
    ("toggle_agent", "Pause or resume the selected agent (edits the config)", "p"),
    ("stop_run", "Stop the selected run", "x"),
    ("open_log", "Show the selected run's output", "enter"),
    ("pane('issues')", "Show the Issues pane (the orchestrator's tracker)", "6"),
    ("dispatch_issue", "Dispatch the selected issue now", "D"),
    ("cancel_issue", "Cancel the selected issue's run and park the issue", "x"),
    ("retry_issue", "Retry the selected parked issue", "R"),
    ("new_issue", "Create an issue in the tracker", "n"),
    ("go_to_issue_run", "Show the selected issue's run in the Sessions pane", "g"),
    ("handoff", "Hand off the selected lease to an online agent", "h"),
    ("release", "Release the selected lease (checkpoint kept)", "r"),
    ("force_release", "Force-release the selected lease (checkpoint dropped)", "R"),
    ("extend", "Extend the selected lease by an hour", "e"),
    ("declare", "Declare a blackboard task", "d"),
    ("status", "Change the selected task's status", "s"),
    ("message", "Send a chat message", "m"),
    ("filter", "Filter the pane", "/"),
    ("help", "Show the keys", "?"),
    ("quit", "Quit marrow-tui", "q"),
    ("pane('services')", "Show the Services pane", "7"),
    ("start_service", "Start the selected service", "u"),
    ("stop_service", "Stop the selected service", "x"),
    ("restart_service", "Restart the selected service", "R"),
    ("open_service_log", "Show the selected service's log", "o"),
    ("service_graph", "Show the services' dependency graph", "G"),
)


class MarrowCommands(Provider):
    """Offers the screen's actions; ones that cannot run now (no selection) are left out."""

    def _available(self) -> list[tuple[str, str, str]]:
        screen = self.screen
        check = getattr(screen, "check_action", None)
        available = []
        for action, text, key in ACTIONS:
            name = action.split("(")[0]
            if check is None or check(name, ()) is not False:
                available.append((action, text, key))
        return available

    async def discover(self) -> Hits:
        for action, text, key in self._available():
            yield DiscoveryHit(text, partial(self.screen.run_action, action), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, text, key in self._available():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.screen.run_action, action),
                          help=f"key: {key}")
