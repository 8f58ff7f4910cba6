"""End-to-end tests of the hub subcommands: a real hub subprocess, real sockets,
and the CLI run as a user runs it (``python -m marrow_tui <verb> ...``).

The hub is ``python -m marrow_tui --no-ui --port 0``. To check wire
compatibility, ``MARROW_TEST_HUB`` may name another hub command instead, with
``{port}`` for a free port, e.g. synapse-channel's own hub:
``MARROW_TEST_HUB="synapse hub --host 127.0.0.1 --port {port} --max-connections-per-host 0"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from marrow_tui.hub.client import Frame, HubClient
from marrow_tui.hub.secrets import agent_key

from tests.support.hubproc import REPO, RunningHub, clean_env, free_port, hub_command, running_hub

CLI_TIMEOUT = 30.0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A fresh hub per test, so no claim or board task leaks between tests."""
    with running_hub(hub_command(tmp_path / "state"), tmp_path) as running:
        yield running


@pytest.fixture
async def bob(hub: RunningHub) -> AsyncIterator[HubClient]:
    """An agent kept online for the whole test (handoff and chat need a live recipient)."""
    async with HubClient(hub.uri, "e2e/bob", roles=["e2e/builder"]) as client:
        yield client


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Frame:
        frame = json.loads(self.out)
        assert isinstance(frame, dict)
        return frame


def _cli_prefix() -> list[str]:
    custom = os.environ.get("MARROW_TEST_CLI")
    return shlex.split(custom) if custom else [sys.executable, "-m", "marrow_tui"]


async def cli(*args: str, uri: str | None = None, name: str | None = None,
              env: dict[str, str] | None = None) -> Result:
    """Run the CLI as a subprocess without blocking the loop (clients stay responsive)."""
    argv = [*_cli_prefix(), *args]
    if uri is not None:
        argv += ["--uri", uri]
    if name is not None:
        argv += ["--name", name]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})}, cwd=REPO,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    result = Result(process.returncode, out.decode(), err.decode())
    assert "Traceback" not in result.err, result.err
    return result


def as_agent(state: Path, name: str) -> dict[str, str]:
    """The environment a run of ours gets: its name and its agent key, so a later call takes
    back the name it left holding a lease (docs/protocol.md §2.7)."""
    return {"MARROW_AGENT": name, "MARROW_AGENT_KEY": agent_key(state, name)}


def _claims(frame: Frame) -> dict[str, Frame]:
    return {c["task_id"]: c for c in frame["snapshot"]["active_claims"]}


def _row(text: str, first: str) -> list[str]:
    """The whitespace-split cells of the output line that starts with ``first``."""
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row for {first!r} in:\n{text}")


# --------------------------------------------------------------------------- claims


async def test_claim_conflict_handoff_release_journey(hub: RunningHub, bob: HubClient,
                                                      tmp_path: Path) -> None:
    seen = bob.subscribe()
    alice = as_agent(tmp_path / "state", "e2e/alice")

    claimed = await cli("claim", "T1", "src/auth.py", "src/util/", "--worktree", "main",
                        "--ttl", "600", "--note", "edit auth", uri=hub.uri, name="e2e/alice")
    assert claimed.code == 0, claimed.err
    assert "claimed T1" in claimed.out and "epoch" in claimed.out
    grant = await bob.next_matching(seen, lambda f: f.get("type") == "claim_granted")
    assert (grant["task_id"], grant["owner"]) == ("T1", "e2e/alice")

    state = await cli("state", uri=hub.uri, name="e2e/carol")
    assert state.code == 0, state.err
    row = _row(state.out, "T1")
    assert row[1] == "e2e/alice" and "src/auth.py," in row and "src/util" in row

    conflict = await cli("claim", "T2", "src/util/x.py", "--worktree", "main",
                         uri=hub.uri, name="e2e/carol")
    assert conflict.code == 1
    assert "SCOPE_CONFLICT" in conflict.err and conflict.out == ""
    assert set(_claims(await bob.state())) == {"T1"}

    handed = await cli("handoff", "T1", "e2e/bob", "--note", "please finish",
                       uri=hub.uri, name="e2e/alice", env=alice)
    assert handed.code == 0, handed.err
    assert "e2e/bob" in handed.out
    moved = await bob.next_matching(seen, lambda f: f.get("type") == "handoff_granted")
    assert moved["owner"] == "e2e/bob" and moved["previous_owner"] == "e2e/alice"
    assert _claims(await bob.state())["T1"]["owner"] == "e2e/bob"

    not_yours = await cli("release", "T1", uri=hub.uri, name="e2e/alice", env=alice)
    assert not_yours.code == 1 and not_yours.err.strip()
    assert "T1" in _claims(await bob.state())

    await bob.release("T1")
    empty = await cli("state", uri=hub.uri, name="e2e/carol")
    assert empty.code == 0 and "no active claims" in empty.out


async def test_release_uses_epoch_fencing(hub: RunningHub, tmp_path: Path) -> None:
    alice = as_agent(tmp_path / "state", "e2e/alice")
    grant = await cli("claim", "T9", "docs/", "--json", uri=hub.uri, name="e2e/alice")
    assert grant.code == 0, grant.err
    epoch = grant.json()["epoch"]
    assert isinstance(epoch, int)

    stale = await cli("release", "T9", "--epoch", str(epoch + 1000), uri=hub.uri,
                      name="e2e/alice", env=alice)
    assert stale.code == 1 and "T9" in stale.err

    released = await cli("release", "T9", "--epoch", str(epoch), "--json",
                         uri=hub.uri, name="e2e/alice", env=alice)
    assert released.code == 0, released.err
    assert released.json() == {"ok": True, "task_id": "T9", "owner": "e2e/alice",
                               "epoch": epoch}
    state = await cli("state", "--json", uri=hub.uri, name="e2e/alice", env=alice)
    assert state.json() == {"ok": True, "claims": []}


async def test_refusal_in_json_mode_prints_code_and_reason(hub: RunningHub,
                                                           bob: HubClient) -> None:
    await bob.claim("T1", ["lib"], worktree="w")
    denied = await cli("claim", "T1", "other", "--worktree", "w2", "--json",
                       uri=hub.uri, name="e2e/alice")
    assert denied.code == 1
    assert denied.json() == {"ok": False, "code": "LEASE_LIVE",
                             "reason": "Task 'T1' is already claimed by e2e/bob."}
    assert "LEASE_LIVE" in denied.err


# --------------------------------------------------------------------------- board


async def test_board_declare_with_dependencies_shows_the_ready_set(hub: RunningHub) -> None:
    async def planner(*args: str) -> Result:
        return await cli(*args, uri=hub.uri, name="e2e/planner")

    assert (await planner("board", "declare", "A", "design the api")).code == 0
    declared = await planner("board", "declare", "B", "build it", "--depends-on", "A",
                         "--suggested-owner", "e2e/bob", "--description", "the build")
    assert declared.code == 0, declared.err
    assert "depends on A" in declared.out
    both = await planner("board", "--json", "declare", "C", "ship", "--depends-on", "A,B",
                         "--depends-on", "B")
    assert both.code == 0, both.err
    assert both.json()["task"]["depends_on"] == ["A", "B"]

    board = await planner("board")
    assert board.code == 0, board.err
    assert _row(board.out, "A")[2] == "ready"
    assert "ready" not in _row(board.out, "B") and "e2e/bob" in _row(board.out, "B")
    assert _row(board.out, "C")[2:4] == ["A,", "B"]

    done = await planner("board", "update", "A", "--status", "done", "--expected-version", "1")
    assert done.code == 0, done.err
    assert "done" in done.out
    note = await planner("board", "progress", "B", "compiler is slow", "--kind", "blocked")
    assert note.code == 0, note.err

    snapshot = (await planner("board", "--json")).json()
    assert snapshot["ready"] == ["B"]
    assert {t["task_id"]: t["depends_on"] for t in snapshot["tasks"]}["C"] == ["A", "B"]
    assert any(n["text"] == "compiler is slow" and n["kind"] == "blocked"
               for n in snapshot["progress"])

    printed = await planner("board")
    assert _row(printed.out, "B")[2] == "ready"
    assert "recent progress" in printed.out and "compiler is slow" in printed.out


async def test_board_refusals_exit_1_and_change_nothing(hub: RunningHub) -> None:
    async def planner(*args: str) -> Result:
        return await cli(*args, uri=hub.uri, name="e2e/planner")

    assert (await planner("board", "declare", "X", "x", "--depends-on", "Y")).code == 0
    assert (await planner("board", "declare", "Y", "y")).code == 0
    cycle = await planner("board", "declare", "Y", "y", "--depends-on", "X")
    assert cycle.code == 1 and "cycle" in cycle.err

    assert (await planner("board", "update", "Y", "--status", "in_progress")).code == 0
    stale = await planner("board", "update", "Y", "--status", "done", "--expected-version", "1")
    assert stale.code == 1 and stale.err.strip()

    board = (await planner("board", "--json")).json()
    tasks = {t["task_id"]: t for t in board["tasks"]}
    assert tasks["Y"]["depends_on"] == [] and tasks["Y"]["status"] == "in_progress"


# --------------------------------------------------------------------------- chat and presence


async def test_send_reaches_an_online_agent(hub: RunningHub, bob: HubClient) -> None:
    seen = bob.subscribe()
    sent = await cli("send", "tests are green", "--to", "e2e/bob", uri=hub.uri, name="e2e/alice")
    assert sent.code == 0, sent.err
    assert "sent to e2e/bob" in sent.out
    chat = await bob.next_matching(seen, lambda f: f.get("type") == "chat")
    assert (chat["sender"], chat["target"], chat["payload"]) == (
        "e2e/alice", "e2e/bob", "tests are green")


async def test_who_lists_online_agents_with_roles(hub: RunningHub, bob: HubClient) -> None:
    human = await cli("who", uri=hub.uri, name="e2e/alice")
    assert human.code == 0, human.err
    assert _row(human.out, "e2e/bob")[1:] == ["e2e/builder"]
    frame = (await cli("who", "--json", uri=hub.uri, name="e2e/alice")).json()
    assert frame["ok"] is True
    assert {"name": "e2e/bob", "roles": ["e2e/builder"]} in frame["agents"]
    assert "e2e/alice" in {agent["name"] for agent in frame["agents"]}


async def test_environment_supplies_uri_and_name(hub: RunningHub, bob: HubClient) -> None:
    env = {"MARROW_HUB_URI": hub.uri, "MARROW_AGENT": "e2e/from-env"}
    done = await cli("claim", "ENV1", "env/only", "--json", env=env)
    assert done.code == 0, done.err
    assert done.json()["owner"] == "e2e/from-env"
    assert _claims(await bob.state())["ENV1"]["owner"] == "e2e/from-env"


# --------------------------------------------------------------------------- failures


async def test_a_run_may_act_under_a_name_below_its_own(hub: RunningHub,
                                                        tmp_path: Path) -> None:
    """A run's name, once proven, owns the names under it; the CLI sends the run's key for
    them too (as the MCP server does for `<agent>/mcp`), and nothing else gets it."""
    run = as_agent(tmp_path / "state", "e2e/run")
    assert (await cli("who", uri=hub.uri, name="e2e/run", env=run)).code == 0
    sub = await cli("who", uri=hub.uri, name="e2e/run/helper", env=run)
    assert sub.code == 0, sub.err
    keyless = await cli("who", uri=hub.uri, name="e2e/run/other")
    assert keyless.code != 0 and "belongs to an agent marrow-tui started" in keyless.err


async def test_unreachable_hub_exits_3_naming_the_uri() -> None:
    uri = f"ws://127.0.0.1:{free_port()}"
    result = await cli("state", uri=uri, name="e2e/alice")
    assert result.code == 3
    assert uri in result.err and result.out == ""
    assert len(result.err.strip().splitlines()) == 1


async def test_name_already_online_exits_3(hub: RunningHub, bob: HubClient) -> None:
    result = await cli("who", uri=hub.uri, name="e2e/bob")
    assert result.code == 3
    assert hub.uri in result.err
    assert "e2e/bob" in (await bob.who())["online_agents"]


async def test_silent_server_times_out_with_exit_3() -> None:
    """A TCP peer that never answers the handshake: the timeout must bound the wait."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        result = await cli("who", "--connect-timeout", "1s", uri=f"ws://127.0.0.1:{port}",
                           name="e2e/a")
        assert result.code == 3
        assert f"ws://127.0.0.1:{port}" in result.err and "1 s" in result.err
        assert time.monotonic() - started < CLI_TIMEOUT / 2
        assert accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "argv",
    [
        ["claim"],
        ["board", "update", "A"],
        ["board", "update", "A", "--status", "finished"],
        ["board", "progress", "A", "text", "--kind", "shout"],
        ["release", "T1", "--epoch", "one"],
        ["who", "--timeout", "0"],
        ["who", "--uri", "localhost:8876"],
        ["who", "--name", " "],
    ],
)
async def test_bad_input_exits_2_without_contacting_a_hub(argv: list[str]) -> None:
    result = await cli(*argv)
    assert result.code == 2
    assert result.err.strip() and result.out == ""


async def test_without_uri_a_command_finds_the_marrow_tui_of_its_state_dir(
        hub: RunningHub, tmp_path: Path) -> None:
    # The hub listens on a port of its choosing (--port 0); its state dir says where.
    assert not hub.uri.endswith(":8876")
    found = await cli("who", "--json", "--name", "e2e/finder", "--state-dir",
                      str(tmp_path / "state"))
    assert found.code == 0, found.err
    assert "e2e/finder" in [a["name"] for a in found.json()["agents"]]
    elsewhere = await cli("who", "--json", "--state-dir", str(tmp_path / "nothing-here"),
                          env={"MARROW_HUB_URI": hub.uri})
    assert elsewhere.code == 0, elsewhere.err  # $MARROW_HUB_URI still comes first
