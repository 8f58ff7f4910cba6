"""The event log refuses what it cannot trust, with one clear error, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from marrow_tui.runtime import Runtime, RuntimeOptions
from marrow_tui.store.eventlog import SCHEMA_VERSION, StoreError

from tests.support.hub import start_hub


async def _fresh_log(state_dir: Path) -> None:
    hub = await start_hub(state_dir)
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    await hub.stop()


async def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    await _fresh_log(state_dir)
    db = sqlite3.connect(state_dir / "events.db")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = (state_dir / "events.db").read_bytes()
    runtime = Runtime(RuntimeOptions(state_dir=state_dir))
    with pytest.raises(StoreError, match="newer marrow-tui"):
        await runtime.start()
    assert (state_dir / "events.db").read_bytes() == before


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    (state_dir / "events.db").write_bytes(b"this is not sqlite at all" * 100)
    runtime = Runtime(RuntimeOptions(state_dir=state_dir))
    with pytest.raises(StoreError, match="not a marrow-tui event log"):
        await runtime.start()
    assert (state_dir / "events.db").read_bytes() == b"this is not sqlite at all" * 100


async def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / "events.db")
    db.execute("CREATE TABLE stuff (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="no meta table"):
        await Runtime(RuntimeOptions(state_dir=state_dir)).start()


async def test_a_corrupt_event_row_is_reported_with_its_sequence(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    await _fresh_log(state_dir)
    db = sqlite3.connect(state_dir / "events.db")
    db.execute("DELETE FROM snapshots")
    db.execute("UPDATE events SET data = '{broken' WHERE kind = 'claim'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"event \d+ .* is corrupt"):
        await Runtime(RuntimeOptions(state_dir=state_dir)).start()


async def test_a_second_runtime_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "s")
    try:
        with pytest.raises(StoreError, match="in use by another marrow-tui"):
            await Runtime(RuntimeOptions(state_dir=tmp_path / "s")).start()
    finally:
        await hub.stop()
    second = Runtime(RuntimeOptions(state_dir=tmp_path / "s"))
    await second.start()
    await second.stop()


async def test_startup_reads_the_snapshot_and_only_the_tail(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    hub = await start_hub(state_dir)
    hub.runtime.options.snapshot_every = 50
    alice = await hub.agent("demo/alice")
    for n in range(120):
        await alice.send(type="chat", payload=f"m{n}")
    await alice.until("chat", payload="m119")
    async with asyncio.timeout(5):
        while hub.runtime.log.snapshot_seq < 100:
            await asyncio.sleep(0.01)
    snapshot_seq = hub.runtime.log.snapshot_seq
    # Kill-like stop: no final snapshot, so the tail after the last periodic one is replayed.
    await hub.server.stop()
    await hub.runtime.log.close()
    again = Runtime(RuntimeOptions(state_dir=state_dir))
    await again.start()
    try:
        assert again.restored_events == 120 - snapshot_seq
        assert again.state.chat.msg_id == 120
        assert [m["payload"] for m in again.state.chat.tail(2)] == ["m118", "m119"]
    finally:
        await again.stop()


async def test_lease_groups_are_fsynced_and_chat_groups_may_not_be(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path / "s")
    try:
        log = hub.runtime.log
        db = log._require()

        async def synchronous() -> int:
            row = await (await db.execute("PRAGMA synchronous")).fetchone()
            return int(row[0])

        alice = await hub.agent("demo/alice")
        await alice.send(type="chat", payload="hi")
        await alice.until("chat")
        assert await synchronous() == 1  # NORMAL: a chat-only group
        await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
        assert await synchronous() == 2  # FULL: the group held a lease event
    finally:
        await hub.stop()


@pytest.mark.parametrize("size", [1, 7, 64, 1000, 10**6])
def test_snapshot_parts_join_back_to_the_json(size: int) -> None:
    from marrow_tui.store.eventlog import _encode_parts

    state = {"chat": [{"payload": "é" * 300 + str(n), "n": n} for n in range(200)],
             "claims": [], "nested": {"a": [1, 2.5, None, True]}}
    parts = _encode_parts(state, size)
    assert all(0 < len(part) <= size for part in parts)
    assert "".join(parts) == json.dumps(state, separators=(",", ":"))
    assert "".join(_encode_parts({}, size)) == "{}"


async def test_a_first_start_killed_while_creating_the_log_starts_again(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    (state_dir / "lock").write_text("12345")  # the dead run's lock
    (state_dir / "events.db.new").write_bytes(b"half a database")  # what it was building
    runtime = Runtime(RuntimeOptions(state_dir=state_dir))
    await runtime.start()
    await runtime.stop()
    assert not (state_dir / "events.db.new").exists()
    assert (state_dir / "events.db").stat().st_size > 0


async def test_a_refused_first_start_leaves_no_lock_behind(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    (state_dir / "services").mkdir()  # state from an earlier run, but no log and no lock
    with pytest.raises(StoreError, match="missing"):
        await Runtime(RuntimeOptions(state_dir=state_dir)).start()
    assert sorted(p.name for p in state_dir.iterdir()) == ["services"]
