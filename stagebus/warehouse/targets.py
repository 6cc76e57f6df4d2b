"""Where loads go: a PostgreSQL database (psycopg 3) or an SQLite file, behind one protocol.

Each target keeps a tracking table, ``stagebus_loads``, beside the tables it loads: one row per
``(target_table, partition)`` naming the ``(run_id, stage, output, position)`` whose rows the
table holds. :meth:`Target.replace_partition` is the whole exactly-once argument, in one
transaction: lock the partition's tracking row, do nothing if it already names this position or
a later one, else delete the partition's rows, write the new ones and update the tracking row.
A crash anywhere before the commit leaves the table and the tracking row as they were; a
duplicate delivery after the commit finds the row and does nothing. docs/warehouse.md says more.
"""

from __future__ import annotations

import abc
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from stagebus.errors import InvalidInput, WarehouseError
from stagebus.store.urls import redact_url
from stagebus.warehouse.columns import PARTITION, Column, Kind

TRACKING_TABLE = "stagebus_loads"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# One advisory lock for every CREATE of a loader: concurrent ``CREATE TABLE IF NOT EXISTS`` of
# the same table can fail in PostgreSQL (a unique violation in its catalog) without it.
DDL_LOCK = "stagebus.warehouse.ddl"

Action = Literal["loaded", "already_loaded", "newer_loaded"]


class PartitionLoad(NamedTuple):
    """What is being loaded for one partition: its rows at ``run_id``, made valid by the ledger
    change at log ``position``."""

    dataset: str
    partition: str
    run_id: str
    stage: str
    output: str
    position: int
    sha256: str


class Outcome(NamedTuple):
    action: Action
    rows: int  # rows written; for the other actions, the rows the tracking row says are there
    tracked_run_id: str | None
    tracked_position: int


class Target(abc.ABC):
    """A database that tables are loaded into. ``url`` is safe to print (no password)."""

    url: str

    @abc.abstractmethod
    def prepare(self, table: str, columns: list[Column]) -> None:
        """Create the tracking table and ``table`` (with ``columns``) if absent, under a lock that
        serialises concurrent loaders. Raises :class:`InvalidInput` when ``table`` exists and
        lacks one of ``columns`` or types it differently; columns the table has beyond those are
        left alone (NULL in new rows)."""

    @abc.abstractmethod
    def tracked(self, table: str) -> dict[str, tuple[str, int]]:
        """``partition -> (dataset, position)`` of every committed load into ``table``. A hint
        only (read without locks): :meth:`replace_partition` decides under its lock."""

    @abc.abstractmethod
    def replace_partition(self, table: str, columns: list[Column], load: PartitionLoad,
                          rows: Iterable[tuple[Any, ...]]) -> Outcome:
        """In one transaction: lock ``(table, load.partition)``'s tracking row; if it names
        ``load.position`` or a later one, change nothing (``already_loaded`` / ``newer_loaded``;
        ``rows`` is not consumed); else delete the partition's rows, insert ``rows`` (tuples in
        ``columns`` order) and record ``load`` with the row count (``loaded``). Idempotent; safe
        under concurrent callers; a failure or a crash before the commit changes nothing.
        Raises :class:`InvalidInput` when the table's partition was loaded from another dataset."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_target(url: str) -> Target:
    """``postgresql://…`` (or ``postgres://…``) or ``sqlite:///PATH``."""
    if _is_postgres(check_url(url)):
        from stagebus.warehouse.postgres import PostgresTarget

        return PostgresTarget(url)
    return SqliteTarget(Path(url.removeprefix("sqlite:///")))


def check_url(url: str) -> str:
    """Refuse, with :class:`InvalidInput`, a warehouse URL of another kind or one that does not
    parse; returns its scheme."""
    scheme = url.partition(":")[0].lower()
    if _is_postgres(scheme):
        try:
            urlsplit(url).port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            raise InvalidInput(f"malformed warehouse URL {redact_url(url)!r}: {scrub(str(exc), url)}") from None
        return scheme
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite"
    raise InvalidInput(f"unknown warehouse URL {redact_url(url)!r}: use postgresql://USER@HOST/DB or sqlite:///PATH")


def check_target(url: str, table: str) -> None:
    """The checks of a URL and a table name that need no connection."""
    split_table(table, schemas=_is_postgres(check_url(url)))


def _is_postgres(scheme: str) -> bool:
    return scheme in ("postgresql", "postgres")


def split_table(table: str, *, schemas: bool) -> tuple[str | None, str]:
    """``table`` or ``schema.table`` (PostgreSQL only), each part a plain SQL identifier."""
    parts = table.split(".")
    if len(parts) > (2 if schemas else 1) or not all(_NAME.fullmatch(p) for p in parts):
        form = "NAME or SCHEMA.NAME" if schemas else "NAME"
        raise InvalidInput(f"table {table!r} is not {form} (letters, digits and _, not starting with a digit, "
                           "at most 63 characters)")
    if parts[-1] == TRACKING_TABLE:
        raise InvalidInput(f"table {table!r} is the loads' own tracking table: choose another name")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_columns(table: str, existing: dict[str, str], columns: list[Column], types: dict[Kind, str]) -> None:
    """Refuse a table that lacks a needed column or types it differently, naming each one."""
    problems = []
    for column in columns:
        want = types[column.kind]
        have = existing.get(column.name)
        if have is None:
            problems.append(f"{column.name} ({want}) is missing")
        elif have.lower() != want.lower():
            problems.append(f"{column.name} is {have} in the table but {want} in the records")
    if problems:
        raise InvalidInput(f"table {table} exists with other columns than the records need: {'; '.join(problems)} "
                           "(load into a new table, or alter this one)")


def password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def scrub(message: str, url: str) -> str:
    """``message`` (from a driver) with ``url`` and its password masked, on one line."""
    text = str(message).replace(url, redact_url(url))
    password = password_of(url)
    if password:  # wherever a driver echoed it on its own (not inside a longer word)
        text = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", "***", text)
    return " ".join(text.split())


class SqliteTarget(Target):
    """The embedded target: one SQLite file. ``BEGIN IMMEDIATE`` takes the database's write lock
    before the tracking row is read, which is what ``SELECT … FOR UPDATE`` does in PostgreSQL."""

    TYPES: dict[Kind, str] = {"bool": "BOOLEAN", "int": "INTEGER", "float": "REAL", "text": "TEXT", "json": "JSON"}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        if not path.parent.is_dir():
            raise InvalidInput(f"warehouse {self.url}: directory {path.parent} does not exist")
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise WarehouseError(f"cannot open warehouse {self.url}: {exc}") from None

    def prepare(self, table: str, columns: list[Column]) -> None:
        _, name = split_table(table, schemas=False)
        with self._transaction():
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (target_table TEXT NOT NULL, partition TEXT NOT NULL, "
                "dataset TEXT NOT NULL, run_id TEXT, stage TEXT, output TEXT, position INTEGER NOT NULL, "
                "rows INTEGER, sha256 TEXT, loaded_at TEXT, PRIMARY KEY (target_table, partition)) WITHOUT ROWID")
            existing = {row[1]: row[2] for row in self._conn.execute(f"PRAGMA table_info({_quote(name)})")}
            if existing:
                check_columns(table, existing, columns, self.TYPES)
                return
            spec = ", ".join(f"{_quote(c.name)} {self.TYPES[c.kind]}" for c in columns)
            self._conn.execute(f"CREATE TABLE {_quote(name)} ({spec})")
            self._conn.execute(f"CREATE INDEX {_quote(name + '__partition')} ON {_quote(name)} ({PARTITION})")

    def tracked(self, table: str) -> dict[str, tuple[str, int]]:
        try:
            cursor = self._conn.execute(f"SELECT partition, dataset, position FROM {TRACKING_TABLE} "
                                        "WHERE target_table = ?", (table,))
        except sqlite3.OperationalError:  # no tracking table yet: nothing loaded
            return {}
        return {partition: (dataset, position) for partition, dataset, position in cursor}

    def replace_partition(self, table: str, columns: list[Column], load: PartitionLoad,
                          rows: Iterable[tuple[Any, ...]]) -> Outcome:
        _, name = split_table(table, schemas=False)
        with self._transaction():
            found = self._conn.execute(f"SELECT dataset, run_id, position, rows FROM {TRACKING_TABLE} "
                                       "WHERE target_table = ? AND partition = ?", (table, load.partition)).fetchone()
            if found is not None:
                outcome = covering_outcome(table, load, *found)
                if outcome is not None:
                    return outcome
            self._conn.execute(f"DELETE FROM {_quote(name)} WHERE {PARTITION} = ?", (load.partition,))
            counted = CountedRows(rows)
            marks = ", ".join("?" * len(columns))
            self._conn.executemany(f"INSERT INTO {_quote(name)} ({', '.join(_quote(c.name) for c in columns)}) "
                                   f"VALUES ({marks})", counted)
            self._conn.execute(
                f"INSERT INTO {TRACKING_TABLE} (target_table, partition, dataset, run_id, stage, output, position, "
                "rows, sha256, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ')) "
                "ON CONFLICT (target_table, partition) DO UPDATE SET run_id = excluded.run_id, "
                "stage = excluded.stage, output = excluded.output, position = excluded.position, "
                "rows = excluded.rows, sha256 = excluded.sha256, loaded_at = excluded.loaded_at",
                (table, load.partition, load.dataset, load.run_id, load.stage, load.output, load.position,
                 counted.count, load.sha256))
        return Outcome("loaded", counted.count, load.run_id, load.position)

    def _transaction(self) -> _SqliteTransaction:
        return _SqliteTransaction(self._conn, self.url)

    def close(self) -> None:
        self._conn.close()


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection, url: str) -> None:
        self._conn, self._url = conn, url

    def __enter__(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise WarehouseError(f"warehouse {self._url}: {exc}") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
            return
        self._conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise WarehouseError(f"warehouse {self._url}: {exc}") from None


def covering_outcome(table: str, load: PartitionLoad, dataset: str, run_id: str | None, position: int,
             rows: int | None) -> Outcome | None:
    """The outcome when the tracking row already covers ``load``; None when ``load`` is newer."""
    if dataset != load.dataset:
        raise InvalidInput(f"table {table} holds partition {load.partition!r} of dataset {dataset!r}, "
                           f"not {load.dataset!r}: load each dataset into its own table")
    if position == load.position:
        return Outcome("already_loaded", rows or 0, run_id, position)
    if position > load.position:
        return Outcome("newer_loaded", rows or 0, run_id, position)
    return None


class CountedRows:
    """An iterable that counts what it yields (executemany and COPY consume it)."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Any:
        for row in self._rows:
            self.count += 1
            yield row


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
