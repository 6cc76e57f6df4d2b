"""The embedded event log: one SQLite file in WAL mode, safe for many processes on one machine.

Appends take SQLite's write lock (``BEGIN IMMEDIATE``), so positions are gap-free and the key
check, the chain head and the insert are one atomic step. Triggers refuse UPDATE and DELETE.

**Group commit.** Threads of one process that append while another thread's commit is in flight
queue up, and the next of them commits every queued append in one transaction (one fsync). Each
append stays atomic on its own (a savepoint each: a refused key refuses only that append) and
returns only once its transaction committed, so grouping changes no caller's guarantee.

**What is fsynced.** Under FULL (the default) a commit that holds only :data:`UNSYNCED_TYPES`
(a stage task's ``StageStarted``) is committed without the fsync: it survives a process crash
(the WAL frame is in the OS page cache) and reaches the disk with the next synced commit, since
the WAL is one sequential file; a power failure before that can lose it, which costs only the
count of that attempt (the task has published nothing that any record references). Everything
else, manifests first, is fsynced before the append returns. See docs/durability.md.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from stagebus.errors import InvalidInput, StoreUnavailable
from stagebus.events import Event
from stagebus.store.base import (
    GENESIS_HASH,
    READ_PAGE,
    Appended,
    EventStore,
    RecordedEvent,
    check_batch,
    refused,
    seal_batch,
    utc_now,
)
from stagebus.store.keys import EVENTS_TABLE
from stagebus.store.retry import retrying

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
    position    INTEGER PRIMARY KEY,
    key         TEXT UNIQUE,
    type        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS {EVENTS_TABLE}_no_update BEFORE UPDATE ON {EVENTS_TABLE}
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {EVENTS_TABLE}_no_delete BEFORE DELETE ON {EVENTS_TABLE}
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""
# The log of record fsyncs every commit (FULL); NORMAL is a documented opt-in for a log that may
# lose its last commits on power failure (docs/durability.md). EXTRA adds a directory fsync.
SYNCHRONOUS_ENV = "STAGEBUS_SQLITE_SYNCHRONOUS"
SYNCHRONOUS_LEVELS = ("FULL", "EXTRA", "NORMAL")
_COLUMNS = "position, key, type, version, payload, recorded_at, hash"
_INSERT = f"INSERT INTO {EVENTS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
# Facts whose loss on power failure costs nothing but an attempt's count: committed unsynced.
UNSYNCED_TYPES = frozenset({"stage_started"})


def commit_level(events: Sequence[Event], configured: str) -> str:
    """The ``PRAGMA synchronous`` a commit of ``events`` needs under the ``configured`` level."""
    if configured != "NORMAL" and all(e.type_name in UNSYNCED_TYPES for e in events):
        return "NORMAL"
    return configured


class _Request:
    """One caller's append, waiting for a group commit."""

    __slots__ = ("events", "result")

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.result: list[Appended] | None = None


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def synchronous_level(value: str | None = None) -> str:
    """The ``PRAGMA synchronous`` of the log: ``value``, else ``STAGEBUS_SQLITE_SYNCHRONOUS``, else
    FULL. FULL fsyncs the WAL at every commit, so a committed append survives a power failure;
    NORMAL does not (see docs/durability.md for what it can lose and what FULL costs)."""
    level = (value if value is not None else os.environ.get(SYNCHRONOUS_ENV, "")).strip().upper() or "FULL"
    if level not in SYNCHRONOUS_LEVELS:
        raise InvalidInput(f"{SYNCHRONOUS_ENV} must be one of {', '.join(SYNCHRONOUS_LEVELS)}, got {level[:40]!r}")
    return level


def connect(path: Path, *, readonly: bool = False, busy_timeout_s: float = 10.0,
            synchronous: str = "FULL") -> sqlite3.Connection:
    """Open a SQLite file; read-only opens never create or modify anything."""
    if readonly:
        if not path.exists():
            raise StoreUnavailable(f"no store at {path}")
        # Without a -wal file nobody has the log open, and a mode=ro open would create -wal and
        # -shm files wherever the process may write (always, as root): read it immutable instead.
        mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True,
                                   timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL database in a read-only directory cannot get its -shm file; an immutable
            # open reads the file as it is, which is what a read-only inspector wants.
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True,
                                   isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class SqliteEventStore(EventStore):
    def __init__(self, path: str | Path, *, readonly: bool = False, busy_timeout_s: float = 10.0,
                 synchronous: str | None = None) -> None:
        self.path = Path(path)
        self.synchronous = synchronous_level(synchronous)
        self.busy_timeout_s = busy_timeout_s
        self.url = f"sqlite:///{self.path}"
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        self._queued: list[_Request] = []  # appends waiting for the writer (guarded by _lock)
        self._levels: dict[int, str] = {}  # connection id -> its PRAGMA synchronous now
        if not readonly:
            self._init_schema()

    @retrying(is_transient, "the SQLite event log stayed busy")
    def _init_schema(self) -> None:
        self._conn.executescript(SCHEMA)

    @property
    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not interleave transactions.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=self.readonly, busy_timeout_s=self.busy_timeout_s,
                           synchronous=self.synchronous)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def append(self, events: Sequence[Event]) -> list[Appended]:
        self._refuse_if_readonly()
        check_batch(events)
        return self._append(events)

    @retrying(is_transient, "the SQLite event log stayed locked")
    def _append(self, events: Sequence[Event]) -> list[Appended]:
        # Threads of one process queue on a mutex first: SQLite's own busy handler sleeps in
        # steps of milliseconds, which would dominate a stage transition. Other processes still
        # meet at SQLite's write lock. Whoever holds the mutex commits every queued append.
        request = _Request(events)
        with self._lock:
            self._queued.append(request)
        with self._writer:
            if request.result is not None:
                return request.result  # committed by another thread's group
            with self._lock:
                group, self._queued = self._queued, []
            if request not in group:
                group.append(request)  # taken by a group whose commit failed: ours to do again
            self._commit(group)
        assert request.result is not None
        return request.result

    def _commit(self, group: list[_Request]) -> None:
        conn = self._conn
        level = commit_level([e for r in group for e in r.events], self.synchronous)
        if self._levels.get(id(conn), self.synchronous) != level:
            conn.execute(f"PRAGMA synchronous = {level}")
            self._levels[id(conn)] = level
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT position, hash FROM {EVENTS_TABLE} ORDER BY position DESC LIMIT 1"
            ).fetchone()
            head, head_hash = row if row else (0, GENESIS_HASH)
            stamp = utc_now()
            results = []
            for request in group:
                answer, head, head_hash = self._insert(conn, request.events, head, head_hash, stamp,
                                                       savepoint=len(group) > 1)
                results.append(answer)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")  # one append alone: refused as a whole, nothing kept
            if len(group) > 1:
                raise
            keys = [e.key for e in group[0].events if e.key is not None]
            taken = self._positions(keys)
            if not taken:
                raise
            results = [refused(group[0].events, taken)]
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for request, answer in zip(group, results, strict=True):
            request.result = answer

    def _insert(self, conn: sqlite3.Connection, events: Sequence[Event], head: int, head_hash: str, stamp: str,
                *, savepoint: bool) -> tuple[list[Appended], int, str]:
        """Insert one append after ``head``; return its answer and the new head."""
        records = seal_batch(events, head, head_hash, stamp)
        if savepoint:
            conn.execute("SAVEPOINT append")
        try:
            # Optimistic: the unique key index is the check, so the common case (no key
            # taken) costs no lookup. Keys are never removed, so the lookup after a refusal
            # names positions that still hold.
            conn.executemany(_INSERT, [(r.position, r.key, r.type, r.version, r.payload, r.recorded_at, r.hash)
                                       for r in records])
        except sqlite3.IntegrityError:
            if not savepoint:
                raise  # the caller rolls the whole transaction back (earlier rows of executemany stay otherwise)
            conn.execute("ROLLBACK TO append")
            conn.execute("RELEASE append")
            taken = self._positions([r.key for r in records if r.key is not None])
            if not taken:
                raise
            return refused(events, taken), head, head_hash
        if savepoint:
            conn.execute("RELEASE append")
        return [Appended(r.position, True) for r in records], records[-1].position, records[-1].hash

    def _positions(self, keys: list[str]) -> dict[str, int]:
        taken: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, position FROM {EVENTS_TABLE} WHERE key IN ({marks})", chunk
            ).fetchall()
            taken.update(rows)
        return taken

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        remaining = limit
        while remaining is None or remaining > 0:
            page = READ_PAGE if remaining is None else min(READ_PAGE, remaining)
            rows = self._read_page(after, page)
            if not rows:
                return
            for row in rows:
                yield RecordedEvent(*row)
            after = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    @retrying(is_transient, "the SQLite event log stayed locked")
    def _read_page(self, after: int, page: int) -> list[tuple]:  # type: ignore[type-arg]
        return self._conn.execute(
            f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE position > ? ORDER BY position LIMIT ?",
            (after, page),
        ).fetchall()

    @retrying(is_transient, "the SQLite event log stayed locked")
    def get(self, key: str) -> RecordedEvent | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE key = ?", (key,)).fetchone()
        return None if row is None else RecordedEvent(*row)

    @retrying(is_transient, "the SQLite event log stayed locked")
    def get_many(self, keys: Sequence[str]) -> dict[str, RecordedEvent]:
        found: dict[str, RecordedEvent] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE key IN ({marks})", chunk
            ):
                found[row[1]] = RecordedEvent(*row)
        return found

    @retrying(is_transient, "the SQLite event log stayed locked")
    def head(self) -> int:
        row = self._conn.execute(f"SELECT MAX(position) FROM {EVENTS_TABLE}").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
