"""Make screenshots/web.png: the console in a browser, attached to the demo.

    python screenshots/make_web_screenshot.py [--out PATH] [--width 1400] [--height 860]

It starts the demo headless (`marrow-tui demo --no-ui`) in a temporary state folder,
`marrow-tui web` beside it, and Debian's headless Chromium; logs in with the demo's operator
token through the login page, as a person would; waits until the demo's agents show and one
of them asks the operator something; and saves what the browser shows. Everything it started
is stopped and removed at the end. Needs `chromium` (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # the browser driver lives with the tests that use it too

from marrow_tui.hub.secrets import read_operator_token  # noqa: E402
from tests.support.browser import CHROMIUM, NO_CHROMIUM, chromium  # noqa: E402
from tests.support.hubproc import clean_env, running_hub  # noqa: E402

SERVING = re.compile(r"serving the console on (http://\S+) ")
#: how long the demo may take to have agents on screen, and to ask the operator something
WAIT = 90.0


def start_web(state: Path, uri: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "web", "--port", "0", "--state-dir", str(state),
         uri], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=clean_env())
    assert process.stderr is not None
    line = process.stderr.readline()
    found = SERVING.search(line)
    if found is None:
        process.kill()
        raise SystemExit(f"marrow-tui web did not start: {line}{process.stderr.read()}")
    return process, found.group(1)


async def shoot(url: str, token: str, out: Path, width: int, height: int) -> None:
    async with chromium() as browser:
        page = await browser.new_page(width, height)
        await page.go(url)
        await page.log_in(token)
        await page.wait_for("document.body.classList.contains('-first-byte')", WAIT)
        await page.wait_received("demo/", WAIT)
        print("  the demo's agents show", file=sys.stderr)
        try:
            await page.wait_received("asks", WAIT)
            print("  an agent asks the operator", file=sys.stderr)
        except AssertionError:
            print("  no question yet; taking the picture anyway", file=sys.stderr)
        # let the terminal paint the last frame it was sent (a frame is 1/60 s)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await page.screenshot(out)
    print(f"wrote {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "web.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit(NO_CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="marrow-web-shot-") as folder:
        state = Path(folder) / "state"
        demo = [sys.executable, "-m", "marrow_tui", "demo", "--no-ui", "--host", "127.0.0.1",
                "--port", "0", "--state-dir", str(state)]
        with running_hub(demo, Path(folder)) as runtime:
            token = read_operator_token(state)
            assert token, f"the demo made no operator token in {state}"
            web, url = start_web(state, runtime.uri)
            try:
                asyncio.run(shoot(url, token, args.out, args.width, args.height))
            finally:
                web.send_signal(signal.SIGINT)
                web.wait(timeout=60)


if __name__ == "__main__":
    main()
