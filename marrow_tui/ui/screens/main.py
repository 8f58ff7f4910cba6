"""The main screen: status line, the panes, and the keys.

The screen is the controller. It lays the panes out (`layout.py` decides which are shown for
the terminal's size), switches, filters and moves the cursor; an action of a pane (the action
table says which) runs on that pane, and only while that pane is the chosen one, unless the
table says it runs anywhere. Each pane keeps its own filter, named in its border while on.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.content import Content
from textual.events import Click, Resize
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Label

from ...core.events import Event, describe
from ...core.state import State
from ...core.text import plural, printable
from ..actions import ACTIONS, BY_ID, BY_NAME, Action, help_rows, hint_text, shown_key
from ..bridge import Activity, Bridge, Changed
from ..link import Link
from ..source import ConsoleRuntime, OperatorSession
from ..literal import literal
from ..modals.confirm import ConfirmModal
from ..modals.detail import HelpModal
from ..panes.activity import ACTIVITY_PAST, ActivityPane
from ..panes.agents import AgentsPane
from ..panes.base import Pane, TablePane
from ..panes.board import BoardPane
from ..panes.claims import EXPIRING_SOON, ClaimsPane
from ..panes.issues import IssuesPane
from ..panes.services import ServicesPane
from ..panes.sessions import SessionsPane
from ..panes.steering import SteeringPane, steering_keys
from ..panes.table import KeyedTable
from ..review import Reviews
from .layout import COLUMN, MODES, SINGLE, mode_for, shown_panes
from ..status import ATTENTION, Part, failure_part, fit, request_part


class PaneTab(Label):
    """A pane's tab: a click on it shows the pane."""

    class Chosen(Message):
        def __init__(self, pane: str) -> None:
            super().__init__()
            self.pane = pane

    def __init__(self, text: str, pane: str) -> None:
        super().__init__(text, id=f"tab-{pane}", classes="tab")
        self.pane = pane

    def on_click(self) -> None:
        self.post_message(self.Chosen(self.pane))


class StatusLine(Widget):
    """One line of text that repaints without asking the screen to lay itself out again."""

    text: reactive[Text] = reactive(Text, layout=False)

    def render(self) -> Text:
        return self.text


class MainScreen(Screen[None]):
    BINDINGS = [Binding(a.key, a.run, a.binding_description, show=a.show,
                        key_display=a.key_display, id=a.id) for a in ACTIONS]

    pane: reactive[str] = reactive("claims")
    #: one pane has the whole screen (`z`), whatever the terminal's size
    zoomed: reactive[bool] = reactive(False)
    #: nothing on this screen takes focus by itself (the hidden filter box least of all)
    AUTO_FOCUS = None

    def __init__(self, runtime: ConsoleRuntime, session: OperatorSession, hub_uri: str,
                 bell: bool = True, keys: Mapping[str, str] | None = None,
                 link: Link | None = None) -> None:
        super().__init__()
        self.runtime = runtime
        #: an attached console's connection to its runtime (None: the runtime is in process)
        self.link = link
        self.session = session
        self.hub_uri = hub_uri
        self.bell = bell
        #: keys remapped by action id (already applied to the app's keymap): hints and help
        #: name them
        self.keys = dict(keys or {})
        self.bridge: Bridge | None = None
        self.latest_alert = ""
        #: each pane's border title as last set (the widget gives it back as markup), and
        #: the error or notice it carries besides the pane's filter
        self._titles: dict[str, str] = {}
        self._notices: dict[str, str] = {}
        #: the panes on the screen now (`_arrange`), and the one chosen before this one
        self.on_screen: set[str] = set()
        self._previous = "claims"
        #: the pane the open filter box filters
        self._filtering = ""
        #: the diff view and the review actions; their replies come to it first
        self.review = Reviews(self)
        self.sessions_pane = SessionsPane(self)
        self.issues_pane = IssuesPane(self)
        self.services_pane = ServicesPane(self)
        self.activity_pane = ActivityPane(self)
        # In tab order (Steering is 0: it comes first when something waits).
        panes: list[Pane] = [SteeringPane(self), AgentsPane(self), ClaimsPane(self),
                             BoardPane(self), self.activity_pane, self.sessions_pane,
                             self.issues_pane, self.services_pane]
        self.panes: dict[str, Pane] = {pane.name: pane for pane in panes}
        self.tables: dict[str, KeyedTable] = {
            pane.name: pane.table for pane in panes if isinstance(pane, TablePane)}
        self.activity = self.activity_pane.log
        state = runtime.state
        # With agents to run, their sessions are what the operator looks at first.
        # Agents configured (or runs in the history): their sessions are a pane of their own.
        # A config with services only opens on the services.
        self.scheduled = bool(state.sessions.agents or state.sessions.by_id
                              or state.sessions.config and not state.services.services)
        if self.scheduled:
            self.set_reactive(MainScreen.pane, "sessions")
        elif state.services.services:
            self.set_reactive(MainScreen.pane, "services")
        # With an orchestrator, its issues come first (their runs are in Sessions).
        self._orchestrating = bool(state.issues.workflow)
        if self._orchestrating:
            self.set_reactive(MainScreen.pane, "issues")
        if state.steering.open:  # someone is waiting: that comes first
            self.set_reactive(MainScreen.pane, "steering")
        self._asking = len(state.steering.open)

    # ---- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="tabs"):
            for name, pane in self.panes.items():
                yield PaneTab(self._tab_label(name), name)
        # Three columns (`layout.py`): side by side from 200 columns; from 150 the first
        # stands above the third, beside the second.
        with Container(id="panes"):
            for number in (1, 2, 3):
                yield from self._column(number)
        yield Input(placeholder="filter the pane (Enter keeps it, Esc clears it)", id="filter",
                    disabled=True)
        yield Footer(compact=True)

    def _column(self, number: int) -> ComposeResult:
        with Vertical(id=f"column-{number}", classes="column"):
            for name, pane in self.panes.items():
                if COLUMN[name] == number:
                    with Vertical(id=f"{name}-pane", classes="pane"):
                        yield Label(pane.title, id=f"{name}-title", classes="pane-title")
                        yield pane.widget

    async def on_mount(self) -> None:
        self.bridge = Bridge(self.runtime, self.post_message, self.runtime.clock)
        # What exists now (Textual, the app, the restored state) lives as long as the console:
        # keep it out of the collector's generations, so a full collection scans only what
        # came since.
        gc.collect()
        gc.freeze()
        self.set_interval(1.0, self._tick)
        if self.link is not None:
            self.link.start(self)
        self.set_class(not self.scheduled, "-no-scheduler")
        self.set_class(bool(self._asking), "-asking")
        self.set_class(self._orchestrating, "-orchestrating")
        self.set_class(bool(self.runtime.state.services.services), "-servicing")
        self.watch_pane(self.pane, self.pane)
        for table in self.tables.values():
            self.run_worker(table.fill(), group="fill", exit_on_error=False)
        # What happened before the console opened (before a restart too), from the log: read
        # in the step that subscribed the bridge, so no event is missed or shown twice.
        self.run_worker(self._past(self.runtime.history(ACTIVITY_PAST)), group="past",
                        exit_on_error=False)
        self.refresh_status()

    async def _past(self, reading: Awaitable[list[tuple[float, Event]]]) -> None:
        """The Activity pane's recent past, then a line saying what the start restored."""
        entries = []
        for at, event in await reading:
            try:
                text = describe(event)
            except (KeyError, TypeError, ValueError):  # an event of an older shape: skipped
                continue
            if text is not None:
                entries.append(Activity(at, event.kind, text))
        # The start's line goes where the start was: after what the last run logged, before
        # what this one did on starting (a lease that ran out while it was down, say).
        started = self.runtime.state.started_at
        at = next((i for i, entry in enumerate(entries) if entry.at >= started), len(entries))
        entries.insert(at, Activity(started, "start", f"start     marrow-tui started ({self.runtime.restored})"))
        self.activity.add_past(entries, visible=self.shown("activity"))

    def on_unmount(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
        if self.link is not None:
            self.link.stop()

    def repaint_all(self) -> None:
        """The state was loaded anew (an attached console's fresh snapshot): every pane reads
        all its rows again."""
        for table in self.tables.values():
            self.run_worker(table.fill(), group="fill", exit_on_error=False)
        self.set_class(bool(self.runtime.state.services.services), "-servicing")
        self.refresh_status()

    def on_resize(self, event: Resize) -> None:
        self._arrange()
        self._fit_tabs()
        self._catch_up()
        self.refresh_status()

    def _tab_label(self, name: str, *, short: bool = False) -> str:
        key = shown_key(BY_ID[f"pane.{name}"], self.keys)
        return f" {key} " if short else f" {key} {self.panes[name].title} "

    def _fit_tabs(self) -> None:
        """The tab bar fits the terminal: when every name does not, the other panes' tabs
        show their number only (`?` says which is which)."""
        shown = [name for name in self.panes
                 if name not in ("issues", "services") or name == self.pane
                 or self.has_class({"issues": "-orchestrating", "services": "-servicing"}[name])]
        short = sum(len(self._tab_label(name)) for name in shown) > self.size.width
        for name in self.panes:
            label = self._tab_label(name, short=short and name != self.pane)
            tab = self.query_one(f"#tab-{name}", PaneTab)
            if str(tab.content) != label:
                tab.update(label)

    def watch_pane(self, old: str, pane: str) -> None:
        if old != pane:
            self._previous = old
        if self._filtering and self._filtering != pane:
            self._close_filter_box()
        for name in self.panes:
            self.query_one(f"#{name}-pane").set_class(name == pane, "-active")
            self.query_one(f"#tab-{name}").set_class(name == pane, "-active")
        self._arrange()
        self._fit_tabs()
        self._catch_up()
        self._hint()

    def watch_zoomed(self) -> None:
        self._arrange()
        self._catch_up()

    def present(self) -> list[str]:
        """The panes this setup has, in tab order: all are shown once the terminal is big."""
        state = self.runtime.state
        has = {"steering": bool(state.steering.open),
               "sessions": self.scheduled or bool(state.issues.workflow),
               "issues": bool(state.issues.workflow),
               "services": bool(state.services.services)}
        return [name for name in self.panes if has.get(name, True)]

    def _arrange(self) -> None:
        """Show the panes the terminal has room for (a pane shown again catches up)."""
        mode = mode_for(self.size.width, self.size.height, self.zoomed)
        for each in MODES:
            self.set_class(each == mode, f"-{each}")
        before, self.on_screen = self.on_screen, shown_panes(mode, self.pane, self._previous,
                                                             self.present())
        for name in self.panes:
            self.query_one(f"#{name}-pane").set_class(name in self.on_screen, "-shown")
        for number in (1, 2, 3):
            column = self.query_one(f"#column-{number}")
            column.set_class(not any(COLUMN[name] == number for name in self.on_screen),
                             "-vacant")
            column.set_class(COLUMN[self.pane] == number, "-chosen")
        self._fold()
        if self.on_screen - before:
            self._catch_up()

    def _fold(self) -> None:
        """Where several panes are shown, an empty one (other than the chosen) takes a line,
        unless every pane of its column is empty: a column is never left blank."""
        folding = not self.has_class(f"-{SINGLE}")
        empty = {name for name, table in self.tables.items()
                 if folding and name in self.on_screen and not table.row_count
                 and not table.filling and not table.filter_text and name != self.pane}
        for number in (1, 2, 3):
            column = [name for name in self.on_screen if COLUMN[name] == number]
            if column and all(name in empty for name in column):
                empty.discard(max(column, key=list(self.panes).index))
        for name in self.tables:
            box = self.query_one(f"#{name}-pane")
            if (name in empty) != box.has_class("-empty"):
                folded = name in empty
                box.set_class(folded, "-empty")
                title = self.panes[name].title
                self.query_one(f"#{name}-title", Label).update(
                    f"{title} (none)" if folded else title)

    def _catch_up(self) -> None:
        for name, table in self.tables.items():
            if self.shown(name):
                table.catch_up()
        if self.shown("activity") and self.activity.stale:
            self.activity.refilter(self.activity.filter_text)

    @on(KeyedTable.Filled)
    def _filled(self) -> None:
        self._fold()

    @on(KeyedTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self._hint()

    def _hint(self) -> None:
        """Each pane's border names the keys that act on its selection, when they can."""
        for name, pane in self.panes.items():
            hint = hint_text(pane.hint(), self.keys)
            box = self.query_one(f"#{name}-pane")
            if box.border_subtitle != hint:
                box.border_subtitle = hint

    # ---- updates from the runtime --------------------------------------------------------

    def shown(self, pane: str) -> bool:
        return pane in self.on_screen

    @on(Changed)
    def _changed(self, message: Changed) -> None:
        started = time.perf_counter()
        self._arrange()  # a pane this change brings (Issues, Services, Steering) is shown
        # Panes out of sight only note what changed; they catch up when shown.
        runs = self.sessions_pane.table
        run_keys = [key for agent in sorted(message.runs) for key in runs.keys_of(agent)]
        asks = [key for rid in sorted(message.asks) for key in steering_keys(rid)]
        issues = self.issues_pane.table
        issue_keys = [key for identifier in sorted(message.issues)
                      for key in issues.keys_of(identifier)]
        for name, keys in (("claims", message.claims), ("agents", message.agents),
                           ("board", message.tasks), ("sessions", run_keys),
                           ("steering", asks), ("issues", issue_keys),
                           ("services", message.services)):
            if keys:
                table = self.tables[name]
                if self.shown(name) and not table.filling:
                    table.sync(sorted(keys))
                else:
                    table.later(keys)
        if message.activity:
            self.activity.add(message.activity, visible=self.shown("activity"))
        for alert in message.alerts:
            if alert.by and alert.by == self.session.name:
                continue  # this console's own action: its reply said so already
            self.latest_alert = printable(alert.text)
            self.toast(alert.text, severity=alert.severity, timeout=6)  # type: ignore[arg-type]
            if self.bell and alert.severity != "information":
                self.app.bell()
        self.refresh_status()
        self._fold()
        self._hint()
        if self.bridge is not None:
            self.bridge.handled(time.perf_counter() - started)

    def _tick(self) -> None:
        for name in ("agents", "claims", "sessions", "steering", "issues", "services"):
            if self.shown(name):
                self.tables[name].tick()
        self.refresh_status()

    def refresh_status(self) -> None:
        """The status line, made anew from the live state (never from an old alert)."""
        state = self.runtime.state
        now = self.runtime.clock()
        waiting = state.steering.waiting()
        if bool(waiting) != bool(self._asking):
            self.set_class(bool(waiting), "-asking")
            # `a` works only while something waits: the footer says so as it changes.
            self.refresh_bindings()
        self._asking = len(waiting)
        answer = shown_key(BY_ID["steering.answer"], self.keys)
        parts = [Part(1, " marrow-tui ", style="bold reverse")]
        link = self.link.part() if self.link is not None else None
        if link is not None and link.rank >= ATTENTION:  # the link is down: that first
            parts.append(link)
        parts.extend(part for part in (request_part(waiting, now, answer),
                                       failure_part(state)) if part is not None)
        parts.extend(self._count_parts())
        self.query_one(StatusLine).text = fit(parts, self.size.width)

    def _count_parts(self) -> list[Part]:
        """The status line's counts, each ranked by how much it matters when space is short."""
        state = self.runtime.state
        now = self.runtime.clock()
        expiring = sum(1 for c in state.claims if c.lease_expires_at - now < EXPIRING_SOON)
        hub = self.link.part() if self.link is not None else Part(2, self.hub_uri,
                                                                   style="bold")
        parts = [*([hub] if hub.rank < ATTENTION else []),
                 Part(3, f"{len(state.presence.online)} online"),
                 Part(7, plural(len(state.claims), "lease"),
                      extra=((f" ({expiring} expiring)", "bold red"),) if expiring else ()),
                 Part(4, f"{plural(len(state.board.tasks), 'task')} "
                         f"({len(state.board.ready())} ready)")]
        if self.scheduled:
            # An orchestrator's runs are sessions too, of no configured agent: said below.
            running = sum(1 for s in state.sessions.running() if s.agent in state.sessions.agents)
            if state.sessions.agents or not state.issues.workflow:
                parts.append(Part(6, f"{running} of "
                                     f"{plural(len(state.sessions.agents), 'agent')} running"))
            config = state.sessions.config
            broken = bool(config) and not config.get("ok", True)
            # The error itself stays on the Sessions pane until a good config replaces it.
            title = (f"config not applied (last good kept): {(config.get('errors') or [''])[0]}"
                     if broken else "")
            self.set_border_title("sessions", title)
        orchestrating = bool(state.issues.workflow)
        if orchestrating != self._orchestrating:
            self._orchestrating = orchestrating
            self.set_class(orchestrating, "-orchestrating")
            self._fit_tabs()
        issues = Text()
        self.issues_pane.status(issues)
        if issues.plain:
            parts.append(Part(5, issues.plain.removeprefix(" │ ")))
        services = state.services.services
        if services:
            if not self.has_class("-servicing"):
                self.set_class(True, "-servicing")
                self._fit_tabs()
            healthy = sum(1 for v in services.values() if v.state == "healthy")
            parts.append(Part(6, f"{healthy} of {plural(len(services), 'service')} healthy",
                              style="" if healthy == len(services) else "bold yellow"))
        return parts

    def set_border_title(self, pane: str, title: str) -> None:
        """A pane's border title, which quotes config and workflow errors: shown literally,
        after the pane's filter while one is on."""
        self._notices[pane] = title
        self._show_title(pane)

    def filter_of(self, pane: str) -> str:
        table = self.tables.get(pane)
        return table.filter_text if table is not None else self.activity.filter_text

    def _show_title(self, pane: str) -> None:
        notice, needle = self._notices.get(pane, ""), self.filter_of(pane)
        if self._titles.get(pane) == f"{needle}\0{notice}":
            return
        self._titles[pane] = f"{needle}\0{notice}"
        title = literal(notice)
        if needle:
            shown = Content.assemble((f"filter {printable(needle)!r}", "bold $accent"),
                                     (" (esc clears)", "$text-muted"))
            title = shown + "  " + title if notice else shown
        self.query_one(f"#{pane}-pane").border_title = title

    def toast(self, text: str, *, severity: SeverityLevel = "information",
              timeout: float | None = None) -> None:
        """A notification; its text often quotes agents (names, task ids, refusals), so it is
        shown literally: never read as markup, controls written out."""
        self.app.notify(printable(text), severity=severity, timeout=timeout, markup=False)

    # ---- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_filter":
            return bool(self._filtering or self.filter_of(self.pane))
        if action == "cycle":
            return not self._filtering
        owner = BY_NAME.get(action)
        if owner is None:
            return True
        if not owner.anywhere and self.pane != owner.pane:
            return False  # a key several panes use is the shown pane's own
        return self.panes[owner.pane].allows(action)

    def action_pane(self, pane: str) -> None:
        self.pane = pane

    def action_zoom(self) -> None:
        self.zoomed = not self.zoomed

    def action_cycle(self, step: int) -> None:
        """The next (or previous) pane of this setup, in tab order."""
        present = self.present()
        names = [name for name in self.panes if name in present or name == self.pane]
        self.pane = names[(names.index(self.pane) + step) % len(names)]

    @on(PaneTab.Chosen)
    def _tab_clicked(self, event: PaneTab.Chosen) -> None:
        self.pane = event.pane

    def on_click(self, event: Click) -> None:
        """A click in a pane makes it the chosen one (a click on a row also selects it)."""
        node = event.widget
        while node is not None and node is not self:
            if node.has_class("pane") and node.id:
                self.pane = node.id.removesuffix("-pane")
                return
            node = node.parent

    def show_row(self, pane: str, key: str) -> None:
        """Switch to a pane and select a row of it (once the switch has been drawn)."""
        self.pane = pane
        table = self.tables[pane]

        def select() -> None:
            try:
                table.move_cursor(table.get_row_index(key))
            except KeyError:
                self.toast("Not on the screen any more.", timeout=3)

        self.call_after_refresh(select)

    def action_filter(self) -> None:
        """The filter box, for the chosen pane, holding that pane's own filter."""
        self._filtering = self.pane
        box = self.query_one("#filter", Input)
        box.value = self.filter_of(self.pane)
        box.disabled = False
        box.add_class("-shown")
        self.set_focus(box)  # now, not after a refresh: the next key typed is its own

    def action_close_filter(self) -> None:
        """Esc: the filter box closes and the pane's filter is cleared."""
        self._apply_filter(self._filtering or self.pane, "")
        self._close_filter_box()

    def _close_filter_box(self) -> None:
        self._filtering = ""
        box = self.query_one("#filter", Input)
        box.remove_class("-shown")
        box.disabled = True
        self.set_focus(None)
        self._hint()

    def _apply_filter(self, pane: str, text: str) -> None:
        if text == self.filter_of(pane):
            return
        if pane == "activity":
            self.activity.refilter(text)
        else:
            table = self.tables[pane]
            table.filter_text = text
            self.run_worker(table.fill(), group=f"fill-{pane}", exclusive=True,
                            exit_on_error=False)
        self._show_title(pane)

    def action_move(self, step: int) -> None:
        table = self.tables.get(self.pane)
        if table is not None:
            table.action_cursor(step)
        elif step < 0:
            self.activity.scroll_up(animate=False)
        else:
            self.activity.scroll_down(animate=False)

    def action_page(self, direction: int) -> None:
        table = self.tables.get(self.pane)
        if table is not None:
            table.action_page(direction)
        elif direction < 0:
            self.activity.scroll_page_up(animate=False)
        else:
            self.activity.scroll_page_down(animate=False)

    def action_jump(self, row: int) -> None:
        table = self.tables.get(self.pane)
        if table is not None:
            table.action_jump(row)
        elif row == 0:
            self.activity.scroll_home(animate=False)
        else:
            self.activity.scroll_end(animate=False)

    def action_open(self) -> None:
        table = self.tables.get(self.pane)
        if table is not None:
            table.action_select()

    @on(KeyedTable.RowSelected)
    def _open(self, event: KeyedTable.RowSelected) -> None:
        for pane in self.panes.values():
            if isinstance(pane, TablePane) and pane.table is event.table:
                pane.open(event.key)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filtering:
            self._apply_filter(self._filtering, event.value)

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        self._close_filter_box()

    def action_help(self) -> None:
        state = self.runtime.state
        self.app.push_screen(HelpModal(help_rows(self.keys, issues=bool(state.issues.workflow),
                                                 services=bool(state.services.services))))

    def action_quit(self) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.exit()

        if self.link is not None:  # attached: quitting leaves the runtime as it is
            self.app.push_screen(ConfirmModal("Detach from the runtime?", self.link.quit_text(),
                                              "Detach", "Stay"), confirmed)
            return
        self.app.push_screen(ConfirmModal("Quit marrow-tui?",
                                          quit_text(self.runtime.state, self.session.name),
                                          "Quit and stop the runtime", "Stay"), confirmed)

    # ---- operator replies ------------------------------------------------------------------

    def operator_reply(self, frame: dict[str, Any]) -> None:
        """A private frame for the operator: refusals become toasts, chats go to activity."""
        kind = frame.get("type", "")
        if self.review.reply(frame):
            return
        if kind.endswith("_denied") or kind == "error":
            self.toast(str(frame.get("payload", kind)), severity="error", timeout=8)
        elif kind == "services" and self.services_pane.show_graph(frame):
            pass
        elif kind in ("service_starting", "service_stopping", "service_restarting"):
            self.toast(str(frame.get("payload")), timeout=3)
        elif kind in ("pause_result", "wake_result", "steer_answered"):
            self.toast(str(frame.get("payload")), timeout=4)
        elif kind in ("issue_dispatching", "issue_cancelling", "issue_retrying"):
            self.toast(str(frame.get("payload") or f"{kind}: {frame.get('identifier')}"),
                       timeout=4)
        elif kind == "issue_created":
            self.toast(f"Created {frame.get('identifier')}"
                       + (f": {frame.get('path')}" if frame.get("path") else ""), timeout=6)
        elif kind == "task_added":
            name = frame.get("file", "").rsplit("/", 1)[-1]
            self.toast(f"Queued for {frame.get('agent')}: {name}", timeout=4)


def quit_text(state: State, operator: str = "") -> str:
    """What quitting does, as the host does it on the way out (host.py): runs and services
    are ended, the hub stops (consoles attached to it lose it), the log keeps everything."""
    lines = []
    runs = len(state.sessions.running())
    if runs:
        one = runs == 1
        lines.append(f"{plural(runs, 'agent run')} {'ends' if one else 'end'}: SIGTERM to "
                     f"{'its' if one else 'their'} process group, SIGKILL after the agent's "
                     "stop_grace; recorded as stopped at shutdown.")
    up = sum(1 for service in state.services.services.values()
             if service.state not in ("stopped", "disabled", "failed"))
    if up:
        lines.append(f"{plural(up, 'service')} {'stops' if up == 1 else 'stop'} the same way, "
                     "dependents first.")
    connected = sum(1 for agent in state.presence.online.values() if not agent.operator)
    lines.append("The hub stops" + (
        f": {plural(connected, 'connected agent')} "
        f"{'loses its' if connected == 1 else 'lose their'} connection." if connected
        else "."))
    consoles = sum(1 for agent in state.presence.online.values()
                   if agent.operator and agent.name != operator)
    if consoles:
        lines.append(f"{plural(consoles, 'other operator')} attached "
                     f"({'its console waits' if consoles == 1 else 'their consoles wait'} "
                     "for the runtime to be back).")
    lines.append("Every lease, task, message and run is saved and comes back on the next "
                 "start.")
    return "\n".join(lines)


def _pane_action(action: Action) -> Callable[[MainScreen], None]:
    def run(screen: MainScreen) -> None:
        table = screen.tables.get(action.pane)
        if table is not None and screen.pane == action.pane:
            table.pin()  # acted on: the cursor stays on this row as rows move
        getattr(screen.panes[action.pane], action.name)()

    run.__doc__ = action.description
    return run


# Textual runs a binding's action as the screen's `action_<name>`: each pane action gets one,
# made from the table, that runs it on the pane that owns it.
for _action in BY_NAME.values():
    setattr(MainScreen, f"action_{_action.name}", _pane_action(_action))
