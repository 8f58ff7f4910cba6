"""The runtime and headless mode never import Textual (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "marrow_tui.core.state",
    "marrow_tui.protocol.decider",
    "marrow_tui.hub.server",
    "marrow_tui.hub.client",
    "marrow_tui.store.eventlog",
    "marrow_tui.runtime",
    "marrow_tui.headless",
    "marrow_tui.demo",
    "marrow_tui.host",
    "marrow_tui.cli.main",
    # the browser console's server: textual-serve (aiohttp) starts consoles, it is none itself
    "marrow_tui.web.server",
]


def test_runtime_and_headless_import_no_textual() -> None:
    code = (
        "import sys\n"
        f"for name in {MODULES!r}:\n"
        "    __import__(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_imports_nothing_from_the_other_packages() -> None:
    code = (
        "import sys\n"
        "import pathlib, pkgutil, importlib, marrow_tui.core\n"
        "for info in pkgutil.iter_modules(marrow_tui.core.__path__):\n"
        "    importlib.import_module('marrow_tui.core.' + info.name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('marrow_tui.') and\n"
        "             not m.startswith('marrow_tui.core'))\n"
        "bad += [m for m in ('asyncio', 'websockets', 'aiosqlite') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_mirror_loads_neither_the_runtime_nor_the_hub_server() -> None:
    # An attached console holds a copy of the state: it must not be able to change it except
    # over the wire, nor pay for the log's driver.
    code = (
        "import sys\n"
        "import marrow_tui.attach.mirror, marrow_tui.attach.files\n"
        "held = ('marrow_tui.runtime', 'marrow_tui.hub.server', 'marrow_tui.hub.feed',\n"
        "        'marrow_tui.hub.files', 'marrow_tui.protocol.decider', 'aiosqlite')\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m in held or m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_attached_console_loads_no_runtime_of_its_own() -> None:
    # `marrow-tui attach` runs the console on a mirror: the runtime, the log, the producers
    # and the ACP SDK are imports it never uses (half a second of its first paint).
    code = (
        "import sys\n"
        "import marrow_tui.cli.attach, marrow_tui.ui.app, marrow_tui.attach.mirror\n"
        "held = ('marrow_tui.runtime', 'marrow_tui.host', 'marrow_tui.hub.server',\n"
        "        'marrow_tui.scheduler.heartbeat', 'marrow_tui.orchestrator.dispatcher',\n"
        "        'marrow_tui.agent_session', 'acp', 'aiosqlite')\n"
        "print(','.join(sorted(m for m in held if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
