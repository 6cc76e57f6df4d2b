"""The embedded event log: one SQLite file in WAL mode, safe for many processes on one machine.

Appends take SQLite's write lock (``BEGIN IMMEDIATE``), so positions are gap-free and the key
check, the chain head and the insert are one atomic step. Triggers refuse UPDATE and DELETE.
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
        # meet at SQLite's write lock.
        with self._writer:
            return self._append_locked(events)

    def _append_locked(self, events: Sequence[Event]) -> list[Appended]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT position, hash FROM {EVENTS_TABLE} ORDER BY position DESC LIMIT 1"
            ).fetchone()
            head, head_hash = row if row else (0, GENESIS_HASH)
            records = seal_batch(events, head, head_hash, utc_now())
            try:
                # Optimistic: the unique key index is the check, so the common case (no key
                # taken) costs no lookup. Keys are never removed, so the lookup after a refusal
                # names positions that still hold.
                conn.executemany(
                    f"INSERT INTO {EVENTS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.position, r.key, r.type, r.version, r.payload, r.recorded_at, r.hash) for r in records],
                )
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                taken = self._positions([r.key for r in records if r.key is not None])
                if not taken:
                    raise
                return refused(events, taken)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [Appended(r.position, True) for r in records]

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
