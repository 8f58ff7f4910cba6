"""The durable event log: SQLite in WAL mode through aiosqlite, with group commit and snapshots.

`append` gives events their sequence numbers at once and queues them; one writer task commits
whatever has queued up in a single transaction, so many concurrent mutations share one fsync.
A group that holds a lease-family event (see `core.kinds.DURABLE_KINDS`) commits with
`synchronous=FULL`; a group of chat and progress alone may commit with NORMAL. After each commit
`on_commit(seq)` tells the runtime how far the log is durable, and only then are the replies
for those events sent.

Start-up reads the newest snapshot and the events after it, never the whole history. The file
carries a schema version: a file from a newer version, or a file that is not our database, is
refused with a clear error instead of being reset.

A log is never started over silently: an `events.db` that is empty (zero bytes, or no tables),
or missing while the folder holds what an earlier run left (the lock, the services' logs, a
write-ahead log: `EARLIER_STATE`), is refused; `set_aside` is how `--new-state` starts fresh
on purpose, by moving the old folder to a timestamped sibling. A new database is built under a
temporary name and renamed into place, so a crash while creating it never leaves an empty
`events.db`.

Snapshots are written in pieces (`snapshot_parts` rows of at most `SNAPSHOT_PART_CHARS`), so no
single value can reach SQLite's string limit however large the state grows; schema 1 kept the
whole snapshot in `snapshots.data`, and such rows still load. A snapshot that cannot be written
is logged with its cause and skipped: the events it would have summarised are in the log, so
nothing is lost and the hub goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.events import Event

log = logging.getLogger("marrow.eventlog")

#: 1: snapshots in one value; 2: snapshots in `snapshot_parts` rows (schema 1 files are upgraded)
SCHEMA_VERSION = 2
DB_NAME = "events.db"
LOCK_NAME = "lock"
KEEP_SNAPSHOTS = 2
#: characters (bytes: the JSON is ASCII) per snapshot row, far below SQLite's 1e9 string limit
SNAPSHOT_PART_CHARS = 1024 * 1024
#: what only a run that opened the log leaves in a state folder (every run leaves the lock; the
#: services' logs; the demo team's work): any of them beside a missing events.db means the log
#: was lost, not that the folder is new. Not here: the console's marrow-tui.log (opened before
#: the runtime starts) and the hub's secrets (an operator may put a token there in advance).
EARLIER_STATE = ("lock", "events.db-wal", "events.db-shm", "events.db-journal",
                 "services", "demo")
_START_FRESH = ("start fresh on purpose with --new-state (the old folder is moved aside, "
                "nothing is deleted) or by moving {directory} away")

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
CREATE TABLE IF NOT EXISTS snapshot_parts (
    seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (seq, part)
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


def earlier_state(directory: Path) -> list[str]:
    """The names in `directory` that an earlier run left behind (see `EARLIER_STATE`)."""
    return [name for name in EARLIER_STATE if (directory / name).exists()]


def set_aside(directory: Path, now: float | None = None) -> Path | None:
    """Move a used state folder to `<name>.old-<UTC time>` beside it, for `--new-state`.

    Nothing is copied or deleted: one rename in the same parent. Returns where it went, or
    None when there was nothing to move (no folder, or an empty one). A folder in use by a
    running marrow-tui is refused.
    """
    try:
        if not any(directory.iterdir()):
            return None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read state directory {directory}: {exc.strerror}") from None
    lock = StateLock(directory)
    lock.acquire()  # a running marrow-tui keeps its folder
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        target = directory.with_name(f"{directory.name}.old-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = directory.with_name(f"{directory.name}.old-{stamp}-{n}")
        try:
            os.rename(directory, target)
        except OSError as exc:
            raise StoreError(
                f"cannot move {directory} aside to {target} ({exc.strerror}); move it yourself "
                "or pass a different --state-dir"
            ) from None
    finally:
        lock.release()
    return target


def _encode_parts(state: dict[str, Any], size: int) -> list[str]:
    """`state` as JSON in pieces of at most `size` characters, never one giant string."""
    parts: list[str] = []
    buffer: list[str] = []
    held = 0
    for piece in json.JSONEncoder(separators=(",", ":")).iterencode(state):
        buffer.append(piece)
        held += len(piece)
        if held >= size:
            text = "".join(buffer)
            cut = len(text) - len(text) % size
            parts.extend(text[i : i + size] for i in range(0, cut, size))
            rest = text[cut:]
            buffer = [rest] if rest else []
            held = len(rest)
    if buffer or not parts:
        parts.append("".join(buffer))
    return parts


def _create_database(path: Path, hub_id: str) -> None:
    """Build a new log under a temporary name, then rename it into place (in a thread)."""
    building = path.with_name(path.name + ".new")
    building.unlink(missing_ok=True)  # our own half-built file from a crash while creating
    db = sqlite3.connect(building, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(
            "BEGIN;" + _SCHEMA
            + "INSERT INTO meta(key, value) VALUES ('schema_version', '%d'), ('hub_id', '%s'),"
            " ('created_at', '%r'); COMMIT;" % (SCHEMA_VERSION, hub_id, time.time())
        )
    finally:
        db.close()  # the last connection checkpoints the WAL into the file
    os.chmod(building, 0o600)
    fd = os.open(building, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(building, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateLock:
    """An exclusive lock on a state directory, so two runtimes never write one log."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, write_pid: bool = True) -> None:
        """Lock the directory; with `write_pid`, record our pid (else call `write_pid` later,
        so a start that is refused leaves the file as it found it)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreError(
                    f"{self.path.parent} is in use by another marrow-tui (pid {holder}); "
                    "attach to it (marrow-tui attach), stop it, or pass a different "
                    "--state-dir"
                ) from None
            raise
        self._fd = fd
        if write_pid:
            self.write_pid()

    def write_pid(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, str(os.getpid()).encode())

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
        #: snapshots that could not be written (each is logged with its cause)
        self.snapshot_failures = 0
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
        # Whether an earlier run left the lock: acquiring it makes the file, so look first.
        lock_was_there = self._lock.path.exists()
        self._lock.acquire(write_pid=False)
        try:
            await self._connect(lock_was_there)
            self._lock.write_pid()
        except BaseException:
            self._lock.release()
            if not lock_was_there and not self.path.exists():
                # A brand-new folder that could not be set up: leave no lock that would make
                # the next start take it for a folder whose log was lost.
                with contextlib.suppress(OSError):
                    self._lock.path.unlink()
            raise

    def _refuse_lost_log(self, lock_was_there: bool) -> None:
        """Refuse to begin a new log where one was lost: an empty or missing events.db."""
        directory = self.directory
        if self.path.exists():
            if self.path.stat().st_size == 0:
                raise StoreError(
                    f"{self.path} is empty (0 bytes), so its events are gone and starting "
                    "would begin a new log (new hub id, acknowledged leases and epochs lost); "
                    "restore it from a backup, or " + _START_FRESH.format(directory=directory)
                )
            return
        # The lock alone is no proof of a lost log when this run made it, or when the run that
        # made it died while building the first database (its half-built file is still there).
        building = self.path.with_name(self.path.name + ".new").exists()
        found = [name for name in earlier_state(directory)
                 if name != LOCK_NAME or (lock_was_there and not building)]
        if found:
            raise StoreError(
                f"{self.path} is missing but {directory} holds state from an earlier run "
                f"({', '.join(found)}), so starting would begin a new log and lose its "
                "acknowledged leases; restore events.db, or "
                + _START_FRESH.format(directory=directory)
            )

    async def _connect(self, lock_was_there: bool = False) -> None:
        self._refuse_lost_log(lock_was_there)
        if not self.path.exists():
            self.hub_id = "mrw-" + os.urandom(4).hex()
            try:
                await asyncio.to_thread(_create_database, self.path, self.hub_id)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot create {self.path}: {exc}") from None
        try:
            # Autocommit: each group is one multi-row INSERT, so a commit costs one hop to
            # aiosqlite's thread instead of an execute plus a commit.
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        self._db = db
        try:
            # Look before setting anything, so a file that is not ours is left as it was.
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
        if not tables:
            await db.close()
            raise StoreError(
                f"{self.path} is empty (a database with no tables), so starting would begin a "
                "new log; restore it from a backup, or "
                + _START_FRESH.format(directory=self.directory)
            )
        if "meta" not in tables:
            await db.close()
            raise StoreError(f"{self.path} is not a marrow-tui event log (no meta table)")
        await self._check_schema(db)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
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
        self.hub_id = meta.get("hub_id", "")
        if version < SCHEMA_VERSION or not self.hub_id:
            # Upgrade in place (schema 1 lacks snapshot_parts; its snapshots still load), and
            # keep a hub id once made, so it does not change on every start.
            self.hub_id = self.hub_id or "mrw-" + os.urandom(4).hex()
            try:
                await db.executescript(
                    "BEGIN;" + _SCHEMA
                    + "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '%d'),"
                    " ('hub_id', '%s'); COMMIT;" % (SCHEMA_VERSION, self.hub_id)
                )
            except sqlite3.Error as exc:
                await db.close()
                raise StoreError(f"cannot upgrade {self.path} to schema {SCHEMA_VERSION}: "
                                 f"{exc}") from None

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
                snapshot = await self._read_snapshot(db, self.snapshot_seq, row[1])
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise StoreError(f"cannot read the snapshot in {self.path}: {exc}") from None
        return snapshot, self._tail(self.snapshot_seq)

    async def _read_snapshot(self, db: aiosqlite.Connection, seq: int,
                             head: str) -> dict[str, Any]:
        value = json.loads(head)
        if not (isinstance(value, dict) and "parts" in value and "format" not in value):
            return value  # schema 1: the whole snapshot in one value
        cursor = await db.execute(
            "SELECT part, data FROM snapshot_parts WHERE seq = ? ORDER BY part", (seq,))
        parts = [data for _, data in await cursor.fetchall()]
        text = "".join(parts)
        if len(parts) != value["parts"] or len(text) != value["chars"]:
            raise ValueError(f"snapshot {seq} has {len(parts)} of its {value['parts']} parts")
        snapshot = await asyncio.to_thread(json.loads, text)
        if not isinstance(snapshot, dict):
            raise ValueError(f"snapshot {seq} is not an object")
        return snapshot

    async def _tail(self, after: int) -> AsyncIterator[Event]:
        db = self._require()
        try:
            cursor = await db.execute(
                "SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq", (after,)
            )
            while rows := await cursor.fetchmany(10_000):
                for seq, kind, data in rows:
                    try:
                        yield Event(kind, json.loads(data), data)
                    except ValueError as exc:
                        raise StoreError(f"event {seq} in {self.path} is corrupt: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read events from {self.path}: {exc}") from None

    async def recent(self, limit: int, upto: int) -> list[tuple[float, Event]]:
        """The last `limit` events up to sequence `upto`, oldest first, with when each was
        written: the recent past for a reader that joins late (the console after a restart).
        An event that cannot be read is left out, never the rest."""
        db = self._require()
        try:
            cursor = await db.execute(
                "SELECT ts, kind, data FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
                (upto, limit))
            rows = list(await cursor.fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read events from {self.path}: {exc}") from None
        found = []
        for ts, kind, data in reversed(rows):
            try:
                found.append((float(ts), Event(kind, json.loads(data), data)))
            except ValueError:
                continue
        return found

    async def between(self, after: int, upto: int, limit: int) -> list[tuple[int, str, str]]:
        """The events with sequence in (after, upto], oldest first, as (seq, kind, data as
        JSON text), at most `limit` of them."""
        db = self._require()
        try:
            cursor = await db.execute(
                "SELECT seq, kind, data FROM events WHERE seq > ? AND seq <= ? ORDER BY seq "
                "LIMIT ?", (after, upto, limit))
            rows = await cursor.fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read events from {self.path}: {exc}") from None
        return [(int(seq), str(kind), str(data)) for seq, kind, data in rows]

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
                        await self._try_snapshot(db)
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

    async def _try_snapshot(self, db: aiosqlite.Connection) -> None:
        """Write the requested snapshot; if that fails, say why and carry on without it.

        A snapshot only shortens the next start: the events it covers are already in the log,
        so a failure here loses nothing, and must not stop the hub. (If the disk itself is
        failing, the next commit fails too, and that stops the hub as it should.)
        """
        assert self._snapshot is not None
        seq = self._snapshot[0]
        try:
            await self._write_snapshot(db)
        except Exception as exc:
            self.snapshot_failures += 1
            if db.in_transaction:
                # Nothing of it may stay half-written; and a transaction left open would hold
                # back the commits that follow, so if it cannot be rolled back, the log fails.
                await db.execute("ROLLBACK")
            log.error("the snapshot at event %d was not written to %s (%s: %s); the log keeps "
                      "every event and the next snapshot will try again", seq, self.path,
                      type(exc).__name__, exc, exc_info=exc)

    async def _write_snapshot(self, db: aiosqlite.Connection) -> None:
        assert self._snapshot is not None
        seq, state = self._snapshot
        self._snapshot = None
        if seq <= self.snapshot_seq:
            return
        parts = await asyncio.to_thread(_encode_parts, state, SNAPSHOT_PART_CHARS)
        head = json.dumps({"parts": len(parts), "chars": sum(map(len, parts))})
        if not self._full:
            await db.execute("PRAGMA synchronous=FULL")
            self._full = True
        await db.execute("BEGIN")
        await db.executemany("INSERT INTO snapshot_parts(seq, part, data) VALUES (?, ?, ?)",
                             [(seq, n, part) for n, part in enumerate(parts)])
        await db.execute("INSERT INTO snapshots(seq, ts, data) VALUES (?, ?, ?)",
                         (seq, time.time(), head))
        await db.execute(
            "DELETE FROM snapshots WHERE seq NOT IN "
            "(SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
            (KEEP_SNAPSHOTS,),
        )
        await db.execute("DELETE FROM snapshot_parts WHERE seq NOT IN (SELECT seq FROM snapshots)")
        await db.execute("COMMIT")
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
