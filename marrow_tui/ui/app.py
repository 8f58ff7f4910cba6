"""The console: a Textual app over the runtime that `--no-ui` runs.

`MarrowApp` is built from a started `Runtime` (so tests build it with a temporary state
directory and a fake clock); `run_console` starts the runtime and the hub in the app's event
loop, runs the app, and stops everything cleanly when it ends, for whatever reason (`q`, the
terminal going away, SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from ..attach.files import Files, LocalFiles, RemoteFiles
from ..attach.mirror import MirroredRuntime
from ..config.model import Config
from ..core.text import SafeFormatter, printable
from ..hub.address import read_address
from ..hub.defaults import default_operator
from .actions import apply_keys
from .commands import MarrowCommands
from .link import Link
from .source import ConsoleRuntime, OperatorSession
from .screens.main import MainScreen
from .state_files import Prefs, save_screenshot

if TYPE_CHECKING:
    from ..hub.server import HubOptions
    from ..runtime import RuntimeOptions


#: a console still running this long after it began to exit on SIGTERM or SIGHUP ends at once
GIVE_UP_AFTER = 5.0

log = logging.getLogger("marrow.console")


def styles_dir() -> Path:
    """The .tcss files: inside the package when installed as a wheel, else the repo's styles/."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "styles", here.parents[1] / "styles"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("marrow-tui's styles folder is missing")


class MarrowApp(App[None]):
    TITLE = "marrow-tui"
    CSS_PATH: ClassVar = [styles_dir() / "app.tcss", styles_dir() / "main.tcss",
                          styles_dir() / "modals.tcss"]
    COMMANDS = App.COMMANDS | {MarrowCommands}
    # No ctrl+q (tmux, terminals and agents use it); ctrl+c still offers help on quitting.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "help_quit", show=False, system=True),
    ]
    #: where views read the runtime's files: where they are, or copies (an attached console)
    files: Files = LocalFiles()

    def __init__(self, runtime: ConsoleRuntime, *, hub_uri: str, operator: str | None = None,
                 bell: bool = True, keys: Mapping[str, str] | None = None,
                 link: Link | None = None, state_dir: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: keys remapped by action id (actions.py): refused here if two would clash
        self.keys = dict(keys or {})
        if self.keys:
            apply_keys(self, self.keys)
        self.runtime = runtime
        self.hub_uri = hub_uri
        #: an attached console's connection (None: the runtime runs in this process)
        self.link = link
        self.operator_name = operator or default_operator()
        self.bell_on_alerts = bell
        self.session: OperatorSession | None = None
        self.main: MainScreen | None = None
        #: where the console keeps its own files (preferences, screenshots): the state
        #: folder, or for an attached console one of its own on this machine
        self.state_dir = state_dir or runtime.options.state_dir
        #: the operator's UI preferences (the theme)
        self.prefs = Prefs(self.state_dir)
        self._prefs_problem = self.prefs.read()
        chosen = self.prefs.theme()
        if chosen is not None and chosen in self.available_themes:
            self.theme = chosen

    def watch_theme(self, theme: str) -> None:
        """Keep the theme chosen (palette, Theme) for the next start. A few dozen bytes, no
        fsync: far cheaper than the repaint the change itself causes."""
        try:
            self.prefs.set("theme", theme)
        except OSError as exc:
            self.notify(printable(f"The theme is not kept for the next start: cannot write "
                                  f"{self.prefs.path} ({exc.strerror or exc})."),
                        severity="warning", markup=False)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's Screenshot: an SVG in the state folder's screenshots/ (Textual's own
        goes to ~/Downloads, which a server often lacks), and a toast saying where."""
        svg = self.export_screenshot()
        self.run_worker(self._keep_screenshot(svg), group="screenshot", exit_on_error=False)
        return None

    async def _keep_screenshot(self, svg: str) -> None:
        state_dir = self.state_dir
        try:
            path = await asyncio.to_thread(save_screenshot, state_dir, svg)
        except OSError as exc:
            self.notify(printable(f"Screenshot not saved: cannot write in {state_dir} "
                                  f"({exc.strerror or exc})."), severity="error", markup=False)
            return
        self.notify(printable(f"Screenshot saved: {path}"), timeout=8, markup=False)

    def on_mount(self) -> None:
        if self._prefs_problem is not None:
            self.notify(printable(self._prefs_problem), severity="warning", timeout=8,
                        markup=False)
        self.session = self.runtime.join(self.operator_name, self._operator_frame)
        self.main = MainScreen(self.runtime, self.session, self.hub_uri, self.bell_on_alerts,
                               self.keys, self.link)
        self.push_screen(self.main)

    def on_unmount(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _operator_frame(self, frame: dict[str, Any]) -> None:
        if self.main is not None:
            self.main.operator_reply(frame)


def log_to(path: Path) -> None:
    """The screen is the console's: diagnostics go to a file (one line each, no escapes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(path)
    # Records quote agents (names, ids, frames): each stays one line with no escape sequence.
    file_handler.setFormatter(SafeFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")))
    root.addHandler(file_handler)


async def run_until_signalled(app: App[Any], give_up_after: float = GIVE_UP_AFTER,
                              wind_down: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the app; SIGTERM and SIGHUP (the terminal or tmux going away) end it cleanly.

    Textual's exit writes to the terminal, and with the terminal gone that write can block for
    ever; so a process that has not ended `give_up_after` seconds after it began to exit ends
    at once. What must not be cut short is done first: `wind_down` (the embedded console's
    runs stopped, their ends in the log) runs before the app is asked to exit."""
    loop = asyncio.get_running_loop()
    ending: list[asyncio.Task[None]] = []

    async def end() -> None:
        if wind_down is not None:
            try:
                await wind_down()
            except Exception:
                log.exception("stopping the runs after a signal failed")
        watchdog = threading.Timer(give_up_after, os._exit, (0,))
        watchdog.daemon = True
        watchdog.start()
        app.exit()

    def signalled() -> None:
        if not ending:  # a second signal while ending changes nothing
            ending.append(loop.create_task(end()))

    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, signalled)
    try:
        await app.run_async()
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def run_attached(mirror: MirroredRuntime, *, state_dir: Path, how: str = "",
                       operator: str | None = None, bell: bool = True,
                       keys: Mapping[str, str] | None = None) -> int:
    """The console on a runtime that runs elsewhere: `mirror` has loaded its state (started);
    quitting detaches and leaves the runtime as it is."""
    log_to(state_dir / "marrow-tui-attach.log")
    link = Link(mirror, how)
    app = MarrowApp(mirror, hub_uri=mirror.uri, operator=operator or mirror.name, bell=bell,
                    keys=keys, link=link, state_dir=state_dir)
    # The runtime's files (run output, transcripts, service logs): read where they are when
    # it runs on this machine, else from copies kept over the wire.
    remote = None if on_this_machine(mirror) else RemoteFiles(mirror)
    if remote is not None:
        app.files = remote
    try:
        await run_until_signalled(app)
    finally:
        if remote is not None:
            await remote.aclose()
        await mirror.stop()
    return 0


def on_this_machine(mirror: MirroredRuntime) -> bool:
    """The attached runtime's state folder is here, and says it is the runtime we follow."""
    found = read_address(mirror.options.state_dir)
    return found is not None and found.uri == mirror.uri


async def run_console(runtime_options: RuntimeOptions, hub_options: HubOptions, *,
                      demo: bool = False, operator: str | None = None, bell: bool = True,
                      config: Config | None = None, workflow: Path | None = None) -> int:
    """Run the runtime, the hub and the console in one loop; stop them all on the way out."""
    # Here, not at the top: an attached console has no runtime to host, and the scheduler,
    # the orchestrator and the ACP SDK are half a second of imports it would never use.
    from ..host import hosted

    log_to(runtime_options.state_dir / "marrow-tui.log")
    async with hosted(runtime_options, hub_options, demo=demo, config=config,
                      workflow=workflow) as unit:
        app = MarrowApp(unit.runtime, hub_uri=unit.server.uri, operator=operator, bell=bell,
                        keys=config.keys if config is not None else None)
        await run_until_signalled(app, wind_down=unit.wind_down)
    return 1 if unit.runtime.failed.is_set() else 0
