"""The main screen: status line, the panes, and every operator action.

The screen is the controller. Widgets show; the screen reads the selection, asks with a modal
when an action needs an answer, and sends the operator's frame through the runtime's command
path (the same one agents use). It never edits state itself.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.events import Resize
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Label

from ..core.board import TASK_STATUSES
from ..core.events import Event, describe
from ..core.orchestration import IssueView
from ..core.sessions import Session
from ..core.steering import Request
from ..runtime import LocalSession, Runtime
from .bridge import Activity, Bridge, Changed, workflow_error
from .literal import literal, printable
from .logview import LogScreen
from .modals import (
    AnswerModal,
    ChoiceModal,
    ConfirmModal,
    DetailModal,
    Field,
    FormModal,
    HelpModal,
)
from .widgets import (
    ActivityLog,
    AgentsTable,
    BoardTable,
    ClaimsTable,
    IssuesTable,
    KeyedTable,
    ServicesTable,
    SessionsTable,
    SteeringTable,
    ago,
    session_key,
    steering_keys,
)

PANES = ("steering", "agents", "claims", "board", "activity", "sessions", "issues",
         "services")
TITLES = {"steering": "Steering", "agents": "Agents", "claims": "Claims",
          "board": "Blackboard", "activity": "Activity", "sessions": "Sessions",
          "issues": "Issues", "services": "Services"}
#: the key that shows each pane (Steering is 0: it comes first when something waits)
PANE_KEYS = {"steering": 0, "agents": 1, "claims": 2, "board": 3, "activity": 4, "sessions": 5,
             "issues": 6, "services": 7}
#: the Issues pane's keys, for help while an orchestrator runs
ISSUE_HELP = [("6", "Issues"), ("D", "Dispatch the issue now (issues)"),
              ("x", "Cancel the issue's run and park it (issues)"),
              ("R", "Retry a parked issue (issues)"), ("n", "New issue (issues)"),
              ("g", "Go to the issue's run (issues)")]
SERVICE_HELP = [("7", "Services"), ("u", "Start the service (services)"),
                ("x", "Stop the service (services)"), ("R", "Restart the service (services)"),
                ("o", "The service's log (services)"),
                ("G", "The services' dependency graph (services)")]
#: other panes' actions on the keys the Issues pane uses for its own (x, R, g)
ISSUE_KEYS_TAKEN = frozenset({"stop_run", "force_release", "go_to_asker"})
SERVICE_ACTIONS = frozenset({"start_service", "stop_service", "restart_service",
                             "open_service_log", "service_graph"})
SERVICE_KEYS_TAKEN = frozenset({"stop_run", "force_release", "cancel_issue", "retry_issue",
                                "open_log"})
#: what the issue keys act on (the orchestrator decides; these only gate the keys)
DISPATCHABLE = frozenset({"idle", "retrying", "blocked"})
CANCELLABLE = frozenset({"running", "waiting", "retrying", "idle", "blocked"})
#: a terminal at least this big shows every pane at once
WIDE = (150, 40)
EXTEND_SECONDS = 3600


class StatusLine(Widget):
    """One line of text that repaints without asking the screen to lay itself out again."""

    text: reactive[Text] = reactive(Text, layout=False)

    def render(self) -> Text:
        return self.text


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("0", "pane('steering')", "Steering", id="pane.steering", show=False),
        Binding("1", "pane('agents')", "Agents", id="pane.agents", show=False),
        Binding("2", "pane('claims')", "Claims", id="pane.claims", show=False),
        Binding("3", "pane('board')", "Board", id="pane.board", show=False),
        Binding("4", "pane('activity')", "Activity", id="pane.activity", show=False),
        Binding("5", "pane('sessions')", "Sessions", id="pane.sessions", show=False),
        Binding("6", "pane('issues')", id="pane.issues", show=False),
        Binding("7", "pane('services')", id="pane.services", show=False),
        # Keys that act on a pane's selection are shown in that pane's border, not the footer:
        # the footer then never has to be rebuilt when the pane or the selection changes.
        Binding("h", "handoff", "Hand off", id="lease.handoff", show=False),
        Binding("r", "release", "Release", id="lease.release", show=False),
        Binding("R", "force_release", "Force release", id="lease.force_release", show=False),
        Binding("e", "extend", "Extend", id="lease.extend", show=False),
        Binding("a", "answer", "Answer", id="steer.answer"),
        Binding("c", "cancel_request", "Cancel the request (steering)", id="steer.cancel",
                show=False),
        Binding("g", "go_to_asker", "Go to the asker's run or lease (steering)",
                id="steer.goto", show=False),
        Binding("d", "declare", "Declare", id="board.declare"),
        Binding("s", "status", "Status", id="board.status", show=False),
        Binding("w", "wake", "Wake the agent (sessions)", id="run.wake", show=False),
        Binding("x", "stop_run", "Stop the run (sessions)", id="run.stop", show=False),
        Binding("t", "add_task", "Queue a task (sessions)", id="run.task", show=False),
        Binding("o", "open_log", "Show the run's output", id="run.output", show=False),
        Binding("p", "toggle_agent", "Pause/resume the agent (sessions)", id="run.pause",
                show=False),
        # The Issues pane's keys share letters with other panes' (x, R, g): each is allowed
        # only on its own pane (check_action), so a key press finds the one binding that
        # applies. Help lists them (ISSUE_HELP) only while an orchestrator runs.
        Binding("D", "dispatch_issue", id="issue.dispatch", show=False),
        Binding("x", "cancel_issue", id="issue.cancel", show=False),
        Binding("R", "retry_issue", id="issue.retry", show=False),
        Binding("n", "new_issue", id="issue.new", show=False),
        Binding("g", "go_to_issue_run", id="issue.goto", show=False),
        # The Services pane's: u start, x stop, R restart, o (or Enter) its log, G the graph.
        Binding("u", "start_service", id="service.start", show=False),
        Binding("x", "stop_service", id="service.stop", show=False),
        Binding("R", "restart_service", id="service.restart", show=False),
        Binding("o", "open_service_log", id="service.log", show=False),
        Binding("G", "service_graph", id="service.graph", show=False),
        Binding("m", "message", "Message", id="chat.send"),
        Binding("slash", "filter", "Filter", id="view.filter", key_display="/"),
        Binding("question_mark", "help", "Help", id="app.help", key_display="?"),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("escape", "close_filter", show=False, id="view.close_filter"),
        # The panes never take focus (a focus change rebuilds the footer): the screen moves
        # the cursor of whichever pane is shown.
        Binding("up", "move(-1)", show=False, id="view.up"),
        Binding("down", "move(1)", show=False, id="view.down"),
        Binding("pageup", "page(-1)", show=False, id="view.page_up"),
        Binding("pagedown", "page(1)", show=False, id="view.page_down"),
        Binding("home,ctrl+home", "jump(0)", show=False, id="view.first"),
        Binding("end,ctrl+end", "jump(-1)", show=False, id="view.last"),
        Binding("enter", "open", show=False, id="view.open"),
    ]

    pane: reactive[str] = reactive("claims")
    #: nothing on this screen takes focus by itself (the hidden filter box least of all)
    AUTO_FOCUS = None

    def __init__(self, runtime: Runtime, session: LocalSession, hub_uri: str,
                 bell: bool = True) -> None:
        super().__init__()
        self.runtime = runtime
        self.session = session
        self.hub_uri = hub_uri
        self.bell = bell
        self.bridge: Bridge | None = None
        self.latest_alert = ""
        #: each pane's border title as last set (the widget gives it back as markup)
        self._titles: dict[str, str] = {}
        clock = runtime.clock
        state = runtime.state
        self.tables: dict[str, KeyedTable] = {
            "agents": AgentsTable(state, clock, id="agents-table"),
            "claims": ClaimsTable(state, clock, id="claims-table"),
            "board": BoardTable(state, clock, id="board-table"),
            "sessions": SessionsTable(state, clock, id="sessions-table"),
            "steering": SteeringTable(state, clock, id="steering-table"),
            "issues": IssuesTable(state, clock, id="issues-table"),
            "services": ServicesTable(state, clock, id="services-table"),
        }
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
        self.activity = ActivityLog(id="activity-log")

    # ---- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="tabs"):
            for name in PANES:
                yield Label(f" {PANE_KEYS[name]} {TITLES[name]} ", id=f"tab-{name}",
                            classes="tab")
        with Container(id="panes"):
            for name in PANES:
                with Vertical(id=f"{name}-pane", classes="pane"):
                    yield Label(TITLES[name], classes="pane-title")
                    yield self.tables[name] if name in self.tables else self.activity
        yield Input(placeholder="filter the pane (Enter to keep, Esc to close)", id="filter",
                    disabled=True)
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        self.bridge = Bridge(self.runtime, self.post_message, self.runtime.clock)
        # What exists now (Textual, the app, the restored state) lives as long as the console:
        # keep it out of the collector's generations, so a full collection scans only what
        # came since.
        gc.collect()
        gc.freeze()
        self.set_interval(1.0, self._tick)
        self.set_class(not self.scheduled, "-no-scheduler")
        self.set_class(bool(self._asking), "-asking")
        self.set_class(self._orchestrating, "-orchestrating")
        self.set_class(bool(self.runtime.state.services.services), "-servicing")
        self.watch_pane(self.pane)
        for table in self.tables.values():
            self.run_worker(table.fill(), group="fill", exit_on_error=False)
        # What was said before the console opened: the chat history's tail.
        self.activity.add(Activity(m["timestamp"], "chat", text)
                          for m in self.runtime.state.chat.tail(200)
                          if (text := describe(Event("chat", m))) is not None)
        self._refresh_status()

    def on_unmount(self) -> None:
        if self.bridge is not None:
            self.bridge.close()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width >= WIDE[0] and event.size.height >= WIDE[1], "wide")
        self._catch_up()

    def watch_pane(self, pane: str) -> None:
        for name in PANES:
            self.query_one(f"#{name}-pane").set_class(name == pane, "-active")
            self.query_one(f"#tab-{name}").set_class(name == pane, "-active")
        self._catch_up()
        self._hint()

    def _catch_up(self) -> None:
        for name, table in self.tables.items():
            if self.shown(name):
                table.catch_up()
        if self.shown("activity") and self.activity.stale:
            self.activity.refilter(self.activity.filter_text)

    @on(KeyedTable.RowHighlighted)
    def _selection_moved(self) -> None:
        self._hint()

    def _hint(self) -> None:
        """Each pane's border names the keys that act on its selection, when they can."""
        state = self.runtime.state
        claim = self.tables["claims"].selected_key
        task = self.tables["board"].selected_key
        run = self._selected_run()
        request = self._selected_request()
        hints = {
            "steering": ("a answer · c cancel · g go to asker" if request is not None
                         and request.open else "g go to asker" if request is not None else ""),
            "sessions": self._run_hint(run),
            "claims": "h hand off · r release · R force-release · e extend · enter open"
            if claim is not None and state.claims.get(claim) is not None else "",
            "board": "s status · enter open" if task is not None else "",
            "agents": "m message · enter open" if self.tables["agents"].selected_key else "",
            "activity": "/ filter",
            "issues": self._issue_hint(),
            "services": "u start · x stop · R restart · o log · G graph"
            if self.tables["services"].selected_key else "",
        }
        for name, hint in hints.items():
            pane = self.query_one(f"#{name}-pane")
            if pane.border_subtitle != hint:
                pane.border_subtitle = hint

    # ---- updates from the runtime --------------------------------------------------------

    def shown(self, pane: str) -> bool:
        return self.pane == pane or self.has_class("wide")

    @on(Changed)
    def _changed(self, message: Changed) -> None:
        started = time.perf_counter()
        # Panes out of sight only note what changed; they catch up when shown.
        runs = self.tables["sessions"]
        run_keys = [key for agent in sorted(message.runs)
                    for key in runs.keys_of(agent)]  # type: ignore[attr-defined]
        asks = [key for rid in sorted(message.asks) for key in steering_keys(rid)]
        issues = self.tables["issues"]
        issue_keys = [key for identifier in sorted(message.issues)
                      for key in issues.keys_of(identifier)]  # type: ignore[attr-defined]
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
            self.latest_alert = printable(alert.text)
            self.toast(alert.text, severity=alert.severity, timeout=6)  # type: ignore[arg-type]
            if self.bell and alert.severity != "information":
                self.app.bell()
        self._refresh_status()
        self._hint()
        if self.bridge is not None:
            self.bridge.handled(time.perf_counter() - started)

    def _tick(self) -> None:
        for name in ("agents", "claims", "sessions", "steering", "issues", "services"):
            if self.pane == name or self.has_class("wide"):
                self.tables[name].tick()
        self._refresh_status()

    def _refresh_status(self) -> None:
        state = self.runtime.state
        now = self.runtime.clock()
        expiring = sum(1 for c in state.claims if c.lease_expires_at - now < 300)
        online = len(state.presence.online)
        badge = (" marrow-tui ", "bold reverse") if self.size.width >= 100 else ""
        waiting = len(state.steering.open)
        asking = (f" ⚑ {waiting} waiting (a to answer) ", "bold reverse magenta") if waiting \
            else ""
        if bool(waiting) != bool(self._asking):
            self.set_class(bool(waiting), "-asking")
        self._asking = waiting
        text = Text.assemble(
            badge, asking, " ", (self.hub_uri, "bold"),
            f"  │ {online} online │ {_count(len(state.claims), 'lease')}",
            (f" ({expiring} expiring)" if expiring else "", "bold red"),
            f" │ {_count(len(state.board.tasks), 'task')} ({len(state.board.ready())} ready)",
        )
        if self.scheduled:
            running = len(state.sessions.running())
            # An orchestrator's runs are sessions too, of no configured agent: said below.
            if state.sessions.agents or not state.issues.workflow:
                text.append(
                    f" │ {running} of {_count(len(state.sessions.agents), 'agent')} running")
            config = state.sessions.config
            broken = bool(config) and not config.get("ok", True)
            if broken:
                text.append(" │ config error", style="bold red")
            # The error itself stays on the Sessions pane until a good config replaces it.
            title = (f"config not applied (last good kept): {(config.get('errors') or [''])[0]}"
                     if broken else "")
            self._set_border_title("sessions", title)
        self._refresh_issues(text)
        services = self.runtime.state.services.services
        if services:
            if not self.has_class("-servicing"):
                self.set_class(True, "-servicing")
            healthy = sum(1 for v in services.values() if v.state == "healthy")
            text.append(f" │ {healthy} of {_count(len(services), 'service')} healthy",
                        style="" if healthy == len(services) else "bold yellow")
        if self.latest_alert:
            text.append(f" │ {self.latest_alert}", style="yellow")
        self.query_one(StatusLine).text = text

    def _set_border_title(self, pane: str, title: str) -> None:
        """A pane's border title, which quotes config and workflow errors: shown literally."""
        if self._titles.get(pane) != title:
            self._titles[pane] = title
            self.query_one(f"#{pane}-pane").border_title = literal(title)

    def toast(self, text: str, *, severity: SeverityLevel = "information",
              timeout: float | None = None) -> None:
        """A notification; its text often quotes agents (names, task ids, refusals), so it is
        shown literally: never read as markup, controls written out."""
        self.app.notify(printable(text), severity=severity, timeout=timeout, markup=False)

    # ---- what is selected ----------------------------------------------------------------

    def _selected(self, pane: str) -> str | None:
        if self.pane != pane:
            return None
        return self.tables[pane].selected_key

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.pane == "issues" and action in ISSUE_KEYS_TAKEN:
            return False  # x, R and g are the Issues pane's own there
        if action in SERVICE_ACTIONS:
            return self.pane == "services" and self._selected("services") is not None \
                or action == "service_graph" and self.pane == "services"
        if self.pane == "services" and action in SERVICE_KEYS_TAKEN:
            return False  # x, R and o are the Services pane's own there
        if action in ("handoff", "release", "force_release", "extend"):
            key = self._selected("claims")
            return key is not None and self.runtime.state.claims.get(key) is not None
        if action == "status":
            return self._selected("board") is not None
        if action in ("cancel_request",):
            request = self._selected_request()
            return request is not None and request.open
        if action == "go_to_asker":
            return self._selected_request() is not None
        if action == "answer":
            return bool(self.runtime.state.steering.open)
        if action in ("wake", "add_task", "toggle_agent"):
            agent = SessionsTable.agent_of(self._selected("sessions"))
            return agent is not None and agent in self.runtime.state.sessions.agents
        if action == "stop_run":
            run = self._selected_run()
            return run is not None and run.running
        if action == "open_log":
            return self._selected_run() is not None
        if action in ("dispatch_issue", "cancel_issue", "retry_issue", "go_to_issue_run"):
            return self._issue_allows(action, self._selected_issue())
        if action == "new_issue":
            return self.pane == "issues" and bool(self.runtime.state.issues.workflow)
        if action == "close_filter":
            return self.query_one("#filter").has_class("-shown")
        return True

    # ---- actions ---------------------------------------------------------------------------

    def action_pane(self, pane: str) -> None:
        self.pane = pane

    def action_handoff(self) -> None:
        claim = self.runtime.state.claims.get(self._selected("claims") or "")
        if claim is None:
            return
        online = self.runtime.state.presence.online
        choices = [(name, f"{name}  "
                          f"({_count(len(self.runtime.state.claims.by_owner.get(name, ())), 'lease')})")
                   for name, agent in sorted(online.items())
                   if name != claim.owner and not agent.operator]

        def chosen(name: str | None) -> None:
            if name:
                self.session.send(type="handoff", task_id=claim.task_id, to_agent=name,
                                  note="handed over from the console")

        self.app.push_screen(
            ChoiceModal(f"Hand {claim.task_id} (held by {claim.owner}) to…", choices,
                        empty="Nobody else is online to take it."), chosen)

    def _release(self, force: bool) -> None:
        claim = self.runtime.state.claims.get(self._selected("claims") or "")
        if claim is None:
            return
        lost = (f"{claim.owner} loses the lease on {claim.task_id} (epoch {claim.epoch}); its "
                f"next update, checkpoint or release for it will be refused.")
        if claim.checkpoint:
            lost += (f"\nIts checkpoint ({len(claim.checkpoint)} chars) is "
                     + ("DROPPED." if force else "kept for whoever claims the task next."))
        title = ("Force-release" if force else "Release") + f" {claim.task_id}?"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.session.send(type="release", task_id=claim.task_id,
                                  keep_checkpoint=not force)

        self.app.push_screen(ConfirmModal(title, lost, "Force-release" if force else "Release"),
                             confirmed)

    def action_release(self) -> None:
        self._release(force=False)

    def action_force_release(self) -> None:
        self._release(force=True)

    def action_extend(self) -> None:
        key = self._selected("claims")
        if key:
            self.session.send(type="extend", task_id=key, ttl_seconds=EXTEND_SECONDS)
            self.toast(f"Extending {key} by {ago(EXTEND_SECONDS)}", timeout=3)

    def action_declare(self) -> None:
        fields = [Field("task_id", "Task id", "e.g. P7"), Field("title", "Title"),
                  Field("depends_on", "Depends on", "comma-separated task ids"),
                  Field("suggested_owner", "Suggested owner", "an agent name"),
                  Field("description", "Description")]

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                deps = [d.strip() for d in values["depends_on"].split(",") if d.strip()]
                self.session.send(type="ledger_task", task_id=values["task_id"],
                                  title=values["title"], depends_on=deps,
                                  suggested_owner=values["suggested_owner"],
                                  description=values["description"])

        self.app.push_screen(FormModal("Declare a blackboard task", fields, "Declare",
                                       required=("task_id", "title")), submitted)

    def action_status(self) -> None:
        key = self._selected("board")
        task = self.runtime.state.board.tasks.get(key or "")
        if task is None:
            return
        choices = [(s, f"{s}{'  (now)' if s == task['status'] else ''}") for s in TASK_STATUSES]

        def chosen(status: str | None) -> None:
            if status and status != task["status"]:
                self.session.send(type="ledger_task_update", task_id=task["task_id"],
                                  status=status)

        self.app.push_screen(ChoiceModal(f"Status of {task['task_id']}", choices), chosen)

    def action_message(self) -> None:
        to = self._selected("agents") or "all"

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.session.send(type="chat", target=values["target"] or "all",
                                  payload=values["text"])

        self.app.push_screen(FormModal("Send a message", [
            Field("target", "To", "all, a name, a project, or a glob", to),
            Field("text", "Message")], "Send", required=("text",)), submitted)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.disabled = False
        box.add_class("-shown")
        box.focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("-shown")
        box.disabled = True
        self.set_focus(None)
        self.watch_pane(self.pane)

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

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.pane == "activity":
            self.activity.refilter(event.value)
            return
        table = self.tables[self.pane]
        table.filter_text = event.value
        self.run_worker(table.fill(), group=f"fill-{self.pane}", exclusive=True,
                        exit_on_error=False)

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        self.action_close_filter()

    def action_help(self) -> None:
        rows = [(b.key_display or b.key, b.description)
                for b in self.BINDINGS if isinstance(b, Binding) and b.description]
        if self.runtime.state.issues.workflow:
            rows += ISSUE_HELP
        if self.runtime.state.services.services:
            rows += SERVICE_HELP
        rows += [("enter", "Open the selected row"), ("ctrl+p", "Command palette")]
        self.app.push_screen(HelpModal(rows))

    def action_quit(self) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.exit()

        running = len(self.runtime.state.sessions.running())
        runs = (f" {_count(running, 'agent run')} still going "
                f"{'is' if running == 1 else 'are'} stopped." if running else "")
        self.app.push_screen(ConfirmModal(
            "Quit marrow-tui?",
            "The hub stops and connected agents lose their connection." + runs + " Every "
            "lease, task, message and run is saved and comes back on the next start.", "Quit"),
            confirmed)

    @on(KeyedTable.RowSelected)
    def _open(self, event: KeyedTable.RowSelected) -> None:
        key = event.key
        table = event.table
        if isinstance(table, ClaimsTable):
            self._open_claim(key)
        elif isinstance(table, BoardTable):
            self._open_task(key)
        elif isinstance(table, AgentsTable):
            self._open_agent(key)
        elif isinstance(table, SessionsTable):
            self.action_open_log()
        elif isinstance(table, SteeringTable):
            self._open_request(key)
        elif isinstance(table, IssuesTable):
            self._open_issue(key)
        elif isinstance(table, ServicesTable):
            self.action_open_service_log()

    def _open_request(self, key: str) -> None:
        request = self.runtime.state.steering.get(SteeringTable.request_id(key) or "")
        if request is None:
            return
        if request.open:
            self.action_answer()
            return
        body = Text()
        for label, value in (("asker", request.asker), ("about", request.task_id or "-"),
                             ("question", request.question), ("context", request.context or "-"),
                             ("state", request.state), ("answer", request.answer or "-"),
                             ("by", request.answered_by or "-"),
                             ("delivered", "yes" if request.delivered else "not yet")):
            body.append(f"{label:>10}  ", style="bold")
            body.append(f"{value}\n")
        self.app.push_screen(DetailModal(f"Request {request.id}", body))

    def _open_claim(self, key: str) -> None:
        claim = self.runtime.state.claims.get(key)
        if claim is None:
            return
        now = self.runtime.clock()
        body = Text()
        for label, value in (
            ("owner", claim.owner), ("status", claim.status), ("epoch", claim.epoch),
            ("version", claim.version), ("worktree", claim.worktree or "(default)"),
            ("paths", "\n        ".join(claim.paths) or "(whole worktree)"),
            ("note", claim.note), ("data_ref", claim.data_ref),
            ("claimed", f"{ago(now - claim.claimed_at)} ago"),
            ("expires", f"in {ago(claim.lease_expires_at - now)}"),
            ("checkpoint", claim.checkpoint or "(none)"),
        ):
            body.append(f"{label:>10}  ", style="bold")
            body.append(f"{value}\n")
        self.app.push_screen(DetailModal(f"Lease {key}", body))

    def _open_task(self, key: str) -> None:
        board = self.runtime.state.board
        task = board.tasks.get(key)
        if task is None:
            return
        body = Text()
        for label in ("title", "status", "suggested_owner", "project", "created_by",
                      "version", "description"):
            body.append(f"{label:>15}  ", style="bold")
            body.append(f"{task[label]}\n")
        body.append("\nDepends on (nearest first):\n", style="bold")
        for dep in board.chain(key) or ["(nothing)"]:
            other = board.tasks.get(dep)
            status = other["status"] if other else "not declared"
            body.append(f"  {dep}  [{status}]\n")
        body.append("\nProgress:\n", style="bold")
        for note in board.progress.for_task(key)[-20:] or [{"kind": "", "author": "",
                                                             "text": "(none yet)"}]:
            body.append(f"  [{note['kind']}] {note['author']}: {note['text']}\n")
        self.app.push_screen(DetailModal(f"Task {key}", body))

    def _open_agent(self, key: str) -> None:
        state = self.runtime.state
        agent = state.presence.online.get(key)
        body = Text()
        body.append("online\n" if agent else "offline\n", style="bold")
        if agent:
            body.append(f"roles: {', '.join(agent.roles) or '-'}\n")
        body.append("\nLeases:\n", style="bold")
        for claim in state.claims.owned_by(key) or []:
            body.append(f"  {claim.task_id}  {claim.status}  epoch {claim.epoch}\n")
        self.app.push_screen(DetailModal(f"Agent {key}", body))

    # ---- steering ----------------------------------------------------------------------------

    def _selected_request(self) -> Request | None:
        table = self.tables["steering"]
        assert isinstance(table, SteeringTable)
        request_id = table.request_id(self._selected("steering"))
        return self.runtime.state.steering.get(request_id) if request_id else None

    def action_answer(self) -> None:
        """Answer the selected request, or (from any other pane) the longest-waiting one."""
        request = self._selected_request()
        if request is None or not request.open:
            waiting = self.runtime.state.steering.waiting()
            if not waiting:
                return
            request = waiting[0]
        rid = request.id

        def answered(text: str | None) -> None:
            if text:
                self.session.send(type="steer_answer", id=rid, answer=text)

        self.app.push_screen(AnswerModal(
            request.asker, request.question, context=request.context, about=request.task_id,
            waited=ago(self.runtime.clock() - request.created), choices=request.choices,
            default=request.default), answered)

    def action_cancel_request(self) -> None:
        request = self._selected_request()
        if request is None or not request.open:
            return
        rid = request.id

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.session.send(type="steer_cancel", id=rid)

        self.app.push_screen(ConfirmModal(
            f"Cancel {rid}?", f"{request.asker} stops waiting and is told the question was "
            "cancelled, with no answer.", "Cancel it"), confirmed)

    def action_go_to_asker(self) -> None:
        """Show where the asker is working: its run, else the lease it asks about, else it."""
        request = self._selected_request()
        if request is None:
            return
        state = self.runtime.state
        session = state.sessions.by_id.get(request.session)
        if session is not None:
            self._show_row("sessions", session_key(session.agent, session.started, session.id))
            return
        claim = state.claims.get(request.task_id) if request.task_id else None
        if claim is None:
            held = state.claims.owned_by(request.asker) or []
            claim = held[0] if held else None
        if claim is not None:
            self._show_row("claims", claim.task_id)
            return
        self._show_row("agents", request.asker)

    def _show_row(self, pane: str, key: str) -> None:
        self.pane = pane
        table = self.tables[pane]

        def select() -> None:
            try:
                table.move_cursor(table.get_row_index(key))
            except KeyError:
                self.toast("Not on the screen any more.", timeout=3)

        self.call_after_refresh(select)

    # ---- helper services ---------------------------------------------------------------------

    def _service_action(self, verb: str, confirm: str | None = None) -> None:
        name = self._selected("services")
        if not name:
            return
        if confirm is None:
            self.session.send(type=verb, name=name)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.session.send(type=verb, name=name)

        self.app.push_screen(ConfirmModal(f"{confirm} {name}?", (
            f"{name} gets SIGTERM (its whole process group), then SIGKILL after its "
            "stop_grace. Services that depend on it are told."), confirm), confirmed)

    def action_start_service(self) -> None:
        self._service_action("service_start")

    def action_stop_service(self) -> None:
        self._service_action("service_stop", "Stop")

    def action_restart_service(self) -> None:
        self._service_action("service_restart", "Restart")

    def action_open_service_log(self) -> None:
        name = self._selected("services")
        view = self.runtime.state.services.services.get(name or "")
        if view is None:
            return
        log = view.log or str(self.runtime.options.state_dir / "services" / f"{view.name}.log")
        self.app.push_screen(LogScreen(Session(id=f"service {view.name}", agent=view.name,
                                               started=view.since, stdout=str(log),
                                               stderr=str(log), state=view.state)))

    def action_service_graph(self) -> None:
        self._want_graph = True  # before sending: the reply may come back at once
        self.session.send(type="services_list")  # it carries the graph (operator_reply)

    # ---- the scheduler's runs --------------------------------------------------------------

    def _selected_run(self) -> Session | None:
        table = self.tables["sessions"]
        assert isinstance(table, SessionsTable)
        sid = table.session_id(table.selected_key)
        return self.runtime.state.sessions.by_id.get(sid) if sid else None

    def _run_hint(self, run: Session | None) -> str:
        agent = SessionsTable.agent_of(self.tables["sessions"].selected_key)
        if agent is None:
            return ""
        keys = []
        view = self.runtime.state.sessions.agents.get(agent)
        if view is not None:
            keys += ["w wake", "t add task", "p resume" if not view.enabled else "p pause"]
        if run is not None and run.running:
            keys.append("x stop")
        if run is not None:
            keys.append("enter output")
        return " · ".join(keys)

    def action_wake(self) -> None:
        agent = SessionsTable.agent_of(self._selected("sessions"))
        if agent:
            self.session.send(type="wake", agent=agent, reason="woken from the console")

    def action_toggle_agent(self) -> None:
        agent = SessionsTable.agent_of(self._selected("sessions"))
        view = self.runtime.state.sessions.agents.get(agent or "")
        if view is None:
            return
        self.session.send(type="agent_enable", agent=view.agent, enabled=not view.enabled)

    def action_stop_run(self) -> None:
        run = self._selected_run()
        if run is None or not run.running:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.session.send(type="session_stop", id=run.id)

        self.app.push_screen(ConfirmModal(
            f"Stop {run.id}?",
            f"{run.agent}'s run gets SIGTERM (its whole process group), then SIGKILL if it "
            "has not ended within the agent's stop_grace. Tasks handed to it go back to the "
            "queue.", "Stop"), confirmed)

    def action_add_task(self) -> None:
        agent = SessionsTable.agent_of(self._selected("sessions"))
        if not agent:
            return

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                self.session.send(type="task_add", agent=agent, title=values["title"],
                                  body=values["body"])

        self.app.push_screen(FormModal(f"Add a task for {agent}", [
            Field("title", "Title", "one line"),
            Field("body", "Details", "optional")], "Queue it", required=("title",)), submitted)

    def action_open_log(self) -> None:
        run = self._selected_run()
        if run is not None:
            self.app.push_screen(LogScreen(run))

    # ---- the orchestrator's issues ----------------------------------------------------------

    def _selected_issue(self) -> IssueView | None:
        identifier = IssuesTable.identifier(self._selected("issues"))
        return self.runtime.state.issues.issues.get(identifier) if identifier else None

    def _issue_run(self, view: IssueView) -> Session | None:
        """The issue's current run, else its latest (runs are sessions named after the issue)."""
        sessions = self.runtime.state.sessions
        run = sessions.by_id.get(view.session) if view.session else None
        if run is None:
            runs = sessions.of_agent(view.identifier)
            run = runs[0] if runs else None
        return run

    def _issue_allows(self, action: str, view: IssueView | None) -> bool:
        if view is None:
            return False
        if action == "dispatch_issue":
            return view.status in DISPATCHABLE
        if action == "cancel_issue":
            return view.status in CANCELLABLE
        if action == "retry_issue":
            return view.status == "parked"
        return self._issue_run(view) is not None  # go_to_issue_run

    def _issue_hint(self) -> str:
        identifier = IssuesTable.identifier(self.tables["issues"].selected_key)
        view = self.runtime.state.issues.issues.get(identifier or "")
        keys = []
        for action, hint in (("dispatch_issue", "D dispatch"), ("cancel_issue", "x cancel"),
                             ("retry_issue", "R retry"), ("go_to_issue_run", "g go to run")):
            if self._issue_allows(action, view):
                keys.append(hint)
        if self.runtime.state.issues.workflow:
            keys.append("n new")
        if view is not None:
            keys.append("enter open")
        return " · ".join(keys)

    def _refresh_issues(self, text: Text) -> None:
        """The orchestrator's part of the status line, and its workflow error on its pane."""
        book = self.runtime.state.issues
        workflow = book.workflow
        orchestrating = bool(workflow)
        if orchestrating != self._orchestrating:
            self._orchestrating = orchestrating
            self.set_class(orchestrating, "-orchestrating")
        if not orchestrating:
            return
        running = sum(1 for v in book.issues.values() if v.status in ("running", "waiting"))
        text.append(f" │ {running} of {_count(len(book.issues), 'issue')} running")
        broken = not workflow.get("ok", True)
        if broken:
            text.append(" │ workflow error", style="bold red")
            title = f"workflow error, no new dispatches: {workflow_error(workflow)}"
        elif workflow.get("dispatching") is False:
            title = "not dispatching new issues"
        else:
            title = ""
        self._set_border_title("issues", title)

    def _open_issue(self, key: str) -> None:
        view = self.runtime.state.issues.issues.get(IssuesTable.identifier(key) or "")
        if view is None:
            return
        now = self.runtime.clock()
        run = self._issue_run(view)
        body = Text()
        for label, value in (
            ("title", view.title), ("state", view.state), ("status", view.status),
            ("reason", view.reason or "-"),
            ("priority", "-" if view.priority is None else view.priority),
            ("attempt", view.attempt or "-"),
            ("next try", f"in {ago(view.next_at - now)}" if view.next_at is not None else "-"),
            ("run", f"{run.id} ({run.state})" if run is not None else "-"),
            ("file", view.path or "-"),
        ):
            body.append(f"{label:>10}  ", style="bold")
            body.append(f"{value}\n")
        done = [d for d in self.runtime.state.issues.done
                if d.get("identifier") == view.identifier]
        if done:
            last = done[-1]
            body.append(f"\nMarked done by {last.get('by', '?')} "
                        f"(moved to {last.get('to_state', '?')}):\n", style="bold")
            body.append(f"  {last.get('title', '')}\n  {last.get('summary', '')}\n")
        self.app.push_screen(DetailModal(f"Issue {view.identifier}", body))

    def action_dispatch_issue(self) -> None:
        view = self._selected_issue()
        if view is not None:
            self.session.send(type="issue_dispatch", identifier=view.identifier)

    def action_cancel_issue(self) -> None:
        view = self._selected_issue()
        if view is None:
            return
        identifier = view.identifier

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.session.send(type="issue_cancel", identifier=identifier)

        running = view.status in ("running", "waiting")
        self.app.push_screen(ConfirmModal(
            f"Cancel {identifier}?",
            ("Its run is stopped (SIGTERM, then SIGKILL after the grace) and the issue is "
             if running else "The issue is ")
            + f"parked: it stays in {view.state or 'its state'} and is not dispatched again "
            "until you retry it (R).", "Cancel it"), confirmed)

    def action_retry_issue(self) -> None:
        view = self._selected_issue()
        if view is not None and view.status == "parked":
            self.session.send(type="issue_retry", identifier=view.identifier)

    def action_new_issue(self, values: dict[str, str] | None = None) -> None:
        if not self.runtime.state.issues.workflow:
            return
        values = values or {}

        def submitted(got: dict[str, str] | None) -> None:
            if not got:
                return
            text = got["priority"]
            try:
                priority = int(text) if text else None
            except ValueError:
                self.toast(f"Priority must be a whole number, not {text!r}.",
                                severity="error", timeout=6)
                self.action_new_issue(got)  # again, with what was typed
                return
            self.session.send(type="issue_create", title=got["title"],
                              body=got["description"], priority=priority)

        self.app.push_screen(FormModal("New issue", [
            Field("title", "Title", "one line", values.get("title", "")),
            Field("description", "Description", "what to do (optional)",
                  values.get("description", "")),
            Field("priority", "Priority", "a whole number, lower first; empty for none",
                  values.get("priority", ""))], "Create", required=("title",)), submitted)

    def action_go_to_issue_run(self) -> None:
        view = self._selected_issue()
        run = self._issue_run(view) if view is not None else None
        if run is not None:
            self._show_row("sessions", session_key(run.agent, run.started, run.id))

    # ---- operator replies ------------------------------------------------------------------

    def operator_reply(self, frame: dict[str, Any]) -> None:
        """A private frame for the operator: refusals become toasts, chats go to activity."""
        kind = frame.get("type", "")
        if kind.endswith("_denied") or kind == "error":
            self.toast(str(frame.get("payload", kind)), severity="error", timeout=8)
        elif kind == "services" and getattr(self, "_want_graph", False):
            self._want_graph = False
            self.app.push_screen(DetailModal("Services: start order and dependencies",
                                             Text(str(frame.get("graph", "")))))
        elif kind in ("service_starting", "service_stopping", "service_restarting"):
            self.toast(str(frame.get("payload")), timeout=3)
        elif kind in ("agent_updating", "wake_result", "steer_answered"):
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
