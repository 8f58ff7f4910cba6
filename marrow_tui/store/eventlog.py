"""The durable event log: SQLite in WAL mode through aiosqlite, with group commit and snapshots.

`append` gives events their sequence numbers at once and queues them; one writer task commits
whatever has queued up in a single transaction, so many concurrent mutations share one fsync.
A group that holds a lease-family event (see `core.events.DURABLE_KINDS`) commits with
`synchronous=FULL`; a group of chat and progress alone may commit with NORMAL. After each commit
`on_commit(seq)` tells the runtime how far the log is durable, and only then are the replies
for those events sent.

Start-up reads the newest snapshot and the events after it, never the whole history. The file
carries a schema version: a file from a newer version, or a file that is not our database, is
refused with a clear error instead of being reset.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.events import Event

SCHEMA_VERSION = 1
DB_NAME = "events.db"
LOCK_NAME = "lock"
KEEP_SNAPSHOTS = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
"""


#: rows per INSERT statement: 4 parameters each, under SQLite's 32,766-parameter limit
_ROWS_PER_INSERT = 8000


@lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO events(seq, ts, kind, data) VALUES " + ",".join(["(?,?,?,?)"] * rows)


def _flat(batch: list[tuple[int, float, str, str, bool]]) -> list[object]:
    return [value for row in batch for value in row[:4]]


class StoreError(Exception):
    """The state directory or its database cannot be used; the message says why and where."""


class StateLock:
    """An exclusive lock on a state directory, so two runtimes never write one log."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreError(
                    f"{self.path.parent} is in use by another marrow-tui (pid {holder}); "
                    "stop it or pass a different --state-dir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventLog:
    def __init__(self, directory: Path, *, on_commit: Callable[[int], None] | None = None) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        self.on_commit = on_commit or (lambda seq: None)
        self.last_seq = 0
        self.durable_seq = 0
        self.snapshot_seq = 0
        #: how many group commits have been made (events / commits = the grouping achieved)
        self.commits = 0
        self.hub_id = ""
        self._db: aiosqlite.Connection | None = None
        self._lock = StateLock(directory)
        self._queue: list[tuple[int, float, str, str, bool]] = []
        self._snapshot: tuple[int, dict[str, Any]] | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._full = True
        self._failure: BaseException | None = None
        self._closing = False

    # ---- opening -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create state directory {self.directory}: {exc}") from None
        self._lock.acquire()
        try:
            await self._connect()
        except BaseException:
            self._lock.release()
            raise

    async def _connect(self) -> None:
        fresh = not self.path.exists()
        try:
            # Autocommit: each group is one multi-row INSERT, so a commit costs one hop to
            # aiosqlite's thread instead of an execute plus a commit.
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        self._db = db
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            tables = {
                row[0]
                async for row in await db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(
                f"{self.path} is not a marrow-tui event log ({exc}); "
                "move it aside or pass a different --state-dir"
            ) from None
        if tables and "meta" not in tables:
            await db.close()
            raise StoreError(f"{self.path} is not a marrow-tui event log (no meta table)")
        if "meta" in tables:
            await self._check_schema(db)
        else:
            self.hub_id = "mrw-" + os.urandom(4).hex()
            await db.executescript(
                "BEGIN;" + _SCHEMA
                + "INSERT INTO meta(key, value) VALUES ('schema_version', '%d'), ('hub_id', '%s'),"
                " ('created_at', '%r'); COMMIT;" % (SCHEMA_VERSION, self.hub_id, time.time())
            )
            if fresh:
                os.chmod(self.path, 0o600)
        row = await (await db.execute("SELECT COALESCE(MAX(seq), 0) FROM events")).fetchone()
        self.last_seq = self.durable_seq = int(row[0]) if row else 0

    async def _check_schema(self, db: aiosqlite.Connection) -> None:
        meta = {k: v async for k, v in await db.execute("SELECT key, value FROM meta")}
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            await db.close()
            raise StoreError(f"{self.path} has no readable schema version; it may be corrupt") from None
        if version > SCHEMA_VERSION:
            await db.close()
            raise StoreError(
                f"{self.path} was written by a newer marrow-tui (schema {version}; this version "
                f"reads up to {SCHEMA_VERSION}); upgrade marrow-tui to open it"
            )
        self.hub_id = meta.get("hub_id", "") or "mrw-" + os.urandom(4).hex()

    async def load(self) -> tuple[dict[str, Any] | None, AsyncIterator[Event]]:
        """The newest snapshot (or None) and an iterator over the events after it."""
        db = self._require()
        try:
            row = await (
                await db.execute("SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1")
            ).fetchone()
            snapshot = None
            if row is not None:
                self.snapshot_seq = int(row[0])
                snapshot = json.loads(row[1])
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise StoreError(f"cannot read the snapshot in {self.path}: {exc}") from None
        return snapshot, self._tail(self.snapshot_seq)

    async def _tail(self, after: int) -> AsyncIterator[Event]:
        db = self._require()
        try:
            cursor = await db.execute(
                "SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq", (after,)
            )
            while rows := await cursor.fetchmany(10_000):
                for seq, kind, data in rows:
                    try:
                        yield Event(kind, json.loads(data))
                    except ValueError as exc:
                        raise StoreError(f"event {seq} in {self.path} is corrupt: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read events from {self.path}: {exc}") from None

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("event log is not open")
        return self._db

    # ---- writing -------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="marrow-eventlog-writer")

    def append(self, events: list[Event], now: float) -> int:
        """Queue `events` for the next group commit; return the sequence of the last one."""
        if self._failure is not None:
            raise StoreError(f"the event log stopped writing: {self._failure}")
        for event in events:
            self.last_seq += 1
            self._queue.append(
                (self.last_seq, now, event.kind,
                 event.encoded or json.dumps(event.data, separators=(",", ":")), event.durable)
            )
        if events:
            self._wake.set()
        return self.last_seq

    def request_snapshot(self, state: dict[str, Any]) -> None:
        """Write `state` as the snapshot at the current sequence, after the events before it."""
        self._snapshot = (self.last_seq, state)
        self._wake.set()

    async def _write_loop(self) -> None:
        db = self._require()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue or self._snapshot:
                    # A snapshot goes in as soon as the events it covers are durable, so a
                    # steady stream of new events cannot starve it.
                    if self._snapshot and self._snapshot[0] <= self.durable_seq:
                        await self._write_snapshot(db)
                    else:
                        await self._commit(db)
                if self._closing and not self._queue:
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failed commit: nothing more can be acknowledged
            self._failure = exc
            self.on_commit(-1)
            raise

    async def _commit(self, db: aiosqlite.Connection) -> None:
        batch, self._queue = self._queue, []
        full = any(row[4] for row in batch)
        if full != self._full:
            await db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._full = full
        if len(batch) <= _ROWS_PER_INSERT:
            await db.execute(_insert_sql(len(batch)), _flat(batch))
        else:
            # Rare (a burst beyond one statement's parameters): one explicit transaction so
            # the group stays all-or-nothing.
            await db.execute("BEGIN")
            for start in range(0, len(batch), _ROWS_PER_INSERT):
                part = batch[start : start + _ROWS_PER_INSERT]
                await db.execute(_insert_sql(len(part)), _flat(part))
            await db.execute("COMMIT")
        self.commits += 1
        self.durable_seq = batch[-1][0]
        self.on_commit(self.durable_seq)

    async def _write_snapshot(self, db: aiosqlite.Connection) -> None:
        assert self._snapshot is not None
        seq, state = self._snapshot
        self._snapshot = None
        if seq <= self.snapshot_seq:
            return
        text = await asyncio.to_thread(json.dumps, state, separators=(",", ":"))
        if not self._full:
            await db.execute("PRAGMA synchronous=FULL")
            self._full = True
        await db.execute("INSERT INTO snapshots(seq, ts, data) VALUES (?, ?, ?)",
                         (seq, time.time(), text))
        await db.execute(
            "DELETE FROM snapshots WHERE seq NOT IN "
            "(SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
            (KEEP_SNAPSHOTS,),
        )
        self.snapshot_seq = seq

    async def close(self) -> None:
        """Commit everything queued, stop the writer and release the directory."""
        if self._writer is not None and not self._writer.done():
            self._closing = True
            self._wake.set()
            try:
                await self._writer
            except Exception:
                pass
        if self._db is not None:
            try:
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            await self._db.close()
            self._db = None
        self._lock.release()
