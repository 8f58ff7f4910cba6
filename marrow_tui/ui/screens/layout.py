"""Which panes the main screen shows, side by side, for the terminal's size.

Below 100 columns (or with a pane zoomed) one pane fills the screen and the tabs switch it;
from 100 two panes stand side by side (the chosen one and Activity, which says what happens
to it); from 150 every pane of the setup is shown, in two columns, and from 200 in three.
The screen turns the answer into CSS classes; this module only decides (and imports no
Textual, so the rules are tested as plain functions).
"""

from __future__ import annotations

from collections.abc import Iterable

SINGLE, DUO, TWO_COLUMNS, THREE_COLUMNS = "single", "duo", "columns-2", "columns-3"
MODES = (SINGLE, DUO, TWO_COLUMNS, THREE_COLUMNS)
#: the narrowest terminal for two panes side by side, for every pane in two columns, in three
DUO_WIDTH, TWO_COLUMNS_WIDTH, THREE_COLUMNS_WIDTH = 100, 150, 200
#: the lowest terminal that shows every pane at once (lower, each would be a few rows)
ALL_PANES_HEIGHT = 30
#: the column each pane stands in: the agents and their leases; what waits on the operator
#: and the work (tasks, runs, issues, services); what happens
COLUMN = {"agents": 1, "claims": 1, "steering": 2, "board": 2, "sessions": 2, "issues": 2,
          "services": 2, "activity": 3}
#: the pane beside the chosen one when two are shown
PARTNER = "activity"


def mode_for(width: int, height: int, zoomed: bool = False) -> str:
    if zoomed or width < DUO_WIDTH:
        return SINGLE
    if width < TWO_COLUMNS_WIDTH or height < ALL_PANES_HEIGHT:
        return DUO
    return TWO_COLUMNS if width < THREE_COLUMNS_WIDTH else THREE_COLUMNS


def shown_panes(mode: str, active: str, previous: str, present: Iterable[str]) -> set[str]:
    """The panes on the screen: the chosen one alone, it and its partner, or all present.

    `previous` is the pane chosen before: beside Activity, it is the partner. `present` is
    what this setup has (Issues with an orchestrator, Services with services, Steering while
    someone waits)."""
    if mode == SINGLE:
        return {active}
    if mode == DUO:
        partner = previous if active == PARTNER else PARTNER
        return {active, partner} if partner != active else {active}
    return set(present) | {active}
