"""The state folder is never silently reset, and chat history can neither pin memory nor break
the snapshot: an emptied or missing log beside earlier state is refused, `--new-state` sets the
old state aside (never deletes it), one chat is capped, history is bounded by bytes, snapshots
are written in pieces, and a failed snapshot is logged without stopping the hub."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from marrow_tui.core.events import Event
from marrow_tui.core.state import State
from marrow_tui.runtime import Runtime, RuntimeOptions
from marrow_tui.store.eventlog import StoreError

from tests.support.hub import WAIT, FakeClock, start_hub
from tests.support.hubproc import clean_env, hub_command, running_hub

CHAT_LIMIT = 256 * 1024  # the documented cap on one chat frame


async def _used_state_dir(state_dir: Path) -> None:
    """A state folder as a real run leaves it: a lease, a chat, the secrets, the lock."""
    hub = await start_hub(state_dir)
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await alice.send(type="chat", payload="hello")
    await alice.until("chat")
    await hub.stop()


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, failing after WAIT seconds (never a fixed sleep)."""
    try:
        async with asyncio.timeout(WAIT):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"no {what} within {WAIT} s")


def _listing(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ---- point 2: an emptied or missing log is refused ---------------------------------------------


async def test_a_zero_length_events_db_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    await _used_state_dir(state_dir)
    (state_dir / "events.db").write_bytes(b"")
    before = _listing(state_dir)
    with pytest.raises(StoreError) as caught:
        await Runtime(RuntimeOptions(state_dir=state_dir)).start()
    message = str(caught.value)
    assert str(state_dir / "events.db") in message and "empty" in message
    assert "--new-state" in message
    assert "\n" not in message
    assert _listing(state_dir) == before


async def test_a_missing_events_db_beside_earlier_state_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    await _used_state_dir(state_dir)
    (state_dir / "events.db").unlink()
    before = _listing(state_dir)
    with pytest.raises(StoreError, match="missing") as caught:
        await Runtime(RuntimeOptions(state_dir=state_dir)).start()
    assert "--new-state" in str(caught.value)
    assert "lock" in str(caught.value)  # it names the state it found
    assert _listing(state_dir) == before
    assert not (state_dir / "events.db").exists()


@pytest.mark.parametrize("layout", ["absent", "empty", "console-log-only"])
async def test_a_new_state_folder_starts_normally(tmp_path: Path, layout: str) -> None:
    state_dir = tmp_path / "s"
    if layout != "absent":
        state_dir.mkdir()
    if layout == "console-log-only":  # the console opens its log file before the runtime starts
        (state_dir / "marrow-tui.log").write_text("")
    runtime = Runtime(RuntimeOptions(state_dir=state_dir))
    await runtime.start()
    hub_id = runtime.log.hub_id
    await runtime.stop()
    again = Runtime(RuntimeOptions(state_dir=state_dir))
    await again.start()
    assert again.log.hub_id == hub_id
    await again.stop()


def test_the_cli_refuses_an_emptied_log_with_exit_code_2(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    asyncio.run(_used_state_dir(state_dir))
    (state_dir / "events.db").write_bytes(b"")
    try:
        done = subprocess.run(hub_command(state_dir), capture_output=True, text=True,
                              cwd=tmp_path, env=clean_env(), timeout=30)
    except subprocess.TimeoutExpired as exc:  # it started a new log instead of refusing
        pytest.fail(f"the hub started over an emptied log: {exc.stdout!r}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marrow-tui: ")
    assert "--new-state" in lines[0]
    assert (state_dir / "events.db").read_bytes() == b""


def test_new_state_sets_the_old_state_aside_and_says_where(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    asyncio.run(_used_state_dir(state_dir))
    (state_dir / "events.db").write_bytes(b"")
    before = _listing(state_dir)
    with running_hub(hub_command(state_dir, "--new-state"), tmp_path) as hub:
        said = "".join(hub.output)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("s.old-")]
    assert len(aside) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert str(aside[0]) in said
    moved = _listing(aside[0])
    # every old file is kept byte for byte (the lock only ever holds a pid)
    assert {k: v for k, v in moved.items() if k != "lock"} == \
        {k: v for k, v in before.items() if k != "lock"}
    fresh = sqlite3.connect(state_dir / "events.db")
    try:
        assert fresh.execute("SELECT COUNT(*) FROM events WHERE kind = 'claim'").fetchone() == (0,)
    finally:
        fresh.close()


def test_new_state_on_a_fresh_folder_moves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    with running_hub(hub_command(state_dir, "--new-state"), tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# ---- point 3: chat history and snapshots -------------------------------------------------------


async def test_a_chat_over_the_limit_is_refused_with_an_error_code(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "s")
    try:
        alice = await hub.agent("demo/alice")
        await alice.send(type="chat", payload="x" * CHAT_LIMIT)
        error = await alice.until("error")
        assert error["error_code"] == "chat_too_large"
        assert f"{CHAT_LIMIT:,}" in error["payload"]
        assert hub.runtime.state.chat.msg_id == 0 and not hub.runtime.state.chat.history
        await alice.send(type="chat", payload="small")  # the socket is still open and usable
        assert (await alice.until("chat"))["msg_id"] == 1
    finally:
        await hub.stop()


async def _limit_string_length(runtime: Runtime, limit: int) -> None:
    """Lower SQLite's string/row limit on the log's own connection (in its own thread)."""
    db = runtime.log._require()
    await db._execute(db._conn.setlimit, sqlite3.SQLITE_LIMIT_LENGTH, limit)


async def test_a_snapshot_beyond_sqlites_string_limit_is_written_in_pieces(
        tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    hub = await start_hub(state_dir)
    await _limit_string_length(hub.runtime, 1_500_000)
    hub.runtime.options.snapshot_every = 10
    alice = await hub.agent("demo/alice")
    for n in range(12):
        await alice.send(type="chat", payload=f"{n:03d}" + "p" * 200_000)
    await alice.until("chat", msg_id=12)
    await _wait_for(lambda: hub.runtime.log.snapshot_seq >= 10, "a snapshot")
    assert not hub.runtime.failed.is_set()
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    # Kill-like stop: no final snapshot, so the pieces written above must load on their own.
    await hub.server.stop()
    await hub.runtime.log.close()
    again = Runtime(RuntimeOptions(state_dir=state_dir), clock=hub.clock)
    await again.start()
    try:
        assert again.log.snapshot_seq >= 10
        assert [m["payload"][:3] for m in again.state.chat.history] == \
            [f"{n:03d}" for n in range(12)]
        assert again.state.claims.get("T1") is not None
    finally:
        await again.stop()


async def test_a_failed_snapshot_is_logged_with_its_cause_and_the_hub_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    state_dir = tmp_path / "s"
    hub = await start_hub(state_dir)
    hub.runtime.options.snapshot_every = 5
    side = sqlite3.connect(state_dir / "events.db")
    side.execute("CREATE TRIGGER refuse_snapshots BEFORE INSERT ON snapshots "
                 "BEGIN SELECT RAISE(ABORT, 'snapshots refused by the test'); END")
    side.commit()
    try:
        alice = await hub.agent("demo/alice")
        for n in range(6):
            await alice.send(type="chat", payload=f"m{n}")
        await _wait_for(lambda: any("snapshots refused by the test" in r.getMessage()
                                    for r in caplog.records), "the snapshot failure logged")
        assert not hub.runtime.failed.is_set()
        granted = await alice.request(("claim_granted",), type="claim", task_id="T1",
                                      paths=["a"])
        assert granted["task_id"] == "T1"
        side.execute("DROP TRIGGER refuse_snapshots")
        side.commit()
        for n in range(6, 12):
            await alice.send(type="chat", payload=f"m{n}")
        await _wait_for(lambda: hub.runtime.log.snapshot_seq > 0, "a later snapshot")
    finally:
        side.close()
        await hub.stop()
    again = Runtime(RuntimeOptions(state_dir=state_dir), clock=hub.clock)
    await again.start()
    try:
        assert again.state.claims.get("T1") is not None
        assert again.state.chat.msg_id == 12
    finally:
        await again.stop()


_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
                     data TEXT NOT NULL);
CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL);
"""


async def test_a_state_folder_written_by_the_previous_format_comes_back(tmp_path: Path) -> None:
    """Schema 1 kept the whole snapshot in one `snapshots.data` value."""
    clock = FakeClock()
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    state = State(started_at=clock())
    events: list[Event] = []

    def apply(event: Event) -> None:
        state.apply(event)
        events.append(event)

    made = state.claims.decide_claim("demo/alice", "T1", paths=["a"], now=clock())
    assert isinstance(made, Event)
    apply(made)
    for n in range(3):
        apply(Event("chat", {"type": "chat", "sender": "demo/alice", "target": "all",
                             "payload": f"old {n}", "msg_id": n + 1}))
    snapshot = json.dumps(state.to_snapshot())
    apply(Event("chat", {"type": "chat", "sender": "demo/bob", "target": "all",
                         "payload": "after the snapshot", "msg_id": 4}))
    db = sqlite3.connect(state_dir / "events.db")
    db.executescript(_V1_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    db.executemany("INSERT INTO meta VALUES (?, ?)",
                   [("schema_version", "1"), ("hub_id", "mrw-0ld00001"),
                    ("created_at", repr(time.time()))])
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                   [(i + 1, clock(), e.kind, json.dumps(e.data)) for i, e in enumerate(events)])
    db.execute("INSERT INTO snapshots VALUES (?, ?, ?)", (4, clock(), snapshot))
    db.commit()
    db.close()

    for round_ in range(2):  # as written by schema 1, then as rewritten by this version
        runtime = Runtime(RuntimeOptions(state_dir=state_dir), clock=clock)
        await runtime.start()
        try:
            assert runtime.log.hub_id == "mrw-0ld00001"
            assert runtime.state.claims.get("T1").owner == "demo/alice"
            assert [m["payload"] for m in runtime.state.chat.history] == \
                ["old 0", "old 1", "old 2", "after the snapshot"]
            assert runtime.state.chat.msg_id == 4
            if round_ == 0:
                assert runtime.restored_events == 1  # the old snapshot was used, not a replay
        finally:
            await runtime.stop()
    check = sqlite3.connect(state_dir / "events.db")
    try:
        version = check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        check.close()
    assert int(version[0]) >= 2


def test_the_chat_history_budget_is_a_setting(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from marrow_tui.cli.console import runtime_options
    from marrow_tui.cli.main import build_parser

    assert RuntimeOptions(state_dir=tmp_path).chat_history_bytes == 16 * 1024 * 1024
    runtime = Runtime(RuntimeOptions(state_dir=tmp_path, chat_history_bytes=100_000))
    assert runtime.state.chat.max_bytes == 100_000
    assert runtime.state.chat.max_message_bytes == 100_000

    args = build_parser().parse_args(["--chat-history-mib", "4"])
    assert runtime_options(args, tmp_path).chat_history_bytes == 4 * 1024 * 1024
    monkeypatch.setenv("MARROW_CHAT_HISTORY_MIB", "2")
    args = build_parser().parse_args([])
    assert runtime_options(args, tmp_path).chat_history_bytes == 2 * 1024 * 1024


def test_a_bad_chat_history_budget_is_refused_in_one_sentence(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "marrow_tui", "--no-ui", "--port", "0",
         "--state-dir", str(tmp_path / "s"), "--chat-history-mib", "0"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--chat-history-mib" in lines[0] and "at least 1" in lines[0]
    assert not (tmp_path / "s").exists()


async def test_history_and_resume_replies_fit_a_clients_frame_limit(tmp_path: Path) -> None:
    """Eight chats near the one-chat cap are 2 MiB: a reply with all of them would close a
    client that accepts 1 MiB frames (websockets' default), so replies carry what fits and say
    so, and a resume from the last message got brings the rest."""
    hub = await start_hub(tmp_path / "s")
    try:
        alice = await hub.agent("demo/alice")
        for n in range(8):
            await alice.send(type="chat", payload=f"{n}" + "p" * 250_000)
        await alice.until("chat", msg_id=8)
        await alice.send(type="history_request", limit=100)
        history = await alice.until("history_snapshot")
        assert history["complete"] is False
        got = [m["msg_id"] for m in history["history"]]
        assert got and got == list(range(9 - len(got), 9))  # the newest, oldest first
        assert len(json.dumps(history)) < 1024 * 1024
        seen: list[int] = []
        since = 0
        while True:
            await alice.send(type="resume_request", since=since)
            resume = await alice.until("resume_snapshot", since=since)
            assert len(json.dumps(resume)) < 1024 * 1024
            seen += [m["msg_id"] for m in resume["messages"]]
            if resume["complete"]:
                break
            since = seen[-1]
        assert seen == list(range(1, 9))
        await alice.send(type="history_request", limit=2)
        assert (await alice.until("history_snapshot"))["complete"] is True
    finally:
        await hub.stop()
