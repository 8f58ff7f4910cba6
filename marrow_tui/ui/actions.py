"""The console's one table of actions.

The main screen's bindings, each pane's border hints, the `?` help and the command palette are
all made from `ACTIONS`, so they cannot disagree. An action's id is its binding id: Textual's
keymap remaps a key by it (`apply_keys`), after `keymap_problems` has refused a mapping that
would leave one key with two meanings in one pane. This module imports no Textual, so the
config can check a `[keys]` table without loading the console.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

GLOBAL = "global"
#: help groups: listed always, while an orchestrator runs, while services run, at the end
ALWAYS, WITH_ISSUES, WITH_SERVICES, LAST = "always", "issues", "services", "last"


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    #: Textual key names, comma-separated
    key: str
    #: what the screen runs: `handoff`, `pane('claims')`
    run: str
    #: the pane whose selection it acts on, and whose module holds its logic (or GLOBAL)
    pane: str = GLOBAL
    #: it runs from any pane (an answer goes to the longest-waiting question, a message to all)
    anywhere: bool = False
    #: the `?` help's text (also the binding's description, shown in the footer when `show`)
    help: str = ""
    help_group: str = ALWAYS
    #: the command palette's text: every action that has one is in the palette
    description: str = ""
    #: the word after the key in a pane's border hint
    hint: str = ""
    show: bool = False
    key_display: str | None = None

    @property
    def name(self) -> str:
        """The action method's name, without its arguments."""
        return self.run.split("(", 1)[0]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.key.split(","))

    @property
    def binding_description(self) -> str:
        """Help lists some keys only in some setups: their bindings carry no description, so
        Textual's own keys panel leaves them out too."""
        return self.help if self.help_group == ALWAYS else ""

    @property
    def everywhere(self) -> bool:
        return self.pane == GLOBAL or self.anywhere


def _pane(number: int, pane: str, title: str, description: str,
          group: str = ALWAYS) -> Action:
    return Action(f"pane.{pane}", str(number), f"pane('{pane}')", help=title, help_group=group,
                  description=description)


# The order is the bindings' order: a key several panes use (x, R, g, o) runs the first of its
# actions that `check_action` allows, and only the shown pane's is ever allowed.
ACTIONS: tuple[Action, ...] = (
    _pane(0, "steering", "Steering", "Show the Steering pane (questions agents wait on)"),
    _pane(1, "agents", "Agents", "Show the Agents pane"),
    _pane(2, "claims", "Claims", "Show the Claims pane"),
    _pane(3, "board", "Board", "Show the Blackboard pane"),
    _pane(4, "activity", "Activity", "Show the Activity pane"),
    _pane(5, "sessions", "Sessions", "Show the Sessions pane (agent runs)"),
    _pane(6, "issues", "Issues", "Show the Issues pane (the orchestrator's tracker)",
          WITH_ISSUES),
    _pane(7, "services", "Services", "Show the Services pane", WITH_SERVICES),
    # Keys that act on a pane's selection are shown in that pane's border, not the footer:
    # the footer then never has to be rebuilt when the pane or the selection changes.
    Action("claims.handoff", "h", "handoff", "claims", help="Hand off", hint="hand off",
           description="Hand off the selected lease to an online agent"),
    Action("claims.release", "r", "release", "claims", help="Release", hint="release",
           description="Release the selected lease (checkpoint kept)"),
    Action("claims.force_release", "R", "force_release", "claims", help="Force release",
           hint="force-release",
           description="Force-release the selected lease (checkpoint dropped)"),
    Action("claims.extend", "e", "extend", "claims", help="Extend", hint="extend",
           description="Extend the selected lease by an hour"),
    Action("steering.answer", "a", "answer", "steering", anywhere=True, help="Answer",
           hint="answer", show=True,
           description="Answer the selected question, or the longest-waiting one"),
    Action("steering.cancel", "c", "cancel_request", "steering",
           help="Cancel the request (steering)", hint="cancel",
           description="Cancel the selected request (the asker gets no answer)"),
    Action("steering.goto", "g", "go_to_asker", "steering",
           help="Go to the asker's run or lease (steering)", hint="go to asker",
           description="Go to the asker's run or lease"),
    Action("steering.sides", "t", "show_both", "steering",
           help="Both agents' transcripts side by side (steering, a conflict)",
           hint="transcripts",
           description="Show a conflict's two agents' transcripts side by side"),
    Action("board.declare", "d", "declare", "board", anywhere=True, help="Declare", show=True,
           description="Declare a blackboard task"),
    Action("board.status", "s", "status", "board", help="Status", hint="status",
           description="Change the selected task's status"),
    Action("sessions.wake", "w", "wake", "sessions", help="Wake the agent (sessions)", hint="wake",
           description="Wake the selected agent now"),
    Action("sessions.stop", "x", "stop_run", "sessions", help="Stop the run (sessions)", hint="stop",
           description="Stop the selected run"),
    # Prompt and cancel the turn act on ACP runs; the Sessions pane's `can` keeps them off
    # until the command path that sends them exists.
    Action("sessions.prompt", "i", "prompt_session", "sessions",
           help="Prompt the run (sessions)", hint="prompt",
           description="Send the selected agent run a prompt"),
    Action("sessions.cancel_turn", "c", "cancel_turn", "sessions",
           help="Cancel the run's turn (sessions)", hint="cancel turn",
           description="Cancel the selected agent run's current turn"),
    Action("sessions.task", "t", "add_task", "sessions", help="Queue a task (sessions)",
           hint="add task", description="Queue a task for the selected agent"),
    Action("sessions.output", "o", "open_log", "sessions",
           help="Show the run's output or transcript",
           description="Show the selected run's output (an agent run's transcript)"),
    Action("sessions.pause", "p", "toggle_agent", "sessions",
           help="Pause/resume the agent (sessions)", hint="pause",
           description="Pause or resume the selected agent (its config is not touched)"),
    Action("sessions.diff", "v", "view_run_diff", "sessions", hint="diff",
           help="Show what the run's issue changed (sessions)",
           description="Show the diff of the selected run's issue"),
    # Help lists the Issues pane's keys only while an orchestrator runs.
    Action("issues.dispatch", "D", "dispatch_issue", "issues", hint="dispatch",
           help="Dispatch the issue now (issues)", help_group=WITH_ISSUES,
           description="Dispatch the selected issue now"),
    Action("issues.cancel", "x", "cancel_issue", "issues", hint="cancel",
           help="Cancel the issue's run and park it (issues)", help_group=WITH_ISSUES,
           description="Cancel the selected issue's run and park the issue"),
    Action("issues.retry", "R", "retry_issue", "issues", hint="retry",
           help="Retry a parked issue (issues)", help_group=WITH_ISSUES,
           description="Retry the selected parked issue"),
    Action("issues.new", "n", "new_issue", "issues", hint="new",
           help="New issue (issues)", help_group=WITH_ISSUES,
           description="Create an issue in the tracker"),
    Action("issues.goto", "g", "go_to_issue_run", "issues", hint="go to run",
           help="Go to the issue's run (issues)", help_group=WITH_ISSUES,
           description="Show the selected issue's run in the Sessions pane"),
    Action("issues.transcript", "t", "issue_transcript", "issues", hint="transcript",
           help="Show the issue's agent transcript (issues)", help_group=WITH_ISSUES,
           description="Open the transcript of the selected issue's agent run (ACP)"),
    # Reviewing what an issue's agent changed in its git worktree (ui/review.py): the diff
    # view, and the three actions, each confirmed first.
    Action("issues.diff", "v", "view_diff", "issues", hint="diff",
           help="Show what the issue's agent changed (issues)", help_group=WITH_ISSUES,
           description="Show the selected issue's diff (what its agent changed)"),
    Action("issues.accept", "A", "accept_issue", "issues", hint="accept",
           help="Accept the issue's work: merge it into the base (issues)",
           help_group=WITH_ISSUES,
           description="Accept the selected issue's work (merge it into its base branch)"),
    Action("issues.request_changes", "C", "request_changes", "issues", hint="changes",
           help="Request changes: your text is the agent's next prompt (issues)",
           help_group=WITH_ISSUES,
           description="Request changes on the selected issue's work"),
    Action("issues.discard", "X", "discard_work", "issues", hint="discard",
           help="Discard the issue's worktree and branch (issues)", help_group=WITH_ISSUES,
           description="Discard the selected issue's worktree and its branch"),
    Action("services.start", "u", "start_service", "services", hint="start",
           help="Start the service (services)", help_group=WITH_SERVICES,
           description="Start the selected service"),
    Action("services.stop", "x", "stop_service", "services", hint="stop",
           help="Stop the service (services)", help_group=WITH_SERVICES,
           description="Stop the selected service"),
    Action("services.restart", "R", "restart_service", "services", hint="restart",
           help="Restart the service (services)", help_group=WITH_SERVICES,
           description="Restart the selected service"),
    Action("services.log", "o", "open_service_log", "services", hint="log",
           help="The service's log (services)", help_group=WITH_SERVICES,
           description="Show the selected service's log"),
    Action("services.graph", "G", "service_graph", "services", hint="graph",
           help="The services' dependency graph (services)", help_group=WITH_SERVICES,
           description="Show the services' dependency graph"),
    Action("chat.send", "m", "message", "agents", anywhere=True, help="Message",
           hint="message", show=True, description="Send a chat message"),
    Action("view.filter", "slash", "filter", help="Filter", hint="filter", show=True,
           key_display="/", description="Filter the pane"),
    Action("app.help", "question_mark", "help", help="Help", show=True, key_display="?",
           description="Show the keys"),
    Action("app.quit", "q", "quit", help="Quit", show=True, description="Quit marrow-tui"),
    Action("view.close_filter", "escape", "close_filter",
           help="Clear the pane's filter (or close a dialog)", help_group=LAST),
    Action("view.zoom", "z", "zoom", help="Zoom: the pane gets the whole screen, and back",
           hint="zoom", description="Zoom the pane to the whole screen (and back)"),
    Action("view.next_pane", "tab", "cycle(1)", help="Next pane",
           description="Go to the next pane"),
    Action("view.previous_pane", "shift+tab", "cycle(-1)", help="Previous pane",
           description="Go to the previous pane"),
    # The panes never take focus (a focus change rebuilds the footer): the screen moves the
    # cursor of whichever pane is shown. Help lists these keys last, the palette leaves them out.
    Action("view.up", "up,k", "move(-1)", help="Move up", help_group=LAST, key_display="up/k"),
    Action("view.down", "down,j", "move(1)", help="Move down", help_group=LAST,
           key_display="down/j"),
    Action("view.page_up", "pageup", "page(-1)", help="One page up", help_group=LAST),
    Action("view.page_down", "pagedown", "page(1)", help="One page down", help_group=LAST),
    Action("view.first", "home,ctrl+home", "jump(0)", help="First row", help_group=LAST),
    Action("view.last", "end,ctrl+end", "jump(-1)", help="Last row", help_group=LAST),
    Action("view.open", "enter", "open", help="Open the selected row", help_group=LAST,
           hint="open", description="Open the selected row"),
)

#: the diff view's keys (screens/diff.py): its bindings, footer and `?` help are made from these
DIFF = "diff"
DIFF_ACTIONS: tuple[Action, ...] = (
    Action("diff.close", "escape,q", "close", DIFF, help="Back to the console (q too)", hint="back",
           show=True, key_display="esc"),
    Action("diff.next_file", "right_square_bracket", "file(1)", DIFF, help="Next file",
           hint="file", show=True, key_display="]"),
    Action("diff.previous_file", "left_square_bracket", "file(-1)", DIFF,
           help="Previous file", key_display="["),
    Action("diff.next_hunk", "n", "hunk(1)", DIFF, help="Next hunk (on into the next file)",
           hint="hunk", show=True),
    Action("diff.previous_hunk", "p", "hunk(-1)", DIFF, help="Previous hunk"),
    Action("diff.against", "b", "toggle_against", DIFF,
           help="Against the base branch, or since the last review (toggles)",
           hint="against", show=True),
    Action("diff.reference", "r", "reference", DIFF,
           help="Reference the line under the cursor in a request for changes (again: drop it)",
           hint="ref", show=True),
    Action("diff.accept", "A", "accept", DIFF, help="Accept: merge into the base (asks first)",
           hint="accept", show=True),
    Action("diff.request_changes", "C", "request_changes", DIFF,
           help="Request changes, with the referenced lines (asks for the text)",
           hint="changes", show=True),
    Action("diff.discard", "X", "discard", DIFF,
           help="Discard the worktree and its branch (asks first)", hint="discard", show=True),
    Action("diff.help", "question_mark", "help", DIFF, help="Help", hint="help", show=True,
           key_display="?"),
    Action("diff.up", "up,k", "move(-1)", DIFF, help="Line up", key_display="up/k"),
    Action("diff.down", "down,j", "move(1)", DIFF, help="Line down", key_display="down/j"),
    Action("diff.page_up", "pageup", "page(-1)", DIFF, help="One page up"),
    Action("diff.page_down", "pagedown", "page(1)", DIFF, help="One page down"),
    Action("diff.first", "home", "jump(0)", DIFF, help="The file's first line"),
    Action("diff.last", "end", "jump(-1)", DIFF, help="The file's last line"),
    Action("diff.left", "left,h", "pan(-1)", DIFF, help="Scroll left", key_display="left/h"),
    Action("diff.right", "right,l", "pan(1)", DIFF, help="Scroll right",
           key_display="right/l"),
)


def diff_help_rows(keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """The diff view's `?`."""
    return [(shown_key(a, keys), a.help) for a in DIFF_ACTIONS]


BY_ID: dict[str, Action] = {action.id: action for action in ACTIONS}
DIFF_BY_ID: dict[str, Action] = {action.id: action for action in DIFF_ACTIONS}
#: pane actions by method name (the navigation and pane-switching names repeat; all global)
BY_NAME: dict[str, Action] = {a.name: a for a in ACTIONS if a.pane != GLOBAL}
#: the App's own key, listed last in help
PALETTE_KEY = "ctrl+p"

#: a pane's border hint: action ids, or (id, word) where the word depends on the selection
Hint = Sequence[str | tuple[str, str]]


def shown_key(action: Action, keys: Mapping[str, str]) -> str:
    """The key as the operator reads it: a remapped one as written, else the table's."""
    remapped = keys.get(action.id)
    if remapped:
        return remapped.split(",", 1)[0].strip()
    return action.key_display or action.keys[0]


def hint_text(hint: Hint, keys: Mapping[str, str]) -> str:
    parts = []
    for item in hint:
        action_id, word = item if isinstance(item, tuple) else (item, BY_ID[item].hint)
        parts.append(f"{shown_key(BY_ID[action_id], keys)} {word}")
    return " · ".join(parts)


def help_rows(keys: Mapping[str, str], *, issues: bool,
              services: bool) -> list[tuple[str, str]]:
    groups = [ALWAYS] + [WITH_ISSUES] * issues + [WITH_SERVICES] * services + [LAST]
    rows = [(shown_key(a, keys), a.help) for group in groups for a in ACTIONS
            if a.help and a.help_group == group]
    return rows + [(PALETTE_KEY, "Command palette")]


def palette_entries(keys: Mapping[str, str]) -> list[tuple[Action, str]]:
    """Every action with a description, and its key as shown."""
    return [(a, shown_key(a, keys)) for a in ACTIONS if a.description]


def _final_keys(keys: Mapping[str, str],
                table: Sequence[Action] = ACTIONS) -> dict[str, frozenset[str]]:
    return {a.id: frozenset(k.strip() for k in keys.get(a.id, a.key).split(","))
            for a in table}


def keymap_problems(keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """What is wrong with a remapping by action id: unknown ids, and keys that would mean two
    things at once (two actions of one pane, or a pane's and one that runs anywhere; two of
    the diff view's)."""
    known = BY_ID.keys() | DIFF_BY_ID.keys()
    problems = [(action_id, f"{action_id!r} is not an action of the console"
                 + "".join(f" (did you mean {near}?)"
                           for near in difflib.get_close_matches(action_id, known, 1, 0.8)))
                for action_id in keys if action_id not in known]
    final = _final_keys({k: v for k, v in keys.items() if k in BY_ID})
    for index, first in enumerate(ACTIONS):
        for second in ACTIONS[index + 1:]:
            shared = final[first.id] & final[second.id]
            if not shared or not (first.pane == second.pane or first.everywhere
                                  or second.everywhere):
                continue
            blamed, other = (second, first) if second.id in keys else (first, second)
            key = ", ".join(sorted(shared))
            if first.pane == second.pane and not first.everywhere:
                why = f"in the {first.pane} pane"
            elif first.everywhere and second.everywhere:
                why = "in every pane"
            else:
                why = f"and {(first if first.everywhere else second).id} works in every pane"
            problems.append((blamed.id, f"{blamed.id} and {other.id} would share the key "
                             f"{key} {why}"))
    return problems + _diff_problems(keys)


def _diff_problems(keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """The diff view is a screen of its own: its keys clash only with each other."""
    final = _final_keys({k: v for k, v in keys.items() if k in DIFF_BY_ID}, DIFF_ACTIONS)
    problems = []
    for index, first in enumerate(DIFF_ACTIONS):
        for second in DIFF_ACTIONS[index + 1:]:
            shared = final[first.id] & final[second.id]
            if shared:
                blamed, other = (second, first) if second.id in keys else (first, second)
                problems.append((blamed.id, f"{blamed.id} and {other.id} would share the key "
                                 f"{', '.join(sorted(shared))} in the diff view"))
    return problems


def textual_keymap(keys: Mapping[str, str]) -> dict[str, str]:
    """The keymap for `App.set_keymap`.

    Textual drops every binding on a key that a remapped binding leaves or takes, so the
    other panes' actions on those keys are listed again with their own keys (the diff view's
    likewise, within its screen).
    """
    keymap: dict[str, str] = {}
    for table, by_id in ((ACTIONS, BY_ID), (DIFF_ACTIONS, DIFF_BY_ID)):
        mine = {k: v for k, v in keys.items() if k in by_id}
        touched = {k.strip() for action_id, key in mine.items()
                   for k in (*by_id[action_id].keys, *key.split(","))}
        keymap.update({a.id: mine.get(a.id, a.key) for a in table
                       if a.id in mine or touched & set(a.keys)})
    return keymap


class Keymapped(Protocol):
    """A Textual App, as far as remapping goes."""

    def set_keymap(self, keymap: dict[str, str]) -> None: ...


def apply_keys(app: Keymapped, keys: Mapping[str, str]) -> None:
    """Remap the console's keys by action id; refuses a mapping `keymap_problems` finds fault
    with (the caller says which file and line)."""
    problems = keymap_problems(keys)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    app.set_keymap(textual_keymap(keys))
