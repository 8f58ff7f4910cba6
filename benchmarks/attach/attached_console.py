"""One attached console process, instrumented: `marrow-tui attach` as Pilot can drive it.

    python attached_console.py --uri ws://... --operator-token T --mode paint|keys [--size WxH]

Built the way `marrow_tui.cli.attach` and `ui.app.run_attached` build it (a `MirroredRuntime`
started, then `MarrowApp(mirror, link=Link(mirror), state_dir=...)`), except that the app runs
through `App.run_test(headless=True)` so keys can be pressed and every screen update observed,
with consolebench's `BenchApp` and instruments (the in-process console benchmark's; nothing of
marrow_tui is changed). The runtime is another process, reached over the wire.

* `--mode paint`: from this process's first line (after its imports) to the first screen update
  with every pane filled (every table's first fill done, the Activity pane's past loaded), with
  the steps on the way (mirror connected and its snapshot loaded, main screen's first update).
  Prints `PAINT {json}` and exits.
* `--mode mirror`: the console's wire side only (the `MirroredRuntime`: snapshot, feed, every
  event applied to its `State`), no screen: prints `READY {json}` once loaded and follows the
  feed until `QUIT` or stdin closes. What the runtime serves it is what it serves a console.
* `--mode keys`: once filled, prints `READY {json}`; `KEYS` on stdin presses `--keys` keys one
  every `--key-interval` s (consolebench's keys and latency: the press to the first screen update
  showing its effect), prints `RESULT {json}`, and exits on `QUIT` or when stdin closes.

Times are `time.monotonic()` (the same clock as the runner's on Linux).
"""

from __future__ import annotations

import time

T_MAIN = time.monotonic()  # before the imports below: what they cost is in the breakdown

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path[:0] = [str(BENCH / "console"), str(BENCH), str(BENCH.parent)]

from consolebench.console_proc import (BenchApp, Instruments, LOAD_KEYS,  # noqa: E402
                                       key_phase, start_runtime_logging)
from consolebench.instrument import key_summary, now, wait_until  # noqa: E402
from hubbench.procinfo import proc_cpu_seconds, proc_rss_kib  # noqa: E402
from marrow_tui.attach.mirror import MirroredRuntime  # noqa: E402
from marrow_tui.ui.link import Link  # noqa: E402

T_IMPORTED = time.monotonic()


def filled(app: BenchApp) -> bool:
    """Every pane has what the runtime holds: each table's first fill is over and the Activity
    pane has its past."""
    main = app.main
    if main is None or set(app.fill_times) != set(main.tables):
        return False
    if any(len(times) < 2 for times in app.fill_times.values()):
        return False
    return len(main.activity.lines_kept) > 0


class PaintWatch:
    """The first screen update after which every pane is filled."""

    def __init__(self, app: BenchApp) -> None:
        self.app = app
        self.at: float | None = None
        self.done = asyncio.Event()

    def on_display(self, screen: Any, full: bool, dirty: set[Any], t: float) -> None:
        if self.at is None and filled(self.app):
            self.at = t
            self.done.set()


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def read_command(reader: asyncio.StreamReader, timeout: float) -> str:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return ""
    return line.decode().strip() or "QUIT"  # end of stdin: the runner is gone


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": args.mode, "t_main": T_MAIN, "t_imported": T_IMPORTED,
                           "import_s": round(T_IMPORTED - T_MAIN, 3)}
    args.work.mkdir(parents=True, exist_ok=True)
    start_runtime_logging(args.work)
    mirror = MirroredRuntime(args.uri, "operator/bench", args.operator_token)
    t0 = now()
    await mirror.start()
    out["mirror_start_s"] = round(now() - t0, 3)
    out["t_mirror"] = now()
    out["claims"] = len(mirror.state.claims)
    if args.mode == "mirror":
        try:
            print("READY " + json.dumps(out), flush=True)
            reader = await stdin_reader()
            out["last_command"] = await read_command(reader, args.max_seconds)
            out["status"] = mirror.status
            return out
        finally:
            await mirror.stop()
    inst = Instruments()
    inst.install(lean=args.mode == "paint")
    width, height = (int(n) for n in args.size.split("x"))
    inst.screen.console.size = (width, height)
    app = BenchApp(mirror, inst, hub_uri=mirror.uri, operator=mirror.name, link=Link(mirror),
                   state_dir=args.work, bell=False)
    watch = PaintWatch(app)
    inst.screen.listeners.append(watch.on_display)
    try:
        async with app.run_test(headless=True, size=(width, height), notifications=True) as pilot:
            inst.lag.start()
            painted = await wait_until(lambda: watch.done.is_set(), args.timeout)
            out["painted"] = painted
            out["t_first_update"] = inst.screen.first_update_at
            out["t_painted"] = watch.at
            out["fill_s"] = {name: round(times[1] - times[0], 3)
                             for name, times in app.fill_times.items() if len(times) >= 2}
            out["rows"] = {name: table.row_count for name, table in app.main.tables.items()} \
                if app.main is not None else {}
            if args.mode == "paint":
                return out
            print("READY " + json.dumps(out), flush=True)
            reader = await stdin_reader()
            while (command := await read_command(reader, args.max_seconds)) == "KEYS":
                if getattr(app.screen, "pane", None) != "claims":
                    await app.key_probe.press(pilot, "2")
                profiler = None
                if args.profile is not None:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                cpu0, t_keys = proc_cpu_seconds("self"), now()
                records = await key_phase(app, pilot, LOAD_KEYS, args.keys, args.key_interval,
                                          args.keys * (args.key_interval + 2))
                wall = now() - t_keys
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(str(args.profile))
                await app.key_probe.drain()
                result = {"keys": key_summary(records), "raw": records,
                          "console_cores": round((proc_cpu_seconds("self") - cpu0) / wall, 3),
                          "lag": inst.lag.window(t_keys, t_keys + wall),
                          "gc": inst.gc.window(t_keys, t_keys + wall),
                          "rss_kib": proc_rss_kib("self"), "feed_status": mirror.status,
                          "claims": len(mirror.state.claims)}
                print("RESULT " + json.dumps(result), flush=True)
            out["last_command"] = command
            return out
    finally:
        await mirror.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uri", required=True)
    p.add_argument("--operator-token", required=True)
    p.add_argument("--mode", choices=("paint", "mirror", "keys"), default="paint")
    p.add_argument("--size", default="120x40", help="the terminal, WxH")
    p.add_argument("--keys", type=int, default=30)
    p.add_argument("--key-interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=30.0, help="bound on the first full paint")
    p.add_argument("--max-seconds", type=float, default=300.0, help="bound on waiting for KEYS")
    p.add_argument("--profile", type=Path, default=None, help="cProfile the key phase (keys)")
    p.add_argument("--work", type=Path, required=True, help="the console's own files (its log)")
    args = p.parse_args(argv)
    out = asyncio.run(run(args))
    if args.mode == "paint":
        print("PAINT " + json.dumps(out), flush=True)
    return 0 if out.get("painted") or args.mode == "mirror" else 1


if __name__ == "__main__":
    sys.exit(main())
