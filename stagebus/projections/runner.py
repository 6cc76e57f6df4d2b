"""The checkpointed runner: applies the log to the projections of one SQLite file.

Catch-up goes in batches. Each batch takes SQLite's write lock (``BEGIN IMMEDIATE``), re-reads
the checkpoints *inside* the transaction, applies the next events and moves the checkpoints in
that same transaction. So any number of threads and processes may catch up the same file at
once: each batch starts where the last committed one ended, and no event is applied twice.

Every projection has its own checkpoint (the position of the last event it applied, and that
event's chain hash). They move together, except after one projection was reset for a rebuild:
it then catches up alone until it reaches the others. The stored hash lets a catch-up notice that
the file was built from a different log than the one it is asked to follow.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence

from stagebus.errors import InvalidInput, StoreError
from stagebus.projections.api_keys import ApiKeys
from stagebus.projections.api_resources import ApiResources
from stagebus.projections.base import JSON, Projection
from stagebus.projections.ledger import PartitionLedger
from stagebus.projections.manifests import ManifestIndex
from stagebus.projections.pipelines import PipelineLifecycle
from stagebus.projections.runs import RunsProjection
from stagebus.store import EventStore
from stagebus.store.keys import CHECKPOINTS_TABLE, PROJECTION_META_TABLE
from stagebus.store.retry import retrying
from stagebus.store.sqlite import is_transient

BATCH_SIZE = 5000
FORMAT = "stagebus-projections/1"  # bump when a projection's meaning changes without its DDL

# A checkpoint the log no longer holds is evidence of a damaged log as much as of foreign
# projections; `replay` would destroy that evidence, so it is advised only for the second.
LOST_OR_FOREIGN = ("run `stagebus log verify`: if this is the home's own log, restore it from a backup and do not "
                   "replay over it; if the projections are another log's, run `stagebus replay`")

Progress = Callable[[int, int], None]  # (events applied so far, events to apply in all)

META_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PROJECTION_META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    hash     TEXT NOT NULL
) WITHOUT ROWID;
"""


def builtin_projections() -> list[Projection]:
    """Fresh instances (they cache immutable facts per connection)."""
    return [PartitionLedger(), ManifestIndex(), RunsProjection(), PipelineLifecycle(),
            ApiKeys(), ApiResources()]


def fingerprint(projections: Sequence[Projection]) -> str:
    """Changes whenever the shape of the projection tables does: a file with another one is rebuilt."""
    text = FORMAT + "".join(f"\n{p.name}\n{p.schema}" for p in projections)
    return hashlib.sha256(text.encode()).hexdigest()


class ProjectionDB:
    """The projections of one open SQLite file."""

    def __init__(self, conn: sqlite3.Connection, projections: Sequence[Projection] | None = None) -> None:
        self.conn = conn
        self.projections = list(projections) if projections is not None else builtin_projections()
        self._by_name = {p.name: p for p in self.projections}
        self._log_checked = False

    # --- shape ---------------------------------------------------------------------------

    def initialize(self) -> None:
        """Create every table, with all checkpoints at 0. For a new, empty file."""
        self.conn.executescript(META_SCHEMA + "".join(p.schema for p in self.projections))
        self.conn.execute(
            f"INSERT OR REPLACE INTO {PROJECTION_META_TABLE} VALUES ('fingerprint', ?)",
            (fingerprint(self.projections),),
        )
        self.conn.executemany(
            f"INSERT OR IGNORE INTO {CHECKPOINTS_TABLE} VALUES (?, 0, '')", [(p.name,) for p in self.projections]
        )

    def compatible(self) -> bool:
        """Whether the file has this code's tables (else it must be rebuilt from the log)."""
        try:
            row = self.conn.execute(
                f"SELECT value FROM {PROJECTION_META_TABLE} WHERE key = 'fingerprint'"
            ).fetchone()
        except sqlite3.OperationalError:
            return False
        return row is not None and row[0] == fingerprint(self.projections)

    def reset(self, name: str) -> None:
        """Empty one projection and rewind its checkpoint, leaving the others as they are.
        For a private rebuild copy only: other processes must not be using the file."""
        projection = self.projection(name)
        drops = "".join(f"DROP TABLE IF EXISTS {table};" for table in projection.tables)
        self.conn.executescript(drops + projection.schema)
        self.conn.execute(f"UPDATE {CHECKPOINTS_TABLE} SET position = 0, hash = '' WHERE name = ?", (name,))
        fresh = type(projection)()  # a new instance: the old one's caches describe the dropped tables
        self.projections = [fresh if p.name == name else p for p in self.projections]
        self._by_name[name] = fresh

    def _renew(self) -> None:
        self.projections = [type(p)() for p in self.projections]
        self._by_name = {p.name: p for p in self.projections}

    def projection(self, name: str) -> Projection:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise InvalidInput(f"no projection named {name!r} (known: {known})") from None

    # --- checkpoints ---------------------------------------------------------------------

    def checkpoints(self) -> dict[str, int]:
        return dict(self.conn.execute(f"SELECT name, position FROM {CHECKPOINTS_TABLE}").fetchall())

    def checkpoint(self) -> int:
        """The position every projection has applied: reads reflect the log up to here."""
        return min(self.checkpoints().values(), default=0)

    # --- catching up ---------------------------------------------------------------------

    def catch_up(self, store: EventStore, *, until: int | None = None, batch_size: int = BATCH_SIZE,
                 progress: Progress | None = None) -> int:
        """Apply the log up to ``until`` (default: its head). Returns the number of events applied."""
        if not self._log_checked:
            self._check_log(store)
        start = self.checkpoint()
        target = store.head() if until is None else until
        total = max(target - start, 0)
        if total == 0:
            return 0  # nothing new: not even the write lock is taken
        applied = 0
        while True:
            done = self._batch(store, until, batch_size)
            if done == 0:
                return applied
            applied += done
            if progress is not None:
                progress(min(applied, total), total)

    @retrying(is_transient, "the projections file stayed locked")
    def _batch(self, store: EventStore, until: int | None, batch_size: int) -> int:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(f"SELECT name, position, hash FROM {CHECKPOINTS_TABLE}").fetchall()
            start = min(position for _, position, _ in rows)
            ahead = [position for _, position, _ in rows if position > start]
            # Only projections at the lowest checkpoint move, and never past the next one up.
            limit = min([batch_size, *(p - start for p in ahead), *([until - start] if until is not None else [])])
            if limit <= 0:
                conn.execute("ROLLBACK")
                return 0
            movers = [self._by_name[name] for name, position, _ in rows if position == start]
            routes: dict[type, list[Projection]] = {}
            last = None
            count = 0
            for record in store.read(after=start, limit=limit):
                event = record.event()
                kind = type(event)
                route = routes.get(kind)
                if route is None:
                    route = routes[kind] = [p for p in movers if issubclass(kind, p.handles)]
                for projection in route:
                    projection.apply(conn, record, event)
                last = record
                count += 1
            if last is None:
                conn.execute("ROLLBACK")
                return 0
            for projection in movers:
                projection.flush(conn)
            conn.executemany(
                f"UPDATE {CHECKPOINTS_TABLE} SET position = ?, hash = ? WHERE name = ?",
                [(last.position, last.hash, p.name) for p in movers],
            )
            conn.execute("COMMIT")
            return count
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._renew()  # buffers and caches may describe the rolled-back writes
            if isinstance(exc, sqlite3.DatabaseError) and not is_transient(exc):
                raise StoreError(f"projections: {exc}") from exc
            raise

    def _check_log(self, store: EventStore) -> None:
        """Refuse to follow a log other than the one the file was built from: the event at the
        lowest checkpoint must be there, with the hash the checkpoint recorded."""
        position, expected_hash = self.conn.execute(
            f"SELECT position, hash FROM {CHECKPOINTS_TABLE} ORDER BY position LIMIT 1"
        ).fetchone()
        if position > 0:
            found = next(iter(store.read(after=position - 1, limit=1)), None)
            if found is None:
                raise StoreError(
                    f"projections are at position {position} but the log ends at {store.head()}: the log lost "
                    f"events or they were built from another log; {LOST_OR_FOREIGN}"
                )
            if found.hash != expected_hash:
                raise StoreError(
                    f"the log rewrote events or the projections were built from another log (hash at position "
                    f"{position} differs); {LOST_OR_FOREIGN}"
                )
        self._log_checked = True

    # --- digest --------------------------------------------------------------------------

    def digest(self) -> str:
        """sha256 over a canonical dump of every projection table ordered by primary key,
        checkpoints included. Equal digests: equal projection state."""
        tables = sorted({CHECKPOINTS_TABLE, PROJECTION_META_TABLE, *(t for p in self.projections for t in p.tables)})
        sha = hashlib.sha256()
        began = not self.conn.in_transaction
        if began:
            self.conn.execute("BEGIN")  # one snapshot for every table
        try:
            for table in tables:
                columns = self.conn.execute(f"PRAGMA table_info({table})").fetchall()
                names = [c[1] for c in columns]
                keys = [c[1] for c in sorted(columns, key=lambda c: c[5]) if c[5]] or names
                sha.update(JSON.encode([table, names]) + b"\n")
                for row in self.conn.execute(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}"):
                    sha.update(JSON.encode(row) + b"\n")
        finally:
            if began:
                self.conn.execute("COMMIT")
        return sha.hexdigest()
