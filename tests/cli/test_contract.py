"""The command line's contract, run as a user runs it (`python -m marrow_tui ...`) against a
real marrow-tui on 127.0.0.1: every hub command's `--json` is `{"ok": true, ...its fields}` or
`{"ok": false, "code", "reason"}` with exit 0, 1, 2 or 3 (docs/cli.md); a mistake on the
command line is one sentence, with the closest right word; a time is a duration everywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from marrow_tui.hub.client import HubClient
from tests.support.hub import WAIT
from tests.support.hubproc import REPO, RunningHub, clean_env, free_port, hub_command, running_hub

CLI_TIMEOUT = 30.0


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        lines = self.out.splitlines()
        assert len(lines) == 1, f"not one JSON line: {self.out!r}"
        value = json.loads(lines[0])
        assert isinstance(value, dict)
        return value


def marrow(*args: str, env: dict[str, str] | None = None) -> Result:
    done = subprocess.run([sys.executable, "-m", "marrow_tui", *args], capture_output=True,
                          text=True, env=clean_env() | (env or {}), cwd=REPO,
                          timeout=CLI_TIMEOUT, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A marrow-tui with no config, no workflow and no services."""
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as running:
        yield running


def operator(hub: RunningHub, tmp_path: Path) -> dict[str, str]:
    """The environment of an operator at the hub's machine (the token is read from there)."""
    return {"MARROW_HUB_URI": hub.uri, "MARROW_STATE_DIR": str(tmp_path / "state"),
            "MARROW_AGENT": "e2e/ops"}


# --------------------------------------------------------------------------- --json

#: each command, and the fields of its {"ok": true, ...} (docs/cli.md)
DONE = [
    (["who"], {"hub_id", "hub_version", "agents"}),
    (["claim", "T1", "src/", "--worktree", "main"],
     {"task_id", "owner", "status", "epoch", "worktree", "paths", "note", "checkpoint",
      "lease_expires_at"}),
    (["state"], {"claims"}),
    (["board", "declare", "A", "design"], {"task"}),
    (["board", "update", "A", "--status", "in_progress"], {"task"}),
    (["board", "progress", "A", "halfway"], {"note"}),
    (["board"], {"tasks", "ready", "progress", "total_tasks", "truncated"}),
    (["send", "hello"], {"to", "msg_id"}),
    (["steering"], {"requests"}),
    (["sessions"], {"agents", "sessions", "usage"}),
    (["task", "list"], {"tasks", "direct"}),
    (["release", "T1"], {"task_id", "owner", "epoch"}),
]
#: refused by the hub (exit 1), and the code a script gets
REFUSED = [
    (["wake", "nobody"], "unknown_agent"),
    (["release", "T404"], "release_denied"),
    (["answer", "S9", "yes"], "unknown_request"),
    (["services"], "no_services"),
    (["services", "restart", "db"], "no_services"),
    (["issues"], "no_workflow"),
    (["done", "--title", "t", "--summary", "s", "--issue", "X-1"], "no_workflow"),
]


def test_every_hub_command_prints_one_json_shape(hub: RunningHub, tmp_path: Path) -> None:
    env = operator(hub, tmp_path)
    for argv, fields in DONE:
        result = marrow(*argv, "--json", env=env)
        assert result.code == 0, (argv, result.err)
        reply = result.json()
        assert reply.pop("ok") is True
        assert set(reply) == fields, argv
    claim = marrow("claim", "T2", "lib/", "--json", env=env).json()
    assert (claim["task_id"], claim["owner"], claim["paths"]) == ("T2", "e2e/ops", ["lib"])
    reader = env | {"MARROW_AGENT": "e2e/reader"}
    [lease] = marrow("state", "--json", env=reader).json()["claims"]  # type: ignore[misc]
    assert (lease["task_id"], lease["holder_online"]) == ("T2", False)

    for argv, code in REFUSED:
        result = marrow(*argv, "--json", env=env)
        assert result.code == 1, (argv, result.err)
        reply = result.json()
        assert set(reply) == {"ok", "code", "reason"} and reply["ok"] is False
        assert reply["code"] == code, argv
        assert len(result.err.splitlines()) == 1

    usage = marrow("send", "", "--json", env=env)
    assert usage.code == 2 and usage.json() == {
        "ok": False, "code": "usage", "reason": "the message is empty; nothing was sent"}
    misspelt = marrow("who", "--jsn", "--json", env=env)
    assert misspelt.code == 2 and misspelt.json()["code"] == "usage"

    nobody = f"ws://127.0.0.1:{free_port()}"
    unreachable = marrow("who", "--json", "--uri", nobody)
    assert unreachable.code == 3
    assert unreachable.json()["code"] == "unreachable"
    assert nobody in str(unreachable.json()["reason"])


def test_a_runtime_without_a_part_says_how_to_start_it(hub: RunningHub) -> None:
    env = {"MARROW_HUB_URI": hub.uri}
    services = marrow("services", env=env)
    assert (services.code, services.out) == (1, "")
    assert services.err == (f"marrow-tui: the marrow-tui at {hub.uri} runs no helper services; "
                            "start it with --config PATH, a marrow.toml with [[services]]\n")
    issues = marrow("issues", env=env)
    assert issues.code == 1 and "start it with --workflow PATH" in issues.err
    assert "Unknown message type" not in issues.err + services.err


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(("argv", "said"), [
    (["--no-ui", "--port", "99999"], "marrow-tui: --port: 99999 is not a port (0 to 65535)"),
    (["clam"], "marrow-tui: unknown command 'clam'; did you mean claim?"),
    (["who", "--jsn"], "marrow-tui: who: unknown option --jsn; did you mean --json?"),
    (["services", "restrat", "db"],
     "marrow-tui: services: unknown action 'restrat'; did you mean restart?"),
    (["claim"], "marrow-tui: claim: the following arguments are required: TASK_ID "),
    (["who", "--connect-timeout", "soon"],
     "marrow-tui: who: --connect-timeout: 'soon' is not a duration like 90s, 30m or 2h"),
    (["claim", "T1", "--ttl", "0"], "marrow-tui: claim: --ttl: a duration must be more than 0"),
])
def test_a_mistake_is_one_sentence_naming_it(argv: list[str], said: str) -> None:
    result = marrow(*argv)
    assert (result.code, result.out) == (2, "")
    [line] = result.err.splitlines()
    assert line.startswith(said), line
    assert line.endswith("--help`)")


def test_an_empty_message_is_refused_and_nothing_is_sent(hub: RunningHub) -> None:
    for text in ("", "  "):
        result = marrow("send", text, env={"MARROW_HUB_URI": hub.uri})
        assert (result.code, result.out) == (2, "")
        assert result.err == "marrow-tui: the message is empty; nothing was sent\n"
    assert marrow("send", "real", env={"MARROW_HUB_URI": hub.uri}).code == 0

    async def chat() -> list[str]:
        async with HubClient(hub.uri, "e2e/reader") as client:
            frames = (await client.history())["history"]
        return [frame["payload"] for frame in frames if frame.get("type") == "chat"]

    assert asyncio.run(chat()) == ["real"]


# --------------------------------------------------------------------------- durations


def test_one_duration_syntax_and_two_timeouts(hub: RunningHub, tmp_path: Path) -> None:
    env = operator(hub, tmp_path)
    assert marrow("who", "--connect-timeout", "5s", env=env).code == 0
    old = marrow("who", "--timeout", "5s", env=env)  # the old name of the connect timeout
    assert old.code == 0
    assert old.err == ("marrow-tui: --timeout here is the connect timeout; it is called "
                       "--connect-timeout now\n")

    marrow("claim", "T5", "--ttl", "5m", env=env)
    [lease] = marrow("state", "--json", env=env).json()["claims"]  # type: ignore[misc]
    assert lease["lease_expires_at"] - lease["claimed_at"] == pytest.approx(300)

    # ask: --timeout is the question's deadline (a duration too), --connect-timeout connecting
    asked = marrow("ask", "ship it?", "--timeout", "1s", "--default", "later",
                   "--connect-timeout", "5s", "--json", env=env)
    assert asked.code == 0, asked.err
    reply = asked.json()
    assert (reply["ok"], reply["state"], reply["answer"], reply["default_used"]) == (
        True, "timed_out", "later", True)
    assert set(reply) == {"ok", "id", "state", "answer", "answered_by", "default_used"}


# --------------------------------------------------------------------------- services


def test_services_in_config_order_with_the_consoles_uptime(tmp_path: Path) -> None:
    """`services` lists them as the config does, and says how long each has been up the way
    the console's pane does (core/text.py's format_duration: 12s, 5m, 1h05m)."""
    folder = tmp_path / "services"
    shutil.copytree(REPO / "examples" / "services", folder,
                    ignore=shutil.ignore_patterns(".marrow"))
    config = folder / "marrow.toml"
    config.write_text(config.read_text().replace('"python3"', f'"{sys.executable}"'))
    command = [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1",
               "--port", "0", "--config", str(config), "--state-dir", str(tmp_path / "st")]
    with running_hub(command, tmp_path) as running:
        env = {"MARROW_HUB_URI": running.uri}
        deadline = time.monotonic() + WAIT * 3
        while (listed := marrow("services", env=env)).out.count("healthy") < 3:
            assert time.monotonic() < deadline, listed.out + listed.err
        header, *lines = listed.out.splitlines()
        assert [line.split()[0] for line in lines] == ["db", "cache", "api"]
        up = slice(header.index(" UP ") + 1, header.index(" RESTARTS "))
        for line in lines:
            assert re.fullmatch(r"\d+s|\d+m|\d+h\d\dm|\d+d\d\dh", line[up].strip()), listed.out
        reply = marrow("services", "--json", env=env).json()
        names = [service["name"] for service in reply["services"]]  # type: ignore[attr-defined]
        assert names == ["db", "cache", "api"]
