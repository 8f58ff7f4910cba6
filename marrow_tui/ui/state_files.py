"""What the console keeps in the state folder for itself: the operator's UI preferences (the
theme) and the screenshots the palette takes.

Preferences are not runtime state (no event, no log): they are the console's, and a missing or
broken file only means the defaults. The operator's marrow.toml is never written to.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

#: the preferences file, in the state folder
PREFS_FILE = "ui.json"
#: the screenshots' folder, in the state folder
SCREENSHOTS = "screenshots"
#: a preferences file bigger than this is not ours to read
PREFS_CAP = 64 * 1024


class Prefs:
    """The console's preferences, read once at start and written whole on each change."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PREFS_FILE
        self.values: dict[str, Any] = {}

    def read(self) -> str | None:
        """Read the file; a sentence saying why it was not used (and nothing kept), or None."""
        try:
            if self.path.stat().st_size > PREFS_CAP:
                return f"{self.path}: over {PREFS_CAP // 1024} KiB; the defaults are used."
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return f"{self.path}: not readable ({exc}); the defaults are used."
        except json.JSONDecodeError as exc:
            return (f"{self.path}: not JSON (line {exc.lineno}: {exc.msg}); "
                    "the defaults are used.")
        if not isinstance(data, dict):
            return f"{self.path}: not a JSON object; the defaults are used."
        self.values = data
        return None

    def theme(self) -> str | None:
        theme = self.values.get("theme")
        return theme if isinstance(theme, str) and theme else None

    def set(self, key: str, value: Any) -> bool:
        """Change one preference and write the file; False if it was already so."""
        if self.values.get(key) == value:
            return False
        self.values[key] = value
        _write_atomic(self.path, json.dumps(self.values, indent=2, sort_keys=True) + "\n")
        return True


def save_screenshot(state_dir: Path, svg: str, now: float | None = None) -> Path:
    """Write an SVG screenshot under the state folder's screenshots/; its path."""
    folder = state_dir / SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    path = folder / f"marrow-tui-{stamp}.svg"
    n = 2
    while path.exists():  # two in one second: each keeps its own file
        path = folder / f"marrow-tui-{stamp}-{n}.svg"
        n += 1
    _write_atomic(path, svg)
    return path


def _write_atomic(target: Path, text: str) -> None:
    """Write `text` to `target` through a temporary file, so a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
