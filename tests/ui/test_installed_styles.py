"""An installed marrow-tui finds its styles, not only a checkout (`pip install -e`).

The styles live in the top-level styles/ (the design card names it); marrow_tui/styles links
to it, and the package data ships it. A wheel holds what setuptools' build_py puts in the
build folder, so the test builds that folder from a copy of the project and imports the
console from it alone, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: in the built package alone: where the console's styles are, and whether Textual parses them
PROBE = """\
import json, sys
from textual.app import App
from textual.css.stylesheet import Stylesheet
from marrow_tui.ui import app
sheet = Stylesheet(variables=App().get_css_variables())
sheet.read_all(app.MarrowApp.CSS_PATH)
sheet.parse()
print(json.dumps({"module": app.__file__, "styles": str(app.styles_dir()),
                  "css": [str(path) for path in app.MarrowApp.CSS_PATH]}))
"""


def build_lib(tmp_path: Path) -> Path:
    """The package as setuptools builds it for a wheel, from a copy of the project."""
    source, lib = tmp_path / "source", tmp_path / "lib"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "styles", source / "styles")
    shutil.copytree(ROOT / "marrow_tui", source / "marrow_tui", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(lib)],
                   cwd=source, capture_output=True, text=True, check=True, timeout=120)
    return lib


def test_the_built_package_carries_the_styles_and_the_console_loads_them(
        tmp_path: Path) -> None:
    lib = build_lib(tmp_path)
    shipped = sorted(p.name for p in (lib / "marrow_tui" / "styles").glob("*.tcss"))
    assert shipped == sorted(p.name for p in (ROOT / "styles").glob("*.tcss"))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(lib)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["module"]).is_relative_to(lib)
    assert Path(found["styles"]) == lib / "marrow_tui" / "styles"
    assert all(Path(css).is_relative_to(lib) for css in found["css"])
