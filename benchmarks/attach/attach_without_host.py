"""An experiment: `marrow-tui attach ...` as if `marrow_tui.ui.app` imported `marrow_tui.host`
only where it is used (`run_console`), not when the module loads.

    python attach_without_host.py attach URI --operator-token T

An attached console never runs a runtime, yet importing `ui.app` loads `host` and with it the
scheduler, the agent sessions and the ACP SDK (pydantic): about half of what `marrow-tui
attach` imports. Here `marrow_tui.host` is a stub module before anything imports it; the rest
is marrow-tui's own entry point, unchanged. If the attach path needed `host`, the console
would fail here (the runner says so: no full paint).
"""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
stub = types.ModuleType("marrow_tui.host")
stub.hosted = None  # type: ignore[attr-defined]
sys.modules["marrow_tui.host"] = stub

from marrow_tui.cli.main import main  # noqa: E402

sys.argv[0] = "marrow-tui"
main()
