"""The console in a terminal that goes away (tmux killed, an ssh session dropped): SIGHUP ends
it, and the runs it started are stopped first, their ends in the log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from tests.support.hubproc import clean_env
from tests.support.scheduler import write_config
from tests.support.waiting import gone, until

ROOT = Path(__file__).resolve().parents[2]
#: the console starts a runtime, a hub and Textual: generous on a loaded machine
PATIENCE = 60.0


def drain(fd: int) -> None:
    """Read what the console paints, so its writes never wait on a full terminal."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


async def test_a_hangup_stops_the_consoles_runs_before_it_ends(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"long": 'echo $$ > "$MARROW_WORKSPACE/pid"\n'
                                             "exec sleep 600\n"})
    state = tmp_path / "state"
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**clean_env(), "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    console = subprocess.Popen(
        [sys.executable, "-m", "marrow_tui", "--config", str(config), "--state-dir",
         str(state), "--port", "0", "--no-bell"],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=tmp_path,
        start_new_session=True)
    os.close(secondary)
    threading.Thread(target=drain, args=(primary,), daemon=True).start()
    pid_file = tmp_path / "ws" / "long" / "pid"
    try:
        assert await until(lambda: pid_file.is_file() and pid_file.read_text().strip(),
                           PATIENCE), "the agent's run never started"
        agent = int(pid_file.read_text())
        console.send_signal(signal.SIGHUP)
        assert console.wait(timeout=PATIENCE) == 0
        assert await until(lambda: gone(agent), 10), "the run outlived its console"
    finally:
        if console.poll() is None:
            console.kill()
        os.close(primary)
    with sqlite3.connect(state / "events.db") as db:
        ends = [json.loads(data) for (data,) in db.execute(
            "SELECT data FROM events WHERE kind = 'session_end'")]
    assert [(e["agent"], e["state"], e["reason"]) for e in ends] == [
        ("long", "stopped", "stopped at shutdown")]
